#!/bin/sh
# The gateway container: REST API, SSE and GUI on 0.0.0.0:8000. Binding beyond loopback
# needs an API token: JOBMESH_TOKEN, or one made up here and printed once to the log
# (`docker compose logs gateway`); it changes with every restart, so set JOBMESH_TOKEN for
# anything lasting.
set -eu
if [ -z "${JOBMESH_TOKEN:-}" ]; then
    JOBMESH_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')
    export JOBMESH_TOKEN
    echo "jobmesh gateway: no JOBMESH_TOKEN set; the API token for this run is: $JOBMESH_TOKEN" >&2
fi
exec python -m jobmesh.gateway --config /etc/jobmesh/config.yaml \
    --host "${JOBMESH_GATEWAY_HOST:-0.0.0.0}" --port "${JOBMESH_GATEWAY_PORT:-8000}" "$@"
