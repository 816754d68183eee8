"""The communicator Protocol is exactly what the mixer and the trainer use, and every backend has all of it."""
import inspect
import re
from pathlib import Path

import pytest

from dsgd.comm.base import Communicator
from dsgd.comm.mpi import MPICommunicator
from dsgd.comm.simulated import SelfCommunicator
from dsgd.comm.torch_dist import TorchDistCommunicator

DSGD = Path(__file__).resolve().parents[2] / "dsgd"
USERS = [DSGD / "comm" / "mixer.py", DSGD / "comm" / "compressed.py", *sorted((DSGD / "train").glob("*.py"))]
METHODS = {n for n, v in vars(Communicator).items() if callable(v) and not n.startswith("_")}
ATTRIBUTES = set(Communicator.__annotations__)


def used_members() -> set:
    names = set()
    for path in USERS:
        # `comm.x` or `self.comm.x`, not module paths such as dsgd.comm.mpi
        names |= set(re.findall(r"(?:(?<=self\.)|(?<![\w.]))comm\.([a-z_]+)", path.read_text()))
    return names


def test_the_protocol_lists_exactly_what_the_mixer_and_trainer_use():
    assert used_members() == METHODS | ATTRIBUTES


@pytest.mark.parametrize("backend", [MPICommunicator, TorchDistCommunicator, SelfCommunicator],
                         ids=lambda c: c.__name__)
def test_every_backend_implements_the_protocol(backend):
    for name in METHODS:
        assert hasattr(backend, name), f"{backend.__name__} lacks {name}"
        wanted = list(inspect.signature(getattr(Communicator, name)).parameters)
        got = list(inspect.signature(getattr(backend, name)).parameters)
        assert got[:len(wanted)] == wanted, f"{backend.__name__}.{name}{got} != {wanted}"
