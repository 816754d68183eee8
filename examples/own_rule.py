"""A rule of one's own through the public base class: D-SGD with a consensus step size,
x <- x_half + gamma (W x_half - x_half), in about 30 lines.

    mpirun -np 4 python examples/own_rule.py
"""
import torch

import dsgd
import topologies


class DampedGossip(dsgd.Rule):
    """The optimizer steps; then each worker moves a fraction GAMMA of the way to its neighbours' mix."""

    buffer_names = ("mixed",)  # saved and restored with the optimizer's state_dict

    def __init__(self, topology, gamma: float):
        self.topology, self.gamma = topology, gamma

    def attach(self, engine):
        self.mixed = engine.new_buffers()

    def step(self, t, engine):
        engine.optimizer_step()
        for m, x in zip(self.mixed, engine.params):
            m.copy_(x)
        engine.mix(self.topology.W(t), self.mixed)       # W x_half, in one exchange
        for m, x in zip(self.mixed, engine.params):
            x.add_((m - x) * self.gamma)


if __name__ == "__main__":
    world = dsgd.start()
    if world.n_workers < 3:
        raise SystemExit(f"own_rule.py: a ring needs 3 workers or more, this job has {world.n_workers}: run it "
                         f"as mpirun -np 4 python examples/own_rule.py")
    torch.manual_seed(world.rank)  # each rank its own start and data: the rule must bring them together
    model = torch.nn.Linear(8, 1)
    rule = DampedGossip(topologies.from_spec("ring", world.n_workers), gamma=0.5)
    opt = dsgd.DecentralizedOptimizer(torch.optim.SGD(model.parameters(), lr=0.05), model, rule, world,
                                      broadcast=False)
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    for step in range(50):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    spread = world.comm.allgather_object(model.weight.detach().clone())
    print(f"rank {world.rank}: distance to rank 0's model {float((spread[0] - model.weight.detach()).norm()):.3g}", flush=True)
