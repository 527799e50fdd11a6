"""Multi-agent offline data layer: schema v1, Parquet I/O on Ray Data, validation, batching."""

from rllib_sit.data.io import OfflineDataset, is_remote, read_dataset, write_dataset
from rllib_sit.data.schema import SCHEMA_VERSION, DatasetMeta
from rllib_sit.data.validation import DatasetError

__all__ = ["OfflineDataset", "is_remote", "read_dataset", "write_dataset", "SCHEMA_VERSION", "DatasetMeta",
           "DatasetError"]
