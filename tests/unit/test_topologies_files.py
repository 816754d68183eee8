"""User graph and matrix files: small files written here, good and bad."""
import numpy as np
import pytest

from topologies import TopologyError, build, from_spec

RING5 = "# a 5-ring\n0 1\n1 2\n2 3  # inline comment\n3 4\n\n4,0\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_edge_list_with_comments_and_commas(tmp_path):
    topo = from_spec(f"graph-file:path={write(tmp_path, 'g.txt', RING5)}", 5)
    assert sorted(topo.graph().edges) == [(0, 1), (0, 4), (1, 2), (2, 3), (3, 4)]
    assert np.allclose(topo.W(), build("ring", 5).W())  # Metropolis on a ring is 1/3


def test_adjacency_text_and_npy_give_the_same_graph(tmp_path):
    A = np.array([[0, 1, 1, 1], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]])  # star, hub 0
    text = write(tmp_path, "a.txt", "\n".join(" ".join(map(str, row)) for row in A))
    npy = tmp_path / "a.npy"
    np.save(npy, A)
    expected = build("star", 4).W()
    assert np.allclose(build("graph-file", 4, path=text).W(), expected)
    assert np.allclose(build("graph-file", 4, path=str(npy), weights="metropolis").W(), expected)


def test_format_option_forces_the_reading(tmp_path):
    path = write(tmp_path, "pair.txt", "0 1\n1 0\n")
    assert build("graph-file", 2, path=path, format="adjacency").graph().number_of_edges() == 1
    assert build("graph-file", 2, path=path, format="edges").graph().number_of_edges() == 1


@pytest.mark.parametrize("text, n, message", [
    (RING5, 6, "names nodes 0..4, but n=6"),
    ("0 1\n2 3\n", 4, "is disconnected (2 components)"),
    ("0 1\n1 x\n", 2, "line 2: 'x' is not a number"),
    ("0 1 2\n1 2 0\n", 3, "edge lines need 2 node numbers"),
    ("0 1\n1 -2\n", 3, "integers >= 0"),
    ("0 1 0\n0 0 1\n1 0 0\n", 3, "not finite and symmetric"),
    ("# nothing\n", 3, "holds no numbers"),
])
def test_bad_graph_files(tmp_path, text, n, message):
    with pytest.raises(TopologyError) as info:
        build("graph-file", n, path=write(tmp_path, "bad.txt", text))
    assert message in str(info.value)


def test_matrix_file_npy_and_text(tmp_path):
    W = 0.5 * (np.eye(4) + np.roll(np.eye(4), 1, axis=1))  # directed: i receives from i + 1
    np.save(tmp_path / "W.npy", W)
    text = write(tmp_path, "W.txt", "\n".join(", ".join(f"{x:.17g}" for x in row) for row in W))
    for path in (str(tmp_path / "W.npy"), text):
        topo = from_spec(f"matrix-file:path={path}", 4)
        assert np.array_equal(topo.W(), W)
        assert topo.directed and topo.graph().has_edge(1, 0)


@pytest.mark.parametrize("text, message", [
    ("0.5 0.5 0\n0.5 0.5 0\n0 0 0.9\n", "row 2 sums to 0.9, not 1"),
    ("0.5 0.5\n0.5 0.5\n", "is 2x2, but n=3"),
    ("0.5 0.5 0\n0.5 0.5\n0 0 1\n", "row 1 has 2 numbers, row 0 has 3"),
])
def test_bad_matrix_text_files(tmp_path, text, message):
    with pytest.raises(TopologyError) as info:
        build("matrix-file", 3, path=write(tmp_path, "W.txt", text))
    assert message in str(info.value)


def test_missing_and_corrupt_npy_files(tmp_path):
    with pytest.raises(TopologyError, match="cannot read matrix file .*No such file"):
        build("matrix-file", 3, path=str(tmp_path / "none.npy"))
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(TopologyError, match="is not a valid .npy file"):
        build("matrix-file", 3, path=str(tmp_path / "junk.npy"))
    np.save(tmp_path / "vec.npy", np.ones(3) / 3)
    with pytest.raises(TopologyError, match="1-D array"):
        build("matrix-file", 3, path=str(tmp_path / "vec.npy"))
