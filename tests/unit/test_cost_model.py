"""The network cost model (dsgd.cost) against closed forms worked out here, by hand or in numpy."""
from __future__ import annotations

import json

import numpy as np
import pytest

import topologies
from dsgd.bench import cost as cli
from dsgd.cost import Cluster, Link, Stragglers, fit, papers, predict_step, timeline
from dsgd.cost.traffic import rank_plans, ring_allreduce_seconds

ALPHA, BETA = 1e-5, 1e9      # a link: 10 us, 1 GB/s
M = 1e6                      # bytes of one model
COMPUTE = 0.01               # seconds of compute per step
FAST = Link(1e-6, 1e11)      # an intra-node link far faster than the inter-node one


def one_node(ranks: int, **kw) -> Cluster:
    link = Link(ALPHA, BETA)
    return Cluster(nodes=1, ranks_per_node=ranks, intra=link, inter=link, **kw)


def two_nodes(nic_shared: bool = True) -> Cluster:
    return Cluster(nodes=2, ranks_per_node=4, intra=FAST, inter=Link(ALPHA, BETA), nic_shared=nic_shared)


# -- one link class -------------------------------------------------------------------------------
def test_ring_on_one_node_sends_two_models_per_rank_through_one_shared_link():
    # each rank sends M to both neighbours at once: one latency, 2 M through its link
    cost = predict_step("dsgd:ring", one_node(4), M, COMPUTE)
    assert cost.step_s == pytest.approx(COMPUTE + ALPHA + 2 * M / BETA)
    assert cost.bytes_sent_per_rank == 2 * M


def test_ring_with_two_workers_per_rank_still_sends_one_model_to_each_neighbour():
    # 8 workers on 4 ranks: a rank's outer workers need one row each from the ranks beside it
    cost = predict_step("dsgd:ring", one_node(4, workers_per_rank=2), M, COMPUTE)
    assert cost.step_s == pytest.approx(COMPUTE + ALPHA + 2 * M / BETA)


@pytest.mark.parametrize("p", [2, 3, 4, 8])
def test_allreduce_is_the_ring_formula(p):
    by_hand = 2 * (p - 1) * ALPHA + 2 * (p - 1) / p * M / BETA
    assert ring_allreduce_seconds(one_node(p), M) == pytest.approx(by_hand)
    assert predict_step("csgd", one_node(p), M, COMPUTE).step_s == pytest.approx(COMPUTE + by_hand)


def test_allreduce_rounds_wait_for_the_slowest_link_class():
    cluster = two_nodes()
    rounds, chunk = 2 * 7, M / 8
    by_hand = rounds * max(FAST.alpha + chunk / FAST.beta, ALPHA + chunk / BETA)
    assert ring_allreduce_seconds(cluster, M) == pytest.approx(by_hand)


def test_complete_graph_is_an_allreduce_as_the_mixer_runs_it():
    complete = predict_step("dsgd:complete", one_node(4), M, COMPUTE)
    assert complete.kinds == ("average",)
    assert complete.step_s == pytest.approx(predict_step("csgd", one_node(4), M, COMPUTE).step_s)


def test_identity_costs_the_compute_alone():
    cost = predict_step("identity", one_node(4), M, COMPUTE)
    assert cost.kinds == ("identity",) and cost.comm_s == 0 and cost.bytes_sent_per_rank == 0
    assert cost.step_s == pytest.approx(COMPUTE)


def test_local_sgd_pays_one_allreduce_every_h_steps():
    H = 8
    cost = predict_step(f"local:{H}", one_node(4), M, COMPUTE)
    assert cost.period == H and cost.kinds == ("identity", "average")
    assert cost.step_s == pytest.approx(COMPUTE + ring_allreduce_seconds(one_node(4), M) / H)


def test_one_peer_exponential_on_one_node_is_one_model_per_step():
    cost = predict_step("dsgd:one-peer-exponential", one_node(8), M, COMPUTE)
    assert cost.period == 3
    assert cost.step_s == pytest.approx(COMPUTE + ALPHA + M / BETA)


# -- two link classes -----------------------------------------------------------------------------
def test_a_ring_over_two_nodes_has_two_inter_node_messages_per_node():
    cluster = two_nodes()
    plans = rank_plans(topologies.from_spec("ring", 8), 0, cluster.size, 1)
    sent, received = np.zeros(2, int), np.zeros(2, int)
    for rank, plan in enumerate(plans):
        node = rank // 4
        sent[node] += sum(1 for peer, _ in plan.send_to if peer // 4 != node)
        received[node] += sum(1 for peer, _ in plan.recv_from if peer // 4 != node)
    assert sent.tolist() == [2, 2] and received.tolist() == [2, 2]  # 3 <-> 4 and 7 <-> 0
    assert predict_step("dsgd:ring", cluster, M, COMPUTE).inter_node_messages == 4


def test_a_shared_nic_carries_the_whole_nodes_inter_node_bytes():
    # ranks 0 and 3 of node 0 each send one model off the node: 2 M through the node's one NIC
    shared = predict_step("dsgd:ring", two_nodes(nic_shared=True), M, COMPUTE)
    assert shared.step_s == pytest.approx(COMPUTE + ALPHA + 2 * M / BETA)
    own = predict_step("dsgd:ring", two_nodes(nic_shared=False), M, COMPUTE)
    assert own.step_s == pytest.approx(COMPUTE + ALPHA + M / BETA)


def test_one_peer_exponential_over_two_nodes_averages_its_period():
    # offsets 1, 2, 4 send 1, 2 and 4 models off each node: the slowest rank pays alpha + k M / beta
    cost = predict_step("dsgd:one-peer-exponential", two_nodes(), M, COMPUTE)
    assert cost.comm_s == pytest.approx(ALPHA + (1 + 2 + 4) / 3 * M / BETA)


# -- stragglers -----------------------------------------------------------------------------------
def test_gossip_waits_for_its_slowest_in_neighbour_and_allreduce_for_everyone():
    compute = np.array([[1.0, 5.0, 1.0, 1.0]])
    ring = [((1, 3), (0, 2), (1, 3), (0, 2))]  # whom each rank of a 4-ring receives from
    assert timeline.finish_times(compute, np.zeros((1, 4)), ring)[0].tolist() == [5, 5, 5, 1]
    assert timeline.finish_times(compute, np.zeros((1, 4)), [timeline.EVERYONE])[0].tolist() == [5, 5, 5, 5]


def numpy_ring_with_stragglers(sigma, prob, slowdown, seed, steps, n, comm):
    """The synchronous ring of the docs, written out again: draws, then the max-plus recursion."""
    rng = np.random.default_rng(seed)
    z, u = rng.standard_normal((steps, n)), rng.random((steps, n))
    c = COMPUTE * np.exp(sigma * z - sigma ** 2 / 2) * np.where(u < prob, slowdown, 1.0)
    finish = np.zeros(n)
    for t in range(steps):
        ready = finish + c[t]
        finish = np.maximum(ready, np.maximum(np.roll(ready, 1), np.roll(ready, -1))) + comm
    return finish.max() / steps


def test_seeded_stragglers_match_the_numpy_recursion():
    stragglers = Stragglers(sigma=0.3, prob=0.1, slowdown=4.0, seed=7)
    cost = predict_step("dsgd:ring", one_node(6), M, COMPUTE, stragglers, steps=50)
    expected = numpy_ring_with_stragglers(0.3, 0.1, 4.0, 7, 50, 6, ALPHA + 2 * M / BETA)
    assert cost.step_s == pytest.approx(expected)


def test_with_stragglers_gossip_loses_less_than_allreduce():
    cluster = Cluster(nodes=1, ranks_per_node=16, intra=Link(0, 1e15), inter=Link(0, 1e15))  # free network
    stragglers = Stragglers(prob=0.05, slowdown=5.0, seed=1)
    ring = predict_step("dsgd:ring", cluster, M, COMPUTE, stragglers, steps=200).step_s
    allreduce = predict_step("csgd", cluster, M, COMPUTE, stragglers, steps=200).step_s
    mean_compute = COMPUTE * (1 + 0.05 * 4)
    assert mean_compute < ring < allreduce


# -- fits -----------------------------------------------------------------------------------------
def test_fit_recovers_alpha_and_beta_from_gossip_and_from_allreduce_times():
    x = np.array([1e5, 1e6, 1e7])
    gossip = fit.sparse_link(fit.fit_line(x, ALPHA + x / BETA))
    assert gossip["alpha_s"] == pytest.approx(ALPHA) and gossip["beta_bytes_per_s"] == pytest.approx(BETA)
    times = [ring_allreduce_seconds(one_node(4), m) for m in x]
    allreduce = fit.allreduce_link(fit.fit_line(x, times), size=4)
    assert allreduce["alpha_s"] == pytest.approx(ALPHA) and allreduce["beta_bytes_per_s"] == pytest.approx(BETA)


def test_fit_reports_each_points_relative_error():
    line = fit.fit_line([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    fitted = line["a_s"] + line["b_s_per_byte"] * np.array([1.0, 2.0, 3.0])
    assert line["relative_error"] == pytest.approx(((fitted - [1, 2, 4]) / [1, 2, 4]).tolist())
    assert max(map(abs, line["relative_error"])) > 0.01  # not on a line: the errors show it


# -- the published setups -------------------------------------------------------------------------
def test_sgp_per_node_scenario_is_priced_as_described():
    scenario = next(s for s in papers.scenarios() if s.name.endswith("per-node"))
    row = papers.price(scenario)
    a, b, c, mb = scenario.cluster.inter.alpha, scenario.cluster.inter.beta, scenario.compute_s, scenario.model_bytes
    gossip = c + a + mb / b  # one peer: one model out and one in through the node's NIC
    allreduce = c + 2 * 31 * (a + mb / 32 / b)
    assert row["published_speedup"] == pytest.approx(5.0 / 1.6)
    assert row["predicted_speedup"] == pytest.approx(allreduce / gossip)


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: Link(0, -1), lambda: Link(-1, 1), lambda: Link(0, float("nan")),
                                  lambda: one_node(0), lambda: Stragglers(prob=2),
                                  lambda: predict_step("dsgd:moebius", one_node(4), M, COMPUTE),
                                  lambda: predict_step("local:0", one_node(4), M, COMPUTE),
                                  lambda: predict_step("csgd", one_node(4), -M, COMPUTE)])
def test_bad_values_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("argv", [["predict", "--inter-bandwidth", "-1"], ["predict", "--nodes", "0"],
                                  ["predict", "--topology", "moebius"], ["predict", "--straggler-prob", "2"]])
def test_cli_bad_input_is_one_line_and_exit_2(argv, capsys):
    try:
        status = cli.main(argv)
    except SystemExit as e:  # argparse's own checks
        status = e.code
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_cli_predict_prints_every_algorithm_with_its_speedup(capsys):
    assert cli.main(["predict", "--nodes", "1", "--ranks-per-node", "4", "--topology", "ring", "torus"]) == 0
    report = json.loads(capsys.readouterr().out)
    names = [r["algorithm"] for r in report["results"]]
    assert names == ["csgd", "local:8", "identity", "dsgd:ring"]
    assert [s["algorithm"] for s in report["skipped"]] == ["dsgd:torus"]  # no 3 x 3 grid on 4 ranks
    speedup = {r["algorithm"]: r["speedup_vs_allreduce"] for r in report["results"]}
    csgd = report["results"][0]["step_s"]
    assert speedup["csgd"] == 1 and speedup["identity"] == pytest.approx(csgd / report["compute_s"])


def mix_report(times: dict) -> dict:
    """A `dsgd.bench mix --json` report on 4 ranks: times[(topology, numel)] = (dsgd_s, raw_s)."""
    results = []
    for (topology, numel), (dsgd_s, raw_s) in times.items():
        kind = "average" if topology == "complete" else "sparse"
        sent = 4 * numel * (1 if kind == "average" else 2)
        results.append({"topology": topology, "kind": kind, "numel": numel, "dsgd_s": dsgd_s, "raw_s": raw_s,
                        "bytes_sent_per_rank": sent})
    return {"world_size": 4, "date": "2026-12-02", "load_average": 9.5, "results": results}


def calibrate(tmp_path, capsys, times) -> tuple:
    path = tmp_path / "mix.json"
    path.write_text(json.dumps(mix_report(times)))
    assert cli.main(["calibrate", "--input", str(path)]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_calibrate_fits_the_bandwidth_of_recorded_gossip_and_allreduce_times(tmp_path, capsys):
    # gossip: 20 us + bytes sent / 1 GB/s; allreduce on 4 ranks: 6 alpha + 1.5 M / beta with alpha 5 us, beta 2 GB/s
    gossip = lambda n: 20e-6 + 8 * n / 1e9
    allreduce = lambda n: 6 * 5e-6 + 1.5 * 4 * n / 2e9
    report, err = calibrate(tmp_path, capsys, {**{("ring", n): (gossip(n), gossip(n)) for n in (16384, 65536)},
                                                **{("complete", n): (allreduce(n), allreduce(n)) for n in (16384, 65536)}})
    assert err == ""
    assert report["fits"]["sparse"]["dsgd_s"]["beta_bytes_per_s"] == pytest.approx(1e9)
    assert report["fits"]["sparse"]["dsgd_s"]["alpha_s"] == pytest.approx(20e-6)
    assert report["fits"]["average"]["raw_s"]["beta_bytes_per_s"] == pytest.approx(2e9)
    assert report["fits"]["average"]["raw_s"]["alpha_s"] == pytest.approx(5e-6)
    assert len(report["cross_check"]) == 2


def test_calibrate_on_times_that_noise_made_shrink_reports_no_bandwidth_and_why(tmp_path, capsys):
    """A loaded machine measured the larger gossip size faster: the slope is negative, and no
    bandwidth (least of all a negative one) is claimed; the allreduce fit still stands."""
    allreduce = lambda n: 6 * 5e-6 + 1.5 * 4 * n / 2e9
    report, err = calibrate(tmp_path, capsys, {("ring", 16384): (9e-4, 9e-4), ("ring", 65536): (7e-4, 8e-4),
                                                **{("complete", n): (allreduce(n), allreduce(n)) for n in (16384, 65536)}})
    sparse = report["fits"]["sparse"]
    for side in ("dsgd_s", "raw_s"):
        assert sparse[side]["beta_bytes_per_s"] is None and sparse[side]["alpha_s"] is None
        assert sparse[side]["unfit"].startswith("the times did not grow with the bytes")
    assert report["cross_check"] == []  # it is priced with the gossip link
    assert report["fits"]["average"]["raw_s"]["beta_bytes_per_s"] == pytest.approx(2e9)
    assert err.count("warning: no link fitted for sparse") == 2
