"""The Fashion-MNIST CNN learns: over 85% test accuracy after a few hundred SGD steps."""
import statistics

import pytest
import torch
import torch.nn.functional as F

from dsgd.data import load_dataset, local_batch, make_sampler
from dsgd.data.fashion_mnist import DEFAULT_DIR
from dsgd.models import build_model

pytestmark = pytest.mark.skipif(not (DEFAULT_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                                reason="package dataset-fashion-mnist not installed")

CHECKPOINTS = (500, 550, 600)  # steps of batch 32: 19200 samples, a third of an epoch
# Half the test set keeps the test quick; accuracy on 5000 images has a standard
# error of about 0.5 points, well inside the margin seen over seeds (medians 87-88%).
N_TEST = 5000


def _accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        correct = sum((model(xb).argmax(1) == yb).sum().item()
                      for xb, yb in zip(x.split(250), y.split(250)))
    model.train()
    return correct / len(y)


@pytest.fixture
def one_thread():
    # One thread: on a shared 2-core runner, a second OpenMP thread that loses its
    # core stalls every parallel op, making the test many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_cnn_reaches_85_percent_in_600_steps_of_plain_sgd(one_thread):
    train = load_dataset("fashion-mnist", train=True)
    test = load_dataset("fashion-mnist", train=False)
    x_test = (test.images[:N_TEST].float() / 255 - test.mean[0]) / test.std[0]
    y_test = test.labels[:N_TEST]
    torch.manual_seed(0)
    model = build_model("cnn", 1, 10, 28, norm="bn")
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sampler = make_sampler(False, len(train), n_workers=1, local_batch=32, seed=0)
    accuracies = []
    for step in range(CHECKPOINTS[-1]):
        x, y = local_batch(train, sampler, worker=0, step=step, seed=0)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if step + 1 in CHECKPOINTS:
            accuracies.append(_accuracy(model, x_test, y_test))
    # At a constant learning rate of 0.05 single iterates swing by a few points,
    # so the claim is about the typical late iterate: the median of three.
    print(f"test accuracy at steps {CHECKPOINTS}: {accuracies}")
    assert statistics.median(accuracies) > 0.85, accuracies
    assert min(accuracies) > 0.80, accuracies
