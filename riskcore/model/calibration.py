"""Calibration: the model's probabilities made honest, how well calibrated they are, and what they estimate.

The logistic regression on raw counts is not calibrated: its probabilities pile up near 0 and 1. A
calibrator maps the model's log-odds to the share of clients who actually left, fitted on labelled
rows the model never learnt from (riskcore.model.training says which; a retrain whose held-out rows
are too few adds its training rows' out-of-fold log-odds, as CalibratedClassifierCV(ensemble=False)
does): isotonic regression, or Platt
scaling (a logistic regression on the log-odds) where isotonic is not better. The two are compared
honestly by cross-fitting: each is fitted on one half of the rows and measured on the other, and
the one with the lower expected calibration error (ECE, on CALIBRATION_BINS equal-count bins) is
kept, then refitted on every row; unless the model's own probabilities (fitted on none of these
rows) are at least as well calibrated, when they are kept as they are (method "model": a model
that learnt only its own market often is). With too few rows (or a single class) the
probabilities stay the model's own too (method "none", and nothing is estimated from them).
Calibration changes probabilities only: the model's class predictions (the course's F1) and the
order of the call list (by log-odds) are the model's.

A fitted calibrator claims no more certainty than the rows behind it: each of its probabilities is
the rule of succession's (Laplace's) estimate for those rows, (k + 1) / (m + 2) where k of m rows
left, the posterior mean of a share under a uniform prior. Isotonic regression's blocks are
estimated so (a top block of 20 leavers reads 21/22, 95.5%, never 100%), then pooled again by
isotonic regression wherever shrinking a small block carried it past its neighbour; Platt scaling's
curve, fitted on n rows, is held within [1 / (n + 2), (n + 1) / (n + 2)], what n rows that all
agreed would give. So a calibrator fitted on fewer than 998 rows never reads "<0.1%" or ">99.9%"
(riskcore.formatting.percent). The cross-fitted comparison measures the calibrators so bounded
(each half's by its own rows). On datagen months (a retrain of both markets and a new-market model,
calibrated on 150-2,000 held-out rows, ten seeds, new-market and shifted months of 3,000 clients)
the kept calibrators' held-out ECE averaged 0.0286 against 0.0287 unbounded; alone, the bounded
isotonic's 0.0316 against 0.0319, the bounded Platt's 0.0279 against 0.0276 (the generator's surest
clients do leave at more than 99.9%, which a few hundred rows cannot show). The model's own
probabilities (method "model" or "none") are not bounded: they are the model's, learnt from its
training rows.

From calibrated probabilities, a window's performance is estimated without labels (confidence-based
performance estimation, as NannyML's CBPE): each row contributes its probability to TP or FN, by the
model's prediction, and its complement to FP or TN. Such an estimate holds while the rule of who
leaves for given features holds; a change in that rule is invisible to it (the ledger in
riskcore.ops.drift_check catches it when the labels arrive).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from riskcore.model.drift_evidence import MIN_DRIFT_ROWS

CALIBRATION_BINS = 10  # equal-count bins of the expected calibration error and the reliability diagram
CALIBRATION_SEED = 0
MIN_CALIBRATION_ROWS = 100  # fewer held-out rows, or fewer than MIN_CALIBRATION_CLASS of either class: no calibrator
MIN_CALIBRATION_CLASS = 10
CALIBRATION_FOLDS = 5  # a retrain's out-of-fold log-odds, where its held-out rows are too few (riskcore.model.training)
ESTIMATE_RESAMPLES = 1000
ESTIMATE_SEED = 0
RESAMPLE_BATCH = 100  # resamples drawn at once: bounds the memory of the bootstrap (rows x this many indices)
NORMAL_ROWS = 2000  # from this many rows the estimate's interval is its standard error's, below it a bootstrap's
PLAIN_ROWS = 16  # fewer rows than this are scored by linear_log_odds, without scikit-learn's checks of each call


def linear_log_odds(estimator, matrix) -> np.ndarray:
    """A fitted binary linear estimator's decision_function of a float64 matrix, by the library's own arithmetic
    (sklearn.linear_model's: matrix @ coef_.T + intercept_, flattened), without the checks it makes on each call.

    For a few rows those checks are nearly all the cost: for one record the served model's decision_function took
    74 µs and the Platt calibrator's predict_proba 93 µs, the arithmetic here 2-3 µs (the rest: narwhals looking for
    a dataframe, feature names, finite values, the fitted state). That was half of what POST /prediction of one
    record costs beyond GET /health, and two such requests pinned to one gunicorn worker missed the bench's
    one-record target (docs/benchmarks.md, "2026-12-06, 19:00 UTC"). Only for rows already checked (a request's
    records, riskcore.data.contract_rules; the model's own log-odds); the same numbers, bit for bit (tests/test_app.py).
    """
    return (matrix @ estimator.coef_.T + estimator.intercept_).reshape(-1)


@dataclass(frozen=True)
class Calibrator:
    """A fitted map from the model's log-odds to a calibrated probability of leaving."""

    method: str  # "isotonic", "platt", "model" (the model's own, measured best) or "none" (too few rows to fit one)
    estimator: Any = None
    bounds: tuple[float, float] = (0.0, 1.0)  # a fitted calibrator's: succession_bounds of its rows (module docstring)

    def probability(self, log_odds) -> np.ndarray:
        """Calibrated probabilities of leaving for the model's log-odds (decision_function)."""
        log_odds = np.asarray(log_odds, dtype="float64")
        if self.method == "isotonic":
            return np.clip(self.estimator.predict(log_odds), *self.bounds)
        if self.method == "platt":
            if len(log_odds) < PLAIN_ROWS:  # predict_proba's class-1 column, by its own arithmetic (linear_log_odds)
                return np.clip(expit(linear_log_odds(self.estimator, log_odds.reshape(-1, 1))), *self.bounds)
            return np.clip(self.estimator.predict_proba(log_odds.reshape(-1, 1))[:, 1], *self.bounds)
        return expit(log_odds)


UNCALIBRATED = Calibrator("none")


def calibrated_probability(calibrator: Calibrator | None, log_odds) -> np.ndarray:
    """The one probability the system shows: calibrated, or the model's own where it has no calibrator."""
    return (calibrator or UNCALIBRATED).probability(log_odds)


def calibrator_bytes(calibrator: Calibrator) -> bytes:
    return pickle.dumps(calibrator, protocol=pickle.HIGHEST_PROTOCOL)


def load_calibrator_bytes(data: bytes) -> Calibrator:
    """Unpickle a calibrator whose bytes have already been verified against their recorded sha256."""
    return pickle.loads(data)  # noqa: S301 - only after the sha256 check


# --- How well calibrated -------------------------------------------------------------------------
def _equal_count_bins(probabilities, labels, bins: int):
    """Per equal-count bin (by probability): rows, mean probability, share who left."""
    p = np.asarray(probabilities, dtype="float64")
    y = np.asarray(labels, dtype="float64")
    order = np.argsort(p, kind="stable")
    which = (np.arange(len(p)) * bins) // max(len(p), 1)
    rows = np.bincount(which, minlength=bins)
    sums_p = np.bincount(which, weights=p[order], minlength=bins)
    sums_y = np.bincount(which, weights=y[order], minlength=bins)
    filled = rows > 0
    return rows[filled], sums_p[filled] / rows[filled], sums_y[filled] / rows[filled]


def expected_calibration_error(probabilities, labels, bins: int = CALIBRATION_BINS) -> float:
    """ECE: the row-weighted mean gap between predicted and observed share leaving, on equal-count bins."""
    if len(probabilities) == 0:
        return float("nan")
    rows, predicted, observed = _equal_count_bins(probabilities, labels, bins)
    return float(np.sum(rows * np.abs(predicted - observed)) / rows.sum())


def brier_score(probabilities, labels) -> float:
    """Mean squared difference between the probability and the outcome (0 or 1)."""
    p = np.asarray(probabilities, dtype="float64")
    return float(np.mean((p - np.asarray(labels, dtype="float64")) ** 2)) if len(p) else float("nan")


def calibration_figures(probabilities, labels) -> dict[str, Any]:
    """ECE and Brier score with the rows they were measured on, and the reliability diagram's points."""
    rows, predicted, observed = _equal_count_bins(probabilities, labels, CALIBRATION_BINS)
    return {"ece": expected_calibration_error(probabilities, labels), "brier": brier_score(probabilities, labels),
            "rows": int(len(probabilities)), "bins": CALIBRATION_BINS,
            "reliability": [{"predicted": float(p), "observed": float(o), "rows": int(n)}
                            for n, p, o in zip(rows, predicted, observed, strict=True)]}


# --- Fitting -------------------------------------------------------------------------------------
def too_few_to_calibrate(labels) -> bool:
    """Fewer than MIN_CALIBRATION_ROWS labelled rows, or fewer than MIN_CALIBRATION_CLASS of either class."""
    positives = int(np.sum(labels))
    return len(labels) < MIN_CALIBRATION_ROWS or min(positives, len(labels) - positives) < MIN_CALIBRATION_CLASS


def succession_bounds(rows: int) -> tuple[float, float]:
    """The rule of succession's estimates for `rows` rows that all stayed and all left: 1/(n+2), (n+1)/(n+2)."""
    return 1.0 / (rows + 2), (rows + 1.0) / (rows + 2)


def _fit(method: str, log_odds, labels) -> Calibrator:
    """A calibrator of one method fitted on these rows, its probabilities bounded by them (module docstring)."""
    bounds = succession_bounds(len(labels))
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        steps = IsotonicRegression(out_of_bounds="clip").fit(log_odds, labels)
        # The rows sharing a fitted value are one block (isotonic blocks' means strictly increase).
        _, block, rows = np.unique(steps.predict(log_odds), return_inverse=True, return_counts=True)
        succession = (np.bincount(block, weights=labels) + 1.0) / (rows + 2)
        pooled = IsotonicRegression(out_of_bounds="clip").fit(log_odds, succession[block])
        return Calibrator(method, pooled, bounds)
    from sklearn.linear_model import LogisticRegression

    # Platt scaling: one feature, so liblinear's exact coordinate descent (its intercept's penalty, 1/C, is nil).
    # The default L-BFGS's steps each woke OpenBLAS's second thread: 1-16 ms a fit on two cores, under 1 ms here.
    platt = LogisticRegression(C=1e6, solver="liblinear")
    return Calibrator(method, platt.fit(np.reshape(log_odds, (-1, 1)), labels), bounds)


def _halves(labels, seed: int) -> np.ndarray:
    """A seeded split of the rows in two halves, each class shared evenly between them."""
    half = np.zeros(len(labels), dtype=bool)
    rng = np.random.default_rng(seed)
    for value in (0, 1):
        rows = rng.permutation(np.flatnonzero(labels == value))
        half[rows[: len(rows) // 2]] = True
    return half


def cross_fitted(method: str, log_odds, labels, seed: int) -> np.ndarray:
    """Each row's calibrated probability from the calibrator fitted on the other half of the rows."""
    half = _halves(labels, seed)
    out = np.empty(len(labels))
    for part in (half, ~half):
        out[~part] = _fit(method, log_odds[part], labels[part]).probability(log_odds[~part])
    return out


def fit_calibrator(log_odds, labels, source: str, seed: int = CALIBRATION_SEED) -> tuple[Calibrator, dict[str, Any]]:
    """The better of isotonic and Platt scaling on held-out labelled rows (or the model's own probabilities, where
    neither calibrates them better), and the record of the choice.

    The record (kept in modelmetadata.json as "calibration") gives the ECE and Brier score of the
    model's own probabilities on these rows ("before") and of the chosen calibrator's cross-fitted
    probabilities ("after": each row calibrated by a calibrator that did not see it).
    """
    log_odds = np.asarray(log_odds, dtype="float64")
    labels = np.asarray(labels, dtype="int64")
    positives = int(labels.sum())
    record: dict[str, Any] = {"source": source, "rows": int(len(labels)), "positives": positives,
                              "bins": CALIBRATION_BINS, "seed": seed}
    raw = expit(log_odds)
    if len(labels):
        record["before"] = {"ece": expected_calibration_error(raw, labels), "brier": brier_score(raw, labels)}
    if too_few_to_calibrate(labels):
        record.update(method="none", after=record.get("before"),
                      reason=f"{len(labels):,} held-out rows, {positives:,} of whom left: calibration needs "
                             f"{MIN_CALIBRATION_ROWS} rows and {MIN_CALIBRATION_CLASS} of each class; "
                             "the probabilities are the model's own")
        return UNCALIBRATED, record
    # scikit-learn's checks of finite values and constant settings are skipped: the log-odds come from the model.
    import sklearn

    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        candidates = {}
        for method in ("isotonic", "platt"):
            calibrated = cross_fitted(method, log_odds, labels, seed)
            candidates[method] = {"ece": expected_calibration_error(calibrated, labels),
                                  "brier": brier_score(calibrated, labels)}
        method = "isotonic" if candidates["isotonic"]["ece"] < candidates["platt"]["ece"] else "platt"
        if record["before"]["ece"] <= candidates[method]["ece"]:  # neither improves on the model's own
            record.update(method="model", candidates=candidates, after=record["before"])
            return Calibrator("model"), record
        record.update(method=method, candidates=candidates, after=candidates[method])
        return _fit(method, log_odds, labels), record


# --- Estimating performance without labels -------------------------------------------------------
def expected_roc_auc(scores, probabilities) -> float | None:
    """The ROC AUC expected of the model's scores when each row leaves with its calibrated probability.

    Every ordered pair (i, j) of distinct rows counts with weight p_i (1 - p_j): the chance that i
    left and j stayed; ties of score count half, as in roc_auc_score.
    """
    s = np.asarray(scores, dtype="float64")
    p = np.asarray(probabilities, dtype="float64")
    if len(s) < 2:
        return None
    order = np.argsort(s, kind="stable")
    s, p = s[order], p[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    left = np.add.reduceat(p, starts)
    stayed = np.add.reduceat(1.0 - p, starts)
    below = np.cumsum(stayed) - stayed  # stayers' mass at strictly lower scores
    self_pairs = np.add.reduceat(p * (1.0 - p), starts)
    pairs = p.sum() * (1.0 - p).sum() - self_pairs.sum()
    if pairs <= 0:
        return None
    return float((np.sum(left * below) + 0.5 * np.sum(left * stayed - self_pairs)) / pairs)


def _expected_f1(tp, predicted, positives):
    denominator = predicted + positives  # 2TP + FP + FN
    return np.divide(2 * tp, denominator, out=np.zeros(np.shape(tp)), where=denominator > 0)


def estimate_performance(probabilities, predictions, scores, resamples: int = ESTIMATE_RESAMPLES,
                         seed: int = ESTIMATE_SEED) -> dict[str, Any]:
    """F1, precision, recall and ROC AUC a window of rows is expected to show, from calibrated probabilities.

    The 95% interval reflects the window's size, not whether the calibration still holds. The
    expected F1 is 2A / (B + C), the row means of a = p·flagged (TP), b = flagged (predicted
    positives) and c = p (positives). From NORMAL_ROWS rows up, its standard error by the delta
    method over the window's rows gives the interval (F1 ± 1.96 SE): there it agrees with the
    bootstrap's to about 0.001 and costs under a millisecond where 1,000 resamples of 10,000 rows
    took 0.07-0.13 s of a tick. Below, where F1's distribution is skewed, a seeded percentile
    bootstrap: rows are ordered predicted-positive first, so a resample needs one gather of
    probabilities (its expected TP the sum over drawn indices below the count of predicted
    positives, its predicted positives the count of those). expected_positives (the sum of the
    probabilities) is how many clients the window is expected to lose.
    """
    p = np.asarray(probabilities, dtype="float64")
    flagged = np.asarray(predictions) == 1
    n = len(p)
    result: dict[str, Any] = {"rows": int(n), "f1": None, "f1_interval": None, "precision": None,
                              "recall": None, "roc_auc": None, "expected_positives": None, "interval": None}
    if n == 0:
        return result
    tp, predicted, positives = p[flagged].sum(), float(flagged.sum()), p.sum()
    result.update(f1=float(_expected_f1(tp, predicted, positives)),
                  precision=float(tp / predicted) if predicted else None,
                  recall=float(tp / positives) if positives > 0 else None,
                  roc_auc=expected_roc_auc(scores, p), expected_positives=float(positives))
    if n >= NORMAL_ROWS:
        result.update(f1_interval=_standard_error_interval(p, flagged), interval="standard error")
    else:
        result.update(f1_interval=_bootstrap_interval(p, flagged, resamples, seed),
                      interval=f"bootstrap, {resamples} resamples, seed {seed}")
    return result


def _standard_error_interval(p: np.ndarray, flagged: np.ndarray) -> list[float]:
    """F1 = 2A / (B + C) ± 1.96 standard errors, the delta method on the row means A, B, C (clipped to [0, 1])."""
    n = len(p)
    rows = np.vstack([p * flagged, flagged.astype("float64"), p])
    a, b, c = rows.mean(axis=1)
    if b + c <= 0:
        return [0.0, 0.0]
    f1 = 2 * a / (b + c)
    gradient = np.array([2.0, -f1, -f1]) / (b + c)
    spread = float(gradient @ np.cov(rows) @ gradient) / n
    half = 1.959963984540054 * np.sqrt(max(spread, 0.0))
    return [float(max(f1 - half, 0.0)), float(min(f1 + half, 1.0))]


def _bootstrap_interval(p: np.ndarray, flagged: np.ndarray, resamples: int, seed: int) -> list[float]:
    """The expected F1's seeded 95% percentile bootstrap over the rows."""
    n = len(p)
    ordered = np.concatenate([p[flagged], p[~flagged]])
    cut = int(flagged.sum())
    rng = np.random.default_rng(seed)
    drawn_f1 = np.empty(resamples)
    index_type = np.int32 if n < 2**31 else np.int64
    for start in range(0, resamples, RESAMPLE_BATCH):
        size = min(RESAMPLE_BATCH, resamples - start)
        drawn = rng.integers(0, n, size=(size, n), dtype=index_type)
        values = ordered[drawn]
        in_flagged = drawn < cut
        drawn_f1[start:start + size] = _expected_f1((values * in_flagged).sum(1), in_flagged.sum(1),
                                                    values.sum(1))
    return [float(x) for x in np.percentile(drawn_f1, [2.5, 97.5])]


def estimated_drop(estimate: dict[str, Any], baseline_f1: float | None, min_drop: float) -> bool:
    """An estimated F1 min_drop or more below the baseline, its interval wholly below, on at least MIN_DRIFT_ROWS rows
    (on fewer, "too few rows", as for data drift): the figures of the warning `estimated_drift`
    (riskcore.ops.drift_check also asks for automation.min_positives clients expected to leave)."""
    if baseline_f1 is None or estimate.get("f1") is None or not estimate.get("f1_interval"):
        return False
    if estimate.get("rows", 0) < MIN_DRIFT_ROWS:
        return False
    return baseline_f1 - estimate["f1"] >= min_drop and estimate["f1_interval"][1] < baseline_f1
