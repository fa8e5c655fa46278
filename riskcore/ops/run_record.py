"""One automation run as a record: what it found and did, its timed steps, and the pending mark.

The pending mark (a small JSON file beside the models) lets the next tick finish a run that was
killed mid-way: it keeps the run's number and, once the run has decided, its decision and reasons.
Standard library only: a tick with nothing new reads the pending mark too.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from riskcore.config import Config
from riskcore.contract import RUN_HISTORY, DataError, UserError
from riskcore.faults import checkpoint
from riskcore.files import atomic_write_json, read_json
from riskcore.ops.deadline import within_deadline
from riskcore.ops.history import read_history

# The automation logs under the name of the command users run, as its cron log always has.
AUTOMATION_LOGGER = "fullprocess"
log = logging.getLogger(AUTOMATION_LOGGER)

PENDING_FILE = ".fullprocess-pending.json"


def new_run_id() -> str:
    """A run's id: random, so it cannot collide with another run's, whatever the clock says."""
    return uuid.uuid4().hex


@dataclass
class Run:
    """What one run found, decided and did; becomes a row of the history."""

    run_id: str = field(default_factory=new_run_id)
    started_at: str | None = None
    run_number: int | None = None
    new_files: list[str] = field(default_factory=list)
    rows_read: int | None = None
    rows_ingested: int | None = None
    rows_new: int | None = None  # one row per client of the rows new in this run (new files, new rows of changed ones)
    window_rows: int | None = None  # the rows the drift check took: the evidence window, this run's new rows added
    window_clients: int | None = None  # its clients, each once: the estimate takes each one's latest snapshot
    window_labelled: int | None = None  # its labelled clients: each one's latest labelled snapshot, what F1 takes
    window_positives: int | None = None  # clients who left among the window's labelled rows
    files_rejected: list[dict[str, str]] = field(default_factory=list)
    f1_new_data: float | None = None  # on the labelled new rows
    f1_ingested: float | None = None  # on every labelled row ingested, for comparison
    baseline: float | None = None  # the served model's own-market F1 (significance) or latestscore.txt (the course)
    baseline_source: str | None = None
    drift_p_value: float | None = None
    drift_test: str | None = None
    drift_verdict: str | None = None
    # The drift check found model drift, whatever was done about it (a retrain; a wait for a holdout big enough to
    # judge one; a pinned release kept); None when it could not tell (too few labelled rows, no labels).
    model_drift: bool | None = None
    data_drift: dict[str, Any] | None = None
    new_rows_quantiles: dict[str, list[float]] | None = None  # the new rows per feature, for the report's chart
    decision: str | None = None
    version_before: str | None = None
    version_after: str | None = None
    step_seconds: dict[str, float] = field(default_factory=dict)
    outcome: str = "running"
    error: str | None = None
    finished_at: str | None = None
    evaluation: dict[str, Any] | None = None  # a retrain's old and new model on the same data (riskcore.model.holdout)
    window_called: int | None = None  # rows of clients who were called, left out of the drift check's window
    call_effect: dict[str, Any] | None = None  # does calling help, measured after the reports
    estimated_f1: float | None = None  # the window's F1 estimated from calibrated probabilities, labels or not
    estimated_f1_interval: list[float] | None = None  # its 95% interval over the window's rows
    estimated_precision: float | None = None
    estimated_recall: float | None = None
    estimated_roc_auc: float | None = None
    estimated_rows: int | None = None  # one per client: each client's latest snapshot in the window
    estimated_positives: float | None = None  # the clients the window is expected to lose (its probabilities' sum)
    estimated_baseline: float | None = None  # the served model's own-market baseline F1 it is compared with
    estimated_drift: bool | None = None  # the warning: an estimated drop (never retrains by itself)
    realized_f1: float | None = None  # the served model's F1 on the window's clients whose labels are known
    realized_rows: int | None = None
    calibration: dict[str, Any] | None = None  # a labelled window's ECE and Brier score (and reliability bins)

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


# The reports a run ends with (diagnostics, report, API calls), given the config and the run.
Reports = Callable[[Config, Run], None]


class StepFailed(Exception):
    """A step of the run failed; the message says which and why."""


@contextlib.contextmanager
def step(run: Run, name: str) -> Iterator[None]:
    """Time a step, log it, and turn a user-caused failure into StepFailed naming the step."""
    checkpoint(f"before-{name}")
    start = time.perf_counter()
    try:
        with within_deadline(name):
            yield
    except UserError as exc:
        raise StepFailed(f"step {name} failed: {exc}") from exc
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise StepFailed(f"step {name} failed: {exc.strerror or exc}{where}") from exc
    finally:
        run.step_seconds[name] = round(time.perf_counter() - start, 3)
    log.info("step %s done in %.3f s", name, run.step_seconds[name])
    checkpoint(f"after-{name}")


def history_path(config: Config) -> Path:
    return config.output_model_folder / RUN_HISTORY


# --- The pending mark --------------------------------------------------------------------------
# What the mark keeps of a run: once it has decided, enough for the tick that finishes an
# interrupted run to record it as itself (its decision, the model it replaced, its F1 and verdict).
PENDING_FIELDS = ("run_id", "started_at", "run_number", "new_files", "rows_read", "rows_ingested", "files_rejected",
                  "rows_new", "window_rows", "window_clients", "window_labelled", "window_positives", "window_called",
                  "baseline_source", "drift_p_value", "f1_new_data", "f1_ingested", "baseline", "drift_test",
                  "drift_verdict", "model_drift", "data_drift", "new_rows_quantiles", "decision", "version_before",
                  "evaluation", "estimated_f1", "estimated_f1_interval", "estimated_precision", "estimated_recall",
                  "estimated_roc_auc", "estimated_rows", "estimated_positives", "estimated_baseline", "estimated_drift",
                  "realized_f1", "realized_rows", "calibration")


def write_pending(config: Config, run: Run) -> None:
    """Remember the run in progress (and its decision, once made), so a run killed mid-way is finished later."""
    row = run.as_row()
    atomic_write_json(config.output_model_folder / PENDING_FILE, {k: row[k] for k in PENDING_FIELDS})


def read_pending(config: Config) -> dict[str, Any] | None:
    """The pending mark, None when there is none; an unreadable mark still counts as a run to finish."""
    try:
        return read_json(config.output_model_folder / PENDING_FILE, "Pending mark", missing=None)
    except DataError:
        return {"run_number": None}


def clear_pending(config: Config) -> None:
    with contextlib.suppress(FileNotFoundError):
        (config.output_model_folder / PENDING_FILE).unlink()


def resumed_run(pending: dict[str, Any], run_number: int) -> Run | None:
    """The interrupted run as it stood when it was killed, if it had decided; None if it had not."""
    saved = {k: pending[k] for k in PENDING_FIELDS if pending.get(k) is not None}
    if not saved.get("decision") or not saved.get("started_at"):
        return None
    return Run(**{**saved, "run_number": run_number})


def recorded_run(config: Config, pending: dict[str, Any]) -> dict[str, Any] | None:
    """The pending run's row when it is already in the history (killed after recording it, before clearing it)."""
    run_id = pending.get("run_id")
    if not run_id:
        return None
    return next((row for row in read_history(history_path(config)) if row["run_id"] == run_id and row["finished_at"]),
                None)
