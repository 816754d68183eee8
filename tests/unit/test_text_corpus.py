"""The language model's text: every fortune file joined as bytes, the last tenth held out; a missing
corpus is named with the package that provides it; samples are windows of the byte stream."""
import pytest
import torch

from dsgd.data.errors import DatasetError
from dsgd.data.text import TokenStream, load_fortunes


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


def test_samples_are_windows_that_tile_the_text_and_their_targets_are_one_token_later():
    text = torch.arange(23, dtype=torch.uint8)
    s = TokenStream("t", text, context=5)
    assert len(s) == 4  # (23 - 1) // 5 whole windows, each with its next token
    x, y = s.take(torch.tensor([0, 3]), "cpu")
    assert x.dtype == y.dtype == torch.int64
    assert x.tolist() == [[0, 1, 2, 3, 4], [15, 16, 17, 18, 19]]
    assert y.tolist() == [[1, 2, 3, 4, 5], [16, 17, 18, 19, 20]]
    assert torch.equal(s.take(slice(1, 3), "cpu")[0], s.take(torch.tensor([1, 2]), "cpu")[0])
    assert torch.equal(s.draw(torch.tensor([2]), 0, 1, 7, False, 0.0, "cpu")[1], s.take(torch.tensor([2]), "cpu")[1])


def test_a_text_without_one_whole_window_is_refused():
    with pytest.raises(ValueError, match="the t text has 8 tokens, too few for one sample of 8 and its next token"):
        TokenStream("t", torch.zeros(8, dtype=torch.uint8), context=8)
