#!/usr/bin/env bash
# Install the system packages jobmesh's tests use, with apt-get, when missing:
#   graphviz (dot), chromium (GUI tests), openssh-server (SSH tests),
#   slurmctld/slurmd/slurm-client (Slurm tests), docker-compose (compose file check),
#   nodejs (the GUI's job-event rule checked against the Python one).
# Needs root for apt-get; without it, says what to install and goes on.
set -euo pipefail
need=()
command -v dot >/dev/null 2>&1 || need+=(graphviz)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/sbin/sshd ] || need+=(openssh-server openssh-client)
command -v slurmctld >/dev/null 2>&1 || need+=(slurmctld slurmd slurm-client)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v node >/dev/null 2>&1 || need+=(nodejs)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "jobmesh: please install: ${need[*]} (e.g. sudo apt-get install ${need[*]})" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "jobmesh: installing ${need[*]} with apt-get" >&2
apt-get update -q -o DPkg::Lock::Timeout=300 >/dev/null
# --no-install-recommends: docker-compose would otherwise pull a whole Docker engine.
apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${need[@]}" >/dev/null
