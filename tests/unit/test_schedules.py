"""Each schedule, walked over steps 0..N: exactly when it mixes, what, and with which W.

A timeline has one letter per step, read off the action's matrices:
    g  gradients averaged with J = 1/n (parallel SGD)
    a  parameters averaged with J (a global sync)
    w  parameters mixed with a sparse W (gossip)
    .  no communication (a local step)
"""
import numpy as np
import pytest

from dsgd.schedules import QSR, Gossip, LocalSGD, LRSchedule, ParallelSGD, PostLocalSGD
from topologies import build

N = 4  # workers


def J(n=N):
    return np.full((n, n), 1 / n)


def walk(schedule, steps):
    return [schedule.action(t) for t in range(steps)]


def letter(action):
    g, p = action.grad_W, action.param_W
    if g is None and p is None:
        return "."
    if p is None and np.array_equal(g, J(g.shape[0])):
        return "g"
    if g is None and np.array_equal(p, J(p.shape[0])):
        return "a"
    return "w" if g is None else "?"


def timeline(schedule, steps):
    return "".join(letter(a) for a in walk(schedule, steps))


def round_lengths(actions):
    """Lengths of the rounds that end at each sync step (checks H is constant within a round)."""
    lengths, start = [], 0
    for t, a in enumerate(actions):
        if a.sync:
            assert {b.local_steps for b in actions[start:t + 1]} == {t + 1 - start}, f"round {start}..{t}"
            lengths.append(t + 1 - start)
            start = t + 1
    assert start == len(actions), "the last step must end a round"
    return lengths


# --- parallel, local and post-local SGD -------------------------------------------------------

def test_parallel_sgd_averages_gradients_every_step_and_never_parameters():
    assert timeline(ParallelSGD(n_workers=N), 20) == "g" * 20
    assert all(a.param_W is None and a.sync and a.local_steps == 1 for a in walk(ParallelSGD(N), 20))


@pytest.mark.parametrize("H, steps, expected", [
    (4, 10, "...a...a.."),   # syncs at 3 and 7; the run's length does not add a sync
    (4, 8, "...a...a"),
    (1, 5, "aaaaa"),         # H = 1 averages parameters (not gradients) every step
    (20, 6, "......"),       # H longer than the run: no average (x_bar is still what is evaluated)
])
def test_local_sgd_averages_parameters_every_H_steps_only(H, steps, expected):
    schedule = LocalSGD(n_workers=N, local_steps=H, total_steps=steps)
    assert timeline(schedule, steps) == expected
    actions = walk(schedule, steps)
    assert [a.sync for a in actions] == [c == "a" for c in expected]
    assert all(a.local_steps == H and a.phase == 0 for a in actions)


def test_post_local_sgd_switches_from_gradient_to_parameter_averaging():
    schedule = PostLocalSGD(n_workers=N, starts=(0, 6), periods=(1, 3), total_steps=12)
    assert timeline(schedule, 12) == "gggggg" + "..a..a"   # parameter averages at 8 and 11
    actions = walk(schedule, 12)
    assert [a.phase for a in actions] == [0] * 6 + [1] * 6
    assert [a.local_steps for a in actions] == [1] * 6 + [3] * 6
    assert [t for t, a in enumerate(actions) if a.sync] == [0, 1, 2, 3, 4, 5, 8, 11]


def test_post_local_sgd_counts_rounds_from_each_phase_start_and_averages_at_each_phase_end():
    # phase 0: 0..3 parallel; phase 1: 4..8, H=2 (5, 7, and 8 closes the phase);
    # phase 2: 9..15, H=4 (12 only: the last phase ends with the run, not with an average)
    schedule = PostLocalSGD(n_workers=N, starts=(0, 4, 9), periods=(1, 2, 4), total_steps=16)
    assert timeline(schedule, 16) == "gggg" + ".a.aa" + "...a..."
    actions = walk(schedule, 16)
    assert [a.phase for a in actions] == [0] * 4 + [1] * 5 + [2] * 7
    assert [a.local_steps for a in actions] == [1] * 4 + [2] * 5 + [4] * 7


# --- QSR --------------------------------------------------------------------------------------
# H = max(H_base, floor((alpha / lr)^p)) at each round start, capped by the steps that remain.

def test_qsr_period_follows_the_learning_rate_read_at_each_round_start():
    lr = LRSchedule(max_lr=0.1, total_steps=30, milestones=(20,), gamma=0.1)  # 0.1, then 0.01 at 20
    schedule = QSR(n_workers=N, base_local_steps=2, alpha=0.2, lr=lr, total_steps=30, power=2)
    actions = walk(schedule, 30)
    # before the decay: max(2, (0.2 / 0.1)^2 = 4) = 4, rounds start at 0, 4, 8, 12, 16;
    # at 20: (0.2 / 0.01)^2 = 400, capped by the 10 steps that remain
    assert round_lengths(actions) == [4, 4, 4, 4, 4, 10]
    assert [t for t, a in enumerate(actions) if a.sync] == [3, 7, 11, 15, 19, 29]
    assert timeline(schedule, 30) == "...a" * 5 + "." * 9 + "a"


def test_qsr_keeps_a_round_running_through_a_decay_and_truncates_the_last_round():
    lr = LRSchedule(max_lr=0.1, total_steps=40, milestones=(10,), gamma=0.5)  # 0.1, then 0.05 at 10
    schedule = QSR(n_workers=N, base_local_steps=2, alpha=0.2, lr=lr, total_steps=40)
    # rounds at 0, 4, 8 read lr 0.1: H = 4 (the round 8..11 spans the decay at 10);
    # at 12: (0.2 / 0.05)^2 = 16; at 28: 16 again, but only 12 steps remain
    assert round_lengths(walk(schedule, 40)) == [4, 4, 4, 16, 12]


def test_qsr_uses_the_base_period_during_warmup():
    lr = LRSchedule(max_lr=0.1, total_steps=20, warmup_steps=6, start_lr=0.01, decay="constant")
    schedule = QSR(n_workers=N, base_local_steps=2, alpha=0.2, lr=lr, total_steps=20, warmup_steps=6)
    # at step 0 the rule alone would give (0.2 / 0.025)^2 = 64; warmup keeps H_base = 2.
    # from step 6: (0.2 / 0.1)^2 = 4; the round at 18 has 2 steps left
    assert round_lengths(walk(schedule, 20)) == [2, 2, 2, 4, 4, 4, 2]


def test_qsr_with_alpha_far_above_the_learning_rate_takes_every_step_left_in_one_round():
    """(alpha / lr)^p beyond any float, or a learning rate decayed to exactly 0: the round runs to the end."""
    lr = LRSchedule(max_lr=0.1, total_steps=12, milestones=(4,), gamma=1e-300)  # 0.1, then 1e-301 at 4
    huge = QSR(n_workers=N, base_local_steps=2, alpha=1e300, lr=lr, total_steps=12)
    assert round_lengths(walk(huge, 12)) == [12]
    after_decay = QSR(n_workers=N, base_local_steps=2, alpha=0.2, lr=lr, total_steps=12)
    assert round_lengths(walk(after_decay, 12)) == [4, 8]  # (0.2 / 0.1)^2 = 4, then (0.2 / 1e-301)^2 overflows
    zero = QSR(n_workers=N, base_local_steps=2, alpha=0.2, lr=lambda t: 0.1 if t < 4 else 0.0, total_steps=12)
    assert round_lengths(walk(zero, 12)) == [4, 8]


def test_qsr_with_alpha_zero_is_local_sgd_with_the_base_period():
    lr = LRSchedule(max_lr=0.1, total_steps=9, decay="cosine")
    schedule = QSR(n_workers=N, base_local_steps=3, alpha=0.0, lr=lr, total_steps=9)
    assert timeline(schedule, 10) == "..a..a..aa"
    assert timeline(schedule, 9) == timeline(LocalSGD(n_workers=N, local_steps=3, total_steps=9), 9)


def test_qsr_power_one_is_the_linear_rule():
    lr = LRSchedule(max_lr=0.1, total_steps=30, milestones=(12,), gamma=0.5)  # 0.1, then 0.05 at 12
    linear = QSR(n_workers=N, base_local_steps=2, alpha=0.4, lr=lr, total_steps=30, power=1)
    # 0.4 / 0.1 = 4 until step 12, then 0.4 / 0.05 = 8; the round at 28 has 2 steps left
    assert round_lengths(walk(linear, 30)) == [4, 4, 4, 8, 8, 2]
    quadratic = QSR(n_workers=N, base_local_steps=2, alpha=0.4, lr=lr, total_steps=30, power=2)
    assert quadratic.action(0).local_steps == 16   # (0.4 / 0.1)^2


@pytest.mark.parametrize("alpha, step, expected", [(0.3, 0, 9), (0.1, 1, 100)])
def test_qsr_floor_is_not_fooled_by_float_rounding(alpha, step, expected):
    # lr is 0.1 at step 0 and 0.1 * 0.1 from step 1; in floats (0.3 / 0.1)^2 is 8.999...
    # and (0.1 / (0.1 * 0.1))^2 is 99.999..., but the rule means 9 and 100
    lr = LRSchedule(max_lr=0.1, total_steps=1000, milestones=(1,), gamma=0.1)
    schedule = QSR(n_workers=N, base_local_steps=1, alpha=alpha, lr=lr, total_steps=1000)
    assert schedule.period_at(step) == expected


def test_qsr_is_a_pure_function_of_the_step():
    lr = LRSchedule(max_lr=0.1, total_steps=40, milestones=(10,), gamma=0.5)
    walked = walk(QSR(n_workers=N, base_local_steps=2, alpha=0.2, lr=lr, total_steps=40), 40)
    resumed = QSR(n_workers=N, base_local_steps=2, alpha=0.2, lr=lr, total_steps=40)  # as after a resume
    assert [resumed.action(t).sync for t in (39, 27, 11)] == [True, True, True]  # asked out of order first
    assert [(resumed.action(t).sync, resumed.action(t).local_steps) for t in range(40)] == \
        [(a.sync, a.local_steps) for a in walked]


# --- gossip -----------------------------------------------------------------------------------

class FakeTimeVaryingTopology:
    """W(t) = half-half with node i + t + 1: a different doubly stochastic matrix for each t < n - 1."""

    n = 8

    def W(self, t):
        return 0.5 * (np.eye(self.n) + np.roll(np.eye(self.n), t + 1, axis=1))


def test_gossip_round_g_mixes_with_W_of_g():
    topo = FakeTimeVaryingTopology()
    actions = walk(Gossip(topology=topo, local_steps=2), 10)
    assert "".join(map(letter, actions)) == ".w" * 5
    for g, t in enumerate([1, 3, 5, 7, 9]):
        assert np.array_equal(actions[t].param_W, topo.W(g)), f"step {t} should use W({g})"
    assert not any(a.sync or a.grad_W is not None or a.local_steps != 2 for a in actions)


def test_gossip_global_average_takes_the_place_of_every_global_every_th_step():
    topo = FakeTimeVaryingTopology()
    schedule = Gossip(topology=topo, local_steps=2, global_every=4)
    assert timeline(schedule, 10) == ".w.a.w.a.w"
    actions = walk(schedule, 10)
    assert [t for t, a in enumerate(actions) if a.sync] == [3, 7]
    # the replaced rounds still count: step 5 is gossip round 2, step 9 round 4
    for g, t in [(0, 1), (2, 5), (4, 9)]:
        assert np.array_equal(actions[t].param_W, topo.W(g))


@pytest.mark.parametrize("combine_first", [False, True])
def test_gossip_carries_combine_first_on_every_mixing_step(combine_first):
    schedule = Gossip(topology=FakeTimeVaryingTopology(), local_steps=2, global_every=4,
                      combine_first=combine_first)
    assert {a.combine_first for a in walk(schedule, 12) if a.communicates} == {combine_first}


def test_gossip_every_step_on_a_real_ring_uses_its_W():
    ring = build("ring", 5)
    assert all(np.array_equal(a.param_W, ring.W(t)) for t, a in enumerate(walk(Gossip(topology=ring), 6)))
    assert Gossip(topology=ring).n_workers == 5


# --- learning rate ----------------------------------------------------------------------------

def test_warmup_ramps_linearly_from_start_lr_and_reaches_max_lr_on_its_last_step():
    lr = LRSchedule(max_lr=0.5, total_steps=10, warmup_steps=4, start_lr=0.1, decay="constant")
    assert [lr(t) for t in range(6)] == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.5, 0.5])


def test_step_decay_multiplies_by_gamma_at_each_milestone():
    lr = LRSchedule(max_lr=1.0, total_steps=10, milestones=(5, 8), gamma=0.1)
    assert [lr(t) for t in range(10)] == pytest.approx([1.0] * 5 + [0.1] * 3 + [0.01] * 2)
    assert lr.decay_points == (5, 8)
    # out-of-range milestones are not decay points; the rest come sorted
    assert LRSchedule(max_lr=1.0, total_steps=10, milestones=(8, 12, 5, 0)).decay_points == (5, 8)
    assert LRSchedule(max_lr=1.0, total_steps=10, decay="cosine", milestones=(5,)).decay_points == ()


def test_cosine_decays_from_max_lr_after_warmup_to_final_lr_at_the_end():
    lr = LRSchedule(max_lr=1.0, total_steps=10, warmup_steps=2, decay="cosine", final_lr=0.1)
    assert lr(1) == pytest.approx(1.0) and lr(2) == pytest.approx(1.0)
    assert lr(6) == pytest.approx(0.55)                  # half way through the decay: (1 + 0.1) / 2
    assert all(lr(t) > lr(t + 1) for t in range(2, 9))
    assert lr(9) > 0.1 and lr(10) == pytest.approx(0.1)  # every step taken still moves; final_lr at the end
    assert lr(15) == pytest.approx(0.1)


# --- invalid arguments ------------------------------------------------------------------------

LR = LRSchedule(max_lr=0.1, total_steps=10)


@pytest.mark.parametrize("make, names", [
    (lambda: LocalSGD(n_workers=N, local_steps=0, total_steps=10), "local steps"),
    (lambda: PostLocalSGD(n_workers=N, starts=(0, 6), periods=(1, 0), total_steps=12), "local steps"),
    (lambda: PostLocalSGD(n_workers=N, starts=(0, 8, 4), periods=(1, 2, 4), total_steps=12), "phase starts"),
    (lambda: PostLocalSGD(n_workers=N, starts=(0, 6, 6), periods=(1, 2, 4), total_steps=12), "phase starts"),
    (lambda: PostLocalSGD(n_workers=N, starts=(2, 6), periods=(1, 2), total_steps=12), "step 0"),
    (lambda: PostLocalSGD(n_workers=N, starts=(0, 6), periods=(1,), total_steps=12), "one period per phase"),
    (lambda: QSR(n_workers=N, base_local_steps=0, alpha=0.2, lr=LR, total_steps=10), "base local steps"),
    (lambda: QSR(n_workers=N, base_local_steps=2, alpha=-0.1, lr=LR, total_steps=10), "alpha"),
    (lambda: Gossip(topology=FakeTimeVaryingTopology(), local_steps=0), "H >= 1"),
    (lambda: Gossip(topology=FakeTimeVaryingTopology(), global_every=-1), "global averaging period"),
    (lambda: LRSchedule(max_lr=0.0, total_steps=10), "lr"),
    (lambda: LRSchedule(max_lr=-0.1, total_steps=10), "lr"),
    (lambda: LRSchedule(max_lr=0.1, total_steps=10, decay="linear"), "decay"),
    (lambda: LRSchedule(max_lr=0.1, total_steps=10, warmup_steps=-1), "warmup"),
])
def test_invalid_arguments_raise_value_error_naming_them(make, names):
    with pytest.raises(ValueError, match=names):
        make()
