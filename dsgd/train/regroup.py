"""Resume with another split of the workers over ranks, or with another number of workers.

A checkpoint holds one file per rank with the rows of that rank's K workers. Results do not
depend on the split (ranks x workers per rank), so a run saved as 4 x 2 continues as 2 x 4 or
8 x 1 bit for bit: each new rank takes its workers' rows from whichever old files hold them.
Counters kept per rank (traffic, seconds, the training-loss window) are combined so the totals
reported at the next evaluation continue where they were.

Resizing (another number of workers, opt-in) is not exact: global workers 0..min(n_old, n_new)-1
keep their state, the others are dropped or start from the average of the old workers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch


@dataclass(frozen=True)
class Regroup:
    """The old ranks' saved states of one component, and which global workers this rank now holds.

    old[r] is old rank r's state of the component; old rank r held workers r*old_K .. r*old_K+old_K-1.
    """

    old: Sequence[dict]
    old_K: int
    first: int        # first global worker of this rank in the new layout
    K: int            # workers of this rank in the new layout
    rank: int         # this rank in the new layout

    @property
    def n_old(self) -> int:
        return len(self.old) * self.old_K

    @property
    def kept(self) -> int:
        """How many of this rank's workers existed in the old run (they come first)."""
        return max(0, min(self.first + self.K, self.n_old) - self.first)

    @property
    def new(self) -> int:
        """How many of this rank's workers did not exist in the old run."""
        return self.K - self.kept

    def pieces(self) -> list[tuple[int, int, int]]:
        """(old rank, lo, hi): this rank's kept workers are rows lo:hi of those old ranks, in order."""
        out, w, end = [], self.first, self.first + self.kept
        while w < end:
            r, lo = divmod(w, self.old_K)
            hi = min(self.old_K, lo + end - w)
            out.append((r, lo, hi))
            w += hi - lo
        return out

    def owner(self) -> int:
        """The old rank that held this rank's first worker (rank 0 when that worker is new)."""
        return self.first // self.old_K if self.kept else 0

    def rows(self, get: Callable[[dict], torch.Tensor], fill: Callable[[], torch.Tensor] | None = None
             ) -> torch.Tensor:
        """This rank's rows of a per-worker tensor (rows = workers), new workers' rows from fill()."""
        parts = [get(self.old[r])[lo:hi] for r, lo, hi in self.pieces()]
        if self.new:
            row = fill()
            parts.append(row.unsqueeze(0).expand(self.new, *row.shape))
        return torch.cat(parts).clone()

    def items(self, get: Callable[[dict], list], fill: Callable[[], object] | None = None) -> list:
        """This rank's entries of a per-worker list, new workers' entries from fill()."""
        out = [x for r, lo, hi in self.pieces() for x in get(self.old[r])[lo:hi]]
        return out + [fill() for _ in range(self.new)]

    def mean_row(self, get: Callable[[dict], torch.Tensor]) -> torch.Tensor:
        """The average over every old worker of a per-worker tensor (summed in float64, in worker order)."""
        total = None
        for state in self.old:
            s = get(state).double().sum(0)
            total = s if total is None else total + s
        return (total / self.n_old).to(get(self.old[0]).dtype)

    def mean_counter(self, get: Callable[[dict], float]) -> float:
        """A per-rank counter reported as its mean over ranks: each new rank starts from the old mean."""
        return sum(float(get(s)) for s in self.old) / len(self.old)

    def sum_on_rank0(self, get: Callable[[dict], float]) -> float:
        """A per-rank counter reported as its sum over ranks: rank 0 carries the old total."""
        return sum(float(get(s)) for s in self.old) if self.rank == 0 else 0.0


def zeroed_optimizer_state(saved: dict) -> dict:
    """An optimizer state with every tensor zeroed (momentum, Adam moments, step counts): for
    SGD without dampening and for AdamW this acts exactly like an empty state, and it keeps the
    tensors that mixing optimizer state expects on every worker."""
    state = {idx: {k: torch.zeros_like(v) if isinstance(v, torch.Tensor) else (0 if k == "step" else v)
                   for k, v in entry.items()}
             for idx, entry in saved["state"].items()}
    return {"state": state, "param_groups": [dict(g) for g in saved["param_groups"]]}
