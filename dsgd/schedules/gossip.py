"""D-SGD: gossip with a graph's W every H steps, optionally with an exact average every H_global steps."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Action, mixing_step, uniform


@dataclass(frozen=True)
class Gossip:
    """Decentralized SGD over a `topologies.Topology`.

    The g-th gossip round uses W(g), so time-varying graphs advance once per round.
    combine_first selects combine-then-adapt; the default is adapt-then-combine.
    """

    topology: object
    local_steps: int = 1
    global_every: int = 0
    combine_first: bool = False

    def __post_init__(self):
        if self.local_steps < 1:
            raise ValueError(f"gossip every H steps needs H >= 1, got {self.local_steps}")
        if self.global_every < 0:
            raise ValueError(f"global averaging period must be >= 0, got {self.global_every}")

    @property
    def n_workers(self) -> int:
        return self.topology.n

    def action(self, step: int) -> Action:
        H = self.local_steps
        if self.global_every and (step + 1) % self.global_every == 0:
            return Action(param_W=uniform(self.n_workers), combine_first=self.combine_first,
                          sync=True, local_steps=H)
        if (step + 1) % H:
            return Action(local_steps=H)
        return Action(param_W=mixing_step(self.topology, (step + 1) // H - 1), combine_first=self.combine_first,
                      local_steps=H)
