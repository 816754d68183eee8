import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """One thread, as every rank of the MPI tests has: a reduction split over another number of
    threads rounds differently, and these runs are compared with them bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
