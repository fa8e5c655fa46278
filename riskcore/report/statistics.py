"""Summary statistics and missing data of the ingested rows: one table, for diagnostics, report and API.

finaldata.csv is read by the one client-file reader (riskcore.data.client_csv.read_as_written), as
written: missing values stay visible. The figures are numpy's over the polars columns, the
kernels pandas used when it read the file here (polars' own std differs from them in the last
bits), so mean, median and standard deviation are the same to the bit as before.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from riskcore.config import Config
from riskcore.contract import FEATURES, DataError
from riskcore.data.client_csv import from_pandas, read_as_written
from riskcore.data.contract_rules import LABELS_OPTIONAL

STATISTICS = ("mean", "median", "std", "count", "min", "max")


def read_ingested(config: Config) -> pl.DataFrame:
    """The ingested finaldata.csv as read, not validated: missing values stay visible."""
    path = config.final_data_file
    if not path.is_file():
        raise DataError(f"Ingested data {path} does not exist; run ingestion.py first.")
    return read_as_written(path, f"Ingested data {path}", LABELS_OPTIONAL)


def as_polars(frame) -> pl.DataFrame:
    """A polars frame as it is; a pandas one (the course's functions take those) converted."""
    return frame if isinstance(frame, pl.DataFrame) else from_pandas(frame)


def _plain_number(value) -> float | int | None:
    """A JSON-ready number: numpy scalars unwrapped, NaN (undefined) as None."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def column_statistics(series: pl.Series) -> dict[str, float | int | None]:
    """Mean, median, sample standard deviation (n - 1), count, min and max of one column.

    Missing values are left out of every statistic; a value that is not a number counts as missing.
    """
    if series.dtype == pl.String:
        series = series.str.strip_chars()  # " 12" is 12, as in every client CSV
    values = series.cast(pl.Float64, strict=False).to_numpy()
    values = values[~np.isnan(values)]
    if not len(values):
        return {"mean": None, "median": None, "std": None, "count": 0, "min": None, "max": None}
    whole = bool((values == values.round()).all())
    low, high = values.min(), values.max()
    return {
        "mean": _plain_number(values.sum() / len(values)),
        "median": _plain_number(np.median(values)),
        "std": _plain_number(values.std(ddof=1)) if len(values) > 1 else None,
        "count": int(len(values)),
        "min": int(low) if whole else _plain_number(low),
        "max": int(high) if whole else _plain_number(high),
    }


def summarize(frame) -> list[dict[str, Any]]:
    """Per feature column and statistic: {"column", "statistic", "value"} (the API's long form)."""
    frame = as_polars(frame)
    rows = []
    for column in FEATURES:
        if column not in frame.columns:
            raise DataError(f'The data to summarize is missing the column "{column}".')
        stats = column_statistics(frame[column])
        rows.extend({"column": column, "statistic": name, "value": stats[name]} for name in STATISTICS)
    return rows


def summary_table(summary: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The long summary as one entry per column: {column: {statistic: value}} (for printed tables)."""
    table: dict[str, dict[str, Any]] = {}
    for item in summary:
        table.setdefault(item["column"], {})[item["statistic"]] = item["value"]
    return table


def missing_shares(frame) -> list[dict[str, Any]]:
    """Per column: {"column", "missing_percent" (0-100 of rows), "missing_count"}.

    A value is missing when its field is empty or holds blanks only.
    """
    frame = as_polars(frame)
    rows = []
    total = frame.height
    for column in frame.columns:
        values = frame[column]
        count = values.null_count() if values.dtype != pl.String else int(
            (values.is_null() | (values.str.strip_chars() == "")).sum())
        percent = 100.0 * count / total if total else 0.0
        rows.append({"column": str(column), "missing_percent": percent, "missing_count": count})
    return rows
