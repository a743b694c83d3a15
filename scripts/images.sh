#!/usr/bin/env bash
# Build the local images the demo and the tests use, because no public registry is reachable
# here: a busybox image from Debian's busybox-static, and a Debian bookworm image with python3
# and git made by debootstrap. Each is built only when `docker image inspect` says it is missing.
set -euo pipefail

BUSYBOX_IMAGE="${BASTION_BUSYBOX_IMAGE:-bastion/busybox:latest}"
PYTHON_IMAGE="${BASTION_PYTHON_IMAGE:-bastion/python:3.11}"

log() { printf '[images] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

workdir="$(mktemp -d)"
trap 'as_root rm -rf "$workdir"' EXIT

if ! have_image "$BUSYBOX_IMAGE"; then
  apt_install busybox-static
  root="$workdir/busybox"
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/root"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$BUSYBOX_IMAGE" >/dev/null
  log "built $BUSYBOX_IMAGE"
fi

if ! have_image "$PYTHON_IMAGE"; then
  apt_install debootstrap
  root="$workdir/bookworm"
  log "debootstrap bookworm with python3 and git (about a minute)"
  as_root debootstrap --variant=minbase --include=python3,git,ca-certificates bookworm "$root" \
    >"$workdir/debootstrap.log" 2>&1 || { tail -n 30 "$workdir/debootstrap.log" >&2; exit 1; }
  as_root rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
  as_root tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$PYTHON_IMAGE" >/dev/null
  log "built $PYTHON_IMAGE"
fi
