"""Every rank contributes its rank; all must see n(n-1)/2, and the launcher's size variable must say n.
mpirun -np 4 python -m mpi4py smoke_allreduce.py"""
import os

from mpi4py import MPI

comm = MPI.COMM_WORLD
total = comm.allreduce(comm.rank)
assert total == comm.size * (comm.size - 1) // 2, total
assert int(os.environ.get("OMPI_COMM_WORLD_SIZE", comm.size)) == comm.size, os.environ["OMPI_COMM_WORLD_SIZE"]
if comm.rank == 0:
    print("smoke ok", comm.size)
