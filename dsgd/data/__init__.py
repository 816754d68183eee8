"""Data for dsgd: in-memory datasets, pure per-(seed, worker, step) sampling and noise."""
from dsgd.data.augment import Augmentation, augmentation_for, crop_flip
from dsgd.data.batches import eval_batches, local_batch, shard_range
from dsgd.data.datasets import DATASETS, Dataset, load_dataset, to_float
from dsgd.data.errors import DatasetError
from dsgd.data.label_noise import corrupt_labels
from dsgd.data.rng import derive_seed, generator
from dsgd.data.partition import PartitionSpec, class_histogram, parse_partition, split
from dsgd.data.samplers import (PartSampler, Sampler, WithoutReplacementSampler, WithReplacementSampler,
                                make_sampler)

__all__ = [
    "Augmentation", "augmentation_for", "crop_flip",
    "eval_batches", "local_batch", "shard_range",
    "DATASETS", "Dataset", "load_dataset", "to_float",
    "DatasetError",
    "corrupt_labels",
    "derive_seed", "generator",
    "PartitionSpec", "class_histogram", "parse_partition", "split",
    "PartSampler", "Sampler", "WithoutReplacementSampler", "WithReplacementSampler", "make_sampler",
]
