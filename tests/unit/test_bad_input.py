"""Bad input: one clear line on stderr, exit status 2, no traceback, before any training step.

Each row is (flags, what the user must read). The README's table lists the same cases.
"""
import pickle
import subprocess
import sys

import numpy as np
import pytest

from dsgd.train.cli import main

FAST = ["--steps-per-epoch", "2", "--epochs", "1", "--norm", "none", "--eval-every", "2"]


def _user_files(tmp_path):
    (tmp_path / "bad.yaml").write_text("lr: [unclosed\n")
    (tmp_path / "unknown.yaml").write_text("learning_rate: 0.1\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    np.save(tmp_path / "notstochastic.npy", np.ones((1, 1)) * 0.5)
    np.savetxt(tmp_path / "W3.txt", np.full((3, 3), 1 / 3))
    (tmp_path / "twice.yaml").write_text("lr: 0.1\nlr: 0.2\n")
    (tmp_path / "latin1.yaml").write_bytes("lr: 0.1  # d\xe9faut\n".encode("latin-1"))
    np.save(tmp_path / "identity.npy", np.eye(4))
    np.save(tmp_path / "two_pairs.npy", np.kron(np.eye(2), np.full((2, 2), 0.5)))
    (tmp_path / "chain.txt").write_text("0 1\n1 2\n2 3\n")  # 3 reaches nobody
    (tmp_path / "section.yaml").write_text("data: 5\n")
    (tmp_path / "yes_as_number.yaml").write_text("momentum: true\n")
    (tmp_path / "mapping_as_text.yaml").write_text("partition: {alpha: 1}\n")
    (tmp_path / "flat_model.yaml").write_text("model: mlp\ncompress: none\n")  # settings named like their section
    return tmp_path


CASES = [
    (["--frobnicate", "1"], "unrecognized arguments: --frobnicate"),
    (["--lr", "0"], "lr must be > 0, got 0.0"),
    (["--lr", "-0.1"], "lr must be > 0, got -0.1"),
    (["--lr", "fast"], "lr must be float, got 'fast'"),
    (["--local-steps", "-2"], "local-steps must be >= 1, got -2"),
    (["--local-steps", "1.5"], "local_steps must be int, got '1.5'"),
    (["--total-batch-size", "100"], "total-batch-size 100 != workers 1 x local batch 32 = 32"),
    (["--batch-size", "0"], "batch-size must be >= 1, got 0"),
    (["--epochs", "0"], "epochs must be > 0, got 0.0"),
    (["--workers-per-rank", "0"], "workers-per-rank must be >= 1, got 0"),
    (["--physical-batch-size", "5"], "physical-batch-size 5 must divide batch-size 32"),
    (["--label-noise", "1.5"], "label-noise must be in [0, 1), got 1.5"),
    (["--momentum", "1.5"], "--momentum must be in [0, 1), got 1.5"),
    (["--threads", "-1"], "--threads must be in [0, 1024], got -1"),
    (["--threads", "100000"], "--threads must be in [0, 1024], got 100000"),
    (["--epochs", "inf"], "--epochs must be a finite number, got inf"),
    (["--warmup-epochs", "inf"], "--warmup-epochs must be a finite number, got inf"),
    (["--milestones", "1,inf"], "--milestones must be a finite number, got 1,inf"),
    (["--switch-epochs", "inf"], "--switch-epochs must be a finite number, got inf"),
    (["--milestones", "1,soon"], "milestones must be a list of numbers, got '1,soon'"),
    (["--qsr-alpha", "inf"], "--qsr-alpha must be a finite number, got inf"),
    (["--qsr-power", "inf"], "--qsr-power must be a finite number, got inf"),
    (["--lr", "nan"], "--lr must be a finite number, got nan"),
    (["--optimizer", "adamw", "--eps", "inf"], "--eps must be a finite number, got inf"),
    (["--seed", str(2 ** 70)], f"--seed must be in [0, 2^63), got {2 ** 70}"),
    (["--bn-batches", "1000000000"], "--bn-batches must be in [0, 10000], got 1000000000"),
    (["--optimizer", "adamw", "--betas", "0.9"], "--betas must be two numbers in [0, 1), got 0.9"),
    (["--gamma", "0"], "--gamma must be > 0, got 0.0"),
    (["--milestones", "5,2"], "--milestones must be increasing numbers >= 0, got 5,2"),
    (["--checkpoint-every", "-5"], "--checkpoint-every must be >= 0, got -5"),
    (["--eval-every", "0"], "--eval-every must be >= 1, got 0"),
    (["--algorithm", "gradient-tracking", "--momentum", "0.9"],
     "--algorithm gradient-tracking is defined without momentum: use --momentum 0"),
    (["--algorithm", "qgm", "--optimizer", "adamw"], "--algorithm qgm is its own update rule on SGD steps; "
     "--optimizer adamw is not supported with it"),
    (["--algorithm", "d2", "--topology", "ring", "--workers-per-rank", "4"],
     "d2 needs every W's eigenvalues above -1/3, but ring on 4 workers has -0.3333 (W(0)): use --algorithm "
     "exact-diffusion"),
    (["--algorithm", "dsgd", "--topology", "random-out", "--workers-per-rank", "4"],
     "topology random-out is only column-stochastic (a push graph): use --algorithm sgp"),
    (["--compress", "zip"], "--compress: unknown codec 'zip' (known: none, fp16, bf16, int8, sign, top-k"),
    (["--compress", "top-k:ratio=2"], "--compress: top-k ratio must be in (0, 1], got 2.0"),
    (["--consensus-step", "0"], "--consensus-step must be in (0, 1], got 0.0"),
    (["--algorithm", "dsgd", "--compress", "sign"], "--compress applies to choco (compressed gossip), to csgd, "
     "local, postlocal, qsr (error-feedback averaging) and to diloco, gossip-diloco (compressed outer gradients); "
     "--algorithm dsgd mixes dense"),
    (["--algorithm", "local", "--compress", "sign", "--mix-optimizer-state", "true"],
     "--mix-optimizer-state true is not supported with --compress"),
    (["--algorithm", "choco", "--topology", "random-one-peer", "--workers-per-rank", "4"],
     "choco keeps one accumulator per matrix of the graph's period; random-one-peer has 1000 (at most 64)"),
    (["--algorithm", "choco", "--global-every", "4", "--workers-per-rank", "4"],
     "--global-every is not supported with choco"),
    (["--algorithm", "sgp", "--norm", "bn", "--workers-per-rank", "4"],
     "sgp would mix BatchNorm statistics over a push graph without de-biasing them"),
    (["--nesterov", "true"], "nesterov needs momentum > 0"),
    (["--algorithm", "gossip"], "algorithm must be one of csgd, local, postlocal, qsr, dsgd, gradient-tracking, d2, "
     "exact-diffusion, qgm, sgp, choco, diloco, gossip-diloco, streaming-diloco, sparta; got 'gossip'"),
    (["--model", "transformer"], "model must be one of"),
    (["--overlap", "true", "--algorithm", "local"], "overlap applies to dsgd only"),
    (["--topology", "moebius"], "topology: unknown topology 'moebius' (known: complete, ring"),
    (["--topology", "torus", "--workers-per-rank", "7"], "torus needs n = rows*cols with rows, cols >= 3"),
    (["--topology", "ring", "--workers-per-rank", "2"], "topology: ring needs n >= 3"),
    (["--topology", "hierarchical:outer=ring", "--workers-per-rank", "4"],
     "topology: hierarchical with group=4: between its 1 group(s): ring needs n >= 3"),
    (["--topology", "hierarchical:group=3", "--workers-per-rank", "4"],
     "hierarchical with group=3 needs n to be a multiple of 3, got n=4"),
    (["--topology", "matrix-file:path={tmp}/notstochastic.npy"], "topology:"),
    (["--topology", "matrix-file:path={tmp}/W3.txt", "--workers-per-rank", "4"], "topology:"),
    (["--config", "{tmp}/missing.yaml"], "recipe {tmp}/missing.yaml does not exist"),
    (["--config", "{tmp}/bad.yaml"], "is not valid YAML"),
    (["--config", "{tmp}/unknown.yaml"], "unknown setting 'learning_rate'"),
    (["--config", "{tmp}/list.yaml"], "must be a mapping of settings"),
    (["--dataset", "cifar10", "--data-dir", "{tmp}/nowhere"], "CIFAR-10"),
    (["--data-dir", "{tmp}/nowhere"], "{tmp}/nowhere"),
    (["--steps-per-epoch", "100000"], "steps-per-epoch 100000 needs"),
    (["--batch-size", "70000"], "is larger than the training set"),
    (["--resume", "{tmp}/nowhere"], "no checkpoint to resume from in {tmp}/nowhere"),
    (["--resume", "{tmp}/run/checkpoints/step-bogus"],
     "no checkpoint to resume from in {tmp}/run/checkpoints/step-bogus (expected checkpoints/latest.json)"),
    (["--resume", "auto", "--overwrite", "true"], "--overwrite true starts a new run and --resume continues one"),
    (["--partition", "zebra"], "--partition: unknown partition 'zebra' (known: iid, dirichlet:alpha=A, shards:k=K, "
     "sorted)"),
    (["--partition", "dirichlet:alpha=0"], "--partition: dirichlet alpha must be > 0 (and finite), got 0"),
    (["--partition", "dirichlet"], "--partition: partition dirichlet needs alpha=..., e.g. dirichlet:alpha=0.1"),
    (["--partition", "shards:k=0"], "--partition: shards k must be >= 1, got 0"),
    (["--partition", "shards:k=11"], "--partition shards:k=11: shards k=11 is more than the 10 classes"),
    (["--partition", "shards:k=10", "--replacement", "true", "--workers-per-rank", "7000"],
     "--partition shards:k=10: 7000 workers x k=10 shards = 70000 shards but only 60000 samples: some shards, "
     "and workers, would be empty"),
    (["--probe-samples", "0"], "--probe-samples must be >= 1, got 0"),
    (["--model", "cnn", "--norm", "gn", "--n-groups", "5"],
     "--n-groups 5 does not fit --model cnn: n_groups=5 does not divide a layer of 32 channels"),
    (["--algorithm", "csgd", "--outer-lr", "0.5"],
     "--outer-lr applies to diloco, gossip-diloco, streaming-diloco; --algorithm csgd has no outer step"),
    (["--algorithm", "streaming-diloco", "--local-steps", "2", "--fragment-delay", "2"],
     "--fragment-delay 2 must be below --local-steps 2: a fragment's exchange lands before its next round starts"),
    (["--algorithm", "streaming-diloco", "--model", "mlp", "--local-steps", "8", "--fragments", "99"],
     "--fragments 99 is more than the 4 parameter tensors of --model mlp"),
    (["--algorithm", "sparta", "--sparta-fraction", "0"], "--sparta-fraction must be in (0, 1], got 0"),
    (["--algorithm", "diloco", "--compress", "powersgd:rank=2"],
     "--compress powersgd:rank=2 compresses gradients of C-SGD: use it with --algorithm csgd, not diloco"),
    (["--dataset", "fortunes", "--model", "cnn"], "--model cnn reads images; --dataset fortunes is text: use --model gpt"),
    (["--model", "gpt"], "--model gpt reads text; --dataset fashion-mnist is images: use one of cnn, mlp"),
    (["--dataset", "fortunes", "--model", "gpt", "--partition", "shards:k=2"],
     "--partition shards:k=2 applies to labelled images; --dataset fortunes is text (next-token prediction)"),
    (["--dataset", "fortunes", "--model", "gpt", "--label-noise", "0.1"],
     "--label-noise applies to labelled images; --dataset fortunes is text"),
    (["--dataset", "fortunes", "--model", "gpt", "--context", "0"], "--context must be >= 1, got 0"),
    (["--model", "mlp", "--norm", "bn", "--batch-size", "1"],
     "--batch-size 1 with --norm bn: BatchNorm normalizes over a batch and needs at least 2 samples"),
    (["--model", "mlp", "--algorithm", "csgd", "--compress", "top-k:count=100000000"],
     "--compress top-k:count=100000000: count 100000000 is more than the"),
    (["--batch-size", "100000000", "--replacement", "true"],
     "batch-size 100000000 is larger than the training set (60000)"),
    (["--config", "{tmp}/latin1.yaml"], "recipe {tmp}/latin1.yaml is not UTF-8 text (byte 0xe9 at offset 12)"),
    (["--config", "{tmp}/twice.yaml"], "key 'lr' given twice (line 2)"),
    (["--config", "{tmp}/section.yaml"], "recipe {tmp}/section.yaml: data is a section: give its settings under it"),
    (["--config", "{tmp}/yes_as_number.yaml"], "momentum must be float, got True"),
    (["--config", "{tmp}/mapping_as_text.yaml"], "partition must be text, got {'alpha': 1}"),
    (["--config", "{tmp}/flat_model.yaml", "--lr", "-1"], "--lr must be > 0, got -1.0"),  # the recipe itself loads
    (["--topology", "matrix-file:path={tmp}/identity.npy", "--workers-per-rank", "4"],
     "is not connected: 4 groups of workers ([0]; [1]; [2]; ...) do not all reach each other"),
    (["--topology", "matrix-file:path={tmp}/two_pairs.npy", "--workers-per-rank", "4"],
     "is not connected: 2 groups of workers ([0, 1]; [2, 3]) do not all reach each other"),
    (["--algorithm", "sgp", "--topology", "digraph-file:path={tmp}/chain.txt", "--workers-per-rank", "4",
      "--momentum", "0"], "is not strongly connected: 4 groups of workers"),
    (["--algorithm", "qgm", "--compress", "sign"], "--algorithm qgm mixes dense"),
    (["--algorithm", "csgd", "--compress", "random-k:ratio=0.1,shared=yes-please"],
     "random-k option shared must be true or false, got 'yes-please'"),
    (["--algorithm", "choco", "--compress", "qsgd:levels=4,scaled=ture", "--workers-per-rank", "4"],
     "qsgd option scaled must be true or false, got 'ture'"),
    (["--algorithm", "csgd", "--compress", "top-k:ratio=0.5,ratio=0.01"],
     "option 'ratio' given twice in codec spec 'top-k:ratio=0.5,ratio=0.01'"),
    (["--algorithm", "csgd", "--compress", "top-k:ratio=-0.5,count=3"], "top-k: give ratio or count, not both"),
    (["--partition", "dirichlet:alpha=0.1,alpha=0.2"], "option 'alpha' given twice in partition spec"),
    (["--topology", "ring:seed=1,seed=2", "--workers-per-rank", "4"], "option 'seed' given twice in topology spec"),
    (["--elastic", "true", "--backend", "torch"], "--elastic needs --backend mpi (MPI's fault-tolerant "
                                                  "communicators); --backend torch cannot survive a lost rank"),
    (["--elastic", "true"], "--elastic: elastic mode needs an MPI with fault tolerance (ULFM) turned on: start the "
                            "job with `mpirun --with-ft ulfm` (Open MPI 5); this job was started without it"),
    (["--lost-data", "keep"], "lost_data must be one of reassign, drop; got 'keep'"),
    # finite, but more than the float32 kernels take: refused before a step, not an overflow inside one
    (["--lr", "1e39"], "--lr: 1e+39 is more than a float32 holds (at most 3.403e+38)"),
    (["--weight-decay", "1e300"], "--weight-decay: 1e+300 is more than a float32 holds (at most 3.403e+38)"),
    (["--algorithm", "diloco", "--outer-lr", "1e300"], "--outer-lr: 1e+300 is more than a float32 holds"),
    (["--lr", "1e38", "--lr-scaling", "linear", "--workers-per-rank", "4"],
     "the learning rate would reach 4e+38 (--lr 1e+38 x 4 workers (--lr-scaling linear)), more than a float32 "
     "holds (at most 3.403e+38)"),
    (["--gamma", "1e30", "--milestones", "0.25,0.5"],
     "the learning rate would reach 5e+58 (--lr 0.05 x --gamma 1e+30 at 2 milestones), more than a float32 holds"),
    (["--straggler-rank", "0", "--straggler-delay", "1e300"], "--straggler-delay must be in [0, 86400] (a day)"),
    (["--epochs", "1e300"], "--epochs 1e+300 of 2 steps is 2e+300 steps; a run has at most 2^53"),
    (["--dataset", "fortunes", "--model", "gpt", "--context", "100000000"],
     "--context 100000000: the fortunes text has "),
]


@pytest.mark.parametrize("flags, message", CASES, ids=[" ".join(c[0])[:40] for c in CASES])
def test_bad_input_gives_one_clear_line_and_status_2(tmp_path, capsys, flags, message):
    tmp = _user_files(tmp_path)
    argv = [f.replace("{tmp}", str(tmp)) for f in FAST + flags] + ["--out", str(tmp / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("dsgd.train: error: ")
    assert message.replace("{tmp}", str(tmp)) in err
    assert not (tmp / "run" / "checkpoints").exists()  # nothing was trained


def test_an_elastic_run_inside_one_process_is_refused(tmp_path, capsys):
    from dsgd.comm import SelfCommunicator
    assert main(FAST + ["--elastic", "true", "--out", str(tmp_path / "run")], comm=SelfCommunicator()) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("dsgd.train: error: --elastic needs ranks of their own, started by `mpirun --with-ft ulfm`, "
                   "not a run inside one process")


def test_corrupt_and_malicious_checkpoints_are_refused_without_running_code(tmp_path, capsys):
    ck = tmp_path / "run" / "checkpoints"
    (ck / "step-00000002").mkdir(parents=True)
    (ck / "latest.json").write_text('{"format": "dsgd-checkpoint-2", "step": 2, "dir": "step-00000002", '
                                    '"world_size": 1, "workers_per_rank": 1, "algorithm": "local", '
                                    '"topology": null, "seed": 0, "model": "cnn", "dataset": "fashion-mnist", '
                                    '"batch_size": 32}')
    (tmp_path / "run" / "config.yaml").write_text("algo:\n  algorithm: local\n")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (__import__("os").system, (f"touch {marker}",))

    (ck / "step-00000002" / "rank0.pt").write_bytes(pickle.dumps({"format": Evil()}))
    assert main(FAST + ["--resume", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "is corrupt or not a dsgd checkpoint" in err
    assert not marker.exists()
    (ck / "step-00000002" / "rank0.pt").write_bytes(b"\x00garbage")
    assert main(FAST + ["--resume", str(tmp_path / "run")]) == 2
    assert "is corrupt or not a dsgd checkpoint" in capsys.readouterr().err


def test_a_real_process_prints_no_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "dsgd.train", "--lr", "-1", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip() == "dsgd.train: error: --lr must be > 0, got -1.0"
    assert "Traceback" not in res.stdout + res.stderr


def test_a_checkpoint_of_another_format_version_is_refused_by_name(tmp_path, capsys):
    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "latest.json").write_text('{"format": "dsgd-checkpoint-1", "step": 2, "dir": "step-00000002"}')
    (tmp_path / "run" / "config.yaml").write_text("algo:\n  algorithm: local\n")
    assert main(FAST + ["--resume", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "was written by another version of dsgd (dsgd-checkpoint-1; this one reads dsgd-checkpoint-2)" in err
    assert len(err.splitlines()) == 1


def test_a_setting_the_algorithm_ignores_is_warned_about_once(tmp_path, capsys):
    argv = FAST + ["--model", "mlp", "--algorithm", "local", "--qsr-alpha", "0.1", "--topology", "ring",
                   "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == ["dsgd.train: warning: --qsr-alpha is ignored by --algorithm local",
                        "dsgd.train: warning: --topology is ignored by --algorithm local"]


def test_help_shows_each_option_type_or_choices_and_its_default_once():
    from dsgd.config import FIELDS, build_parser
    text = build_parser().format_help()
    assert "(default: None)" not in text and " V " not in text
    for name, (_, f, _) in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        action = next(a for a in build_parser()._actions if flag in a.option_strings)
        assert action.help.count("(default:") == 1, (flag, action.help)
        assert action.metavar and action.metavar != "V", flag
        if f.metadata.get("choices"):
            assert action.metavar == "{" + ",".join(f.metadata["choices"]) + "}"


def test_an_empty_out_is_refused_not_read_as_the_current_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(FAST + ["--out", ""]) == 2
    assert capsys.readouterr().err == "dsgd.train: error: --out must be a directory, not empty, got ''\n"
    assert list(tmp_path.iterdir()) == []


def test_a_benchmark_started_without_mpirun_on_a_graph_it_cannot_build_says_so_in_one_line():
    res = subprocess.run([sys.executable, "-m", "dsgd.bench", "compress"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr == ("python -m dsgd.bench compress: error: --topology on 1 rank(s): ring needs n >= 3, got n=1 "
                          "(for n=2 use complete); start it under mpirun -np N with more ranks\n")

