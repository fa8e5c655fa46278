"""Issue 20, knowing how the model does before the labels arrive: calibration, estimated performance, the ledger.

On months of the documented generative process (datagen.py): a month whose clients shift but who
leave by the same rule is estimated within 0.05 of the F1 its labels give later; a month where who
leaves changes is missed by the estimate and caught by the ledger once the labels arrive. The
calibrator is fitted on held-out rows, lowers the calibration error of a retrained model on its
market, and is verified like the model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

import datagen
from riskcore.contract import CALIBRATOR_FILE, FEATURES, RUN_HISTORY, TARGET, IntegrityError
from riskcore.data.validation import features_of
from riskcore.model.calibration import (
    brier_score,
    calibration_figures,
    estimate_performance,
    estimated_drop,
    expected_calibration_error,
    expected_roc_auc,
    fit_calibrator,
)
from riskcore.model.estimate_words import calibrator_text, estimate_text
from riskcore.model.training import train_model
from riskcore.ops.history import read_history
from riskcore.release.load import (
    current_deployment,
    deployed_metadata,
    load_deployed_calibrator,
    load_deployed_model,
    verify_release,
)
from riskcore.release.publish import verified_model_sources

SETTINGS = json.loads((Path(__file__).resolve().parent.parent / "config.json").read_text())["model"]


def clients(rows: int, market: str, seed: int) -> pd.DataFrame:
    columns = datagen.generate_columns(rows, market, seed)
    columns["corporation"] = np.array([f"{market[:2]}{seed}-{i}" for i in range(rows)])
    return pd.DataFrame(columns)


def calibrated_on(model, rows: pd.DataFrame):
    return fit_calibrator(model.decision_function(features_of(rows)), rows[TARGET].to_numpy(), "held-out rows")


def estimate_and_truth(model, calibrator, month: pd.DataFrame) -> tuple[dict, float]:
    log_odds = model.decision_function(features_of(month))
    predictions = model.predict(features_of(month))
    estimate = estimate_performance(calibrator.probability(log_odds), predictions, log_odds)
    return estimate, f1_score(month[TARGET], predictions)


# --- The measures ----------------------------------------------------------------------------------
def test_ece_is_the_row_weighted_gap_of_ten_equal_count_bins():
    probabilities = np.linspace(0.05, 0.95, 20)
    labels = np.array([0, 0] * 5 + [1, 1] * 5)
    by_hand = np.mean([abs(probabilities[2 * b:2 * b + 2].mean() - labels[2 * b:2 * b + 2].mean()) for b in range(10)])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(by_hand)
    assert brier_score([0.2, 0.9], [0, 1]) == pytest.approx((0.04 + 0.01) / 2)
    figures = calibration_figures(probabilities, labels)
    assert figures["rows"] == 20 and len(figures["reliability"]) == 10
    assert figures["reliability"][-1] == {"predicted": pytest.approx(probabilities[-2:].mean()), "observed": 1.0,
                                              "rows": 2}


def test_with_certain_probabilities_the_estimate_is_the_measured_performance():
    rng = np.random.default_rng(3)
    labels = (rng.random(400) < 0.3).astype(int)
    scores = rng.normal(size=400) + 1.5 * labels
    predictions = (scores > 0.8).astype(int)
    estimate = estimate_performance(labels.astype(float), predictions, scores)
    assert estimate["f1"] == pytest.approx(f1_score(labels, predictions))
    assert estimate["precision"] == pytest.approx(precision_score(labels, predictions))
    assert estimate["recall"] == pytest.approx(recall_score(labels, predictions))
    assert expected_roc_auc(scores, labels.astype(float)) == pytest.approx(roc_auc_score(labels, scores))
    low, high = estimate["f1_interval"]
    assert low < estimate["f1"] < high
    assert estimate_performance(labels.astype(float), predictions, scores) == estimate  # seeded


def test_the_interval_narrows_with_the_window_and_the_warning_needs_both_drop_and_interval():
    rng = np.random.default_rng(4)
    widths = []
    for rows in (300, 3000):
        p = rng.random(rows)
        interval = estimate_performance(p, (p > 0.5).astype(int), p)["f1_interval"]
        widths.append(interval[1] - interval[0])
    assert widths[1] < widths[0] / 2
    assert estimated_drop({"f1": 0.70, "f1_interval": [0.65, 0.75], "rows": 300}, 0.86, 0.05)
    assert not estimated_drop({"f1": 0.70, "f1_interval": [0.55, 0.87], "rows": 300}, 0.86, 0.05)  # interval reaches it
    assert not estimated_drop({"f1": 0.83, "f1_interval": [0.82, 0.84], "rows": 300}, 0.86, 0.05)  # under min_drop


@pytest.mark.parametrize("rows", [3000, 10000])
def test_from_2000_rows_the_interval_is_the_standard_errors_and_agrees_with_the_bootstrap(rows):
    # The delta method's F1 +/- 1.96 SE replaces 1,000 resamples where the two agree (0.07-0.13 s of a tick at 10,000).
    from riskcore.model.calibration import _bootstrap_interval

    rng = np.random.default_rng(rows)
    p = rng.beta(1, 3, rows)
    flagged = (p > 0.5).astype(int)
    estimate = estimate_performance(p, flagged, np.log(p / (1 - p)))
    assert estimate["interval"] == "standard error"
    bootstrap = _bootstrap_interval(p, flagged == 1, 1000, 0)
    assert estimate["f1_interval"] == pytest.approx(bootstrap, abs=0.002)
    assert estimate["f1_interval"][0] < estimate["f1"] < estimate["f1_interval"][1]
    assert estimate["expected_positives"] == pytest.approx(p.sum())
    small = estimate_performance(p[:1999], flagged[:1999], p[:1999])
    assert small["interval"] == "bootstrap, 1000 resamples, seed 0"


def test_a_handful_of_rows_never_warns_and_says_too_few_rows():
    # 5 clients of the served market, each leaving with probability 0.3, all predicted to stay: the expected
    # F1 is 0 in every resample, so the interval is [0.00, 0.00], wholly below any baseline. No evidence.
    p = np.full(5, 0.3)
    estimate = estimate_performance(p, np.zeros(5, dtype=int), np.log(p / (1 - p)))
    assert estimate["f1"] == 0.0 and estimate["f1_interval"] == [0.0, 0.0]
    assert not estimated_drop(estimate, 0.84, 0.05)
    row = {"estimated_f1": 0.0, "estimated_f1_interval": [0.0, 0.0], "estimated_rows": 5, "window_labelled": 0,
           "estimated_baseline": 0.84, "estimated_drift": False}
    assert estimate_text(row).endswith("own-market baseline 0.84 (too few rows: fewer than 50, no warning)")
    enough = estimate_performance(np.full(400, 0.3), np.zeros(400, dtype=int), np.zeros(400))
    assert estimated_drop(enough, 0.84, 0.05)  # the same figures on 400 rows do warn


# --- (a), (b): the estimate on shifted and changed months ------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_shifted_month_is_estimated_within_005_of_its_realized_f1(seed):
    model = train_model(clients(3000, "source", seed), SETTINGS)
    calibrator, _ = calibrated_on(model, clients(600, "source", seed + 100))
    estimate, realized = estimate_and_truth(model, calibrator, clients(2000, "shifted", seed + 200))
    assert abs(estimate["f1"] - realized) < 0.05


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_changed_month_is_missed_by_the_estimate(seed):
    model = train_model(clients(3000, "source", seed), SETTINGS)
    calibrator, _ = calibrated_on(model, clients(600, "source", seed + 100))
    estimate, realized = estimate_and_truth(model, calibrator, clients(2000, "changed", seed + 200))
    assert estimate["f1"] - realized > 0.3  # who leaves changed: the features cannot tell


# --- (c): calibration lowers the error on held-out rows of the training market ----------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_retrained_models_calibrated_ece_is_below_its_raw_ece_on_held_out_rows_of_its_market(seed):
    # A retrain learns from every labelled row, old market and new, and is calibrated on held-out new rows.
    model = train_model(pd.concat([clients(2000, "practice", seed), clients(2400, "source", seed + 50)]), SETTINGS)
    calibrator, record = calibrated_on(model, clients(600, "source", seed + 100))
    held_out = clients(3000, "source", seed + 300)
    log_odds = model.decision_function(features_of(held_out))
    raw = expected_calibration_error(expit(log_odds), held_out[TARGET])
    assert expected_calibration_error(calibrator.probability(log_odds), held_out[TARGET]) < raw
    assert record["method"] in ("isotonic", "platt") and record["after"]["ece"] < record["before"]["ece"]
    assert (calibrator.probability(log_odds) > 0.5).sum() != 0 and model.predict(features_of(held_out)).sum() != 0


@pytest.mark.parametrize("seed", range(1, 9))
def test_the_kept_probabilities_are_never_measured_worse_calibrated_than_the_models_own(seed):
    # Labels drawn from the model's own probabilities: those are calibrated, and a calibrator can only add noise.
    rng = np.random.default_rng(seed)
    log_odds = rng.normal(-1.0, 2.0, 2000)
    labels = (rng.random(2000) < expit(log_odds)).astype(int)
    calibrator, record = fit_calibrator(log_odds, labels, "held-out rows")
    assert record["after"]["ece"] <= record["before"]["ece"]
    best = min(record["candidates"].values(), key=lambda figures: figures["ece"])
    if record["method"] == "model":  # neither candidate beat them: kept as they are
        assert record["before"]["ece"] <= best["ece"] and record["after"] == record["before"]
        assert calibrator.probability(log_odds).tolist() == expit(log_odds).tolist()
    else:
        assert record["after"] == record["candidates"][record["method"]] == best
    if seed == 7:  # the seed where both candidates measure worse than the model's own
        assert record["method"] == "model"


def retrain_and_held_out(seed: int, rows: int):
    """A retrain of both markets (its own probabilities pile up near 0 and 1) and held-out rows of the new market."""
    model = train_model(pd.concat([clients(2000, "practice", seed), clients(2400, "source", seed + 50)]), SETTINGS)
    held_out = clients(rows, "source", seed + 100)
    return model, model.decision_function(features_of(held_out)), held_out[TARGET].to_numpy()


@pytest.mark.parametrize("method", ["isotonic", "platt"])
@pytest.mark.parametrize("rows", [150, 300, 600])
def test_a_calibrator_fitted_on_a_few_hundred_rows_never_says_0_or_100_percent(method, rows):
    """The walk's isotonic calibrator on 600 held-out rows read ">99.9%" for a client of log-odds 0.52 (its top
    block, all leavers, mapped to 1.0). Now no probability is beyond what the rows can give: 1/(n+2), (n+1)/(n+2)."""
    from riskcore.formatting import percent
    from riskcore.model.calibration import _fit

    model, log_odds, labels = retrain_and_held_out(6, rows)
    calibrator = _fit(method, log_odds, labels)
    everyone = np.r_[model.decision_function(features_of(clients(3000, "source", 306))), -60.0, 60.0]
    probabilities = calibrator.probability(everyone)
    assert probabilities.min() >= 1 / (rows + 2) and probabilities.max() <= (rows + 1) / (rows + 2)
    assert probabilities[-1] == pytest.approx((rows + 1) / (rows + 2)) or method == "isotonic"
    shown = {percent(p) for p in probabilities}
    assert ">99.9%" not in shown and "<0.1%" not in shown and "100.0%" not in shown and "0.0%" not in shown
    assert calibrator.probability(everyone[:5]).tolist() == probabilities[:5].tolist()  # one record: the same bounds


def test_an_isotonic_block_reads_the_rule_of_successions_share_of_its_rows():
    """A top block of m leavers reads (m+1)/(m+2); a small block shrunk past its neighbour is pooled with it."""
    from sklearn.isotonic import IsotonicRegression

    from riskcore.model.calibration import _fit

    _, log_odds, labels = retrain_and_held_out(6, 600)
    plain = IsotonicRegression(out_of_bounds="clip").fit(log_odds, labels).predict(log_odds)
    top = plain == plain.max()
    assert plain.max() == 1.0 and labels[top].all()  # the walk's overconfident block
    shown = _fit("isotonic", log_odds, labels).probability(log_odds)
    assert shown[top] == pytest.approx((top.sum() + 1) / (top.sum() + 2))
    assert np.all(np.diff(shown[np.argsort(log_odds)]) >= 0)
    # 100 rows of which 90 left (one block, 0.9), then 3 leavers: 91/102 and 4/5 would cross, so they are pooled.
    x = np.arange(103.0)
    y = np.r_[np.tile([1] * 9 + [0], 10), 1, 1, 1]
    steps = _fit("isotonic", x, y).probability(x)
    assert np.all(np.diff(steps) >= 0) and steps.max() == pytest.approx((100 * 91 / 102 + 3 * 4 / 5) / 103)


def test_bounded_calibrators_are_no_worse_calibrated_on_held_out_months_than_unbounded_ones(monkeypatch):
    """The rule costs no calibration: on datagen months (a retrain of both markets and a new-market model, 300 and
    600 held-out rows, five seeds, new-market and shifted months of 3,000 clients) the mean ECE of the kept
    calibrators is not above what the unbounded isotonic and Platt fits gave (0.0253 against 0.0264 when written)."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    from riskcore.model import calibration
    from riskcore.model.calibration import Calibrator

    def unbounded(method, log_odds, labels):
        if method == "isotonic":
            return Calibrator(method, IsotonicRegression(out_of_bounds="clip").fit(log_odds, labels))
        return Calibrator(method, LogisticRegression(C=1e6, solver="liblinear").fit(log_odds.reshape(-1, 1), labels))

    bounded = calibration._fit
    errors = {"bounded": [], "unbounded": []}
    for seed in range(1, 6):
        models = [train_model(pd.concat([clients(2000, "practice", seed), clients(2400, "source", seed + 50)]),
                             SETTINGS), train_model(clients(3000, "source", seed), SETTINGS)]
        months = [clients(3000, market, seed + 300) for market in ("source", "shifted")]
        for model in models:
            for rows in (300, 600):
                held_out = clients(rows, "source", seed + 100)
                for name, fit in (("bounded", bounded), ("unbounded", unbounded)):
                    monkeypatch.setattr(calibration, "_fit", fit)
                    calibrator, _ = calibrated_on(model, held_out)
                    errors[name] += [expected_calibration_error(calibrator.probability(
                        model.decision_function(features_of(month))), month[TARGET]) for month in months]
    assert np.mean(errors["bounded"]) <= np.mean(errors["unbounded"])


def test_too_few_held_out_rows_leave_the_probabilities_the_models_own():
    model = train_model(clients(500, "source", 7), SETTINGS)
    calibrator, record = calibrated_on(model, clients(40, "source", 8))
    assert record["method"] == "none" and "calibration needs 100 rows" in record["reason"]
    log_odds = np.array([-2.0, 0.0, 3.0])
    assert calibrator.probability(log_odds).tolist() == expit(log_odds).tolist()


# --- A retrain whose held-out rows are too few: out-of-fold log-odds of its training rows join them -----------
def small_retrain(training_rows: int = 240, held_out_rows: int = 60, seed: int = 31):
    """A model retrained on a changed market's window alone, its held-out rows too few to calibrate on."""
    training = clients(training_rows, "changed", seed)
    return train_model(training, SETTINGS), training, clients(held_out_rows, "changed", seed + 1)


def test_too_few_held_out_rows_are_joined_by_the_training_rows_out_of_fold_log_odds():
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from riskcore.model.calibration_rows import calibrate, with_out_of_fold
    from riskcore.model.training import build_model

    model, training, held_out = small_retrain()
    calibrator, record = calibrate(model, held_out, "held-out rows of the new market", training=training,
                                   settings=SETTINGS, seconds=60)
    assert record["method"] != "none" and record["rows"] == 300
    assert record["source"] == ("out-of-fold log-odds of the 240 training rows (5 folds) and the 60 held-out rows: "
                                "the held-out rows alone were too few")
    assert record["out_of_fold"] == {"training_rows": 240, "held_out_rows": 60, "folds": 5}
    # The training rows' log-odds are scikit-learn's out-of-fold ones, never the final model's (which learnt them);
    # the held-out rows' are the final model's, which never saw them.
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    expected = cross_val_predict(build_model(SETTINGS), features_of(training), training[TARGET], cv=folds,
                                 method="decision_function")
    held = model.decision_function(features_of(held_out))
    log_odds, labels, _, _ = with_out_of_fold(held, held_out[TARGET].to_numpy(), training, SETTINGS, None)
    assert log_odds.tolist() == [*expected, *held] and labels.tolist() == [*training[TARGET], *held_out[TARGET]]
    assert not np.allclose(expected, model.decision_function(features_of(training)))
    assert calibrator.probability(held).tolist() != expit(held).tolist() or record["method"] == "model"


def test_enough_held_out_rows_calibrate_alone_without_out_of_fold_fits(monkeypatch):
    from riskcore.model import calibration_rows
    from riskcore.model import training as training_module

    model, training, _ = small_retrain()
    held_out = clients(400, "changed", 33)

    def never(*_args):
        raise AssertionError("out-of-fold fits on the normal path")

    monkeypatch.setattr(training_module, "out_of_fold_log_odds", never)
    _, record = calibration_rows.calibrate(model, held_out, "held-out rows of the new market", training=training,
                                          settings=SETTINGS, seconds=60)
    assert record["source"] == "held-out rows of the new market" and "out_of_fold" not in record
    assert record["rows"] == 400 and record["method"] != "none"


def test_too_few_rows_even_with_the_training_rows_leave_no_calibrator_and_fit_no_fold(monkeypatch):
    from riskcore.model import calibration_rows
    from riskcore.model import training as training_module

    model, training, held_out = small_retrain(training_rows=60, held_out_rows=15)
    monkeypatch.setattr(training_module, "out_of_fold_log_odds", lambda *_args: pytest.fail("a fold was fitted"))
    _, record = calibration_rows.calibrate(model, held_out, "held-out rows", training=training, settings=SETTINGS,
                                          seconds=60)
    assert record["method"] == "none" and record["source"] == "held-out rows" and "out_of_fold" not in record
    assert record["reason"].startswith("15 held-out rows")


def sleeping(*_args):
    import time

    time.sleep(30)


@pytest.mark.slow  # the out-of-fold fits run in training's child process, stopped 1 s later
def test_out_of_fold_fits_past_the_time_limit_are_stopped_and_the_model_goes_uncalibrated(monkeypatch):
    import time

    from riskcore.model import calibration_rows
    from riskcore.model import training as training_module

    model, training, held_out = small_retrain()
    monkeypatch.setattr(training_module, "out_of_fold_log_odds", sleeping)
    start = time.monotonic()
    calibrator, record = calibration_rows.calibrate(model, held_out, "held-out rows", training=training,
                                                   settings=SETTINGS, seconds=1)
    assert time.monotonic() - start < 10
    assert record["method"] == "none" and calibrator.method == "none" and record["source"] == "held-out rows"
    assert record["reason"].endswith("(the out-of-fold fits stopped after 1 s (automation.max_train_seconds))")


def test_an_out_of_fold_calibrator_reads_with_its_rows_once():
    record = {"method": "platt", "rows": 300, "before": {"ece": 0.12, "brier": 0.15},
              "after": {"ece": 0.03, "brier": 0.1},
              "source": "out-of-fold log-odds of the 240 training rows (5 folds) and the 60 held-out rows: the "
                        "held-out rows alone were too few"}
    assert calibrator_text(record) == ("platt, fitted on the out-of-fold log-odds of the 240 training rows (5 folds) "
                                       "and the 60 held-out rows (the held-out rows alone were too few): ECE 0.120 → "
                                       "0.030, Brier score 0.150 → 0.100")


@pytest.mark.slow
@pytest.mark.parametrize(("rows", "out_of_fold"), [(300, True), (3000, False)])
def test_a_small_windows_retrain_is_calibrated_out_of_fold_and_the_next_window_estimated(tmp_path, rows, out_of_fold):
    """A retrain on 300 labelled rows of a changed market holds out 60, too few to calibrate on: its training rows'
    out-of-fold log-odds join them, and the next, unlabelled, window is estimated. A retrain on 3,000 rows holds out
    600 and calibrates on them alone, as before."""
    from test_decisions import month, old_market, tick

    config = old_market(tmp_path)
    month(config.input_folder / "2026-02.csv", rows, "changed", 21)
    assert tick(config)["decision"] == "retrain"
    record = deployed_metadata(current_deployment(config.prod_deployment_folder))["calibration"]
    assert record["method"] != "none"
    if out_of_fold:
        assert record["out_of_fold"]["held_out_rows"] == 60
        assert record["source"].startswith("out-of-fold log-odds of the ")
        assert record["source"].endswith(" and the 60 held-out rows: the held-out rows alone were too few")
    else:
        assert record["source"] == "held-out rows of the new market, left out of its training"
        assert record["rows"] == 600 and "out_of_fold" not in record
    month(config.input_folder / "2026-03.csv", 1000, "changed", 22, labelled=False)
    estimated = tick(config)
    assert estimated["decision"] == "wait" and estimated["estimated_rows"] == 1000
    low, high = estimated["estimated_f1_interval"]
    assert low < estimated["estimated_f1"] < high


@pytest.mark.slow
def test_the_course_rules_small_window_retrain_deploys_the_same_model_with_the_same_f1(tmp_path, monkeypatch):
    """Calibration changes probabilities only: with or without the out-of-fold calibrator, the course's rule
    retrains on the same rows into the same model (the same pickled bytes), scores the same F1 and decides alike.
    The rule is asked to hold rows out (holdout_share 0.2; by default it holds none), so the calibrator is fitted
    on a retrain's small holdout."""
    import shutil

    from test_decisions import month, old_market, tick

    from conftest import COURSE_RULE
    from riskcore.config import load_config
    from riskcore.model import calibration_rows

    template = tmp_path / "template"
    month(old_market(template, **COURSE_RULE, holdout_share=0.2).input_folder / "2026-02.csv", 300, "changed", 21)
    outcomes = {}
    for variant in ("out of fold", "held-out rows alone"):
        if variant != "out of fold":
            monkeypatch.setattr(calibration_rows, "with_out_of_fold", lambda *_args: None)
        shutil.copytree(template, tmp_path / variant, symlinks=True)
        config = load_config(tmp_path / variant / "config.json")
        row = tick(config)
        metadata = deployed_metadata(current_deployment(config.prod_deployment_folder))
        outcomes[variant] = (row["decision"], row["f1_new_data"], metadata["model_sha256"],
                             (config.output_model_folder / "latestscore.txt").read_text(),
                             metadata["calibration"]["method"])
    calibrated, alone = outcomes["out of fold"], outcomes["held-out rows alone"]
    assert calibrated[0] == "retrain" and calibrated[:4] == alone[:4]
    assert calibrated[4] != "none" and alone[4] == "none"


# --- (d): the calibrator is verified like the model --------------------------------------------------------
def test_a_tampered_deployed_calibrator_is_refused(deployed):
    deployment = current_deployment(deployed.prod_deployment_folder)
    assert CALIBRATOR_FILE in deployment.manifest["files"]
    load_deployed_calibrator(deployment)
    path = deployment.path(CALIBRATOR_FILE)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="does not match its recorded sha256"):
        load_deployed_calibrator(deployment)
    with pytest.raises(IntegrityError):
        verify_release(deployment)


def test_a_tampered_trained_calibrator_is_not_deployed(deployed):
    path = deployed.output_model_folder / CALIBRATOR_FILE
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(IntegrityError, match=CALIBRATOR_FILE):
        verified_model_sources(deployed.output_model_folder)


def test_the_api_refuses_a_release_with_a_tampered_calibrator(deployed):
    import app as app_module

    deployment = current_deployment(deployed.prod_deployment_folder)
    path = deployment.path(CALIBRATOR_FILE)
    path.chmod(0o644)
    path.write_bytes(b"not the calibrator")
    client = app_module.create_app(deployed.config_file).test_client()
    record = {"corporation": "a", "lastmonth_activity": 1, "lastyear_activity": 2, "number_of_employees": 3}
    answer = client.post("/prediction", json={"records": [record]})
    assert answer.status_code == 503


# --- End to end: the automation records the estimate, and the ledger settles it ------------------------------
def labels_arrive(config, name: str, columns: dict) -> None:
    """The same clients again, labelled: their later labelled snapshot."""
    import csv

    with open(config.input_folder / name, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(zip(*columns.values(), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize(("regime", "gap"), [("shifted", False), ("changed", True)])
def test_an_unlabelled_month_is_estimated_and_the_ledger_records_its_realized_f1(tmp_path, regime, gap, caplog):
    from test_decisions import month, old_market, tick

    config = old_market(tmp_path)
    month(config.input_folder / "2026-02.csv", 3000, "source", 21)
    assert tick(config)["decision"] == "retrain"
    columns = month(config.input_folder / "2026-03.csv", 2000, regime, 22, labelled=False)
    estimated = tick(config)
    assert estimated["decision"] == "wait" and estimated["estimated_rows"] == 2000
    low, high = estimated["estimated_f1_interval"]
    assert low < estimated["estimated_f1"] < high and estimated["estimated_roc_auc"] > 0.5
    assert estimated["realized_f1"] is None and estimated["realized_rows"] == 0
    assert estimated["estimated_drift"] is False  # nothing in the features says the month is worse
    assert estimated["estimated_baseline"] > 0.8 and estimated["calibration"] is None
    served_then = load_deployed_model(current_deployment(config.prod_deployment_folder))
    assert current_deployment(config.prod_deployment_folder).model_version == estimated["version_after"]
    labels = datagen.generate_columns(2000, regime, 22)[TARGET]
    labels_arrive(config, "2026-03-labels.csv", columns | {TARGET: labels})
    with caplog.at_level(logging.INFO):
        later = tick(config)
    assert later["calibration"]["rows"] == 2000 and 0 <= later["calibration"]["ece"] <= 1
    # The log names the run as the history, the page and the PDF do (the walk's log read "run 6c0d6bf4...'s window")
    assert f"labels arrived for 2000 clients of run {estimated['run_number']}'s window" in caplog.text
    settled = next(r for r in read_history(config.output_model_folder / RUN_HISTORY)
                   if r["run_id"] == estimated["run_id"])
    assert settled["realized_rows"] == 2000
    # The realized F1 by hand: the model served when the month was estimated, on the month's figures, against the
    # labels that arrived.
    figures = pd.DataFrame({f: columns[f] for f in FEATURES})
    assert settled["realized_f1"] == pytest.approx(f1_score(labels, served_then.predict(features_of(figures))),
                                                   abs=1e-9)
    difference = settled["estimated_f1"] - settled["realized_f1"]
    assert (difference > 0.3) if gap else (abs(difference) < 0.05)


@pytest.mark.slow
def test_a_labelled_month_that_retrains_does_not_also_warn_that_nothing_is_retrained(tmp_path):
    """The new market's labelled month: the estimate drops as the labels do, but the labels decide (a retrain), so
    the warning `estimated_drift` (for windows without labels) is not raised."""
    from test_decisions import month, old_market, tick

    config = old_market(tmp_path)
    month(config.input_folder / "2026-02.csv", 3000, "source", 21)
    row = tick(config)
    assert row["decision"] == "retrain" and row["window_labelled"] == row["estimated_rows"] == 3000
    assert estimated_drop({"f1": row["estimated_f1"], "f1_interval": row["estimated_f1_interval"],
                           "rows": row["estimated_rows"]},
                          row["estimated_baseline"], config.automation["min_drop"])  # the estimate did drop
    assert row["estimated_drift"] is False
    assert row["realized_rows"] == 3000  # the labels realize the estimate at once


def test_the_page_and_the_pdf_give_the_latest_checks_estimate_never_an_earlier_models():
    """After a retrain whose model has no calibrator, the next check estimates nothing: the page and the PDF say so
    beside that check, instead of the replaced model's estimate of an earlier window."""
    from riskcore.api.page_health import latest_estimate
    from riskcore.model.drift_evidence import latest_check
    from riskcore.report.pdf_evidence import estimate_lines

    earlier = {"run_number": 5, "started_at": "2026-12-06T15:40:23Z", "version_before": "old", "f1_new_data": 0.29,
               "window_rows": 425, "window_labelled": 425, "estimated_f1": 0.84, "estimated_f1_interval": [0.81, 0.86],
               "estimated_rows": 425, "estimated_baseline": 0.84, "estimated_drift": False, "realized_f1": 0.29,
               "realized_rows": 425}
    latest = {"run_number": 6, "started_at": "2026-12-06T15:40:38Z", "version_before": "new", "f1_new_data": None,
              "window_rows": 11425, "window_labelled": 0,
              "data_drift": {"features": {"lastmonth_activity": {"psi": 0.003, "drift": False}}}}
    check = latest_check([earlier, latest])
    assert check is latest
    shown = latest_estimate(check)
    assert shown["started_at"] == latest["started_at"] and "0.84" not in shown["sentence"]
    assert shown["sentence"].startswith("not estimated: model new has no calibrator") and not shown["realized"]
    pdf = " ".join(estimate_lines(check, None))
    assert "not estimated: model new has no calibrator" in pdf and "0.84" not in pdf
    assert "0.84 [0.81, 0.86]" in latest_estimate(latest_check([earlier]))["sentence"]  # its own check: shown


def test_the_estimate_and_its_realized_f1_say_the_windows_rows_as_rows_and_its_clients_as_clients():
    """The walk: one paragraph read "on 10,000 clients (6,975 unlabelled) (each client's latest snapshot of the
    window's 13,040)" then "on 3,025 clients whose labels are known (of the window's 10,000)": the same window, two
    sizes, neither named."""
    from riskcore.model.estimate_words import estimate_text, realized_text

    row = {"estimated_f1": 0.86, "estimated_f1_interval": [0.86, 0.87], "estimated_rows": 10000, "window_rows": 13040,
           "window_clients": 10000, "window_labelled": 3025, "realized_f1": 0.27, "realized_rows": 3025}
    assert estimate_text(row) == ("estimated F1 0.86 [0.86, 0.87] on 10,000 clients (6,975 unlabelled; each client's "
                                  "latest snapshot of the window's 13,040 rows)")
    assert realized_text(row) == ("realized F1 0.27 on the 3,025 of the window's 10,000 clients whose labels are known "
                                  "(the estimate was off by +0.59)")


def test_a_few_labels_of_a_large_window_do_not_judge_its_estimate():
    """10 labels arrived for a window of 10,005 clients: 'the estimate was off by +0.19' was said on 10 rows."""
    from riskcore.model.estimate_words import realized_text

    row = {"estimated_f1": 0.86, "estimated_rows": 10005, "realized_f1": 0.6667, "realized_rows": 10}
    assert realized_text(row) == ("realized F1 0.67 on the 10 of the window's 10,005 clients whose labels are known "
                                  "(too few rows to judge the estimate: fewer than 50)")
    settled = {**row, "realized_rows": 10005, "realized_f1": 0.62}
    assert realized_text(settled) == "realized F1 0.62 on 10,005 clients whose labels are known (the estimate was " \
                                     "off by +0.24)"


def test_a_five_row_windows_calibration_is_said_with_its_caveat_and_not_drawn():
    """ECE on 10 equal-count bins of 5 rows is 5 bins of one client, 0 or 1 against a probability."""
    from riskcore.model.estimate_words import calibration_text, latest_calibrated

    bins = [{"predicted": 0.1 * i, "observed": float(i % 2), "rows": 1} for i in range(5)]
    small = {"run_id": "s", "calibration": {"ece": 0.25, "brier": 0.2, "rows": 5, "bins": 10, "reliability": bins}}
    large = {"run_id": "l", "calibration": {"ece": 0.02, "brier": 0.06, "rows": 1000, "bins": 10, "reliability": bins}}
    assert calibration_text(small["calibration"]) == ("calibration on 5 labelled rows: ECE 0.250, Brier score 0.200 "
                                                      "(too few rows to judge: fewer than 50)")
    assert latest_calibrated([large, small])["run_id"] == "l"  # the newest window that can show one
    assert latest_calibrated([small]) is None


def test_a_window_settled_over_two_runs_counts_the_labels_that_arrived_in_each(tmp_path):
    """The walk's log read 'labels arrived for 10420 clients of run 10's window' when 7,420 had arrived: 3,000 had
    settled a run earlier; the count was the realized rows, not the arrivals."""
    from riskcore.ops.ledger import record_window, settle

    path = tmp_path / "estimateledger.sqlite"
    record_window(path, "r1", ["a", "b", "c", "d"], [1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2], [None] * 4)
    assert settle(path, {"a": 1, "b": 0}) == {"r1": (1.0, 2, 2)}
    assert settle(path, {"a": 1, "b": 0, "c": 0, "d": 1}) == {"r1": (0.5, 4, 2)}  # a and b were settled already


@pytest.mark.slow
def test_a_partly_labelled_month_whose_labels_retrain_does_not_warn_that_nothing_is_retrained(tmp_path):
    """The walk's run 11: 3,000 labelled rows found model drift and retrained, and the same run's PDF and page
    read "Warning: estimated drift ... (a warning: without labels nothing is retrained)" about the replaced model,
    from its estimate on the window's other, unlabelled clients. Where the labels find model drift, they decide."""
    from test_decisions import month, old_market, tick

    config = old_market(tmp_path)
    month(config.input_folder / "2026-02.csv", 2000, "source", 21)
    month(config.input_folder / "2026-02-export.csv", 1000, "source", 23, labelled=False)
    row = tick(config)
    assert row["decision"] == "retrain" and row["window_labelled"] == 2000 and row["estimated_rows"] == 3000
    assert estimated_drop({"f1": row["estimated_f1"], "f1_interval": row["estimated_f1_interval"],
                           "rows": row["estimated_rows"]},
                          row["estimated_baseline"], config.automation["min_drop"])  # the estimate did drop
    assert row["estimated_drift"] is False


@pytest.mark.slow
def test_an_unlabelled_month_whose_estimate_drops_warns_and_retrains_nothing(tmp_path, caplog):
    """The model of the new market, then a month of unlabelled clients like the old market's: the calibrated
    probabilities say the model will do worse there (estimated F1 about 0.72 against its own-market 0.84), with the
    interval wholly below the baseline. The run records the warning `estimated_drift`, logs it, shows it on /model,
    and keeps the model: without labels there is nothing to learn from."""
    from test_decisions import month, old_market, served, tick

    import app as app_module

    config = old_market(tmp_path)
    month(config.input_folder / "2026-02.csv", 3000, "source", 21)
    assert tick(config)["decision"] == "retrain"
    model_before = served(config)
    month(config.input_folder / "2026-03.csv", 2000, "practice", 23, labelled=False)
    with caplog.at_level(logging.WARNING):
        row = tick(config)
    assert row["decision"] == "wait" and row["window_labelled"] == 0 and row["estimated_rows"] == 2000
    low, high = row["estimated_f1_interval"]
    assert row["estimated_baseline"] - row["estimated_f1"] > config.automation["min_drop"]
    assert high < row["estimated_baseline"]
    assert row["estimated_drift"] is True
    assert served(config) == model_before == row["version_after"]  # nothing retrained
    assert "its interval wholly below the baseline (a warning: without labels nothing is retrained)" in caplog.text
    pages = app_module.create_app(config.config_file).test_client()
    page = pages.get("/model").get_data(as_text=True)
    assert 'id="estimate-warning"' in page and "estimated_drift" in page
    assert "estimated to do worse on the new clients, before their labels arrive" in pages.get("/").get_data(
        as_text=True)  # the managers' strip says it in words


# --- 4: the call list's probability is the calibrated one; the order stays the model's log-odds ----------------
def test_the_call_lists_probability_is_the_calibrated_one_its_order_the_log_odds(deployed, monkeypatch):
    """With an isotonic calibrator (a step function: clients of different log-odds share a probability), the list
    shows the calibrated probability, ranks by the model's log-odds, and risk_scores.csv keeps them for the order."""
    import csv

    from sklearn.isotonic import IsotonicRegression

    from riskcore.model.calibration import Calibrator
    from riskcore.report import call_list

    model = load_deployed_model(current_deployment(deployed.prod_deployment_folder))
    final = pd.read_csv(deployed.final_data_file, dtype={"corporation": str})
    log_odds = model.decision_function(features_of(final))
    steps = IsotonicRegression(out_of_bounds="clip").fit(log_odds, (log_odds > np.median(log_odds)).astype(int) * 0.7)
    isotonic = Calibrator("isotonic", steps)
    monkeypatch.setattr(call_list, "load_deployed_calibrator", lambda deployment: isotonic)
    call_list.risk_scores(deployed)
    with open(deployed.output_model_folder / "risk_scores.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    listed_odds = [float(r["log_odds"]) for r in rows]
    shown = [float(r["probability"]) for r in rows]
    assert listed_odds == sorted(listed_odds, reverse=True)  # the rank key: the model's log-odds
    assert shown == pytest.approx(isotonic.probability(listed_odds).tolist(), abs=5e-7)
    assert shown != pytest.approx(expit(listed_odds).tolist(), abs=1e-3)  # not the model's own probability
    assert len(set(shown)) < len(set(listed_odds))  # tied probabilities, told apart by log_odds


@pytest.mark.slow
def test_a_window_of_clients_all_expected_to_stay_does_not_warn(tmp_path, caplog):
    """400 unlabelled clients the served model all predicts to stay, about 7 of them expected to leave: the
    estimated F1 is near 0, its interval far below the baseline, as it would be for any model; like a labelled
    window with fewer than automation.min_positives leavers, it gives no verdict: no warning, and the log says why."""
    from test_decisions import month, old_market, tick

    config = old_market(tmp_path)
    deployment = current_deployment(config.prod_deployment_folder)
    model, calibrator = load_deployed_model(deployment), load_deployed_calibrator(deployment)
    columns = month(config.input_folder / "2026-02.csv", 4000, "practice", 31, labelled=False)
    frame = pd.DataFrame(columns)
    p = calibrator.probability(model.decision_function(features_of(frame)))
    quiet = frame.iloc[np.argsort(p, kind="stable")[:400]]
    assert (model.predict(features_of(quiet)) == 0).all()
    quiet.to_csv(config.input_folder / "2026-02.csv", index=False)
    with caplog.at_level(logging.INFO):
        row = tick(config)
    assert row["decision"] == "wait" and row["estimated_rows"] == 400
    assert row["estimated_positives"] < config.automation["min_positives"]
    assert estimated_drop({"f1": row["estimated_f1"], "f1_interval": row["estimated_f1_interval"], "rows": 400},
                          row["estimated_baseline"], config.automation["min_drop"])  # the figures alone would warn
    assert row["estimated_drift"] is False
    assert "no estimated_drift warning: about " in caplog.text and "(automation.min_positives)" in caplog.text
    assert f"about {row['estimated_positives']:,.0f} of them expected to leave" in estimate_text(row)
