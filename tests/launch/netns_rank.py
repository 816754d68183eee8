"""One rank of the namespace-cluster test: report where it runs, then talk to the others.

    launch/dsgd-mpirun -np 3 --hostfile HOSTFILE ... -- python tests/launch/netns_rank.py
"""
import shutil
import socket
import subprocess

from mpi4py import MPI


def ipv4_addresses() -> list:
    """Global IPv4 addresses of this process's network namespace."""
    ip = shutil.which("ip") or "/usr/sbin/ip"
    out = subprocess.run([ip, "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=True).stdout
    return sorted(line.split()[3].split("/")[0] for line in out.splitlines())


comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
addresses = ",".join(ipv4_addresses())
# A ring exchange: each rank learns its left neighbour's address over TCP.
left = comm.sendrecv(addresses, dest=(rank + 1) % size, source=(rank - 1) % size)
total = comm.allreduce(rank + 1, op=MPI.SUM)
print(f"rank {rank} of {size} host {socket.gethostname()} addr {addresses} left {left} "
      f"allreduce {total}", flush=True)
