"""Your own model, data and loop, trained by gossip: one worker per MPI rank, a CNN on Fashion-MNIST
through a torch DataLoader, D-SGD on the exponential graph, the average model evaluated each epoch.

    mpirun -np 4 python examples/own_model.py --epochs 1
"""
import argparse

import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import dsgd
from dsgd.data import load_dataset

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=1)
ap.add_argument("--steps", type=int, default=0, help="stop each epoch after this many steps (0: the whole epoch)")
args = ap.parse_args()
if args.epochs < 1 or args.steps < 0:
    ap.error("--epochs must be at least 1 and --steps at least 0")

world = dsgd.start()  # MPI: rank and size from mpirun
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                            torch.nn.Flatten(), torch.nn.Linear(16 * 12 * 12, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
opt = dsgd.DecentralizedOptimizer(optimizer, model, dsgd.algorithms.dsgd("exponential"), world)


def tensors(split):
    data = load_dataset("fashion-mnist", train=split == "train")
    return TensorDataset(data.images.float() / 255, data.labels)


train, test = tensors("train"), tensors("test")
sampler = DistributedSampler(train, num_replicas=world.size, rank=world.rank, seed=0)  # each rank its part
loader = DataLoader(train, batch_size=32, sampler=sampler)
for epoch in range(args.epochs):
    sampler.set_epoch(epoch)
    for step, (x, y) in enumerate(loader):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if step + 1 == args.steps:
            break
    with opt.averaged(), torch.no_grad():  # the average of every worker's model
        x, y = test.tensors
        accuracy = (model(x[:2000]).argmax(1) == y[:2000]).float().mean().item()
    if world.rank == 0:
        print(f"epoch {epoch + 1}: average model accuracy {accuracy:.4f}, {opt.stats['bytes_sent']:.0f} bytes sent "
              f"per worker", flush=True)
