#!/usr/bin/env bash
# Make sure a Docker engine answers on /var/run/docker.sock: install Debian's docker.io if
# dockerd is missing, start dockerd in the background if nothing answers, then wait for it.
# Idempotent: does nothing when an engine already answers.
set -euo pipefail

STATE_DIR="${BASTION_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/bastion}"
mkdir -p "$STATE_DIR"

log() { printf '[docker-engine] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

engine_answers() { docker info >/dev/null 2>&1; }

if engine_answers; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing Debian's docker.io (dockerd, containerd, runc)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq docker.io >/dev/null
fi

if ! command -v docker >/dev/null 2>&1; then
  log "no docker client on PATH after installing docker.io" ; exit 1
fi

log "starting dockerd (log: $STATE_DIR/dockerd.log)"
# setsid: the engine must outlive this script and the shell that called it.
# Called directly (not through the as_root function, which would run in a subshell) so that
# $! is dockerd's own PID, the one to stop it by.
if [ "$(id -u)" -eq 0 ]; then
  setsid dockerd --host unix:///var/run/docker.sock >"$STATE_DIR/dockerd.log" 2>&1 </dev/null &
else
  sudo setsid dockerd --host unix:///var/run/docker.sock >"$STATE_DIR/dockerd.log" 2>&1 </dev/null &
fi
echo $! >"$STATE_DIR/dockerd.pid"

for _ in $(seq 1 120); do
  if engine_answers; then
    log "engine ready"
    exit 0
  fi
  sleep 0.5
done
log "dockerd did not answer within 60 s; last lines of its log:"
tail -n 30 "$STATE_DIR/dockerd.log" >&2 || true
exit 1
