"""Registry of the standard long-term forecasting CSVs and the folders they are looked up in.

Every entry names the file, its split rule (see :mod:`ddtime.driver.data.protocols`), target column,
sampling frequency, checksums and public download locations. Provenance follows
``shared/data/README.md``: the ETT files come from the official ``zhouhaoyi/ETDataset`` at
commit ``1d16c8f4``; the other files from ``Xieyyyy/NEMoTS`` at commit ``0f58be8b`` (the official
loaders, Autoformer / Time-Series-Library / LTSF-Linear, point to Google Drive instead).

Checksums: ``sha256`` where the README lists it; ``git_blob`` (``git hash-object FILE``) where it
does not. The blob ids of ETTm2 (official repository) and of weather, electricity and traffic
(NEMoTS) were read with ``git ls-tree`` at the pinned commits and are not checked against any
other copy; their sha256 is unknown (``None``).
"""
from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]

_ETT = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/1d16c8f4f943005d613b5bc962e9eeb06058cf07"
_NEMOTS = "https://raw.githubusercontent.com/Xieyyyy/NEMoTS/0f58be8b0f77af83112592831b93efa728d0e929"
_SSCF = ("https://raw.githubusercontent.com/junwoopark92/Self-Supervised-Contrastive-Forecsating/"
         "f394705adbf5217811276f5e59576c6e7ea7586c")
_ETT_LICENCE = "CC BY-ND 4.0 (zhouhaoyi/ETDataset LICENSE)"
_NO_LICENCE = "none stated for the data"


@dataclass(frozen=True)
class DatasetInfo:
    """One benchmark file.

    split: ``"ett_hour"``, ``"ett_minute"`` or ``"custom"`` (TSLib's Dataset_ETT_hour,
    Dataset_ETT_minute, Dataset_Custom). rows / variables: counts from the README or, where it
    has none, from the Autoformer paper (electricity, traffic); ``None`` where unknown.
    urls: raw URLs at pinned commits, tried in order.
    """

    name: str
    filename: str
    split: str
    freq: str
    urls: tuple[str, ...]
    sha256: str | None = None
    git_blob: str | None = None
    target: str = "OT"
    rows: int | None = None
    variables: int | None = None
    licence: str = _NO_LICENCE


def _ett(name: str, split: str, freq: str, rows: int, sha256: str | None, blob: str) -> DatasetInfo:
    urls = (f"{_ETT}/ETT-small/{name}.csv", f"{_NEMOTS}/dataset/ETT-small/{name}.csv")
    return DatasetInfo(name, f"{name}.csv", split, freq, urls, sha256, blob, rows=rows, variables=7,
                       licence=_ETT_LICENCE)


REGISTRY: dict[str, DatasetInfo] = {
    "ETTh1": _ett("ETTh1", "ett_hour", "h", 17420,
                  "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
                  "a52c4925778c07c1ef1a2cf6fd01594919717d9e"),
    "ETTh2": _ett("ETTh2", "ett_hour", "h", 17420,
                  "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",
                  "6e3760778598fdee5208213d3fce122637307eec"),
    "ETTm1": _ett("ETTm1", "ett_minute", "15min", 69680,
                  "6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e",
                  "62c9f979e2dc5b05d9cc5b38891e60e6baf77417"),
    "ETTm2": _ett("ETTm2", "ett_minute", "15min", 69680, None,
                  "f9d46027c987d442d2d8f81308d1d8c4d1d35db8"),
    "exchange_rate": DatasetInfo(
        "exchange_rate", "exchange_rate.csv", "custom", "D",
        (f"{_NEMOTS}/dataset/exchange_rate/exchange_rate.csv",
         f"{_SSCF}/dataset/exchange_rate/exchange_rate.csv"),
        "d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97",
        "6b04ff3158cd1e3b27b708eff0b75e14aaa400fb", rows=7588, variables=8),
    "national_illness": DatasetInfo(
        "national_illness", "national_illness.csv", "custom", "W",
        (f"{_NEMOTS}/dataset/illness/national_illness.csv",
         f"{_SSCF}/dataset/illness/national_illness.csv"),
        "8594cecb98c6f2f9dc014eca11c4d5d1e38ad5ce6ed0592d4abe65b146fce395",
        "ae0424af871366ecacc501399fcb730e9200458c", rows=966, variables=7),
    "weather": DatasetInfo(
        "weather", "weather.csv", "custom", "10min", (f"{_NEMOTS}/dataset/weather/weather.csv",),
        None, "77d14be4f8a539120eab10d715a1915f2ec5b5d8", rows=52696, variables=21),
    "electricity": DatasetInfo(
        "electricity", "electricity.csv", "custom", "h", (f"{_NEMOTS}/dataset/electricity/electricity.csv",),
        None, "45c680ea6a68c7f37257702d2647f5040eebddf7", rows=26304, variables=321),
    "traffic": DatasetInfo(
        "traffic", "traffic.csv", "custom", "h", (f"{_NEMOTS}/dataset/traffic/traffic.csv",),
        None, "e7ac3218634fe29a3f6f3733234847a8d39d41f7", rows=17544, variables=862),
}

ALIASES = {"ecl": "electricity", "ili": "national_illness", "illness": "national_illness",
           "exchange": "exchange_rate"}


def lookup(name: str) -> DatasetInfo | None:
    """The registry entry for ``name`` (case-insensitive, aliases ECL/ILI/illness/exchange), else None."""
    key = name.lower()
    key = ALIASES.get(key, key)
    return next((info for reg_name, info in REGISTRY.items() if reg_name.lower() == key), None)


def lookup_filename(filename: str) -> DatasetInfo | None:
    """The registry entry whose file is named ``filename`` (exact match), else None."""
    return next((info for info in REGISTRY.values() if info.filename == filename), None)


def shared_data_dir() -> pathlib.Path | None:
    """Read-only folder of benchmark CSVs: ``DDTIME_SHARED_DATA``, else ``<repo>/../shared/data``.

    Returns None when the chosen folder does not exist.
    """
    env = os.environ.get("DDTIME_SHARED_DATA")
    path = pathlib.Path(env).expanduser() if env else _REPO_ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


def data_dir() -> pathlib.Path:
    """Download cache: ``DDTIME_DATA_DIR``, else ``~/.cache/ddtime`` (created on first download)."""
    env = os.environ.get("DDTIME_DATA_DIR")
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "ddtime"
