"""What a model is trained to do: the loss of a batch and what evaluation counts.

The trainer, the batched (vmap) workers, evaluation and the heterogeneity probes see a model's
output only through a task, so a new kind of problem is a new task, not edits to the loop.
Every quantity is a sum over the batch's items plus their count, so chunks of a batch, ranks and
workers combine by adding.

Example:
    >>> import torch
    >>> task = Classification()
    >>> out, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    >>> int(task.hits(out, y)), task.count(y)
    (1, 2)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class Classification:
    """Cross-entropy over (N, classes) logits; a hit is an argmax equal to the label."""

    name = "classification"

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean loss over the batch's items, the value training differentiates."""
        return F.cross_entropy(out, y)

    def loss_sum(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y, reduction="sum")

    def hits(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (out.argmax(-1) == y).sum()

    def count(self, y: torch.Tensor) -> int:
        """Items the loss averages over (samples here; tokens for a language model)."""
        return int(y.numel())

    def extra_metrics(self, prefix: str, loss: float) -> dict:
        """Metrics derived from a mean loss that this task also reports (none for classification)."""
        return {}


class NextToken(Classification):
    """A language model: (N, T, vocabulary) logits against the (N, T) next tokens, every position an item.

    Its accuracy is next-token accuracy; its evaluations also report the perplexity exp(loss).
    """

    name = "next-token"

    def loss(self, out, y):
        return F.cross_entropy(out.flatten(0, -2), y.flatten())

    def loss_sum(self, out, y):
        return F.cross_entropy(out.flatten(0, -2), y.flatten(), reduction="sum")

    def extra_metrics(self, prefix, loss):
        return {f"{prefix}_perplexity": math.exp(min(loss, 700.0))}


TASKS = {"classification": Classification, "next-token": NextToken}


def task_for(dataset) -> Classification:
    """The task a dataset's targets define (its `task` attribute names it)."""
    return TASKS[getattr(dataset, "task", "classification")]()
