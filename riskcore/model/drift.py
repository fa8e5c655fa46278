"""Drift: the model's F1 on new data against its baseline, and each feature's PSI and KS test.

One definition of each, used by the automation, the report and the API alike.

The default model-drift test ("significance") compares the evidence window's confusion counts with
the baseline's (the model measured on held-out rows of its own market) by a permutation test: under
"nothing changed", the baseline's and the window's (label, prediction) pairs are draws of one
distribution, so every split of the pooled pairs into groups of the two sizes is equally likely.
F1 depends on the four confusion counts alone, so a split is a draw of the window's counts from
the pooled ones (a multivariate hypergeometric draw): exact for small groups, where F1, a ratio, is
far from normal, and about a millisecond for 10,000 permutations.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from riskcore.contract import FEATURES
from riskcore.model.drift_evidence import MIN_DRIFT_ROWS, OWN_MARKET, TOO_FEW_ROWS, feature_values

DECILES = np.linspace(0.0, 1.0, 11)[1:-1]
SOME_SHIFT = 0.1  # PSI from here up to the threshold: worth watching, not drift
SHARE_FLOOR = 1e-4  # an empty bin counts as this share, so the logarithm stays finite
PERMUTATIONS = 10_000
PERMUTATION_SEED = 0


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


@dataclass(frozen=True)
class Counts:
    """A confusion matrix as four counts: all F1 needs, and what a baseline keeps for later tests."""

    tp: int
    fp: int
    fn: int
    tn: int

    @classmethod
    def of(cls, labels, predictions) -> Counts:
        labels = np.asarray(labels, dtype=bool)
        predictions = np.asarray(predictions, dtype=bool)
        return cls(int((labels & predictions).sum()), int((~labels & predictions).sum()),
                   int((labels & ~predictions).sum()), int((~labels & ~predictions).sum()))

    @classmethod
    def from_dict(cls, counts: dict[str, int]) -> Counts:
        return cls(*(int(counts[k]) for k in ("tp", "fp", "fn", "tn")))

    def as_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}

    @property
    def rows(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def positives(self) -> int:
        return self.tp + self.fn

    @property
    def f1(self) -> float | None:
        """F1 of the positive class; None without a client who left (it is undefined, not 0)."""
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.positives else None


def f1_of_counts(tp, fp, fn) -> np.ndarray:
    """F1 of many confusion counts at once; 0 where no row is positive or predicted positive."""
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(np.shape(tp)), where=denominator > 0)


@dataclass(frozen=True)
class DropTest:
    """The window's F1 against the baseline's: the drop, its p-value, and the verdict."""

    drift: bool
    baseline_f1: float
    window_f1: float
    drop: float
    p_value: float
    reason: str


def significant_drop(baseline: Counts, window: Counts, min_drop: float, alpha: float,
                     baseline_name: str | None = None,
                     permutations: int = PERMUTATIONS, seed: int = PERMUTATION_SEED) -> DropTest:
    """Model drift when the window's F1 is below the baseline's by at least min_drop, and significantly so.

    One-sided permutation test of "the window's F1 is as good as the baseline's" (see the module's
    docstring); p = (1 + permutations with a drop at least the one seen) / (1 + permutations).
    Both groups need a client who left (callers wait until the window has min_positives).
    """
    base_f1, window_f1 = baseline.f1, window.f1
    if base_f1 is None or window_f1 is None:
        raise ValueError("the significance test needs a client who left in the baseline and in the window")
    pooled = np.array([baseline.tp, baseline.fp, baseline.fn, baseline.tn]) + \
        np.array([window.tp, window.fp, window.fn, window.tn])
    drawn = np.random.default_rng(seed).multivariate_hypergeometric(pooled, window.rows, size=permutations)
    rest = pooled - drawn
    drops = f1_of_counts(rest[:, 0], rest[:, 1], rest[:, 2]) - f1_of_counts(drawn[:, 0], drawn[:, 1], drawn[:, 2])
    drop = base_f1 - window_f1
    p_value = float((1 + np.count_nonzero(drops >= drop - 1e-12)) / (1 + permutations))
    drift = drop >= min_drop and p_value < alpha
    measured = (f"F1 {window_f1:.4f} on {window.rows:,} labelled rows ({window.positives:,} left) against "
                f"{base_f1:.4f} on {baseline_name or f'{OWN_MARKET} ({baseline.rows:,} rows)'}: ")
    if drift:
        verdict = f"a drop of {drop:.4f} (p {p_value:.3g} < {alpha:g}): model drift"
    elif drop < min_drop:
        verdict = f"a drop of {drop:.4f}, less than {min_drop:g}: no model drift" if drop > 0 else \
            "no drop: no model drift"
    else:
        verdict = f"a drop of {drop:.4f}, not significant (p {p_value:.3g} >= {alpha:g}): no model drift"
    return DropTest(drift, base_f1, window_f1, drop, p_value, measured + verdict)


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


def psi_label(value: float, threshold: float, rows: int | None = None) -> str:
    if rows is not None and rows < MIN_DRIFT_ROWS:
        return TOO_FEW_ROWS
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
    """PSI and KS per feature between a model's training data (its quantile profile) and new rows.

    The one verdict rule: a feature drifted when its PSI is at or above the threshold or its KS
    p-value below ks_alpha, on at least MIN_DRIFT_ROWS values; on fewer it is "too few rows".
    """
    features = {}
    for column in FEATURES:
        reference = profile["quantiles"][column]
        values = feature_values(frame, column)
        statistic, p_value = ks_test(values, reference, profile["rows"])
        index = psi(values, reference)
        enough = len(values) >= MIN_DRIFT_ROWS
        features[column] = {"psi": round(index, 4), "psi_label": psi_label(index, psi_threshold, len(values)),
                            "ks_statistic": round(statistic, 4), "ks_p_value": p_value, "rows": int(len(values)),
                            "drift": enough and (psi_drifted(index, psi_threshold) or p_value < ks_alpha)}
    return {"features": features, "drift": any(f["drift"] for f in features.values()),
            "rows": int(len(frame)), "too_few_rows": len(frame) < MIN_DRIFT_ROWS}
