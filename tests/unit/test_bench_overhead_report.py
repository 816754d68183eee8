"""What `python -m dsgd.bench overhead` reports, computed from recorded step times
(tests/data/bench/overhead.json, 3 steps per side). The tiny real run is tests/mpi/test_bench_more.py."""
import json
from pathlib import Path

import pytest

from dsgd.bench import overhead

RECORDED = json.loads((Path(__file__).resolve().parents[1] / "data" / "bench" / "overhead.json").read_text())


def test_figures_are_medians_per_side_and_their_ratios():
    f = overhead.figures(RECORDED["times"])
    assert list(f) == ["dsgd_s", "plain_s", "data_s", "ratio", "ratio_excluding_data", "target", "met"]
    assert (f["dsgd_s"], f["plain_s"], f["data_s"]) == (0.04194, 0.04914, 0.0002895)
    assert f["ratio"] == 0.04194 / 0.04914
    assert f["ratio_excluding_data"] == pytest.approx((0.04194 - 0.0002895) / 0.04914, rel=1e-12)
    assert (f["target"], f["met"]) == (1.05, True)  # 0.853 <= 1.05


@pytest.mark.parametrize("dsgd_s, met", [(1.05, True), (1.06, False)])
def test_the_target_is_met_up_to_and_including_five_percent_over_plain_pytorch(dsgd_s, met):
    f = overhead.figures({"dsgd": [dsgd_s], "plain": [1.0], "data": [0.0]})
    assert (f["ratio"], f["met"]) == (dsgd_s, met)
