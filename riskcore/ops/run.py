"""One automation run with work to do: ingest, check drift, keep or retrain and redeploy, report, record.

The contract's decisions, "new data" being the rows of the files new or changed in this run:
  nothing deployed yet                                   -> first deployment, then the reports
  new data, deployed model's F1 on it passes the test    -> keep the model, record the files
  new data, F1 fails the drift test                      -> re-train, score, deploy, then report
    (the new model worse on held-out new rows, with automation.promotion_gate on: keep the old one)
  new data without labels ("no labels yet")              -> keep the model, record the files
  a file production ingested is broken or gone           -> nothing ingested, nothing deployed, exit 1
  a new file is rejected                                 -> the others go ahead; exit 1 naming it

Every run is recorded in the run history whatever happens; a run killed mid-way is finished by
the next tick from its pending mark (riskcore.ops.run_record). A run's number is its reports' number:
one that ends without reports keeps none, so the next reports take the number after the last ones
made. Only a tick with work imports this module: it brings in pandas, scikit-learn and scipy.
"""

from __future__ import annotations

import logging

from riskcore.api.key import api_key
from riskcore.config import Config, is_course_rule
from riskcore.contract import (
    API_RETURNS,
    EXIT_FAILED,
    EXIT_OK,
    ID_COLUMN,
    NUMBERED_REPORTS,
    RISK_RECORD,
    ROW_DIGESTS,
    TARGET,
    DataError,
)
from riskcore.data.folder_ingest import IngestionResult, hold_back_reason, ingest, ingest_folder
from riskcore.data.input_files import printable_name
from riskcore.data.snapshots import HeldBack
from riskcore.data.validation import labelled
from riskcore.faults import checkpoint
from riskcore.files import next_report_number, numbered_name, read_json, utc_now
from riskcore.formatting import plural
from riskcore.model.estimate_words import estimate_text
from riskcore.model.evaluation import score_trained
from riskcore.model.holdout import evaluate_retrain, held_out_rows, holdout_clients
from riskcore.model.training import train
from riskcore.ops.alerts import note_run
from riskcore.ops.api_client import call_endpoints
from riskcore.ops.calls import calls_path
from riskcore.ops.drift_check import check_drift
from riskcore.ops.evidence_window import by_client, clear_window, write_window
from riskcore.ops.history import highest_run_number, record_run, worse_on_holdout
from riskcore.ops.new_data import processed_files
from riskcore.ops.run_record import (
    AUTOMATION_LOGGER,
    Reports,
    Run,
    StepFailed,
    clear_pending,
    history_path,
    resumed_run,
    step,
    write_pending,
)
from riskcore.release.load import Deployment, current_deployment
from riskcore.release.operator_state import read_control
from riskcore.release.publish import deploy, deploy_records
from riskcore.report.call_effect import measure_calls
from riskcore.report.diagnostics import write_diagnostics
from riskcore.report.writer import write_reports

log = logging.getLogger(AUTOMATION_LOGGER)

KEPT_BY_GATE = "kept_by_gate"  # drift found and a model retrained, but the promotion gate kept the served one


def produce_reports(config: Config, run: Run, api_url: str) -> None:
    """Diagnostics, reports and API calls for the current deployment, numbered as one run."""
    with step(run, "diagnostics"):
        write_diagnostics(config)
    with step(run, "reporting"):
        write_reports(config, run_number=run.run_number)
        run.call_effect = measure_calls(calls_path(config.output_model_folder), config.final_data_file)
    with step(run, "apicalls"):
        failures = call_endpoints(config, api_url, run_number=run.run_number, api_key=api_key(config))
    if failures:  # the first failure says why (the alert's reader has no apireturns file at hand)
        more = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
        raise StepFailed(f"step apicalls failed: the API at {api_url} did not answer every call ({failures[0]}{more}; "
                         f"see {numbered_name(API_RETURNS, run.run_number)})")


def retrain_and_deploy(config: Config, run: Run, current: Deployment | None = None, new_rows=None) -> None:
    """Train, score and deploy; a retrain first scores old and new model on held-out new rows (riskcore.model.holdout).

    Candidates are compared on those rows first (riskcore.model.training: every labelled row, the recent ones or the
    window alone), except under the course's rule, which retrains on every ingested row; with
    automation.promotion_gate on, the gate keeps the old model when the chosen one is worse than it beyond the
    interval. `new_rows`: the window's labelled clients, each its latest labelled snapshot
    (riskcore.ops.evidence_window.by_client), so a client the window holds twice is held out and scored once.
    """
    held_out = holdout_clients(new_rows, config.automation["holdout_share"]) if current is not None else []
    compare = current is not None and not is_course_rule(config.automation)  # issue 19.6, gate or no gate
    holdout = held_out_rows(new_rows, held_out) if compare and held_out else None
    window_clients = labelled(new_rows)[ID_COLUMN].astype(str).tolist() if compare else ()
    calibration = held_out_rows(new_rows, held_out) if held_out else None  # the calibrator's rows (training)
    with step(run, "training"):
        train(config, held_out=held_out, holdout=holdout, window_clients=window_clients, calibration=calibration)
    with step(run, "scoring"):
        score_trained(config)
    if current is not None:
        with step(run, "evaluation"):
            run.evaluation = evaluate_retrain(config, current, new_rows, held_out)
        write_pending(config, run)
        if not run.evaluation["promoted"]:
            run.decision = KEPT_BY_GATE
            write_pending(config, run)
            log.info("decision: keep model %s (the promotion gate: %s), record the new files as processed",
                     current.model_version, worse_on_holdout(run.evaluation))
            with step(run, "record_files"):
                deploy_records(config)
            return
    with step(run, "deployment"):
        deploy(config)


def note_ingestion(run: Run, result: IngestionResult) -> None:
    """What the ingestion found, for the history: rows read and kept, new rows, rejected files."""
    run.rows_read = sum(f.rows_read for f in result.files)
    run.rows_ingested = result.data.height
    run.rows_new = result.new_data.height
    run.files_rejected = [{"name": r.name, "reason": r.reason} for r in result.rejected]


def too_small_to_judge(config: Config, run: Run, rows) -> bool:
    """Whether the gate's holdout from these rows would be too small to judge a retrain (and say so): fewer than
    automation.min_holdout_rows rows, or nobody who left among them (F1 is undefined there: every model scores the
    same, so "not worse" would say nothing)."""
    auto = config.automation
    if not auto["promotion_gate"]:
        return False
    clients = holdout_clients(rows, auto["holdout_share"])
    holdout = len(clients)
    if holdout < auto["min_holdout_rows"]:
        lacks = f"{holdout} rows, fewer than {auto['min_holdout_rows']} (automation.min_holdout_rows)"
    elif not labelled(held_out_rows(rows, clients))[TARGET].sum():
        lacks = f"{holdout} rows and nobody who left (F1 is undefined there)"
    else:
        return False
    found = "model drift" if run.model_drift else "drift"  # data drift alone (automation.data_drift_triggers_retrain)
    run.drift_verdict += f"; {found} found, but its holdout would hold {lacks}: waiting for more labelled rows"
    return True


def ingest_and_decide(config: Config, run: Run, current: Deployment | None, allow_removed: bool = False) -> None:
    """Ingest, check drift against the deployed model, and act on the verdict."""
    with step(run, "ingestion"):
        processed = processed_files(config.input_folder, current)
        try:
            result = ingest(config, processed, allow_removed)
        except HeldBack as exc:
            note_ingestion(run, exc.result)
            raise
    note_ingestion(run, result)
    if current is None:
        run.decision = "first deployment"
        write_pending(config, run)
        log.info("nothing deployed yet: training and deploying a first model")
        retrain_and_deploy(config, run)
        return
    with step(run, "drift_check"):
        verdict, rows = check_drift(config, run, current, result)
        # The retrain holds out and judges clients, each by its latest labelled snapshot, as the window's F1 does.
        known = by_client(rows).labelled
        verdict = held_or_waiting(config, run, current, verdict, known)
    if verdict == "drift":
        run.decision = "retrain"
        write_pending(config, run)
        log.info("decision: retrain and redeploy (%s)", run.drift_verdict)
        clear_window(config)
        retrain_and_deploy(config, run, current, known)
        return
    run.decision = verdict
    write_pending(config, run)
    if verdict == "wait":
        write_window(config, rows)
        log.info("decision: wait, model %s is kept and the window of %s carries over (%s)",
                 current.model_version, plural(len(rows), "row"), run.drift_verdict)
    else:
        clear_window(config)
        log.info("decision: keep model %s, record the new files as processed (%s)", current.model_version,
                 run.drift_verdict)
    with step(run, "record_files"):
        deploy_records(config, window=verdict == "wait")


def held_or_waiting(config: Config, run: Run, current: Deployment, verdict: str, known) -> str:
    """The drift check's verdict as the tick acts on it (and a dry run says it): model drift on a pinned release
    keeps it; a gate's holdout too small to judge a retrain waits for more labelled rows."""
    if verdict != "drift":
        return verdict
    if held_by_pin(config, run, current):
        return "keep"
    return "wait" if too_small_to_judge(config, run, known) else verdict


def held_by_pin(config: Config, run: Run, current: Deployment) -> bool:
    """Whether a pinned release keeps the model although the drift check asks for a retrain (and say so)."""
    pinned = read_control(config.prod_deployment_folder)["pinned"]
    if not pinned:
        return False
    run.drift_verdict += (f"; release {pinned['release']} is pinned (by {pinned['by']}, {pinned['at']}): "
                          "keeping it until deployment.py --unpin")
    log.warning("release %s is pinned by %s since %s: keeping model %s although the drift check asks for a "
                "retrain", pinned["release"], pinned["by"], pinned["at"], current.model_version)
    return True


def rejection_error(rejected: list[dict[str, str]]) -> str:
    """The sentence a run with rejected files ends with (cron mails it)."""
    return "rejected input: " + "; ".join(r["reason"].rstrip(".") for r in rejected) + \
        " (the file stays rejected until it changes)."


def execute(config: Config, run: Run, current: Deployment | None, reports: Reports,
            reports_only: bool = False, allow_removed: bool = False) -> int:
    """Do the work of a run; record it in the history whatever happens."""
    write_pending(config, run)
    reported = False
    try:
        if not reports_only:
            ingest_and_decide(config, run, current, allow_removed)
        # Recorded before the reports, so this run's drift check is in its own report.
        run.outcome = "reporting"
        record_run(history_path(config), run.as_row())
        reports(config, run)
        reported = True
        run.outcome = "done"
        if run.files_rejected:  # the good files went ahead; a rejected file still needs someone to look
            run.error = rejection_error(run.files_rejected)
    except StepFailed as exc:
        run.outcome, run.error = "failed", str(exc)
    except BaseException as exc:
        run.outcome, run.error = "crashed", f"{exc.__class__.__name__}: {exc}"
        raise
    finally:
        run.finished_at = utc_now()
        if not (reported or wrote_reports(config, run.run_number)):
            run.run_number = None  # the next reports take the number: it follows the reports made, not the runs
        deployed = current_deployment(config.prod_deployment_folder)
        run.version_after = deployed.model_version if deployed else None
        record_run(history_path(config), run.as_row())
        # Cleared only once recorded: a run killed in between is recognised, not lost (recorded_run).
        checkpoint("run-recorded")
        clear_pending(config)
        note_run(config, run.as_row())  # the alerts this run calls for, sent once (riskcore.ops.alerts)
        if run.error:
            log.error("%s; the deployed model is %s", run.error.rstrip("."), run.version_after or "none")
    # "run 5 done: None" was the walk's last line of a run held back before any decision.
    log.info("run %s %s: %s, model %s -> %s", run.run_number or "without reports", run.outcome,
             run.decision or "no decision", run.version_before, run.version_after)
    return EXIT_OK if run.outcome == "done" and not run.error else EXIT_FAILED


def wrote_reports(config: Config, number: int | None) -> bool:
    """Whether a report numbered `number` exists: a run that failed after its PDF (at the API calls) made one."""
    return number is not None and any((config.output_model_folder / numbered_name(name, number)).is_file()
                                      for name in NUMBERED_REPORTS)


def number_of_run(config: Config, current: Deployment | None, pending: dict | None, reports_only: bool) -> int:
    """The number this run's reports take.

    A run killed mid-way left its number behind: reused, so its reports are numbered as if it had never been
    interrupted. Reports owed to the deployed model whose risk list is already written (a run that failed between
    the list and its PDF keeps no number) take the list's number: its cycle of calls is already recorded and on the
    page. Else the one after the highest ever used: reports in the folder, the history, the risk list's.
    """
    if (pending or {}).get("run_number"):
        return pending["run_number"]
    try:
        record = read_json(config.output_model_folder / RISK_RECORD, "Risk list record", missing={})
    except DataError:
        record = {}
    listed = record.get("run_number") if isinstance(record, dict) else None
    listed = listed if isinstance(listed, int) and listed >= 1 else None
    if reports_only and listed is not None and current is not None \
            and record.get("model_version") == current.model_version and not wrote_reports(config, listed):
        return listed
    return next_report_number(config.output_model_folder,
                              recorded=max(highest_run_number(history_path(config)), listed or 0))


def work(config: Config, current: Deployment | None, new_files: list[str], pending: dict | None,
         reports: Reports, removed: list[str] | None = None) -> int:
    """A run with something to do: new data, files the operator drops (`removed`), or reports still owed."""
    run = Run(started_at=utc_now(), new_files=new_files,
              version_before=current.model_version if current else None)
    run.run_number = number_of_run(config, current, pending, reports_only=not new_files and not removed)
    if not new_files and not removed:
        resumed = resumed_run(pending or {}, run.run_number)
        if resumed is None:
            run.decision = "finish reports"
            if pending is not None:  # else the tick has said why (a rollback, a run that left no risk list)
                log.info("an earlier run stopped before its reports (run %s): producing them now", run.run_number)
        else:
            run = resumed
            log.info("run %s (%s, started %s) was interrupted after its decision: producing its reports now",
                     run.run_number, run.decision, run.started_at)
        return execute(config, run, current, reports, reports_only=True)
    if new_files:
        log.info("new data: %s", ", ".join(map(printable_name, new_files)))
    if removed:
        log.info("dropping, as asked (--allow-removed): %s", ", ".join(removed))
    return execute(config, run, current, reports, allow_removed=bool(removed))


def dry_run(config: Config, current: Deployment | None, new_files: list[str], removed: list[str] | None = None) -> str:
    """What a run would decide now on the new files, with its reasons, without changing anything."""
    if current is None:
        return "would make a first deployment: nothing is deployed yet"
    processed = processed_files(config.input_folder, current)
    if config.input_database is not None:
        from riskcore.data.db_ingest import ingest_table

        result = ingest_table(config, processed.record, keep_snapshot=False)
    else:
        result = ingest_folder(config.input_folder, processed.known, processed.ingested,
                               config.output_folder / ROW_DIGESTS, config.max_id_length)
    reason = hold_back_reason(result, processed, bool(removed), config.input_folder)
    if reason is not None:
        return f"would fail: {reason}"
    if result.rejected:
        log.info("would reject: %s", "; ".join(r.reason for r in result.rejected))
    if not result.files:
        return "would fail: no file could be ingested"
    run = Run(started_at=utc_now())
    verdict, rows = check_drift(config, run, current, result, ledger=False)
    verdict = held_or_waiting(config, run, current, verdict, by_client(rows).labelled)
    action = {"drift": "retrain and redeploy", "keep": f"keep model {current.model_version}",
              "wait": f"keep model {current.model_version} and wait for more labelled rows"}[verdict]
    changes = f"new files {', '.join(map(printable_name, new_files))}" + (
        f"; dropping {', '.join(map(printable_name, removed))}" if removed else "")
    estimate = estimate_text(run.as_row())
    return f"would {action}: {changes}; {run.drift_verdict}" + (f"; {estimate}" if estimate else "")
