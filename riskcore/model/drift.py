"""Drift: the model's F1 on new data against its baseline, and each feature's PSI and KS test.

One definition of each, used by the automation, the report and the API alike.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from riskcore.contract import FEATURES
from riskcore.model.drift_evidence import feature_values

DECILES = np.linspace(0.0, 1.0, 11)[1:-1]
SOME_SHIFT = 0.1  # PSI from here up to the threshold: worth watching, not drift
SHARE_FLOOR = 1e-4  # an empty bin counts as this share, so the logarithm stays finite


@dataclass(frozen=True)
class DriftVerdict:
    drift: bool
    test: str
    threshold: float
    reason: str


def drift_verdict(f1: float, baseline: float, history: list[float], test: str, min_history: int) -> DriftVerdict:
    """Compare the deployed model's F1 on new data with the configured test."""
    if test != "raw" and len(history) < min_history:
        verdict = drift_verdict(f1, baseline, history, "raw", min_history)
        return DriftVerdict(verdict.drift, "raw", verdict.threshold,
                            f"{verdict.reason} ({test} test needs {min_history} scores, history has {len(history)})")
    if test == "raw":
        threshold, rule = baseline, "baseline"
    elif test == "parametric":
        threshold = statistics.fmean(history) - 2 * statistics.stdev(history)
        rule = "mean - 2*std of history"
    else:
        q1, _, q3 = statistics.quantiles(history, n=4, method="inclusive")
        threshold, rule = q1 - 1.5 * (q3 - q1), "Q1 - 1.5*IQR of history"
    drift = f1 < threshold
    relation = "<" if drift else ">="
    outcome = "model drift" if drift else "no model drift"
    return DriftVerdict(drift, test, threshold, f"F1 {f1:.4f} {relation} {threshold:.4f} ({rule}): {outcome}")


def psi(sample, reference) -> float:
    """Population stability index of `sample` against `reference`, on the reference's deciles."""
    reference = np.asarray(reference, dtype="float64")
    sample = np.asarray(sample, dtype="float64")
    if len(reference) == 0 or len(sample) == 0:
        return 0.0
    edges = np.unique(np.quantile(reference, DECILES))
    expected = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    actual = np.bincount(np.searchsorted(edges, sample, side="right"), minlength=len(edges) + 1)
    expected = np.clip(expected / len(reference), SHARE_FLOOR, None)
    actual = np.clip(actual / len(sample), SHARE_FLOOR, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_drifted(value: float, threshold: float) -> bool:
    """The one comparison: a PSI at or above the threshold is drift."""
    return value >= threshold


def psi_label(value: float, threshold: float) -> str:
    if psi_drifted(value, threshold):
        return "drift"
    return "some shift" if value >= SOME_SHIFT else "stable"


def ks_test(sample, reference, reference_size: int) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and asymptotic p-value (scipy.stats).

    `reference` is a quantile sample standing for `reference_size` rows of training data, so the
    p-value is taken for that many rows, not for the length of the quantile sample.
    """
    statistic = float(stats.ks_2samp(sample, reference).statistic)
    n, m = len(sample), max(int(reference_size), 1)
    effective = round(n * m / (n + m))
    return statistic, float(stats.kstwo.sf(statistic, max(effective, 1)))


def data_drift(frame, profile: dict[str, Any], psi_threshold: float, ks_alpha: float) -> dict[str, Any]:
    """PSI and KS per feature between a model's training data (its quantile profile) and new rows."""
    features = {}
    for column in FEATURES:
        reference = profile["quantiles"][column]
        values = feature_values(frame, column)
        statistic, p_value = ks_test(values, reference, profile["rows"])
        index = psi(values, reference)
        features[column] = {"psi": round(index, 4), "psi_label": psi_label(index, psi_threshold),
                            "ks_statistic": round(statistic, 4), "ks_p_value": p_value,
                            "drift": psi_drifted(index, psi_threshold) or p_value < ks_alpha}
    return {"features": features, "drift": any(f["drift"] for f in features.values())}
