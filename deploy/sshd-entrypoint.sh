#!/bin/sh
# Start sshd for the jobmesh-sshd image. /keys is a volume shared (read-only) with the
# SSH executor, which mounts it as its ~/.ssh:
#   id_ed25519, id_ed25519.pub  the executor's key pair, made once (kept in the volume)
#   known_hosts                 "<name> <this host's key>", written at every start
# The host key is made at the first start of each container; the client key is the only
# one allowed to log in (as jobmesh). SSHD_NAMES: the names the executor uses for this
# host (default: the compose service name, sshd).
set -eu
[ -s /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
if [ ! -s /keys/id_ed25519 ]; then
  rm -f /keys/id_ed25519 /keys/id_ed25519.pub
  ssh-keygen -q -t ed25519 -N '' -C jobmesh-executor -f /keys/id_ed25519
fi
chown 10001:10001 /keys/id_ed25519 /keys/id_ed25519.pub
chmod 600 /keys/id_ed25519
mkdir -p /etc/ssh/authorized_keys
cp /keys/id_ed25519.pub /etc/ssh/authorized_keys/jobmesh
chmod 644 /etc/ssh/authorized_keys/jobmesh
key=$(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)
: >/keys/known_hosts.new
for name in ${SSHD_NAMES:-sshd}; do echo "$name $key" >>/keys/known_hosts.new; done
chmod 644 /keys/known_hosts.new
mv /keys/known_hosts.new /keys/known_hosts
chmod 755 /keys
exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config
