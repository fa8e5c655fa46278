"""Reading a client CSV for the risk list as a stream (polars lazy scans) and naming its first problem.

Files larger than memory are checked without loading them: the risk list ranks rows that break
the contract first (riskcore.data.validation.meets_contract), and only then is the file read again
(riskcore.data.validation.breach, streamed) to find the first bad row and build the usual
one-sentence message (file, row, column, value). Labels may be empty (LABELS_OPTIONAL).
"""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl

from riskcore.contract import FEATURES, ID_COLUMN, REVENUE, TARGET, DataError
from riskcore.data.client_csv import check_raw_csv
from riskcore.data.contract_rules import LABELS_OPTIONAL, check_header
from riskcore.data.validation import REVENUE_TYPE, amounts, breach, normalise_ids, whole_numbers


def header_columns(head: bytes, name: str) -> list[str]:
    """The column names of a CSV's first non-blank line, as a CSV reader sees them."""
    line = next((line for line in head.split(b"\n") if line.strip()), b"")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{name} is not UTF-8 text.") from None
    return next(csv.reader([text.rstrip("\r")], skipinitialspace=True), [])


def scan_clients(path: Path, labelled: bool, as_text: bool = False) -> pl.LazyFrame:
    """The id, feature and label columns of a client CSV (and annual_revenue where it has one), blank lines left out.

    Numbers are read as Int64 (revenue as Float64), or as text with `as_text` (to find and name a value that
    is not a whole number). A file without the label column reads as unlabelled. Ids stay text; blanks
    before a value are skipped, as for every client CSV.
    """
    number_type = pl.String if as_text else pl.Int64
    numbers = (*FEATURES, TARGET) if labelled else FEATURES
    options = {"infer_schema": False, "encoding": "utf8", "with_column_names": lambda names: [n.lstrip(" ")
                                                                                              for n in names]}
    revenue = [REVENUE] if REVENUE in pl.scan_csv(path, **options).collect_schema() else []  # the header alone
    types = {ID_COLUMN: pl.String, **dict.fromkeys(numbers, number_type),
             **dict.fromkeys(revenue, pl.String if as_text else REVENUE_TYPE)}
    frame = pl.scan_csv(path, schema_overrides=types, **options)
    label = pl.col(TARGET) if labelled else pl.lit(None, dtype=number_type).alias(TARGET)
    columns = [ID_COLUMN, *FEATURES, TARGET, *revenue]
    return (frame.select(ID_COLUMN, *FEATURES, label, *revenue)
            .filter(pl.any_horizontal(pl.col(columns).is_not_null()))  # a blank line is no client
            .with_columns(normalise_ids(pl.col(ID_COLUMN))))  # the one id rule (riskcore.data.validation)


def text_clients(path: Path, name: str, labelled: bool) -> pl.LazyFrame:
    """The file read as text, for one whose numbers polars could not read as whole numbers.

    Names the first breach of the contract, or (for harmless variants such as " 12" or "+12")
    returns the rows with their numbers as Int64.
    """
    numbers = [*FEATURES, TARGET]
    scanned = scan_clients(path, labelled, as_text=True).with_columns(pl.col(numbers).str.strip_chars())
    problem = breach(scanned, name, LABELS_OPTIONAL)
    if problem is not None:
        raise problem
    revenue = [amounts()] if REVENUE in scanned.collect_schema() else []
    return scanned.with_columns(*(whole_numbers(column) for column in numbers), *revenue)


def is_parse_failure(exc: Exception) -> bool:
    """polars met a number it cannot read as a whole number."""
    return isinstance(exc, pl.exceptions.PolarsError) and "could not parse" in str(exc)


def open_clients(path: Path) -> tuple[pl.LazyFrame, bool]:
    """A client CSV, checked as far as its first bytes and header allow, as a lazy scan; and whether it has labels."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(65536)
    except OSError as exc:
        raise DataError(f"{path.name} cannot be read ({exc.strerror or exc.__class__.__name__}).") from None
    check_raw_csv(head, path.name)
    columns = header_columns(head, path.name)
    check_header(columns, path.name, require_target=False)
    labelled = TARGET in columns
    return scan_clients(path, labelled), labelled
