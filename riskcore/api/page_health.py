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

from riskcore.api.risk_service import RiskService
from riskcore.api.served_model import Served
from riskcore.contract import FEATURE_LABELS, FEW_ROWS, UserError
from riskcore.formatting import ago, day, sentence_case, when
from riskcore.model.drift_evidence import (
    baseline_text,
    called_text,
    checked_rows_text,
    drift_baseline,
    drift_rule_text,
    figures_text,
    last_bar_text,
    latest_check,
    quantiles_of,
    recorded_figures,
    scored_rows,
    too_few_rows_text,
    training_choice_text,
    training_quantiles,
    verdict_text,
)
from riskcore.model.estimate_words import (
    calibration_text,
    calibrator_text,
    check_estimate,
    estimate_text,
    latest_calibrated,
    no_estimate_text,
    realized_text,
)
from riskcore.ops.history import OPERATOR_DECISIONS

log = logging.getLogger(__name__)

HISTORY_ROWS = 20  # newest runs shown in the run history table
DECISIONS = {
    "retrain": "the model was retrained and redeployed",
    "keep": "the model was kept",
    "wait": "the model was kept until there are enough labelled rows to decide",
    "kept_by_gate": "a model was retrained, but the promotion gate kept the served one",
    "first deployment": "a first model was deployed",
}
# A check that found model drift and kept the model all the same (its decision "wait" or "keep"), in words.
DRIFT_KEPT = {
    "wait": "model drift found; the model is kept until enough labelled rows are held out to judge a retrain",
    "keep": "model drift found; the model is kept (the release is pinned)",
}
# The decisions that keep the served model, as the managers' strip says them: the facts of DECISIONS, short enough
# for a phone's first screen (a "wait" or a gate's keep read "Model checked just now: wait.")
ESTIMATED_WORSE = "estimated to do worse on the new clients, before their labels arrive"
STRIP_KEPT = {
    "keep": "model kept",
    "wait": "model kept until enough labels arrive",
    "kept_by_gate": "a retrained model did no better; model kept",
}


def health_strip(served: Served | None, pointer: str | None, runs: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """The managers' one line about the model behind the call list (the detail is on /model), and whether it alarms.

    "Model checked 2 hours ago: healthy"; "New market detected, model retrained on 6 Dec" ("Who leaves has changed"
    where the features did not drift); "Model checked
    2 hours ago: the new data differs from its training data; model kept"; "Model checked just now: model kept until
    enough labels arrive" (STRIP_KEPT: the decisions of DECISIONS in a phone's line), ESTIMATED_WORSE before it
    where the check's estimate warned (estimated_drift); the last run's failure.
    """
    if served is None:
        return {"sentence": "No model is deployed yet: no call list.", "alert": True}
    if pointer is not None and served.release != pointer:
        return {"sentence": f"The newest model failed to load; the list comes from release {served.release}.",
                "alert": True}
    check = latest_check(runs)
    # the last automation run: an operator's rollback or pin after a failed tick does not make the failure go away
    # (the banner says what the operator did), as /metrics' last outcome counts ticks only
    ticks = [row for row in runs if row.get("decision") not in OPERATOR_DECISIONS]
    last = ticks[-1] if ticks else None
    failed = last is not None and last.get("outcome") in ("failed", "crashed")
    if check is None:
        deployed = ago(served.deployment.manifest.get("deployed_at"), now)
        sentence = f"Model deployed {deployed}; not checked on new data yet"
        return {"sentence": sentence + (": the last run failed." if failed else "."), "alert": failed}
    checked = ago(check.get("finished_at") or check.get("started_at"), now)
    decision = str(check.get("decision") or "")
    drifted = isinstance(check.get("data_drift"), dict) and bool(check["data_drift"].get("drift"))
    estimated = bool(check.get("estimated_drift"))
    kept = STRIP_KEPT["keep"] if decision.startswith("keep") else STRIP_KEPT.get(decision)
    if check.get("model_drift") and decision in DRIFT_KEPT:
        sentence, alert = f"Model checked {checked}: {DRIFT_KEPT[decision]}", True
    elif decision == "retrain" and served.model_version == check.get("version_before"):
        # a rollback put the replaced model back: "retrained" alone would name a model the list no longer uses
        sentence, alert = (f"The model retrained on {day(check.get('started_at'))} was rolled back; the list comes "
                           "from the model it replaced"), True
    elif decision == "retrain":
        # labels showed the model fails; the features alone tell whether the clients changed or who leaves did
        measured = isinstance(check.get("data_drift"), dict)
        why = "Who leaves has changed" if measured and not drifted else "New market detected"
        sentence, alert = f"{why}, model retrained on {day(check.get('started_at'))}", False
    elif decision == "first deployment":
        sentence, alert = f"First model deployed {checked}", False
    elif decision.startswith("keep") and not drifted and not estimated:
        sentence, alert = f"Model checked {checked}: healthy", False
    elif kept is not None:
        differs = "the new data differs from its training data; " if drifted else ""
        worse = f"{ESTIMATED_WORSE}; " if estimated else ""  # the warning estimated_drift, for the managers
        sentence = f"Model checked {checked}: {differs}{worse}{kept}"
        alert = drifted or estimated or decision == "kept_by_gate"
    else:
        sentence, alert = f"Model checked {checked}: {decision or 'no decision recorded'}", False
    if failed:
        sentence, alert = f"{sentence}; the last run failed", True
    return {"sentence": sentence + ".", "alert": alert}


def model_health(risk: RiskService, served: Served | None, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The latest drift check (the one the PDF names), what it found drifted, and the newest runs."""
    check = latest_check(runs)
    auto = risk.config.automation
    alpha = float(auto["ks_alpha"])
    return {"served": served, "rule": drift_rule_text(float(auto["psi_threshold"]), alpha), "check": check,
            "sentence": check_sentence(check) if check else None,
            "scored_rows": scored_rows(check) if check else None, "few": FEW_ROWS,
            "other_model": other_model_note(check, served), "replaced_model": replaced_model_note(check, served),
            "drifted": checked_features(check, alpha, drifted=True),
            "steady": checked_features(check, alpha, drifted=False), "too_few_rows": too_few_rows_text(check),
            "last_bar": last_bar_text(), "runs": runs[::-1][:HISTORY_ROWS],
            "older_runs": max(0, len(runs) - HISTORY_ROWS), "estimate": latest_estimate(check),
            "reliability": latest_reliability(runs)}


def call_effect(risk: RiskService) -> dict[str, Any] | None:
    """Does calling help, measured now from the calls store and the ingested data, in the PDF's words and table
    (riskcore.report.call_effect); None when the ingested data cannot be read (the log says why)."""
    from riskcore.ops.calls import calls_path
    from riskcore.report.call_effect import GROUPS_HEADER, TITLE, counting_note, group_rows, measure_calls

    try:
        measured = measure_calls(calls_path(risk.config.output_model_folder), risk.config.final_data_file)
    except UserError as exc:
        log.error("the effect of calling cannot be measured: %s", exc)
        return None
    rows = group_rows(measured)
    return {"title": TITLE, "sentence": measured["sentence"], "header": GROUPS_HEADER, "rows": rows,
            "note": counting_note(measured) if rows else None}


def latest_estimate(check: dict[str, Any] | None) -> dict[str, Any] | None:
    """The latest check's estimated performance in one sentence, whether it warns, and what its labels later said;
    or why it estimated nothing (the PDF's words)."""
    run = check_estimate(check)
    if run is None:
        missing = no_estimate_text(check)
        return {"sentence": missing, "drift": False, "realized": None, "started_at": check.get("started_at")} \
            if missing else None
    return {"sentence": estimate_text(run), "drift": bool(run.get("estimated_drift")),
            "realized": sentence_case(realized_text(run)), "started_at": run.get("started_at")}


def latest_reliability(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest labelled window's calibration: its reliability diagram and its ECE and Brier score in words."""
    from riskcore.api.page_charts import reliability_svg

    row = latest_calibrated(runs)
    chart = reliability_svg(row["calibration"]) if row else None
    if chart is None:
        return None
    return {"chart": chart, "text": sentence_case(calibration_text(row["calibration"])),
            "started_at": row.get("started_at"), "model": row.get("version_before")}


def other_model_note(check: dict[str, Any] | None, served: Served | None) -> str | None:
    """When the latest check was about another model than the one served (a rollback since), the sentence saying so."""
    if check is None or served is None:
        return None
    checked = [v for v in (check.get("version_before"), check.get("version_after")) if v]
    if not checked or served.model_version in checked:
        return None
    return (f"This check was about model {checked[0]}, not the model served now ({served.model_version}): "
            "its figures do not describe the served model.")


def replaced_model_note(check: dict[str, Any] | None, served: Served | None) -> str | None:
    """When the latest check retrained, whose F1 its figure is: the model it replaced, not the one served now."""
    if check is None or served is None or check.get("decision") != "retrain":
        return None
    before, after = check.get("version_before"), check.get("version_after")
    if not before or before == served.model_version or after != served.model_version:
        return None
    return (f"The F1 of model {before} on the new rows, the model this check replaced; the served model's figures "
            "are in the cards beside.")


def check_sentence(check: dict[str, Any]) -> str:
    """A drift check in one sentence: when, on what, the recorded verdict, and what was done; then the rows of
    called clients it left out, if any."""
    rows = checked_rows_text(check) or "the new data"
    verdict = check.get("drift_verdict") or (f"F1 {check['f1_new_data']:.4f} on the new data"
                                             if check.get("f1_new_data") is not None else "data drift measured")
    decision = check.get("decision") or ""
    done = DRIFT_KEPT[decision] if check.get("model_drift") and decision in DRIFT_KEPT else \
        DECISIONS.get(decision, f"decision: {decision or 'not recorded'}")
    called = called_text(check)  # counted apart, so a call that keeps a client is not taken for drift
    return f"{when(check.get('started_at'))}, {rows}: {verdict}; {done}." + (f" {called}." if called else "")


def checked_features(check: dict[str, Any] | None, ks_alpha: float, drifted: bool) -> list[dict[str, Any]]:
    """The features the check found drifted (or, `drifted` False, those it did not), as it recorded them, with the
    tests' figures: the page lists every feature the PDF's drift table does."""
    return [{"feature": name, "label": FEATURE_LABELS.get(name, name), "figures": figures_text(values),
             "verdict": verdict_text(values, ks_alpha)}
            for name, values in recorded_figures(check).items()
            if isinstance(values, dict) and bool(values.get("drift")) == drifted]


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
                               "old_model": None, "new_worse": False, "few": FEW_ROWS, "baseline": None,
                               "baseline_text": None, "calibration": None, "training": None}
    try:
        quality["test"] = scores_with_intervals(served.model, read_test_data(risk.config))
    except UserError as exc:
        quality["test_note"] = f"Not measured: {exc}"
    try:
        evaluation = deployed_metadata(served.deployment).get("evaluation") or {}
    except (UserError, ValueError) as exc:
        log.warning("the evaluation recorded with model %s cannot be read: %s", served.model_version, exc)
        evaluation = {}
    try:  # the drift check's baseline: the model on held-out rows of its own market; the calibrator's record
        metadata = deployed_metadata(served.deployment)
        quality["baseline"] = drift_baseline(metadata)
        quality["baseline_text"] = baseline_text(quality["baseline"], why=True) if quality["baseline"] else None
        quality["calibration"] = calibrator_text(metadata.get("calibration"))
        quality["training"] = training_choice_text(metadata.get("candidates"))
    except (UserError, ValueError):
        quality["baseline"] = quality["baseline_text"] = quality["calibration"] = quality["training"] = None
    held = evaluation.get("holdout")
    kept = [run for run in runs
            if run.get("f1_new_data") is not None and run.get("version_before") == served.model_version]
    if kept:  # a check of this model on new data, necessarily after the holdout it was trained beside
        quality.update(new={"f1": kept[-1]["f1_new_data"], "rows": scored_rows(kept[-1])},
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
    from riskcore.data.client_csv import read_client_frame

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
    from riskcore.api.page_charts import distribution_svg

    version = check.get("version_before") or (served.model_version if served else None)
    deployed = served.deployment if served else None
    reference = training_quantiles(risk.config.prod_deployment_folder, version, deployed) if version else {}
    compared = check.get("new_rows_quantiles") or {}
    if reference and not compared and risk.config.final_data_file.is_file():
        compared = ingested_quantiles(risk.config.final_data_file, len(next(iter(reference.values()))))
    charts = {f["feature"]: distribution_svg(reference.get(f["feature"]), compared.get(f["feature"]))
              for f in drifted}
    return {"model_version": version, "charts": charts}
