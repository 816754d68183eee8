"""Picture of a topology at one step: nodes with their self-weight, edges with W entries.

matplotlib is imported only here, inside `draw`, so the rest of the package
stays numpy + networkx.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import networkx as nx

from .errors import TopologyError
from .spectra import lambda2
from .topology import Topology

MAX_EDGE_LABELS = 80  # beyond this the labels overlap into noise; widths still show weights
NODE_SIZE = 520  # points^2; edges stop at this radius


def _layout(topo: Topology, G: nx.Graph) -> Dict[int, Tuple[float, float]]:
    if "rows" in topo.options and "cols" in topo.options:
        cols = topo.options["cols"]
        return {i: (i % cols, -(i // cols)) for i in G}
    if topo.name == "star" and topo.n > 1:
        return nx.shell_layout(G, [[0], list(range(1, topo.n))])
    if topo.name in ("erdos-renyi", "random-regular", "graph-file", "matrix-file"):
        return nx.spring_layout(G, seed=0)
    return nx.circular_layout(G)


def _is_wrap(pos: Dict[int, Tuple[float, float]], u: int, v: int) -> bool:
    """A torus edge that wraps around spans more than one lattice step."""
    (x0, y0), (x1, y1) = pos[u], pos[v]
    return abs(x0 - x1) + abs(y0 - y1) > 1.5


def _draw_edges(ax: Any, G: nx.Graph, pos: Dict, edges: List, style: str) -> None:
    if not edges:
        return
    weights = [G.edges[e]["weight"] for e in edges]
    nx.draw_networkx_edges(G, pos, edgelist=edges, ax=ax, width=[0.5 + 4 * w for w in weights],
                           arrows=True, arrowstyle="-|>" if G.is_directed() else "-",
                           connectionstyle=style, node_size=NODE_SIZE)
    if G.number_of_edges() <= MAX_EDGE_LABELS:
        labels = {e: f"{w:.3g}" for e, w in zip(edges, weights)}
        nx.draw_networkx_edge_labels(G, pos, edge_labels=labels, ax=ax, font_size=6,
                                     connectionstyle=style, node_size=NODE_SIZE)


def draw(topo: Topology, path: str, t: int = 0) -> None:
    """Write a PNG (or any format matplotlib infers from `path`) of topo.graph(t).

    Edge width and label give the weight of the edge in W(t); a node's label
    gives its index and self-weight W(t)[i, i].
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TopologyError("draw needs matplotlib (pip install matplotlib)") from None
    G, W = topo.graph(t), topo.W(t)
    pos = _layout(topo, G)
    fig = Figure(figsize=(7, 7))
    ax = fig.add_subplot()
    nx.draw_networkx_nodes(G, pos, ax=ax, node_color="#cfe3f5", edgecolors="#333",
                           node_size=NODE_SIZE)
    nx.draw_networkx_labels(G, pos, ax=ax, font_size=7,
                            labels={i: f"{i}\n{W[i, i]:.2g}" for i in G})
    wrap = [e for e in G.edges if topo.name == "torus" and _is_wrap(pos, *e)]
    plain = [e for e in G.edges if e not in set(wrap)]
    _draw_edges(ax, G, pos, plain, "arc3,rad=0.12" if G.is_directed() else "arc3")
    _draw_edges(ax, G, pos, wrap, "arc3,rad=0.3")
    ax.set_title(f"{topo.spec}  n={topo.n}  step {t}  lambda2(W)={lambda2(W):.4f}", fontsize=9)
    ax.axis("off")
    try:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    except (OSError, ValueError) as exc:
        raise TopologyError(f"cannot write '{path}': {exc}") from None
