#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, on 127.0.0.1 only:
#   scripts/postgres.sh        make sure it runs, print its SQLAlchemy URL as the last line
#   scripts/postgres.sh stop   stop it (the data stays; `start` again reuses it)
#
# Installs Debian's postgresql if no initdb is found, creates the cluster with initdb in its
# own folder, starts it with pg_ctl, creates the role `bastion` (password generated once and
# kept in the folder, may create databases: each test gets its own) and the database
# `bastion_test`. Idempotent: when all that is there already it only prints the URL.
#
# PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user;
# as any other user it belongs to that user and no root is needed (only for apt-get).
#
# Settings (environment):
#   BASTION_PG_PORT    TCP port on 127.0.0.1 (default 55432, away from a system cluster's 5432)
#   BASTION_PG_DIR     the cluster's folder (default $BASTION_STATE_DIR/pg, or
#                      ~/.local/state/bastion/pg; see below for root)
#   BASTION_STATE_DIR  Bastion's state folder (default ~/.local/state/bastion)
#
# The cluster trades durability for speed (fsync off): it is for tests, never for data.
# Clients authenticate with a password over TCP; the Unix socket lives in the cluster's
# folder, which only the cluster's owner can enter.
set -euo pipefail

PORT="${BASTION_PG_PORT:-55432}"
STATE_DIR="${BASTION_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/bastion}"
ROLE=bastion
DATABASE=bastion_test

log() { printf '[postgres] %s\n' "$*" >&2; }
die() { printf '[postgres] error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

as_root() {
  if is_root; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    die "root is needed for: $* (run as root, or install sudo)"
  fi
}

# The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/<version>/bin).
find_bindir() {
  local candidate initdb=""
  initdb="$(for candidate in /usr/lib/postgresql/*/bin/initdb; do
    if [ -x "$candidate" ]; then printf '%s\n' "$candidate"; fi
  done | sort -V | tail -n 1)"
  if [ -n "$initdb" ]; then
    dirname "$initdb"
  elif command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
  fi
}

BINDIR="$(find_bindir)"

case "${1:-start}" in
  start | stop) ;;
  *) die "usage: $0 [start|stop]" ;;
esac

if [ -z "$BINDIR" ]; then
  [ "${1:-start}" = stop ] && exit 0  # nothing installed, so nothing runs
  command -v apt-get >/dev/null 2>&1 || die "no PostgreSQL found and no apt-get: install PostgreSQL 13+ yourself"
  log "installing Debian's postgresql"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
  BINDIR="$(find_bindir)"
  [ -n "$BINDIR" ] || die "postgresql was installed but no initdb was found under /usr/lib/postgresql"
fi

# Run a PostgreSQL program as the cluster's owner, from / (the caller's folder may be one the
# postgres user cannot enter, which makes some programs complain).
if is_root; then
  id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user (Debian's postgresql package creates it)"
  OWNER=postgres
  as_owner() { (cd / && runuser -u postgres -- "$@"); }
else
  OWNER="$(id -un)"
  as_owner() { (cd / && "$@"); }
fi

# The cluster's folder must be reachable by its owner. Root's home is usually closed to other
# users (mode 0700), so as root the default moves to the postgres user's home.
if [ -n "${BASTION_PG_DIR:-}" ]; then
  PG_HOME="$BASTION_PG_DIR"
else
  PG_HOME="$STATE_DIR/pg"
  if is_root; then
    mkdir -p "$STATE_DIR"
    if ! as_owner test -x "$STATE_DIR"; then
      postgres_home="$(getent passwd postgres | cut -d: -f6)"
      PG_HOME="${postgres_home:-/var/lib/postgresql}/bastion-test"
    fi
  fi
fi
DATA="$PG_HOME/data"
SOCKETS="$PG_HOME/run"
PASSWORD_FILE="$PG_HOME/bastion.password"

running() { [ -f "$DATA/PG_VERSION" ] && as_owner "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

if [ "${1:-start}" = stop ]; then
  if running; then
    log "stopping the cluster in $DATA"
    as_owner "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
  fi
  exit 0
fi

psql_admin() {
  as_owner "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKETS" -p "$PORT" -U postgres -d postgres "$@"
}

url() { printf 'postgresql+psycopg://%s:%s@127.0.0.1:%s/%s\n' "$ROLE" "$(cat "$PASSWORD_FILE")" "$PORT" "$DATABASE"; }

# -- the fast path: everything is there -------------------------------------------------------
if running && [ -s "$PASSWORD_FILE" ] \
  && PGPASSWORD="$(cat "$PASSWORD_FILE")" "$BINDIR/psql" -X -q -w -h 127.0.0.1 -p "$PORT" \
    -U "$ROLE" -d "$DATABASE" -c 'SELECT 1' >/dev/null 2>&1; then
  url
  exit 0
fi

# -- the folder and the cluster -----------------------------------------------------------------
if [ ! -d "$PG_HOME" ]; then
  mkdir -p "$PG_HOME"
fi
if is_root; then chown postgres:postgres "$PG_HOME"; fi
chmod 700 "$PG_HOME"
as_owner mkdir -p "$SOCKETS"

if [ ! -f "$DATA/PG_VERSION" ]; then
  log "creating a cluster in $DATA (owner $OWNER, $("$BINDIR/postgres" --version))"
  # trust on the socket is safe: the socket's folder is open to the owner only. Over TCP
  # every client needs a password (scram-sha-256).
  as_owner "$BINDIR/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 >"$PG_HOME/initdb.log" 2>&1 \
    || { tail -n 20 "$PG_HOME/initdb.log" >&2; die "initdb failed (log: $PG_HOME/initdb.log)"; }
  as_owner sh -c "printf '%s\n' \"include_if_exists = 'bastion.conf'\" >> '$DATA/postgresql.conf'"
fi

if ! running; then
  # Rewritten on every start, so BASTION_PG_PORT and a moved folder take effect.
  as_owner sh -c "cat > '$DATA/bastion.conf'" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCKETS'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  log "starting PostgreSQL on 127.0.0.1:$PORT (log: $PG_HOME/server.log)"
  if ! as_owner "$BINDIR/pg_ctl" -D "$DATA" -l "$PG_HOME/server.log" -w -t 60 start >/dev/null; then
    tail -n 20 "$PG_HOME/server.log" >&2 || true
    die "PostgreSQL did not start (is port $PORT taken? set BASTION_PG_PORT)"
  fi
fi

# postmaster.pid's 4th line is the port the running server listens on.
running_port="$(sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true)"
if [ -n "$running_port" ] && [ "$running_port" != "$PORT" ]; then
  die "the cluster in $DATA runs on port $running_port, not $PORT: run '$0 stop' first to change BASTION_PG_PORT"
fi

for _ in $(seq 1 60); do
  if as_owner "$BINDIR/pg_isready" -q -h "$SOCKETS" -p "$PORT"; then break; fi
  sleep 0.5
done
as_owner "$BINDIR/pg_isready" -q -h "$SOCKETS" -p "$PORT" || die "PostgreSQL does not answer on port $PORT"

# -- role and database ------------------------------------------------------------------------
new_password=""
if [ ! -s "$PASSWORD_FILE" ]; then
  # hex: safe in a URL and in SQL without quoting troubles
  new_password="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  (umask 077 && printf '%s\n' "$new_password" >"$PASSWORD_FILE")
fi
password="$(cat "$PASSWORD_FILE")"

if [ "$(psql_admin -tA -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
  log "creating role $ROLE"
  psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$password'"
elif [ -n "$new_password" ] || ! PGPASSWORD="$password" "$BINDIR/psql" -X -q -w -h 127.0.0.1 \
  -p "$PORT" -U "$ROLE" -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
  log "setting the password of role $ROLE"
  psql_admin -c "ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$password'"
fi

# The tests drop their throwaway databases WITH (FORCE); an autovacuum worker that happens to
# be in one then needs terminating too, which takes pg_signal_backend (not superuser).
if [ "$(psql_admin -tA -c "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member \
    JOIN pg_roles g ON g.oid = m.roleid WHERE r.rolname = '$ROLE' AND g.rolname = 'pg_signal_backend'")" != 1 ]; then
  psql_admin -c "GRANT pg_signal_backend TO $ROLE"
fi

if [ "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
  log "creating database $DATABASE"
  psql_admin -c "CREATE DATABASE $DATABASE OWNER $ROLE"
fi

url
