"""The model's health as the web page shows it: can the model behind the call list be trusted?

The deployed model's F1 and ROC AUC with bootstrap 95% intervals (riskcore.model.evaluation, seeded, as
the automation records them) on the test data and on the latest new data; the latest drift check
in one sentence; the features it found drifted, each charted against the training data of the
model it tested (riskcore.api.page_charts); and the run history, newest first. The figures are the
PDF report's, in its words.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from riskcore.api.serving import RiskService, Served
from riskcore.contract import FEATURE_LABELS, FEW_ROWS, UserError
from riskcore.files import when
from riskcore.model.drift_evidence import (
    checked_rows,
    drift_rule_text,
    figures_text,
    last_bar_text,
    latest_check,
    quantiles_of,
    recorded_figures,
    training_quantiles,
    verdict_text,
)

log = logging.getLogger(__name__)

HISTORY_ROWS = 20  # newest runs shown in the run history table
DECISIONS = {
    "retrain": "the model was retrained and redeployed",
    "keep": "the model was kept",
    "wait": "the model was kept until there are enough labelled rows to decide",
    "kept_by_gate": "a model was retrained, but the promotion gate kept the served one",
    "first deployment": "a first model was deployed",
}




def model_health(risk: RiskService, served: Served | None, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The latest drift check (the one the PDF names), what it found drifted, and the newest runs."""
    check = latest_check(runs)
    auto = risk.config.automation
    alpha = float(auto["ks_alpha"])
    return {"served": served, "rule": drift_rule_text(float(auto["psi_threshold"]), alpha), "check": check,
            "sentence": check_sentence(check) if check else None,
            "other_model": other_model_note(check, served), "drifted": drifted_features(check, alpha),
            "last_bar": last_bar_text(), "runs": runs[::-1][:HISTORY_ROWS],
            "older_runs": max(0, len(runs) - HISTORY_ROWS)}


def other_model_note(check: dict[str, Any] | None, served: Served | None) -> str | None:
    """When the latest check was about another model than the one served (a rollback since), the sentence saying so."""
    if check is None or served is None:
        return None
    checked = [v for v in (check.get("version_before"), check.get("version_after")) if v]
    if not checked or served.model_version in checked:
        return None
    return (f"This check was about model {checked[0]}, not the model served now ({served.model_version}): "
            "its figures do not describe the served model.")


def check_sentence(check: dict[str, Any]) -> str:
    """A drift check in one sentence: when, on what, the recorded verdict, and what was done."""
    rows = f"{checked_rows(check):,} new rows" if checked_rows(check) else "the new data"
    verdict = check.get("drift_verdict") or (f"F1 {check['f1_new_data']:.4f} on the new data"
                                             if check.get("f1_new_data") is not None else "data drift measured")
    done = DECISIONS.get(check.get("decision") or "", f"decision: {check.get('decision') or 'not recorded'}")
    return f"{when(check.get('started_at'))}, {rows}: {verdict}; {done}."


def drifted_features(check: dict[str, Any] | None, ks_alpha: float) -> list[dict[str, Any]]:
    """The features the check found drifted, as it recorded them, with the tests that found them."""
    return [{"feature": name, "label": FEATURE_LABELS.get(name, name), "figures": figures_text(values),
             "verdict": verdict_text(values, ks_alpha)}
            for name, values in recorded_figures(check).items() if isinstance(values, dict) and values.get("drift")]


# --- F1 and ROC AUC with their intervals ---------------------------------------------------------
def model_quality(risk: RiskService, served: Served, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The served model's F1 and ROC AUC with bootstrap 95% intervals, on the test data and the latest new data.

    On the test data they are measured here, once per release and version of the file. On new data:
    after a retrain, the new model's figures on the held-out new rows, which its metadata records
    beside the old model's; for a model a later check kept, the F1 that check measured (no interval
    is recorded for it).
    """
    from riskcore.model.evaluation import read_test_data, scores_with_intervals
    from riskcore.release.load import deployed_metadata

    quality: dict[str, Any] = {"test": None, "test_note": None, "new": None, "new_name": None, "old": None,
                               "old_model": None, "new_worse": False, "few": FEW_ROWS, "baseline": None}
    try:
        quality["test"] = scores_with_intervals(served.model, read_test_data(risk.config))
    except UserError as exc:
        quality["test_note"] = f"Not measured: {exc}"
    try:
        evaluation = deployed_metadata(served.deployment).get("evaluation") or {}
    except (UserError, ValueError) as exc:
        log.warning("the evaluation recorded with model %s cannot be read: %s", served.model_version, exc)
        evaluation = {}
    try:  # the drift check's baseline: the model on held-out rows of its own market
        quality["baseline"] = deployed_metadata(served.deployment).get("baseline")
    except (UserError, ValueError):
        quality["baseline"] = None
    held = evaluation.get("holdout")
    kept = [run for run in runs
            if run.get("f1_new_data") is not None and run.get("version_before") == served.model_version]
    if kept:  # a check of this model on new data, necessarily after the holdout it was trained beside
        quality.update(new={"f1": kept[-1]["f1_new_data"], "rows": checked_rows(kept[-1])},
                       new_name=f"the new rows of {when(kept[-1].get('started_at'))}")
    elif held and evaluation.get("new_model") == served.model_version:
        quality.update(new=held["new"], old=held["old"], old_model=evaluation.get("old_model"),
                       new_worse=bool(evaluation.get("new_worse")),
                       new_name=f"the held-out new rows ({100 * held.get('share', 0):g}% of the new rows, "
                                "left out of its training)")
    return quality


# --- A chart per drifted feature -----------------------------------------------------------------
def ingested_quantiles(path: Path, points: int) -> dict[str, list[float]]:
    """Each feature's quantiles in the ingested data, as many as a training profile holds."""
    from riskcore.data.validation import read_client_frame

    try:
        frame = read_client_frame(path, require_target=False)
    except UserError as exc:
        log.warning("the ingested data cannot be charted: %s", exc)
        return {}
    return quantiles_of(frame, points)


def chart_drift(risk: RiskService, served: Served | None, check: dict[str, Any],
                drifted: list[dict[str, Any]]) -> dict[str, Any]:
    """A chart per drifted feature: the training data of the model the check tested (after a retrain, the
    old model) beside the rows the check took (unlabelled ones included), as the report's distributions page
    draws them; for a check recorded without their quantiles, the ingested data."""
    from riskcore.api.page_charts import distribution_chart

    version = check.get("version_before") or (served.model_version if served else None)
    deployed = served.deployment if served else None
    reference = training_quantiles(risk.config.prod_deployment_folder, version, deployed) if version else {}
    compared = check.get("new_rows_quantiles") or {}
    if reference and not compared and risk.config.final_data_file.is_file():
        compared = ingested_quantiles(risk.config.final_data_file, len(next(iter(reference.values()))))
    charts = {f["feature"]: distribution_chart(reference.get(f["feature"]), compared.get(f["feature"]))
              for f in drifted}
    return {"model_version": version, "charts": charts}
