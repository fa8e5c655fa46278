"""The one reader of client CSV files: bytes or a file parsed, then checked against the data contract.

A file with the contract's header and whole numbers only (nearly every file) is read with typed
numbers; any other is read with every field as text, so that the message can show the field as
written. The checks themselves are riskcore.data.validation's (validate_client_frame), imported
here, never the reverse. read_client_frame returns the validated polars frame for bulk work;
parse_csv_bytes, read_client_csv and validate_frame hand the course's functions and scikit-learn a
pandas frame.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import polars as pl

from riskcore.contract import COLUMNS, ID_COLUMN, KNOWN_COLUMNS, REVENUE, TARGET, DataError
from riskcore.data.contract_rules import LABELS_OPTIONAL, check_header
from riskcore.data.validation import REVENUE_TYPE, read_failure, validate_client_frame

MAX_INPUT_BYTES = 128 * 1024 * 1024  # one input file; ~4M rows, far beyond one delivery of client data
GZIP_MAGIC = b"\x1f\x8b"
# A line of blanks only: skipped, as a CSV reader skips empty lines.
BLANK_LINE = re.compile(rb"(?m)^[ \t]*\r?\n")
BLANK_LINES = re.compile(rb"(?:[ \t]*\r?\n)*")
OPENING_QUOTE = re.compile(rb'(?m)(?:^|,)[ \t]*"')  # a field that starts quoted


def check_raw_csv(data: bytes, name: str) -> None:
    """Refuse content that is plainly not a CSV text file, before parsing it."""
    if not data or data.isspace():
        raise DataError(f"{name} is empty.")
    if data.startswith(GZIP_MAGIC):
        raise DataError(f"{name} is gzip-compressed, not a CSV text file.")
    if b"\x00" in data[:65536]:
        raise DataError(f"{name} is binary, not a CSV text file.")


def _header(data: bytes) -> list[str]:
    """The header's names as written, leading blanks skipped (a repeated name stays repeated)."""
    first = data.split(b"\n", 1)[0].split(b"\r", 1)[0].decode("utf-8-sig", errors="replace")
    try:
        return [field.lstrip(" ") for field in next(csv.reader([first]), [])]
    except csv.Error:  # a quote left open: the engine names the problem
        return []


def _read(data: bytes, **options) -> pl.DataFrame:
    return pl.read_csv(data, infer_schema=False, **options)


def _without_trailing_separators(data: bytes, exc: Exception) -> pl.DataFrame:
    """The table when the only fields past the header's end are empty (a separator ending the row), else `exc`."""
    names = [f"column {i}" for i in range(len(_header(data)) + 1)]
    try:
        past_end = _read(data, has_header=False, skip_rows=1, schema=dict.fromkeys(names, pl.String))[names[-1]]
    except pl.exceptions.PolarsError:
        raise exc from None
    if past_end.null_count() != len(past_end):
        raise exc
    return _read(data, truncate_ragged_lines=True)


def _read_text(data: bytes, name: str) -> pl.DataFrame:
    """The table with every field as text; an empty field is null."""
    try:
        try:
            return _read(data)
        except pl.exceptions.ComputeError as exc:
            if "more fields" in str(exc):
                return _without_trailing_separators(data, exc)
            if OPENING_QUOTE.search(data):
                raise
            # A quote inside a field where no field is quoted is text, as pandas and Excel read it.
            return _read(data, quote_char=None)
    except pl.exceptions.NoDataError:
        raise DataError(f"{name} is empty.") from None
    except pl.exceptions.PolarsError as exc:
        raise read_failure(exc, name, data) from None


def _blank_rows(table: pl.DataFrame) -> pl.Series | None:
    """Rows that were blank lines (every field null or blanks), or None when there are none."""
    others = table.columns[1:]
    if not others or table[others[-1]].null_count() == 0:
        return None
    first = pl.col(table.columns[0])
    blank = table.select((first.is_null() | (first.str.strip_chars(" \t") == ""))
                         & pl.all_horizontal(pl.col(others).is_null())).to_series()
    return blank if blank.any() else None


def read_text_table(data: bytes, name: str, require_target: bool | str = True) -> pl.DataFrame:
    """Parse CSV bytes into a table of text fields named as the header names them.

    Of the contract only what the parse itself sees is checked: content, well-formedness and a
    header that repeats a name (which would otherwise be renamed out of sight).
    """
    check_raw_csv(data, name)
    if b"\n" not in data and b"\r" in data:
        data = data.replace(b"\r", b"\n")  # old Mac line ends
    data = data[BLANK_LINES.match(data).end():]  # the header is the first line that is not blank
    table = _read_text(data, name)
    if _blank_rows(table) is not None:
        # Blank lines are not rows (pandas skips them too); a line of empty fields still is.
        data = BLANK_LINE.sub(b"", data)
        table = _read_text(data, name)
    header = _header(data)
    names = [column.lstrip(" ") or f"Unnamed: {i}" for i, column in enumerate(table.columns)]
    if len(header) == len(names) and len(set(header)) != len(header):
        check_header(header, name, require_target)  # raises: the header repeats a name
    return table.rename(dict(zip(table.columns, names, strict=True)))


def _read_typed(data: bytes, require_target: bool | str = True) -> pl.DataFrame | None:
    """The table with its numbers read as integers, or None where the file needs a closer look.

    Nearly every file has the contract's header and whole numbers only; reading those typed
    skips a text copy of every number. Anything else (a blank field, a stray header, a bad value)
    is left to read_text_table, whose checks name the field.
    """
    header = _header(data)
    if len(set(header)) != len(header) or not set(COLUMNS) - {TARGET} <= set(header) <= set(KNOWN_COLUMNS):
        return None
    types = {column: pl.String if column == ID_COLUMN else REVENUE_TYPE if column == REVENUE else pl.Int64
             for column in header}
    try:
        table = pl.read_csv(data, schema_overrides=types)
    except pl.exceptions.PolarsError:
        return None
    may_be_empty = {ID_COLUMN, TARGET, REVENUE} if require_target == LABELS_OPTIONAL else {ID_COLUMN, REVENUE}
    if table.columns != header or any(table[column].null_count() for column in header if column not in may_be_empty):
        return None
    if REVENUE in header and not table[REVENUE].is_finite().fill_null(True).all():
        return None  # "nan" or "inf": read as text, so that the sentence quotes it
    return table


def read_as_written(source: bytes | Path, name: str | None = None,
                    require_target: bool | str = True) -> pl.DataFrame:
    """Client CSV content (bytes, or a file) parsed, not yet checked against the contract: the one CSV reader.

    Numbers come typed (Int64) where the file has whole numbers only, else every field as text; an
    empty field is null. Only what the parse itself sees is refused (content, well-formedness, a
    header that repeats a name), so missing and odd values stay visible (summary statistics).
    """
    if isinstance(source, Path):
        name = name or source.name
        try:
            source = source.read_bytes()
        except OSError as exc:
            raise DataError(f"{name} cannot be read ({exc.strerror or exc.__class__.__name__}).") from None
    name = name or "the CSV data"
    check_raw_csv(source, name)
    table = _read_typed(source, require_target)
    return table if table is not None else read_text_table(source, name, require_target)


def read_client_frame(source: bytes | Path, name: str | None = None, require_target: bool | str = True,
                      max_id_length: int | None = None) -> pl.DataFrame:
    """Read and validate client CSV content (bytes, or a file) into a polars frame in contract order."""
    name = name or (source.name if isinstance(source, Path) else "the CSV data")
    return validate_client_frame(read_as_written(source, name, require_target), name, require_target, max_id_length)


# --- The pandas edge: what the course's functions and scikit-learn take --------------------------
def to_pandas(frame: pl.DataFrame):
    """A validated polars frame as a pandas DataFrame (ids as str, numbers as int64), without pyarrow.

    Labels with an empty value (LABELS_OPTIONAL) come as float64 with NaN there; labelled() gives int64.
    """
    import pandas as pd  # only callers that want pandas pay for it

    return pd.DataFrame({column: frame[column].to_numpy() for column in frame.columns})


def from_pandas(frame) -> pl.DataFrame:
    """A pandas table as polars: integer columns as they are, everything else as text (missing as null)."""
    import numpy as np

    columns = {}
    for column in frame.columns:
        series = frame[column]
        if isinstance(series.dtype, np.dtype) and series.dtype.kind == "i":
            columns[str(column)] = pl.Series(str(column), series.to_numpy(dtype="int64"))
        else:
            text = series.astype("string").to_numpy(dtype=object, na_value=None)
            columns[str(column)] = pl.Series(str(column), text, dtype=pl.String)
    return pl.DataFrame(columns)


def validate_frame(frame, name: str, require_target: bool | str = True):
    """Check a parsed pandas table against the data contract; return it typed and in contract order."""
    return to_pandas(validate_client_frame(from_pandas(frame), name, require_target))


def parse_csv_bytes(data: bytes, name: str, require_target: bool | str = True):
    """Parse and validate CSV content into a pandas frame; any problem is one DataError sentence naming `name`."""
    return to_pandas(read_client_frame(data, name, require_target))


def read_client_csv(path: Path, require_target: bool | str = True):
    """Read and validate one client CSV file into a pandas frame."""
    return to_pandas(read_client_frame(Path(path), path.name, require_target))
