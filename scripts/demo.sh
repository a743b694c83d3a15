#!/usr/bin/env bash
# The newcomer's first command. Sets everything up (scripts/setup.sh), then shows Bastion's
# main job end to end on this machine:
#   1. starts `bastion server --dev --with-runner` (SQLite and logs in .bastion-demo/, a runner
#      inside the server process, listening on 127.0.0.1 only), or reuses the one a previous
#      run started;
#   2. creates the repository demo/greeter on the server's local forge and stores the demo's
#      (fake) secret, encrypted;
#   3. pushes examples/greeter to it: the push is the webhook, the server builds it;
#   4. follows the build live (`bastion build logs --follow`) and says where to look next.
#
#   scripts/demo.sh          the demo above
#   scripts/demo.sh exec     the same pipeline with `bastion exec`, without a server
#   scripts/demo.sh stop     stop the demo server
#
# Exit code: 0 when the build passed, 1 when it failed, other values when the set-up failed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${BASTION_DEMO_DIR:-$REPO/.bastion-demo}"
PORT="${BASTION_DEMO_PORT:-8765}"
SERVER="http://127.0.0.1:$PORT"
BASTION="$REPO/.venv/bin/bastion"
PYTHON="$REPO/.venv/bin/python"
EXAMPLE="$REPO/examples/greeter"
SLUG="demo/greeter"

say() { printf '\n[demo] %s\n' "$*" >&2; }

server_pid() { [ -f "$DATA/server.pid" ] && cat "$DATA/server.pid" || true; }

healthy() {
  "$PYTHON" - "$SERVER/healthz" <<'PY' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

stop_server() {
  local pid
  pid="$(server_pid)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    say "stopped the demo server (PID $pid)"
  else
    say "no demo server is running"
  fi
  rm -f "$DATA/server.pid"
}

case "${1:-}" in
  stop)
    stop_server
    exit 0
    ;;
  exec)
    shift
    "$REPO/scripts/setup.sh"
    cd "$EXAMPLE"
    say "bastion exec in examples/greeter, secrets from demo.secrets"
    # --branch main: the publish step runs on main only, and bastion exec would otherwise take
    # the branch of this checkout, which may be a feature branch.
    exec "$BASTION" exec --branch main --secret-file demo.secrets "$@"
    ;;
  "") ;;
  *)
    echo "usage: scripts/demo.sh [exec [bastion exec options] | stop]" >&2
    exit 2
    ;;
esac

"$REPO/scripts/setup.sh"
mkdir -p "$DATA"
chmod 700 "$DATA"

# 1. The server, with a runner inside it.
pid="$(server_pid)"
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && healthy; then
  say "reusing the demo server at $SERVER (PID $pid)"
else
  say "starting bastion server --dev --with-runner on $SERVER (log: $DATA/server.log)"
  # setsid: the server outlives this script, so that the API and CLI can be explored after.
  setsid "$BASTION" server --dev --with-runner --host 127.0.0.1 --port "$PORT" \
    --data-dir "$DATA" >"$DATA/server.log" 2>&1 </dev/null &
  echo $! >"$DATA/server.pid"
  for _ in $(seq 1 120); do
    healthy && break
    if ! kill -0 "$(server_pid)" 2>/dev/null; then
      tail -n 30 "$DATA/server.log" >&2
      say "the server did not start (see above)"
      exit 1
    fi
    sleep 0.5
  done
  healthy || { tail -n 30 "$DATA/server.log" >&2; say "the server did not answer in 60 s"; exit 1; }
fi

export BASTION_SERVER="$SERVER"
export BASTION_TOKEN_FILE="$DATA/admin.token"

# 2. The repository on the local forge, and its secret.
if "$BASTION" repo info "$SLUG" >/dev/null 2>&1; then
  say "repository $SLUG exists"
else
  say "bastion repo create $SLUG"
  "$BASTION" repo create "$SLUG"
fi
secret_file="$(mktemp)"
work="$(mktemp -d)"
trap 'rm -rf "$secret_file" "$work"' EXIT
sed -n 's/^greeter_token=//p' "$EXAMPLE/demo.secrets" | tr -d '\n' >"$secret_file"
"$BASTION" secret add --repository "$SLUG" --name greeter_token --data-file "$secret_file" \
  >/dev/null
say "stored the secret greeter_token (encrypted; only the publish step receives it)"

# 3. Push the example: the local forge's post-receive hook asks the server for a build.
before="$("$BASTION" build ls "$SLUG" --format json | "$PYTHON" -c \
  'import json,sys; b=json.load(sys.stdin); print(max([x["number"] for x in b], default=0))')"
cp -R "$EXAMPLE/." "$work/"
rm -f "$work/demo.secrets"
git -C "$work" init -q -b main
git -C "$work" add -A
git -C "$work" -c user.name="Bastion demo" -c user.email=demo@localhost \
  commit -q -m "greeter: demo build $(date -u +%FT%TZ)"
say "git push $DATA/repos/$SLUG.git main"
git -C "$work" push --force "$DATA/repos/$SLUG.git" main 2>&1 | sed 's/^/  /' >&2

number=""
for _ in $(seq 1 60); do
  number="$("$BASTION" build ls "$SLUG" --format json | "$PYTHON" -c \
    'import json,sys; b=json.load(sys.stdin); n=max([x["number"] for x in b], default=0); print(n if n > '"$before"' else "")')"
  [ -n "$number" ] && break
  sleep 0.5
done
[ -n "$number" ] || { say "no build appeared; see $DATA/server.log"; exit 1; }

# 4. Follow it live, then show the result.
say "bastion build logs $SLUG $number --follow"
"$BASTION" build logs "$SLUG" "$number" --follow
"$BASTION" build info "$SLUG" "$number"
status="$("$BASTION" build info "$SLUG" "$number" --format json | "$PYTHON" -c \
  'import json,sys; print(json.load(sys.stdin)["status"])')"

cat >&2 <<EOF

[demo] build $number of $SLUG: $status

Where to look next (the server keeps running, PID $(server_pid)):
  API            $SERVER/api/repos/$SLUG/builds/$number   (docs: $SERVER/docs)
  CLI            export BASTION_SERVER=$SERVER BASTION_TOKEN_FILE=$DATA/admin.token
                 $BASTION build ls $SLUG
                 $BASTION build logs $SLUG $number 1 4
                 $BASTION repo info $SLUG
  push again     git push to $DATA/repos/$SLUG.git builds again
  stop           scripts/demo.sh stop
EOF
[ "$status" = success ]
