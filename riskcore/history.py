"""The automation's run history (runhistory.sqlite): one writer and one reader for every use."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HISTORY_COLUMNS = {
    "run_id": "TEXT", "started_at": "TEXT", "finished_at": "TEXT", "run_number": "INTEGER", "new_files": "TEXT",
    "rows_read": "INTEGER", "rows_ingested": "INTEGER", "files_rejected": "TEXT",
    "f1_new_data": "REAL", "baseline": "REAL", "drift_test": "TEXT", "drift_verdict": "TEXT",
    "data_drift": "TEXT", "decision": "TEXT", "version_before": "TEXT", "version_after": "TEXT",
    "step_seconds": "TEXT", "outcome": "TEXT", "error": "TEXT", "note": "TEXT",
}
JSON_COLUMNS = ("new_files", "files_rejected", "data_drift", "step_seconds")


def _open_for_writing(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=10)
    columns = ", ".join(f"{name} {kind}" for name, kind in HISTORY_COLUMNS.items())
    connection.execute(f"CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, {columns})")
    present = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
    for name, kind in HISTORY_COLUMNS.items():  # a history written by an earlier version gains the new columns
        if name not in present:
            connection.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    return connection


def record_run(path: Path, row: dict[str, Any]) -> None:
    """Write a run into the history: a new row, or an update of the row of the same run (same run_id).

    The run id is random, so two runs never share a row, however close together they start or
    whatever the clock does.
    """
    values = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()
              if k in HISTORY_COLUMNS}
    with contextlib.closing(_open_for_writing(path)) as connection, connection:
        found = connection.execute("SELECT id FROM runs WHERE run_id = ?", (values["run_id"],)).fetchone()
        if found:
            assignments = ", ".join(f"{name} = ?" for name in values)
            connection.execute(f"UPDATE runs SET {assignments} WHERE id = ?", [*values.values(), found[0]])
        else:
            names, marks = ", ".join(values), ", ".join("?" for _ in values)
            connection.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", list(values.values()))


def read_history(path: Path) -> list[dict[str, Any]]:
    """Every recorded run, oldest first, its JSON columns decoded; [] when there is no history yet.

    Opened read-only: reading never creates the file, and an unreadable history is logged, not fatal.
    """
    if not path.is_file():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)) as connection:
            connection.row_factory = sqlite3.Row
            present = {row["name"] for row in connection.execute("PRAGMA table_info(runs)")}
            if "started_at" not in present:
                return []
            columns = ", ".join(c if c in present else f"NULL AS {c}" for c in ("id", *HISTORY_COLUMNS))
            rows = [dict(row) for row in connection.execute(f"SELECT {columns} FROM runs ORDER BY id")]  # noqa: S608
    except sqlite3.Error as exc:
        log.warning("run history %s cannot be read (%s)", path, exc)
        return []
    for row in rows:
        for column in JSON_COLUMNS:
            if isinstance(row[column], str):
                with contextlib.suppress(ValueError):
                    row[column] = json.loads(row[column])
    return rows


def score_history(path: Path) -> list[float]:
    """F1 on new data of earlier successful runs: the history the statistical tests use."""
    return [row["f1_new_data"] for row in read_history(path)
            if row["f1_new_data"] is not None and row["outcome"] == "done"]


def format_history(rows: list[dict[str, Any]]) -> str:
    """The run history as a plain-text table."""
    headers = ("id", "started", "new files", "rows", "F1 new", "baseline", "test", "decision",
               "model before -> after", "outcome")
    lines = [headers]
    for row in rows:
        f1 = "" if row["f1_new_data"] is None else f"{row['f1_new_data']:.4f}"
        base = "" if row["baseline"] is None else f"{row['baseline']:.4f}"
        files = ",".join(row["new_files"] or [])
        versions = f"{row['version_before'] or '-'} -> {row['version_after'] or '-'}"
        outcome = (row["outcome"] or "") + (f": {row['error']}" if row["error"] else "")
        lines.append((str(row["id"]), row["started_at"], files[:40], str(row["rows_ingested"] or ""), f1, base,
                      row["drift_test"] or "", row["decision"] or "", versions, outcome))
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)
