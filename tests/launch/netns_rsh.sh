#!/bin/sh
# Open MPI "rsh agent" that reaches a network namespace on this machine instead of a
# remote host, so a hostfile of namespace addresses behaves like a small cluster.
#
#   netns_rsh.sh [ssh-style options] HOST COMMAND...
#
# DSGD_NETNS_HOSTS="ADDR=NAMESPACE ..." maps each hostfile address to its namespace.
# Like an ssh login, the command starts from a fresh environment; it also gets its own
# hostname (the namespace name), because Open MPI tells nodes apart by hostname.
set -eu
while [ $# -gt 0 ]; do
  case "$1" in -*) shift ;; *) break ;; esac
done
if [ $# -lt 2 ]; then echo "netns_rsh: usage: netns_rsh.sh HOST COMMAND..." >&2; exit 2; fi
host=$1
shift
ns=""
for pair in ${DSGD_NETNS_HOSTS:-}; do
  if [ "${pair%%=*}" = "$host" ]; then ns=${pair#*=}; fi
done
if [ -z "$ns" ]; then echo "netns_rsh: no namespace for host $host" >&2; exit 255; fi
exec ip netns exec "$ns" unshare --uts \
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="${HOME:-/root}" \
  sh -c "hostname $ns && $*"
