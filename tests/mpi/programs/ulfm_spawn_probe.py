"""What Open MPI's fault tolerance does with spawned processes, with mpi4py alone (no dsgd): the
probe behind docs/elastic.md's replacements. Not run by the suite.

    mpirun --with-ft ulfm --prtemca state_base_recoverable 1 --prtemca state_base_notify_errors 1 \\
        --allow-run-as-root -np 4 --map-by slot:OVERSUBSCRIBE --mca btl ^ofi \\
        python -m mpi4py tests/mpi/programs/ulfm_spawn_probe.py --kill o2,g1,o0

Phase 1 kills --kill's first victim among the ranks mpirun started; after each phase the survivors
shrink, spawn one process (MPI_Comm_spawn over the shrunk communicator), merge, and the next phase
kills the next victim: oR is the rank R mpirun started, gG the process spawned G-th. Each phase is
one allreduce with ERRORS_RETURN: on an error the process revokes, all agree, and shrink. --no-connect
leaves out the one-message exchange between every old and every new process after a merge (without
it, a spawned process killed at its first phase left the survivors waiting: a revoke did not reach
the ones that had never talked to it). --finalize ends the spawned processes with MPI_Finalize
instead of os._exit (it can wait forever). Every process prints what it saw; rank 0 at the end
prints "probe ok: ..." when the last allreduce counted everyone.
"""
import argparse
import os
import signal
import sys
import time

from mpi4py import MPI

ap = argparse.ArgumentParser()
ap.add_argument("--kill", default="o2,g1", help="victims, one per phase: oR or gG")
ap.add_argument("--no-connect", action="store_true")
ap.add_argument("--finalize", action="store_true")
args = ap.parse_args()
victims = args.kill.split(",")


def say(*what):
    print(f"[{ME} pid {os.getpid()}]", *what, flush=True)


def phase(comm, name, victim):
    """One allreduce; VICTIM kills itself first. Repeated on the shrunk communicator until it works."""
    while True:
        if victim == ME:
            say(name, "kills itself")
            os.kill(os.getpid(), signal.SIGKILL)
        ok, total = 1, None
        try:
            total = comm.allreduce(1)
        except MPI.Exception as e:
            ok = 0
            say(name, "allreduce:", e.Get_error_string())
            comm.Revoke()
        try:
            ok = comm.Agree(ok)
        except MPI.Exception as e:
            say(name, "agree:", e.Get_error_string())
            ok = 0
        if ok:
            return comm, total
        if not comm.Is_revoked():
            comm.Revoke()
        comm, victim = comm.Shrink(), None
        comm.Set_errhandler(MPI.ERRORS_RETURN)
        say(name, f"shrunk to {comm.Get_size()}")


def connect(comm, first_new):
    me, n = comm.Get_rank(), comm.Get_size()
    reqs, keep = [], []
    for p in (range(n) if me >= first_new else range(first_new, n)):
        if p != me:
            out, into = bytearray(1), bytearray(1)
            keep += [out, into]
            reqs += [comm.Isend([out, MPI.BYTE], dest=p, tag=7), comm.Irecv([into, MPI.BYTE], source=p, tag=7)]
    MPI.Request.Waitall(reqs)


def settle(comm):
    """A barrier after the merge; a process that passed it may already be dying (the next phase
    notices), so an error here is not one."""
    try:
        comm.Barrier()
    except MPI.Exception as e:
        say("barrier after the merge:", e.Get_error_string())


def grow(comm, generation):
    t = time.monotonic()
    inter = comm.Spawn(sys.executable, sys.orig_argv[1:], maxprocs=1, root=0)
    inter.Set_errhandler(MPI.ERRORS_RETURN)
    if comm.Get_rank() == 0:
        inter.send(generation, dest=0)
    merged = inter.Merge(high=False)
    merged.Set_errhandler(MPI.ERRORS_RETURN)
    inter.Free()
    if not args.no_connect:
        connect(merged, comm.Get_size())
    settle(merged)
    if merged.Get_rank() == 0:
        say(f"spawned g{generation} and merged: {merged.Get_size()} processes, {time.monotonic() - t:.2f}s")
    return merged


parent = MPI.Comm.Get_parent()
if parent == MPI.COMM_NULL:
    ME = f"o{MPI.COMM_WORLD.Get_rank()}"
    comm = MPI.COMM_WORLD.Dup()
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    comm.Barrier()
    comm, _ = phase(comm, "phase 1", victims[0])
    comm, first = grow(comm, 1), 2
else:
    parent.Set_errhandler(MPI.ERRORS_RETURN)
    generation = parent.recv(source=0)
    ME = f"g{generation}"
    first_new = parent.Get_remote_size()
    comm = parent.Merge(high=True)
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    parent.Free()
    if not args.no_connect:
        connect(comm, first_new)
    settle(comm)
    say(f"joined as rank {comm.Get_rank()} of {comm.Get_size()}")
    first = generation + 1
for k in range(first, len(victims) + 1):
    comm, _ = phase(comm, f"phase {k}", victims[k - 1])
    comm = grow(comm, k)
comm, total = phase(comm, "last", None)
if comm.Get_rank() == 0:
    print(f"probe ok: the last allreduce counted {total} of {comm.Get_size()} processes", flush=True)
sys.stdout.flush()
if args.finalize and ME.startswith("g"):
    MPI.Finalize()
    say("finalized")
os._exit(0)
