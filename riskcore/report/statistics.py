"""Summary statistics and missing data of the ingested rows: one table, for diagnostics, report and API."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from riskcore.config import Config
from riskcore.contract import FEATURES, DataError
from riskcore.data.validation import CSV_READ_OPTIONS

STATISTICS = ("mean", "median", "std", "count", "min", "max")


def read_ingested(config: Config) -> pd.DataFrame:
    """The ingested finaldata.csv as read, not validated: missing values stay visible."""
    path = config.final_data_file
    if not path.is_file():
        raise DataError(f"Ingested data {path} does not exist; run ingestion.py first.")
    try:
        return pd.read_csv(path, **CSV_READ_OPTIONS)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"Ingested data {path} cannot be read ({exc.__class__.__name__}).") from None


def _plain_number(value) -> float | int | None:
    """A JSON-ready number: numpy scalars unwrapped, NaN (undefined) as None."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def column_statistics(series) -> dict[str, float | int | None]:
    """Mean, median, sample standard deviation (n - 1), count, min and max of one column.

    Missing values are left out of every statistic; a value that is not a number counts as missing.
    """
    values = pd.to_numeric(series, errors="coerce").astype("float64")
    values = values[values.notna()]
    if values.empty:
        return {"mean": None, "median": None, "std": None, "count": 0, "min": None, "max": None}
    whole = bool((values == values.round()).all())
    low, high = values.min(), values.max()
    return {
        "mean": _plain_number(values.mean()),
        "median": _plain_number(values.median()),
        "std": _plain_number(values.std(ddof=1)),
        "count": int(len(values)),
        "min": int(low) if whole else _plain_number(low),
        "max": int(high) if whole else _plain_number(high),
    }


def summarize(frame) -> list[dict[str, Any]]:
    """Per feature column and statistic: {"column", "statistic", "value"} (the API's long form)."""
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
    """Per column: {"column", "missing_percent" (0-100 of rows), "missing_count"}."""
    rows = []
    total = len(frame)
    for column in frame.columns:
        count = int(frame[column].isna().sum())
        percent = 100.0 * count / total if total else 0.0
        rows.append({"column": str(column), "missing_percent": percent, "missing_count": count})
    return rows
