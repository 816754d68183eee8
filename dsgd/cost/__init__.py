"""What a training step costs on a described network: the alpha-beta model, priced from mixing plans.

Pure numpy: no MPI and no network. A message of m bytes over a link of latency alpha (seconds) and
bandwidth beta (bytes/s) costs alpha + m / beta. The modules, one idea each:

    cluster.py   the machine: nodes, ranks per node, one Link per class (intra-node, inter-node)
    traffic.py   what one rank sends and receives for one W(t), read off dsgd.comm.plan.make_plan,
                 and what that costs; the ring allreduce formula
    timeline.py  compute times with stragglers (or one slow rank), and the synchronous recursion that says who waits for whom
    price.py     a schedule of W(t) (D-SGD on a topology, C-SGD, local SGD, identity) priced per step
    fit.py       least-squares fits of time = a + b * bytes, for calibrating alpha and beta
    papers.py    published setups and the speed-ups their papers report

Example:
    >>> from dsgd.cost import Cluster, Link, predict_step
    >>> cluster = Cluster(nodes=2, ranks_per_node=4, intra=Link(1e-6, 50e9), inter=Link(2e-5, 1.25e9))
    >>> round(predict_step("csgd", cluster, model_bytes=4e6, compute_s=0.05).step_s, 4)
    0.0559
"""
from .cluster import Cluster, Link, SlowRank, Stragglers
from .price import StepCost, predict_step, schedule_for

__all__ = ["Cluster", "Link", "SlowRank", "StepCost", "Stragglers", "predict_step", "schedule_for"]
