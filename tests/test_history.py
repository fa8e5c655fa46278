"""riskcore.history: the one writer and the one reader of runhistory.sqlite."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from riskcore.history import format_history, read_history, record_run, score_history
from riskcore.runs import Run


def row(started: str, **values) -> dict:
    return Run(started_at=started, **values).as_row()


def test_a_run_recorded_twice_is_one_row_updated(tmp_path: Path):
    path = tmp_path / "models" / "runhistory.sqlite"
    run = Run(started_at="2026-01-01T00:00:00Z", new_files=["a.csv"], outcome="reporting")
    record_run(path, run.as_row())
    run.outcome, run.decision, run.data_drift, run.step_seconds = "done", "keep", {"drift": False}, {"ingestion": 0.5}
    record_run(path, run.as_row())
    [stored] = read_history(path)
    assert (stored["id"], stored["outcome"], stored["decision"]) == (1, "done", "keep")
    assert stored["new_files"] == ["a.csv"] and stored["data_drift"] == {"drift": False}
    assert stored["step_seconds"] == {"ingestion": 0.5}  # JSON columns come back decoded


def test_runs_that_start_in_the_same_second_or_on_a_clock_set_back_keep_their_own_rows(tmp_path: Path):
    path = tmp_path / "runhistory.sqlite"
    for started in ["2026-01-01T00:00:05Z"] * 6 + ["2026-01-01T00:00:01Z"]:  # six in one second, then back
        record_run(path, row(started, outcome="failed", error="step apicalls failed"))
    rows = read_history(path)
    assert len(rows) == 7 and len({r["run_id"] for r in rows}) == 7


def test_a_history_written_before_run_ids_gains_the_column(tmp_path: Path):
    path = tmp_path / "runhistory.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT, outcome TEXT)")
        db.execute("INSERT INTO runs (started_at, outcome) VALUES ('2025-01-01T00:00:00Z', 'done')")
    record_run(path, row("2026-01-01T00:00:00Z", outcome="done"))
    assert [r["outcome"] for r in read_history(path)] == ["done", "done"]


def test_runs_are_read_oldest_first(tmp_path: Path):
    path = tmp_path / "runhistory.sqlite"
    for started in ("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"):
        record_run(path, row(started))
    assert [r["started_at"] for r in read_history(path)] == ["2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"]


def test_reading_a_missing_history_creates_nothing(tmp_path: Path):
    assert read_history(tmp_path / "runhistory.sqlite") == []
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_history_is_logged_not_fatal(tmp_path: Path, caplog):
    path = tmp_path / "runhistory.sqlite"
    path.write_bytes(b"not a database at all" * 100)
    assert read_history(path) == []
    assert "cannot be read" in caplog.text


def test_a_history_of_an_older_schema_reads_with_the_missing_columns_empty(tmp_path: Path):
    path = tmp_path / "runhistory.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at TEXT, outcome TEXT)")
        connection.execute("INSERT INTO runs (started_at, outcome) VALUES ('2025-01-01T00:00:00Z', 'done')")
    [old] = read_history(path)
    assert old["outcome"] == "done" and old["data_drift"] is None and old["f1_new_data"] is None


def test_score_history_keeps_the_f1_of_finished_runs_only(tmp_path: Path):
    path = tmp_path / "runhistory.sqlite"
    record_run(path, row("1", f1_new_data=0.8, outcome="done"))
    record_run(path, row("2", f1_new_data=0.1, outcome="failed"))
    record_run(path, row("3", outcome="done"))  # a run that finished reports only: no F1
    record_run(path, row("4", f1_new_data=0.7, outcome="done"))
    assert score_history(path) == [0.8, 0.7]


def test_format_history_is_one_line_per_run_under_a_header(tmp_path: Path):
    path = tmp_path / "runhistory.sqlite"
    record_run(path, row("2026-01-01T00:00:00Z", new_files=["a.csv", "b.csv"], rows_ingested=220, f1_new_data=0.75,
                         baseline=0.7, drift_test="raw", decision="keep", version_before="v1", version_after="v1",
                         outcome="done"))
    record_run(path, row("2026-01-02T00:00:00Z", outcome="failed", error="step training failed: disk full"))
    header, first, second = format_history(read_history(path)).splitlines()
    assert header.split()[:4] == ["id", "started", "new", "files"]
    assert first.split() == ["1", "2026-01-01T00:00:00Z", "a.csv,b.csv", "220", "0.7500", "0.7000", "raw", "keep",
                             "v1", "->", "v1", "done"]
    assert second.split()[:2] == ["2", "2026-01-02T00:00:00Z"] and " - -> - " in second
    assert second.endswith(" failed: step training failed: disk full")
