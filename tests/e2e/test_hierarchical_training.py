"""The trainer with --topology hierarchical: groups from the launcher, and the same training whether
groups run as an allreduce plus an exchange (whole groups on ranks) or as a neighbour exchange."""
import torch
import yaml

from trainer import TINY, metrics, train, train_here, worker_params

FLAGS = [*TINY, "--algorithm", "dsgd", "--steps-per-epoch", "8", "--eval-every", "8", "--checkpoint-every", "8",
         "--seed", "3"]


def test_allreduce_plus_exchange_trains_as_the_neighbour_exchange_of_the_same_w(tmp_path):
    spec = "hierarchical:group=2,outer=ring"
    train(4, tmp_path / "4x2", *FLAGS, "--topology", spec, "--workers-per-rank", "2")   # 4 groups, one per rank
    train_here(8, tmp_path / "1x8", *FLAGS, "--topology", spec)   # all groups on one rank
    torch.testing.assert_close(worker_params(tmp_path / "4x2"), worker_params(tmp_path / "1x8"), rtol=1e-5, atol=1e-6)
    assert metrics(tmp_path / "4x2")[-1]["consensus_distance"] > 1e-6, "a ring of groups does not average exactly"


def test_without_a_group_size_one_group_is_the_launchers_node(tmp_path):
    train(2, tmp_path, *FLAGS, "--topology", "hierarchical")
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["gossip"]["topology"] == "hierarchical:group=2"   # 2 ranks on this node, 1 worker each
    assert metrics(tmp_path)[-1]["consensus_distance"] < 1e-10       # one group: the exact average
