"""The report's evidence: the drift check that led to it, a retrain's old and new model on the same data, and the
performance estimated without labels beside the F1 the labels later realized, with the calibration.

riskcore.report.pdf places these in the headline, the trend section, the drift check's page and the estimates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reportlab.platypus import Paragraph

from riskcore.contract import FEATURE_LABELS, TEST_DATA
from riskcore.formatting import (
    BELOW_CHANCE,
    below_chance,
    count,
    few_rows_note,
    interval,
    number,
    psi_figure,
    score,
    sentence_case,
    when,
)
from riskcore.model.drift_evidence import (
    called_text,
    drift_rule_text,
    feature_drift_text,
    scored_rows,
    too_few_rows_text,
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
from riskcore.ops.history import no_holdout_reason, rows_text, worse_on_holdout
from riskcore.report.pdf_layout import Styles, data_table, escape, image

# The headline points to these sections by their titles, not by page numbers: the evidence flows, so a
# section's page moves with the call list's length and the history's (a fixed "page 3" was the headline's own).
DRIFT_SECTION = "Drift check: training data beside the new data"
RETRAIN_SECTION = "The retrain: old and new model on the same data"
SEE_DRIFT, SEE_RETRAIN = (f"(see “{title.split(':')[0]}” below)" for title in (DRIFT_SECTION, RETRAIN_SECTION))


@dataclass
class DriftEvidence:
    """The drift check a report names: the run that made it (from the run history) and what it compared."""

    check: dict[str, Any] | None  # the run history's row; None when no drift check is recorded yet
    recorded: bool  # the figures are the check's own (else computed for the report: deployed model, ingested data)
    model_version: str  # the model whose training data the new data was compared with
    figures: dict[str, dict[str, Any]]  # per feature: psi, psi_label, ks_statistic, ks_p_value, drift
    reference: dict[str, list[float]]  # that model's training-data quantiles; {} when its release is gone
    compared: dict[str, list[float]]  # quantiles of the data compared with them; {} when unknown
    compared_name: str  # what that data is, in words
    psi_threshold: float
    ks_alpha: float

    @property
    def drifted(self) -> list[str]:
        return [feature for feature, figures in self.figures.items() if figures.get("drift")]


def drift_check_lines(drift: DriftEvidence, deployed: str) -> list[str]:
    """The headline's account of the drift check that led to this report (or that there was none)."""
    check = drift.check
    lines = []
    if check is None:
        lines.append("No drift check is recorded in the run history yet.")
    else:
        name = f"run {check['run_number']}" if check.get("run_number") else f"run #{check.get('id')}"
        checked = escape(check.get("version_before") or drift.model_version)
        rows = scored_rows(check)
        recorded = str(check.get("drift_verdict") or "")
        if isinstance(check.get("f1_new_data"), (int, float)):
            counted = f"{rows:,} " if isinstance(rows, int) else ""
            labelled = "labelled " if isinstance(check.get("window_labelled"), int) else ""
            on_rows = f"model {checked} on the {counted}{labelled}new rows{few_rows_note(rows)}"
            if recorded.startswith("F1 "):  # the verdict gives the F1 and the baseline: said once
                scored, recorded = f"{on_rows}: {escape(recorded)}", ""
            else:
                scored = (f"model {checked} scored F1 {check['f1_new_data']:.4f} on the {counted}{labelled}new rows"
                          f"{few_rows_note(rows)} against its baseline {number(check.get('baseline'), 4)}")
        elif check.get("window_labelled"):  # labelled rows, but nobody who left among them
            scored = (f"model {checked} has no F1 on the {check['window_labelled']:,} labelled new rows: nobody left "
                      "among them, so F1 is undefined")
        else:
            scored = f"model {checked} had no labelled new rows to be scored on"
        verdict = f" ({escape(recorded)})" if recorded else ""
        decision = escape(check.get("decision") or "not recorded")
        before = check.get("version_before")
        # A report written during its own run comes before the run records the model it ended with.
        after = check.get("version_after") or (deployed if check.get("outcome") == "reporting" else None)
        if after and before and after != before:
            decision += f": model {escape(before)} replaced by {escape(after)}"
        called = called_text(check)
        lines.append(f"<b>Drift check that led to this report</b> ({name}, {escape(check.get('started_at'))}): "
                     f"{scored}{verdict}; decision: {decision}." + (f" {escape(called)}." if called else ""))
    if drift.recorded:
        new, reference = "the new rows", "the training data of the checked model"
    else:
        new, reference = escape(drift.compared_name), "the training data of the deployed model"
        if drift.figures:
            lines.append(f"No PSI or KS is recorded for it: the section “{DRIFT_SECTION.split(':')[0]}” below compares "
                         f"{reference} with {new}.")
    if drift.drifted:
        drifted = "; ".join(escape(feature_drift_text(FEATURE_LABELS.get(f, f), drift.figures[f], drift.ks_alpha))
                            for f in drift.drifted)
        lines.append(f"<b>Data drift</b> of {new} from {reference}: {drifted} {SEE_DRIFT}.")
    elif too_few_rows_text(drift.check) and drift.recorded:
        lines.append(escape(too_few_rows_text(drift.check)))
    elif drift.figures:
        lines.append(f"No data drift: every feature of {new} is close to {reference} {SEE_DRIFT}.")
    return lines


def drift_flow(drift: DriftEvidence, chart: bytes | None, styles: Styles, width: float) -> list:
    """The drift check's page: what it compared, its figures per feature, and the two distributions."""
    if not drift.figures:
        return [Paragraph("Not available: no drift check is recorded, and the deployed model carries no training "
                          "profile or no data is ingested yet.", styles.body)]
    check = drift.check
    where = (f"The drift check of run {check.get('run_number') or '#' + str(check.get('id'))} "
             f"({escape(check.get('started_at'))}), as the run history records it" if drift.recorded
             else "No PSI or KS is recorded in the run history; computed for this report with the automation's "
                  "own function")
    intro = Paragraph(
        f"{where}: the training data of model {escape(drift.model_version)} against "
        f"{'the new rows' if drift.recorded else escape(drift.compared_name)}. PSI (population stability index) "
        f"below 0.1 means stable; drift is {drift_rule_text(drift.psi_threshold, drift.ks_alpha)}.", styles.body)
    rows = [[FEATURE_LABELS.get(f, f), psi_figure(v["psi"], v.get("psi_label")), v.get("psi_label", ""),
             number(v.get("ks_statistic"), 3),
             "\N{EM DASH}" if v.get("ks_p_value") is None else f"{v['ks_p_value']:.2g}",
             verdict_text(v, drift.ks_alpha)] for f, v in drift.figures.items()]
    table = data_table(styles, ["feature", "PSI", "reading", "KS statistic", "KS p-value", "verdict"], rows,
                       [width * w for w in (0.25, 0.1, 0.14, 0.14, 0.14, 0.23)], right={1, 3, 4})
    flow: list = [intro, table]
    if chart is not None:
        flow += [image(chart, width), Paragraph(
            f"Filled bars: the training data of model {escape(drift.model_version)} (from the quantiles stored with "
            f"it). Outline: {escape(drift.compared_name)}. Where the two part, the clients have changed since that "
            "training and the model may no longer fit them.", styles.note)]
    else:
        flow.append(Paragraph(f"The training data of model {escape(drift.model_version)} is no longer kept in the "
                              "production folder, so only the recorded figures are shown.", styles.note))
    return flow


def score_cell(scores: dict[str, Any], key: str) -> str:
    """ "0.6900 [0.61, 0.76]": a figure with its bootstrap 95% interval; an AUC below 0.5 says so."""
    value, bounds = scores.get(key), scores.get(f"{key}_interval")
    if value is None:
        return "undefined (one class)"
    text = f"{value:.3f}" + interval(bounds)
    return text + (f" {BELOW_CHANCE}" if key == "auc" and below_chance(value) else "")


def retrain_flow(evaluation: dict[str, Any], styles: Styles, width: float) -> list:
    """The old and the new model of a retrain on the same data: the held-out new rows and the test data."""
    rows = []
    for key, name in (("holdout", "held-out new rows"), ("test_data", TEST_DATA)):
        figures = evaluation.get(key)
        if figures:
            rows.append([name, f"{figures['old']['rows']:,}{few_rows_note(figures['old']['rows'])}",
                         *(score_cell(figures[model], metric) for metric in ("f1", "auc") for model in ("old", "new"))])
    held = evaluation.get("holdout")
    how = (f"The held-out rows, {100 * held['share']:g}% of the labelled new rows (seed {held['seed']}), were left "
           "out of the new model's training: neither model saw them." if held else
           f"No row was held out ({no_holdout_reason(evaluation)}).")
    resamples = evaluation["test_data"]["old"].get("resamples", 0)
    flow = [
        Paragraph(f"<b>{RETRAIN_SECTION}</b>, the test data's market and the new "
                  "rows' market", styles.spaced),
        data_table(styles, ["data", "rows", "F1 old", "F1 new", "ROC AUC old", "ROC AUC new"], rows,
                   [width * w for w in (0.16, 0.08, 0.19, 0.19, 0.19, 0.19)], right={1, 2, 3, 4, 5}),
        Paragraph(f"Old: model {escape(evaluation['old_model'])}; new: {escape(evaluation['new_model'])}. {how} "
                  f"In brackets: bootstrap 95% intervals ({resamples:,} resamples, seeded).", styles.note),
    ]
    if evaluation.get("new_worse"):
        flow.append(Paragraph(f"<b>Flag:</b> {escape(worse_on_holdout(evaluation))}.", styles.body))
    return flow


def retrain_line(evaluation: dict[str, Any] | None, served: str | None = None) -> list[str]:
    """The headline's word on a retrain: old and new model on the held-out new rows, and its flag; where the `served`
    model is not the retrained one (a rollback since), it says so: "after it" is not the served model's figure."""
    held = (evaluation or {}).get("holdout")
    if not held:
        return []
    line = (f"<b>Old and new model on the held-out new rows</b> ({rows_text(held['old'])}): "
            f"F1 {held['old']['f1']:.4f} before the retrain, "
            f"{held['new']['f1']:.4f} after it {SEE_RETRAIN}.")
    retrained = evaluation.get("new_model")
    if served and retrained and served != retrained:
        line += (f" The model served now, {escape(served)}, is not the retrained one "
                 f"({escape(retrained)})" + (", but the one before it." if served == evaluation.get("old_model")
                                             else "."))
    if evaluation.get("new_worse"):
        line += f" <b>Flag:</b> {escape(worse_on_holdout(evaluation))}."
    return [line]


# --- Estimated and realized performance, calibration ---------------------------------------------
ESTIMATE_ROWS = 8  # the newest estimated windows in the report's table


def estimate_lines(check: dict[str, Any] | None, calibration: dict[str, Any] | None) -> list[str]:
    """The headline's word on the drift check's estimate (with its baseline and warning) or why it has none, its
    realized F1, and the served model's calibration (its metadata's record)."""
    lines = []
    run = check_estimate(check)
    missing = no_estimate_text(check)
    if missing:
        lines.append(f"<b>Estimated without labels</b> ({escape(check.get('started_at'))}): {escape(missing)}.")
    if run is not None:
        warning = "<b>Warning: estimated drift.</b> " if run.get("estimated_drift") else ""
        line = (f"{warning}<b>Estimated without labels</b> ({escape(run.get('started_at'))}): "
                f"{escape(estimate_text(run))}.")
        realized = realized_text(run)
        lines.append(line + (f" {escape(sentence_case(realized))}." if realized else ""))
    calibrator = calibrator_text(calibration)
    if calibrator:
        lines.append(f"<b>Calibration</b> of the served model's probabilities: {escape(calibrator)}.")
    return lines


def interval_text(run: dict[str, Any]) -> str:
    return score(run.get("estimated_f1"), 2) + interval(run.get("estimated_f1_interval"))


def estimate_flow(runs: list[dict[str, Any]], chart: bytes | None, styles: Styles, width: float) -> list:
    """Estimated against realized F1 per window, newest first, and the newest labelled window's reliability diagram;
    [] when no run estimated anything and no window was labelled."""
    estimated = [run for run in runs if isinstance(run.get("estimated_f1"), (int, float))][::-1][:ESTIMATE_ROWS]
    flow: list = []
    if estimated:
        rows = [[when(run.get("started_at")), count(run.get("estimated_rows")), interval_text(run),
                 score(run.get("estimated_baseline"), 2), "yes" if run.get("estimated_drift") else "no",
                 score(run.get("realized_f1"), 2), count(run.get("realized_rows"))] for run in estimated]
        flow += [
            data_table(styles, ["window", "clients", "estimated F1", "baseline", "warning", "realized F1",
                                "labelled"], rows,
                       [width * w for w in (0.21, 0.11, 0.18, 0.11, 0.11, 0.13, 0.15)], right={1, 2, 3, 5, 6}),
            Paragraph("Estimated from the calibrated probabilities of every client of the window, labelled or not "
                      "(in brackets: its interval); realized once the labels of the same clients arrive. A change "
                      "in who leaves for the same features is invisible to the estimate: the realized F1 shows it.",
                      styles.note)]
    labelled = latest_calibrated(runs)
    if labelled is not None and chart is not None:
        whose = f" (model {escape(labelled['version_before'])})" if labelled.get("version_before") else ""
        flow += [image(chart, width * 0.45),
                 Paragraph(f"{escape(sentence_case(calibration_text(labelled['calibration']) or 'calibration'))}, "
                           f"window of {escape(when(labelled.get('started_at')))}{whose}: per bin of clients, the "
                           "predicted share leaving against the share who left; on the dashed diagonal the "
                           "probabilities are exact.", styles.note)]
    return flow
