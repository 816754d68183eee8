"""Regrouping a checkpoint's rows for another split of the workers, against plain numpy slicing."""
import numpy as np
import pytest
import torch

from dsgd.train.regroup import Regroup, zeroed_optimizer_state


def saved_rows(n_workers: int, K: int, cols: int = 3) -> tuple[np.ndarray, list[dict]]:
    """Worker w's row is w*10 + column; split into per-rank states of K rows."""
    X = np.arange(n_workers)[:, None] * 10.0 + np.arange(cols)[None, :]
    return X, [{"x": torch.from_numpy(X[r * K:(r + 1) * K].copy()), "items": list(range(r * K, (r + 1) * K)),
                "counter": float(r + 1)} for r in range(n_workers // K)]


@pytest.mark.parametrize("old_K, new_K", [(2, 4), (4, 1), (1, 8), (2, 2), (4, 3), (3, 2)])
def test_every_new_rank_gets_exactly_its_workers_rows(old_K, new_K):
    n = 24
    X, old = saved_rows(n, old_K)
    for rank in range(n // new_K):
        g = Regroup(old, old_K, rank * new_K, new_K, rank)
        np.testing.assert_array_equal(g.rows(lambda s: s["x"]).numpy(), X[rank * new_K:(rank + 1) * new_K])
        assert g.items(lambda s: s["items"]) == list(range(rank * new_K, (rank + 1) * new_K))
        assert (g.kept, g.new) == (new_K, 0)
        assert g.owner() == rank * new_K // old_K


def test_growing_fills_new_workers_from_the_old_average_and_shrinking_drops_the_last():
    X, old = saved_rows(8, 2)
    grown = Regroup(old, 2, first=6, K=4, rank=1)   # workers 6..9 of 10: 6, 7 kept, 8, 9 new
    assert (grown.kept, grown.new) == (2, 2)
    rows = grown.rows(lambda s: s["x"], lambda: grown.mean_row(lambda s: s["x"])).numpy()
    np.testing.assert_array_equal(rows[:2], X[6:8])
    np.testing.assert_allclose(rows[2:], np.repeat(X.mean(0, keepdims=True), 2, axis=0), rtol=0, atol=1e-12)
    assert grown.items(lambda s: s["items"], lambda: "new") == [6, 7, "new", "new"]
    shrunk = Regroup(old, 2, first=3, K=3, rank=1)  # workers 3..5 of 6
    np.testing.assert_array_equal(shrunk.rows(lambda s: s["x"]).numpy(), X[3:6])


def test_per_rank_counters_continue_their_reported_sums_and_means():
    _, old = saved_rows(8, 2)   # counters 1, 2, 3, 4 on the old 4 ranks
    new = [Regroup(old, 2, r * 4, 4, r) for r in range(2)]
    assert [g.sum_on_rank0(lambda s: s["counter"]) for g in new] == [10.0, 0.0]   # sum over ranks: 10
    assert [g.mean_counter(lambda s: s["counter"]) for g in new] == [2.5, 2.5]     # mean over ranks: 2.5


def test_a_zeroed_optimizer_state_steps_like_an_empty_one():
    for make in (lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True),
                 lambda p: torch.optim.AdamW([p], lr=0.1)):
        trained = torch.nn.Parameter(torch.ones(3))
        opt = make(trained)
        trained.grad = torch.tensor([1.0, -2.0, 3.0])
        opt.step()
        fresh, zeroed = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
        opt_fresh, opt_zeroed = make(fresh), make(zeroed)
        opt_zeroed.load_state_dict(zeroed_optimizer_state(opt.state_dict()))
        for _ in range(3):
            for p, o in ((fresh, opt_fresh), (zeroed, opt_zeroed)):
                p.grad = torch.tensor([0.5, 1.0, -1.5])
                o.step()
        assert torch.equal(fresh, zeroed)
