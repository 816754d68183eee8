"""`python -m topologies` as a user runs it: one JSON object, or one error line and exit 2."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "topologies", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("topologies: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_show_ring_json_gives_the_closed_form_lambda2():
    result = cli("show", "ring", 16, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert abs(info["lambda2"] - (1 + 2 * math.cos(2 * math.pi / 16)) / 3) < 1e-9
    assert info["name"] == "ring" and info["n"] == 16 and info["period"] == 1 and info["step"] == 0
    assert np.allclose(info["W"], np.eye(16) / 3 + np.roll(np.eye(16), 1, 1) / 3
                       + np.roll(np.eye(16), -1, 1) / 3)
    assert abs(info["spectral_gap"] - (1 - info["lambda2"])) < 1e-12


def test_show_accepts_specs_options_and_steps():
    info = json.loads(cli("show", "torus:rows=4", 16, "--option", "cols=4", "--json").stdout)
    assert abs(info["lambda2"] - 0.6) < 1e-12
    info = json.loads(cli("show", "one-peer-exponential", 8, "--step", 4, "--json").stdout)
    assert info["period"] == 3 and info["step"] == 4 and info["time_varying"]
    assert info["W"][0][2] == 0.5  # step 4 = hop 2^(4 mod 3)


def test_show_prints_a_readable_summary():
    result = cli("show", "ring", 5, "--weights", "metropolis")
    assert result.returncode == 0
    assert "lambda2" in result.stdout and "spectral gap" in result.stdout and "0.3333" in result.stdout


def test_list_names_every_family():
    out = cli("list").stdout
    for name in ("complete", "ring", "torus", "one-peer-exponential", "matrix-file"):
        assert name in out


@pytest.mark.parametrize("args, fragment", [
    (("show", "mesh", 8), "unknown topology 'mesh'"),
    (("show", "torus", 7), "torus needs n = rows*cols with rows, cols >= 3, got n=7"),
    (("show", "ring", "many"), "invalid int value"),
    (("show", "ring", 8, "--option", "rows"), "expected key=value"),
    (("show", "ring", 8, "--option", "rows=3"), "unknown option 'rows' for ring"),
    (("show", "exponential", 8, "--weights", "metropolis"), "exponential takes weights"),
    (("draw", "ring", 8), "required: -o/--output"),
    ((), "required"),
])
def test_bad_input_is_one_error_line_and_exit_2(args, fragment):
    assert_one_line_error(cli(*args), fragment)


def test_bad_matrix_files_are_one_error_line(tmp_path):
    bad = tmp_path / "W.txt"
    bad.write_text("0.5 0.5\n0.5 0.4\n")
    assert_one_line_error(cli("show", f"matrix-file:path={bad}", 2), "row 1 sums to 0.9")
    corrupt = tmp_path / "W.npy"
    corrupt.write_bytes(b"not numpy at all")
    assert_one_line_error(cli("show", f"matrix-file:path={corrupt}", 2), "not a valid .npy file")
    assert_one_line_error(cli("show", f"matrix-file:path={tmp_path / 'gone.npy'}", 2), "No such file")


def test_draw_writes_a_png(tmp_path):
    out = tmp_path / "exp.png"
    result = cli("draw", "exponential", 8, "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_draw_to_an_unwritable_place_is_one_error_line(tmp_path):
    assert_one_line_error(cli("draw", "ring", 4, "-o", tmp_path / "no" / "dir" / "r.png"),
                          "cannot write")


@pytest.mark.parametrize("parse, spec", [
    ("topology", "ring:seed=1,seed=2"), ("codec", "top-k:count=3,count=4"), ("partition", "shards:k=2,k=3")])
def test_topologies_codecs_and_partitions_share_one_grammar(parse, spec):
    """A key given twice (likewise an option without '=') is refused the same way in every kind of spec."""
    from dsgd.compress import parse_codec
    from dsgd.data.partition import parse_partition
    from topologies.options import parse_spec
    read = {"topology": parse_spec, "codec": parse_codec, "partition": parse_partition}[parse]
    key = spec.split(":")[1].split("=")[0]
    with pytest.raises(ValueError, match=f"option '{key}' given twice in {parse} spec '{spec}'"):
        read(spec)
    with pytest.raises(ValueError, match="expected key=value"):
        read(spec.split("=")[0])
