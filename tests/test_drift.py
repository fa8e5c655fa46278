"""riskcore.model.drift: the F1 drift tests on a known history, KS against scipy, PSI against a table worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy import stats

from riskcore.contract import FEATURES
from riskcore.model import drift, drift_evidence

# --- Model drift: the deployed model's F1 on new data against its baseline or history ----------
HISTORY = [0.80, 0.82, 0.78, 0.81, 0.79]  # mean 0.80, stdev 0.01581, Q1 0.79, Q3 0.81


@pytest.mark.parametrize("test, f1, drifted, threshold", [
    ("raw", 0.70, True, 0.75), ("raw", 0.75, False, 0.75),
    ("parametric", 0.77, False, 0.80 - 2 * 0.0158114), ("parametric", 0.76, True, 0.80 - 2 * 0.0158114),
    ("nonparametric", 0.76, False, 0.76), ("nonparametric", 0.759, True, 0.76),
])
def test_drift_tests_on_a_known_history(test, f1, drifted, threshold):
    verdict = drift.drift_verdict(f1, 0.75, HISTORY, test, min_history=5)
    assert verdict.test == test
    assert verdict.drift is drifted
    assert verdict.threshold == pytest.approx(threshold, abs=1e-6)


def test_statistical_tests_fall_back_to_raw_with_a_short_history():
    verdict = drift.drift_verdict(0.70, 0.75, HISTORY[:3], "parametric", min_history=5)
    assert verdict.test == "raw" and verdict.drift
    assert "needs 5 scores" in verdict.reason


# --- KS: the same statistic and p-value as scipy.stats.ks_2samp on raw samples ---------------------
def samples(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "same":
        return rng.normal(0, 1, 300), rng.normal(0, 1, 500)
    if kind == "shifted":
        return rng.normal(0.3, 1, 400), rng.normal(0, 1, 250)
    if kind == "counts with ties":  # activity counts: many equal values in both samples
        return rng.poisson(20, 700).astype(float), rng.poisson(21, 900).astype(float)
    return rng.exponential(1, 50), rng.normal(1, 1, 2000)  # small against large, different shapes


@pytest.mark.parametrize("kind", ["same", "shifted", "counts with ties", "small against large"])
def test_ks_matches_scipy_ks_2samp_on_raw_samples(kind):
    sample, reference = samples(kind, seed=len(kind))
    statistic, p_value = drift.ks_test(sample, reference, reference_size=len(reference))
    expected = stats.ks_2samp(sample, reference, method="asymp")  # ours is the asymptotic p-value
    assert statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_ks_p_value_counts_the_training_rows_behind_a_quantile_profile():
    """A profile of 1,001 quantiles stands for 5,000 training rows: the p-value is taken for 5,000."""
    rng = np.random.default_rng(0)
    training = rng.normal(100, 10, 5000)
    profile = np.quantile(training, np.linspace(0, 1, 1001))
    new = rng.normal(101, 10, 3000)
    statistic, p_value = drift.ks_test(new, profile, reference_size=5000)
    assert statistic == pytest.approx(stats.ks_2samp(new, profile).statistic, rel=1e-12)
    assert p_value == pytest.approx(stats.kstwo.sf(statistic, round(3000 * 5000 / 8000)), rel=1e-12)
    # ... and close to what scipy gives on the training rows themselves.
    assert p_value == pytest.approx(stats.ks_2samp(new, training, method="asymp").pvalue, rel=0.5)


# --- PSI: against tables worked out by hand ------------------------------------------------------
# Reference 1..10: its deciles (linear interpolation) are 1.9, 2.8, ..., 9.1, so each value has a
# bin of its own and every expected share is 0.1. A value equal to an edge would go to the bin above.
REFERENCE = list(range(1, 11))


def psi_by_hand(expected: list[float], actual: list[float]) -> float:
    """sum over bins of (actual - expected) * ln(actual / expected)."""
    return sum((a - e) * math.log(a / e) for e, a in zip(expected, actual, strict=True))


@pytest.mark.parametrize("sample, actual", [
    # 20 values: bin 1 holds 3 (0.15), bin 2 holds 1 (0.05), the eight others 2 each (0.10).
    ([1, 1, 1, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10],
     [0.15, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]),
    # bin 1 holds 4 (0.20), bins 2-9 2 each, bin 10 none: its share counts as the floor, 0.0001.
    ([1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9],
     [0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.0001]),
    # The reference itself: every share 0.1, nothing moved.
    (REFERENCE, [0.1] * 10),
])
def test_psi_matches_a_hand_computed_table(sample, actual):
    assert drift.psi(sample, REFERENCE) == pytest.approx(psi_by_hand([0.1] * 10, actual), rel=1e-12, abs=1e-15)


def test_psi_hand_figures():
    """The two tables above, as numbers: 0.05 ln 1.5 + 0.05 ln 2 and 0.1 ln 2 + 0.0999 ln 1000."""
    assert drift.psi([1, 1, 1, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10], REFERENCE) == \
        pytest.approx(0.0549306, abs=1e-7)
    assert drift.psi([1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9], REFERENCE) == \
        pytest.approx(0.7593995, abs=1e-7)


@pytest.mark.parametrize("value, drifted, label", [
    (0.05, False, "stable"), (0.1, False, "some shift"), (0.2499, False, "some shift"),
    (0.25, True, "drift"), (0.7, True, "drift"),
])
def test_psi_at_the_threshold_is_drift(value, drifted, label):
    assert drift.psi_drifted(value, 0.25) is drifted
    assert drift.psi_label(value, 0.25) == label


def test_data_drift_statistics():
    rng = np.random.default_rng(0)
    reference = np.quantile(rng.normal(100, 10, 5000), np.linspace(0, 1, 1001))
    same = rng.normal(100, 10, 3000)
    shifted = rng.normal(130, 10, 3000)
    assert drift.psi(same, reference) < 0.05
    assert drift.psi(shifted, reference) > 1.0
    assert drift.ks_test(same, reference, 5000)[1] > 0.01
    statistic, p_value = drift.ks_test(shifted, reference, 5000)
    assert statistic > 0.8 and p_value < 1e-6


def test_data_drift_flags_the_feature_that_moved():
    rng = np.random.default_rng(3)
    training = {column: rng.normal(100, 10, 4000) for column in FEATURES}
    profile = {"rows": 4000, "quantiles": {c: np.quantile(v, np.linspace(0, 1, 101)).tolist()
                                           for c, v in training.items()}}
    frame = pd.DataFrame({c: rng.normal(100, 10, 1000) for c in FEATURES})
    frame["lastmonth_activity"] += 40
    found = drift.data_drift(frame, profile, psi_threshold=0.25, ks_alpha=0.01)
    assert [c for c, f in found["features"].items() if f["drift"]] == ["lastmonth_activity"] and found["drift"]
    moved = found["features"]["lastmonth_activity"]
    assert moved["psi"] == round(drift.psi(frame["lastmonth_activity"], profile["quantiles"]["lastmonth_activity"]), 4)
    assert moved["psi_label"] == "drift"


# --- Drift evidence: the one latest check, quantiles and words (riskcore.model.drift_evidence) -----
@pytest.mark.parametrize("figures, alpha, tests, words", [
    ({"psi_label": "drift", "ks_p_value": 1e-9, "drift": True}, 0.01, ("PSI", "KS"), "drift by PSI and KS"),
    ({"psi_label": "some shift", "ks_p_value": 1e-9, "drift": True}, 0.01, ("KS",), "drift by KS"),
    ({"psi_label": "drift", "ks_p_value": 0.5, "drift": True}, 0.01, ("PSI",), "drift by PSI"),
    ({"psi_label": "stable", "ks_p_value": 0.5, "drift": False}, 0.01, (), "no drift"),
    # recorded under a larger ks_alpha: the recorded verdict stands, and only KS can have found it
    ({"psi_label": "stable", "ks_p_value": 0.03, "drift": True}, 0.01, ("KS",), "drift by KS"),
    # recorded as no drift: a p-value under today's alpha does not make it one
    ({"psi_label": "stable", "ks_p_value": 0.005, "drift": False}, 0.01, (), "no drift"),
])
def test_the_verdict_names_the_tests_that_found_the_drift(figures, alpha, tests, words):
    assert drift_evidence.flagged_by(figures, alpha) == tests
    assert drift_evidence.verdict_text(figures, alpha) == words


def test_the_named_tests_are_the_automations_rule():
    """For every feature data_drift judges, the words name exactly the tests whose threshold it crossed."""
    rng = np.random.default_rng(4)
    profile = {"rows": 4000, "quantiles": {c: np.quantile(rng.normal(100, 10, 4000), np.linspace(0, 1, 1001)).tolist()
                                           for c in FEATURES}}
    seen = set()
    # the same data, a shift, a wider spread (KS alone), 50 rows (PSI alone: a noisy PSI on few rows), and 12
    # rows: too few to call anything drift (drift.MIN_DRIFT_ROWS)
    cases = ((0.0, 10.0, 600), (40.0, 10.0, 600), (0.0, 14.0, 600), *[(0.0, 10.0, 50)] * 8, (40.0, 10.0, 12))
    for shift, scale, rows in cases:
        frame = pd.DataFrame({c: rng.normal(100, 10, rows) for c in FEATURES})
        frame["lastmonth_activity"] = rng.normal(100 + shift, scale, rows)
        for figures in drift.data_drift(frame, profile, psi_threshold=0.25, ks_alpha=0.01)["features"].values():
            expected = tuple(test for test, found in (("PSI", figures["psi"] >= 0.25),
                                                      ("KS", figures["ks_p_value"] < 0.01)) if found)
            if rows < drift.MIN_DRIFT_ROWS:
                expected = ()
                assert figures["psi_label"] == "too few rows"
            assert drift_evidence.flagged_by(figures, 0.01) == expected
            assert bool(expected) is figures["drift"]
            seen.add(expected)
    assert seen == {(), ("PSI",), ("KS",), ("PSI", "KS")}


def test_a_feature_line_says_its_figures_and_verdict():
    figures = {"psi": 0.196, "psi_label": "some shift", "ks_statistic": 0.3, "ks_p_value": 1e-9, "drift": True}
    assert (drift_evidence.feature_drift_text("lastmonth_activity", figures, 0.01)
            == "lastmonth_activity PSI 0.196 (some shift), KS 0.300 (p 1e-09): drift by KS")
    assert drift_evidence.feature_drift_text("x", {**figures, "drift": False}, 0.01).endswith("(p 1e-09)")
    assert drift_evidence.data_drift_text(None, 0.01) == "not measured"


@pytest.mark.parametrize("frame_of", [pd.DataFrame, lambda columns: pl.DataFrame(columns, strict=False)],
                         ids=["pandas", "polars"])
def test_quantiles_drop_missing_values_and_count_them(frame_of, caplog):
    present = [5.0, 1.0, 3.0, 2.0]
    columns = {c: present + [None, float("nan")] for c in FEATURES}
    columns["lastyear_activity"] = [None] * 6  # no value present: no quantiles
    with caplog.at_level("INFO", logger="riskcore.model.drift_evidence"):
        found = drift_evidence.quantiles_of(frame_of(columns), 5)
    assert "lastyear_activity" not in found
    assert found["lastmonth_activity"] == np.quantile(present, np.linspace(0, 1, 5)).round(6).tolist()
    assert "2 of 6 values of lastmonth_activity are missing" in caplog.text
    assert "6 of 6 values of lastyear_activity are missing" in caplog.text


def test_the_latest_check_is_the_latest_run_that_measured_something():
    runs = [{"run_number": 1, "f1_new_data": 0.8},
            {"run_number": 2, "data_drift": {"features": {"lastmonth_activity": {"psi": 0.1}}}},  # unlabelled rows
            {"run_number": 3, "drift_verdict": "no new rows to check: the model is kept"},
            {"run_number": 4, "error": "step ingestion failed"}]
    assert drift_evidence.latest_check(runs)["run_number"] == 2
    assert drift_evidence.latest_check(runs, run_number=1)["run_number"] == 1
    assert drift_evidence.latest_check(runs, run_number=3)["run_number"] == 2  # run 3 checked nothing
    assert drift_evidence.latest_check(runs[2:]) is None


@pytest.mark.parametrize(("counts", "expected"), [
    # 355 labelled rows, enough, but 2 who left: only the missing minimum is named (it read "355 of 200 labelled rows")
    (drift.Counts(tp=1, fp=3, fn=1, tn=350),
     "the window has 2 clients who left of the 10 needed (automation.min_positives)"),
    (drift.Counts(tp=0, fp=0, fn=5, tn=0),
     "the window has 5 labelled rows of the 200 needed (automation.min_rows) and 5 clients who left of the 10 needed "
     "(automation.min_positives)"),
    (drift.Counts(tp=40, fp=10, fn=10, tn=300), None),
    (drift.Counts(tp=0, fp=0, fn=1, tn=0),  # the walk's late row alone: 'the window has 1 labelled rows'
     "the window has 1 labelled row of the 200 needed (automation.min_rows) and 1 client who left of the 10 needed "
     "(automation.min_positives)"),
    (drift.Counts(tp=0, fp=0, fn=1, tn=9),  # one client: 'the window has ... 1 clients who left' read on the page
     "the window has 10 labelled rows of the 200 needed (automation.min_rows) and 1 client who left of the 10 needed "
     "(automation.min_positives)"),
    (drift.Counts(tp=0, fp=0, fn=0, tn=20),  # issue 19.3: no F1 verdict without a client who left, and it says so
     "the window has 20 labelled rows of the 200 needed (automation.min_rows) and 0 clients who left of the 10 needed "
     "(automation.min_positives); nobody left, so F1 is undefined: no F1 verdict"),
])
def test_a_wait_names_only_the_minimums_the_window_misses(counts, expected):
    from riskcore.ops.drift_check import too_little_evidence

    assert too_little_evidence(counts, min_rows=200, min_positives=10) == expected
