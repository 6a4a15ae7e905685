#!/usr/bin/env bash
# fetch-data: a step of the paper's workflow. It reports progress the cloudmesh-cc way.
set -euo pipefail
echo "# cloudmesh status=running progress=1 pid=$$"
for p in 25 50 75; do
  sleep 0.3
  echo "# cloudmesh status=running progress=$p pid=$$"
done
echo "fetch-data ran on $(hostname) as $(whoami)"
echo "# cloudmesh status=done progress=100 pid=$$"
