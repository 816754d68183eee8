"""Models run under torch.func.vmap over stacked replicas, as the vectorized trainer needs."""
import copy

import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

from dsgd.models import build_model

REPLICAS = 3


@pytest.mark.parametrize("name, norm", [
    ("cnn", "none"), ("resnet20", "gn"), ("resnet20", "bn"), ("mlp", "bn"), ("cnn", "bn"),
])
def test_vmap_over_stacked_replicas_matches_one_by_one(name, norm):
    torch.manual_seed(0)
    replicas = [build_model(name, 1, 10, 28, norm=norm).eval() for _ in range(REPLICAS)]
    if norm == "bn":  # make the running statistics differ between replicas too
        for i, m in enumerate(replicas):
            for b in m.buffers():
                if b.is_floating_point():
                    b.add_(0.1 * (i + 1))
    params, buffers = stack_module_state(replicas)
    base = copy.deepcopy(replicas[0]).to("meta")

    def run(p, b, x):
        return functional_call(base, (p, b), (x,))

    x = torch.randn(REPLICAS, 5, 1, 28, 28)
    stacked = vmap(run)(params, buffers, x)
    with torch.no_grad():
        serial = torch.stack([m(x[i]) for i, m in enumerate(replicas)])
    assert stacked.shape == (REPLICAS, 5, 10)
    torch.testing.assert_close(stacked, serial, atol=1e-5, rtol=1e-5)
