"""MPI's fault-tolerant communicators (ULFM): what elastic training asks of the network.

A dead peer shows up in the survivors as an MPI exception of class ERR_PROC_FAILED (or
ERR_REVOKED, once another survivor revoked the communicator). Survivors then agree on one flag
(MPI_Comm_agree works on a revoked communicator and gives every survivor the same answer, or the
same ERR_PROC_FAILED), and shrink the communicator to the survivors. Nothing here decides when to
train or what a rule's state becomes (dsgd.elastic does); this module only moves the flags.

Open MPI 5 has it when started as `mpirun --with-ft ulfm ...`.
"""
from __future__ import annotations

import os
from typing import Optional

NO_FAULT_TOLERANCE = ("elastic mode needs an MPI with fault tolerance (ULFM) turned on: start the job with "
                      "`mpirun --with-ft ulfm` (Open MPI 5)")


def fault_tolerance_problem(MPI) -> Optional[str]:
    """Why this MPI cannot survive a lost rank, in one line, or None when it can.

    Open MPI builds ULFM in but turns it on only under `mpirun --with-ft ulfm`, which sets the MCA
    parameter mpi_ft_enable for the ranks; without it a dead rank ends the whole job. Other MPIs
    are asked directly: an agreement on COMM_SELF must work.
    """
    if not all(hasattr(MPI.Comm, name) for name in ("Agree", "Shrink", "Revoke")):
        return f"{NO_FAULT_TOLERANCE}; this mpi4py has no Comm.Agree/Shrink/Revoke"
    if "open mpi" in MPI.Get_library_version().lower():
        enabled = os.environ.get("OMPI_MCA_mpi_ft_enable", "").strip().lower()
        if enabled not in ("1", "true", "yes", "enabled", "t", "y"):
            return f"{NO_FAULT_TOLERANCE}; this job was started without it"
    try:
        MPI.COMM_SELF.Agree(1)
    except (NotImplementedError, MPI.Exception) as e:
        return f"{NO_FAULT_TOLERANCE}; the library refused an agreement ({type(e).__name__})"
    return None


def fault_tolerant_comm(MPI, comm=None):
    """A duplicate of COMM (default COMM_WORLD) whose errors come back as exceptions: each elastic
    world owns its communicator, so revoking it touches no other."""
    comm = (comm if comm is not None else MPI.COMM_WORLD).Dup()
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    return comm


def is_process_failure(exc: BaseException, comm=None) -> bool:
    """EXC is MPI's way of saying a peer died (or that a survivor revoked the communicator for it).

    Other classes (ERR_IN_STATUS from a wait on several requests, ERR_OTHER from a barrier) count
    when COMM is revoked or knows of a dead rank."""
    try:
        from mpi4py import MPI
    except ImportError:  # pragma: no cover - no MPI, no MPI failures
        return False
    if not isinstance(exc, MPI.Exception):
        return False
    kind = exc.Get_error_class()
    if kind in (MPI.ERR_PROC_FAILED, MPI.ERR_PROC_FAILED_PENDING, MPI.ERR_REVOKED):
        return True
    # a wait on several requests says ERR_IN_STATUS, and some collectives (a barrier) ERR_OTHER: a
    # failure when COMM is revoked or knows of a dead rank
    return comm is not None and (comm.Is_revoked() or comm.Get_failed().Get_size() > 0)


def revoke(comm) -> None:
    """Interrupt every survivor still waiting on COMM (a send that never came); revoking twice is harmless."""
    if not comm.Is_revoked():
        comm.Revoke()


def agree(comm, ok: bool) -> bool:
    """Whether every survivor of COMM says OK, the same answer everywhere. An agreement that noticed
    a dead rank raises ERR_PROC_FAILED at every survivor alike (failures are never acknowledged on
    a working communicator), so that reads as "not OK" too."""
    try:
        return bool(comm.Agree(int(bool(ok))))
    except Exception as e:  # noqa: BLE001 - only MPI's failure classes are expected here
        if is_process_failure(e, comm):
            return False
        raise


def shrink(MPI, comm):
    """(the survivors' communicator, their ranks in COMM in new-rank order): collective over the
    survivors of a (revoked) COMM. The new communicator returns errors, as COMM did."""
    revoke(comm)
    new = comm.Shrink()
    new.Set_errhandler(MPI.ERRORS_RETURN)
    old_ranks = MPI.Group.Translate_ranks(new.Get_group(), list(range(new.Get_size())), comm.Get_group())
    return new, [int(r) for r in old_ranks]


# -- replacements: dynamic processes joined to a running fault-tolerant job ----------------------
# Open MPI 5.0.11, tried under `mpirun --with-ft ulfm` (docs/elastic.md has the record): survivors
# that shrank their communicator can MPI_Comm_spawn a process over it and merge the intercommunicator;
# the merged communicator survives later failures (revoke, agree, shrink) with two conditions:
# - the launcher must treat the spawned job as `--with-ft` treats the first one, which it does only
#   when started with `--prtemca state_base_recoverable 1 --prtemca state_base_notify_errors 1`
#   (otherwise a replacement that dies, or leaves without MPI_Finalize, ends or hangs the job);
# - every survivor must hold a connection to every new process before anyone can fail: a revoke did
#   not reach the survivors that had never exchanged a message with a replacement that then died
#   (3 jobs in 4 hung), and reached every one in 10 of 10 once each pair had exchanged a message.

# environment variables of the launch itself, which the launcher sets anew for the spawned process,
# and the device a rank was given (a replacement may land elsewhere)
LAUNCH_ENV_PREFIXES = ("OMPI_", "PMIX_", "PRTE_", "OPAL_", "HWLOC_")
PER_PROCESS_ENV = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")


def can_spawn(MPI) -> Optional[str]:
    """Why this MPI cannot start replacements (one line), or None."""
    if not hasattr(MPI.Comm, "Get_parent") or not hasattr(MPI.Intracomm, "Spawn"):
        return "replacements need MPI's dynamic processes (MPI_Comm_spawn); this mpi4py has none"
    return None


def environment_args(environ=None) -> list:
    """NAME=value for each variable of ENVIRON (default: this process's) a spawned process should
    have too: the launcher gives it the environment mpirun itself was started with, not the one
    `mpirun -x` gave the ranks (PYTHONPATH, OMP_NUM_THREADS...). An info key cannot carry them
    (PMIX_ENVAR: at most MPI_MAX_INFO_VAL = 256 characters here), `env NAME=value ... program` can."""
    environ = os.environ if environ is None else environ
    return [f"{k}={v}" for k, v in environ.items()
            if k and "=" not in k and not k.startswith(LAUNCH_ENV_PREFIXES) and k not in PER_PROCESS_ENV]


def spawn(MPI, comm, count: int, command: str, args) -> object:
    """COUNT new processes running COMMAND ARGS with this process's environment (`environment_args`,
    through the `env` program) in its working directory, started collectively by the survivors in
    COMM (root 0); the intercommunicator to them, errors returned."""
    import shutil
    env = shutil.which("env") or "/usr/bin/env"
    inter = comm.Spawn(env, [*environment_args(), command, *args], maxprocs=int(count), root=0)
    inter.Set_errhandler(MPI.ERRORS_RETURN)
    return inter


def parent(MPI):
    """The intercommunicator to the job that spawned this process, errors returned; None in a
    process mpirun started."""
    comm = MPI.Comm.Get_parent()
    if comm == MPI.COMM_NULL:
        return None
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    return comm


def merge(MPI, inter, joining: bool):
    """One intracommunicator of both sides of INTER: the side already running first (its ranks
    keep their order), the joining processes after it; errors returned. INTER is freed."""
    merged = inter.Merge(high=bool(joining))
    merged.Set_errhandler(MPI.ERRORS_RETURN)
    inter.Free()
    return merged


CONNECT_TAG = 32002


def connect(MPI, comm, first_new: int) -> None:
    """Exchange one byte between every new process (ranks FIRST_NEW..) and every rank of COMM, so
    that each such pair holds a connection before any of them can fail (see the note above)."""
    me, n = comm.Get_rank(), comm.Get_size()
    peers = range(n) if me >= first_new else range(first_new, n)
    reqs, keep = [], []
    for p in peers:
        if p != me:
            out, into = bytearray(1), bytearray(1)
            keep += [out, into]
            reqs.append(comm.Isend([out, MPI.BYTE], dest=p, tag=CONNECT_TAG))
            reqs.append(comm.Irecv([into, MPI.BYTE], source=p, tag=CONNECT_TAG))
    MPI.Request.Waitall(reqs)
