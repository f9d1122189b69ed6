"""Data: bundled or file datasets (split, standardised) and their partition among agents."""
from .datasets import BUNDLED, TASKS, Dataset, dataset_from_arrays, load_dataset
from .partitions import PARTITIONS, describe_partition, encode_targets, partition

__all__ = ["BUNDLED", "TASKS", "Dataset", "load_dataset", "dataset_from_arrays", "PARTITIONS", "partition",
           "encode_targets", "describe_partition"]
