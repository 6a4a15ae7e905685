#!/usr/bin/env bash
# Pack examples/paper into the GUI's "Load example" archive:
#   services/gateway/static/example-paper.tar.gz
# The GUI fetches it and uploads it like any archive, so the gateway needs no extra route.
# It sits at the top of static/ so the package data glob "static/*" ships it.
# Reproducible: sorted names, fixed owner and mtime, gzip without a timestamp.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/examples/paper"
out="$root/services/gateway/static/example-paper.tar.gz"
tar --sort=name --mtime='@0' --owner=0 --group=0 --numeric-owner --exclude='__pycache__' \
    -C "$src" -cf - . | gzip -n -9 > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote ${out#"$root"/} ($(wc -c < "$out") bytes)"
