"""Every recipe under experiments/recipes loads, and the worker count it implies fits its layout."""
from pathlib import Path

import pytest

from dsgd.config import parse
from dsgd.train import build

RECIPES = sorted((Path(__file__).resolve().parents[2] / "experiments" / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 8, [p.name for p in RECIPES]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_its_worker_count_is_consistent(path):
    cfg, _ = parse(["--config", str(path)])
    r = cfg.run
    if r.total_batch_size:
        workers, rest = divmod(r.total_batch_size, r.batch_size)
        assert rest == 0 and workers % r.workers_per_rank == 0, (r.total_batch_size, r.batch_size)
        build.check(cfg, workers // r.workers_per_rank)
