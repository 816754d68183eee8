"""Every rank contributes its rank; all must see n(n-1)/2.  mpirun -np 4 python -m mpi4py smoke_allreduce.py"""
from mpi4py import MPI

comm = MPI.COMM_WORLD
total = comm.allreduce(comm.rank)
assert total == comm.size * (comm.size - 1) // 2, total
if comm.rank == 0:
    print("smoke ok", comm.size)
