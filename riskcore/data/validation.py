"""Client CSVs against the data contract: one sentence naming the file, row and column of the first problem.

The checks are written once, on polars expressions (validate_client_frame). A file with the
contract's header and whole numbers only (nearly every file) is read with typed numbers; any
other is read with every field as text, so that the message can show the field as written.
read_client_frame returns the validated polars frame for bulk work; parse_csv_bytes,
read_client_csv and validate_frame hand the course's functions and scikit-learn a pandas frame.

Labels (`require_target`): True, every row needs "exited" (0 or 1): training and test data;
False, the column may be missing (a file of clients whose outcome is not known yet), but where it
is present every row needs a label: input files and the API; LABELS_OPTIONAL, a row's label may
also be empty: finaldata.csv, where clients not labelled yet sit beside labelled ones.

Client ids are compared after normalise_id (riskcore.contract, plain Python, for the API's JSON
records) or normalise_ids (polars): surrounding blanks stripped, in ingestion, the API and the
risk list alike.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import polars as pl

from riskcore.contract import COLUMNS, FEATURES, ID_BLANKS, ID_COLUMN, MAX_VALUE, TARGET, DataError

# A validated client frame: ids as text, the counts and the label as whole numbers.
CLIENT_SCHEMA = {ID_COLUMN: pl.String, **dict.fromkeys(COLUMNS[1:], pl.Int64)}
MAX_INPUT_BYTES = 128 * 1024 * 1024  # one input file; ~4M rows, far beyond one delivery of client data
GZIP_MAGIC = b"\x1f\x8b"
# How a pandas read of a client CSV (summary statistics, the streamed risk list) sees the file as
# read_client_frame does: ids stay text, blanks before a value are skipped, only an empty field is
# missing ("NA" is a valid id).
CSV_READ_OPTIONS: dict[str, Any] = {
    "encoding": "utf-8-sig", "dtype": {ID_COLUMN: str}, "skipinitialspace": True,
    "keep_default_na": False, "na_values": [""],
}
# A line of blanks only: skipped, as a CSV reader skips empty lines.
BLANK_LINE = re.compile(rb"(?m)^[ \t]*\r?\n")
BLANK_LINES = re.compile(rb"(?:[ \t]*\r?\n)*")
OPENING_QUOTE = re.compile(rb'(?m)(?:^|,)[ \t]*"')  # a field that starts quoted
SIGNED_WHOLE = r"^[+-]?[0-9]+$"
WHOLE = r"^\+?[0-9]+$"
LABELS_OPTIONAL = "optional"  # require_target: an empty "exited" is a client not labelled yet


def normalise_ids(ids):
    """normalise_id (riskcore.contract, the one id rule) for a polars Series or expression of ids."""
    return ids.str.strip_chars(ID_BLANKS)


def padded(ids: pl.Series) -> bool:
    """Whether any id has blanks around it: a look at 10M ids took 0.08 s where stripping them took 0.2 s."""
    return any((ids.str.starts_with(blank) | ids.str.ends_with(blank)).any() for blank in ID_BLANKS)


def labelled(frame):
    """The rows whose label is known (polars or pandas), labels as whole numbers: what F1 and training take."""
    if isinstance(frame, pl.DataFrame):
        return frame.filter(pl.col(TARGET).is_not_null()) if TARGET in frame.columns else frame.clear()
    if TARGET not in frame.columns:
        return frame.iloc[:0]
    rows = frame[frame[TARGET].notna()]
    return rows.astype({TARGET: "int64"}) if rows[TARGET].dtype != "int64" else rows


def check_raw_csv(data: bytes, name: str) -> None:
    """Refuse content that is plainly not a CSV text file, before parsing it."""
    if not data or data.isspace():
        raise DataError(f"{name} is empty.")
    if data.startswith(GZIP_MAGIC):
        raise DataError(f"{name} is gzip-compressed, not a CSV text file.")
    if b"\x00" in data[:65536]:
        raise DataError(f"{name} is binary, not a CSV text file.")


# --- Reading ----------------------------------------------------------------------------------
def _engine_detail(exc: Exception) -> str:
    """The engine's own words on a malformed file, on one short line."""
    text = str(exc).split("Original error:", 1)[-1]
    words = " ".join(line.strip(" `") for line in text.splitlines() if line.strip(" `"))
    return words[:120] or "unreadable"


def _parse_failure(exc: Exception, data: bytes, name: str) -> DataError:
    """The sentence for a file the CSV engine could not read."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return DataError(f"{name} is not UTF-8 text.")
    if "more fields" in str(exc):
        return DataError(f"{name} is not a well-formed CSV file (a row has more fields than the header).")
    return DataError(f"{name} is not a well-formed CSV file ({_engine_detail(exc)}).")


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
        raise _parse_failure(exc, data, name) from None


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


# --- The contract checks ---------------------------------------------------------------------
def check_header(columns: list[str], name: str, require_target: bool | str = True) -> None:
    """The header names every column the contract requires, nothing it does not know, each once."""
    if len(columns) == 1 and ";" in columns[0]:
        raise DataError(f"{name} uses ';' as its separator; expected ','.")
    required = [c for c in COLUMNS if require_target is True or c != TARGET]
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f'{name} is missing the column "{missing[0]}".')
    extra = [c for c in columns if c not in COLUMNS]
    if extra:
        raise DataError(f'{name} has an unexpected column "{extra[0]}".')
    if len(set(columns)) != len(columns):
        raise DataError(f"{name} repeats a column name in its header.")


def _first_row(mask: pl.Series) -> int:
    """The 1-based data row number of the first True."""
    return int(mask.arg_true()[0]) + 1


def _shown(value: str | None) -> str:
    value = value.lstrip(" ") if value is not None else None
    return "an empty value" if value is None or not value.strip() else f'"{value[:30]}"'


def _whole_numbers(values: pl.Series, name: str, column: str, allow_empty: bool = False) -> pl.Series:
    """`values` (text or integers) as Int64 whole numbers in [0, MAX_VALUE], or DataError naming the first bad row.

    With `allow_empty`, an empty field (or blanks only) is a missing value, kept as null.
    """
    numbers = values.cast(pl.Int64, strict=False)
    if numbers.null_count() > (values.null_count() if allow_empty else 0):
        # Not all plain integers: blanks around a number are allowed; anything else names its row.
        text = values.cast(pl.String).str.strip_chars()
        if allow_empty:
            text = text.set((text == "").fill_null(False), None)
        signed = text.str.contains(SIGNED_WHOLE).fill_null(allow_empty)
        numbers = text.cast(pl.Int64, strict=False)
        missing = text.null_count() if allow_empty else 0
        if not (signed.all() and numbers.null_count() == missing):
            # A column that is not all integers is checked as text, where a sign is not allowed.
            bad = ~text.str.contains(WHOLE).fill_null(allow_empty)
            if bad.any():
                row = _first_row(bad)
                raise DataError(f'{name} has {_shown(values[row - 1])} in column "{column}" at row {row}; '
                                "expected a whole number >= 0.")
            numbers = text.cast(pl.Float64, strict=False)  # digits beyond Int64: only their size matters now
    if numbers.null_count() == len(numbers):
        return numbers.cast(pl.Int64)
    if numbers.min() < 0:
        raise DataError(f'{name} has a negative value in column "{column}" at row {_first_row(numbers < 0)}.')
    if numbers.max() > MAX_VALUE:
        row = _first_row(numbers > MAX_VALUE)
        raise DataError(f'{name} has an implausibly large value in column "{column}" at row {row}.')
    return numbers.cast(pl.Int64)


def validate_client_frame(table: pl.DataFrame, name: str, require_target: bool | str = True) -> pl.DataFrame:
    """Check a table of text (or integer) columns against the data contract; return it typed, in contract order.

    Rows are numbered from 1, the first data row; the checks run in the order of the messages
    users know: header, rows, repeated header, ids, then each number column. Ids come back
    normalised (normalise_ids); a table without "exited" comes back without it.
    """
    check_header(table.columns, name, require_target)
    if table.height == 0:
        raise DataError(f"{name} has a header but no rows.")
    ids = table[ID_COLUMN].cast(pl.String)
    if padded(ids):
        ids = normalise_ids(ids)
    first = table[FEATURES[0]]
    header_ids = (ids == ID_COLUMN).fill_null(False)
    if first.dtype == pl.String and header_ids.any():
        repeated = header_ids & (first.str.strip_chars() == FEATURES[0]).fill_null(False)
        if repeated.any():
            raise DataError(f"{name} repeats its header line at row {_first_row(repeated)}.")
    empty = ids.is_null() | (ids == "")
    if empty.any():
        raise DataError(f'{name} has an empty "{ID_COLUMN}" at row {_first_row(empty)}.')
    columns = [ids]
    for column in FEATURES:
        columns.append(_whole_numbers(table[column], name, column))
    if TARGET in table.columns:
        target = _whole_numbers(table[TARGET], name, TARGET, allow_empty=require_target == LABELS_OPTIONAL)
        if target.null_count() < len(target) and target.max() > 1:
            raise DataError(f'{name} has a value other than 0 or 1 in column "{TARGET}" at row '
                            f"{_first_row(target > 1)}.")
        columns.append(target)
    return pl.DataFrame(columns)


def _read_typed(data: bytes, require_target: bool | str = True) -> pl.DataFrame | None:
    """The table with its numbers read as integers, or None where the file needs a closer look.

    Nearly every file has the contract's header and whole numbers only; reading those typed
    skips a text copy of every number. Anything else (a blank field, a stray header, a bad value)
    is left to read_text_table, whose checks name the field.
    """
    header = _header(data)
    if len(set(header)) != len(header) or not set(COLUMNS) - {TARGET} <= set(header) <= set(COLUMNS):
        return None
    types = {column: pl.String if column == ID_COLUMN else pl.Int64 for column in header}
    try:
        table = pl.read_csv(data, schema_overrides=types)
    except pl.exceptions.PolarsError:
        return None
    may_be_empty = {ID_COLUMN, TARGET} if require_target == LABELS_OPTIONAL else {ID_COLUMN}
    if table.columns != header or any(table[column].null_count() for column in header if column not in may_be_empty):
        return None
    return table


def read_client_frame(source: bytes | Path, name: str | None = None,
                      require_target: bool | str = True) -> pl.DataFrame:
    """Read and validate client CSV content (bytes, or a file) into a polars frame in contract order."""
    if isinstance(source, Path):
        name = name or source.name
        try:
            source = source.read_bytes()
        except OSError as exc:
            raise DataError(f"{name} cannot be read ({exc.strerror or exc.__class__.__name__}).") from None
    name = name or "the CSV data"
    check_raw_csv(source, name)
    table = _read_typed(source, require_target)
    if table is None:
        table = read_text_table(source, name, require_target)
    return validate_client_frame(table, name, require_target)


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


def features_of(frame):
    """The feature matrix, in contract order, as float64."""
    return frame.loc[:, list(FEATURES)].to_numpy(dtype="float64")
