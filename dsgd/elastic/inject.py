"""Failures on purpose: a rank that kills itself (SIGKILL, as a lost node would vanish) where told.

For tests and failure-injection experiments of elastic runs. The environment variable
DSGD_FAULT lists where, comma-separated, by the rank's number in the job as launched (MPI_COMM_WORLD):

    DSGD_FAULT=2@5                 rank 2 dies as training step 5 starts
    DSGD_FAULT=2@5,0@9             and rank 0 as step 9 starts
    DSGD_FAULT=1@checkpoint:8      rank 1 dies while checkpoint 8 is written (after its own file,
                                   before the checkpoint is complete)

Unset, it costs one dictionary lookup per call.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Dict, Optional, Set, Tuple

ENV = "DSGD_FAULT"
WHERE = ("step", "checkpoint")

_plan: Optional[Set[Tuple[str, int]]] = None


def parse(text: str, rank: int) -> Set[Tuple[str, int]]:
    """The (where, step) points at which RANK dies, from DSGD_FAULT's TEXT; ValueError in one line.

    Example:
        >>> sorted(parse("2@5,0@checkpoint:8,2@9", 2))
        [('step', 5), ('step', 9)]
    """
    points: Dict[int, Set[Tuple[str, int]]] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        try:
            who, at = item.split("@")
            where, _, step = at.rpartition(":")
            where = where or "step"
            if where not in WHERE:
                raise ValueError
            points.setdefault(int(who), set()).add((where, int(step)))
        except ValueError:
            raise ValueError(f"{ENV}={text!r}: {item!r} is not RANK@STEP or RANK@checkpoint:STEP") from None
    return points.get(rank, set())


def die_if_due(where: str, step: int) -> None:
    """SIGKILL this process if DSGD_FAULT names this rank at (WHERE, STEP)."""
    global _plan
    if _plan is None:
        from dsgd.local_rank import global_rank
        _plan = parse(os.environ.get(ENV, ""), global_rank())
    if (where, step) in _plan:
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
