#!/bin/sh
# mpirun's "rsh agent" inside the lab: instead of logging in to a remote machine it enters the
# network namespace that plays that host, so the lab's hostfile of addresses acts as a cluster.
#
#   rsh_agent.sh [ssh options, ignored] ADDRESS COMMAND...
#
# DSGD_LAB_HOSTS="ADDRESS=NAMESPACE ..." says which namespace plays which address. As with ssh,
# COMMAND starts from an empty environment; its hostname becomes the namespace's name, because
# Open MPI counts two processes as on one node when their hostnames are equal.
set -eu
while [ $# -gt 0 ]; do
  case "$1" in -*) shift ;; *) break ;; esac
done
if [ $# -lt 2 ]; then echo "dsgd-lab rsh agent: usage: rsh_agent.sh ADDRESS COMMAND..." >&2; exit 2; fi
address=$1
shift
namespace=""
for entry in ${DSGD_LAB_HOSTS:-}; do
  if [ "${entry%%=*}" = "$address" ]; then namespace=${entry#*=}; fi
done
if [ -z "$namespace" ]; then echo "dsgd-lab rsh agent: $address is not a host of this lab" >&2; exit 255; fi
exec ip netns exec "$namespace" unshare --uts \
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="${HOME:-/root}" \
  sh -c "hostname $namespace && $*"
