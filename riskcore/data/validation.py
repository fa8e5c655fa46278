"""The data contract's checks as polars expressions: one sentence naming the file, row and column of the first problem.

The contract's rules and sentences are riskcore.data.contract_rules'; here they are polars
expressions (problem_checks, row_breaks, meets_contract) that serve a frame in memory (a file, the
database table) and a streamed scan (the risk list, riskcore.data.client_scan) alike.
validate_client_frame checks a parsed table and returns it typed; reading client CSV files is
riskcore.data.client_csv's, which imports these checks (never the reverse).

Client ids are compared after normalise_id (riskcore.contract, plain Python, for the API's JSON
records) or normalise_ids (polars): surrounding blanks stripped, in ingestion, the API and the
risk list alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from riskcore.contract import (
    COLUMNS,
    FEATURES,
    ID_BLANKS,
    ID_COLUMN,
    ID_FORBIDDEN,
    ID_ONE_LINE,
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


# --- What the CSV engine could not read, as one sentence naming the file (the reader's and the streamed checks') ---
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


def features_of(frame):
    """The feature matrix, in contract order, as float64."""
    return frame.loc[:, list(FEATURES)].to_numpy(dtype="float64")
