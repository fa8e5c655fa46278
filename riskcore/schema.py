"""Client CSVs against the data contract: one sentence naming the file, row and column of the first problem."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskcore.contract import COLUMNS, FEATURES, ID_COLUMN, MAX_VALUE, TARGET, DataError

MAX_INPUT_BYTES = 128 * 1024 * 1024  # one input file; ~4M rows, far beyond one delivery of client data
GZIP_MAGIC = b"\x1f\x8b"
# How every client CSV is read (ingestion, the API, reports, diagnostics): ids stay text, blanks
# before a value are skipped, only an empty field is missing ("NA" is a valid id).
CSV_READ_OPTIONS: dict[str, Any] = {
    "encoding": "utf-8-sig", "dtype": {ID_COLUMN: str}, "skipinitialspace": True,
    "keep_default_na": False, "na_values": [""],
}


def check_raw_csv(data: bytes, name: str) -> None:
    """Refuse content that is plainly not a CSV text file, before parsing it."""
    if not data.strip():
        raise DataError(f"{name} is empty.")
    if data.startswith(GZIP_MAGIC):
        raise DataError(f"{name} is gzip-compressed, not a CSV text file.")
    if b"\x00" in data[:65536]:
        raise DataError(f"{name} is binary, not a CSV text file.")


def _check_header(columns: list[str], name: str, require_target: bool) -> None:
    if len(columns) == 1 and ";" in columns[0]:
        raise DataError(f"{name} uses ';' as its separator; expected ','.")
    required = [c for c in COLUMNS if require_target or c != TARGET]
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f'{name} is missing the column "{missing[0]}".')
    extra = [c for c in columns if c not in COLUMNS]
    if extra:
        raise DataError(f'{name} has an unexpected column "{extra[0]}".')
    if len(set(columns)) != len(columns):
        raise DataError(f"{name} repeats a column name in its header.")


def _first_bad_row(mask) -> int:
    """The 1-based data row number of the first True in a boolean Series."""
    return int(np.argmax(mask.to_numpy())) + 1


def _check_counts(frame, column: str, name: str):
    """Return `column` as int64, or raise DataError naming the first bad row."""
    series = frame[column]
    if not pd.api.types.is_integer_dtype(series.dtype):
        text = series.astype("string").str.strip()
        numeric = pd.to_numeric(text.where(text.str.fullmatch(r"\+?\d+", na=False)), errors="coerce")
        bad = numeric.isna()
        if bad.any():
            row = _first_bad_row(bad)
            value = series.iloc[row - 1]
            shown = "an empty value" if pd.isna(value) or str(value).strip() == "" else f'"{str(value)[:30]}"'
            raise DataError(f'{name} has {shown} in column "{column}" at row {row}; expected a whole number >= 0.')
        series = numeric
    if (series < 0).any():
        row = _first_bad_row(series < 0)
        raise DataError(f'{name} has a negative value in column "{column}" at row {row}.')
    if (series > MAX_VALUE).any():
        row = _first_bad_row(series > MAX_VALUE)
        raise DataError(f'{name} has an implausibly large value in column "{column}" at row {row}.')
    return series.astype("int64")


def validate_frame(frame, name: str, require_target: bool = True):
    """Check a parsed table against the data contract; return it typed and in contract order."""
    _check_header([str(c) for c in frame.columns], name, require_target)
    if frame.empty:
        raise DataError(f"{name} has a header but no rows.")
    first = frame[FEATURES[0]]
    # A repeated header line leaves text in the first feature column; where that column parsed
    # as whole numbers there is none, and the costly text comparison is skipped.
    if not pd.api.types.is_integer_dtype(first.dtype):
        repeated = (frame[ID_COLUMN].astype("string") == ID_COLUMN) & (first.astype("string") == FEATURES[0])
        if repeated.any():
            raise DataError(f"{name} repeats its header line at row {_first_bad_row(repeated)}.")
    ids = frame[ID_COLUMN].astype(str)
    # The parser already skips leading blanks and reads an empty field as missing, so an id of
    # spaces arrives as NaN: no per-row strip is needed (it was the slowest check on large files).
    empty = ids.isna() | (ids == "")
    if empty.any():
        raise DataError(f'{name} has an empty "{ID_COLUMN}" at row {_first_bad_row(empty)}.')
    columns = {ID_COLUMN: ids}
    for column in FEATURES:
        columns[column] = _check_counts(frame, column, name)
    if TARGET in frame.columns:
        target = _check_counts(frame, TARGET, name)
        if (target > 1).any():
            row = _first_bad_row(target > 1)
            raise DataError(f'{name} has a value other than 0 or 1 in column "{TARGET}" at row {row}.')
        columns[TARGET] = target
    return pd.DataFrame(columns)


def parse_csv_bytes(data: bytes, name: str, require_target: bool = True):
    """Parse and validate CSV content; any problem is one DataError sentence naming `name`."""
    check_raw_csv(data, name)
    try:
        with warnings.catch_warnings():
            # A row longer than the header would otherwise be cut silently.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.BytesIO(data), index_col=False, **CSV_READ_OPTIONS)
    except pd.errors.ParserWarning:
        raise DataError(f"{name} is not a well-formed CSV file (a row has more fields than the header).") from None
    except UnicodeDecodeError:
        raise DataError(f"{name} is not UTF-8 text.") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} is empty.") from None
    except (pd.errors.ParserError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[-1][:120] if str(exc).strip() else "unreadable"
        raise DataError(f"{name} is not a well-formed CSV file ({detail}).") from None
    return validate_frame(frame, name, require_target)


def read_client_csv(path: Path, require_target: bool = True):
    """Read and validate one client CSV file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path.name} cannot be read ({exc.strerror or exc.__class__.__name__}).") from None
    return parse_csv_bytes(data, path.name, require_target)



def features_of(frame):
    """The feature matrix, in contract order, as float64."""
    return frame.loc[:, list(FEATURES)].to_numpy(dtype="float64")
