"""The cron tick: is there anything to do? If so, run the work (riskcore.ops.run) with its own log file.

A tick has something to do when the input folder holds a CSV the deployed ingestion record lacks
(by name and sha256), or when an earlier run left a pending mark (it was killed before it
finished). Everything up to that answer uses the standard library only: a tick with nothing new
never imports pandas, numpy, scikit-learn, scipy, polars, matplotlib or reportlab (tests/test_fullprocess.py
runs one and checks).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from riskcore.config import Config
from riskcore.contract import EXIT_OK, RISK_RECORD, SUMMARY_REPORT, DataError
from riskcore.files import numbered_name, read_json
from riskcore.formatting import when
from riskcore.ops.alerts import new_tick, note_run, tick_finished
from riskcore.ops.history import read_history
from riskcore.ops.new_data import detect_new_data, detect_removed
from riskcore.ops.run_record import (
    AUTOMATION_LOGGER,
    Reports,
    clear_pending,
    history_path,
    read_pending,
    recorded_run,
)
from riskcore.release.load import Deployment, current_deployment, release_names
from riskcore.release.operator_state import claim

log = logging.getLogger(AUTOMATION_LOGGER)

LOG_FILE = "fullprocess.log"
LOG_MAX_BYTES = 1_000_000
LOG_BACKUPS = 5


@contextlib.contextmanager
def file_logging(config: Config) -> Iterator[None]:
    """While a run works, also log to a size-rotated file beside the models."""
    from logging.handlers import RotatingFileHandler  # 6 ms (socket, pickle) a tick with nothing to do skips

    config.output_model_folder.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(config.output_model_folder / LOG_FILE, maxBytes=LOG_MAX_BYTES,
                                  backupCount=LOG_BACKUPS, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def unfinished_run(config: Config) -> dict | None:
    """The pending mark of a run that has still to be finished, or None."""
    pending = read_pending(config)
    recorded = recorded_run(config, pending) if pending is not None else None
    if recorded is not None:
        # That run finished and is in the history; only its mark was left, and maybe its alerts, if it was killed
        # before sending them: sent now (note_run sends each run's alert once, whoever asks).
        note_run(config, recorded)
        clear_pending(config)
        return None
    return pending


def check_production(config: Config, take_over: bool = False, record: bool = True) -> Deployment | None:
    """The deployment this setup may work on: its folder is this setup's, and `current` is in place."""
    prod = config.prod_deployment_folder
    claim(config, take_over=take_over, record=record)
    current = current_deployment(prod)
    if current is None and release_names(prod):
        raise DataError(f"{prod} holds releases but no `current` link naming the one to serve; nothing was done "
                        "(python deployment.py --repair serves the newest intact release again).")
    return current


def tick(config: Config, reports: Reports, take_over: bool = False, allow_removed: bool = False) -> int:
    """One cron tick: decide, and act when there is something to do."""
    new_tick()
    try:
        current = check_production(config, take_over)
        new_files = detect_new_data(config, current)
        # Files gone from the input folder are work only when the operator drops them on purpose.
        removed = detect_removed(config, current) if allow_removed else []
        pending = unfinished_run(config)
        stale = None if new_files or removed or pending else stale_outputs(config, current)
    except Exception:
        # A tick that fails before any work (the database down or locked, the production folder broken) is a
        # failed tick too: every tick failing so is what the silence alert is for.
        tick_finished(config, succeeded=False)
        raise
    if not new_files and not removed and pending is None and stale is None:
        log.info("no new data in %s: nothing to do", config.input_source)
        tick_finished(config, succeeded=True)
        return EXIT_OK
    from riskcore.ops import run  # the heavy libraries, only now that there is work

    with file_logging(config):
        if stale is not None:
            log.info("no new data, but %s: producing the reports for model %s", stale, current.model_version)
        status = run.work(config, current, new_files, pending, reports, removed=removed)
        tick_finished(config, succeeded=status == EXIT_OK)  # the silence alert, and alerts still owed
        return status


def stale_outputs(config: Config, current: Deployment | None) -> str | None:
    """Why the risk list does not follow the deployed model (a cheap check), or None.

    A run that deployed a model and then failed to write its reports (a full disk) leaves the
    previous model's call list behind, or none: the next tick makes the reports even with no new
    data. A project whose reports were never made by the automation is left as it is.
    """
    if current is None:
        return None
    try:
        record = read_json(config.output_model_folder / RISK_RECORD, "Risk list record", missing=None)
        made_by = None if record is None else record["model_version"]
    except (DataError, KeyError, TypeError):
        return f"the risk list's record {RISK_RECORD} is unreadable"
    if made_by is not None and made_by != current.model_version:
        return f"the risk list was made by model {made_by}, not by the deployed {current.model_version}"
    runs = read_history(history_path(config))
    if made_by is None and runs and runs[-1]["version_after"] == current.model_version:
        return f"the run that deployed model {current.model_version} left no risk list"
    return reports_owed(config, current, runs)


REPORT_STEPS = {"diagnostics", "reporting"}  # a run that entered one of them tried to write the PDF report


def reports_owed(config: Config, current: Deployment, runs: list[dict]) -> str | None:
    """Why the deployed model still lacks its PDF report, or None: the last run that tried to write it failed.

    The risk list is written before the PDF: a report that fails after it (a crash in the layout)
    leaves a risk list naming the deployed model and no report. The next tick tries again, until
    a run writes the report; runs that stopped before their reports say nothing about them.
    """
    for row in reversed(runs):
        if row["outcome"] != "done" and not REPORT_STEPS & set(row["step_seconds"] or {}):
            continue
        if row["outcome"] == "done" or row["version_after"] != current.model_version:
            return None
        number = row["run_number"]
        if isinstance(number, int) and (config.output_model_folder / numbered_name(SUMMARY_REPORT, number)).is_file():
            return None  # the PDF was written; a later step (the API calls) failed
        error = str(row["error"] or "no error recorded")
        error = error if len(error) <= 120 else error[:119] + "\N{HORIZONTAL ELLIPSIS}"
        name = f"run {number}" if isinstance(number, int) else f"the run started {when(row['started_at'])}"
        return f"{name} {row['outcome']} before the report of model {current.model_version} ({error})"
    return None


def preview(config: Config, allow_removed: bool = False) -> str:
    """What a tick would do now, with its reasons, changing nothing (--dry-run)."""
    current = check_production(config, record=False)
    new_files = detect_new_data(config, current)
    removed = detect_removed(config, current) if allow_removed else []
    if new_files or removed:
        from riskcore.ops import run

        return run.dry_run(config, current, new_files, removed)
    pending = read_pending(config)
    if pending is not None and recorded_run(config, pending) is None:
        return f"would finish the reports of interrupted run {pending.get('run_number') or '(unnumbered)'}"
    log.info("no new data in %s: nothing to do", config.input_source)
    return "would do nothing: no new data"
