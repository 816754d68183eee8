"""The graph over the survivors: the same family at the new number of workers, or a ring.

A family is rebuilt from its name, weight rule and options, less the options that fix its shape
for the old n (a torus's rows and cols: the new one takes the most square shape that fits). Where
the family has no graph at the new n (a torus on 6 workers, a hypercube on 6, a graph read from a
file, a user's own matrix) the fallback is a ring (complete on 1 or 2 workers), and the reason
comes back as one sentence for the membership log line.
"""
from __future__ import annotations

from typing import Optional, Tuple

import topologies

SHAPE_OPTIONS = ("rows", "cols")  # chosen for the old n; the family picks them again for the new one
FALLBACK = "ring"
FIXED_SIZE = ("graph-file", "digraph-file", "matrix-file")  # a user's graph or matrix: one n only


def fallback(n: int) -> topologies.Topology:
    """The graph every n has: a ring, or the complete graph below 3 workers (a ring needs 3)."""
    return topologies.build(FALLBACK if n >= 3 else "complete", n)


def rebuild(topo: topologies.Topology, n: int) -> Tuple[topologies.Topology, Optional[str]]:
    """(TOPO's family on N workers, None), or (the fallback, why) when the family cannot be built there.

    Example:
        >>> t, why = rebuild(topologies.build("torus", 12), 9)
        >>> t.spec, why
        ('torus:rows=3,cols=3', None)
        >>> t, why = rebuild(topologies.build("torus", 9), 6)
        >>> t.spec, why.split(":")[0]
        ('ring', 'torus cannot be built on 6 workers')
    """
    if topo.name not in topologies.FAMILIES or topo.name in FIXED_SIZE:
        instead = fallback(n)
        where = topo.options.get("path", topo.name)
        return instead, f"{topo.name} ({where}) has a fixed number of workers: {instead.name} instead"
    options = {k: v for k, v in topo.options.items() if k not in SHAPE_OPTIONS}
    weights = topo.weights if topo.weights not in ("explicit",) else "default"
    try:
        return topologies.build(topo.name, n, weights, **options), None
    except (topologies.TopologyError, ValueError) as e:
        instead = fallback(n)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        return instead, f"{topo.name} cannot be built on {n} workers: {instead.name} instead ({reason})"
