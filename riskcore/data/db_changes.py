"""Has the database table changed since the deployed ingestion record? The cron tick's cheap question.

With a watermark column: are there rows above the recorded watermark, or late rows within the
look-back below it (recognised by their content's hashes)? Without: do the row count and an
order-independent checksum the database computes still match? Standard library only, over a
connection of riskcore.data.db_connection; riskcore.data.db_ingest reads the rows and records
the state compared here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from riskcore.data.db_connection import (
    connect,
    contract_columns,
    quote_identifier,
    quote_literal,
    table_sql,
)
from riskcore.data.db_setting import DatabaseSource
from riskcore.formatting import plural


# --- The cheap question: anything new? ---------------------------------------------------------
@dataclass(frozen=True)
class TableState:
    """What the database says about the table: rows, and either a checksum or the watermark's range."""

    rows: int | None = None
    checksum: str | None = None
    watermark_min: Any = None
    watermark_max: Any = None
    new_rows: int | None = None  # with a watermark: rows above the recorded one
    recent: str | None = None  # with a watermark: the hashes of the rows within the look-back of its max (RECENT)
    recent_sum: int = 0  # their sum (what a tick compares with the database's)

    def as_record(self) -> dict[str, Any]:
        record = {"rows": self.rows, "checksum": self.checksum,
                  "watermark": {"min": self.watermark_min, "max": self.watermark_max}}
        if self.recent is not None:
            record["recent"] = self.recent
            record["recent_sum"] = str(self.recent_sum)
        return record


# --- Late rows: a look-back below the recorded watermark, rows recognised by their content --------
# A watermark is set when a row is written, but the row is seen only once its transaction commits:
# a slow transaction's row can commit with a watermark below the one a read has already recorded.
# Each read therefore looks back input_database.watermark_lookback_seconds below the recorded
# watermark, and the record keeps a hash of every row in that window, so the rows already ingested
# there are recognised and only the late ones count as new. Date and time columns get the margin;
# other types (a sequence) are compared from the recorded value itself.
TIME_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")


def sql_literal(source: DatabaseSource, value: Any) -> str:
    if source.kind == "sqlite":
        return repr(value) if isinstance(value, int | float) else "'" + str(value).replace("'", "''") + "'"
    return quote_literal(str(value))


def watermark_type(connection) -> str:
    """The watermark column's PostgreSQL type, as format_type names it ("timestamp with time zone")."""
    source = connection.source
    [row] = connection.rows(
        f"SELECT format_type(atttypid, NULL) AS kind FROM pg_attribute WHERE attrelid = "
        f"to_regclass({quote_literal(table_sql(source.table))}) AND attname = "
        f"{quote_literal(source.watermark_column)}")
    return row["kind"] or ""


def window_bound(connection, since: Any, lookback: bool = True) -> str:
    """SQL: the lowest watermark a read takes in, `since` less the look-back (date and time columns)."""
    source = connection.source
    literal = sql_literal(source, since)
    seconds = source.watermark_lookback_seconds if lookback else 0
    if not seconds:
        return literal
    if source.kind == "sqlite":  # text compared as text: the bound takes the recorded value's shape
        shape = "%Y-%m-%dT%H:%M:%S" if isinstance(since, str) and since[10:11] == "T" else "%Y-%m-%d %H:%M:%S"
        return f"COALESCE(strftime('{shape}', {literal}, '-{seconds:g} seconds'), {literal})" \
            if isinstance(since, str) else literal
    kind = watermark_type(connection)
    return f"(CAST({literal} AS {kind}) - interval '{seconds:g} seconds')" if kind in TIME_TYPES else literal


def row_hash_sql(source: DatabaseSource, columns: list[str]) -> str:
    """SQL: a hash of a row's contract columns and its watermark (what recognises a row already ingested), a whole
    number (the record keeps its text)."""
    listed = ", ".join(quote_identifier(c) for c in [*columns, source.watermark_column])
    return f"risk_row_hash({listed})" if source.kind == "sqlite" else f"hash_record_extended(ROW({listed}), 0)"


# The record keeps the hashes as one text, decimal and space-separated in increasing order: JSON's encoder
# writes a list of 1M hashes one indented line each (31 MB, 0.3-0.6 s), a text at C speed (20 MB).
def recorded_hashes(state: dict[str, Any]) -> list[str] | None:
    """The hashes a recorded state keeps of the rows within its look-back window (None: a record from before the
    look-back); records written before the hashes became one text hold a list."""
    recent = state.get("recent")
    if recent is None:
        return None
    return recent.split() if isinstance(recent, str) else [str(value) for value in recent]


def recorded_summary(state: dict[str, Any]) -> tuple[int, int]:
    """(count, sum) of the hashes a recorded state keeps (one with a look-back): summing 1M recorded hashes
    in Python took 0.3 s of every tick after a bulk load, so the record keeps the sum (older ones do not)."""
    recent = state["recent"]
    if isinstance(recent, str) and "recent_sum" in state:
        return (recent.count(" ") + 1 if recent else 0), int(state["recent_sum"])
    hashes = recorded_hashes(state)
    return len(hashes), sum(int(value) for value in hashes)


ROW_HASH, IN_WINDOW, IN_RECENT = "risk_row_hash", "risk_in_window", "risk_in_recent"  # columns of the query only


def look_back_sql(connection, columns: list[str], since: Any, high: Any, lookback: bool = True) -> dict[str, str]:
    """SQL of the columns a read adds for the look-back: IN_WINDOW (1 or 0), whether a row lies within the window
    of the recorded watermark `since` (where rows are new unless recognised), IN_RECENT, within the window of the
    table's max `high` (the rows the next read recognises), and ROW_HASH, its hash when it lies in either (else
    NULL), so the database hashes each row once and in the one scan. `lookback` False: no margin below `since`."""
    column = quote_identifier(connection.source.watermark_column)
    windows = {}
    if since is not None:
        windows[IN_WINDOW] = f"{column} > {window_bound(connection, since, lookback)}"
    if high is not None:
        windows[IN_RECENT] = f"{column} > {window_bound(connection, high)}"
    if not windows:
        return {}
    marks = {name: f"CASE WHEN {condition} THEN 1 ELSE 0 END" for name, condition in windows.items()}
    return {ROW_HASH: f"CASE WHEN {' OR '.join(windows.values())} THEN {row_hash_sql(connection.source, columns)} "
                      "END", **marks}


def window_rows(connection, columns: list[str], since: Any) -> list[tuple[str, bool]]:
    """(hash, above `since`) of every row within the look-back window of `since`."""
    source = connection.source
    column = quote_identifier(source.watermark_column)
    rows = connection.rows(f"SELECT {row_hash_sql(source, columns)} AS h, "
                           f"({column} > {sql_literal(source, since)}) AS above FROM {table_sql(source.table)} "
                           f"WHERE {column} > {window_bound(connection, since)}")
    return [(str(row["h"]), bool(row["above"])) for row in rows]


def window_unchanged(connection, columns: list[str], since: Any, recorded: tuple[int, int]) -> bool:
    """Whether the look-back window of `since` holds the recorded rows and no others: the same count and sum of
    row hashes, both computed by the database (the table's checksum, on the window), so a tick with nothing new
    fetches no row; a difference is looked at row by row (window_rows). `recorded`: recorded_summary's."""
    source = connection.source
    column = quote_identifier(source.watermark_column)
    total = f"sum({row_hash_sql(source, columns)})" + ("" if source.kind == "sqlite" else "::text")
    [row] = connection.rows(f"SELECT count(*) AS n, {total} AS total FROM {table_sql(source.table)} "
                            f"WHERE {column} > {window_bound(connection, since)}")
    return (row["n"], int(row["total"] or 0)) == recorded


def _above(source: DatabaseSource, since: Any) -> str:
    """SQL: the rows above the recorded watermark (every row with one, when none was recorded)."""
    column = quote_identifier(source.watermark_column)
    if since is None:
        return f"{column} IS NOT NULL"
    if source.kind == "sqlite":
        return f"{column} > ?"
    return f"{column} > {quote_literal(str(since))}"


def count_rows(connection) -> int:
    [row] = connection.rows(f"SELECT count(*) AS n FROM {table_sql(connection.source.table)}")
    return row["n"]


def new_rows(connection, since: Any) -> int:
    """How many rows lie above the recorded watermark (an index on the column answers from the index)."""
    source = connection.source
    sql = f"SELECT count(*) AS n FROM {table_sql(source.table)} WHERE {_above(source, since)}"
    [row] = _rows(connection, sql, [since] if source.kind == "sqlite" and since is not None else [])
    return row["n"]


def watermark_state(connection, since: Any, known: bool = True) -> TableState:
    """The watermark's range (min and max, from an index when there is one), and when a watermark was recorded
    (`known`) how many rows lie above `since` (the read itself hashes the rows within the look-back)."""
    source = connection.source
    column, cast = quote_identifier(source.watermark_column), "" if source.kind == "sqlite" else "::text"
    [row] = connection.rows(f"SELECT min({column}){cast} AS low, max({column}){cast} AS high "
                            f"FROM {table_sql(source.table)}")
    return TableState(watermark_min=row["low"], watermark_max=row["high"],
                      new_rows=new_rows(connection, since) if known else None)


def checksum_state(connection, columns: list[str]) -> TableState:
    """The row count and an order-independent checksum of the contract's columns, both computed by the database."""
    source = connection.source
    listed = ", ".join(quote_identifier(c) for c in columns)
    if source.kind == "sqlite":
        checksum = f"sum(risk_row_hash({listed}))"
    else:
        checksum = f"sum(hash_record_extended(ROW({listed}), 0))::text"  # PostgreSQL 14 or later
    [row] = connection.rows(f"SELECT count(*) AS n, {checksum} AS checksum FROM {table_sql(source.table)}")
    return TableState(row["n"], checksum=None if row["checksum"] is None else str(row["checksum"]))


def table_state(connection, columns: list[str], since: Any = None, known: bool = True) -> TableState:
    """The state an ingestion records (the row count and the look-back's hashes are the caller's: it has the
    rows); `known`: whether the record holds an earlier state (else every row is new, and not counted here)."""
    if connection.source.watermark_column:
        return watermark_state(connection, since, known)
    return checksum_state(connection, columns)


def _rows(connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    return connection.rows(sql, params) if params else connection.rows(sql)


def recorded_state(record: dict[str, Any] | None, source: DatabaseSource) -> dict[str, Any] | None:
    """The database part of an ingestion record, if it was made from this same table."""
    database = (record or {}).get("database")
    if not isinstance(database, dict) or database.get("source") != source.identity():
        return None
    return database


def new_data(source: DatabaseSource, record: dict[str, Any] | None) -> list[str]:
    """What changed in the table since the ingestion record, in words ([]: nothing new)."""
    known = recorded_state(record, source)
    with connect(source) as connection:
        columns = contract_columns(connection.columns(source.table), source)
        if known is None:
            return [f"{source.table}: {plural(count_rows(connection), 'row')} (not ingested from this table before)"]
        if source.watermark_column:
            since = known["state"]["watermark"]["max"]
            if known["state"].get("recent") is None or since is None:  # a record from before the look-back
                count = new_rows(connection, since)
                return [f"{source.table}: {plural(count, 'row')} above {source.watermark_column} {since}"] \
                    if count else []
            if window_unchanged(connection, columns, since, recorded_summary(known["state"])):
                return []
            seen = set(recorded_hashes(known["state"]))
            fresh = [above for row_hash, above in window_rows(connection, columns, since) if row_hash not in seen]
            late = fresh.count(False)
            if not fresh:
                return []
            if not late:
                return [f"{source.table}: {plural(len(fresh), 'row')} above {source.watermark_column} {since}"]
            return [f"{source.table}: {plural(len(fresh), 'new row')}, {late:,} of them committed late (below "
                    f"{source.watermark_column} {since}, within the {source.watermark_lookback_seconds:g} s "
                    "look-back)"]
        state = checksum_state(connection, columns)
    before = known["state"]
    if (state.rows, state.checksum) != (before.get("rows"), before.get("checksum")):
        return [f"{source.table}: {plural(state.rows, 'row')}, changed since the last ingestion "
                f"({plural(before.get('rows') or 0, 'row')} then)"]
    return []


def deleted_rows(source: DatabaseSource, record: dict[str, Any] | None) -> int:
    """How many fewer rows the table holds than the ingestion record counted (0 when none fewer, or unknown)."""
    known = recorded_state(record, source)
    before = (known or {}).get("state", {}).get("rows")
    if not isinstance(before, int):
        return 0
    with connect(source) as connection:
        return max(0, before - count_rows(connection))
