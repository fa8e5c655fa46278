"""Client CSVs against the data contract: one sentence naming the file, row and column of the first problem.

The contract's rules and sentences are riskcore.data.contract_rules'; here they are polars
expressions (problem_checks, row_breaks, meets_contract) that serve a frame in memory (a file, the
database table) and a streamed scan (the risk list, riskcore.data.client_scan) alike. A file with
the contract's header and whole numbers only (nearly every file) is read with typed numbers; any
other is read with every field as text, so that the message can show the field as written.
read_client_frame returns the validated polars frame for bulk work; parse_csv_bytes,
read_client_csv and validate_frame hand the course's functions and scikit-learn a pandas frame.

Client ids are compared after normalise_id (riskcore.contract, plain Python, for the API's JSON
records) or normalise_ids (polars): surrounding blanks stripped, in ingestion, the API and the
risk list alike.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from riskcore.contract import (
    COLUMNS,
    FEATURES,
    ID_BLANKS,
    ID_COLUMN,
    ID_FORBIDDEN,
    ID_ONE_LINE,
    KNOWN_COLUMNS,
    REVENUE,
    TARGET,
    DataError,
    id_break,
)
from riskcore.data.contract_rules import (
    EMPTY_ID,
    HEADER_AGAIN,
    HIGHEST,
    INTEGERS,
    LABEL,
    LABELS_OPTIONAL,
    LARGE,
    NEGATIVE,
    NOT_COUNT,
    NOT_NUMBER,
    ROWS,
    SIGNED_NUMBER,
    SIGNED_WHOLE,
    WHOLE,
    breach_key,
    check_header,
    first_problem,
)

# A validated client frame: ids as text, the counts and the label as whole numbers.
CLIENT_SCHEMA = {ID_COLUMN: pl.String, **dict.fromkeys(COLUMNS[1:], pl.Int64)}
REVENUE_TYPE = pl.Float64  # annual_revenue, where a file has it: a number >= 0, null where unknown
MAX_INPUT_BYTES = 128 * 1024 * 1024  # one input file; ~4M rows, far beyond one delivery of client data
GZIP_MAGIC = b"\x1f\x8b"
# A line of blanks only: skipped, as a CSV reader skips empty lines.
BLANK_LINE = re.compile(rb"(?m)^[ \t]*\r?\n")
BLANK_LINES = re.compile(rb"(?:[ \t]*\r?\n)*")
OPENING_QUOTE = re.compile(rb'(?m)(?:^|,)[ \t]*"')  # a field that starts quoted
ROW = "row"  # 1-based data row, as the sentences count them (numbered on the checks' path only)


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


def read_failure(exc: Exception, name: str, data: bytes | None = None) -> DataError:
    """The sentence for a file the CSV engine could not read (`data`: its content, when in memory)."""
    text = str(exc)
    if data is None:
        not_utf8 = "utf-8" in text.lower() or "utf8" in text.lower()
    else:
        try:
            data.decode("utf-8")
            not_utf8 = False
        except UnicodeDecodeError:
            not_utf8 = True
    if not_utf8:
        return DataError(f"{name} is not UTF-8 text.")
    if "more fields" in text:
        return DataError(f"{name} is not a well-formed CSV file (a row has more fields than the header).")
    return DataError(f"{name} is not a well-formed CSV file ({_engine_detail(exc)}).")


def collect_checked(frame: pl.LazyFrame, name: str) -> pl.DataFrame:
    """A streamed query over a file; what the engine cannot read is one sentence naming the file."""
    try:
        return frame.collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise read_failure(exc, name) from None


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


# --- The contract checks: the rules of riskcore.data.contract_rules as polars expressions -------
def _number_parts(column: str, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Of a number column (text, or integers): whether every value is an integer, which rows hold no
    count (what is not a whole number >= 0, or is missing), and the values as numbers.

    Text is read with the blanks around it left out; digits beyond Int64 are read as floats, since only
    their size matters then.
    """
    value = pl.col(column)
    if dtype == pl.String:
        text = value.str.strip_chars()
        return (text.str.contains(SIGNED_WHOLE).fill_null(False).all(), ~text.str.contains(WHOLE).fill_null(False),
                text.cast(pl.Float64, strict=False))
    return value.is_not_null().all(), value.is_null() | (value < 0), value


def whole_numbers(column: str, dtype: pl.DataType = pl.String) -> pl.Expr:
    """A number column as Int64: text with the blanks around it left out ("+12" and " 12" are 12); null where
    it is not an integer. What every client row's numbers are read as, once the checks have passed."""
    value = pl.col(column)
    return value.str.strip_chars().cast(pl.Int64, strict=False) if dtype == pl.String else value.cast(pl.Int64)


def amounts(column: str = REVENUE, dtype: pl.DataType = pl.String) -> pl.Expr:
    """A column of amounts (revenue) as Float64: text with the blanks around it left out; null where it is empty
    or not a number (no "nan", no "inf": _unreadable tells those from an empty value)."""
    value = pl.col(column)
    if dtype == pl.String:
        text = value.str.strip_chars()
        return pl.when(text.str.contains(SIGNED_NUMBER)).then(text.cast(pl.Float64, strict=False)).alias(column)
    return value.cast(pl.Float64)


def _revenue_parts(dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """Of the revenue column: which rows hold something that is neither a number nor empty, and the values."""
    value = pl.col(REVENUE)
    if dtype == pl.String:
        text = value.str.strip_chars()
        return (text.is_not_null() & (text != "") & ~text.str.contains(SIGNED_NUMBER)), amounts(REVENUE, dtype)
    return value.is_not_null() & ~value.cast(pl.Float64).is_finite(), value


def _revenue_breaks(dtype: pl.DataType) -> pl.Expr:
    """The rows whose revenue is neither empty nor a number from 0 to HIGHEST[REVENUE]."""
    not_number, value = _revenue_parts(dtype)
    return not_number | ~value.is_between(0, HIGHEST[REVENUE]).fill_null(True)


def _label_breaks(dtype: pl.DataType, require_target: bool | str) -> pl.Expr:
    """The rows whose label is not 0 or 1 (nor empty, where LABELS_OPTIONAL allows it)."""
    label = pl.col(TARGET)
    empty = label.is_null() | (label.str.strip_chars() == "") if dtype == pl.String else label.is_null()
    breaks = ~whole_numbers(TARGET, dtype).is_between(0, HIGHEST[TARGET]).fill_null(False)
    return breaks & ~empty if require_target == LABELS_OPTIONAL else breaks


def _empty_id() -> pl.Expr:
    ident = pl.col(ID_COLUMN)  # normalised already (normalise_ids)
    return ident.is_null() | (ident == "")


def row_breaks(schema: Mapping[str, pl.DataType], require_target: bool | str = True) -> dict[str, pl.Expr]:
    """Per column of the contract, True on the rows whose value breaks it (to count and name them)."""
    breaks = {ID_COLUMN: _empty_id()}
    for column in FEATURES:
        breaks[column] = ~whole_numbers(column, schema[column]).is_between(0, HIGHEST[column]).fill_null(False)
    if TARGET in schema:
        breaks[TARGET] = _label_breaks(schema[TARGET], require_target)
    if REVENUE in schema:
        breaks[REVENUE] = _revenue_breaks(schema[REVENUE])
    return breaks


def meets_contract(schema: Mapping[str, pl.DataType] = CLIENT_SCHEMA,
                   require_target: bool | str = LABELS_OPTIONAL) -> pl.Expr:
    """True on a row that follows the contract (ids normalised already)."""
    return ~pl.any_horizontal(*row_breaks(schema, require_target).values())


def _first_row(condition: pl.Expr) -> pl.Expr:
    return pl.col(ROW).filter(condition).min()


def problem_checks(schema: Mapping[str, pl.DataType], require_target: bool | str = True) -> list[pl.Expr]:
    """The expressions of a `found` row (riskcore.data.contract_rules.first_problem) over a frame numbered by ROW.

    One row: the row count and, per check, the first row failing it (null: none fails); per feature
    also whether every value is an integer. Text and integer columns alike, eager or lazy.
    """
    checks = [pl.len().alias(ROWS), _first_row(_empty_id()).alias(EMPTY_ID)]
    first = FEATURES[0]
    if schema[first] == pl.String:
        again = (pl.col(ID_COLUMN) == ID_COLUMN) & (pl.col(first).str.strip_chars() == first)
        checks.append(_first_row(again).alias(HEADER_AGAIN))
    for column in FEATURES:
        integers, not_count, value = _number_parts(column, schema[column])
        checks += [integers.alias(breach_key(column, INTEGERS)),
                   _first_row(not_count).alias(breach_key(column, NOT_COUNT)),
                   _first_row(value < 0).alias(breach_key(column, NEGATIVE)),
                   _first_row(value > HIGHEST[column]).alias(breach_key(column, LARGE))]
    if TARGET in schema:
        checks.append(_first_row(_label_breaks(schema[TARGET], require_target)).alias(LABEL))
    if REVENUE in schema:
        not_number, value = _revenue_parts(schema[REVENUE])
        checks += [_first_row(not_number).alias(breach_key(REVENUE, NOT_NUMBER)),
                   _first_row(value < 0).alias(breach_key(REVENUE, NEGATIVE)),
                   _first_row(value > HIGHEST[REVENUE]).alias(breach_key(REVENUE, LARGE))]
    return checks


def breach(frame: pl.DataFrame | pl.LazyFrame, name: str, require_target: bool | str = True) -> DataError | None:
    """The first breach of the contract in a frame (its ids normalised), as one sentence, or None.

    A DataFrame is checked in memory; a LazyFrame (a file larger than memory) is streamed, and read
    again only to quote the value at fault.
    """
    numbered = frame.lazy().with_row_index(ROW, offset=1)
    query = numbered.select(problem_checks(numbered.collect_schema(), require_target))
    if isinstance(frame, pl.DataFrame):
        found = query.collect()

        def value_at(column: str, row: int) -> Any:
            return frame[column][row - 1]
    else:
        found = collect_checked(query, name)

        def value_at(column: str, row: int) -> Any:
            return numbered.filter(pl.col(ROW) == row).select(column).collect().item()
    return first_problem(found.row(0, named=True), name, value_at, require_target)


def _unreadable(table: pl.DataFrame, typed: pl.DataFrame, require_target: bool | str) -> bool:
    """Whether a column that may be empty (a label where LABELS_OPTIONAL, revenue) holds text that is no number:
    its typed value is as empty as a blank."""
    columns = [REVENUE] if require_target != LABELS_OPTIONAL else [TARGET, REVENUE]
    for column in columns:
        if table.schema.get(column) != pl.String:
            continue
        text = table[column]
        if typed[column].null_count() > (text.is_null() | (text.str.strip_chars() == "")).sum():
            return True
    return False


# ID_FORBIDDEN as polars' (Rust's) regular expression: one class of the Unicode categories
ID_FORBIDDEN_PATTERN = "[" + "".join(rf"\p{{{category}}}" for category in ID_FORBIDDEN) + "]"


def id_breaks(ids: pl.Expr | pl.Series, max_id_length: int) -> pl.Expr | pl.Series:
    """True on the ids ingestion refuses beyond the contract: longer than `max_id_length` (config), or not one line
    of text (riskcore.contract.ID_FORBIDDEN: a newline in a quoted field made an id no page or link could reach)."""
    return (ids.str.len_chars() > max_id_length) | ids.str.contains(ID_FORBIDDEN_PATTERN)


def check_ids(ids: pl.Series, name: str, max_id_length: int) -> None:
    """Ingestion's rules beyond the contract's (id_breaks), as one sentence naming the row."""
    broken = id_breaks(ids, max_id_length)
    if not broken.any():
        return
    row = int(broken.arg_true()[0]) + 1
    value = ids[row - 1]
    if len(value) > max_id_length:
        raise DataError(f'{name} has a "{ID_COLUMN}" of {len(value):,} characters at row {row}, longer '
                        f"than the {max_id_length} allowed (config key max_id_length).")
    raise DataError(f'{name} has {id_break(value)} in "{ID_COLUMN}" at row {row}; {ID_ONE_LINE}.')


def validate_client_frame(table: pl.DataFrame, name: str, require_target: bool | str = True,
                          max_id_length: int | None = None) -> pl.DataFrame:
    """Check a table of text (or integer) columns against the data contract; return it typed, in contract order.

    Rows are numbered from 1, the first data row; the checks run in the order of the messages
    users know: header, rows, repeated header, ids, then each number column. Ids come back
    normalised (normalise_ids); a table without "exited" comes back without it. `max_id_length`:
    ingestion's limit on an id's characters (config max_id_length), None elsewhere.
    """
    check_header(table.columns, name, require_target)
    ids = table[ID_COLUMN].cast(pl.String)
    table = table.with_columns(normalise_ids(ids) if padded(ids) else ids)
    if max_id_length is not None:
        check_ids(table[ID_COLUMN], name, max_id_length)
    numbers = [column for column in COLUMNS[1:] if column in table.columns]
    revenue = [amounts(REVENUE, table.schema[REVENUE])] if REVENUE in table.columns else []
    typed = table.select(ID_COLUMN, *(whole_numbers(column, table.schema[column]) for column in numbers), *revenue)
    # Nearly every table meets the contract: one look at its numbers tells; the checks that name the
    # first breach (regular expressions over the text) run only when it does not.
    if typed.height and typed.select(meets_contract(typed.schema, require_target).all()).item() \
            and not _unreadable(table, typed, require_target):
        return typed
    problem = breach(table, name, require_target)
    if problem is None:
        raise AssertionError(f"{name}: meets_contract and first_problem disagree")
    raise problem


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


def features_of(frame):
    """The feature matrix, in contract order, as float64."""
    return frame.loc[:, list(FEATURES)].to_numpy(dtype="float64")
