"""riskcore.ops.history: the one writer and the one reader of runhistory.sqlite."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import fullprocess
from conftest import ROOT
from riskcore.contract import RUN_HISTORY
from riskcore.ops.history import (
    HISTORY_COLUMNS,
    HISTORY_FORMATS,
    format_history,
    history_csv,
    history_json,
    read_history,
    record_run,
    score_history,
)
from riskcore.ops.run_record import Run


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


def test_score_history_keeps_every_drift_check_on_labelled_new_data(tmp_path: Path):
    path = tmp_path / "runhistory.sqlite"
    record_run(path, row("1", f1_new_data=0.8, outcome="done"))
    record_run(path, row("2", f1_new_data=0.1, outcome="failed"))  # the check was made; a later step failed
    record_run(path, row("3", outcome="done"))  # a run that finished reports only: no F1
    record_run(path, row("4", f1_new_data=None, drift_verdict="no labels yet", outcome="done"))
    record_run(path, row("5", f1_new_data=0.7, outcome="done"))
    assert score_history(path) == [0.8, 0.1, 0.7]


@pytest.mark.parametrize("test", ["raw", "parametric", "nonparametric"])
def test_an_f1_of_new_rows_where_nobody_left_never_enters_the_score_history(tmp_path: Path, test):
    """The course's rule scores 20 rows where nobody left F1 0 (scikit-learn's zero_division): that decides its own
    run, but it is no measurement, and the history parametric and nonparametric test against keeps none (issue 19.3)."""
    path = tmp_path / "runhistory.sqlite"
    record_run(path, row("1", f1_new_data=0.8, window_positives=30, drift_test=test, outcome="done"))
    record_run(path, row("2", f1_new_data=0.0, window_positives=0, drift_test=test, outcome="done"))
    record_run(path, row("3", f1_new_data=0.7, outcome="done"))  # recorded before windows were counted
    assert score_history(path) == [0.8, 0.7]


DRIFT = {"features": {
    "lastmonth_activity": {"psi": 1.2496, "psi_label": "drift", "ks_statistic": 0.3271, "ks_p_value": 1.8e-216,
                           "drift": True},
    "number_of_employees": {"psi": 0.05, "psi_label": "stable", "ks_statistic": 0.02, "ks_p_value": 0.5,
                            "drift": False}}, "drift": True}


def two_runs(path: Path) -> list[dict]:
    """A kept model with every column filled, and a failed run with almost none."""
    record_run(path, row("2026-01-01T00:00:00Z", run_number=1, new_files=["a.csv", "b.csv"], rows_read=230,
                         rows_ingested=220, rows_new=80, files_rejected=[{"name": "broken.csv", "reason": "bad header"}],
                         f1_new_data=0.75, f1_ingested=0.8125, baseline=0.7, drift_test="raw",
                         drift_verdict="F1 0.7500 >= 0.7000 (baseline): no model drift", data_drift=DRIFT,
                         decision="keep", version_before="v1", version_after="v1",
                         step_seconds={"ingestion": 0.5, "drift_check": 0.25}, outcome="done",
                         finished_at="2026-01-01T00:00:09Z"))
    record_run(path, row("2026-01-02T00:00:00Z", outcome="failed", error="step training failed: disk full"))
    return read_history(path)


def test_format_history_is_one_line_per_run_with_its_other_columns_indented_below(tmp_path: Path):
    rows = two_runs(tmp_path / "runhistory.sqlite")
    lines = format_history(rows, ks_alpha=0.01).splitlines()
    header, first, second = [line for line in lines if not line.startswith(" ")]
    assert header.split()[:5] == ["id", "run", "started", "new", "files"]
    assert header.split()[5:10] == ["rows", "new", "rows", "F1", "new"]
    assert first.split() == ["1", "1", "2026-01-01T00:00:00Z", "a.csv,b.csv", "220", "80", "0.7500", "0.8125", "0.7000",
                             "raw", "keep", "v1", "->", "v1", "done"]
    assert second.split()[:2] == ["2", "2026-01-02T00:00:00Z"] and " - -> - " in second
    assert second.endswith(" failed: step training failed: disk full")
    details = [" ".join(line.split()) for line in lines[lines.index(first) + 1:lines.index(second)]]
    assert details == [
        "verdict F1 0.7500 >= 0.7000 (baseline): no model drift",
        "data drift lastmonth_activity PSI 1.250 (drift), KS 0.327 (p 1.8e-216): drift by PSI and KS",
        "number_of_employees PSI 0.050 (stable), KS 0.020 (p 0.5)",
        "rejected broken.csv: bad header",
        "estimate not estimated: model v1 has no calibrator to estimate from (its held-out rows were too few to fit "
        "one)",  # the page's and the PDF's words for this check
        "seconds ingestion 0.500, drift_check 0.250 (total 0.750)",
        f"run number 1, id {rows[0]['run_id']}, finished 2026-01-01T00:00:09Z, 230 rows read",
    ]


def test_history_json_is_every_column_of_every_run_decoded(tmp_path: Path):
    rows = two_runs(tmp_path / "runhistory.sqlite")
    document = json.loads(history_json(rows))
    assert document == rows
    assert [run["id"] for run in document] == [1, 2]  # oldest first, as the table
    assert set(document[0]) == {"id", *HISTORY_COLUMNS}
    assert document[0]["data_drift"] == DRIFT and document[0]["files_rejected"][0]["name"] == "broken.csv"


def test_history_csv_has_every_column_and_nested_figures_in_columns_of_their_own(tmp_path: Path):
    rows = two_runs(tmp_path / "runhistory.sqlite")
    reader = csv.DictReader(io.StringIO(history_csv(rows)))
    first, second = list(reader)
    nested = ("data_drift", "step_seconds", "evaluation", "new_rows_quantiles", "call_effect",
              "calibration")  # objects: a column each
    plain = [c for c in ("id", *HISTORY_COLUMNS) if c not in nested]
    assert set(plain) <= set(reader.fieldnames)
    assert first["data_drift.features.lastmonth_activity.psi"] == "1.2496"
    assert first["data_drift.features.number_of_employees.ks_p_value"] == "0.5"
    assert first["step_seconds.drift_check"] == "0.25"
    assert first["new_files"] == "a.csv; b.csv" and first["files_rejected"] == "broken.csv: bad header"
    assert (second["error"], second["data_drift.features.lastmonth_activity.psi"]) == (
        "step training failed: disk full", "")
    # The data drift of a feature stands where the data_drift column stands in the history.
    names = reader.fieldnames
    assert names.index("drift_verdict") < names.index("data_drift.drift") < names.index("decision")


def test_history_csv_leaves_the_quantile_lists_to_json(tmp_path: Path):
    path = tmp_path / "runhistory.sqlite"
    quantiles = {"lastmonth_activity": [float(q) for q in range(101)], "number_of_employees": [1.0, 2.0]}
    record_run(path, row("2026-01-01T00:00:00Z", outcome="done", new_rows_quantiles=quantiles))
    rows = read_history(path)
    reader = csv.DictReader(io.StringIO(history_csv(rows)))
    [only] = list(reader)
    assert not [name for name in reader.fieldnames if name.startswith("new_rows_quantiles")]
    assert only["outcome"] == "done" and max(len(cell or "") for cell in only.values()) < 100
    assert json.loads(history_json(rows))[0]["new_rows_quantiles"] == quantiles


@pytest.mark.slow
@pytest.mark.parametrize("form", HISTORY_FORMATS)
def test_history_piped_into_head_ends_quietly(config, form):
    """`fullprocess.py --history | head -1`: the reader leaving early is no error (no "Broken pipe" sentence, no
    traceback from the interpreter's last flush), and the first line still arrives."""
    path = config.output_model_folder / RUN_HISTORY
    quantiles = {"lastmonth_activity": [float(q) for q in range(101)]}
    for day in range(1, 29):  # far more than a pipe's 64 KiB buffer holds, in every format
        for hour in range(10):
            record_run(path, row(f"2026-02-{day:02d}T{hour:02d}:00:00Z", outcome="failed", new_rows_quantiles=quantiles,
                                 error="step training failed: " + "disk full " * 20))
    command = (f'"{sys.executable}" "{ROOT / "fullprocess.py"}" --config "{config.config_file}" --history '
               f"--format {form} | head -1")
    done = subprocess.run(["sh", "-c", command], cwd=config.config_file.parent.parent, capture_output=True,
                          text=True, timeout=120, env={**os.environ})
    assert done.stdout.count("\n") == 1 and done.stdout.strip()
    assert "Broken pipe" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("form", HISTORY_FORMATS)
def test_fullprocess_prints_the_history_in_each_format(config, capsys, isolated_logging, form):
    rows = two_runs(config.output_model_folder / RUN_HISTORY)
    assert fullprocess.main(["--config", str(config.config_file), "--history", "--format", form]) == 0
    printed = capsys.readouterr().out
    table = lambda runs: format_history(runs, config.automation["ks_alpha"])  # noqa: E731
    expected = {"table": table, "json": history_json, "csv": history_csv}[form](rows)
    assert printed == expected.rstrip("\n") + "\n"


def test_history_csv_keeps_the_estimate_and_leaves_the_reliability_bins_to_json(tmp_path: Path):
    """Ten reliability bins made a 700-character cell, the kind issue 22 moved the quantiles out of the CSV for: the
    bins are in --format json, the CSV keeps their summary (ECE, Brier score, rows, bins)."""
    path = tmp_path / "runhistory.sqlite"
    bins = [{"predicted": 0.1, "observed": 0.12, "rows": 50}, {"predicted": 0.8, "observed": 0.7, "rows": 50}]
    record_run(path, {"run_id": "e", "started_at": "2026-03-01T00:00:00Z", "estimated_f1": 0.81,
                      "estimated_f1_interval": [0.77, 0.85], "estimated_drift": False,
                      "calibration": {"ece": 0.05, "brier": 0.1, "rows": 100, "reliability": bins}})
    [row] = read_history(path)
    assert row["estimated_f1_interval"] == [0.77, 0.85] and row["estimated_drift"] is False
    [cells] = list(csv.DictReader(io.StringIO(history_csv([row]))))
    assert cells["estimated_f1_interval"] == "0.77; 0.85" and cells["calibration.ece"] == "0.05"
    assert cells["calibration.rows"] == "100" and "calibration.reliability" not in cells
    assert json.loads(history_json([row]))[0]["calibration"]["reliability"] == bins


def test_the_history_table_says_the_estimate_its_realized_f1_and_the_calibration(tmp_path: Path):
    path = tmp_path / "runhistory.sqlite"
    record_run(path, {"run_id": "e", "started_at": "2026-03-01T00:00:00Z", "estimated_f1": 0.81,
                      "estimated_f1_interval": [0.77, 0.85], "estimated_rows": 3000, "window_labelled": 0,
                      "estimated_baseline": 0.86, "estimated_drift": False, "realized_f1": 0.62, "realized_rows": 2950,
                      "calibration": {"ece": 0.05, "brier": 0.1, "rows": 100}})
    lines = format_history(read_history(path), ks_alpha=0.01).splitlines()
    estimate = next(line for line in lines if line.split()[:1] == ["estimate"])
    assert ("estimated F1 0.81 [0.77, 0.85] on 3,000 unlabelled clients; own-market baseline 0.86; realized F1 0.62 "
            "on the 2,950 of the window's 3,000 clients whose labels are known") in estimate
    calibration = next(line for line in lines if line.split()[:1] == ["calibration"])
    assert calibration.split() == ["calibration", "on", "100", "labelled", "rows:", "ECE", "0.050,", "Brier", "score",
                                   "0.100"]


def test_the_history_table_says_why_a_check_has_no_estimate_as_the_page_does(tmp_path: Path):
    path = tmp_path / "runhistory.sqlite"
    record_run(path, {"run_id": "n", "started_at": "2026-03-01T00:00:00Z", "f1_new_data": 0.0, "window_rows": 11435,
                      "window_labelled": 10, "version_before": "m", "decision": "wait", "outcome": "done"})
    lines = format_history(read_history(path), ks_alpha=0.01).splitlines()
    estimate = next(line for line in lines if line.split()[:1] == ["estimate"])
    assert estimate.split(None, 1)[1] == ("not estimated: model m has no calibrator to estimate from (its held-out "
                                          "rows were too few to fit one)")
