"""Elastic mode refused at start, in one line, where it cannot apply (here: an MPI job started
without fault tolerance).

    mpirun -np 1 python -m mpi4py elastic_refusal.py      # no --with-ft ulfm
"""
import dsgd

try:
    dsgd.start("mpi", elastic=True)
except RuntimeError as e:
    print(f"refused: {e}", flush=True)
else:
    print("elastic mode was not refused", flush=True)
