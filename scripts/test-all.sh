#!/usr/bin/env bash
# `make test`: the whole suite, in three pytest runs (unit + integration, the browser, the
# containers). The container images take minutes to build on a fresh machine (a Debian
# base, pip installs), mostly waiting on the network and the disk; they build in the
# background, niced, while the other tests run, and the container tests then find them
# ready (their own build step takes seconds). Every part runs even when an earlier one
# failed, so one CI run shows everything; the exit code is 1 if any failed.
# JOBMESH_PREBUILD=0 builds the images only when the container tests start.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin
mkdir -p build
bg=
stop_bg() { if [ -n "$bg" ]; then kill -- -"$bg" 2>/dev/null; wait "$bg" 2>/dev/null; bg=; fi; }
trap stop_bg EXIT
trap 'stop_bg; exit 130' INT TERM
if [ "${JOBMESH_PREBUILD:-1}" = 1 ]; then
  # its own process group (setsid), so stopping it stops the docker builds too
  setsid nice -n 10 bash scripts/docker-images.sh >build/images.log 2>&1 &
  bg=$!
  echo "test: building the container images in the background (log: build/images.log)"
fi
rc=0
"$PY"/pytest -q -p no:cacheprovider --durations=30 tests/unit tests/integration || rc=1
# The browser tests run in their own pytest process: Playwright's sync API keeps an event
# loop running in the main thread for the whole session.
"$PY"/pytest -q -p no:cacheprovider tests/browser || rc=1
if [ -n "$bg" ]; then
  if wait "$bg"; then
    echo "test: images ready ($(grep -c . build/images.log) log lines)"
  else  # no engine here (exit 2: the container tests skip and say why), or a build failed
    echo "test: the background image build ended with $?; the container tests try again"
    tail -5 build/images.log
  fi
  bg=
fi
# start-docker.sh exits 2 where no engine can run (not root, not Linux): the tests skip
bash scripts/start-docker.sh >/dev/null || [ $? = 2 ] || rc=1
"$PY"/pytest -q -p no:cacheprovider tests/containers || rc=1
exit $rc
