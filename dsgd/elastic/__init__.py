"""Elastic gossip: training that goes on over the survivors when an MPI rank dies.

    world = dsgd.start("mpi", elastic=True)      # under `mpirun --with-ft ulfm`
    opt = dsgd.DecentralizedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), model,
                                      dsgd.algorithms.dsgd("ring"), world)
    ...                                           # the same loop; opt.membership lists the changes

A failed step is redone on the survivors (dsgd.elastic.guard), over the same graph family rebuilt
at the new number of workers or a ring (dsgd.elastic.topology), with each rule's state made
consistent for the survivors (dsgd.elastic.state). With `dsgd.start(..., replace=True)` new processes
take the lost ranks' places (dsgd.elastic.join). docs/elastic.md has the whole story.
"""
from __future__ import annotations

from .guard import ElasticGuard, MembershipChange
from .join import MembershipJoin, leave
from .state import register
from .topology import rebuild as rebuild_topology


def elastic_communicator(backend: str):
    """The communicator of an elastic world, or ValueError / RuntimeError in one line where the
    backend or the MPI cannot survive a lost rank (checked at start, not at the first failure)."""
    if backend != "mpi":
        raise ValueError(f"elastic=True needs the mpi backend (MPI's fault-tolerant communicators); "
                         f"backend {backend!r} cannot survive a lost rank")
    from mpi4py import MPI
    from dsgd.comm import ulfm
    from dsgd.comm.mpi import MPICommunicator
    problem = ulfm.fault_tolerance_problem(MPI)
    if problem is not None:
        raise RuntimeError(problem)
    return MPICommunicator(ulfm.fault_tolerant_comm(MPI))


__all__ = ["ElasticGuard", "MembershipChange", "MembershipJoin", "elastic_communicator", "leave", "rebuild_topology",
           "register"]
