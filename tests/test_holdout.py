"""Honest evaluation of a retrain (riskcore.holdout, riskcore.evaluation.scores_with_intervals): the held-out
new rows, both models' F1 and ROC AUC with bootstrap intervals, and the marks of few rows and of an AUC
below 0.5."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score

from riskcore.contract import COLUMNS, FEATURES, FEW_ROWS
from riskcore.evaluation import scores_with_intervals
from riskcore.history import describe_evaluation, figure_text
from riskcore.holdout import holdout_clients


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


def test_the_interval_is_a_95_percent_one(model):
    """Over many independent samples of one population, the F1 interval holds the population's F1 about 95% of
    the time (a coarse check: 100 samples of 150 rows, 200 resamples each)."""
    population = frame_of(40_000, seed=9)
    truth = f1_score(population["exited"], model.predict(population[list(FEATURES)].to_numpy(float)))
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(100):
        sample = population.iloc[rng.choice(len(population), 150, replace=False)]
        low, high = scores_with_intervals(model, sample, resamples=200)["f1_interval"]
        covered += low <= truth <= high
    assert 85 <= covered <= 100


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
