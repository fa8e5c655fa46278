"""The automation cron runs every 10 minutes: new data? drift? then re-train, re-deploy, report.

Reads:  input_folder_path/*.csv, the deployed release (model, latestscore.txt, ingestion record)
Writes: everything the steps write (ingestion, training, scoring, deployment, diagnostics,
        reporting, apicalls), output_model_path/runhistory.sqlite (one row per run that did
        work) and output_model_path/fullprocess.log (size-rotated)

Decisions (the contract's table):
  no CSV the deployed record lacks (by name and sha256)  -> stop, exit 0; cheap: no pandas
  nothing deployed yet                                   -> first deployment, then the reports
  new data, deployed model's F1 on it passes the test    -> keep the model, record the files
  new data, F1 fails the drift test                      -> re-train, score, deploy, then report

Exit status: 0 done or nothing to do (or another run holds the lock), 1 a step failed
(production then stays as it was), 2 bad configuration.
Examples: python fullprocess.py
          python fullprocess.py --dry-run
          python fullprocess.py --history
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.contract import (
    API_RETURNS,
    EXIT_FAILED,
    EXIT_OK,
    INGESTION_RECORD,
    RUN_HISTORY,
    SCORE_FILE,
    DataError,
    UserError,
)
from riskcore.faults import checkpoint
from riskcore.files import atomic_write_json, next_report_number, numbered_name, utc_now
from riskcore.history import format_history, read_history, record_run, score_history
from riskcore.inputs import input_digest, list_input_files
from riskcore.releases import (
    Deployment,
    current_deployment,
    deployed_metadata,
    load_deployed_model,
    read_verified,
    verify_release,
)

# Only the standard library at import: a tick with nothing new must stay cheap. pandas,
# scikit-learn and the step modules are imported where a run needs them.

log = logging.getLogger("fullprocess")

PENDING_FILE = ".fullprocess-pending.json"
LOG_FILE = "fullprocess.log"
LOG_MAX_BYTES = 1_000_000
LOG_BACKUPS = 5


# --- One run at a time -------------------------------------------------------------------------
@contextlib.contextmanager
def exclusive_lock(prod_folder: Path):
    """Yield True when this process holds the run lock, False when another run does.

    The lock is an flock on the production folder itself, so every config that deploys there
    shares it and a no-op tick creates no file; the kernel releases it when its holder dies.
    """
    import fcntl

    prod_folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(prod_folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


# --- New data (cheap path: standard library only) ---------------------------------------------
def known_files(record: dict[str, Any]) -> dict[str, str]:
    """Name -> sha256 of every file a deployed ingestion record accounts for (rejected too)."""
    known = {f["name"]: f["sha256"] for f in record.get("files", [])}
    known.update({r["name"]: r["sha256"] for r in record.get("rejected", []) if r.get("sha256")})
    return known


def detect_new_files(input_folder: Path, deployment: Deployment | None) -> list[str]:
    """CSV files the deployed record does not list, or whose content changed since."""
    candidates, _ = list_input_files(input_folder)
    if deployment is None:
        return [path.name for path in candidates]
    # Checked against the manifest: a record edited by hand could otherwise hide new files for good.
    name = INGESTION_RECORD
    data = read_verified(deployment.path(name), deployment.manifest["files"][name])
    try:
        known = known_files(json.loads(data))
    except ValueError:
        raise DataError(f"Ingestion record {deployment.path(name)} is not valid JSON.") from None
    return [path.name for path in candidates
            if known.get(path.name) != input_digest(path, input_folder)]


# --- The run ----------------------------------------------------------------------------------
class Run:
    """What one run found, decided and did; becomes a row of the history."""

    FIELDS: dict[str, Any] = {
        "started_at": None, "run_number": None, "new_files": [], "rows_read": None, "rows_ingested": None,
        "files_rejected": [], "f1_new_data": None, "baseline": None, "drift_test": None,
        "drift_verdict": None, "data_drift": None, "decision": None, "version_before": None,
        "version_after": None, "step_seconds": {}, "outcome": "running", "error": None, "finished_at": None,
    }

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"unknown run fields: {sorted(unknown)}")
        for name, default in self.FIELDS.items():
            value = values.get(name, default)
            setattr(self, name, value.copy() if isinstance(value, (list, dict)) else value)

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}


class StepFailed(Exception):
    """A step of the run failed; the message says which and why."""


@contextlib.contextmanager
def step(run: Run, name: str):
    """Time a step, log it, and turn a user-caused failure into StepFailed naming the step."""
    checkpoint(f"before-{name}")
    start = time.perf_counter()
    try:
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


def check_drift(config: Config, run: Run, deployment: Deployment, frame) -> bool:
    """Decide whether the deployed model has drifted on the new data; record why."""
    from riskcore.drift import data_drift, drift_verdict
    from riskcore.evaluation import read_score, score_model

    verify_release(deployment)  # the baseline and the training profile decide too
    model = load_deployed_model(deployment)
    run.f1_new_data = score_model(model, frame)
    run.baseline = read_score(deployment.path(SCORE_FILE))
    auto = config.automation
    verdict = drift_verdict(run.f1_new_data, run.baseline, score_history(history_path(config)),
                            auto["drift_test"], auto["min_history"])
    run.drift_test, run.drift_verdict = verdict.test, verdict.reason
    metadata = deployed_metadata(deployment)
    run.data_drift = data_drift(frame, metadata["training_profile"], auto["psi_threshold"], auto["ks_alpha"])
    drifted = [c for c, f in run.data_drift["features"].items() if f["drift"]]
    log.info("drift check: %s; data drift in %s", verdict.reason, ", ".join(drifted) or "no feature")
    if verdict.drift:
        return True
    if drifted and auto["data_drift_triggers_retrain"]:
        run.drift_verdict += "; data drift alone triggers retraining (automation.data_drift_triggers_retrain)"
        return True
    return False


def history_path(config: Config) -> Path:
    return config.output_model_folder / RUN_HISTORY


def retrain_and_deploy(config: Config, run: Run) -> None:
    from riskcore.evaluation import score_trained
    from riskcore.model import train
    from riskcore.publish import deploy

    with step(run, "training"):
        train(config)
    with step(run, "scoring"):
        score_trained(config)
    with step(run, "deployment"):
        deploy(config)


def ingest_and_decide(config: Config, run: Run, current: Deployment | None) -> None:
    """Ingest the new data, check drift against the deployed model, and act on the verdict."""
    from riskcore.ingest import ingest
    from riskcore.publish import deploy_records

    with step(run, "ingestion"):
        result = ingest(config)
    run.rows_read = sum(f.rows_read for f in result.files)
    run.rows_ingested = len(result.frame)
    run.files_rejected = [{"name": r.name, "reason": r.reason} for r in result.rejected]
    if current is None:
        run.decision = "first deployment"
        write_pending(config, run)
        log.info("nothing deployed yet: training and deploying a first model")
        retrain_and_deploy(config, run)
        return
    with step(run, "drift_check"):
        drift = check_drift(config, run, current, result.frame)
    if drift:
        run.decision = "retrain"
        write_pending(config, run)
        log.info("decision: retrain and redeploy (%s)", run.drift_verdict)
        retrain_and_deploy(config, run)
    else:
        run.decision = "keep"
        write_pending(config, run)
        log.info("decision: keep model %s, record the new files as processed", current.model_version)
        with step(run, "record_files"):
            deploy_records(config)


def produce_reports(config: Config, run: Run, api_url: str) -> None:
    """Diagnostics, reports and API calls for the current deployment, numbered as one run."""
    import apicalls
    import diagnostics
    import reporting

    with step(run, "diagnostics"):
        diagnostics.run(config)
    with step(run, "reporting"):
        reporting.run(config, run_number=run.run_number)
    with step(run, "apicalls"):
        status = apicalls.run(config, api_url, run_number=run.run_number,
                              api_key=os.environ.get("RISK_API_KEY"))
    if status != EXIT_OK:
        raise StepFailed(f"step apicalls failed: the API at {api_url} did not answer every call "
                         f"(see {numbered_name(API_RETURNS, run.run_number)})")


# What the pending file keeps of a run: once it has decided, enough for the tick that finishes an
# interrupted run to record it as itself (its decision, the model it replaced, its F1 and verdict).
PENDING_FIELDS = ("started_at", "run_number", "new_files", "rows_read", "rows_ingested", "files_rejected",
                  "f1_new_data", "baseline", "drift_test", "drift_verdict", "data_drift", "decision",
                  "version_before")


def write_pending(config: Config, run: Run) -> None:
    """Remember the run in progress (and its decision, once made), so a run killed mid-way is finished later."""
    row = run.as_row()
    atomic_write_json(config.output_model_folder / PENDING_FILE, {k: row[k] for k in PENDING_FIELDS})


def resumed_run(pending: dict, run_number: int) -> Run | None:
    """The interrupted run as it stood when it was killed, if it had decided; None if it had not."""
    saved = {k: pending[k] for k in PENDING_FIELDS if pending.get(k) is not None}
    if not saved.get("decision") or not saved.get("started_at"):
        return None
    return Run(**{**saved, "run_number": run_number})


def run_was_recorded(config: Config, pending: dict) -> bool:
    """Whether the pending run is already in the history (killed after recording it, before clearing it)."""
    started = pending.get("started_at")
    return bool(started) and any(row["started_at"] == started and row["finished_at"]
                                 for row in read_history(history_path(config)))


def clear_pending(config: Config) -> None:
    with contextlib.suppress(FileNotFoundError):
        (config.output_model_folder / PENDING_FILE).unlink()


def read_pending(config: Config) -> dict | None:
    path = config.output_model_folder / PENDING_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {"run_number": None}


def execute(config: Config, run: Run, current: Deployment | None, api_url: str,
            reports_only: bool = False) -> int:
    """Do the work of a run; record it in the history whatever happens."""
    write_pending(config, run)
    try:
        if not reports_only:
            ingest_and_decide(config, run, current)
        # Recorded before the reports, so this run's drift check is in its own report.
        run.outcome = "reporting"
        record_run(history_path(config), run.as_row())
        produce_reports(config, run, api_url)
        run.outcome = "done"
    except StepFailed as exc:
        run.outcome, run.error = "failed", str(exc)
    except BaseException as exc:
        run.outcome, run.error = "crashed", f"{exc.__class__.__name__}: {exc}"
        raise
    finally:
        run.finished_at = utc_now()
        deployed = current_deployment(config.prod_deployment_folder)
        run.version_after = deployed.model_version if deployed else None
        record_run(history_path(config), run.as_row())
        # Cleared only once recorded: a run killed in between is recognised, not lost (run_was_recorded).
        checkpoint("run-recorded")
        clear_pending(config)
        if run.error:
            log.error("%s; the deployed model is %s", run.error, run.version_after or "none")
    log.info("run %s done: %s, model %s -> %s", run.run_number, run.decision, run.version_before, run.version_after)
    return EXIT_OK if run.outcome == "done" else EXIT_FAILED


def dry_run(config: Config, current: Deployment | None, new_files: list[str]) -> str:
    """What a run would decide now, with its reasons, without changing anything."""
    from riskcore.ingest import ingest_folder

    if current is None:
        return "would make a first deployment: nothing is deployed yet"
    result = ingest_folder(config.input_folder)
    if result.rejected:
        log.info("would reject: %s", "; ".join(r.reason for r in result.rejected))
    if not result.files:
        return "would fail: no file could be ingested"
    run = Run(started_at=utc_now())
    drift = check_drift(config, run, current, result.frame)
    action = "retrain and redeploy" if drift else f"keep model {current.model_version}"
    return f"would {action}: new files {', '.join(new_files)}; {run.drift_verdict}"


@contextlib.contextmanager
def file_logging(config: Config):
    """While a run works, also log to a size-rotated file beside the models."""
    from logging.handlers import RotatingFileHandler

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


def tick(config: Config, api_url: str, dry: bool = False) -> int:
    """One cron tick: decide, and act when there is something to do."""
    current = current_deployment(config.prod_deployment_folder)
    new_files = detect_new_files(config.input_folder, current)
    pending = None if dry else read_pending(config)
    if pending is not None and run_was_recorded(config, pending):
        clear_pending(config)  # that run finished and is in the history; only its mark was left
        pending = None
    if not new_files and pending is None:
        log.info("no new data in %s: nothing to do", config.input_folder)
        return EXIT_OK
    if dry:
        print(dry_run(config, current, new_files) if new_files else "would do nothing: no new data")
        return EXIT_OK
    with file_logging(config):
        return work(config, current, new_files, pending, api_url)


def work(config: Config, current: Deployment | None, new_files: list[str],
         pending: dict | None, api_url: str) -> int:
    """A run with something to do: new data, or reports an interrupted run still owes."""
    run = Run(started_at=utc_now(), new_files=new_files,
              version_before=current.model_version if current else None)
    # A run killed mid-way left its number behind: reuse it, so the reports are numbered as if
    # it had never been interrupted.
    run.run_number = (pending or {}).get("run_number") or next_report_number(config.output_model_folder)
    if not new_files:
        resumed = resumed_run(pending or {}, run.run_number)
        if resumed is None:
            run.decision = "finish reports"
            log.info("an earlier run stopped before its reports (run %s): producing them now", run.run_number)
        else:
            run = resumed
            log.info("run %s (%s, started %s) was interrupted after its decision: producing its reports now",
                     run.run_number, run.decision, run.started_at)
        return execute(config, run, current, api_url, reports_only=True)
    log.info("new data: %s", ", ".join(new_files))
    return execute(config, run, current, api_url)


def main(argv: list[str] | None = None) -> int:
    """Command line: one automation tick (or --dry-run, or --history)."""
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the decision and its reasons; change nothing")
    parser.add_argument("--history", action="store_true", help="print the run history as a table")
    parser.add_argument("--api-url", default=None, help="API the reports call (default: automation.api_url)")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> int:
        config = load_config(args.config)
        if args.history:
            print(format_history(read_history(history_path(config))))
            return EXIT_OK
        with exclusive_lock(config.prod_deployment_folder) as held:
            if not held:
                log.info("another fullprocess run is in progress: exiting")
                return EXIT_OK
            return tick(config, args.api_url or config.automation["api_url"], dry=args.dry_run)

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
