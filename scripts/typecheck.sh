#!/usr/bin/env bash
# Type-check jobmesh with mypy. The install maps one import namespace (jobmesh.*) onto the
# folders of the architecture (libs/, services/) through setuptools' package-dir, which
# static tools do not follow; so mypy runs over a tree of symbolic links with the real
# package layout (build/typing/jobmesh), rebuilt each time so new modules are seen.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tree=build/typing
rm -rf "$tree"
mkdir -p "$tree/jobmesh"
for f in libs/jobmesh/*.py; do ln -s "$root/$f" "$tree/jobmesh/"; done
for pair in common:libs/common client:libs/client cli:libs/cli \
            scheduler:services/scheduler executor:services/executor \
            monitor:services/monitor gateway:services/gateway; do
  ln -s "$root/${pair#*:}" "$tree/jobmesh/${pair%%:*}"
done
cd "$tree"
exec "$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" --cache-dir "$root/build/mypy-cache" -p jobmesh "$@"
