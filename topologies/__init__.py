"""Communication topologies for decentralized training: pure numpy/networkx math.

A Topology gives the doubly-stochastic mixing matrix W(t) of step t
(x_i <- sum_j W(t)[i, j] x_j) and its communication graph; the helpers read
each node's receive and send weights off W.

Example:
    >>> from topologies import build, lambda2
    >>> topo = build("ring", 16)
    >>> round(lambda2(topo.W()), 6)
    0.949253
"""
from .errors import TopologyError
from .families import FAMILIES, Family, build, check_spec, from_graph, from_matrix, from_spec
from .spectra import lambda2, spectral_gap
from .topology import Topology, in_neighbors, out_neighbors
from .validate import validate_mixing_matrix
from .weights import WEIGHT_RULES

__all__ = [
    "FAMILIES", "Family", "Topology", "TopologyError", "WEIGHT_RULES", "build", "check_spec", "from_graph", "from_matrix",
    "from_spec",
    "in_neighbors", "lambda2", "out_neighbors", "spectral_gap", "validate_mixing_matrix",
]
