#!/usr/bin/env bash
# Set up this checkout for development, the demo and the tests, from a clean clone:
#   1. git (Debian's package, if missing)
#   2. Python 3.11 or newer (found, not installed: the script says what to install)
#   3. .venv in the repository, with `pip install -e '.[dev]'` redone only when pyproject.toml
#      changed since the last successful install (its hash is kept in .venv/.setup-stamp)
#   4. a Docker engine that answers (scripts/docker-engine.sh)
#   5. the local images bastion/busybox:latest and bastion/python:3.11 (scripts/images.sh)
# Idempotent: a second run changes nothing and takes about a second.
# Run it as root, or as a user who may use sudo (for apt-get and dockerd) and the Docker
# socket (the `docker` group). BASTION_PYTHON=/path/to/python3.x picks the interpreter.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
STAMP="$VENV/.setup-stamp"

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "root is needed for: $* (run as root, or install sudo)"
  fi
}

apt_updated=""
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* yourself, then run again"
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# True when "$1" runs and is Python 3.11 or newer. pyenv shims exist for versions that are
# not installed and fail when run, so each candidate is run, not only looked up.
python_ok() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

find_python() {
  if [ -n "${BASTION_PYTHON:-}" ]; then
    python_ok "$BASTION_PYTHON" || die "BASTION_PYTHON=$BASTION_PYTHON is not a Python 3.11+"
    printf '%s\n' "$BASTION_PYTHON"
    return
  fi
  local candidate
  for candidate in python3.11 python3.12 python3.13 python3.14 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
      command -v "$candidate"
      return
    fi
  done
  die "no Python 3.11 or newer found on PATH. On Debian 12: apt-get install python3 python3-venv;
        elsewhere install Python 3.11+, or point BASTION_PYTHON at one"
}

py_version() { "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])'; }

started=$SECONDS
cd "$REPO"

# -- 1. git ------------------------------------------------------------------------------------
if ! command -v git >/dev/null 2>&1; then
  log "installing git"
  apt_install git
fi

# -- 2 and 3. Python and the virtual environment ------------------------------------------------
if [ -e "$VENV" ] && ! python_ok "$VENV/bin/python"; then
  # e.g. the interpreter it was made from was upgraded or removed
  log ".venv does not run a Python 3.11+ any more: making it again"
  rm -rf "$VENV"
fi

if [ ! -e "$VENV" ]; then
  python="$(find_python)"
  log "creating .venv with $python ($(py_version "$python"))"
  if ! venv_errors="$("$python" -m venv "$VENV" 2>&1)"; then
    rm -rf "$VENV"
    # Debian ships the venv module (and ensurepip) in a package of its own.
    short="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    case "$(readlink -f "$python")" in
      /usr/bin/*)
        log "python's venv module is missing: installing python$short-venv"
        apt_install "python$short-venv"
        "$python" -m venv "$VENV"
        ;;
      *)
        printf '%s\n' "$venv_errors" >&2
        die "could not create .venv with $python"
        ;;
    esac
  fi
else
  log ".venv: Python $(py_version "$VENV/bin/python")"
fi

wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
installed="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$wanted" != "$installed" ] || [ ! -x "$VENV/bin/bastion" ]; then
  log "installing bastion and its dev tools into .venv (pip install -e '.[dev]')"
  # pip's and setuptools' chatter goes to a log, shown only when the install fails.
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -e '.[dev]' \
    >"$VENV/pip-install.log" 2>&1; then
    tail -n 40 "$VENV/pip-install.log" >&2
    die "pip install -e '.[dev]' failed (whole log: $VENV/pip-install.log)"
  fi
  # Written only after pip succeeded: a failed install is retried on the next run.
  printf '%s\n' "$wanted" >"$STAMP"
else
  log "python packages: up to date with pyproject.toml"
fi
# Byte-compile Bastion's own modules: with an editable install and PYTHONDONTWRITEBYTECODE set
# (as on these machines), every `bastion` command would otherwise compile them again, about
# 50 ms each start. Python still reads .pyc files when that variable is set. Cheap when fresh.
"$VENV/bin/python" -m compileall -q "$REPO/src" >/dev/null || true

# -- 4. Docker engine -------------------------------------------------------------------------
# A non-root user without access to a running engine's socket would otherwise make
# docker-engine.sh start a second dockerd; say what is wrong instead.
if [ "$(id -u)" -ne 0 ] && [ -z "${DOCKER_HOST:-}" ] && [ -S /var/run/docker.sock ] \
  && [ ! -w /var/run/docker.sock ]; then
  die "a Docker engine runs, but $(id -un) may not use /var/run/docker.sock: add yourself to the
        docker group (sudo usermod -aG docker $(id -un)), log in again, then run this again"
fi
"$REPO/scripts/docker-engine.sh"
log "docker engine: answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"

# -- 5. local images ----------------------------------------------------------------------------
"$REPO/scripts/images.sh"
log "local images: ${BASTION_BUSYBOX_IMAGE:-bastion/busybox:latest}, ${BASTION_PYTHON_IMAGE:-bastion/python:3.11}"

log "ready in $((SECONDS - started)) s"
