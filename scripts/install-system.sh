#!/usr/bin/env bash
# Install the system packages jobmesh's tests and graphs use, with apt-get, when missing.
# Needs root for apt-get; without it, says what to install and goes on.
set -euo pipefail
need=()
command -v dot >/dev/null 2>&1 || need+=(graphviz)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "jobmesh: please install: ${need[*]} (e.g. sudo apt-get install ${need[*]})" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "jobmesh: installing ${need[*]} with apt-get" >&2
apt-get update -q -o DPkg::Lock::Timeout=300 >/dev/null
apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${need[@]}" >/dev/null
