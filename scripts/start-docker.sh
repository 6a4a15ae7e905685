#!/usr/bin/env bash
# Make sure a Docker engine answers, for `make images` and tests/containers. Idempotent.
#
#   DOCKER_HOST=$(scripts/start-docker.sh)      # prints the engine's DOCKER_HOST on stdout
#
# 1. An engine that already answers is used as it is: $DOCKER_HOST, then jobmesh's own
#    (below), then the system's /var/run/docker.sock (a laptop or CI machine with Docker).
# 2. Otherwise, on a root Linux machine, jobmesh starts its own engine, as recorded in
#    shared/recipes.md §8: Debian's docker.io, debootstrap and mmdebstrap (for the local
#    base images) are installed with apt-get
#    when missing, and dockerd runs without touching iptables, its bridges on
#    198.19.0.0/16 (a benchmarking range: nothing real lives there), its socket at
#    /run/jobmesh-docker/docker.sock. Its data root /var/lib/jobmesh-docker is a
#    machine-wide cache of the built images; scripts/docker-stop.sh stops it.
# 3. Otherwise (not root, no apt-get): one line on stderr and exit 2, so callers can skip.
#
# Settings: JOBMESH_DOCKER_RUN (/run/jobmesh-docker), JOBMESH_DOCKER_ROOT
# (/var/lib/jobmesh-docker), JOBMESH_DOCKER_STORAGE (overlay2 when the kernel mounts it,
# else vfs), JOBMESH_DOCKER_WAIT (seconds to wait for the engine, 60).
set -euo pipefail
RUN=${JOBMESH_DOCKER_RUN:-/run/jobmesh-docker}
ROOT=${JOBMESH_DOCKER_ROOT:-/var/lib/jobmesh-docker}
WAIT=${JOBMESH_DOCKER_WAIT:-60}
OURS=unix://$RUN/docker.sock
say() { echo "start-docker: $*" >&2; }

answers() {  # does an engine answer at $1 within a few seconds?
  DOCKER_HOST=$1 timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

for host in ${DOCKER_HOST:-} "$OURS" unix:///var/run/docker.sock; do
  if command -v docker >/dev/null 2>&1 && answers "$host"; then
    echo "$host"
    exit 0
  fi
done

if [ "$(id -u)" != 0 ] || [ "$(uname -s)" != Linux ] || ! command -v apt-get >/dev/null 2>&1; then
  say "no Docker engine answers, and only root on a Debian-like Linux may start one here"
  exit 2
fi

# -- install what is missing ----------------------------------------------------------------
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)   # a faster debootstrap
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q -o DPkg::Lock::Timeout=300 >/dev/null
  # --no-install-recommends: no cgroupfs-mount, no git/xz extras. policy-rc.d (Debian
  # images) keeps the package from starting a daemon of its own.
  apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends \
    $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi

# -- start dockerd ----------------------------------------------------------------------------
mkdir -p "$RUN" "$ROOT"
pidfile=$RUN/dockerd.pid
started=
if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  say "dockerd (pid $(cat "$pidfile")) runs but does not answer yet; waiting"
else
  storage=${JOBMESH_DOCKER_STORAGE:-}
  if [ -z "$storage" ]; then
    if [ -d "$ROOT/vfs" ] && [ ! -d "$ROOT/overlay2" ]; then
      storage=vfs                                     # what this data root was made with
    elif grep -qw overlay /proc/filesystems; then
      storage=overlay2
    else
      storage=vfs
    fi
  fi
  say "starting dockerd ($storage, data root $ROOT, log $RUN/dockerd.log)"
  # setsid: the engine outlives this script and the make or pytest that ran it.
  setsid dockerd --data-root "$ROOT" --exec-root "$RUN/exec" --pidfile "$pidfile" \
    -H "$OURS" --iptables=false --ip6tables=false --storage-driver="$storage" \
    --bip 198.19.0.1/24 --default-address-pool base=198.19.0.0/16,size=24 \
    --log-opt max-size=10m --log-opt max-file=2 \
    </dev/null >"$RUN/dockerd.log" 2>&1 &
  started=$!
fi

deadline=$((SECONDS + WAIT))
until answers "$OURS"; do
  if [ $SECONDS -ge $deadline ]; then
    say "dockerd did not answer within ${WAIT}s; the end of $RUN/dockerd.log:"
    tail -n 20 "$RUN/dockerd.log" >&2 || true
    exit 1
  fi
  if [ -n "$started" ] && ! kill -0 "$started" 2>/dev/null; then
    say "dockerd stopped; the end of $RUN/dockerd.log:"
    tail -n 20 "$RUN/dockerd.log" >&2 || true
    exit 1
  fi
  sleep 0.5
done
say "engine ready at $OURS"
echo "$OURS"
