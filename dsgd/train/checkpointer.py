"""Saving a run's per-rank state as one checkpoint, and restoring it, in the same or another layout."""
from __future__ import annotations

from pathlib import Path

import torch

from dsgd.elastic.inject import die_if_due
from dsgd.train import build
from dsgd.train import checkpoint as ckpt
from dsgd.train.regroup import Regroup


def check_worker_count(old_ranks: int, old_K: int, size: int, K: int, resize: bool) -> None:
    """A resume keeps the number of workers (ranks x workers per rank) unless --resize true says otherwise."""
    if old_ranks * old_K == size * K or resize:
        return
    same = (f"--workers-per-rank {old_ranks * old_K // size} for the same {old_ranks * old_K} workers, or "
            if (old_ranks * old_K) % size == 0 else "")
    raise ckpt.CheckpointError(
        f"cannot resume: the checkpoint has {old_ranks * old_K} workers ({old_ranks} ranks x {old_K}), "
        f"this run has {size * K} ({size} x {K}); give {same}--resize true to continue with {size * K} workers "
        f"(not bit-exact)")


class Checkpointer:
    """The run's components (each saves and restores its own state) written under `out`.

    Args:
        components: name -> object with state_dict / load_state_dict / regroup_state.
        agree_finite: (bad, what) -> None, raising on every rank when any rank's parameters are bad.
    """

    def __init__(self, cfg, parts, comm, out: Path, log, components: dict, agree_finite, history=None):
        self.cfg, self.p, self.comm, self.out, self.log = cfg, parts, comm, out, log
        self.components, self.agree_finite = components, agree_finite
        self.history = history   # an elastic run's changes of membership (dsgd.train.elastic.History), or None
        self.events = []   # metrics rows to log once training goes on (a resize)

    def meta(self) -> dict:
        c = self.cfg
        return {"world_size": self.comm.size, "workers_per_rank": c.run.workers_per_rank,
                "algorithm": c.algo.algorithm, "topology": c.gossip.topology if build.uses_topology(c) else None,
                "seed": c.run.seed, "model": c.model.model, "dataset": c.data.dataset, "batch_size": c.run.batch_size,
                "partition": c.data.partition,
                "context": c.data.context if getattr(self.p.train_set, "task", "") == "next-token" else None,
                **({"elastic": self.history.as_dict()} if self.history is not None else {})}

    def save(self, step: int) -> None:
        """Every rank writes its workers and hashes them as they are written; rank 0 then writes the
        checkpoint's manifest with every rank's checksum and names it the latest."""
        self.p.engine.finish_all()
        w = self.p.workers
        self.agree_finite(not all(bool(torch.isfinite(b).all()) for b in w.params),
                          f"parameters are not finite at step {step} (not checkpointing them)")
        state = {name: part.state_dict() for name, part in self.components.items()}
        state.update(rng=ckpt.rng_state(), meta=self.meta())
        written = ckpt.save_rank(self.out, step, self.comm.rank, state)
        die_if_due("checkpoint", step)
        self.comm.barrier()
        files = self.comm.allgather_object(written)
        if self.comm.rank == 0:
            ckpt.write_manifest(self.out, step, self.comm.size, self.meta(), self.cfg.run.keep_checkpoints,
                                pinned={0, *self.p.lr.decay_points}, files=files)
            ckpt.drop_rank_files_past(self.out, step, self.comm.size)
        self.comm.barrier()

    def restore(self, resume: str) -> int:
        """Load the checkpoint `resume` names into the components; returns its step."""
        choice = ckpt.choose(resume)
        ckpt_dir, manifest = choice.ckpt_dir, choice.manifest
        if choice.note:
            self.log.info(choice.note)
        # the chosen checkpoint's own settings (a run resumed in another layout saves later ones in that)
        mine, theirs = self.meta(), ckpt.load_rank(ckpt_dir, 0, mmap=True, manifest=manifest)["meta"]
        theirs = {"partition": "iid", "context": None, **theirs}  # checkpoints from before these existed
        for key in ("algorithm", "topology", "seed", "model", "dataset", "batch_size", "partition", "context"):
            if theirs.get(key) != mine[key]:
                raise ckpt.CheckpointError(f"cannot resume: the checkpoint has {key}={theirs.get(key)!r}, "
                                           f"this run has {key}={mine[key]!r}")
        old_ranks, old_K = int(theirs["world_size"]), int(theirs["workers_per_rank"])
        size, K, n = self.comm.size, self.cfg.run.workers_per_rank, self.p.plan.n_workers
        resized = old_ranks * old_K != n
        check_worker_count(old_ranks, old_K, size, K, self.cfg.run.resize)
        if (old_ranks, old_K) == (size, K):
            state = ckpt.load_rank(ckpt_dir, self.comm.rank, manifest=manifest)
            for name, part in self.components.items():
                part.load_state_dict(state[name])
        else:
            state = self._regroup(ckpt_dir, manifest, old_ranks, old_K, resized)
        ckpt.restore_rng(state["rng"])
        step = int(state["step"])
        if self.comm.rank == 0:  # continued in the run's own directory, its rows so far are there
            in_place = Path(ckpt_dir).resolve().parents[1] == Path(self.log.out).resolve()
            self.log.truncate_after(step, in_place=in_place)
        how = "" if (old_ranks, old_K) == (size, K) else f" (saved as {old_ranks} ranks x {old_K} workers)"
        self.log.info(f"resumed from {ckpt_dir} at step {step}{how}")
        if resized:
            self.log.info(f"resized from {old_ranks * old_K} to {n} workers at step {step}: workers "
                          f"{min(n, old_ranks * old_K)}.. are new (the average model) or dropped; the rule's "
                          f"own state restarts and data is re-partitioned over {n} workers")
            self.events.append({"step": step, "event": "resize", "workers_before": old_ranks * old_K,
                                "workers_after": n})
        self.cfg.run.resize = False  # it applies to this resume; config.yaml must not carry it to the next
        return step

    def _regroup(self, ckpt_dir: Path, manifest: dict, old_ranks: int, old_K: int, resized: bool) -> dict:
        """Load another layout's checkpoint: this rank's workers' rows from whichever old files hold
        them (mapped, so only those rows are read). Returns the old file whose RNG state and step
        this rank continues with."""
        old = [ckpt.load_rank(ckpt_dir, r, mmap=True, manifest=manifest) for r in range(old_ranks)]
        first, K = self.comm.rank * self.cfg.run.workers_per_rank, self.cfg.run.workers_per_rank
        for name, part in self.components.items():
            if name == "rule" and resized:
                continue  # its recursion's invariants hold for the old set of workers only
            g = Regroup([s[name] for s in old], old_K, first, K, self.comm.rank)
            part.load_state_dict(part.regroup_state(g))
        if resized:
            self.p.rule.attach(self.p.engine)  # a fresh state, built from the workers as they are now
        return old[Regroup(old, old_K, first, K, self.comm.rank).owner()]
