#!/bin/sh
# Start nats-server for deploy/compose.yml, with clients' token from $JOBMESH_NATS_TOKEN.
#
# The token goes into the server's config as a quoted string. A config could say
# `token: $JOBMESH_NATS_TOKEN`, but NATS parses a variable's value as a config value, so a
# token such as `12k` (a size), `true`, `-x` or `2024-01` (a date) made the server exit
# at start (compose then reported the node "unhealthy"). Arguments go to nats-server.
# Settings: NATS_CONF (/etc/nats/jobmesh.conf, without an authorization block),
# NATS_RUN_CONF (/tmp/jobmesh-nats.conf, the config the server runs with, mode 0600).
set -eu
conf=${NATS_CONF:-/etc/nats/jobmesh.conf}
run=${NATS_RUN_CONF:-/tmp/jobmesh-nats.conf}
token=${JOBMESH_NATS_TOKEN:-}
case $token in
  "")
    echo "nats: JOBMESH_NATS_TOKEN is empty; set one in deploy/.env" \
         "(e.g. JOBMESH_NATS_TOKEN=\$(openssl rand -hex 24))" >&2
    exit 2 ;;
  *[!A-Za-z0-9_.~+/=:@%,-]*)
    echo "nats: JOBMESH_NATS_TOKEN may hold only letters, digits and - _ . ~ + / = : @ % ," \
         "(no spaces, quotes, backslashes or \$); e.g. \$(openssl rand -hex 24)" >&2
    exit 2 ;;
esac
umask 077
{
  while IFS= read -r line || [ -n "$line" ]; do printf '%s\n' "$line"; done <"$conf"
  printf 'authorization {\n  token: "%s"\n}\n' "$token"
} >"$run"
exec nats-server --config "$run" "$@"
