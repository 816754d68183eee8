"""Host buffers on huge pages (dsgd.comm.memory): the values torch.zeros gives, where they start, when they
are plain torch allocations, and the Recycler never handing out memory something still refers to."""
import io

import pytest
import torch

from dsgd.comm import BucketLayout
from dsgd.comm import memory
from dsgd.comm.memory import HEAD_BYTES, HUGE_PAGE, MIN_BYTES, Recycler, host_empty, host_zeros, huge_pages

BIG = MIN_BYTES // 4 + 3    # float32 entries of a buffer past the threshold


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8])
def test_a_large_buffer_is_zeroed_and_starts_a_cache_line_past_a_huge_page(dtype):
    m = MIN_BYTES // dtype.itemsize // 2 + 3
    t = host_zeros(2, m, dtype=dtype)
    assert (t.shape, t.dtype, t.device.type) == ((2, m), dtype, "cpu") and t.is_contiguous()
    assert not t.any()
    assert t.data_ptr() % HUGE_PAGE == HEAD_BYTES
    assert t.untyped_storage().nbytes() == 2 * m * dtype.itemsize   # no padding to save in a checkpoint
    t[1, -1] = 1
    assert int(t.sum()) == 1


def test_it_saves_and_loads_as_any_tensor():
    t = host_zeros(1, BIG)
    t.normal_(generator=torch.Generator().manual_seed(0))
    f = io.BytesIO()
    torch.save(t, f)
    assert torch.equal(torch.load(io.BytesIO(f.getvalue())), t)


def test_the_memory_lives_as_long_as_any_view_of_it():
    view = host_empty(2, BIG)[1, 5:9]
    view.fill_(3.0)
    assert view.tolist() == [3.0] * 4


def test_small_buffers_and_switched_off_huge_pages_are_plain_torch_allocations(monkeypatch):
    mapped = []
    real = memory._mapped
    monkeypatch.setattr(memory, "_mapped", lambda shape, dtype: mapped.append(shape) or real(shape, dtype))
    small = host_zeros(3, 5)
    assert small.untyped_storage().nbytes() == 60 and not small.any() and mapped == []
    with huge_pages(False):
        assert not memory.huge_pages_enabled()
        plain = host_zeros(1, BIG)
    assert memory.huge_pages_enabled() and mapped == [] and not plain.any()
    monkeypatch.setenv("DSGD_HUGE_PAGES", "0")
    assert not memory.huge_pages_enabled()
    host_empty(1, BIG)
    assert mapped == []
    with huge_pages(True):
        host_empty(1, BIG)
    assert mapped == [(1, BIG)]


def test_bucket_layouts_allocate_their_flat_buffers_here():
    big = BucketLayout([torch.zeros(BIG)]).allocate(2)[0]
    assert big.data_ptr() % HUGE_PAGE == HEAD_BYTES and big.shape == (2, BIG) and not big.any()
    small = BucketLayout([torch.zeros(10), torch.zeros(3, 2)]).allocate(4)[0]
    assert small.shape == (4, 16) and not small.any()


def test_the_recycler_never_hands_out_memory_the_caller_still_refers_to():
    r = Recycler(keep=2)
    a = r.take((2, BIG), torch.float32, "cpu")
    first = a.data_ptr()
    b = r.take((2, BIG), torch.float32, "cpu")
    assert b.data_ptr() != first                        # a is held
    row = a[1]
    del a
    c = r.take((2, BIG), torch.float32, "cpu")
    assert c.data_ptr() != first                        # a view of it is held
    del row, b, c
    d = r.take((2, BIG), torch.float32, "cpu")
    assert d.data_ptr() == first and r.allocations == 3  # nothing refers to it: taken back
    array = d.numpy()
    del d
    e = r.take((2, BIG), torch.float32, "cpu")
    assert e.data_ptr() != first                        # a numpy array of it is held
    del array, e
    assert r.take((2, BIG), torch.float32, "cpu").data_ptr() == first


def test_the_recycler_keeps_a_few_buffers_per_shape_and_allocates_past_them():
    r = Recycler(keep=1)
    held = [r.take((1, 100), torch.float32, "cpu") for _ in range(3)]
    assert len({t.data_ptr() for t in held}) == 3 and r.allocations == 3
    del held
    again = [r.take((1, 100), torch.float32, "cpu") for _ in range(2)]
    assert r.allocations == 4   # the one kept buffer came back, the second is new
