"""Data: bundled or file datasets (split, standardised) and their partition among agents."""
from .datasets import BUNDLED, TASKS, Dataset, load_dataset
from .partitions import PARTITIONS, describe_partition, encode_targets, partition

__all__ = ["BUNDLED", "TASKS", "Dataset", "load_dataset", "PARTITIONS", "partition",
           "encode_targets", "describe_partition"]
