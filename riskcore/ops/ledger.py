"""The ledger: what the served model predicted for each client of an estimated window, settled when labels arrive.

Each drift check keeps, beside the run history (in estimateledger.sqlite, table `estimated_clients`),
every client of the window it estimated: the run's id, the client, the served model's class prediction
and calibrated probability, and the client's label when it was known then. When a later run brings
labelled rows of those clients (a later labelled snapshot), their labels are filled in and the
estimated run's `realized_f1` and `realized_rows` in the history are updated: the F1 of the
predictions made then, by the model served then, on the clients whose outcome is now known. A label
once filled stays: the first labelled snapshot after the estimate settles it.

This is how a change in who leaves for the same features, invisible to any estimate without labels,
is caught: late, but recorded beside the estimate that missed it.
Standard library only, like the history.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path

TABLE = "estimated_clients"


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=10)
    connection.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (run_id TEXT NOT NULL, client TEXT NOT NULL, "
                       "prediction INTEGER NOT NULL, probability REAL, label INTEGER)")
    connection.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_client ON {TABLE} (client) WHERE label IS NULL")
    connection.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_run ON {TABLE} (run_id)")
    return connection


def f1_of_pairs(pairs: Iterable[tuple[int, int]]) -> tuple[float | None, int]:
    """F1 of (prediction, label) pairs and how many; None without a client who left (undefined, not 0)."""
    tp = fp = fn = rows = 0
    for prediction, label in pairs:
        rows += 1
        tp += prediction == 1 and label == 1
        fp += prediction == 1 and label == 0
        fn += prediction == 0 and label == 1
    return (2 * tp / (2 * tp + fp + fn) if tp + fn else None), rows


def _realized(connection: sqlite3.Connection, run_id: str) -> tuple[float | None, int]:
    query = f"SELECT prediction, label FROM {TABLE} WHERE run_id = ? AND label IS NOT NULL"  # noqa: S608
    return f1_of_pairs(connection.execute(query, (run_id,)))


def record_window(path: Path, run_id: str, clients: list[str], predictions: list[int],
                  probabilities: list[float], labels: list[int | None]) -> tuple[float | None, int]:
    """Keep a window's clients under its run; return its realized F1 and rows so far (its labelled clients)."""
    with contextlib.closing(_open(path)) as connection, connection:
        connection.execute(f"DELETE FROM {TABLE} WHERE run_id = ?", (run_id,))  # noqa: S608 - a resumed run
        connection.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?)",  # noqa: S608
                               zip([run_id] * len(clients), clients, predictions, probabilities, labels, strict=True))
        return _realized(connection, run_id)


def settle(path: Path, labels: dict[str, int],
           exclude_run: str | None = None) -> dict[str, tuple[float | None, int, int]]:
    """Fill in the labels that arrived for clients of earlier windows; each run settled -> (realized F1, rows,
    the clients whose label arrived now: a window settles over several runs as its labels come).

    riskcore.ops.history.record_realized writes them into those runs' rows of the history.
    """
    if not labels or not path.is_file():
        return {}
    with contextlib.closing(_open(path)) as connection, connection:
        connection.execute("CREATE TEMP TABLE arrived (client TEXT PRIMARY KEY, label INTEGER)")
        connection.executemany("INSERT OR REPLACE INTO arrived VALUES (?, ?)", labels.items())
        runs = dict(connection.execute(
            f"SELECT e.run_id, COUNT(*) FROM {TABLE} e JOIN arrived a ON a.client = e.client "  # noqa: S608
            "WHERE e.label IS NULL AND e.run_id IS NOT ? GROUP BY e.run_id", (exclude_run,)))
        connection.execute(f"UPDATE {TABLE} SET label = (SELECT label FROM arrived WHERE arrived.client = "  # noqa: S608
                           f"{TABLE}.client) WHERE label IS NULL AND run_id IS NOT ? AND client IN "
                           "(SELECT client FROM arrived)", (exclude_run,))
        return {run_id: (*_realized(connection, run_id), now) for run_id, now in runs.items()}
