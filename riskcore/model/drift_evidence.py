"""Drift evidence, defined once: which run is the latest drift check, the quantiles and chart bins that
show what it compared, and the words that say what it found.

The PDF report (riskcore.report), the web page (riskcore.api) and the run history's log line and table
(riskcore.ops.history) all take them from here, so they describe the same check in the same words; the
words for its estimate without labels and the calibration behind it are riskcore.model.estimate_words'.
Standard library at import (the history and the no-op tick import this module): numpy is imported by
the functions that compute.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riskcore.contract import FEATURES, UserError
from riskcore.formatting import plural, psi_figure, score

log = logging.getLogger(__name__)

NEW_ROWS_POINTS = 101  # quantiles a run records of its new rows: enough to draw them, small in the history
BINS = 40  # bars of a distribution chart, on the page and in the PDF
TOP_SHARE = 0.99  # a chart ends at the 99th percentile of either data set: the top 1% fall in its last bar
# PSI on deciles wants at least 5 rows expected in each of its 10 bins; on fewer rows a feature's
# PSI and KS are shown but never called drift ("too few rows"). The estimate without labels keeps the
# same minimum before it may warn: its bootstrap interval on a handful of rows is no interval (5
# same-market rows all predicted to stay give [0.00, 0.00], and warned in about 1 window in 5).
MIN_DRIFT_ROWS = 50
TOO_FEW_ROWS = "too few rows"


# --- The latest drift check ----------------------------------------------------------------------
def recorded_figures(row: dict[str, Any] | None) -> dict[str, Any]:
    """The PSI and KS per feature a run recorded; {} when it recorded none (no new rows, an older history)."""
    drift = (row or {}).get("data_drift")
    return (drift.get("features") or {}) if isinstance(drift, dict) else {}


def is_drift_check(row: dict[str, Any]) -> bool:
    """A run made a drift check when it measured something on new rows: an F1, an estimate without labels, or PSI
    and KS per feature."""
    return any(isinstance(row.get(column), (int, float)) for column in ("f1_new_data", "estimated_f1")) \
        or bool(recorded_figures(row))


def latest_check(runs: list[dict[str, Any]], run_number: int | None = None) -> dict[str, Any] | None:
    """The run-history row the page, the PDF and the history describe as the drift check: the check of run
    `run_number` when given and recorded, else the latest check. `runs` oldest first, as read_history gives them."""
    checks = [row for row in runs if is_drift_check(row)]
    own = [row for row in checks if run_number is not None and row.get("run_number") == run_number]
    return (own or checks or [None])[-1]


def checked_rows(check: dict[str, Any]) -> int | None:
    """The rows a check took: its evidence window (window_rows: the new rows since the last decision), else its new
    rows (rows_new), or for runs recorded before those columns, all it ingested."""
    for column in ("window_rows", "rows_new", "rows_ingested"):
        if check.get(column) is not None:
            return check[column]
    return None


def checked_clients(check: dict[str, Any]) -> int | None:
    """The clients a check's rows were snapshots of, each counted once (window_clients: what its estimate took);
    None for runs recorded before they were counted."""
    clients = check.get("window_clients")
    return clients if isinstance(clients, int) else None


def checked_rows_text(check: dict[str, Any]) -> str | None:
    """ "19,891 new rows of 10,000 clients" where clients repeat in the check's rows (two exports of the same
    clients), else "425 new rows"; None when it took none. A window that carried rows over from runs that waited
    says so, beside the run's own new rows (the history's "new rows"): "10,040 new rows since the last decision
    (40 in this run), of 10,000 clients"."""
    rows, clients = checked_rows(check), checked_clients(check)
    if not rows:
        return None
    own = check.get("rows_new")
    repeated = f" of {clients:,} clients" if clients is not None and clients < rows else ""
    if check.get("window_rows") == rows and isinstance(own, int) and own < rows:
        return f"{rows:,} new rows since the last decision ({own:,} in this run)" + ("," if repeated else "") + repeated
    return f"{rows:,} new rows{repeated}"


def scored_rows(check: dict[str, Any]) -> int | None:
    """The rows a check's F1 was measured on: its window's labelled rows (window_labelled), else for runs recorded
    before that column, the rows it took. A window of an unlabelled export and 10 labelled rows: 10."""
    labelled = check.get("window_labelled")
    return labelled if isinstance(labelled, int) else checked_rows(check)


# --- Quantiles -----------------------------------------------------------------------------------
def feature_values(frame, column: str):
    """A feature's values as a float array, missing ones (null, NaN, infinite) dropped: the one rule for the
    drift statistics, the training profile and the charts. A pandas or a polars frame."""
    import numpy as np

    series = frame[column]
    if hasattr(series, "drop_nulls"):  # polars: a null becomes NaN on the way to numpy
        series = series.cast(float)
    values = np.asarray(series.to_numpy(), dtype="float64")
    return values[np.isfinite(values)]


def quantiles_of(frame, count: int) -> dict[str, list[float]]:
    """Each feature's `count` evenly spaced quantiles (rounded to 6 decimals) of its values present; the missing
    ones are counted in the log. A feature with no value present has none."""
    import numpy as np

    points = np.linspace(0.0, 1.0, count)
    quantiles = {}
    for feature in FEATURES:
        values = feature_values(frame, feature)
        missing = len(frame) - len(values)
        if missing:
            log.info("%d of %d values of %s are missing: left out of its quantiles", missing, len(frame), feature)
        if len(values):
            quantiles[feature] = np.quantile(values, points).round(6).tolist()
    return quantiles


def training_quantiles(prod: Path, version: str, deployed=None) -> dict[str, list[float]]:
    """The training-data quantiles of model `version`: the `deployed` release's (a Deployment) when it holds that
    model, else those of the newest release still kept in `prod` that does; {} (and a log line) when none does."""
    from riskcore.release.load import deployed_metadata, deployment_history, read_release

    try:
        if deployed is None or deployed.model_version != version:
            found = [item["release"] for item in deployment_history(prod) if item["model_version"] == version]
            if not found:
                log.info("model %s is in no release kept in %s: its training data is not shown", version, prod)
                return {}
            deployed = read_release(prod, found[-1])
        metadata = deployed_metadata(deployed)
    except (UserError, ValueError, KeyError) as exc:
        log.warning("the training data of model %s cannot be shown: %s", version, exc)
        return {}
    return (metadata.get("training_profile") or {}).get("quantiles") or {}


# --- Chart bins ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bins:
    """Two distributions on the same bins: the edges, and each data set's share of its rows in each bin."""

    edges: Any  # BINS + 1 values, from the lowest value of either to the TOP_SHARE quantile of either
    reference: Any  # the training data's shares
    compared: Any  # the compared data's shares


def quantile_masses(quantiles, edges):
    """The share of the data in each bin between `edges`, from its evenly spaced quantiles.

    The data's distribution function is taken as linear between quantiles (ties make a jump), the
    first bin starts below everything and the last takes everything above it.
    """
    import numpy as np

    values = np.asarray(quantiles, dtype=np.float64)
    cdf = np.interp(edges, values, np.linspace(0.0, 1.0, len(values)))
    cdf[0], cdf[-1] = 0.0, 1.0
    return np.diff(cdf)


def distribution_bins(reference, compared) -> Bins | None:
    """The chart of one feature, as numbers: both data sets (their quantiles) on BINS bins from the lowest value to
    the TOP_SHARE quantile of either; None when either has fewer than two quantiles."""
    import numpy as np

    old = np.asarray(reference if reference is not None else [], dtype=np.float64)
    new = np.asarray(compared if compared is not None else [], dtype=np.float64)
    if len(old) < 2 or len(new) < 2:
        return None
    low = float(min(old[0], new[0]))
    top = float(max(np.interp(TOP_SHARE, np.linspace(0, 1, len(q)), q) for q in (old, new)))
    edges = np.linspace(low, top if top > low else low + 1.0, BINS + 1)
    return Bins(edges=edges, reference=quantile_masses(old, edges), compared=quantile_masses(new, edges))


def last_bar_text() -> str:
    """ "the top 1%": what a chart's last bar holds beyond its own range."""
    return f"the top {100 * (1 - TOP_SHARE):.2g}%"


# --- The words -----------------------------------------------------------------------------------
def flagged_by(figures: dict[str, Any], ks_alpha: float) -> tuple[str, ...]:
    """The tests that found a feature drifted, from what its check recorded: ("PSI",), ("KS",), both, or ().

    The recorded verdict decides whether it drifted (a PSI at or above the threshold, or a KS p-value below
    alpha: riskcore.model.drift.data_drift); its PSI reading says whether PSI did, so a drift PSI did not
    find is KS's; whether KS found one that PSI found too is its p-value against `ks_alpha` (automation.ks_alpha).
    """
    if not figures.get("drift"):
        return ()
    by_psi = figures.get("psi_label") == "drift"
    p_value = figures.get("ks_p_value")
    by_ks = not by_psi or (p_value is not None and p_value < ks_alpha)
    return tuple(test for test, found in (("PSI", by_psi), ("KS", by_ks)) if found)


def verdict_text(figures: dict[str, Any], ks_alpha: float) -> str:
    """ "drift by KS", "drift by PSI and KS", or "no drift": a feature's verdict, naming the tests that found it."""
    tests = flagged_by(figures, ks_alpha)
    return f"drift by {' and '.join(tests)}" if tests else "no drift"


def figures_text(figures: dict[str, Any]) -> str:
    """ "PSI 1.250 (drift), KS 0.327 (p 1.8e-216)": a feature's recorded figures."""
    p_value = figures.get("ks_p_value")
    ks = "" if figures.get("ks_statistic") is None else (
        f", KS {figures['ks_statistic']:.3f}" + ("" if p_value is None else f" (p {p_value:.2g})"))
    psi = "PSI ?" if figures.get("psi") is None else f"PSI {psi_figure(figures['psi'], figures.get('psi_label'))}"
    label = f" ({figures['psi_label']})" if figures.get("psi_label") else ""
    return f"{psi}{label}{ks}"


def feature_drift_text(name: str, figures: dict[str, Any], ks_alpha: float) -> str:
    """One feature's line: "lastmonth_activity PSI 1.250 (drift), KS 0.327 (p 1.8e-216): drift by PSI and KS"."""
    verdict = f": {verdict_text(figures, ks_alpha)}" if figures.get("drift") else ""
    return f"{name} {figures_text(figures)}{verdict}"


def data_drift_text(data_drift: dict[str, Any] | None, ks_alpha: float) -> str:
    """PSI and KS of every feature in one line, as the drift check's log line gives them."""
    features = (data_drift or {}).get("features") or {}
    if not features:
        return "not measured"
    return "; ".join(feature_drift_text(name, figures, ks_alpha) for name, figures in features.items())


def too_few_rows_text(check: dict[str, Any] | None) -> str | None:
    """ "Too few rows to tell whether the data drifted: the check took 5 rows, fewer than 50." (None: enough rows, or
    no data drift measured): on so few, "no feature drifted" would be a claim without evidence."""
    drift = (check or {}).get("data_drift")
    if not isinstance(drift, dict) or not drift.get("too_few_rows"):
        return None
    return (f"Too few rows to tell whether the data drifted: the check took {int(drift.get('rows') or 0):,} rows, "
            f"fewer than {MIN_DRIFT_ROWS}.")


def drift_rule_text(psi_threshold: float, ks_alpha: float) -> str:
    """The rule in words: "a PSI at or above 0.25 or a Kolmogorov-Smirnov (KS) p-value below 0.01"."""
    return f"a PSI at or above {psi_threshold:g} or a Kolmogorov-Smirnov (KS) p-value below {ks_alpha:g}"


def called_text(row: dict[str, Any]) -> str | None:
    """ "3 rows of clients who were called left out of the drift check's window" (None: none left out)."""
    called = row.get("window_called")
    if not called:
        return None
    rows = plural(called, "row of a client who was", "rows of clients who were")
    return f"{rows} called left out of the drift check's window"


def training_choice_text(record: dict[str, Any] | None) -> str | None:
    """Which rows a retrain learnt from, and why, from its metadata's "candidates" record: "the recent rows (the
    window and the newest 2,000), 2,400 rows: F1 0.8558 on the 600 held-out rows, against every labelled row
    (9,820 rows) 0.7186". None: no record, or one candidate only (nothing was chosen)."""
    if not isinstance(record, dict) or len(record.get("candidates") or []) < 2:
        return None
    chosen = next((c for c in record["candidates"] if c.get("name") == record.get("chosen")), None)
    if chosen is None:
        return None
    others = "; ".join(f"{c['name']} ({int(c['rows']):,} rows) {score(c['holdout_f1'])}"
                       for c in record["candidates"] if c is not chosen)
    return (f"{chosen['name']}, {int(chosen['rows']):,} rows: F1 {score(chosen['holdout_f1'])} on the "
            f"{int(record.get('holdout_rows') or 0):,} held-out rows, against {others}")


OWN_MARKET = "held-out rows of its own market"  # what the drift baseline is measured on, in every output (issue 19.7)


def drift_baseline(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The F1 the model's drift checks compare with: measured on held-out rows of its own market when it was trained
    (modelmetadata.json's "baseline"); None for a model trained before it was recorded."""
    baseline = metadata.get("baseline")
    return baseline if isinstance(baseline, dict) and baseline.get("f1") is not None else None


def baseline_rows(baseline: dict[str, Any]) -> str:
    """Which rows a drift baseline (modelmetadata.json's "baseline") was measured on, said once: "2,000 rows of the
    new market, left out of its training", "its training data by 5-fold cross-validation (the newest 2,000 of its
    10,000 rows)", "5 rows of the test data, testdata.csv". Its source without the why (baseline_text gives it) and
    without a second "held-out rows of": OWN_MARKET says that ("held-out rows of its own market (held-out rows of
    the new market …)" read twice on the page and the PDF)."""
    what = (baseline.get("source") or "").partition(": ")[0].removeprefix("held-out rows of ")
    rows = baseline.get("rows")
    if rows and f"{int(rows):,}" not in what:
        what = f"{int(rows):,} rows of {what}" if what else f"{int(rows):,} rows"
    return what


def baseline_where(baseline: dict[str, Any]) -> str:
    """ "held-out rows of its own market (2,000 rows of the new market, left out of its training)"."""
    rows = baseline_rows(baseline)
    return f"{OWN_MARKET} ({rows})" if rows else OWN_MARKET


def baseline_text(baseline: dict[str, Any], why: bool = False) -> str:
    """A drift baseline in words, the one sentence the page, the PDF and the drift checks share: "F1 0.8429 on held-out
    rows of its own market (2,000 rows of the new market, left out of its training)"; with `why`, why those rows
    where its source says ("…, as the test data, testdata.csv, is of another market (…)")."""
    reason = (baseline.get("source") or "").partition(": ")[2] if why else ""
    return f"F1 {score(baseline['f1'])} on {baseline_where(baseline)}" + (f", as {reason}" if reason else "")
