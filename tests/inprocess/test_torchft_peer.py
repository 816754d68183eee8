"""dsgd's DiLoCo held against torchft's (`torchft.local_sgd.DiLoCo`, the PyTorch team's fault-tolerant
one): the same model, initial weights, batches and settings, parameter for parameter.

torchft's DiLoCo works through a `Manager` (quorum, commit, allreduce). As torchft's own unit tests do
(torchft/local_sgd_test.py), each replica gets `create_autospec(Manager)`: `should_commit()` says yes
and counts the commits, which `current_step()` returns as the real Manager's step does (it picks the
fragment); `allreduce` averages the replicas' tensors as the real Manager does, a sum then a division
by the number of replicas, the sum taken in replica order as dsgd sums its workers' rows. Each replica
runs in a thread of its own and meets the others in that allreduce, as processes would; dsgd runs the
same replicas as the workers of one process (`dsgd.start("self", workers_per_rank=K)`).

The streaming schedules. Count optimizer steps k = 1, 2, ... and let h = H / F. torchft (sync_every H;
it needs F to divide H and tau < h) takes the pseudo-gradient of its fragment i at k = (i + 1) h - tau + m H
and applies it at k = (i + 1) h + m H (the fragment picked by the Manager's step modulo F). dsgd takes
fragment f's at k = f h + m H (fragment 0 from k = H on) and applies it tau steps later. With tau = 0
the two are one schedule once torchft's fragment i is dsgd's fragment (i + 1) mod F (torchft's fragments
are modules, here holding the same tensors as dsgd's `fragments_by_layer` groups). With tau > 0 every
torchft exchange starts and lands tau steps before the matching dsgd one (its first round of each
fragment is tau steps shorter), so no choice of fragments makes the runs equal: delayed streaming is
not compared number for number, and `test_streaming_schedules_differ_by_the_delay` shows the shift.

The merge: dsgd's fragment becomes (1 - alpha) x_local + alpha x_global; torchft's
`fragment_update_alpha` weighs the local parameters instead (a lerp from the global ones towards the
local ones), so dsgd's alpha = 1 - torchft's.

Found (12 steps, H = 4): DiLoCo with 1 and 4 replicas, inner SGD or AdamW, agrees bit for bit, and so
does streaming DiLoCo (2 fragments, no delay, 2 replicas) at dsgd's alpha 1. At a fractional alpha the
two merges round differently (dsgd a weighted sum, torchft a lerp): at dsgd's alpha 0.75 the runs differ
by at most 6e-8 (2 float32 ulps of that entry, 0.30; at dsgd's alphas 0.5 and 0.1 and with 1 replica, at
most 9e-8). With tau = 1 they differ by 3e-2 (the schedules above).
"""
from __future__ import annotations

import threading
from unittest.mock import create_autospec

import pytest
import torch

try:
    from torchft.local_sgd import DiLoCo
    from torchft.manager import Manager
    from torchft.work import _DummyWork
except ImportError as e:  # scripts/install.sh installs torchft; a bare environment may lack it
    pytest.skip(f"torchft does not import ({e})", allow_module_level=True)

import dsgd
from dsgd.rules.outer import fragments_by_layer

H, STEPS, BATCH = 4, 12, 8
OUTER_LR, OUTER_MOMENTUM = 0.7, 0.9
INNER = {"sgd": lambda params: torch.optim.SGD(params, lr=0.1),
         "adamw": lambda params: torch.optim.AdamW(params, lr=0.01, betas=(0.9, 0.95), weight_decay=0.1)}


def make_model() -> torch.nn.Sequential:
    """The same initial weights on every replica and in both runs; tensors of 96, 16, 80 and 5 entries."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5))


def loss(model, replica: int, step: int) -> torch.Tensor:
    """Replica REPLICA's batch at STEP: its own random regression batch, the same in both runs."""
    g = torch.Generator().manual_seed(1000 * replica + step)
    x, y = torch.randn(BATCH, 6, generator=g), torch.randn(BATCH, 5, generator=g)
    return torch.nn.functional.mse_loss(model(x), y)


# -- torchft, one thread per replica ----------------------------------------------------------------
class Replicas:
    """What the replicas' managers share: the allreduce (every replica's tensor becomes the sum over
    replicas 0..n-1 divided by n) and a log of ("send", step, numel) and ("land", step, 0) events."""

    def __init__(self, n: int):
        self.n, self.tensors, self.log = n, [None] * n, []
        self.barrier = threading.Barrier(n, timeout=60)

    def allreduce(self, rank: int, tensor: torch.Tensor):
        self.tensors[rank] = tensor
        self.barrier.wait()
        total = self.tensors[0].clone()
        for other in self.tensors[1:]:
            total.add_(other)
        self.barrier.wait()  # every replica has read every tensor before any is overwritten
        tensor.copy_(total.div_(self.n))
        return _DummyWork(tensor)


def mocked_manager(replicas: Replicas, rank: int, clock: list):
    """Replica RANK's Manager; CLOCK[0] is its optimizer steps so far (for the log)."""
    manager = create_autospec(Manager)
    manager._use_async_quorum = False
    manager.errored.return_value = None
    commits = [0]

    def allreduce(tensor, *args, **kwargs):
        if rank == 0:
            replicas.log.append(("send", clock[0], tensor.numel()))
        return replicas.allreduce(rank, tensor)

    def should_commit(*args, **kwargs):
        commits[0] += 1
        if rank == 0:
            replicas.log.append(("land", clock[0], 0))
        return True

    manager.allreduce.side_effect = allreduce
    manager.should_commit.side_effect = should_commit
    manager.current_step.side_effect = lambda: commits[0]
    return manager


def run_torchft(n: int, inner: str, fragments_of=lambda m: [m], delay: int = 0, alpha: float = 0.0):
    """N replicas of torchft's DiLoCo for STEPS steps, each in its own thread; FRAGMENTS_OF(model)
    lists its fragments (modules), each with an outer Nesterov SGD of its own. The models and the log."""
    replicas, models, errors = Replicas(n), [make_model() for _ in range(n)], []

    def replica(rank: int) -> None:
        model, clock = models[rank], [0]
        try:
            fragments = fragments_of(model)
            inner_opt = INNER[inner](model.parameters())
            outer = [torch.optim.SGD(f.parameters(), lr=OUTER_LR, momentum=OUTER_MOMENTUM, nesterov=True)
                     for f in fragments]
            with DiLoCo(mocked_manager(replicas, rank, clock), fragments, inner_opt, outer, sync_every=H,
                        pin_memory=False, fragment_sync_delay=delay, fragment_update_alpha=alpha):
                for t in range(STEPS):
                    inner_opt.zero_grad()
                    loss(model, rank, t).backward()
                    clock[0] = t + 1  # DiLoCo exchanges inside step(), in its post-hook
                    inner_opt.step()
        except BaseException as e:  # noqa: BLE001 -- raised again in the calling thread
            errors.append(e)
            replicas.barrier.abort()

    threads = [threading.Thread(target=replica, args=(r,)) for r in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return models, replicas.log


# -- dsgd, the replicas as workers of one process --------------------------------------------------------
def run_dsgd(n: int, inner: str, algorithm, record=None):
    """N workers of dsgd in this process for STEPS steps; RECORD(steps done, optimizer) after each."""
    world = dsgd.start("self", workers_per_rank=n)
    models = [make_model() for _ in range(n)]
    opt = dsgd.DecentralizedOptimizer([INNER[inner](m.parameters()) for m in models], models, algorithm, world)
    with opt:
        for t in range(STEPS):
            opt.zero_grad()
            for k, m in enumerate(models):
                loss(m, k, t).backward()
            opt.step()
            if record is not None:
                record(t + 1, opt)
    return models


def max_difference(a_models, b_models) -> float:
    return max(float((a - b).detach().abs().max()) for ma, mb in zip(a_models, b_models)
               for a, b in zip(ma.parameters(), mb.parameters()))


def assert_same(a_models, b_models, rtol: float = 0.0, atol: float = 0.0) -> None:
    for k, (ma, mb) in enumerate(zip(a_models, b_models)):
        for (name, a), b in zip(ma.named_parameters(), mb.parameters()):
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"replica {k}, {name}: {m}")


def dsgd_groups_are_the_two_linear_layers():
    sizes = [p.numel() for p in make_model().parameters()]
    assert fragments_by_layer(sizes, 2) == [[0, 1], [2, 3]]


# torchft's fragment i is dsgd's fragment (i + 1) mod F: with F = 2, torchft's first is the last layer
TWO_FRAGMENTS = lambda m: [m[2], m[0]]  # noqa: E731


# -- the tests -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("inner", ["sgd", "adamw"])
@pytest.mark.parametrize("n", [1, 4])
def test_diloco_is_torchfts_bit_for_bit(n, inner):
    """DiLoCo, outer Nesterov SGD (lr 0.7, momentum 0.9), H = 4, 12 steps: 3 outer steps."""
    theirs, _ = run_torchft(n, inner)
    ours = run_dsgd(n, inner, dsgd.algorithms.diloco(period=H, outer_lr=OUTER_LR, outer_momentum=OUTER_MOMENTUM))
    assert max_difference(ours, [make_model()]) > 1e-2  # the runs trained
    assert_same(ours, theirs)


@pytest.mark.parametrize("torchft_alpha, atol", [(0.0, 0.0), (0.25, 1e-6)])
def test_streaming_diloco_without_delay_is_torchfts(torchft_alpha, atol):
    """Two fragments (the two Linear layers), no delay, 2 replicas, AdamW inside: each fragment syncs
    every 4 steps, the two 2 steps apart."""
    dsgd_groups_are_the_two_linear_layers()
    theirs, _ = run_torchft(2, "adamw", TWO_FRAGMENTS, alpha=torchft_alpha)
    ours = run_dsgd(2, "adamw", dsgd.algorithms.streaming_diloco(period=H, fragments=2, delay=0,
                                                                 alpha=1.0 - torchft_alpha, outer_lr=OUTER_LR,
                                                                 outer_momentum=OUTER_MOMENTUM))
    assert_same(ours, theirs, atol=atol)  # alpha 0.25: bit for bit no more, the merges round apart


def dsgd_sends(delay: int) -> set:
    """(step, fragment) of each of dsgd's streaming exchanges (2 fragments, H = 4, 2 workers), the
    fragment told by the bytes it sent: 112 entries, 448 bytes, for fragment 0; 85, 340 for fragment 1."""
    fragment_of_bytes, sends, sent = {448.0: 0, 340.0: 1}, set(), [0.0]

    def record(k, opt):
        now = opt.stats["bytes_sent"]
        if now > sent[0]:
            sends.add((k, fragment_of_bytes[now - sent[0]]))
        sent[0] = now
    run_dsgd(2, "sgd", dsgd.algorithms.streaming_diloco(period=H, fragments=2, delay=delay, alpha=1.0), record)
    return sends


def test_streaming_schedules_differ_by_the_delay():
    """Steps at which each fragment's pseudo-gradient leaves: with tau = 0 the same in both, with
    tau = 1 every torchft one a step before dsgd's. torchft sends tensor by tensor: 96 and 16 entries
    are dsgd's fragment 0, 80 and 5 its fragment 1."""
    dsgd_groups_are_the_two_linear_layers()
    fragment_of_numel = {96: 0, 16: 0, 80: 1, 5: 1}
    for tau in (0, 1):
        _, log = run_torchft(2, "sgd", TWO_FRAGMENTS, delay=tau)
        theirs = {(k, fragment_of_numel[numel]) for event, k, numel in log if event == "send"}
        landed = [k for event, k, _ in log if event == "land"]
        assert landed == [2, 4, 6, 8, 10, 12]  # every h = H / F steps
        assert sorted(k for k, _ in theirs) == [k - tau for k in landed]  # sent tau steps before landing
        ours = dsgd_sends(tau)
        assert ours == {(2, 1), (4, 0), (6, 1), (8, 0), (10, 1), (12, 0)}  # f at (t + 1) % H == f H / F
        assert ours == {(k + tau, f) for k, f in theirs}
