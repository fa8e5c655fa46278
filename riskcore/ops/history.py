"""The automation's run history (runhistory.sqlite): one writer and one reader for every use, and its words.

Its words: the history as a table, JSON or CSV (fullprocess.py --history --format), and the one
wording of a retrain's evaluation, for the log and the table; a drift check's PSI and KS are worded
by riskcore.model.drift_evidence, as the page and the PDF word them.
Standard library only: `--history` and a tick with nothing new stay cheap.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from riskcore.contract import FEW_ROWS, TEST_DATA
from riskcore.formatting import BELOW_CHANCE, below_chance, interval, score
from riskcore.model.drift_evidence import called_text, feature_drift_text, is_drift_check
from riskcore.model.estimate_words import calibration_text, estimate_text, no_estimate_text, realized_text

log = logging.getLogger(__name__)

HISTORY_COLUMNS = {
    "run_id": "TEXT", "started_at": "TEXT", "finished_at": "TEXT", "run_number": "INTEGER", "new_files": "TEXT",
    "rows_read": "INTEGER", "rows_ingested": "INTEGER", "rows_new": "INTEGER", "files_rejected": "TEXT",
    "f1_new_data": "REAL", "f1_ingested": "REAL", "baseline": "REAL", "drift_test": "TEXT", "drift_verdict": "TEXT",
    "data_drift": "TEXT", "decision": "TEXT", "version_before": "TEXT", "version_after": "TEXT",
    "step_seconds": "TEXT", "outcome": "TEXT", "error": "TEXT", "note": "TEXT",
    "evaluation": "TEXT",  # a retrain's old and new model: holdout and test data (riskcore.model.holdout)
    "new_rows_quantiles": "TEXT",  # per feature, the drift check's new rows in quantiles: what the report draws
    "window_rows": "INTEGER", "window_labelled": "INTEGER", "window_positives": "INTEGER",  # the evidence window
    "window_clients": "INTEGER",  # the window's clients, each once (its rows may hold several snapshots of one)
    "baseline_source": "TEXT", "drift_p_value": "REAL",  # where the baseline was measured; the test's p-value
    "window_called": "INTEGER",  # clients who were called, left out of the drift check's window (riskcore.ops.calls)
    "call_effect": "TEXT",  # does calling help: the measurement after the run's reports (riskcore.report.call_effect)
    # The window's performance estimated from calibrated probabilities (riskcore.model.calibration), labels or not
    "estimated_f1": "REAL", "estimated_f1_interval": "TEXT", "estimated_precision": "REAL",
    "estimated_recall": "REAL", "estimated_roc_auc": "REAL", "estimated_rows": "INTEGER",
    "estimated_positives": "REAL",  # the clients the window is expected to lose: fewer than min_positives, no warning
    "estimated_baseline": "REAL", "estimated_drift": "INTEGER",  # the own-market baseline; the warning
    "realized_f1": "REAL", "realized_rows": "INTEGER",  # the ledger (riskcore.ops.ledger): F1 once labels arrive
    "calibration": "TEXT",  # a labelled window's ECE, Brier score and reliability bins
    "model_drift": "INTEGER",  # the check found model drift, whatever was done about it (None: it could not tell)
}
JSON_COLUMNS = ("new_files", "files_rejected", "data_drift", "step_seconds", "evaluation", "new_rows_quantiles",
                "call_effect", "estimated_f1_interval", "calibration")
# Hundreds of numbers per feature: they belong in JSON (--format json, GET /history?quantiles=1), not in a CSV
# cell or a table a person reads.
QUANTILE_COLUMNS = ("new_rows_quantiles",)
# JSON objects: the CSV gives each of their figures a column (the others, lists and plain values, one cell)
OBJECT_COLUMNS = ("data_drift", "step_seconds", "evaluation", "new_rows_quantiles", "call_effect", "calibration")
BOOLEAN_COLUMNS = ("estimated_drift", "model_drift")
# The decisions of deployment.py's rows (an operator's action recorded as a run of its own), not the automation's
OPERATOR_DECISIONS = ("rollback", "roll-forward", "pin", "unpin")


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


def record_realized(path: Path, settled: dict[str, tuple[float | None, int, int]]) -> dict[str, int | None]:
    """Write the ledger's realized F1 and rows (riskcore.ops.ledger.settle) into the estimated runs' rows; return
    each settled run's number, the name the log, the page and the PDF give a run (None: the run is not recorded)."""
    if not settled:
        return {}
    with contextlib.closing(_open_for_writing(path)) as connection, connection:
        connection.executemany("UPDATE runs SET realized_f1 = ?, realized_rows = ? WHERE run_id = ?",
                               [(f1, rows, run_id) for run_id, (f1, rows, _) in settled.items()])
        numbers = dict(connection.execute(
            f"SELECT run_id, run_number FROM runs WHERE run_id IN ({', '.join('?' * len(settled))})",  # noqa: S608
            list(settled)))
    return {run_id: numbers.get(run_id) for run_id in settled}


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
        for column in BOOLEAN_COLUMNS:
            if row[column] is not None:
                row[column] = bool(row[column])
    return rows


def highest_run_number(path: Path) -> int:
    """The highest run number the history has ever recorded; 0 when it has none."""
    return max((row["run_number"] for row in read_history(path) if isinstance(row["run_number"], int)), default=0)


def score_history(path: Path) -> list[float]:
    """F1 of every earlier drift check on labelled new data, whatever failed after it in its run.

    The history the statistical tests use: a check made is a check counted (issue 11); but not an F1 of rows
    where nobody left (the course's rule scores those 0: no measurement of the model, issue 19).
    """
    return [row["f1_new_data"] for row in read_history(path)
            if row["f1_new_data"] is not None and row.get("window_positives") != 0]


# --- The history as text, JSON and CSV (fullprocess.py --history --format) -----------------------
HISTORY_FORMATS = ("table", "json", "csv")


def figure_text(scores: dict[str, Any]) -> str:
    """ "F1 0.6900 [0.61, 0.76], AUC 0.812 [0.75, 0.87]" (bootstrap 95% intervals); an AUC below 0.5 says so."""
    auc = scores.get("auc")
    text = f"F1 {scores['f1']:.4f}{interval(scores.get('f1_interval'))}, " + (
        f"AUC {auc:.3f}{interval(scores.get('auc_interval'))}" if auc is not None else "AUC undefined (one class)")
    if below_chance(auc):
        text += f" (AUC {BELOW_CHANCE})"
    return text


def rows_text(scores: dict[str, Any]) -> str:
    rows = scores["rows"]
    return f"{rows:,} rows" + (f", fewer than {FEW_ROWS}" if rows < FEW_ROWS else "")


def describe_evaluation(evaluation: dict[str, Any]) -> str:
    """The evaluation in one log line: each data set, the old and the new model's figures."""
    parts = []
    for key, name in (("holdout", "the held-out new rows"), ("test_data", TEST_DATA)):
        figures = evaluation.get(key)
        if figures:
            parts.append(f"on {name} ({rows_text(figures['old'])}): old model {figure_text(figures['old'])}; "
                         f"new model {figure_text(figures['new'])}")
    if evaluation.get("holdout") is None:
        parts.append(f"no holdout ({no_holdout_reason(evaluation)})")
    return " | ".join(parts)


def no_holdout_reason(evaluation: dict[str, Any]) -> str:
    """Why a retrain held no row out: none was asked for (the course's rule), or too few labelled new rows."""
    if evaluation.get("holdout_share") == 0:
        return "automation.holdout_share is 0: the new model learnt from every ingested row, as the course's rule does"
    return "fewer than two labelled new rows"


def worse_on_holdout(evaluation: dict[str, Any]) -> str:
    """The sentence a flagged retrain is logged and reported with."""
    held = evaluation["holdout"]
    outcome = {True: "; deployed all the same (automation.promotion_gate is off)",
               False: "; the old model was kept (automation.promotion_gate)"}.get(evaluation.get("promoted"), "")
    return (f"the new model {evaluation['new_model']} does worse than the old model {evaluation['old_model']} on the "
            f"held-out new rows: F1 {held['new']['f1']:.4f} < {held['old']['f1']:.4f}{outcome}")


def _detail_lines(row: dict[str, Any], ks_alpha: float) -> list[tuple[str, str]]:
    """The columns of a run that do not fit its table line, as (label, text) lines."""
    lines = []
    if row.get("drift_verdict"):
        lines.append(("verdict", row["drift_verdict"]))
    features = (row.get("data_drift") or {}).get("features") or {}
    name_width = max(map(len, features), default=0)
    for number, (name, figures) in enumerate(features.items()):
        text = feature_drift_text(name.ljust(name_width), figures, ks_alpha)
        lines.append(("data drift" if number == 0 else "", text))
    for number, rejected in enumerate(row.get("files_rejected") or []):
        text = f"{rejected.get('name')}: {rejected.get('reason')}" if isinstance(rejected, dict) else str(rejected)
        lines.append(("rejected" if number == 0 else "", text))
    evaluation = row.get("evaluation") or {}
    for key, name in (("holdout", "holdout"), ("test_data", "test data")):
        figures = evaluation.get(key)
        if figures:
            lines.append((name, f"{rows_text(figures['old'])}: old model {figure_text(figures['old'])}; "
                                f"new model {figure_text(figures['new'])}"))
    if evaluation.get("new_worse"):
        lines.append(("flag", worse_on_holdout(evaluation)))
    estimate = estimate_text(row)  # the window without labels, and what its labels said once they arrived
    if estimate:
        lines.append(("estimate", "; ".join(filter(None, (estimate, realized_text(row))))))
    elif is_drift_check(row) and no_estimate_text(row):  # the page's and the PDF's words for the same check
        lines.append(("estimate", no_estimate_text(row)))
    calibration = calibration_text(row.get("calibration"))
    if calibration:
        lines.append(("calibration", calibration.removeprefix("calibration ")))
    called = called_text(row)
    if called:
        lines.append(("called", called))
    if isinstance(row.get("call_effect"), dict) and row["call_effect"].get("sentence"):
        lines.append(("calls", row["call_effect"]["sentence"]))
    steps = row.get("step_seconds") or {}
    if steps:
        total = sum(s for s in steps.values() if isinstance(s, (int, float)))
        lines.append(("seconds", ", ".join(f"{name} {seconds:.3f}" for name, seconds in steps.items())
                      + f" (total {total:.3f})"))
    known = ("run_number", "run_id", "finished_at", "rows_read", "note")
    if any(row.get(column) is not None for column in known):
        parts = [f"number {row['run_number']}" if row.get("run_number") is not None else None,
                 f"id {row['run_id']}" if row.get("run_id") else None,
                 f"finished {row['finished_at']}" if row.get("finished_at") else None,
                 f"{row['rows_read']} rows read" if row.get("rows_read") is not None else None,
                 f"note: {row['note']}" if row.get("note") else None]
        lines.append(("run", ", ".join(p for p in parts if p)))
    return lines


def format_history(rows: list[dict[str, Any]], ks_alpha: float) -> str:
    """The run history as a plain-text table, oldest run first: one line per run, its other columns indented below.

    A drifted feature's line names the tests that found it; `ks_alpha` is automation.ks_alpha.

    "F1 new" is the deployed model's F1 on the labelled new rows (what the drift check decides on),
    "F1 all" on every labelled row ingested. "run" is the run number the log, the reports and the PDF name a run
    by (`run_number`); "id" is the history's own row, which a rollback or a pin also takes.
    """
    headers = ("id", "run", "started", "new files", "rows", "new rows", "F1 new", "F1 all", "baseline", "test",
               "decision", "model before -> after", "outcome")
    lines = [headers]
    for row in rows:
        files = ",".join(row["new_files"] or [])
        versions = f"{row['version_before'] or '-'} -> {row['version_after'] or '-'}"
        outcome = (row["outcome"] or "") + (f": {row['error']}" if row["error"] else "")
        counts = ["" if row.get(c) is None else str(row[c]) for c in ("rows_ingested", "rows_new")]
        f1s = [score(row.get(c), missing="") for c in ("f1_new_data", "f1_ingested", "baseline")]
        number = "" if row.get("run_number") is None else str(row["run_number"])
        lines.append((str(row["id"]), number, row["started_at"] or "", files[:40], *counts, *f1s,
                      row["drift_test"] or "", row["decision"] or "", versions, outcome))
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    label_width = max((len(label) for row in rows for label, _ in _detail_lines(row, ks_alpha)), default=0)
    text = ["  ".join(cell.ljust(w) for cell, w in zip(headers, widths, strict=True)).rstrip()]
    for row, line in zip(rows, lines[1:], strict=True):
        text.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        text.extend(f"    {label.ljust(label_width)}  {detail}".rstrip()
                    for label, detail in _detail_lines(row, ks_alpha))
    return "\n".join(text)


def history_json(rows: list[dict[str, Any]]) -> str:
    """The run history as a JSON array, oldest run first, every column with its JSON columns decoded."""
    return json.dumps(rows, indent=2, allow_nan=False)


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    """A nested value as flat CSV cells: objects by dotted name, lists of names joined, lists of figures left to the
    JSON (--format json), anything else as it is."""
    if isinstance(value, dict):
        cells: dict[str, Any] = {}
        for key, inner in value.items():
            cells.update(_flat(f"{prefix}.{key}", inner))
        return cells
    if isinstance(value, list):
        if any(isinstance(item, dict) and "name" not in item for item in value):
            return {}  # a list of figures (reliability bins: a 700-character cell) belongs in JSON, as the quantiles
        return {prefix: "; ".join(f"{item.get('name')}: {item.get('reason')}" if isinstance(item, dict)
                                  else str(item) for item in value)}
    return {prefix: value}


def history_csv(rows: list[dict[str, Any]]) -> str:
    """The run history as CSV, oldest run first: every column but the lists of figures (the quantiles,
    QUANTILE_COLUMNS, and the reliability bins), nested figures in columns of their own
    (data_drift.features.lastmonth_activity.psi, step_seconds.training, ...)."""
    flat = []
    for row in rows:
        cells: dict[str, Any] = {}
        for column, value in row.items():
            if column in QUANTILE_COLUMNS:
                continue
            if isinstance(value, (dict, list)):
                cells.update(_flat(column, value))
            elif value is not None or column not in OBJECT_COLUMNS:
                cells[column] = value
        flat.append(cells)
    found = list(dict.fromkeys(name for cells in flat for name in cells))
    columns = []
    kept = [column for column in ("id", *HISTORY_COLUMNS) if column not in QUANTILE_COLUMNS]
    for column in kept:  # a JSON column's cells stand where the column stands
        columns += [name for name in found if name == column or name.startswith(f"{column}.")] \
            if column in JSON_COLUMNS else [column]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue()


def render_history(rows: list[dict[str, Any]], form: str, ks_alpha: float) -> str:
    """The run history in one of HISTORY_FORMATS (`ks_alpha` as format_history takes it)."""
    if form == "json":
        return history_json(rows)
    if form == "csv":
        return history_csv(rows).rstrip("\n")
    return format_history(rows, ks_alpha)
