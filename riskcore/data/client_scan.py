"""Reading a client CSV for the risk list as a stream (polars lazy scans) and naming its first problem.

Files larger than memory are checked without loading them: the risk list ranks rows that break
the contract first, and only then is the file read again here to find the first bad row and
build the usual one-sentence message (file, row, column, value).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from riskcore.contract import FEATURES, ID_COLUMN, MAX_VALUE, TARGET, DataError
from riskcore.data.validation import SIGNED_WHOLE, WHOLE, check_header, check_raw_csv, normalise_ids

ROW = "row"  # 1-based data row of the file, as the error messages count it (numbered on the error path)


def header_columns(head: bytes, name: str) -> list[str]:
    """The column names of a CSV's first non-blank line, as a CSV reader sees them."""
    line = next((line for line in head.split(b"\n") if line.strip()), b"")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{name} is not UTF-8 text.") from None
    return next(csv.reader([text.rstrip("\r")], skipinitialspace=True), [])


def scan_clients(path: Path, labelled: bool, as_text: bool = False) -> pl.LazyFrame:
    """The id, feature and label columns of a client CSV, blank lines left out.

    Numbers are read as Int64, or as text with `as_text` (to find and name a value that is not a
    whole number). A file without the label column reads as unlabelled. Ids stay text; blanks
    before a value are skipped, as for every client CSV.
    """
    number_type = pl.String if as_text else pl.Int64
    numbers = (*FEATURES, TARGET) if labelled else FEATURES
    frame = pl.scan_csv(path, infer_schema=False, encoding="utf8",
                        schema_overrides={ID_COLUMN: pl.String, **dict.fromkeys(numbers, number_type)},
                        with_column_names=lambda names: [n.lstrip(" ") for n in names])
    label = pl.col(TARGET) if labelled else pl.lit(None, dtype=number_type).alias(TARGET)
    columns = [ID_COLUMN, *FEATURES, TARGET]
    return (frame.select(ID_COLUMN, *FEATURES, label)
            .filter(pl.any_horizontal(pl.col(columns).is_not_null()))  # a blank line is no client
            .with_columns(normalise_ids(pl.col(ID_COLUMN))))  # the one id rule (riskcore.data.validation)


def first_row(condition: pl.Expr) -> pl.Expr:
    return pl.col(ROW).filter(condition).min()


def problem_rows(numbered: pl.LazyFrame, as_text: bool = False) -> pl.LazyFrame:
    """One row: the row count and, per check, the first row (ROW) failing it (null: none fails).

    Per feature: whether every value is a whole number (a column pandas would read as integers),
    the first value that is not a count >= 0, the first negative and the first implausibly large.
    The label: the first value other than 0, 1 or empty.
    """
    ident, label = pl.col(ID_COLUMN), pl.col(TARGET)
    checks = [pl.len().alias("rows"), first_row(ident.is_null() | (ident == "")).alias("empty_id")]
    if as_text:
        checks.append(first_row((ident == ID_COLUMN) & (pl.col(FEATURES[0]) == FEATURES[0])).alias("header"))
        label_bad = (label != "") & ~label.cast(pl.Int64, strict=False).is_in([0, 1]).fill_null(False)
    else:
        label_bad = ~label.is_in([0, 1])
    for column in FEATURES:
        value = pl.col(column)
        if as_text:
            integers = value.str.contains(SIGNED_WHOLE).fill_null(False).all()
            not_count = ~value.str.contains(WHOLE).fill_null(False)
            value = value.cast(pl.Float64, strict=False)
        else:
            integers, not_count = value.is_not_null().all(), value.is_null() | (value < 0)
        checks += [integers.alias(f"{column}:integers"), first_row(not_count).alias(f"{column}:not_count"),
                   first_row(value < 0).alias(f"{column}:negative"),
                   first_row(value > MAX_VALUE).alias(f"{column}:large")]
    checks.append(first_row(label.is_not_null() & label_bad).alias("label"))
    return numbered.select(checks)


def first_problem(found: dict[str, Any], name: str, value_at: Callable[[str, int], Any]) -> DataError | None:
    """The first breach of the contract in `problem_rows`, in the order every client CSV is checked.

    In a column that is not all whole numbers the first value that is not a count is named (so
    "-3" is quoted there); in a column of whole numbers, negatives, then implausibly large values.
    """
    if found["rows"] == 0:
        return DataError(f"{name} has a header but no rows.")
    if found.get("header") is not None:
        return DataError(f"{name} repeats its header line at row {found['header']}.")
    if found["empty_id"] is not None:
        return DataError(f'{name} has an empty "{ID_COLUMN}" at row {found["empty_id"]}.')
    for column in FEATURES:
        if not found[f"{column}:integers"]:
            row = found[f"{column}:not_count"]
            value = value_at(column, row)
            shown = "an empty value" if value is None or not str(value).strip() else f'"{str(value)[:30]}"'
            return DataError(f'{name} has {shown} in column "{column}" at row {row}; expected a whole number >= 0.')
        negative, large = found[f"{column}:negative"], found[f"{column}:large"]
        if negative is not None:
            return DataError(f'{name} has a negative value in column "{column}" at row {negative}.')
        if large is not None:
            return DataError(f'{name} has an implausibly large value in column "{column}" at row {large}.')
    if found["label"] is not None:
        shown = str(value_at(TARGET, found["label"]))[:30]
        return DataError(f'{name} has "{shown}" in column "{TARGET}" at row {found["label"]}; '
                         "expected 0, 1 or an empty value.")
    return None


def value_in(numbered: pl.LazyFrame, column: str, row: int) -> Any:
    """One value of a scanned file, by row number."""
    return numbered.filter(pl.col(ROW) == row).select(column).collect().item()


def breach(clients: pl.LazyFrame, name: str, as_text: bool = False) -> DataError | None:
    """The first breach of the contract in a scanned file, or None; a second pass, on the error path only."""
    numbered = clients.with_row_index(ROW, offset=1)
    found = collect_checked(problem_rows(numbered, as_text), name).row(0, named=True)
    return first_problem(found, name, lambda column, row: value_in(numbered, column, row))


def text_clients(path: Path, name: str, labelled: bool) -> pl.LazyFrame:
    """The file read as text, for one whose numbers polars could not read as whole numbers.

    Names the first breach of the contract, or (for harmless variants such as " 12" or "+12")
    returns the rows with their numbers as Int64.
    """
    numbers = [*FEATURES, TARGET]
    scanned = scan_clients(path, labelled, as_text=True).with_columns(pl.col(numbers).str.strip_chars())
    problem = breach(scanned, name, as_text=True)
    if problem is not None:
        raise problem
    return scanned.with_columns(pl.col(numbers).cast(pl.Int64, strict=False))


def polars_failure(exc: Exception, name: str) -> DataError:
    """A polars read error as one sentence naming the file."""
    text = str(exc).strip()
    if "utf-8" in text.lower() or "utf8" in text.lower():
        return DataError(f"{name} is not UTF-8 text.")
    if "more fields" in text:
        return DataError(f"{name} is not a well-formed CSV file (a row has more fields than the header).")
    detail = text.splitlines()[0][:120] if text else "unreadable"
    return DataError(f"{name} is not a well-formed CSV file ({detail}).")


def is_parse_failure(exc: Exception) -> bool:
    """polars met a number it cannot read as a whole number."""
    return isinstance(exc, pl.exceptions.PolarsError) and "could not parse" in str(exc)


def collect_checked(frame: pl.LazyFrame, name: str) -> pl.DataFrame:
    try:
        return frame.collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise polars_failure(exc, name) from None


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


# --- Scoring and ranking ---------------------------------------------------------------------
