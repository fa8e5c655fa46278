"""One automation run with work to do: ingest, check drift, keep or retrain and redeploy, report, record.

The contract's decisions:
  nothing deployed yet                                   -> first deployment, then the reports
  new data, deployed model's F1 on it passes the test    -> keep the model, record the files
  new data, F1 fails the drift test                      -> re-train, score, deploy, then report

Every run is recorded in the run history whatever happens; a run killed mid-way is finished by
the next tick from its pending mark (riskcore.runs). Only a tick with work imports this module:
it brings in pandas, scikit-learn and scipy.
"""

from __future__ import annotations

import logging

from riskcore.apiclient import call_endpoints
from riskcore.apikey import api_key
from riskcore.config import Config
from riskcore.contract import API_RETURNS, EXIT_FAILED, EXIT_OK, SCORE_FILE
from riskcore.diagnostics import write_diagnostics
from riskcore.drift import data_drift, drift_verdict
from riskcore.evaluation import read_score, score_model, score_trained
from riskcore.faults import checkpoint
from riskcore.files import next_report_number, numbered_name, utc_now
from riskcore.history import record_run, score_history
from riskcore.ingest import ingest, ingest_folder
from riskcore.model import train
from riskcore.publish import deploy, deploy_records
from riskcore.releases import Deployment, current_deployment, deployed_metadata, load_deployed_model, verify_release
from riskcore.reports import write_reports
from riskcore.runs import (
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

log = logging.getLogger(AUTOMATION_LOGGER)


def produce_reports(config: Config, run: Run, api_url: str) -> None:
    """Diagnostics, reports and API calls for the current deployment, numbered as one run."""
    with step(run, "diagnostics"):
        write_diagnostics(config)
    with step(run, "reporting"):
        write_reports(config, run_number=run.run_number)
    with step(run, "apicalls"):
        status = call_endpoints(config, api_url, run_number=run.run_number, api_key=api_key(config))
    if status != EXIT_OK:
        raise StepFailed(f"step apicalls failed: the API at {api_url} did not answer every call "
                         f"(see {numbered_name(API_RETURNS, run.run_number)})")


def check_drift(config: Config, run: Run, deployment: Deployment, frame) -> bool:
    """Decide whether the deployed model has drifted on the new data; record why."""
    verify_release(deployment)  # the baseline and the training profile decide too
    model = load_deployed_model(deployment)
    run.f1_new_data = score_model(model, frame)
    run.baseline = read_score(deployment.path(SCORE_FILE))
    auto = config.automation
    verdict = drift_verdict(run.f1_new_data, run.baseline, score_history(history_path(config)),
                            auto["drift_test"], auto["min_history"])
    run.drift_test, run.drift_verdict = verdict.test, verdict.reason
    profile = deployed_metadata(deployment)["training_profile"]
    run.data_drift = data_drift(frame, profile, auto["psi_threshold"], auto["ks_alpha"])
    drifted = [c for c, f in run.data_drift["features"].items() if f["drift"]]
    log.info("drift check: %s; data drift in %s", verdict.reason, ", ".join(drifted) or "no feature")
    if verdict.drift:
        return True
    if drifted and auto["data_drift_triggers_retrain"]:
        run.drift_verdict += "; data drift alone triggers retraining (automation.data_drift_triggers_retrain)"
        return True
    return False


def retrain_and_deploy(config: Config, run: Run) -> None:
    with step(run, "training"):
        train(config)
    with step(run, "scoring"):
        score_trained(config)
    with step(run, "deployment"):
        deploy(config)


def ingest_and_decide(config: Config, run: Run, current: Deployment | None) -> None:
    """Ingest the new data, check drift against the deployed model, and act on the verdict."""
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


def execute(config: Config, run: Run, current: Deployment | None, reports: Reports,
            reports_only: bool = False) -> int:
    """Do the work of a run; record it in the history whatever happens."""
    write_pending(config, run)
    try:
        if not reports_only:
            ingest_and_decide(config, run, current)
        # Recorded before the reports, so this run's drift check is in its own report.
        run.outcome = "reporting"
        record_run(history_path(config), run.as_row())
        reports(config, run)
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


def work(config: Config, current: Deployment | None, new_files: list[str], pending: dict | None,
         reports: Reports) -> int:
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
        return execute(config, run, current, reports, reports_only=True)
    log.info("new data: %s", ", ".join(new_files))
    return execute(config, run, current, reports)


def dry_run(config: Config, current: Deployment | None, new_files: list[str]) -> str:
    """What a run would decide now on the new files, with its reasons, without changing anything."""
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
