#!/usr/bin/env bash
# compute: a step of the paper's workflow. It reports progress the cloudmesh-cc way.
set -euo pipefail
echo "# cloudmesh status=running progress=1 pid=$$"
steps=0
for p in 25 50 75; do
  sleep 0.3
  steps=$((steps + 1))
  echo "# cloudmesh status=running progress=$p pid=$$"
done
echo "compute ran on $(hostname) as $(whoami)"
echo "# jobmesh output steps=$steps"   # the README's analyze job prints it
echo "# cloudmesh status=done progress=100 pid=$$"
