"""A task is the loss of a batch and what evaluation counts; the trainer knows a model's output only through it."""
import math

import torch
import torch.nn.functional as F

from dsgd.data.datasets import load_dataset
from dsgd.data.text import TokenStream
from dsgd.tasks import Classification, NextToken, task_for


def test_classification_is_cross_entropy_and_argmax_hits_per_sample():
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(7, 5, generator=g), torch.randint(0, 5, (7,), generator=g)
    task = Classification()
    assert torch.equal(task.loss(out, y), F.cross_entropy(out, y))
    assert torch.equal(task.loss_sum(out, y), F.cross_entropy(out, y, reduction="sum"))
    assert int(task.hits(out, y)) == sum(int(out[i].argmax()) == int(y[i]) for i in range(7))
    assert task.count(y) == 7 and task.extra_metrics("test", 1.0) == {}


def test_next_token_averages_over_every_position_and_reports_perplexity():
    g = torch.Generator().manual_seed(1)
    out, y = torch.randn(3, 4, 11, generator=g), torch.randint(0, 11, (3, 4), generator=g)
    task = NextToken()
    by_hand = sum(-torch.log_softmax(out[i, t], 0)[y[i, t]] for i in range(3) for t in range(4)) / 12
    torch.testing.assert_close(task.loss(out, y), by_hand)
    torch.testing.assert_close(task.loss_sum(out, y), by_hand * 12)
    assert task.count(y) == 12
    assert int(task.hits(out, y)) == int((out.argmax(-1) == y).sum())
    assert task.extra_metrics("test", 2.0) == {"test_perplexity": math.exp(2.0)}


def test_the_dataset_names_its_task():
    images = load_dataset("synthetic", n_samples=8, image_shape=(1, 4, 4))
    text = TokenStream("t", torch.arange(50, dtype=torch.uint8), context=4)
    assert isinstance(task_for(images), Classification) and not isinstance(task_for(images), NextToken)
    assert isinstance(task_for(text), NextToken)
