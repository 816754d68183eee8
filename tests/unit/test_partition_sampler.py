"""dsgd.PartitionSampler gives each worker exactly its part, under every partition: the parts of the
fixed partitions are the command line's (dsgd.data.partition.split); iid slices are disjoint and
cover the data, reshuffled each epoch."""
import numpy as np
import pytest
import torch

import dsgd
from dsgd.data.partition import parse_partition, split

LABELS = np.repeat(np.arange(10), 50)  # 500 samples, 10 classes
N = 4


@pytest.mark.parametrize("partition", ["dirichlet:alpha=0.1", "shards:k=2", "sorted"])
def test_each_worker_draws_exactly_its_fixed_part(partition):
    parts = split(LABELS, N, parse_partition(partition), 3, 10)
    for w in range(N):
        sampler = dsgd.PartitionSampler(LABELS, N, w, partition, seed=3)
        drawn = list(sampler)
        assert len(drawn) == len(sampler) == len(parts[w]) and sorted(drawn) == parts[w].tolist()
        sampler.set_epoch(1)
        assert sorted(sampler) == sorted(drawn) and list(sampler) != drawn  # reshuffled, same part
        assert list(dsgd.PartitionSampler(LABELS, N, w, partition, seed=3, shuffle=False)) == parts[w].tolist()


def test_iid_workers_take_disjoint_slices_of_one_shuffle_each_epoch():
    for epoch in (0, 1):
        slices = []
        for w in range(N):
            s = dsgd.PartitionSampler(LABELS, N, w, "iid", seed=5)
            s.set_epoch(epoch)
            slices.append(list(s))
        every = sum(slices, [])
        assert len(every) == len(set(every)) == len(LABELS)
        if epoch == 0:
            first = slices
    assert slices != first


def test_a_dataloader_takes_it_and_bad_values_are_refused():
    data = torch.utils.data.TensorDataset(torch.arange(500), torch.as_tensor(LABELS))
    loader = torch.utils.data.DataLoader(data, batch_size=25, sampler=dsgd.PartitionSampler(LABELS, N, 2, "sorted"))
    seen = torch.cat([y for _, y in loader])
    assert set(seen.tolist()) <= {5, 6, 7} and len(seen) == 125
    with pytest.raises(ValueError, match="worker must be in 0..3, got 4"):
        dsgd.PartitionSampler(LABELS, N, 4)
    with pytest.raises(ValueError, match="unknown partition 'zebra'"):
        dsgd.PartitionSampler(LABELS, N, 0, "zebra")
