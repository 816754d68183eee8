"""An algorithm is a rule: the state it keeps beside the parameters, its local arithmetic around
communication, and a pure schedule of which buffers are mixed with which W at step t.

The training loop calls `rule.step(t, engine)` once per step, after every worker's gradient at
its current parameters is in `engine.grads`. The engine is the rule's only way to touch the
workers and the network; it never tells the rule what to do.

Arithmetic on (K, m) buckets uses only elementwise multiply, add, subtract and divide (never a
fused `add_(..., alpha=)`): each element then goes through the same IEEE operations however the
workers are spread over processes, so results do not depend on the layout.
"""
from __future__ import annotations

from typing import Optional, Protocol, Sequence

import numpy as np
import torch

from dsgd.schedules import Action

Buffers = list  # list[torch.Tensor], one (K, m) tensor per bucket of the parameter layout


class Pending(Protocol):
    def wait(self) -> None: ...


class Engine(Protocol):
    """What a rule may use; `dsgd.rules.engine.WorkerEngine` is the one the trainer and the library give."""

    K: int
    params: Buffers   # the workers' parameters: the models' own storage
    grads: Buffers    # the gradient each worker just computed at `params`

    def new_buffers(self) -> Buffers:
        """Zeros laid out like the parameters (mixed, checkpointed and counted alike)."""

    def new_scalars(self, value: float) -> Buffers:
        """One (K, 1) float64 buffer filled with value (a per-worker scalar such as push-sum's weight)."""

    def lr(self, t: int) -> float: ...

    def views(self, buffers: Buffers, k: int) -> list:
        """Worker k's rows of buffers laid out like the parameters, as tensors shaped like them."""

    def slots(self) -> list:
        """(bucket, offset, numel) of each parameter tensor, in model order."""

    def start(self, W: np.ndarray, buffers: Sequence[torch.Tensor]) -> Pending:
        """Start mixing buffers; the rule waits on the returned step when it needs the result."""

    def decayed_gradients(self) -> Buffers:
        """New buffers g + weight_decay * x (the decay the optimizer settings ask for)."""

    def optimizer_step(self) -> None:
        """The workers' own torch optimizers step (SGD with momentum, AdamW...)."""

    def mix(self, W: np.ndarray, buffers: Sequence[torch.Tensor], start_only: bool = False,
            in_worker_order: bool = False) -> Optional[Pending]:
        """x_i <- sum_j W[i, j] x_j for every buffer, in one exchange (in_worker_order: an average summed
        in worker order, the same bit for bit in every layout)."""

    def compressed(self, W: np.ndarray, buffers: Sequence[torch.Tensor], codec, seed: int, step: int):
        """(decoded, mixed): decode(encode(b)) of this rank's rows and W @ decode(encode(B)); only the
        codec's payloads travel, random codecs keyed by (seed, step, worker)."""

    def compressed_many(self, Ws: Sequence[np.ndarray], buffers: Sequence[torch.Tensor], codec, seed: int,
                        step: int):
        """(decoded, [W @ decode(encode(B)) for each W]): the payloads travel once, over the union graph."""

    def mix_statistics(self, W: np.ndarray) -> None:
        """Mix BatchNorm running statistics alone (dense)."""

    def mix_model(self, W: np.ndarray, extra: Sequence[torch.Tensor] = (), start_only: bool = False
                  ) -> Optional[Pending]:
        """Mix the parameters (plus BatchNorm statistics / optimizer state as the policy says) and
        `extra` rule buffers with the same W; the parameters and `extra` travel in one exchange."""


class Rule:
    """Base of every algorithm: a schedule (pure in t) plus state saved through state_dict()."""

    schedule = None

    def attach(self, engine: Engine) -> None:
        """Allocate the rule's state once the workers exist."""

    def step(self, t: int, engine: Engine) -> Optional[Pending]:
        raise NotImplementedError

    def action(self, t: int) -> Action:
        """What the schedule says at step t (also read for metrics: phase, period)."""
        return self.schedule.action(t)

    # -- state -------------------------------------------------------------------------
    buffer_names: tuple[str, ...] = ()   # attributes holding Buffers: rows are the workers
    shared_names: tuple[str, ...] = ()   # those of buffer_names that every worker holds identically
    scalar_names: tuple[str, ...] = ()   # attributes holding plain numbers / flags

    def state_dict(self) -> dict:
        return {"buffers": {n: [b.detach().cpu().clone() for b in getattr(self, n)] for n in self.buffer_names},
                "scalars": {n: getattr(self, n) for n in self.scalar_names}}

    def regroup_state(self, g) -> dict:
        """The state for this rank's workers in another split of the same workers (a `Regroup`)."""
        first = g.old[g.owner()]
        buffers = {n: [first["buffers"][n][i].clone() if n in self.shared_names else
                       g.rows(lambda s, n=n, i=i: s["buffers"][n][i]) for i in range(len(first["buffers"][n]))]
                   for n in self.buffer_names}
        return {"buffers": buffers, "scalars": dict(first["scalars"])}

    def check_state(self, state: dict) -> None:
        """Refuse a state of another rule before anything is loaded (its names are not this rule's)."""
        missing = [n for n in self.buffer_names if n not in state.get("buffers", {})] + \
                  [n for n in self.scalar_names if n not in state.get("scalars", {})]
        if missing:
            raise ValueError(f"not a {type(self).__name__} state: it lacks {', '.join(missing)}")

    def load_state_dict(self, state: dict) -> None:
        self.check_state(state)
        for n in self.buffer_names:
            for b, saved in zip(getattr(self, n), state["buffers"][n]):
                b.copy_(saved)
        for n in self.scalar_names:
            setattr(self, n, state["scalars"][n])


def copies(buffers: Sequence[torch.Tensor]) -> Buffers:
    return [b.clone() for b in buffers]
