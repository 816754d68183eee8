"""Rank 1 raises while the others wait in a collective: the job must end, not hang."""
from mpi4py import MPI

comm = MPI.COMM_WORLD
if comm.rank == 1:
    raise RuntimeError("deliberate failure on rank 1")
comm.barrier()
