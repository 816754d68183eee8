"""`python -m dsgd.train`: parse settings, check them, start the communicator, run the loop.

    mpirun -np 4 python -m dsgd.train --algorithm dsgd --topology ring --epochs 1

Bad settings end every rank with one line on stderr (from rank 0) and status 2, before any
training step. A non-finite loss is agreed by all ranks at the step it happens, so they stop
together (status 3). Any other error on one rank aborts the whole job, so no rank is left
waiting for it, whether or not the ranks were started under `python -m mpi4py`.
"""
from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

from dsgd.config import ConfigError, parse
from dsgd.local_rank import global_rank
from dsgd.train.preempt import SIGNALS as STOP_SIGNALS
from dsgd.train.preempt import STOPPED, Preempted, StopSignal

# Everything that needs torch is imported once the settings are parsed: `--help` and a bad flag
# answer without loading torch.

USAGE_ERROR = 2
RUN_ERROR = 3
INTERNAL_ERROR = 1


def last_checkpoint(out: Path) -> str:
    from dsgd.train.checkpoint import CheckpointError, find
    try:
        _, ckpt_dir, _ = find(str(out))
        return f"the last good checkpoint is {ckpt_dir} (resume with --resume {out})"
    except CheckpointError:
        return "no checkpoint was written"


def fail(rank: int, message: str, status: int = USAGE_ERROR) -> int:
    """An error every rank agrees on: rank 0 says it once, every rank exits with `status`."""
    if rank == 0:
        print(f"dsgd.train: error: {message}", file=sys.stderr, flush=True)
    else:
        time.sleep(0.5)  # let rank 0 print before an exiting rank brings the job down
    return status


def abort_job(status: int, in_process: bool = False) -> None:
    """End every rank of the job now: MPI_Abort when MPI is up, else a plain exit (always a plain
    exit for a run inside the caller's process, whose MPI is not the run's)."""
    MPI = sys.modules.get("mpi4py.MPI")
    if not in_process and MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized() \
            and MPI.COMM_WORLD.Get_size() > 1:  # alone (no mpirun), a plain exit ends the job and says nothing more
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(status)
    sys.exit(status)


def out_of_memory(e: BaseException) -> str | None:
    """How much a failed allocation asked for, in words, when E is one (torch's CPU allocator raises a
    plain RuntimeError); None for any other error."""
    import re
    text = str(e)
    if not (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in text):
        return None
    asked = re.search(r"allocate ([0-9]+) bytes", text) or re.search(r"allocate ([0-9.]+ [KMGT]i?B)", text)
    if asked is None:
        return "a failed allocation"
    amount = asked.group(1)
    return f"an allocation of {int(amount) / 1e9:.3g} GB" if amount.isdigit() else f"an allocation of {amount}"


def agree_on_errors(comm, error: str | None) -> str | None:
    """Setup errors may hit some ranks only (a missing checkpoint file): all ranks learn them."""
    errors = comm.allgather_object(error)
    distinct = list(dict.fromkeys(e for e in errors if e))
    if not distinct:
        return None
    if len(distinct) == 1 and errors.count(distinct[0]) == len(errors):
        return distinct[0]
    return "; ".join(f"rank {errors.index(e)}: {e}" for e in distinct)


def os_problem(e: OSError) -> str:
    """An OSError as one line that names its path ("cannot use RUN/metrics.jsonl: Is a directory")."""
    if e.filename is None:
        return str(e)
    return f"cannot use {e.filename}: {e.strerror or e}"


def claim_run_dir(comm, cfg, ns):
    """Rank 0 locks --out for the whole job, puts back a run that a start killed outright had set
    aside, and only then decides whether this run may write there (moving a run it replaces aside),
    while the other ranks wait, before any rank writes there; its decision is every rank's.
    (claim, error)."""
    from dsgd.train.rundir import uninterrupted
    claim, error = None, None
    try:
        try:
            if comm.rank == 0:
                with uninterrupted():  # a stop signal is raised once `claim` can be rolled back
                    claim = _claim_locked(cfg, ns)
        except ConfigError as e:
            error = str(e)
        except OSError as e:
            error = os_problem(e)
        return claim, comm.allgather_object(error)[0]
    except BaseException as e:  # stopped while claiming, or while the others learn the decision
        if claim is not None and claim.replaced:
            claim.rollback()
            e.put_back_in = claim.out
        raise


def _claim_locked(cfg, ns):
    """Rank 0's part of claim_run_dir. The lock is held until the command ends (`main`)."""
    from dsgd.config import _auto_resume
    from dsgd.train import rundir
    out = Path(cfg.run.out)
    if out.exists() and not out.is_dir():
        raise rundir.RunDirError(f"--out {out} exists and is not a directory: give a directory for the run")
    lock = rundir.RunDirLock(out).acquire()
    for note in (lock.warning and f"warning: {lock.warning}", rundir.recover(out)):
        if note:
            print(f"dsgd.train: {note}", file=sys.stderr, flush=True)
    if ns.auto_fresh and _auto_resume(ns):  # parse's decision, made again now that no other job can change --out
        raise rundir.RunDirError(f"{out} holds a checkpoint now that it did not hold when this job read its "
                                 f"settings (another job ended there, or a run was put back): start the job again, "
                                 f"and --resume auto continues that run")
    if ns.saved:
        rundir.read_settings(Path(ns.saved["run"]["out"]))  # an emptied config.yaml: not a run on defaults
    return rundir.Claim(out, cfg.run.overwrite, ns.saved["run"]["out"] if ns.saved else None, ns.auto_fresh)


def fill_group_size(comm, cfg) -> str | None:
    """`--topology hierarchical` without group=G: one group per node, G = the launcher's ranks on
    this node x workers per rank, the same on every node (else an error naming the counts)."""
    from dsgd.local_rank import local_size
    from topologies.options import parse_spec
    spec = cfg.gossip.topology
    try:
        name, options = parse_spec(spec)
    except Exception:
        return None  # the topology's own check reports it
    if name != "hierarchical" or "group" in options:
        return None
    sizes = comm.allgather_object(local_size())
    if len(set(sizes)) > 1:
        return (f"--topology hierarchical: nodes hold different numbers of ranks ({sorted(set(sizes))}); "
                f"give the group size explicitly, e.g. hierarchical:group=G")
    cfg.gossip.topology = spec + ("," if ":" in spec else ":") + f"group={sizes[0] * cfg.run.workers_per_rank}"
    return None


def setup(cfg, ns, comm=None, in_process=None):
    """Device, communicator and run, with every setup error agreed across ranks. COMM: a communicator
    to run on instead of --backend's (a whole run inside one process: `SelfCommunicator`, or an
    elastic run's fault-tolerant one: then IN_PROCESS is False).

    A run that --overwrite true replaces is deleted only once this one has started: until then any
    error, Ctrl-C or stop signal puts it back."""
    import torch
    from dsgd.comm import Mixer, make_communicator
    from dsgd.device import DeviceError, check_gpu_sharing, device_identity, pick_device
    from dsgd.train import rundir
    in_process = comm is not None if in_process is None else in_process
    error = None
    try:
        device = pick_device(cfg.run.device)
    except DeviceError as e:
        error, device = str(e), torch.device("cpu")
    if comm is None:
        comm = make_communicator(cfg.run.backend, device)
    mixer = Mixer(comm, cfg.run.workers_per_rank)
    identities = comm.allgather_object(device_identity(device))
    try:
        if error is None:
            check_gpu_sharing(identities, cfg.run.share_gpus)
    except DeviceError as e:
        error = str(e)
    error = agree_on_errors(comm, error)
    if error:
        return comm, None, error
    error = agree_on_errors(comm, fill_group_size(comm, cfg))
    if error:
        return comm, None, error
    claim = None
    with rundir.interruptible_start(STOP_SIGNALS):
        try:
            claim, error = claim_run_dir(comm, cfg, ns)
            if error:
                return comm, None, error
            run, error = start_run(cfg, ns, comm, mixer, device)
            if claim is not None:
                claim.rollback() if error else claim.commit()
        except BaseException as e:  # a later signal is ignored: the old run goes back whole
            if claim is not None and claim.replaced:
                claim.rollback()
                e.put_back_in = claim.out
            if isinstance(e, KeyboardInterrupt):
                stopped_while_starting(comm.rank, e, in_process or comm.size == 1)
            raise
    if claim is not None and claim.note:
        print(f"dsgd.train: {claim.note}", file=sys.stderr, flush=True)
    return comm, run, error


def start_run(cfg, ns, comm, mixer, device):
    """Build the run in --out (restored from --resume's checkpoint); (run, the error every rank agrees on)."""
    from dsgd.data.errors import DatasetError
    from dsgd.device import DeviceError
    from dsgd.train import rundir
    from dsgd.train.checkpoint import CheckpointError, find
    out, run, error = Path(cfg.run.out), None, None
    try:
        from dsgd.train.loop import Run, check_worker_count
        history = None
        if ns.resume:  # before building: a topology may not exist for the wrong number of workers
            _, _, manifest = find(ns.resume)
            if "world_size" in manifest and "workers_per_rank" in manifest:
                check_worker_count(int(manifest["world_size"]), int(manifest["workers_per_rank"]), comm.size,
                                   cfg.run.workers_per_rank, cfg.run.resize)
                same_workers = int(manifest["world_size"]) * int(manifest["workers_per_rank"]) == \
                    comm.size * cfg.run.workers_per_rank
                history = manifest.get("elastic") if same_workers else None  # --resize starts the data afresh
        out.mkdir(parents=True, exist_ok=True)
        run = Run(cfg, mixer, out, device, history)
        if ns.resume:
            _, ckpt_dir, manifest = find(ns.resume)
            step, total = int(ckpt_dir.name.split("-")[-1]), run.plan.total_steps
            if step > total:  # before restoring, which drops the metrics rows past the checkpoint
                raise ConfigError(f"cannot resume: the checkpoint is at step {step}, past the {total} steps of "
                                  f"--epochs {cfg.run.epochs:g} (on --resume, --epochs is the new total length)")
            run.restore(ns.resume)
            run.resumed = rundir.resume_record(run.step, ns.saved, cfg.as_dict(),
                                               (int(manifest.get("world_size", comm.size)), comm.size),
                                               cfg.run.workers_per_rank, str(ckpt_dir))
    except (ConfigError, DatasetError, CheckpointError, DeviceError) as e:
        error = str(e)
    except OSError as e:
        error = os_problem(e)
    return run, agree_on_errors(comm, error)


def stopped_while_starting(rank: int, interrupt: KeyboardInterrupt, alone: bool):
    """A stop signal (or Ctrl-C) before the first step: nothing was trained and a run being replaced
    is back in place (`put_back_in`, set where it was put back); rank 0 says so once and the job ends
    as stopped, so that the same command (a requeued job) starts it again. ALONE: no other rank
    waits on this one, so it ends with a plain exit."""
    import signal
    name = signal.Signals(getattr(interrupt, "signum", signal.SIGINT)).name
    put_back = getattr(interrupt, "put_back_in", None)
    if rank == 0:
        back = f": put back the earlier run in {put_back}" if put_back is not None else ""
        print(f"dsgd.train: stopped by {name} while starting, before any training step{back}", file=sys.stderr,
              flush=True)
    else:
        time.sleep(0.5)  # let rank 0 put the run back and print before this rank brings the job down
    abort_job(STOPPED, alone)


def _main(argv: list[str] | None, comm=None) -> int:
    rank = 0 if comm is not None else global_rank()
    try:
        cfg, ns = parse(argv)
        from dsgd.train import build
        build.check(cfg, _world_size())
        build.misplaced_outer_settings(cfg, ns.given)
    except ConfigError as e:
        return fail(rank, str(e))
    if rank == 0:
        for warning in build.ignored_settings(cfg, ns.given):
            print(f"dsgd.train: warning: {warning}", file=sys.stderr, flush=True)
    import os
    if cfg.run.comm_timeout > 0:
        os.environ["DSGD_COMM_TIMEOUT"] = str(cfg.run.comm_timeout)
    from dsgd.comm.mpi import CommTimeout
    from dsgd.train.loop import NonFiniteError
    in_process = comm is not None
    if cfg.run.elastic:  # refused at start where no rank could survive a lost one
        if in_process:
            return fail(rank, "--elastic needs ranks of their own, started by `mpirun --with-ft ulfm`, not a run "
                              "inside one process")
        from dsgd.elastic import elastic_communicator
        try:
            comm = elastic_communicator(cfg.run.backend)
        except (ValueError, RuntimeError) as e:
            return fail(rank, f"--elastic: {e}")
    comm, run, error = setup(cfg, ns, comm, in_process)
    if error:
        return fail(comm.rank, error)
    if comm.rank == 0 and cfg.run.device == "auto" and run.device.type == "cpu":
        print("dsgd: no CUDA device visible, running on cpu", file=sys.stderr, flush=True)  # once per job
    out = Path(cfg.run.out)
    if run.resumed is not None and run.step == run.plan.total_steps:
        if comm.rank == 0:
            print(f"dsgd.train: nothing to do: the run already reached step {run.step} of {run.step}; give a "
                  f"larger --epochs to train longer", flush=True)
        run.log.close()
        return 0
    run.stop = StopSignal().install()
    try:
        row = run.run()
    except Preempted as e:  # agreed: every rank checkpointed this step
        run.log.rank_only(str(e))
        run.log.close()
        ckpt_dir = out / "checkpoints" / f"step-{e.step:08d}"
        if comm.rank == 0:
            print(f"dsgd.train: {e}; checkpoint {ckpt_dir} (resume with --resume {out})", file=sys.stderr, flush=True)
        return STOPPED
    except NonFiniteError as e:  # agreed: every rank stops at the same step
        run.log.rank_only(f"stopped: {e}")
        return fail(comm.rank, f"{e}; {last_checkpoint(out)}", RUN_ERROR)
    except CommTimeout as e:  # this rank alone knows: say so, then end the job
        run.log.rank_only(f"stopped: {e}")
        if speaks_for_the_timeout(comm.rank, comm.size, e.silent):
            print(f"dsgd.train: error: {e}; {last_checkpoint(out)}", file=sys.stderr, flush=True)
        else:
            time.sleep(2.0)  # the rank that speaks ends the job; if it cannot, this one still will
        abort_job(RUN_ERROR, in_process)
    except (MemoryError, RuntimeError) as e:  # a batch, context or model too large for this machine: end the job
        what = out_of_memory(e)
        if what is None:
            raise
        print(f"dsgd.train: error: rank {comm.rank} ran out of memory ({what} failed); a smaller --batch-size "
              f"(or --physical-batch-size), --context or --model needs less; {last_checkpoint(out)}",
              file=sys.stderr, flush=True)
        abort_job(RUN_ERROR, in_process)
    except OSError as e:  # a full disk, a lost mount: what was written atomically is whole; end the job
        where = f" while writing {e.filename}" if e.filename else ""
        print(f"dsgd.train: error: rank {comm.rank}: {e.strerror or e}{where}; {last_checkpoint(out)} once the "
              f"cause is fixed", file=sys.stderr, flush=True)
        abort_job(RUN_ERROR, in_process)
    finally:
        run.stop.restore()
    run.log.close()
    comm = run.comm  # the survivors' after a change of membership
    if comm.rank == 0 and row:
        print(f"final test accuracy {row['test_acc']:.4f} after {row['step']} steps; results in {out}/", flush=True)
    if run.membership is not None and run.membership.changes and not in_process:
        leave_after_failures()
    close = getattr(comm, "close", None)  # a transport with threads of its own ends them here, not at exit
    if close is not None:
        close()
    return 0


def leave_after_failures() -> None:
    """End a survivor of lost ranks now, its work written: Open MPI 5's MPI_Finalize may wait forever
    after a failure (open-mpi/ompi#11404), so the exit skips it."""
    import os
    from dsgd.train.rundir import release_held_locks
    release_held_locks()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def speaks_for_the_timeout(rank: int, size: int, silent: list | None) -> bool:
    """After a timeout every answering rank knows who went silent (the roll call): the lowest of them
    says it once for the job. Without a roll call (another backend), each rank says its own."""
    if silent is None:
        return True
    answering = [r for r in range(size) if r not in silent]
    return not answering or rank == answering[0]


def _world_size() -> int:
    import os
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "WORLD_SIZE", "SLURM_NTASKS"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def main(argv: list[str] | None = None, comm=None) -> int:
    """The command: ARGV are its flags (default sys.argv). COMM runs it on that communicator instead
    of --backend's, e.g. `main([...], comm=SelfCommunicator())` trains every worker in this process."""
    try:
        return _main(argv, comm)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:  # an error on this rank alone: the others must not wait for it forever
        print(f"dsgd.train: internal error on rank {global_rank()}:", file=sys.stderr)
        traceback.print_exc()
        abort_job(INTERNAL_ERROR, comm is not None)
        return INTERNAL_ERROR
    finally:  # the run directory is this command's until it ends, however it ends
        from dsgd.train.rundir import release_held_locks
        release_held_locks()


if __name__ == "__main__":
    sys.exit(main())
