"""The library under real ranks: rules driven through `dsgd.DecentralizedOptimizer` in each rank's own
loop equal their numpy recursions (lsq.py), and local SGD through the API equals PyTorch's own
PeriodicModelAverager on the same model, initial weights and batches.

    mpirun -np 4 python -m mpi4py library_oracle.py --backends mpi,torch --workers-per-rank 1
    mpirun -np 4 python -m mpi4py library_oracle.py --peer
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: the library's test models
import dsgd  # noqa: E402
import topologies  # noqa: E402
from library_models import LR0, LeastSquares, lr, lsq, train  # noqa: E402

STEPS = 25


def cases(n):
    ring, push = topologies.from_spec("ring", n), topologies.from_spec("directed-exponential", n)
    sign = dsgd.library.algorithms.parse_codec("sign")
    yield "dsgd", dsgd.algorithms.dsgd("ring"), lambda p: lsq.oracle_dsgd(p, ring.W, lr, STEPS)
    yield "gradient tracking", dsgd.algorithms.gradient_tracking("ring"), \
        lambda p: lsq.oracle_gradient_tracking(p, ring.W, lr, STEPS)
    yield "push-sum", dsgd.algorithms.push_sum("directed-exponential"), \
        lambda p: lsq.oracle_push_sum(p, push.W, lr, STEPS)
    yield "choco", dsgd.algorithms.choco("ring", "sign", 0.4, seed=7), \
        lambda p: lsq.oracle_choco(p, ring.W, lr, STEPS, sign, 0.4, 7, ring.period)
    average = np.full((n, n), 1.0 / n)
    yield "diloco", dsgd.algorithms.diloco(period=4), \
        lambda p: lsq.oracle_diloco(p, lambda r: average, 4, lr, STEPS, 0.7, 0.9)
    yield "gossip diloco (sign outer gradients)", dsgd.algorithms.diloco(period=4, topology_spec="ring",
                                                                         compress="sign"), \
        lambda p: lsq.oracle_diloco(p, ring.W, 4, lr, STEPS, 0.7, 0.9, sign)
    yield "streaming diloco", dsgd.algorithms.streaming_diloco(period=6, fragments=2, delay=2, alpha=0.5), \
        lambda p: lsq.oracle_streaming_diloco(p, lambda r: average, 6, lr, STEPS, 0.7, 0.9, 2, 0.5)
    yield "sparta", dsgd.algorithms.sparta(0.5, topology_spec="ring", seed=1), \
        lambda p: lsq.oracle_sparta(p, ring.W, lr, STEPS, 0.5, 1)


IDENTITIES = [  # (what, the outer rule, the rule it must equal, exactly?)
    ("streaming with F=1, tau=0, alpha=1 is DiLoCo",
     lambda: dsgd.algorithms.streaming_diloco(period=4, fragments=1, delay=0, alpha=1.0),
     lambda: dsgd.algorithms.diloco(period=4), True),
    ("SPARTA with p=1 on a ring is D-SGD", lambda: dsgd.algorithms.sparta(1.0, topology_spec="ring"),
     lambda: dsgd.algorithms.dsgd("ring"), True),
    ("outer SGD at lr 1 without momentum is local SGD",
     lambda: dsgd.algorithms.diloco(period=4, outer="sgd", outer_lr=1.0, outer_momentum=0.0),
     lambda: dsgd.algorithms.local_sgd(4), False),  # x_a - mean(x_a - x) against mean(x): round-off
]


def identities(world, backend, K) -> int:
    """The outer rules' identities on WORLD's ranks, from a common start; how many were checked."""
    n = MPI.COMM_WORLD.size * K
    problem = lsq.Problem(n, seed=3)
    problem.x0[:] = problem.x0[0]
    checked = 0
    mine = list(range(world.first_worker, world.first_worker + K))
    if True:
        for what, outer, plain, exact in IDENTITIES:
            ends = []
            for algorithm in (outer(), plain()):
                models = [LeastSquares(problem, i) for i in mine]
                optimizers = [torch.optim.SGD(m.parameters(), lr=LR0) for m in models]
                opt = dsgd.DecentralizedOptimizer(optimizers if K > 1 else optimizers[0],
                                                  models if K > 1 else models[0], algorithm, world, broadcast=False,
                                                  bucket_bytes=32)
                train(opt, models, STEPS)
                opt.finish()
                ends.append(np.stack([m.x() for m in models]))
            if exact:
                assert np.array_equal(ends[0], ends[1]), f"{what}, backend {backend}: {np.abs(ends[0] - ends[1]).max()}"
            else:
                np.testing.assert_allclose(ends[0], ends[1], rtol=1e-12, atol=1e-12, err_msg=f"{what}, {backend}")
            checked += 1
    return checked


def oracles(backends, K):
    world_size = MPI.COMM_WORLD.size
    n = world_size * K
    problem = lsq.Problem(n, seed=2)
    checked = same = 0
    references = lsq.References(MPI.COMM_WORLD)
    for backend in backends:
        world = dsgd.start(backend, workers_per_rank=K)
        mine = list(range(world.first_worker, world.first_worker + K))
        for name, algorithm, oracle in cases(n):
            models = [LeastSquares(problem, i) for i in mine]
            optimizers = [torch.optim.SGD(m.parameters(), lr=LR0) for m in models]
            opt = dsgd.DecentralizedOptimizer(optimizers if K > 1 else optimizers[0], models if K > 1 else models[0],
                                              algorithm, world, broadcast=False, bucket_bytes=32)
            train(opt, models, STEPS)
            opt.finish()  # exchanges still in flight (streaming) complete before the next run's
            got = np.stack([m.x() for m in models])
            np.testing.assert_allclose(got, references.get(name, oracle, problem)[mine], rtol=1e-9, atol=1e-9,
                                       err_msg=f"{name}, backend {backend}, rank {world.rank}")
            checked += 1
        same += identities(world, backend, K)
    MPI.COMM_WORLD.Barrier()
    if MPI.COMM_WORLD.rank == 0:
        print(f"library oracles ok: {checked} rule x backend runs of {STEPS} steps, {n} workers", flush=True)
        print(f"outer identities ok: {same} identity x backend runs, {n} workers", flush=True)


def peer(period=4, steps=18):
    """Local SGD through the API against torch.distributed's PeriodicModelAverager."""
    from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager
    world = dsgd.start("torch")  # the default process group both sides use
    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    theirs = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    theirs.load_state_dict(ours.state_dict())
    data = torch.Generator().manual_seed(100 + world.rank)  # each rank its own batches
    batches = [(torch.randn(8, 6, generator=data), torch.randint(0, 3, (8,), generator=data)) for _ in range(steps)]
    opt = dsgd.DecentralizedOptimizer(torch.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9), ours,
                                      dsgd.algorithms.local_sgd(period), world)
    ref_opt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    # PyTorch's averager averages at steps warmup, warmup + period, ...: ours at period - 1, 2 period - 1, ...
    averager = PeriodicModelAverager(period=period, warmup_steps=period - 1)
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ours(x), y).backward()
        opt.step()
        ref_opt.zero_grad()
        torch.nn.functional.cross_entropy(theirs(x), y).backward()
        ref_opt.step()
        averager.average_parameters(theirs.parameters())
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # PyTorch divides before its sum, dsgd after
    # the last two steps came after the last average: the workers differ, each trained on its own data
    sums = MPI.COMM_WORLD.allgather(float(sum(p.double().sum() for p in ours.parameters())))
    assert len(set(sums)) == world.size, sums
    MPI.COMM_WORLD.Barrier()
    if world.rank == 0:
        print(f"periodic averager peer ok: {steps} steps, period {period}, {world.size} ranks", flush=True)


def ddp_clip(steps=12, max_norm=0.5):
    """C-SGD through the API with clip_grad_norm against DDP whose user clips the averaged gradient."""
    from torch.nn.parallel import DistributedDataParallel
    world = dsgd.start("torch")
    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    plain = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    plain.load_state_dict(ours.state_dict())
    theirs = DistributedDataParallel(plain)
    data = torch.Generator().manual_seed(200 + world.rank)
    opt = dsgd.DecentralizedOptimizer(torch.optim.SGD(ours.parameters(), lr=0.5), ours, dsgd.algorithms.csgd(), world,
                                      clip_grad_norm=max_norm)
    ref_opt = torch.optim.SGD(theirs.parameters(), lr=0.5)
    clipped = 0
    for _ in range(steps):
        x, y = torch.randn(8, 6, generator=data) * 4, torch.randint(0, 3, (8,), generator=data)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ours(x), y).backward()
        opt.step()
        ref_opt.zero_grad()
        torch.nn.functional.cross_entropy(theirs(x), y).backward()
        clipped += float(torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm)) > max_norm
        ref_opt.step()
    for a, b in zip(ours.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert clipped > 0  # the clip did act
    MPI.COMM_WORLD.Barrier()
    if world.rank == 0:
        print(f"ddp clip peer ok: {steps} steps, {clipped} clipped", flush=True)
    world.close()


def amp(steps=8, bad_step=3):
    """bf16 autocast and a GradScaler: rank 1 overflows at one step; every rank skips that step (none
    waits for it) and the run equals one that left that batch out, bit for bit (the scaler's powers
    of two scale and unscale exactly)."""
    world = dsgd.start("mpi")
    torch.manual_seed(0)
    ours, plain = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)
    plain.load_state_dict(ours.state_dict())
    opt = dsgd.DecentralizedOptimizer(torch.optim.SGD(ours.parameters(), lr=0.1), ours, dsgd.algorithms.dsgd("ring"),
                                      world)
    ref = dsgd.DecentralizedOptimizer(torch.optim.SGD(plain.parameters(), lr=0.1), plain,
                                      dsgd.algorithms.dsgd("ring"), world)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=1000)
    data = torch.Generator().manual_seed(300 + world.rank)
    for t in range(steps):
        x, y = torch.randn(8, 6, generator=data), torch.randn(8, 3, generator=data)
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.mse_loss(ours(x).float(), y)
        if t == bad_step and world.rank == 1:
            loss = loss * float("inf")
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if t == bad_step:
            continue  # the reference leaves this batch out on every rank
        ref.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.functional.mse_loss(plain(x).float(), y).backward()
        ref.step()
    assert opt.steps == ref.steps == steps - 1
    for a, b in zip(ours.parameters(), plain.parameters()):
        assert torch.equal(a, b), (a - b).abs().max()
    assert scaler.get_scale() == (2.0 ** 9 if world.rank == 1 else 2.0 ** 10)
    MPI.COMM_WORLD.Barrier()
    if world.rank == 0:
        print(f"amp skip agreed: {steps} steps, step {bad_step} skipped on every rank", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="mpi")
    ap.add_argument("--workers-per-rank", type=int, default=1)
    ap.add_argument("--peer", action="store_true")
    args = ap.parse_args()
    if args.peer:
        amp()
        peer()
        ddp_clip()
    else:
        oracles(args.backends.split(","), args.workers_per_rank)


if __name__ == "__main__":
    main()
