"""The database source (riskcore.data.db_setting, .db_connection, .db_changes, .db_ingest): config, change check, read.

SQLite runs through the standard library, in-process. PostgreSQL runs on a real throwaway server
(tests/pg.py: Debian's binaries, a free loopback port, an unprivileged user); those tests are
marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import datagen
from conftest import (
    ROOT,
    client_rows,
    deploy_pipeline,
    one_sentence,
    run_script,
    tree_snapshot,
    write_config,
    write_csv,
)
from riskcore.config import load_config
from riskcore.contract import INGESTION_RECORD, RISK_RECORD, ConfigError
from riskcore.data import db_ingest
from riskcore.data.db_changes import new_data
from riskcore.data.db_connection import DatabaseError
from riskcore.data.db_ingest import read_table
from riskcore.data.db_setting import DatabaseSource, parse_input_database, postgres_endpoint
from riskcore.files import atomic_write_json
from riskcore.ops import tick
from riskcore.ops.history import read_history
from riskcore.ops.run_record import history_path
from riskcore.release.load import require_deployment

COLUMNS_SQL = ("corporation TEXT, lastmonth_activity INTEGER, lastyear_activity INTEGER, "
               "number_of_employees INTEGER, exited INTEGER")


def as_tuples(rows: list[str], stamp: str | None = None) -> list[tuple]:
    """conftest's CSV rows as table rows (with an updated_at stamp when given)."""
    out = []
    for row in rows:
        corp, *numbers = row.split(",")
        values = (corp, *map(int, numbers))
        out.append((*values, stamp) if stamp is not None else values)
    return out


def sqlite_table(path: Path, rows: list[tuple], watermark: bool = True, columns: str = COLUMNS_SQL,
                 table: str = "clients") -> Path:
    """An SQLite file with a clients table (and updated_at when `watermark`), holding `rows`."""
    with sqlite3.connect(path) as connection:
        extra = ", updated_at TEXT" if watermark else ""
        connection.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns}{extra})")
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            connection.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    connection.close()
    return path


def sqlite_source(path: Path, watermark: str | None = "updated_at", table: str = "clients") -> DatabaseSource:
    return parse_input_database({"url": f"sqlite:///{path.name}", "table": table, "watermark_column": watermark},
                                path.parent, "config.json")


def execute(path: Path, sql: str, params: tuple = ()) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(sql, params)
    connection.close()


# --- Config --------------------------------------------------------------------------------------
def database_config(root: Path, database: dict, **overrides) -> Path:
    path = write_config(root, **overrides)
    raw = json.loads(path.read_text())
    raw.pop("input_folder_path")
    raw["input_database"] = database
    path.write_text(json.dumps(raw))
    return path


def test_input_database_stands_in_for_the_folder_and_sqlite_paths_resolve_against_the_config(tmp_path: Path):
    (tmp_path / "data").mkdir()
    sqlite_table(tmp_path / "data" / "crm.sqlite", [])
    config = load_config(database_config(tmp_path, {"url": "sqlite:///data/crm.sqlite", "table": "clients"}))
    assert config.input_folder is None
    assert config.input_database.sqlite_file == tmp_path / "data" / "crm.sqlite"
    assert config.input_database.watermark_column is None
    assert tmp_path / "ingested" in config.data_folders and None not in config.data_folders


def test_an_absolute_sqlite_path_stays_absolute(tmp_path: Path):
    sqlite_table(tmp_path / "crm.sqlite", [])
    other = tmp_path / "elsewhere"
    other.mkdir()
    config = load_config(database_config(other, {"url": f"sqlite:///{tmp_path}/crm.sqlite", "table": "clients"}))
    assert config.input_database.sqlite_file == tmp_path / "crm.sqlite"


@pytest.mark.parametrize(("database", "expected"), [
    ({"url": "postgresql://risk:hunter2@db:5432/crm", "table": "clients"}, "holds a password"),
    ({"url": "postgresql://risk@db/crm?password=hunter2", "table": "clients"}, "holds a password"),
    ({"url": "mysql://db/crm", "table": "clients"}, "must start with postgresql://"),
    ({"url": "sqlite:///missing.sqlite", "table": "clients"}, "does not exist"),
    ({"url": "postgresql://db/crm"}, '"input_database.table"'),
    ({"url": "postgresql://db/crm", "table": ""}, '"input_database.table"'),
    ({"url": "postgresql://db/crm", "table": "a.b.c"}, "schema.table"),
    ({"url": "postgresql://db/crm", "table": "clients", "watermark_column": 5}, '"input_database.watermark_column"'),
    ({"url": "postgresql://db/crm", "table": "clients", "schedule": "daily"}, '"input_database.schedule"'),
    ("postgresql://db/crm", "must be an object"),
])
def test_bad_input_database_is_one_sentence_naming_the_key_never_the_password(tmp_path: Path, database, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(database_config(tmp_path, database))
    assert expected in one_sentence(str(caught.value))
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("url", [
    "postgresql://risk@db/crm?dbname=postgresql://u:hunter2@db/crm",  # libpq expands a URL given as dbname
    "postgresql://risk@db/crm?dbname=postgresql%3A%2F%2Fu%3Ahunter2%40db%2Fcrm",
    "postgresql://risk@db/crm?dbname=host%3Ddb%20password%3Dhunter2",  # a connection string as dbname
    "postgresql://risk@db/crm?sslpassword=hunter2",  # the client key's passphrase
    "postgresql://risk@db/crm?SSLPassword=hunter2",
    "postgresql://risk@db/crm?pass%77ord=hunter2",
    "postgresql://risk@db/postgresql%3A%2F%2Fu%3Ahunter2%40db%2Fcrm",
    "postgresql://risk@db/crm?options=-c%20x%3D1&service=crm&dbname=postgres://u:hunter2@db",
])
def test_a_password_anywhere_in_the_url_is_refused_without_showing_it(tmp_path: Path, url: str):
    with pytest.raises(ConfigError) as caught:  # at load: before a run could record the URL in control.json
        load_config(database_config(tmp_path, {"url": url, "table": "clients"}))
    assert "holds a password" in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.parametrize("url", [
    "postgresql://risk@db/crm?passfile=/home/risk/.pgpass",  # a file, as ~/.pgpass: allowed
    "postgresql://risk@db/crm?sslkey=/home/risk/client.key&service=crm",
    "postgresql://risk@db/crm?dbname=crm&application_name=risk",
])
def test_urls_without_a_password_are_accepted(tmp_path: Path, url: str):
    assert load_config(database_config(tmp_path, {"url": url, "table": "clients"})).input_database.url == url


def test_the_folder_and_the_database_together_are_refused(tmp_path: Path):
    (tmp_path / "input").mkdir()
    path = write_config(tmp_path)
    raw = json.loads(path.read_text())
    raw["input_database"] = {"url": "postgresql://db/crm", "table": "clients"}
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="both"):
        load_config(path)


def test_neither_folder_nor_database_names_both_keys(tmp_path: Path):
    path = write_config(tmp_path)
    raw = json.loads(path.read_text())
    raw.pop("input_folder_path")
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match='"input_folder_path".*"input_database"'):
        load_config(path)


def test_recorded_url_has_no_user_and_messages_name_host_port_and_database():
    source = parse_input_database({"url": "postgresql://risk@db.example:6543/crm?sslmode=require&user=risk",
                                   "table": "clients"}, Path("/"), "config.json")
    assert source.public_url == "postgresql://db.example:6543/crm?sslmode=require"
    assert source.where == "PostgreSQL at db.example:6543, database crm"


def test_what_the_url_leaves_out_comes_from_libpqs_environment():
    end = postgres_endpoint("postgresql://", {"PGHOST": "pg.internal", "PGPORT": "5433", "PGUSER": "risk",
                                               "PGDATABASE": "crm", "PGSERVICE": "risk"})
    assert (end.host, end.port, end.database, end.user, end.service) == ("pg.internal", "5433", "crm", "risk", "risk")
    end = postgres_endpoint("postgresql://[::1]:5432/crm", {})
    assert (end.host, end.port, end.database) == ("::1", "5432", "crm")
    assert postgres_endpoint("postgresql:///crm?host=/run/pg&port=5", {}).host == "/run/pg"


def test_example_config_reads_the_example_sqlite_table(tmp_path: Path):

    shutil.copy(ROOT / "config.database.json", tmp_path / "config.database.json")
    assert datagen.write_sqlite(tmp_path / "db" / "clients.sqlite", "practice", ROOT) == 1465 * 2 + 75
    assert datagen.write_sqlite(tmp_path / "db" / "clients.sqlite", "practice", ROOT) == 0  # once only
    config = load_config(tmp_path / "config.database.json")
    assert config.input_database.watermark_column == "updated_at"
    assert read_table(config.input_database, None).frame.height == 3005


# --- SQLite: the cheap check and the read -------------------------------------------------------
def test_sqlite_first_read_then_nothing_new_then_inserted_rows_are_new(tmp_path: Path):
    db = sqlite_table(tmp_path / "crm.sqlite", as_tuples(client_rows(50, seed=1), "2024-01-01"))
    source = sqlite_source(db)
    assert new_data(source, None) == ["clients: 50 rows (not ingested from this table before)"]
    first = read_table(source, None)
    assert first.frame.height == 50 and first.new.height == 50
    assert (first.state.watermark_min, first.state.watermark_max) == ("2024-01-01", "2024-01-01")
    record = {"database": json.loads(json.dumps(first.record()))}
    assert new_data(source, record) == []
    added = as_tuples(client_rows(7, seed=2), "2024-02-01")
    sqlite_table(db, added)
    assert new_data(source, record) == ["clients: 7 rows above updated_at 2024-01-01"]
    second = read_table(source, record)
    assert second.frame.height == 57 and second.new.height == 7
    assert second.new["corporation"].to_list() == [row[0] for row in added]


def test_sqlite_row_updated_in_place_with_a_newer_watermark_is_new(tmp_path: Path):
    db = sqlite_table(tmp_path / "crm.sqlite", as_tuples(client_rows(20, seed=1), "2024-01-01"))
    source = sqlite_source(db)
    record = {"database": read_table(source, None).record()}
    client = client_rows(20, seed=1)[4].split(",")[0]
    execute(db, "UPDATE clients SET lastmonth_activity = 999, updated_at = '2024-03-01' WHERE corporation = ?",
            (client,))
    assert new_data(source, record) == ["clients: 1 row above updated_at 2024-01-01"]
    again = read_table(source, record)
    assert again.new.to_dicts() == [{**again.new.to_dicts()[0], "corporation": client,
                                           "lastmonth_activity": 999}]
    assert again.frame.height == 20  # updated in place: still one row per client


def test_sqlite_without_watermark_a_count_and_checksum_notice_an_update(tmp_path: Path):
    db = sqlite_table(tmp_path / "crm.sqlite", as_tuples(client_rows(20, seed=1)), watermark=False)
    source = sqlite_source(db, watermark=None)
    record = {"database": read_table(source, None).record()}
    assert record["database"]["state"]["checksum"]
    assert new_data(source, record) == []
    execute(db, "UPDATE clients SET number_of_employees = number_of_employees + 1 WHERE rowid = 3")
    assert new_data(source, record) == ["clients: 20 rows, changed since the last ingestion (20 rows then)"]


def test_without_watermark_the_new_rows_are_those_not_in_the_previous_snapshot(tmp_path: Path):

    rows = as_tuples(client_rows(20, seed=1))
    db = sqlite_table(tmp_path / "crm.sqlite", rows, watermark=False)
    source = sqlite_source(db, watermark=None)
    first = read_table(source, None)
    record = {"database": first.record()}
    execute(db, "UPDATE clients SET number_of_employees = 7 WHERE corporation = ?", (rows[5][0],))
    sqlite_table(db, as_tuples(client_rows(1, seed=9)), watermark=False)
    again = read_table(source, record, previous=pl.read_csv(first.snapshot, infer_schema=False))
    assert again.new["corporation"].to_list() == [rows[5][0], client_rows(1, seed=9)[0].split(",")[0]]
    assert again.new["number_of_employees"].to_list()[0] == 7
    assert read_table(source, record).new.height == 21  # no previous snapshot: every row counts as new


def test_a_record_of_another_table_means_everything_is_new(tmp_path: Path):
    db = sqlite_table(tmp_path / "crm.sqlite", as_tuples(client_rows(5, seed=1), "2024-01-01"))
    record = {"database": read_table(sqlite_source(db), None).record()}
    sqlite_table(db, as_tuples(client_rows(5, seed=2), "2024-01-01"), table="prospects")
    assert new_data(sqlite_source(db, table="prospects"), record)[0].startswith("prospects: 5 rows (not ingested")


def test_sqlite_file_is_never_written(tmp_path: Path):
    db = sqlite_table(tmp_path / "crm.sqlite", as_tuples(client_rows(5, seed=1), "2024-01-01"))
    before = db.read_bytes()
    source = sqlite_source(db)
    new_data(source, {"database": read_table(source, None).record()})
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm.sqlite"]


def test_sqlite_missing_table_and_missing_column_are_one_sentence(tmp_path: Path):
    db = sqlite_table(tmp_path / "crm.sqlite", [], columns="corporation TEXT, lastmonth_activity INTEGER, "
                      "number_of_employees INTEGER, exited INTEGER")
    with pytest.raises(DatabaseError) as caught:
        new_data(sqlite_source(db, table="customers"), None)
    assert str(caught.value) == f'Cannot read table "customers" (SQLite file {db}): it has no such table.'
    with pytest.raises(DatabaseError) as caught:
        read_table(sqlite_source(db), None)
    assert str(caught.value) == f'Table "clients" (SQLite file {db}) has no column "lastyear_activity".'


def test_bad_values_hold_the_table_back_naming_and_counting_their_clients(tmp_path: Path):
    rows = as_tuples(client_rows(30, seed=1), "2024-01-01")
    rows[3] = ("zzzz", -5, *rows[3][2:])
    rows[9] = ("yyyy", "1,200", *rows[9][2:])
    rows[20] = ("xxxx", *rows[20][1:4], 2, "2024-01-01")
    db = sqlite_table(tmp_path / "crm.sqlite", rows)
    with pytest.raises(DatabaseError) as caught:
        read_table(sqlite_source(db), None)
    assert str(caught.value) == (f'Table "clients" (SQLite file {db}) is not ingested: 3 rows have bad values '
                                 '(clients "zzzz", "yyyy", "xxxx"); client "zzzz" has "-5" in column '
                                 '"lastmonth_activity", expected a whole number >= 0.')


def test_an_id_over_the_configured_length_holds_the_table_back_without_printing_it(tmp_path: Path):
    rows = as_tuples(client_rows(10, seed=1), "2024-01-01")
    long_id = "L" + "0123456789" * 120
    rows[4] = (long_id, *rows[4][1:])
    db = sqlite_table(tmp_path / "crm.sqlite", rows)
    with pytest.raises(DatabaseError) as caught:
        read_table(sqlite_source(db), None)
    message = str(caught.value)
    assert "1 row has bad values" in message and "expected a non-empty id of at most 200 characters" in message
    assert long_id not in message and len(message) < 400
    assert read_table(sqlite_source(db), None, max_id_length=len(long_id)).frame.height == 10


def test_an_id_with_a_line_break_holds_the_table_back_in_one_line(tmp_path: Path):
    """The files' id rule (one line of text, no control characters), the sentence on one line naming the client."""
    rows = as_tuples(client_rows(10, seed=1), "2024-01-01")
    rows[6] = ("two\nlines", *rows[6][1:])
    db = sqlite_table(tmp_path / "crm.sqlite", rows)
    with pytest.raises(DatabaseError) as caught:
        read_table(sqlite_source(db), None)
    assert str(caught.value) == (f'Table "clients" (SQLite file {db}) is not ingested: 1 row has bad values (clients '
                                 '"two\\nlines"); client "two\\nlines" has "two\\nlines" in column "corporation", '
                                 "expected a non-empty id of at most 200 characters, with no control character.")


def test_values_that_are_not_whole_numbers_are_refused_as_in_a_csv(tmp_path: Path):
    rows = as_tuples(client_rows(5, seed=1), "2024-01-01")
    rows[2] = (rows[2][0], 12.5, *rows[2][2:])
    db = sqlite_table(tmp_path / "crm.sqlite", rows)
    with pytest.raises(DatabaseError, match='has "12.5" in column "lastmonth_activity"'):
        read_table(sqlite_source(db), None)


def test_an_empty_table_is_not_ingested(tmp_path: Path):
    db = sqlite_table(tmp_path / "crm.sqlite", [])
    with pytest.raises(DatabaseError, match="has no rows"):
        read_table(sqlite_source(db), None)


def test_sqlite_rows_come_in_watermark_order_rows_without_one_first(tmp_path: Path):
    rows = as_tuples(client_rows(3, seed=1))
    db = sqlite_table(tmp_path / "crm.sqlite", [(*rows[0], "2024-03-01"), (*rows[1], None), (*rows[2], "2024-01-01")])
    frame = read_table(sqlite_source(db), None).frame
    assert frame["corporation"].to_list() == [rows[1][0], rows[2][0], rows[0][0]]


@pytest.mark.slow
def test_a_tick_question_against_sqlite_imports_no_data_library(tmp_path: Path):
    sqlite_table(tmp_path / "crm.sqlite", as_tuples(client_rows(5, seed=1), "2024-01-01"))
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from riskcore.data.db_changes import new_data
from riskcore.data.db_setting import parse_input_database
from pathlib import Path
source = parse_input_database({{"url": "sqlite:///crm.sqlite", "table": "clients", "watermark_column": "updated_at"}},
                              Path({str(tmp_path)!r}), "config.json")
print(json.dumps([new_data(source, None), sorted(m for m in sys.modules if m.split(".")[0] in
      ("pandas", "numpy", "sklearn", "scipy", "polars", "matplotlib", "reportlab", "pyarrow"))]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found, heavy = json.loads(done.stdout)
    assert found and heavy == []


# --- PostgreSQL: a real server ------------------------------------------------------------------
CREATE_PG = ("CREATE TABLE clients (corporation text, lastmonth_activity bigint, lastyear_activity integer, "
             "number_of_employees numeric, exited smallint, updated_at timestamptz, notes text);")


def pg_values(rows: list[str], stamp: str) -> str:
    """conftest's CSV rows as an INSERT's VALUES list."""
    values = []
    for row in rows:
        corp, month, year, staff, exited = row.split(",")
        values.append(f"('{corp}', {month}, {year}, {staff}, {exited}, '{stamp}', 'a note')")
    return ", ".join(values)


def pg_source(server, database: str, watermark: str | None = "updated_at", table: str = "clients",
              url: str | None = None) -> DatabaseSource:
    return parse_input_database({"url": url or server.url(database), "table": table, "watermark_column": watermark},
                                Path("/"), "config.json")


@pytest.mark.slow
def test_postgres_first_read_then_inserted_then_updated_rows_are_new(pg_env, pg_database):
    server = pg_env
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(client_rows(40, seed=1), '2024-01-01 10:00Z')};",
                pg_database)
    source = pg_source(server, pg_database)
    assert new_data(source, None) == ["clients: 40 rows (not ingested from this table before)"]
    first = read_table(source, None)
    assert first.frame.height == 40 and first.frame.columns == ["corporation", "lastmonth_activity",
                                                                "lastyear_activity", "number_of_employees", "exited"]
    assert first.state.watermark_max == "2024-01-01 10:00:00+00"
    record = {"database": json.loads(json.dumps(first.record()))}
    assert new_data(source, record) == []
    server.psql(f"INSERT INTO clients VALUES {pg_values(client_rows(3, seed=2), '2024-02-01 10:00Z')};", pg_database)
    assert new_data(source, record) == ["clients: 3 rows above updated_at 2024-01-01 10:00:00+00"]
    client = client_rows(40, seed=1)[7].split(",")[0]
    server.psql(f"UPDATE clients SET lastmonth_activity = 999, updated_at = '2024-03-01Z' WHERE corporation = '{client}';",
                pg_database)
    second = read_table(source, record)
    assert second.frame.height == 43 and second.new.height == 4
    assert second.new["corporation"].to_list()[-1] == client
    assert second.new["lastmonth_activity"].to_list()[-1] == 999


@pytest.mark.slow
def test_postgres_without_watermark_the_database_checksum_notices_a_change(pg_env, pg_database):
    server = pg_env
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(client_rows(20, seed=1), '2024-01-01Z')};",
                pg_database)
    source = pg_source(server, pg_database, watermark=None)
    record = {"database": read_table(source, None).record()}
    assert new_data(source, record) == []
    server.psql("UPDATE clients SET notes = 'not ours';", pg_database)  # a column outside the contract
    assert new_data(source, record) == []
    server.psql("UPDATE clients SET exited = 1 - exited WHERE ctid = (SELECT min(ctid) FROM clients);", pg_database)
    assert new_data(source, record) == ["clients: 20 rows, changed since the last ingestion (20 rows then)"]


@pytest.mark.slow
def test_postgres_wrong_password_is_one_sentence_without_the_password(pg_env, pg_database, monkeypatch):
    source = pg_source(pg_env, pg_database)
    monkeypatch.setenv("PGPASSWORD", "Wr0ng-Pa55word")
    with pytest.raises(DatabaseError) as caught:
        new_data(source, None)
    message = str(caught.value)
    assert message == (f'Cannot read table "clients" (PostgreSQL at 127.0.0.1:{pg_env.port}, database {pg_database}): '
                       'it refused the login of user "risk" (check PGPASSWORD, ~/.pgpass or PGSERVICE).')
    assert "Wr0ng-Pa55word" not in message


@pytest.mark.slow
def test_postgres_missing_table_missing_column_missing_database(pg_env, pg_database):
    server = pg_env
    server.psql("CREATE TABLE clients (corporation text, lastmonth_activity int, lastyear_activity int, "
                "exited int, updated_at timestamptz);", pg_database)
    where = f"PostgreSQL at 127.0.0.1:{server.port}, database {pg_database}"
    with pytest.raises(DatabaseError) as caught:
        new_data(pg_source(server, pg_database, table="customers"), None)
    assert str(caught.value) == f'Cannot read table "customers" ({where}): it has no such table.'
    with pytest.raises(DatabaseError) as caught:
        read_table(pg_source(server, pg_database), None)
    assert str(caught.value) == f'Table "clients" ({where}) has no column "number_of_employees".'
    with pytest.raises(DatabaseError) as caught:
        new_data(pg_source(server, "nothere"), None)
    assert str(caught.value) == (f'Cannot read table "clients" (PostgreSQL at 127.0.0.1:{server.port}, database '
                                 'nothere): that database does not exist.')


@pytest.mark.slow
def test_postgres_server_down_is_one_sentence_naming_host_port_and_database(own_postgres_server, monkeypatch):
    server = own_postgres_server
    for key, value in server.client_env().items():
        monkeypatch.setenv(key, value)
    source = pg_source(server, "postgres")
    server.stop()
    with pytest.raises(DatabaseError) as caught:
        new_data(source, None)
    assert str(caught.value) == (f'Cannot read table "clients" (PostgreSQL at 127.0.0.1:{server.port}, database '
                                 'postgres): the server is not answering.')


@pytest.mark.slow
def test_postgres_connection_lost_before_or_during_the_read_is_one_sentence(pg_env, pg_database, monkeypatch):
    from riskcore.data.db_connection import connect

    server = pg_env
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(FIRST, '2024-01-01Z')};", pg_database)
    source = pg_source(server, pg_database)
    lost = (f'Cannot read table "clients" (PostgreSQL at 127.0.0.1:{server.port}, database {pg_database}): '
            "the connection was lost.")
    fetch = db_ingest.fetch

    def terminated_then_fetch(connection, columns, *window):  # the server ends our session between two queries
        server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'dynamic-risk-assessment';")
        return fetch(connection, columns, *window)

    monkeypatch.setattr(db_ingest, "fetch", terminated_then_fetch)
    with pytest.raises(DatabaseError) as caught:
        read_table(source, None)
    assert str(caught.value) == lost
    # Mid-stream, the driver's failure reaches us through the reader (polars, nanoarrow) in its words.
    with pytest.raises(DatabaseError) as caught, connect(source):
        raise ValueError("got external error: [libpq] Execution error [PGRES_FATAL_ERROR]: FATAL:  terminating "
                         "connection due to administrator command")
    assert str(caught.value) == lost


@pytest.mark.slow
def test_postgres_numbers_stored_as_numeric_or_text_are_checked_as_a_csv_would_be(pg_env, pg_database):
    server = pg_env
    rows = client_rows(10, seed=1)
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(rows, '2024-01-01Z')};"
                "UPDATE clients SET number_of_employees = 12.5 WHERE corporation = 'c010003';", pg_database)
    with pytest.raises(DatabaseError) as caught:
        read_table(pg_source(server, pg_database), None)
    assert ('1 row has bad values (clients "c010003"); client "c010003" has "12.5" in column "number_of_employees"'
            in str(caught.value))


@pytest.mark.slow
def test_postgres_connection_from_a_service_file_and_pgpass(pg_env, pg_database, tmp_path: Path, monkeypatch):
    """libpq's own conventions: the URL names only the service; host, port and password come from its files."""
    server = pg_env
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(client_rows(5, seed=1), '2024-01-01Z')};",
                pg_database)
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[crm]\nhost=127.0.0.1\nport={server.port}\ndbname={pg_database}\nuser=risk\n")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{server.port}:*:risk:{server.client_env()['PGPASSWORD']}\n")
    passfile.chmod(0o600)
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    source = pg_source(server, pg_database, url="postgresql:///?service=crm")
    assert source.where == f"PostgreSQL at 127.0.0.1:{server.port}, database {pg_database} (service crm)"
    assert read_table(source, None).frame.height == 5


# --- The automation on a table: the ticks, as cron runs them -------------------------------------
class Reports:
    """Stands in for the reports a run ends with (diagnostics, report, API calls): notes each decision."""

    def __init__(self) -> None:
        self.calls: list[str | None] = []

    def __call__(self, config, run) -> None:
        self.calls.append(run.decision)
        # As the real reports do: the risk list's record names the model that made it.
        current = require_deployment(config.prod_deployment_folder)
        atomic_write_json(config.output_model_folder / RISK_RECORD, {"model_version": current.model_version})


def table_project(root: Path, url: str, watermark: str | None = "updated_at", table: str = "clients"):
    """A project whose input is a table (test data of our own, as conftest.make_project writes it)."""

    write_csv(root / "test" / "testdata.csv", client_rows(60, seed=3, prefix="t", noise=0.2))
    return load_config(database_config(root, {"url": url, "table": table, "watermark_column": watermark}))


def runs(config) -> list[dict]:

    return read_history(history_path(config))


def deployed_record(config) -> dict:

    return json.loads((config.prod_deployment_folder / INGESTION_RECORD).read_text())


def deployed_version(config) -> str:

    return require_deployment(config.prod_deployment_folder).model_version


FIRST = client_rows(120, seed=1) + client_rows(100, seed=2)


def test_sqlite_table_first_deployment_then_nothing_then_keep_then_retrain(tmp_path: Path):

    db = sqlite_table(tmp_path / "crm.sqlite", as_tuples(FIRST, "2024-01-01"))
    config = table_project(tmp_path, "sqlite:///crm.sqlite")
    done = Reports()
    assert tick.tick(config, done) == 0 and done.calls == ["first deployment"]
    record = deployed_record(config)
    assert record["database"]["source"] == {"url": "sqlite:///crm.sqlite", "table": "clients",
                                            "watermark_column": "updated_at"}
    assert (record["rows_read"], record["rows_kept"]) == (220, 220)
    assert record["database"]["state"]["watermark"] == {"min": "2024-01-01", "max": "2024-01-01"}
    snapshot = tree_snapshot(tmp_path)
    assert tick.tick(config, done) == 0 and len(done.calls) == 1  # nothing new: nothing changes
    assert tree_snapshot(tmp_path) == snapshot
    version = deployed_version(config)
    sqlite_table(db, as_tuples(client_rows(80, seed=5, noise=0.0), "2024-02-01"))  # the model gets these right
    assert tick.tick(config, done) == 0 and done.calls[-1] == "keep"
    row = runs(config)[-1]
    assert row["rows_new"] == 80 and row["f1_new_data"] >= row["baseline"] and deployed_version(config) == version
    assert deployed_record(config)["database"]["state"]["watermark"]["max"] == "2024-02-01"
    sqlite_table(db, as_tuples(client_rows(200, seed=6, flip=True), "2024-03-01"))  # labels flipped: drift
    assert tick.tick(config, done) == 0 and done.calls[-1] == "retrain"
    row = runs(config)[-1]
    assert row["rows_new"] == 200 and row["f1_new_data"] < row["baseline"] and deployed_version(config) != version


def test_sqlite_table_without_watermark_checks_only_the_changed_rows(tmp_path: Path):

    db = sqlite_table(tmp_path / "crm.sqlite", as_tuples(FIRST), watermark=False)
    config = table_project(tmp_path, "sqlite:///crm.sqlite", watermark=None)
    done = Reports()
    assert tick.tick(config, done) == 0 and done.calls == ["first deployment"]
    assert tick.tick(config, done) == 0 and len(done.calls) == 1
    sqlite_table(db, as_tuples(client_rows(200, seed=6, flip=True)), watermark=False)
    assert tick.tick(config, done) == 0 and done.calls[-1] == "retrain"
    assert runs(config)[-1]["rows_new"] == 200


@pytest.mark.parametrize("watermark", [True, False])
def test_a_rollback_is_not_undone_by_the_next_tick_on_a_table(tmp_path: Path, watermark: bool):
    # The walk: after deployment.py --rollback, the next tick found the rows the release rolled back from had
    # read "above updated_at" again, retrained the same model on them and served it: the rollback was undone.
    import deployment

    def stamped(rows: list[str], day: str) -> list[tuple]:
        return as_tuples(rows, day if watermark else None)

    db = sqlite_table(tmp_path / "crm.sqlite", stamped(FIRST, "2024-01-01"), watermark=watermark)
    config = table_project(tmp_path, "sqlite:///crm.sqlite", watermark="updated_at" if watermark else None)
    done = Reports()
    assert tick.tick(config, done) == 0 and done.calls == ["first deployment"]
    first = deployed_version(config)
    sqlite_table(db, stamped(client_rows(200, seed=6, flip=True), "2024-03-01"), watermark=watermark)
    assert tick.tick(config, done) == 0 and done.calls[-1] == "retrain"
    assert deployment.run(config, action="rollback").model_version == first
    # The table's state (the look-back's hashes: megabytes for a big load) is not repeated in every journal line.
    assert "recent" not in (config.prod_deployment_folder / "control.json").read_text()
    for name in ("control.json", "control.journal"):  # rebuilt from the manifests and the history: the same
        (config.prod_deployment_folder / name).unlink()
    assert tick.tick(config, done) == 0 and done.calls[-1] == "finish reports"  # the served model's, no retrain
    assert tick.tick(config, done) == 0 and len(done.calls) == 3 and deployed_version(config) == first
    sqlite_table(db, stamped(client_rows(80, seed=5, noise=0.0), "2024-04-01"), watermark=watermark)
    assert tick.tick(config, done) == 0 and done.calls[-1] == "keep"
    assert runs(config)[-1]["rows_new"] == 80 and deployed_version(config) == first


def test_unlabelled_clients_in_a_table_are_kept_for_the_risk_list_and_the_model_stays(tmp_path: Path):

    db = sqlite_table(tmp_path / "crm.sqlite", as_tuples(FIRST, "2024-01-01"))
    config = table_project(tmp_path, "sqlite:///crm.sqlite")
    assert tick.tick(config, Reports()) == 0
    version = deployed_version(config)
    newcomers = [(*row[:4], None, "2024-02-01") for row in as_tuples(client_rows(30, seed=8, prefix="n"))]
    sqlite_table(db, newcomers)
    done = Reports()
    assert tick.tick(config, done) == 0 and done.calls == ["keep"]
    row = runs(config)[-1]
    assert row["drift_verdict"].startswith("no labels yet") and row["rows_new"] == 30
    assert deployed_version(config) == version
    final = pl.read_csv(config.final_data_file, schema_overrides={"corporation": pl.String})
    assert final.filter(pl.col("corporation").str.starts_with("n"))["exited"].null_count() == 30


def test_example_sqlite_life_cycle_first_deployment_then_the_new_market_retrains(tmp_path: Path):
    """config.database.json on the file datagen.py writes: the practice rows deploy, the source rows drift."""

    shutil.copy(ROOT / "config.database.json", tmp_path / "config.database.json")
    shutil.copytree(ROOT / "testdata", tmp_path / "testdata")
    datagen.write_sqlite(tmp_path / "db" / "clients.sqlite", "practice", ROOT)
    config = load_config(tmp_path / "config.database.json")
    done = Reports()
    assert tick.tick(config, done) == 0 and done.calls == ["first deployment"]
    assert datagen.write_sqlite(tmp_path / "db" / "clients.sqlite", "source", ROOT) == 10_150
    assert tick.tick(config, done) == 0 and done.calls[-1] == "retrain"
    row = runs(config)[-1]
    assert row["rows_new"] == 10_000 and row["f1_new_data"] < row["baseline"]


# --- The automation on a PostgreSQL table (a real server) -----------------------------------------
@pytest.mark.slow
def test_postgres_table_first_deployment_then_new_and_updated_rows_drive_the_decisions(pg_env, pg_database,
                                                                                         tmp_path: Path):

    server = pg_env
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(FIRST, '2024-01-01Z')};", pg_database)
    config = table_project(tmp_path, server.url(pg_database))
    done = Reports()
    assert tick.tick(config, done) == 0 and done.calls == ["first deployment"]
    record = deployed_record(config)["database"]
    assert record["source"]["url"] == f"postgresql://127.0.0.1:{server.port}/{pg_database}"  # no user
    assert record["state"]["watermark"]["max"] == "2024-01-01 00:00:00+00"
    assert tick.tick(config, done) == 0 and len(done.calls) == 1
    server.psql(f"INSERT INTO clients VALUES {pg_values(client_rows(80, seed=5, noise=0.0), '2024-02-01Z')};",
                pg_database)
    assert tick.tick(config, done) == 0 and done.calls[-1] == "keep"
    assert runs(config)[-1]["rows_new"] == 80
    # Rows updated in place with a newer watermark: the same clients, their labels flipped.
    server.psql("UPDATE clients SET exited = 1 - exited, updated_at = '2024-03-01Z' "
                "WHERE corporation LIKE 'c01%';", pg_database)
    assert tick.tick(config, done) == 0 and done.calls[-1] == "retrain"
    row = runs(config)[-1]
    assert row["rows_new"] == 120 and row["rows_ingested"] == 300  # still one row per client
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in files if server.client_env()["PGPASSWORD"].encode() in p.read_bytes()]


@pytest.mark.slow
def test_postgres_stopped_mid_tick_fails_the_run_changes_nothing_and_the_next_tick_retries(
        own_postgres_server, monkeypatch, tmp_path: Path):

    server = own_postgres_server
    for key, value in server.client_env().items():
        monkeypatch.setenv(key, value)
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(FIRST, '2024-01-01Z')};")
    config = table_project(tmp_path, server.url("postgres"))
    assert tick.tick(config, Reports()) == 0
    server.psql(f"INSERT INTO clients VALUES {pg_values(client_rows(200, seed=6, flip=True), '2024-02-01Z')};")
    before = {folder: tree_snapshot(folder) for folder in (config.prod_deployment_folder, config.output_folder)}
    read = db_ingest.read_table

    def stop_then_read(*args, **kwargs):  # the change check has seen the new rows; the server goes away
        server.stop()
        return read(*args, **kwargs)

    monkeypatch.setattr(db_ingest, "read_table", stop_then_read)
    done = Reports()
    assert tick.tick(config, done) == 1 and done.calls == []
    row = runs(config)[-1]
    assert row["outcome"] == "failed"
    assert row["error"] == (f'step ingestion failed: Cannot read table "clients" (PostgreSQL at 127.0.0.1:'
                            f'{server.port}, database postgres): the server is not answering.')
    assert {folder: tree_snapshot(folder) for folder in before} == before
    monkeypatch.setattr(db_ingest, "read_table", read)
    server.start()
    assert tick.tick(config, done) == 0 and done.calls == ["retrain"]


@pytest.mark.slow
def test_postgres_wrong_password_as_cron_runs_it_exits_1_and_shows_no_password(pg_env, pg_database,
                                                                                tmp_path: Path):

    server = pg_env
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(FIRST, '2024-01-01Z')};", pg_database)
    config = table_project(tmp_path, server.url(pg_database))
    assert tick.tick(config, Reports()) == 0
    server.psql(f"INSERT INTO clients VALUES {pg_values(client_rows(5, seed=5), '2024-02-01Z')};", pg_database)
    before = tree_snapshot(tmp_path)
    wrong = "Wr0ng-Pa55-4-cron"
    done = run_script("fullprocess.py", "--config", str(config.config_file), cwd=tmp_path,
                      env={**server.client_env(), "PGPASSWORD": wrong})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f'error: Cannot read table "clients" (PostgreSQL at 127.0.0.1:{server.port}, database {pg_database}): '
        'it refused the login of user "risk" (check PGPASSWORD, ~/.pgpass or PGSERVICE).')
    assert wrong not in done.stdout + done.stderr
    assert tree_snapshot(tmp_path) == before


@pytest.mark.slow
@pytest.mark.parametrize("break_it", ["missing table", "missing column"])
def test_postgres_missing_table_or_column_as_cron_runs_it_exits_1_with_one_sentence(pg_env, pg_database,
                                                                                     tmp_path: Path, break_it):

    server = pg_env
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(FIRST, '2024-01-01Z')};", pg_database)
    config = table_project(tmp_path, server.url(pg_database))
    assert tick.tick(config, Reports()) == 0
    server.psql("ALTER TABLE clients RENAME TO customers;" if break_it == "missing table"
                else "ALTER TABLE clients DROP COLUMN lastyear_activity;", pg_database)
    before = tree_snapshot(tmp_path)
    done = run_script("fullprocess.py", "--config", str(config.config_file), cwd=tmp_path, env=server.client_env())
    where = f"PostgreSQL at 127.0.0.1:{server.port}, database {pg_database}"
    expected = (f'error: Cannot read table "clients" ({where}): it has no such table.' if break_it == "missing table"
                else f'error: Table "clients" ({where}) has no column "lastyear_activity".')
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == expected
    assert tree_snapshot(tmp_path) == before


COURSE = ROOT.parent / "shared" / "reference" / "udacity"


@pytest.mark.slow
@pytest.mark.skipif(not (COURSE / "practicedata").is_dir(), reason="the course's data is not beside the project")
def test_course_decisions_from_a_postgres_table(pg_env, pg_database, tmp_path: Path):
    """The course's rows arriving in a table: deployed on practicedata, sourcedata keeps the model
    (F1 0.6923 >= 0.5714), the drift fixture's rows retrain it (F1 0.0)."""

    server = pg_env
    server.psql(CREATE_PG, pg_database)

    def arrive(files: list[Path], stamp: str) -> None:
        rows = [line for path in files for line in path.read_text().splitlines()[1:] if line.strip()]
        server.psql(f"INSERT INTO clients VALUES {pg_values(rows, stamp)};", pg_database)

    arrive(sorted((COURSE / "practicedata").glob("*.csv")), "2024-01-01Z")
    config = table_project(tmp_path, server.url(pg_database))
    write_csv(config.test_data_file, (COURSE / "testdata" / "testdata.csv").read_text().splitlines()[1:])
    done = Reports()
    assert tick.tick(config, done) == 0 and done.calls == ["first deployment"]
    arrive(sorted((COURSE / "sourcedata").glob("*.csv")), "2024-02-01Z")
    assert tick.tick(config, done) == 0 and done.calls[-1] == "keep"
    row = runs(config)[-1]
    assert (round(row["f1_new_data"], 4), round(row["baseline"], 4)) == (0.6923, 0.5714)
    arrive([COURSE / "validation_data" / "drift" / "drift.csv"], "2024-03-01Z")
    assert tick.tick(config, done) == 0 and done.calls[-1] == "retrain"
    assert round(runs(config)[-1]["f1_new_data"], 4) == 0.0


HEAVY = ("pandas", "numpy", "sklearn", "scipy", "polars", "matplotlib", "reportlab", "pyarrow")


def imported_by_a_tick(config, env: dict | None = None) -> set[str]:
    """The modules `python fullprocess.py` imports (-X importtime), run as cron runs it; it must find nothing new."""
    done = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "fullprocess.py"), "--config",
                           str(config.config_file)], cwd=config.config_file.parent, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})
    assert done.returncode == 0 and "nothing to do" in done.stderr, done.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.slow
def test_a_real_no_op_tick_on_a_sqlite_table_imports_no_data_library_and_no_postgres_driver(tmp_path: Path):
    sqlite_table(tmp_path / "crm.sqlite", as_tuples(FIRST, "2024-01-01"))
    config = deploy_pipeline(table_project(tmp_path, "sqlite:///crm.sqlite"))
    imported = imported_by_a_tick(config)
    assert {"riskcore.data.db_changes", "riskcore.data.db_connection", "sqlite3"} <= imported
    assert sorted({name.split(".")[0] for name in imported} & {*HEAVY, "adbc_driver_manager", "nanoarrow"}) == []


@pytest.mark.slow
def test_a_real_no_op_tick_on_a_postgres_table_imports_no_data_library(pg_env, pg_database, tmp_path: Path):
    server = pg_env
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(FIRST, '2024-01-01Z')};", pg_database)
    config = deploy_pipeline(table_project(tmp_path, server.url(pg_database)))
    imported = imported_by_a_tick(config, server.client_env())
    assert {"riskcore.data.db_changes", "riskcore.data.db_connection", "adbc_driver_postgresql", "nanoarrow"} <= imported
    assert sorted({name.split(".")[0] for name in imported} & set(HEAVY)) == []


# --- A client's story when the clients come from a table (riskcore.api.client_story) -------------------
def test_a_clients_page_lists_its_rows_of_the_table_dated_by_the_tables_read(tmp_path: Path):
    import app as app_module

    rows = as_tuples(FIRST + ["twice,300,3000,2,0", "twice,0,10,400,0", "gone,90,1200,30,0", "gone,3,700,30,1"])
    sqlite_table(tmp_path / "crm.sqlite", rows, watermark=False)
    config = deploy_pipeline(table_project(tmp_path, "sqlite:///crm.sqlite", watermark=None))
    client = app_module.create_app(config.config_file).test_client()
    read_at = json.loads((config.output_folder / INGESTION_RECORD).read_text())["database"]["read_at"]
    story = client.get("/risk/twice").get_json()
    assert story["status"] == "listed"
    assert [(s["source"], s["row"], s["lastmonth_activity"], s["ingested_at"], s["dated_by"])
            for s in story["snapshots"]] == [("clients", len(FIRST) + 1, 300, read_at, "ingestion record"),
                                             ("clients", len(FIRST) + 2, 0, read_at, "ingestion record")]
    gone = client.get("/risk/gone").get_json()
    assert gone["status"] == "left" and gone["left_recorded"] == {
        "source": "clients", "row": len(FIRST) + 4, "ingested_at": read_at, "dated_by": "ingestion record"}
    page = client.get("/clients/gone").get_data(as_text=True)
    assert (f"Left: recorded in table &#34;clients&#34; (row {len(FIRST) + 4:,}), ingested " in page
            and "Every row of this client in the table" in page)
    assert client.get("/clients/nobody").status_code == 404
