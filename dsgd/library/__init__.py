"""dsgd as a library: the researcher's own model, data, loss and loop, with gossip on the optimizer.

    import dsgd
    world = dsgd.start()                                  # MPI; one worker per rank
    opt = dsgd.DecentralizedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), model,
                                      dsgd.algorithms.dsgd("ring"), world)
    for x, y in loader:
        opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
"""
from . import algorithms
from .algorithms import Algorithm
from .optimizer import DecentralizedOptimizer
from .sampler import PartitionSampler
from .world import World, start

__all__ = ["Algorithm", "DecentralizedOptimizer", "PartitionSampler", "World", "algorithms", "start"]
