"""The database source (riskcore.data.db_setting names it): the SQL text, and connecting.

A connection to PostgreSQL (ADBC's libpq driver and nanoarrow: about 40 ms to import, no data
library) or to a SQLite file (the standard library), with every wait bounded (connect, statement
and lock timeouts, TCP keepalives). riskcore.data.db_changes asks the tick's cheap question over
it (has the table changed?); riskcore.data.db_ingest reads the table itself.

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
from riskcore.ops.deadline import time_left

CONNECT_TIMEOUT_SECONDS = 10
KEEPALIVE_PROBES = 3  # unanswered TCP keepalive probes before the connection counts as lost
REQUIRED_COLUMNS = tuple(c for c in COLUMNS if c != TARGET)  # `exited` may be absent: clients not yet labelled


class DatabaseError(DataError):
    """The database cannot be read: down, login refused, no such table or column."""


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
@dataclass(frozen=True)
class Waits:
    """How long a session lets a statement run and waits for a lock, in seconds.

    A run's time limit (automation.max_run_seconds) is a signal the database driver's C code does not
    see: a tick limited to 5 s read a slow table for 67 s, then exited 0. Within a run, each wait is cut
    to the time left (`*_cut`), and its sentence names the run's limit.
    """

    statement: float
    lock: float
    statement_cut: bool = False
    lock_cut: bool = False
    run_limit: float | None = None

    def lock_reason(self, holder: str = "another session holds a lock on the table") -> str:
        if self.lock_cut:
            return (f"{holder} that did not clear before the run's time limit of {self.run_limit:g} s "
                    "(automation.max_run_seconds); nothing was read")
        return (f"{holder} that did not clear within {self.lock:g} s (input_database.lock_timeout_seconds); "
                "nothing was read")

    def statement_reason(self) -> str:
        if self.statement_cut:
            return (f"a query was still running at the run's time limit of {self.run_limit:g} s "
                    "(automation.max_run_seconds) and was cancelled; nothing was read")
        return (f"a query ran longer than {self.statement:g} s (input_database.statement_timeout_seconds) and was "
                "cancelled; nothing was read")


def session_waits(source: DatabaseSource) -> Waits:
    """The source's statement and lock timeouts, each cut to the time left before the run's deadline, if any."""
    left = time_left()
    if left is None:
        return Waits(source.statement_timeout_seconds, source.lock_timeout_seconds)
    seconds = max(left[0], 0.001)  # 0 would mean no timeout at all
    return Waits(min(source.statement_timeout_seconds, seconds), min(source.lock_timeout_seconds, seconds),
                 statement_cut=seconds < source.statement_timeout_seconds,
                 lock_cut=seconds < source.lock_timeout_seconds, run_limit=left[1])


def postgres_failure(source: DatabaseSource, exc: Exception, waits: Waits | None = None) -> DatabaseError:
    """One sentence for a PostgreSQL error: which server, and what went wrong, without the password."""
    text = str(exc)
    state = getattr(exc, "sqlstate", None) or ""
    lowered = text.lower()
    end = postgres_endpoint(source.url)
    waits = waits or Waits(source.statement_timeout_seconds, source.lock_timeout_seconds)
    if state == "55P03" or "lock timeout" in lowered:
        reason = waits.lock_reason()
    elif state == "57014" or "statement timeout" in lowered:
        reason = waits.statement_reason()
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


def session_settings(waits: Waits) -> str:
    """SQL bounding every statement of the session, and every wait for a lock (in milliseconds; 0 would be none)."""
    return (f"SET statement_timeout = {max(1, round(waits.statement * 1000))}; "
            f"SET lock_timeout = {max(1, round(waits.lock * 1000))}")


class PostgresConnection:
    """One ADBC (libpq) connection; queries return rows as dicts (nanoarrow) or an Arrow stream (polars)."""

    def __init__(self, source: DatabaseSource, waits: Waits) -> None:
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
        for setting in session_settings(waits).split("; "):
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

    def __init__(self, source: DatabaseSource, waits: Waits) -> None:
        self.source = source
        uri = f"file:{quote(str(source.sqlite_file))}?mode=ro"
        self._connection = sqlite3.connect(uri, uri=True, timeout=waits.lock, isolation_level=None)
        self._connection.create_function("risk_row_hash", -1, row_hash, deterministic=True)
        # The statement timeout: SQLite calls this every 10,000 instructions; non-zero interrupts the statement.
        limit = time.monotonic() + waits.statement
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


def sqlite_failure(source: DatabaseSource, exc: sqlite3.Error, waits: Waits) -> DatabaseError:
    text = str(exc)
    if text == "interrupted":
        return DatabaseError(f"Cannot read {source.label}: {waits.statement_reason()}.")
    if text == "database is locked":
        held = waits.lock_reason("another connection held a lock on the file")
        return DatabaseError(f"Cannot read {source.label}: {held}.")
    if text.startswith("no such table"):
        return DatabaseError(f"Cannot read {source.label}: it has no such table.")
    if text.startswith("no such column"):
        column = text.partition(":")[2].strip()
        return DatabaseError(f'{source.subject} has no column "{column}".')
    return DatabaseError(f"Cannot read {source.label}: {text or exc.__class__.__name__}.")


@contextlib.contextmanager
def connect(source: DatabaseSource) -> Iterator[PostgresConnection | SqliteConnection]:
    """A connection to the source's database; any database error inside becomes one DatabaseError sentence."""
    waits = session_waits(source)
    if source.kind == "sqlite":
        with closing_on_error(lambda: SqliteConnection(source, waits), lambda exc: isinstance(exc, sqlite3.Error),
                              lambda exc: sqlite_failure(source, exc, waits)) as connection:
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

    with closing_on_error(lambda: PostgresConnection(source, waits), ours,
                          lambda exc: postgres_failure(source, exc, waits)) as connection:
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
