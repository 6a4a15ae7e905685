#!/usr/bin/env bash
# Build jobmesh's container images (what `make images` runs), so that
#   docker-compose -f deploy/compose.yml up -d
# starts the stack with no pull and no build:
#   jobmesh-scheduler, jobmesh-monitor, jobmesh-executor, jobmesh-gateway (deploy/Dockerfile),
#   the NATS image (NATS_IMAGE) and jobmesh-sshd (deploy/Dockerfile.sshd: the SSH host of
#   deploy/compose.ssh.yml; SSHD=0 leaves it out).
#
# Bases (BASES=auto|registry|local; auto tries the registry once, then builds locally):
#   registry  python:3.11-slim-bookworm and nats:2.10-alpine, pulled as usual
#   local     no registry (as in jobmesh's CI): a Debian bookworm base made with
#             mmdebstrap (or debootstrap) from the machine's Debian mirror (Python 3.11, a venv with pip),
#             and a NATS image from deploy/Dockerfile.nats (nats-server 2.10, ~20 MB);
#             the NATS image's name is then written to deploy/.env (NATS_IMAGE=...), which
#             compose reads.
# Variables: BASES, NATS_IMAGE (nats:2.10-alpine), PYTHON_IMAGE (python:3.11-slim-bookworm),
#   LOCAL_NATS_IMAGE (jobmesh-nats:2.10), LOCAL_PYTHON_IMAGE (jobmesh-python:3.11-bookworm),
#   NOTEBOOK (1: the executor runs .ipynb jobs), DEBIAN_MIRROR, REBUILD_BASE=1 (make the
#   local base again even when it exists), IMAGES (which services; all four by default).
# The engine: $DOCKER_HOST, or the one scripts/start-docker.sh starts (root Linux).
set -euo pipefail
cd "$(dirname "$0")/.."
BASES=${BASES:-auto}
NATS_IMAGE=${NATS_IMAGE:-nats:2.10-alpine}
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
LOCAL_NATS_IMAGE=${LOCAL_NATS_IMAGE:-jobmesh-nats:2.10}
LOCAL_PYTHON_IMAGE=${LOCAL_PYTHON_IMAGE:-jobmesh-python:3.11-bookworm}
NOTEBOOK=${NOTEBOOK:-1}
SSHD=${SSHD:-1}
IMAGES=${IMAGES:-scheduler monitor executor gateway}
say() { echo "images: $*" >&2; }
t0=$SECONDS
stamp() { say "$1 ($((SECONDS - t0)) s)"; }

DOCKER_HOST=$(bash scripts/start-docker.sh)
export DOCKER_HOST
# The builder: BuildKit builds the images side by side (buildx, or the BuildKit built into
# a Docker 18.09-22 client such as Debian's /usr/bin/docker); else the classic builder, one
# image after the other. BUILDER=buildkit|classic forces one.
DOCKER=(docker)
BUILDER=${BUILDER:-auto}
if [ "$BUILDER" = auto ]; then
  BUILDER=classic
  if docker buildx version >/dev/null 2>&1; then
    BUILDER=buildkit
  else
    for cli in /usr/bin/docker $(command -v docker); do
      v=$("$cli" version --format '{{.Client.Version}}' 2>/dev/null || true)
      if [ "${v%%.*}" -ge 18 ] 2>/dev/null && [ "${v%%.*}" -le 22 ]; then
        BUILDER=buildkit DOCKER=("$cli")
        break
      fi
    done
  fi
fi
if [ "$BUILDER" = buildkit ]; then export DOCKER_BUILDKIT=1; else export DOCKER_BUILDKIT=0; fi
say "builder: $BUILDER (${DOCKER[*]})"

have() { docker image inspect "$1" >/dev/null 2>&1; }
pull() { have "$1" || timeout 300 docker pull -q "$1" >/dev/null 2>&1; }

if [ "$BASES" = auto ]; then
  if pull "$PYTHON_IMAGE" && pull "$NATS_IMAGE"; then BASES=registry; else BASES=local; fi
  say "bases: $BASES"
fi

debian_mirror() {
  [ -n "${DEBIAN_MIRROR:-}" ] && { echo "$DEBIAN_MIRROR"; return; }
  local uri
  uri=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -z "$uri" ] && uri=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# A stand-in for python:3.11-slim-bookworm, from Debian's packages: Python 3.11 with `python`
# and `pip` on PATH (a venv in /usr/local/py), apt for packages such as graphviz, no docs.
local_python_base() {
  if have "$LOCAL_PYTHON_IMAGE" && [ "${REBUILD_BASE:-0}" != 1 ]; then
    say "base $LOCAL_PYTHON_IMAGE exists (REBUILD_BASE=1 makes it again)"
    return
  fi
  local dir mirror pkgs=python3,python3-venv,ca-certificates
  dir=$(mktemp -d /var/tmp/jobmesh-rootfs.XXXXXX)
  trap 'rm -rf "$dir"' RETURN
  mirror=$(debian_mirror)
  # mmdebstrap (apt's parallel downloads, one dpkg run: ~50 s here) when it is there,
  # else debootstrap (~80-180 s); both make a minbase bookworm from Debian's packages.
  if command -v mmdebstrap >/dev/null; then
    say "mmdebstrap bookworm from $mirror"
    mmdebstrap --variant=minbase --include=$pkgs \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-include=/usr/share/locale/locale.alias' \
      bookworm "$dir/root" "$mirror" >"$dir/bootstrap.log" 2>&1 \
      || { tail -n 20 "$dir/bootstrap.log" >&2; exit 1; }
  elif command -v debootstrap >/dev/null; then
    say "debootstrap bookworm from $mirror"
    debootstrap --variant=minbase --include=$pkgs \
      bookworm "$dir/root" "$mirror" >"$dir/bootstrap.log" 2>&1 \
      || { tail -n 20 "$dir/bootstrap.log" >&2; exit 1; }
  else
    say "neither mmdebstrap nor debootstrap is installed (scripts/start-docker.sh installs both)"
    exit 1
  fi
  local r=$dir/root
  # the machine's CA bundle: pip and apt inside builds go out through the same network
  cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
  chroot "$r" /usr/bin/python3 -m venv /usr/local/py
  cat >"$r/etc/dpkg/dpkg.cfg.d/01-jobmesh-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  echo 'APT::Install-Recommends "false";' >"$r/etc/apt/apt.conf.d/01-jobmesh-norecommends"
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
    "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/var/log/*
  find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  find "$r" -xdev -name __pycache__ -type d -prune -exec rm -rf {} +
  tar -C "$r" -c . | docker import \
    --change 'ENV PATH=/usr/local/py/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    - "$LOCAL_PYTHON_IMAGE" >/dev/null
}

# The build context: only what deploy/Dockerfile copies (the classic builder reads no
# deploy/Dockerfile.dockerignore), streamed as a tar.
context() {
  tar -c --exclude=__pycache__ --exclude='*.pyc' --exclude=deploy/.env \
    pyproject.toml README.md libs services deploy
}

build() {  # build TAG [docker build args...]: quiet, the log shown only on failure
  local tag=$1 log
  shift
  log=$(mktemp)
  if ! "${DOCKER[@]}" build --network host -t "$tag" "$@" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -f "$log"
    say "building $tag failed"
    exit 1
  fi
  rm -f "$log"
  stamp "built $tag"
}

service() {  # build the image of one service (a target of deploy/Dockerfile)
  context | build "jobmesh-$1:latest" --build-arg PYTHON_IMAGE="$base" \
    --build-arg NOTEBOOK="$NOTEBOOK" -f deploy/Dockerfile --target "$1" -
}

sshd_image() {  # the SSH host of deploy/compose.ssh.yml (its context: deploy/)
  build jobmesh-sshd:latest --build-arg PYTHON_IMAGE="$base" -f deploy/Dockerfile.sshd deploy
}

if [ "$BASES" = local ]; then
  local_python_base
  stamp "base $LOCAL_PYTHON_IMAGE"
  base=$LOCAL_PYTHON_IMAGE
  nats=$LOCAL_NATS_IMAGE
else
  pull "$PYTHON_IMAGE" || { say "cannot pull $PYTHON_IMAGE (BASES=local builds without a registry)"; exit 1; }
  pull "$NATS_IMAGE" || { say "cannot pull $NATS_IMAGE"; exit 1; }
  base=$PYTHON_IMAGE
  nats=$NATS_IMAGE
fi

set -- $IMAGES
if [ "$BUILDER" = buildkit ]; then
  # The first image builds the stages all of them share (the wheel, the base with the
  # common dependencies); the rest then build side by side on that cache.
  service "$1"
  shift
  pids=()
  if [ "$BASES" = local ]; then
    build "$nats" --build-arg PYTHON_IMAGE="$base" -f deploy/Dockerfile.nats deploy &
    pids+=($!)
  fi
  for svc in "$@"; do service "$svc" & pids+=($!); done
  if [ "$SSHD" = 1 ]; then sshd_image & pids+=($!); fi
  failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  [ $failed = 0 ] || { say "a build failed (above)"; exit 1; }
else
  [ "$BASES" = local ] && build "$nats" --build-arg PYTHON_IMAGE="$base" -f deploy/Dockerfile.nats deploy
  for svc in "$@"; do service "$svc"; done
  if [ "$SSHD" = 1 ]; then sshd_image; fi
fi

# compose reads deploy/.env: point NATS_IMAGE at the image this machine has.
envfile=deploy/.env
if [ "$nats" != "nats:2.10-alpine" ] || { [ -f "$envfile" ] && grep -q '^NATS_IMAGE=' "$envfile"; }; then
  touch "$envfile"
  grep -v '^NATS_IMAGE=' "$envfile" >"$envfile.tmp" || true
  echo "NATS_IMAGE=$nats" >>"$envfile.tmp"
  mv "$envfile.tmp" "$envfile"
  say "deploy/.env: NATS_IMAGE=$nats"
fi
docker image prune -f >/dev/null   # the superseded layers of earlier builds
docker images --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' \
  | grep -E "^(jobmesh-|${nats%%:*}:)" | sort >&2
stamp "done"
