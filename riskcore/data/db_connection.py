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
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from riskcore.contract import COLUMNS, KNOWN_COLUMNS, TARGET, DataError
from riskcore.data.db_setting import PASSWORD_WAYS, DatabaseSource, postgres_endpoint

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
