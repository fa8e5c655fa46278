"""Honest evaluation of a retrain (riskcore.model.holdout, riskcore.model.evaluation.scores_with_intervals): the held-out
new rows, both models' F1 and ROC AUC with bootstrap intervals, and the marks of few rows and of an AUC
below 0.5."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score

from riskcore.contract import COLUMNS, FEATURES, FEW_ROWS
from riskcore.model.evaluation import models_with_intervals, scores_with_intervals
from riskcore.model.holdout import holdout_clients
from riskcore.ops.history import describe_evaluation, figure_text


def frame_of(n: int, seed: int, noise: float = 0.2) -> pd.DataFrame:
    """n labelled clients: low activity last month means leaving, with a share `noise` of labels flipped."""
    rng = np.random.default_rng(seed)
    month = rng.integers(0, 400, n)
    exited = (month < 150).astype(int) ^ (rng.random(n) < noise).astype(int)
    return pd.DataFrame({"corporation": [f"c{seed}-{i}" for i in range(n)], "lastmonth_activity": month,
                         "lastyear_activity": month * 12, "number_of_employees": rng.integers(1, 500, n),
                         "exited": exited}, columns=list(COLUMNS))


@pytest.fixture(scope="module")
def model():
    train = frame_of(400, seed=1)
    return LogisticRegression(solver="liblinear").fit(train[list(FEATURES)].to_numpy(float), train["exited"])


def test_figures_are_scikit_learns_with_intervals_around_them(model):
    test = frame_of(300, seed=2)
    scores = scores_with_intervals(model, test)
    features = test[list(FEATURES)].to_numpy(float)
    assert scores["f1"] == pytest.approx(f1_score(test["exited"], model.predict(features)))
    assert scores["auc"] == pytest.approx(roc_auc_score(test["exited"], model.predict_proba(features)[:, 1]))
    for key in ("f1", "auc"):
        low, high = scores[f"{key}_interval"]
        assert 0 <= low < scores[key] < high <= 1
    assert (scores["rows"], scores["positives"], scores["few_rows"]) == (300, int(test["exited"].sum()), False)
    assert (scores["resamples"], scores["seed"]) == (1000, 0)


def test_intervals_are_seeded_and_narrow_with_more_rows(model):
    small, large = frame_of(60, seed=3), frame_of(2000, seed=3)
    assert scores_with_intervals(model, small) == scores_with_intervals(model, small)
    assert scores_with_intervals(model, small, seed=1)["f1_interval"] != scores_with_intervals(model, small)["f1_interval"]

    def width(scores, key):
        return scores[f"{key}_interval"][1] - scores[f"{key}_interval"][0]

    for key in ("f1", "auc"):
        assert width(scores_with_intervals(model, large), key) < width(scores_with_intervals(model, small), key) / 2


@pytest.mark.slow  # 1-2.6 s: in make test, out of make test-fast's minute
def test_the_interval_is_a_95_percent_one(model):
    """Over 300 seeded samples of 150 rows from one population, the F1 interval holds the population's F1 as often as a
    95% interval may (a two-sided binomial test at the 0.1% level: 272 to 296 of 300; an interval of [0, 1] holds it
    300 times and fails), and it is as wide as the spread of F1 from sample to sample (95% of a normal: 2 x 1.96 sd),
    within a fifth, not wider."""
    from scipy.stats import binomtest

    population = frame_of(40_000, seed=9)
    truth = f1_score(population["exited"], model.predict(population[list(FEATURES)].to_numpy(float)))
    rng = np.random.default_rng(0)
    samples = 300
    covered, widths, f1s = 0, [], []
    for _ in range(samples):
        sample = population.iloc[rng.choice(len(population), 150, replace=False)]
        scores = scores_with_intervals(model, sample, resamples=200)
        low, high = scores["f1_interval"]
        covered += low <= truth <= high
        widths.append(high - low)
        f1s.append(scores["f1"])
    assert binomtest(covered, samples, 0.95).pvalue >= 0.001, f"{covered} of {samples} intervals hold the F1"
    assert 0.8 <= np.mean(widths) / (2 * 1.96 * np.std(f1s)) <= 1.25


def rank_statistic(labels, predictions, probabilities, axis=-1):
    """F1 and AUC of each resample, the AUC from scipy's average ranks sorted per resample: the reference."""
    from scipy import stats

    tp = (labels * predictions).sum(axis)
    wrong = ((1 - labels) * predictions).sum(axis) + (labels * (1 - predictions)).sum(axis)
    f1 = np.divide(2 * tp, 2 * tp + wrong, out=np.zeros_like(tp, dtype="float64"), where=(2 * tp + wrong) > 0)
    ranks = stats.rankdata(probabilities, axis=axis)
    positives = labels.sum(axis)
    pairs = positives * (labels.shape[axis] - positives)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where(pairs > 0, ((ranks * labels).sum(axis) - positives * (positives + 1) / 2) / pairs, np.nan)
    return np.stack([f1, auc])


def rank_reference(model, frame, seed: int = 0) -> dict:
    """The intervals of scipy.stats.bootstrap with rank_statistic, seeded as scores_with_intervals is."""
    from scipy import stats

    features = frame[list(FEATURES)].to_numpy(float)
    labels = frame["exited"].to_numpy(dtype="float64")
    column = list(model.classes_).index(1)
    data = (labels, model.predict(features).astype("float64"), model.predict_proba(features)[:, column])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # a resample of one class: no AUC
        drawn = stats.bootstrap(data, rank_statistic, n_resamples=1000, paired=True, vectorized=True, batch=100,
                                method="percentile", rng=np.random.default_rng(seed)).bootstrap_distribution
    aucs = drawn[1][np.isfinite(drawn[1])]
    return {"f1_interval": [float(x) for x in np.percentile(drawn[0], [2.5, 97.5])],
            "auc_interval": [float(x) for x in np.percentile(aucs, [2.5, 97.5])] if len(aucs) else None}


@pytest.mark.parametrize(("rows", "seed", "repeat"), [(300, 2, 1), (12, 3, 1), (200, 4, 4), (2000, 5, 1)])
def test_the_counted_auc_gives_the_same_intervals_as_ranks_sorted_per_resample(model, rows, seed, repeat):
    """The same seed gives exactly the intervals scipy's average ranks gave (ties included: `repeat` copies of
    each row; 12 rows: resamples of one class, with no AUC), and, drawn once for two models, each model's own."""
    frame = pd.concat([frame_of(rows, seed=seed)] * repeat, ignore_index=True)
    for chosen in (0, 7):
        scores = scores_with_intervals(model, frame, seed=chosen)
        expected = rank_reference(model, frame, seed=chosen)
        assert (scores["f1_interval"], scores["auc_interval"]) == (expected["f1_interval"], expected["auc_interval"])
    other = LogisticRegression(solver="liblinear", C=0.01).fit(frame[list(FEATURES)].to_numpy(float), frame["exited"])
    assert models_with_intervals([model, other], frame) == [scores_with_intervals(model, frame),
                                                             scores_with_intervals(other, frame)]


def test_the_counted_auc_equals_the_rank_auc_on_every_resample():
    """The statistic itself, on resamples with many ties and some of one class: equal floats, NaN where undefined."""
    from riskcore.model.evaluation import _f1_and_auc, score_groups

    rng = np.random.default_rng(11)
    labels = (rng.random(40) < 0.3).astype("float64")
    probabilities = rng.integers(0, 6, 40) / 5  # six distinct values: ties everywhere
    predictions = (probabilities > 0.5).astype("float64")
    drawn = rng.integers(0, 40, (500, 40))
    drawn[:3] = np.flatnonzero(labels == 0)[0]  # three resamples of one row: one class, no AUC
    counted = _f1_and_auc(labels[drawn], predictions[drawn], score_groups(probabilities)[drawn])
    ranked = rank_statistic(labels[drawn], predictions[drawn], probabilities[drawn])
    assert np.array_equal(counted, ranked, equal_nan=True) and np.isnan(counted[1][:3]).all()


@pytest.mark.parametrize(("rows", "few"), [(5, True), (FEW_ROWS - 1, True), (FEW_ROWS, False)])
def test_figures_on_fewer_than_30_rows_are_marked(model, rows, few):
    scores = scores_with_intervals(model, frame_of(rows, seed=4, noise=0.0).assign(
        exited=[i % 2 for i in range(rows)]))
    assert scores["few_rows"] is few
    assert (f"fewer than {FEW_ROWS}" in describe_evaluation(
        {"test_data": {"old": scores, "new": scores}, "holdout": None})) is few


def test_one_class_has_no_auc_and_one_row_no_interval(model):
    only_stayers = frame_of(40, seed=5).assign(exited=0)
    scores = scores_with_intervals(model, only_stayers)
    assert scores["auc"] is None and scores["auc_interval"] is None and scores["f1_interval"] is not None
    assert "AUC undefined (one class)" in figure_text(scores)
    single = scores_with_intervals(model, frame_of(1, seed=5))
    assert single["f1_interval"] is None and single["auc_interval"] is None


def test_an_auc_below_half_is_called_out(model):
    backwards = frame_of(200, seed=6, noise=0.0)
    backwards["exited"] = 1 - backwards["exited"]
    scores = scores_with_intervals(model, backwards)
    assert scores["auc"] < 0.5
    assert "(AUC below 0.5: worse than chance)" in figure_text(scores)


def test_holdout_is_a_seeded_share_of_the_labelled_new_rows():
    new = frame_of(100, seed=7)
    new.loc[:9, "exited"] = np.nan  # ten clients without a label yet are never held out
    chosen = holdout_clients(new, 0.2)
    assert len(chosen) == 18 and chosen == holdout_clients(new, 0.2)
    assert not set(chosen) & set(new["corporation"][:10])
    assert holdout_clients(new, 0.2, seed=1) != chosen


@pytest.mark.parametrize(("rows", "share", "held"), [(0, 0.2, 0), (1, 0.2, 0), (2, 0.2, 1), (3, 0.2, 1),
                                                     (8, 0.2, 2), (10, 0.0, 0), (10, 0.99, 9)])
def test_holdout_size(rows, share, held):
    """At least one row when there are two labelled new rows or more, never all of them."""
    assert len(holdout_clients(frame_of(rows, seed=8), share)) == held


# --- In a retrain: the holdout, the flag and the promotion gate ----------------------------------
def new_model_worse(monkeypatch) -> None:
    """Make the new model score below the old one on the holdout (its real figures, F1 lowered)."""
    from riskcore.model import holdout

    real = holdout.both_models

    def worse(old, new, frame):
        figures = real(old, new, frame)
        figures["new"]["f1"] = max(figures["old"]["f1"] - 0.2, 0.0)
        figures["new"]["f1_interval"] = [max(figures["new"]["f1"] - 0.1, 0.0), figures["new"]["f1"] + 0.1]
        figures["f1_difference_interval"] = [-0.3, -0.1]  # worse beyond the interval: what the gate refuses
        return figures

    monkeypatch.setattr(holdout, "both_models", worse)


def drifted_project(root, gate: bool, **automation):
    from test_reporting import drifted_rows

    from conftest import deploy_pipeline, make_project, write_config, write_csv
    from riskcore.config import load_config

    make_project(root)
    config = deploy_pipeline(load_config(write_config(root, automation={"promotion_gate": gate, **automation})))
    write_csv(config.input_folder / "dataset3.csv", drifted_rows(300, seed=7))
    return config


@pytest.mark.slow  # 1-2.6 s: in make test, out of make test-fast's minute
@pytest.mark.parametrize("gate", [False, True])
def test_a_new_model_worse_on_the_holdout_is_flagged_and_the_gate_keeps_the_old_one(tmp_path, monkeypatch, caplog,
                                                                                      gate):
    from test_reporting import pdf_pages, run_automation, squeeze

    from riskcore.contract import RUN_HISTORY
    from riskcore.ops.history import read_history
    from riskcore.release.load import require_deployment

    config = drifted_project(tmp_path, gate, holdout_share=0.2)  # the course's rule holds out only when asked to
    before = require_deployment(config.prod_deployment_folder).model_version
    new_model_worse(monkeypatch)
    caplog.set_level("INFO")
    assert run_automation(config) == 0
    [run] = read_history(config.output_model_folder / RUN_HISTORY)
    evaluation = run["evaluation"]
    assert evaluation["new_worse"] is True and evaluation["promoted"] is (not gate)
    flagged = [r for r in caplog.records if r.levelname == "WARNING" and "does worse than the old model" in r.message]
    assert len(flagged) == 1
    text = squeeze(" ".join(pdf_pages(config.output_model_folder / "summary_report.pdf")))
    assert "Flag: the new model" in text and "does worse than the old model" in text
    after = require_deployment(config.prod_deployment_folder).model_version
    if gate:
        assert after == before and run["decision"] == "kept_by_gate"
        assert "the old model was kept (automation.promotion_gate)" in text
    else:
        assert after == evaluation["new_model"] != before and run["decision"] == "retrain"
        assert "deployed all the same (automation.promotion_gate is off)" in text
    assert run_automation(config) == 0  # the new files are recorded either way: nothing is new now
    assert len(read_history(config.output_model_folder / RUN_HISTORY)) == 1


def test_a_first_deployment_holds_nothing_out(deployed):
    from riskcore.release.load import deployed_metadata, require_deployment

    metadata = deployed_metadata(require_deployment(deployed.prod_deployment_folder))
    assert metadata["training_rows"] == 220 and "evaluation" not in metadata


@pytest.mark.parametrize(("key", "value"), [
    ("holdout_share", -0.1), ("holdout_share", 1), ("holdout_share", "0.2"), ("holdout_share", float("nan")),
    ("promotion_gate", "yes"), ("promotion_gate", 1),
])
def test_bad_holdout_settings_are_refused_naming_the_key(project, key, value):
    from conftest import write_config
    from riskcore.config import load_config
    from riskcore.contract import ConfigError

    with pytest.raises(ConfigError, match=f'"automation.{key}"'):
        load_config(write_config(project.parent, automation={key: value}))


def test_the_course_rule_retrains_on_every_ingested_row_as_the_course_does(tmp_path):
    """Under the course's rule (drift_test "raw", promotion_gate off, no holdout_share set) model drift retrains on
    finaldata.csv whole, as the course's training.py does: no row held out, the same coefficients as a fit of the
    course's model on every ingested row; an explicit holdout_share still holds rows out."""
    from test_reporting import run_automation

    from riskcore.contract import FINAL_DATA, RUN_HISTORY
    from riskcore.model.training import train_model
    from riskcore.ops.history import read_history
    from riskcore.release.load import deployed_metadata, load_deployed_model, require_deployment

    config = drifted_project(tmp_path, gate=False)
    assert config.automation["holdout_share"] == 0
    assert run_automation(config) == 0
    [run] = read_history(config.output_model_folder / RUN_HISTORY)
    assert run["decision"] == "retrain" and run["evaluation"]["holdout"] is None
    assert "no holdout (automation.holdout_share is 0: the new model learnt from every ingested row" in \
        describe_evaluation(run["evaluation"])
    deployment = require_deployment(config.prod_deployment_folder)
    ingested = pd.read_csv(config.output_folder / FINAL_DATA)
    assert deployed_metadata(deployment)["training_rows"] == len(ingested) == 520
    course = train_model(ingested, config.model)
    deployed = load_deployed_model(deployment)
    np.testing.assert_allclose(deployed.coef_, course.coef_)
    np.testing.assert_allclose(deployed.intercept_, course.intercept_)


@pytest.mark.parametrize(("automation", "share"), [
    ({}, 0.0),  # the course's rule
    ({"holdout_share": 0.2}, 0.2),
    ({"promotion_gate": True}, 0.2),
    ({"drift_test": "significance"}, 0.2),
])
def test_holdout_share_defaults_to_none_only_under_the_course_rule(tmp_path, automation, share):
    from conftest import make_project, write_config
    from riskcore.config import load_config

    make_project(tmp_path)
    assert load_config(write_config(tmp_path, automation=automation)).automation["holdout_share"] == share
