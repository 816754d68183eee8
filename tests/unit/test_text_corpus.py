"""The language model's text: every fortune file joined as bytes, the last tenth held out; a missing
corpus is named with the package that provides it."""
import pytest

from dsgd.data.errors import DatasetError
from dsgd.data.text import load_fortunes


def test_the_corpus_is_the_files_bytes_in_name_order_with_the_last_tenth_held_out(tmp_path):
    (tmp_path / "b").write_bytes(b"world\n" * 10)
    (tmp_path / "a").write_bytes(b"hello\n" * 10)
    (tmp_path / "a.dat").write_bytes(b"\x00index")  # strfile's index, not text
    train, val = load_fortunes(tmp_path)
    assert bytes(train.tolist()) + bytes(val.tolist()) == b"hello\n" * 10 + b"world\n" * 10
    assert (len(train), len(val)) == (108, 12)


def test_a_missing_corpus_says_which_package_to_install(tmp_path):
    with pytest.raises(DatasetError, match="install the Debian package fortunes"):
        load_fortunes(tmp_path / "nowhere")
