"""The reports of a run: the risk list, the confusion matrix and the PDF, gathered from the project's records.

reporting.py and the automation both write them through write_reports.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from riskcore.charts import confusion_matrix_chart, distribution_chart, png_bytes, roc_chart, trend_chart
from riskcore.config import Config
from riskcore.contract import (
    CONFUSION_MATRIX,
    DIAGNOSTICS_RECORD,
    FEATURES,
    INGESTION_RECORD,
    RUN_HISTORY,
    SUMMARY_REPORT,
    DataError,
    UserError,
)
from riskcore.drift import psi, psi_label
from riskcore.evaluation import evaluate, read_test_data
from riskcore.files import atomic_write_bytes, next_report_number, numbered_name, read_json, utc_now
from riskcore.history import read_history
from riskcore.pdf import ReportData, build_pdf
from riskcore.releases import deployed_metadata, deployment_history, load_deployed_model, require_deployment
from riskcore.risklist import risk_scores
from riskcore.summary import missing_shares, read_ingested, summarize

log = logging.getLogger(__name__)

REPORTS = (CONFUSION_MATRIX, SUMMARY_REPORT)  # numbered per run; the risk list is overwritten


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
    """The run number to write: as asked, or the first one free for both report files."""
    if run_number is None:
        return next_report_number(folder, REPORTS)
    if run_number < 1:
        raise UserError("The run label must be a whole number of at least 1.")
    taken = [numbered_name(name, run_number) for name in REPORTS if (folder / numbered_name(name, run_number)).exists()]
    if taken:
        log.warning("run label %d: replacing the existing %s", run_number, " and ".join(taken))
    return run_number


def feature_values(frame, column: str) -> np.ndarray:
    """A feature's finite values, as the drift check takes them."""
    values = frame[column].to_numpy(dtype="float64")
    return values[np.isfinite(values)]


def drift_view(metadata: dict[str, Any], newest, threshold: float) -> tuple[dict, dict, dict[str, tuple[float, str]]]:
    """The training quantiles, the newest values and, per feature, their PSI and its label.

    riskcore.drift's PSI and threshold, so the report shows the number the automation decides on.
    """
    profile = (metadata.get("training_profile") or {}).get("quantiles") or {}
    if newest is None or not all(f in profile for f in FEATURES):
        return {}, {}, {}
    values = {feature: feature_values(newest, feature) for feature in FEATURES}
    index = {feature: psi(values[feature], profile[feature]) for feature in FEATURES}
    return profile, values, {feature: (value, psi_label(value, threshold)) for feature, value in index.items()}


def gather(config: Config, run_number: int | None, clients: Path | None) -> ReportData:
    """Everything the reports show; the risk list is written on the way (it is the biggest input)."""
    folder = config.output_model_folder
    deployment = require_deployment(config.prod_deployment_folder)
    model = load_deployed_model(deployment)
    metadata = deployed_metadata(deployment)
    evaluation = evaluate(model, read_test_data(config))
    risk = risk_scores(config, clients, model=model, deployment=deployment)
    newest = read_ingested(config) if config.final_data_file.is_file() else None
    threshold = float(config.automation["psi_threshold"])
    profile, values, drift = drift_view(metadata, newest, threshold)
    generated = utc_now()
    deployments = deployment_history(config.prod_deployment_folder)
    runs = read_history(folder / RUN_HISTORY)
    charts = {
        "confusion": png_bytes(confusion_matrix_chart(evaluation, deployment.model_version, generated[:10])),
        "roc": png_bytes(roc_chart(evaluation)),
        "trend": png_bytes(trend_chart(deployments, runs, generated)),
    }
    if drift:
        charts["distributions"] = png_bytes(distribution_chart(profile, values, drift))
    return ReportData(
        run_number=report_number(folder, run_number), generated_at=generated, deployment=deployment,
        metadata=metadata, evaluation=evaluation, risk=risk, deployments=deployments, runs=runs,
        summary=summarize(newest) if newest is not None else None,
        missing=missing_shares(newest) if newest is not None else None,
        ingested_rows=int(len(newest)) if newest is not None else None,
        psi=drift, psi_threshold=threshold,
        diagnostics=optional_record(folder / DIAGNOSTICS_RECORD, "Diagnostics record"),
        ingestion=(optional_record(config.output_folder / INGESTION_RECORD, "Ingestion record")
                   or optional_record(deployment.path(INGESTION_RECORD), "Ingestion record")),
        charts=charts,
    )


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
