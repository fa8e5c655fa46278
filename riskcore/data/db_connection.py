"""The database source (riskcore.data.db_setting names it): connecting, and asking whether the table changed.

This module answers the cron tick's question cheaply: has the table changed since the deployed
ingestion record? With a watermark column: are there rows above the recorded watermark? Without:
do the row count and an order-independent checksum the database computes still match? It uses the
standard library, plus ADBC's libpq driver and nanoarrow for PostgreSQL (about 40 ms to import,
no data library). riskcore.data.db_ingest reads the table itself.

Every failure is one DataError sentence naming the table, host, port and database (or the SQLite
file), never the password.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from riskcore.contract import COLUMNS, KNOWN_COLUMNS, TARGET, DataError
from riskcore.data.db_setting import PASSWORD_WAYS, DatabaseSource, postgres_endpoint

CONNECT_TIMEOUT_SECONDS = 10
KEEPALIVE_PROBES = 3  # unanswered TCP keepalive probes before the connection counts as lost
REQUIRED_COLUMNS = tuple(c for c in COLUMNS if c != TARGET)  # `exited` may be absent: clients not yet labelled


class DatabaseError(DataError):
    """The database cannot be read: down, login refused, no such table or column."""


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


# --- SQL text ----------------------------------------------------------------------------------
def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_sql(table: str) -> str:
    """`schema.table` or `table`, each part quoted (names are matched as stored)."""
    return ".".join(quote_identifier(part) for part in table.split("."))


def quote_literal(value: str) -> str:
    """A PostgreSQL string constant of unknown type (so it takes the watermark column's type)."""
    # An escape string: its meaning does not depend on standard_conforming_strings.
    return "E'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def contract_columns(present: Sequence[str], source: DatabaseSource) -> list[str]:
    """The contract's columns the table has (annual_revenue where it has one), in contract order; DatabaseError
    naming the first required one missing."""
    wanted = [*REQUIRED_COLUMNS, *([source.watermark_column] if source.watermark_column else [])]
    missing = [column for column in wanted if column not in present]
    if missing:
        raise DatabaseError(f'{source.subject} has no column "{missing[0]}".')
    return [column for column in KNOWN_COLUMNS if column in present]


# --- Connections -------------------------------------------------------------------------------
def postgres_failure(source: DatabaseSource, exc: Exception) -> DatabaseError:
    """One sentence for a PostgreSQL error: which server, and what went wrong, without the password."""
    text = str(exc)
    state = getattr(exc, "sqlstate", None) or ""
    lowered = text.lower()
    end = postgres_endpoint(source.url)
    if state == "55P03" or "lock timeout" in lowered:
        reason = (f"another session holds a lock on the table that did not clear within "
                  f"{source.lock_timeout_seconds:g} s (input_database.lock_timeout_seconds); nothing was read")
    elif state == "57014" or "statement timeout" in lowered:
        reason = (f"a query ran longer than {source.statement_timeout_seconds:g} s "
                  "(input_database.statement_timeout_seconds) and was cancelled; nothing was read")
    elif state == "42P01" or "does not exist" in lowered and "relation" in lowered:
        reason = "it has no such table"
    elif "password" in lowered or "authentication" in lowered or state.startswith("28"):
        reason = f'it refused the login of user "{end.user or "(default)"}" (check {PASSWORD_WAYS})'
    elif "database" in lowered and "does not exist" in lowered or state == "3D000":
        reason = "that database does not exist"
    elif any(word in lowered for word in ("refused", "could not connect", "timeout", "could not translate",
                                          "no such file", "is the server running")):
        reason = "the server is not answering"
    elif any(word in lowered for word in ("closed the connection", "terminating connection", "server closed",
                                          "connection to server was lost", "no connection")) \
            or state.startswith(("57P", "08")):
        reason = "the connection was lost"
    else:
        detail = next((line.split("ERROR:", 1)[-1].split("FATAL:", 1)[-1].strip()
                       for line in text.splitlines() if "ERROR:" in line or "FATAL:" in line), "")
        reason = f"it failed ({(detail or text.splitlines()[0] if text else exc.__class__.__name__)[:160]})"
    message = f"Cannot read {source.label}: {reason}."
    password = os.environ.get("PGPASSWORD")
    if password:  # libpq never echoes it; a server's message could, in principle
        message = message.replace(password, "********")
    return DatabaseError(message)


def conninfo(source: DatabaseSource) -> str:
    """The URL handed to libpq: a bounded connect timeout, TCP keepalives and our name, unless the URL sets them.

    Keepalives notice a server or network that went silent mid-query (probes every
    keepalive_seconds, lost after KEEPALIVE_PROBES unanswered; tcp_user_timeout bounds unacknowledged
    sends the same way), where a blocked read would otherwise wait for hours.
    """
    url = source.url
    params = parse_qs(urlsplit(url).query)
    idle = max(1, round(source.keepalive_seconds))
    wanted = (("connect_timeout", CONNECT_TIMEOUT_SECONDS), ("application_name", "dynamic-risk-assessment"),
              ("keepalives", 1), ("keepalives_idle", idle), ("keepalives_interval", idle),
              ("keepalives_count", KEEPALIVE_PROBES), ("tcp_user_timeout", idle * (KEEPALIVE_PROBES + 1) * 1000))
    extra = [f"{key}={value}" for key, value in wanted if key not in params]
    if not extra:
        return url
    return url + ("&" if "?" in url else "?") + "&".join(extra)


def session_settings(source: DatabaseSource) -> str:
    """SQL bounding every statement of the session, and every wait for a lock (in milliseconds)."""
    return (f"SET statement_timeout = {round(source.statement_timeout_seconds * 1000)}; "
            f"SET lock_timeout = {round(source.lock_timeout_seconds * 1000)}")


class PostgresConnection:
    """One ADBC (libpq) connection; queries return rows as dicts (nanoarrow) or an Arrow stream (polars)."""

    def __init__(self, source: DatabaseSource) -> None:
        import adbc_driver_manager
        import adbc_driver_postgresql

        self.source = source
        self._adbc = adbc_driver_manager
        self._database = adbc_driver_postgresql.connect(conninfo(source))
        try:
            self._connection = adbc_driver_manager.AdbcConnection(self._database)
        except BaseException:
            self._database.close()
            raise
        for setting in session_settings(source).split("; "):
            self.execute(setting)

    def begin_snapshot(self) -> None:
        """Every later query sees the same snapshot of the table (one read-only repeatable-read transaction)."""
        self._connection.set_options(**{"adbc.connection.autocommit": "false"})
        self.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def execute(self, sql: str) -> None:
        with self._statement(sql) as statement:
            statement.execute_update()

    @contextlib.contextmanager
    def _statement(self, sql: str) -> Iterator[Any]:
        statement = self._adbc.AdbcStatement(self._connection)
        try:
            statement.set_sql_query(sql)
            yield statement
        finally:
            statement.close()

    def consume(self, sql: str, reader: Callable[[Any], Any]) -> Any:
        """`reader` applied to the result as an Arrow stream (polars, for the rows)."""
        with self._statement(sql) as statement:
            return reader(statement.execute_query()[0])

    def rows(self, sql: str) -> list[dict[str, Any]]:
        import nanoarrow

        with self._statement(sql) as statement:
            return nanoarrow.ArrayStream(statement.execute_query()[0]).read_all().to_pylist()

    def columns(self, table: str) -> dict[str, bool]:
        """The table's columns: name -> whether its values arrive as whole numbers or text (else read as text)."""
        import nanoarrow

        plain = {getattr(nanoarrow.Type, name) for name in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16",
                                                              "UINT32", "UINT64", "STRING", "LARGE_STRING")}
        with self._statement(f"SELECT * FROM {table_sql(table)} LIMIT 0") as statement:
            schema = nanoarrow.ArrayStream(statement.execute_query()[0]).schema
            return {field.name: field.type in plain for field in schema.fields}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()
        with contextlib.suppress(Exception):
            self._database.close()


def row_hash(*values: Any) -> int:
    """A 32-bit hash of one row's values (SQLite has no hash function of its own); sums of 2**31 rows fit."""
    return zlib.crc32(repr(values).encode("utf-8", "surrogatepass"))


class SqliteConnection:
    """A read-only sqlite3 connection (the file is never created or changed)."""

    def __init__(self, source: DatabaseSource) -> None:
        self.source = source
        uri = f"file:{quote(str(source.sqlite_file))}?mode=ro"
        self._connection = sqlite3.connect(uri, uri=True, timeout=source.lock_timeout_seconds, isolation_level=None)
        self._connection.create_function("risk_row_hash", -1, row_hash, deterministic=True)
        # The statement timeout: SQLite calls this every 10,000 instructions; non-zero interrupts the statement.
        limit = time.monotonic() + source.statement_timeout_seconds
        self._connection.set_progress_handler(lambda: int(time.monotonic() > limit), 10_000)

    def begin_snapshot(self) -> None:
        self._connection.execute("BEGIN")  # a read transaction: one snapshot for the queries that follow

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self._connection.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def tuples(self, sql: str) -> tuple[list[str], list[tuple]]:
        cursor = self._connection.execute(sql)
        return [d[0] for d in cursor.description], cursor.fetchall()

    def columns(self, table: str) -> dict[str, bool]:
        """The table's columns (SQLite hands over Python values, converted on reading)."""
        cursor = self._connection.execute(f"SELECT * FROM {table_sql(table)} LIMIT 0")
        return {d[0]: True for d in cursor.description}

    def close(self) -> None:
        self._connection.close()


def sqlite_failure(source: DatabaseSource, exc: sqlite3.Error) -> DatabaseError:
    text = str(exc)
    if text == "interrupted":
        return DatabaseError(f"Cannot read {source.label}: reading took longer than "
                             f"{source.statement_timeout_seconds:g} s (input_database.statement_timeout_seconds) "
                             "and was stopped; nothing was read.")
    if text == "database is locked":
        return DatabaseError(f"Cannot read {source.label}: another connection held a lock on the file that did not "
                             f"clear within {source.lock_timeout_seconds:g} s (input_database.lock_timeout_seconds); "
                             "nothing was read.")
    if text.startswith("no such table"):
        return DatabaseError(f"Cannot read {source.label}: it has no such table.")
    if text.startswith("no such column"):
        column = text.partition(":")[2].strip()
        return DatabaseError(f'{source.subject} has no column "{column}".')
    return DatabaseError(f"Cannot read {source.label}: {text or exc.__class__.__name__}.")


@contextlib.contextmanager
def connect(source: DatabaseSource) -> Iterator[PostgresConnection | SqliteConnection]:
    """A connection to the source's database; any database error inside becomes one DatabaseError sentence."""
    if source.kind == "sqlite":
        with closing_on_error(lambda: SqliteConnection(source), lambda exc: isinstance(exc, sqlite3.Error),
                              lambda exc: sqlite_failure(source, exc)) as connection:
            yield connection
        return
    try:
        import adbc_driver_manager
        import adbc_driver_postgresql  # noqa: F401 - PostgresConnection's driver, checked here to say so
    except ImportError as exc:
        raise DatabaseError(f"Cannot read {source.label}: the {exc.name} package is missing "
                            "(install requirements.txt).") from None

    def ours(exc: BaseException) -> bool:
        # The driver's errors, and a failure mid-stream: the reader (nanoarrow, polars) passes libpq's words on.
        return isinstance(exc, adbc_driver_manager.Error) or (isinstance(exc, Exception) and "[libpq]" in str(exc))

    with closing_on_error(lambda: PostgresConnection(source), ours,
                          lambda exc: postgres_failure(source, exc)) as connection:
        yield connection


@contextlib.contextmanager
def closing_on_error(open_connection, is_database_error, failure) -> Iterator:
    """Open a connection, close it whatever happens, and turn a database error into failure(exc)."""
    connection = None
    try:
        connection = open_connection()
        yield connection
    except BaseException as exc:
        if not is_database_error(exc):
            raise
        raise failure(exc) from None
    finally:
        if connection is not None:
            connection.close()


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
