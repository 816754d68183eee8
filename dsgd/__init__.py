"""dsgd: decentralized and local SGD for PyTorch; every algorithm is a rule over one mixing step.

The library (each name loads torch on first use, so `python -m dsgd.train --help` stays fast):

    dsgd.start(backend="mpi", workers_per_rank=1)       -> World (rank, size, mix_, broadcast_)
    dsgd.DecentralizedOptimizer(optimizer, model, algorithm, world)
    dsgd.algorithms.dsgd("ring"), .local_sgd(8), .csgd(), .gradient_tracking(...), ...
    dsgd.PartitionSampler(labels, n_workers, worker, "dirichlet:alpha=0.1")   a DataLoader's sampler
    dsgd.Rule                                            the base class of a rule of one's own
"""
__version__ = "0.1.0"

_LAZY = {"start": ("dsgd.library.world", "start"), "World": ("dsgd.library.world", "World"),
         "DecentralizedOptimizer": ("dsgd.library.optimizer", "DecentralizedOptimizer"),
         "Algorithm": ("dsgd.library.algorithms", "Algorithm"), "algorithms": ("dsgd.library.algorithms", None),
         "PartitionSampler": ("dsgd.library.sampler", "PartitionSampler"), "Rule": ("dsgd.rules.base", "Rule")}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'dsgd' has no attribute {name!r}")
    import importlib
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    return value if attr is None else getattr(value, attr)


__all__ = ["Algorithm", "DecentralizedOptimizer", "PartitionSampler", "Rule", "World", "algorithms", "start"]
