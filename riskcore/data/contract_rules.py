"""The data contract's rules and their sentences, written once for every path a client row takes.

A client CSV read whole (ingestion, the API), a file streamed for the risk list, the database
table and the API's JSON records all follow these rules and say the same thing about a breach.
The rules are data (HIGHEST: each number column's range) and sentences (first_problem); the
polars checks that find the first breach in a frame, eager or lazy, are riskcore.data.validation's
`problem_checks`. JSON records are few, so they are checked here in plain Python (check_record),
against the same ranges: standard library only, no DataFrame for a few rows.

Labels (`require_target`): True, every row needs "exited" (0 or 1): training and test data;
False, the column may be missing (a file of clients whose outcome is not known yet), but where it
is present every row needs a label: input files and the API; LABELS_OPTIONAL, a row's label may
also be empty: finaldata.csv, the database table and the risk list, where clients not labelled
yet sit beside labelled ones.

Revenue (`annual_revenue`, riskcore.contract.REVENUE) is optional in every path: a file, table or
record without it is as valid as one with it; where present each value is a number >= 0 (decimals
allowed) or empty, which means unknown. It is checked after the label, with the features' sentences.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from riskcore.contract import (
    COLUMNS,
    FEATURES,
    ID_COLUMN,
    KNOWN_COLUMNS,
    MAX_VALUE,
    REVENUE,
    TARGET,
    DataError,
    normalise_id,
)
from riskcore.data.input_files import printable_name

LABELS_OPTIONAL = "optional"  # require_target: an empty "exited" is a client not labelled yet
HIGHEST = {**dict.fromkeys(FEATURES, MAX_VALUE), TARGET: 1, REVENUE: MAX_VALUE}  # every number column: 0 to this
# A whole number as text, blanks around it already stripped: the contract's (no sign but "+"), and
# any integer (a column of these is read as numbers, so "-3" there is "a negative value").
WHOLE = r"^\+?[0-9]+$"
SIGNED_WHOLE = r"^[+-]?[0-9]+$"
# A decimal number as text (revenue), blanks around it already stripped; a sign is read so that "-3" is "a negative
# value". No "nan", "inf" or thousands separators: those are no amount.
SIGNED_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
SHOWN_CHARACTERS = 30
KNOWN_FIELDS = frozenset(KNOWN_COLUMNS)  # of a JSON record
REQUIRED_FIELDS = frozenset((ID_COLUMN, *FEATURES))

# The names of the checks in a `found` row (riskcore.data.validation.problem_checks computes it):
# each holds the 1-based row of the first breach, or None; per feature, breach_key(column, INTEGERS)
# is True when every value is an integer (any sign), and NOT_COUNT, NEGATIVE and LARGE hold rows.
ROWS, HEADER_AGAIN, EMPTY_ID, LABEL = "rows", "header", "empty_id", "label"
INTEGERS, NOT_COUNT, NEGATIVE, LARGE = "integers", "not_count", "negative", "large"
NOT_NUMBER = "not_number"  # revenue: the first value that is neither a number nor empty


def breach_key(column: str, check: str) -> str:
    return f"{column}:{check}"


def shown(value: Any) -> str:
    """A value as a sentence names it: quoted as written on one line (blanks around it left out, control characters
    escaped), or "an empty value"."""
    text = None if value is None else str(value).strip()
    return f'"{printable_name(text[:SHOWN_CHARACTERS])}"' if text else "an empty value"


def expected(column: str, require_target: bool | str = True) -> str:
    """What a column's values must be, in the words of the sentences."""
    if column == ID_COLUMN:
        return "a non-empty id"
    if column == TARGET:
        return "0, 1 or an empty value" if require_target == LABELS_OPTIONAL else "0 or 1"
    if column == REVENUE:
        return "a number >= 0 or an empty value"
    return "a whole number >= 0"


def check_header(columns: list[str], name: str, require_target: bool | str = True) -> None:
    """The header names every column the contract requires, nothing it does not know, each once."""
    if len(columns) == 1 and ";" in columns[0]:
        raise DataError(f"{name} uses ';' as its separator; expected ','.")
    required = [c for c in COLUMNS if require_target is True or c != TARGET]
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f'{name} is missing the column "{missing[0]}".')
    extra = [c for c in columns if c not in KNOWN_COLUMNS]
    if extra:
        raise DataError(f'{name} has an unexpected column "{extra[0]}".')
    if len(set(columns)) != len(columns):
        raise DataError(f"{name} repeats a column name in its header.")


def first_problem(found: dict[str, Any], name: str, value_at: Callable[[str, int], Any],
                  require_target: bool | str = True) -> DataError | None:
    """The first breach of the contract in a `found` row, as one sentence, in the order every client row is checked.

    Rows, a repeated header line, ids, each feature, the label. In a column that is not all
    integers the first value that is not a count is named (so "-3" is quoted there); in a column of
    integers, negatives, then implausibly large values. `value_at(column, row)` gives the value
    a sentence quotes.
    """
    if found[ROWS] == 0:
        return DataError(f"{name} has a header but no rows.")
    if found.get(HEADER_AGAIN) is not None:
        return DataError(f"{name} repeats its header line at row {found[HEADER_AGAIN]}.")
    if found[EMPTY_ID] is not None:
        return DataError(f'{name} has an empty "{ID_COLUMN}" at row {found[EMPTY_ID]}.')
    for column in FEATURES:
        if not found[breach_key(column, INTEGERS)]:
            row = found[breach_key(column, NOT_COUNT)]
            return DataError(f'{name} has {shown(value_at(column, row))} in column "{column}" at row {row}; '
                             f"expected {expected(column)}.")
        negative, large = found[breach_key(column, NEGATIVE)], found[breach_key(column, LARGE)]
        if negative is not None:
            return DataError(f'{name} has a negative value in column "{column}" at row {negative}.')
        if large is not None:
            return DataError(f'{name} has an implausibly large value in column "{column}" at row {large}.')
    row = found.get(LABEL)
    if row is not None:
        return DataError(f'{name} has {shown(value_at(TARGET, row))} in column "{TARGET}" at row {row}; '
                         f"expected {expected(TARGET, require_target)}.")
    row = found.get(breach_key(REVENUE, NOT_NUMBER))
    if row is not None:
        return DataError(f'{name} has {shown(value_at(REVENUE, row))} in column "{REVENUE}" at row {row}; '
                         f"expected {expected(REVENUE)}.")
    negative, large = found.get(breach_key(REVENUE, NEGATIVE)), found.get(breach_key(REVENUE, LARGE))
    if negative is not None:
        return DataError(f'{name} has a negative value in column "{REVENUE}" at row {negative}.')
    if large is not None:
        return DataError(f'{name} has an implausibly large value in column "{REVENUE}" at row {large}.')
    return None


# --- JSON records (the API): the same ranges, in plain Python --------------------------------------
class RecordError(DataError):
    """A JSON record that breaks the contract; `field` names the value at fault (records[2].exited)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def json_kind(value: Any) -> str:
    """How a bad JSON value is named in a sentence."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if abs(value) > MAX_VALUE:
        return f"a number above {MAX_VALUE}" if value > 0 else "a negative number"
    return repr(value)


def whole_number(value: Any, where: str, field: str | None = None) -> int:
    """A JSON value that must be a whole number from 0 to MAX_VALUE (5.0 counts; true, "5", 5.5, NaN do not);
    `field`, when given, is named after `where` ("records[2]" "exited"), the name made only for a refusal."""
    kind = type(value)
    if kind is float and math.isfinite(value) and value.is_integer():
        value, kind = int(value), int
    if kind is not int or value < 0 or value > MAX_VALUE:
        where = where if field is None else f"{where}.{field}"
        raise RecordError(f"{where} must be a whole number from 0 to {MAX_VALUE}, not {json_kind(value)}.", where)
    return value


def amount(value: Any, where: str) -> float | None:
    """A JSON value that must be a number from 0 to MAX_VALUE (decimals allowed), or null: unknown (revenue)."""
    if value is None:
        return None
    kind = type(value)
    if kind not in (int, float) or not math.isfinite(value) or value < 0 or value > MAX_VALUE:
        raise RecordError(f"{where} must be a number from 0 to {MAX_VALUE} or null, not {json_kind(value)}.", where)
    return float(value)


def check_record(record: Any, where: str) -> tuple[str, list[int], float | None]:
    """One JSON record ({"corporation": ..., the features, optionally "exited" and "annual_revenue"}): its
    normalised id, its features and its revenue (None: not given, or null)."""
    if type(record) is not dict:
        raise RecordError(f"{where} must be an object with the fields {', '.join(COLUMNS[:-1])}, "
                          f"not {json_kind(record)}.", where)
    # The set checks run in C and name nothing; a record that fails one is looked at again, in order, for the sentence.
    if not KNOWN_FIELDS.issuperset(record):
        unknown = next(key for key in record if key not in KNOWN_FIELDS)
        raise RecordError(f"{where} has an unknown field {json.dumps(unknown[:60])}; expected "
                          f"{', '.join(KNOWN_COLUMNS)}.", f"{where}.{unknown[:60]}")
    if not record.keys() >= REQUIRED_FIELDS:
        column = next(column for column in (ID_COLUMN, *FEATURES) if column not in record)
        raise RecordError(f'{where} is missing the field "{column}".', f"{where}.{column}")
    corporation = record[ID_COLUMN]
    if type(corporation) is str:
        corporation = normalise_id(corporation)  # the one id rule: ingestion, the API, the risk list
    if type(corporation) is not str or not corporation:
        named = "a blank string" if type(corporation) is str else json_kind(corporation)
        raise RecordError(f"{where}.{ID_COLUMN} must be a non-empty string, not {named}.", f"{where}.{ID_COLUMN}")
    if TARGET in record and whole_number(record[TARGET], where, TARGET) > HIGHEST[TARGET]:
        raise RecordError(f"{where}.{TARGET} must be 0 or 1.", f"{where}.{TARGET}")
    features = [whole_number(record[column], where, column) for column in FEATURES]
    revenue = record.get(REVENUE)
    return corporation, features, None if revenue is None else amount(revenue, f"{where}.{REVENUE}")
