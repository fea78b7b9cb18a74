"""Forecasting data: the benchmark registry, a robust CSV reader, the built-in "synthetic"
dataset, the standard (Time-Series-Library) and condtsf (CondTSF) protocols, and scaling.

>>> data = load_forecasting("ETTh1", seq_len=96, pred_len=96)   # doctest: +SKIP
>>> data.windows("train").shape                                  # doctest: +SKIP
torch.Size([8449, 7, 192])
"""
from ddtime.driver.data.csv_reader import SENTINELS, DataQualityWarning, read_csv
from ddtime.driver.data.fetch import ChecksumError, download, file_digests, resolve_dataset, verify_file
from ddtime.driver.data.forecast import DEFAULT_SCALES, FEATURES, SCALES, ForecastData, load_forecasting
from ddtime.driver.data.generated import SYNTHETIC, generate_seasonal
from ddtime.driver.data.protocols import PROTOCOLS, condtsf_borders, split_sizes, standard_borders
from ddtime.driver.data.registry import REGISTRY, DatasetInfo, data_dir, lookup, lookup_filename, shared_data_dir
from ddtime.driver.data.scaler import Scaler

__all__ = [
    "REGISTRY", "DatasetInfo", "lookup", "lookup_filename", "shared_data_dir", "data_dir",
    "resolve_dataset", "download", "verify_file", "file_digests", "ChecksumError",
    "read_csv", "DataQualityWarning", "SENTINELS",
    "generate_seasonal", "SYNTHETIC",
    "load_forecasting", "ForecastData", "FEATURES", "SCALES", "DEFAULT_SCALES",
    "PROTOCOLS", "split_sizes", "standard_borders", "condtsf_borders",
    "Scaler",
]
