"""The reports of a run: the risk list, the confusion matrix and the PDF, gathered from the project's records.

reporting.py and the automation both write them through write_reports.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from riskcore.config import Config
from riskcore.contract import (
    CONFUSION_MATRIX,
    DIAGNOSTICS_RECORD,
    FINAL_DATA,
    INGESTION_RECORD,
    RUN_HISTORY,
    SUMMARY_REPORT,
    DataError,
    UserError,
)
from riskcore.files import (
    atomic_write_bytes,
    next_report_number,
    numbered_name,
    read_json,
    utc_now,
)
from riskcore.model.drift import data_drift
from riskcore.model.drift_evidence import latest_check, quantiles_of, recorded_figures, training_quantiles
from riskcore.model.estimate_words import latest_calibrated
from riskcore.model.evaluation import evaluate, read_test_data
from riskcore.model.training import PROFILE_POINTS
from riskcore.ops.calls import calls_path
from riskcore.ops.history import highest_run_number, read_history
from riskcore.release.listing import served_summary
from riskcore.release.load import (
    Deployment,
    deployed_metadata,
    deployment_history,
    load_deployed_model,
    release_baseline,
    require_deployment,
)
from riskcore.report.call_effect import measure_calls
from riskcore.report.call_list import risk_scores
from riskcore.report.charts import (
    confusion_matrix_chart,
    distribution_chart,
    model_deployments,
    png_bytes,
    reliability_chart,
    roc_chart,
    trend_chart,
)
from riskcore.report.outputs import REPORTS
from riskcore.report.pdf import DriftEvidence, ReportData, build_pdf
from riskcore.report.statistics import missing_shares, read_ingested, summarize

log = logging.getLogger(__name__)


def optional_record(path: Path, what: str) -> dict[str, Any] | None:
    """A JSON record the report can do without: None (and a log line) when missing or unreadable."""
    if not path.is_file():
        log.info("no %s at %s; the report says so", what, path)
        return None
    try:
        record = read_json(path, what)
    except DataError as exc:
        log.warning("%s; the report leaves it out", exc)
        return None
    return record if isinstance(record, dict) else None


def report_number(folder: Path, run_number: int | None) -> int:
    """The run number to write: as asked, or the one after the highest ever used (reports present, run history)."""
    if run_number is None:
        return next_report_number(folder, REPORTS, recorded=highest_run_number(folder / RUN_HISTORY))
    if run_number < 1:
        raise UserError("The run label must be a whole number of at least 1.")
    taken = [numbered_name(name, run_number) for name in REPORTS if (folder / numbered_name(name, run_number)).exists()]
    if taken:
        log.warning("run label %d: replacing the existing %s", run_number, " and ".join(taken))
    return run_number


def drift_evidence(config: Config, deployment: Deployment, metadata: dict[str, Any], runs: list[dict[str, Any]],
                   run_number: int | None, newest) -> DriftEvidence:
    """The drift check the report names, with the two data sets it compared.

    The figures are the run history's: the automation's own, on the rows it checked, compared with the
    training data of the model it checked (after a retrain, the old model, not the new one). With no
    check recorded, riskcore.model.drift computes them for the deployed model and the ingested data.
    """
    threshold, alpha = float(config.automation["psi_threshold"]), float(config.automation["ks_alpha"])
    compared = quantiles_of(newest, PROFILE_POINTS) if newest is not None else {}
    check = latest_check(runs, run_number)
    evidence = DriftEvidence(check=check, recorded=False, model_version=deployment.model_version, figures={},
                             reference={}, compared=compared, compared_name=f"the ingested data ({FINAL_DATA})",
                             psi_threshold=threshold, ks_alpha=alpha)
    if check is not None and recorded_figures(check):
        evidence.recorded, evidence.figures = True, recorded_figures(check)
        if isinstance(check.get("new_rows_quantiles"), dict):  # the rows the check took, as it recorded them
            evidence.compared, evidence.compared_name = check["new_rows_quantiles"], "the new rows"
        evidence.model_version = check.get("version_before") or deployment.model_version
        evidence.reference = training_quantiles(config.prod_deployment_folder, evidence.model_version, deployment)
        return evidence
    profile = metadata.get("training_profile")
    if newest is not None and profile:
        evidence.figures = data_drift(newest, profile, threshold, alpha)["features"]
        evidence.reference = profile["quantiles"]
    return evidence


def gather(config: Config, run_number: int | None, clients: Path | None) -> ReportData:
    """Everything the reports show; the risk list is written on the way (it is the biggest input)."""
    folder = config.output_model_folder
    deployment = require_deployment(config.prod_deployment_folder)
    model = load_deployed_model(deployment)
    metadata = deployed_metadata(deployment)
    evaluation = evaluate(model, read_test_data(config))
    number = report_number(folder, run_number)
    risk = risk_scores(config, clients, model=model, deployment=deployment, cycle=number)  # this run's cycle
    newest = read_ingested(config) if config.final_data_file.is_file() else None
    generated = utc_now()
    deployments = deployment_history(config.prod_deployment_folder)
    for first in model_deployments(deployments):  # the trend table's models, each beside its own-market baseline
        first["baseline"] = release_baseline(config.prod_deployment_folder, first["release"])
    runs = read_history(folder / RUN_HISTORY)
    drift = drift_evidence(config, deployment, metadata, runs, run_number, newest)
    charts = {
        "confusion": png_bytes(confusion_matrix_chart(evaluation, deployment.model_version, generated[:10])),
        "roc": png_bytes(roc_chart(evaluation)),
        "trend": png_bytes(trend_chart(deployments, runs, generated, test_rows=evaluation.rows)),
    }
    labelled = latest_calibrated(runs)
    if labelled is not None:
        charts["reliability"] = png_bytes(reliability_chart(labelled["calibration"], str(labelled.get("started_at"))))
    if drift.reference and drift.compared:
        charts["distributions"] = png_bytes(distribution_chart(
            drift.reference, drift.compared, drift.figures, f"training data of model {drift.model_version}",
            drift.compared_name))
    return ReportData(
        run_number=number, generated_at=generated, deployment=deployment,
        metadata=metadata, evaluation=evaluation, risk=risk, deployments=deployments, runs=runs,
        summary=summarize(newest) if newest is not None else None,
        missing=missing_shares(newest) if newest is not None else None,
        ingested_rows=int(len(newest)) if newest is not None else None,
        drift=drift, retrain=retrain_evaluation(drift.check, metadata), project=config.config_file.parent,
        diagnostics=optional_record(folder / DIAGNOSTICS_RECORD, "Diagnostics record"),
        ingestion=(optional_record(config.output_folder / INGESTION_RECORD, "Ingestion record")
                   or optional_record(deployment.path(INGESTION_RECORD), "Ingestion record")),
        charts=charts, served=served_summary(config.prod_deployment_folder, deployment),
        call_effect=measure_calls(calls_path(folder), config.final_data_file),
    )


def retrain_evaluation(check: dict[str, Any] | None, metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The old and new model on the same data: the reported run's retrain, else the deployed model's own."""
    for source in ((check or {}).get("evaluation"), metadata.get("evaluation")):
        if isinstance(source, dict) and source.get("test_data"):
            return source
    return None


def write_reports(config: Config, run_number: int | None = None, clients: Path | None = None) -> dict[str, Path]:
    """Write the risk list, the confusion matrix and the PDF report of a run; return their paths."""
    data = gather(config, run_number, clients)
    folder = config.output_model_folder
    paths = {
        "confusion_matrix": folder / numbered_name(CONFUSION_MATRIX, data.run_number),
        "summary_report": folder / numbered_name(SUMMARY_REPORT, data.run_number),
        "risk_scores": data.risk.path,
    }
    pdf = build_pdf(data)
    atomic_write_bytes(paths["confusion_matrix"], data.charts["confusion"])
    atomic_write_bytes(paths["summary_report"], pdf)
    log.info("run %d: wrote %s and %s for model %s (F1 %.4f on the test data)", data.run_number,
             paths["confusion_matrix"].name, paths["summary_report"].name, data.deployment.model_version,
             data.evaluation.f1)
    return paths
