"""Rank 1 stalls instead of gossiping: rank 0's exchange must time out and name rank 1.

    DSGD_COMM_TIMEOUT=2 mpirun -np 4 python -m mpi4py stalled_neighbour.py
"""
import time

import torch
from mpi4py import MPI

import topologies
from dsgd.comm import Mixer, make_communicator

world = MPI.COMM_WORLD
mixer = Mixer(make_communicator("mpi"), 1)
x = torch.zeros(1, 10)
if world.rank == 1:
    time.sleep(600)  # far longer than the test waits: only the timeout can end the job
else:
    mixer.mix_([x], topologies.build("ring", world.size).W(0))
