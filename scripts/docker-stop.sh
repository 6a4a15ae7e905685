#!/usr/bin/env bash
# Stop the Docker engine scripts/start-docker.sh started (by the pid in its pidfile), and
# remove its bridge. The data root (/var/lib/jobmesh-docker, the machine-wide image cache)
# stays unless --purge is given. Containers still running stop with the engine.
set -euo pipefail
RUN=${JOBMESH_DOCKER_RUN:-/run/jobmesh-docker}
ROOT=${JOBMESH_DOCKER_ROOT:-/var/lib/jobmesh-docker}
pidfile=$RUN/dockerd.pid
if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  pid=$(cat "$pidfile")
  kill "$pid"
  deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "docker-stop: dockerd $pid did not stop within 60 s" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "docker-stop: dockerd $pid stopped" >&2
else
  echo "docker-stop: jobmesh's dockerd is not running" >&2
fi
ip link del docker0 2>/dev/null || true
# the engine leaves its default network namespace mounted
for m in "$RUN"/exec/netns/*; do
  [ -e "$m" ] && umount "$m" 2>/dev/null || true
done
if [ "${1:-}" = --purge ]; then
  rm -rf "$ROOT" "$RUN"
  echo "docker-stop: removed $ROOT (the image cache)" >&2
fi
