"""Robust reader for long-term forecasting CSVs (a ``date`` column plus numeric variables).

Decisions per defect, each with the file (and row / column) in the message:

============================  ==========================================================
empty file / header only      ValueError
ragged row                    ValueError naming the line, data row and the missing /
                              extra column(s)
no ``date`` column            ValueError listing the columns (case-insensitive match)
unparsable date               ValueError naming the data row and value
unsorted dates                DataQualityWarning, rows sorted (stable)
duplicated timestamps         DataQualityWarning, first occurrence kept
non-numeric column            DataQualityWarning, column dropped; ValueError if it is the target
a few non-numeric cells       DataQualityWarning, treated as missing (column kept when at
                              least half of its non-empty cells are numbers)
sentinels (default -9999)     DataQualityWarning, treated as missing
+-inf                         DataQualityWarning, treated as missing
missing cells                 DataQualityWarning, linear interpolation over rows, nearest
                              value at the ends
column without any value      ValueError (dropped with a warning if its header is empty too)
missing target column         ValueError listing the columns
============================  ==========================================================

Kept as is: CRLF line endings, a missing final newline, non-ASCII headers (weather.csv has
U+FFFD where ``²`` and ``µ`` were; a UTF-8 BOM is stripped, non-UTF-8 files are read as Latin-1
with a warning). Accepted date formats: ISO 8601 (``2016-07-01 00:00:00``, ``2002-01-01``),
``YYYY/M/D H:MM[:SS]`` (exchange_rate), ``YYYY/M/D``, ``D.M.YYYY H:MM[:SS]`` (Jena climate);
anything else is parsed element by element with a warning.

Note: Time-Series-Library feeds weather.csv's ``-9999`` wind speeds to the model unchanged;
pass ``sentinels=()`` to reproduce that.
"""
from __future__ import annotations

import csv
import os
import pathlib
import warnings

import numpy as np
import pandas as pd

SENTINELS = (-9999.0,)
_NA_TOKENS = ("", "nan", "na", "n/a", "null", "none", "?")
_DATE_FORMATS = ("ISO8601", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d",
                 "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y")


class DataQualityWarning(UserWarning):
    """A defect in a data file that the reader repaired (the message says how)."""


def _warn(message: str) -> None:
    warnings.warn(message, DataQualityWarning, stacklevel=3)


def _scan(path: pathlib.Path, encoding: str, label: str) -> tuple[list[str], list[int]]:
    """Header and the file line number of every data row; rejects empty files and ragged rows."""
    with path.open(newline="", encoding=encoding) as fh:
        reader = csv.reader(fh)
        header = next((row for row in reader if row), None)
        if header is None:
            raise ValueError(f"{label}: empty file (no header line)")
        width, lines = len(header), []
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                row_no = len(lines) + 1
                if len(row) < width:
                    what = f"missing column(s) {header[len(row):]}"
                else:
                    what = f"{len(row) - width} extra field(s) after the last column {header[-1]!r}"
                raise ValueError(f"{label}: line {reader.line_num} (data row {row_no}) has {len(row)} fields, "
                                 f"the header has {width}: {what}")
            lines.append(reader.line_num)
    if not lines:
        raise ValueError(f"{label}: no data rows below the header")
    return header, lines


def _where(rows: np.ndarray, lines: list[int]) -> str:
    """'data row r (line l)' for the first of ``rows`` (original 0-based row indices)."""
    first = int(rows[0])
    return f"data row {first + 1} (line {lines[first]})"


def _parse_dates(values: pd.Series, label: str, lines: list[int]) -> pd.Series:
    parsed = None
    for fmt in _DATE_FORMATS:
        try:
            parsed = pd.to_datetime(values, format=fmt)
            break
        except (ValueError, TypeError):
            continue
    if parsed is None:
        parsed = pd.to_datetime(values, format="mixed", errors="coerce")
        if parsed.notna().all():
            _warn(f"{label}: dates are not in one known format; parsed element by element "
                  "(ambiguous dates such as 01/02/2020 read month first)")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        value = values.iloc[bad[0]]
        raise ValueError(f"{label}: column 'date' has an unparsable value {'' if pd.isna(value) else value!r} "
                         f"at {_where(bad, lines)}")
    return parsed


def _as_float(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, pd.Series | None]:
    """(values, empty, text): float64 copy, mask of empty / NA cells, stripped text (None if parsed as numbers)."""
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        values = raw.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        return values, np.isnan(values), None
    text = raw.astype("str").str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    empty = (text.isna() | text.str.lower().isin(_NA_TOKENS)).to_numpy()
    return values, empty, text


def _numeric(raw: pd.Series, column: str, label: str, lines: list[int], order: np.ndarray,
             sentinels: tuple[float, ...], is_target: bool) -> np.ndarray | None:
    """float64 values of one column (in ``order``), repaired; None if it is dropped."""
    values, empty, text = _as_float(raw)
    bad = np.isnan(values) & ~empty
    filled = int((~empty).sum())
    if filled and bad.sum() * 2 > filled:
        example = np.flatnonzero(bad)
        msg = (f"{label}: column {column!r} is not numeric ({text.iloc[example[0]]!r} at "
               f"{_where(example, lines)})")
        if is_target:
            raise ValueError(f"{msg}; it is the target column")
        _warn(f"{msg}; dropped")
        return None
    if not filled:
        if column.startswith("Unnamed:") and not is_target:
            _warn(f"{label}: column {column!r} has no header and no values; dropped")
            return None
        raise ValueError(f"{label}: column {column!r} has no value in any row")
    for mask, what in ((bad, "non-numeric cell(s)"),
                       (np.isin(values, sentinels), f"sentinel value(s) {list(sentinels)}"),
                       (np.isinf(values), "infinite value(s)")):
        if mask.any():
            rows = np.flatnonzero(mask)
            _warn(f"{label}: column {column!r}: {rows.size} {what} treated as missing, first at "
                  f"{_where(rows, lines)}")
            values[mask] = np.nan
    values = values[order]
    missing = np.isnan(values)
    if missing.all():
        raise ValueError(f"{label}: column {column!r} has no valid value in any row")
    if missing.any():
        rows = np.sort(order[missing])
        _warn(f"{label}: column {column!r}: {int(missing.sum())} missing value(s) filled by linear "
              f"interpolation (nearest value at the ends), first at {_where(rows, lines)}")
        values = pd.Series(values).interpolate(limit_direction="both").to_numpy()
    return values


def read_csv(path: str | os.PathLike, *, name: str | None = None, target: str | None = None,
             sentinels: tuple[float, ...] = SENTINELS) -> pd.DataFrame:
    """Read a forecasting CSV into a DataFrame: ``date`` (datetime64) first, then the numeric
    variables as float64 in file order, chronologically sorted, without duplicates or missing values.

    name: label used in messages (default: the path). target: a column that must be present and
    numeric (a non-numeric target is an error instead of being dropped). sentinels: values that
    mean "missing". See the module docstring for how each defect is handled.
    """
    path = pathlib.Path(path)
    label = f"{name} ({path})" if name else str(path)
    if not path.is_file():
        raise FileNotFoundError(f"{label}: no such file")
    encoding = "utf-8-sig"
    try:
        header, lines = _scan(path, encoding, label)
    except UnicodeDecodeError as err:
        _warn(f"{label}: not valid UTF-8 ({err}); read as Latin-1")
        encoding = "latin-1"
        header, lines = _scan(path, encoding, label)
    names = [c.strip() for c in header]
    date_idx = next((i for i, c in enumerate(names) if c.lower() == "date"), None)
    if date_idx is None:
        raise ValueError(f"{label}: no 'date' column; columns are {names}")
    if target is not None and target not in names:
        raise ValueError(f"{label}: target column {target!r} not found; columns are {names}")
    # numeric columns parse straight to float64 (empty / NA cells -> NaN); the rest stay text
    frame = pd.read_csv(path, encoding=encoding, dtype={header[date_idx]: str})
    if len(frame) != len(lines) or len(frame.columns) != len(names):
        raise ValueError(f"{label}: pandas read {len(frame)} rows x {len(frame.columns)} columns, the csv "
                         f"module {len(lines)} x {len(names)}; the file's quoting is inconsistent")
    frame.columns = [str(c).strip() for c in frame.columns]
    date_col = frame.columns[date_idx]

    dates = _parse_dates(frame[date_col].str.strip(), label, lines)
    order = np.arange(len(frame))
    if not dates.is_monotonic_increasing:
        _warn(f"{label}: dates are not in increasing order; rows sorted by date")
        order = np.argsort(dates.to_numpy(), kind="stable")
    sorted_dates = dates.iloc[order].reset_index(drop=True)
    duplicated = sorted_dates.duplicated(keep="first").to_numpy()
    if duplicated.any():
        rows = np.sort(order[duplicated])
        _warn(f"{label}: {int(duplicated.sum())} duplicated timestamp(s), first occurrence kept; first "
              f"duplicate {sorted_dates[duplicated].iloc[0]} at {_where(rows, lines)}")
        order, sorted_dates = order[~duplicated], sorted_dates[~duplicated].reset_index(drop=True)

    columns = {"date": sorted_dates}
    for column in frame.columns:
        if column == date_col:
            continue
        values = _numeric(frame[column], column, label, lines, order, tuple(sentinels), column == target)
        if values is not None:
            columns[column] = values
    if len(columns) == 1:
        raise ValueError(f"{label}: no numeric column besides 'date'")
    out = pd.DataFrame(columns)
    out.attrs["source"] = str(path)
    return out
