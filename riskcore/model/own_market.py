"""The drift baseline of a model without held-out rows of its market that hold a client who left: the test data where
it is of the model's market, else the model's own rows held out by cross-validation.

A retrain by the automation takes its baseline from its held-out new rows (riskcore.model.holdout); a model trained
otherwise (training.py on its own, or a first model) has no such rows. Issue 19 asks for "held-out labelled rows of
the data it learned from ... for the first model, a holdout of its training data or the test data of the same
market": which of the two is decided here, by the one data-drift rule. A retrain whose held-out rows hold nobody
who left (F1 is undefined there) is measured on its own rows by folds too: the test data is the old market's.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from riskcore.config import Config
from riskcore.contract import TARGET, TEST_DATA
from riskcore.data.client_csv import read_client_csv
from riskcore.data.validation import labelled
from riskcore.formatting import count, score
from riskcore.model.evaluation import baseline_of

log = logging.getLogger(__name__)


def test_data_of_another_market(config: Config, frame, profile: dict[str, Any]) -> str | None:
    """Why the test data cannot be the drift baseline of a model trained on `frame` (its labelled rows, whose
    training profile is `profile`); None when it can (the log says why either way).

    The test data is the baseline (scoring.py measures it there) when it is of the model's market: none
    of its features drifted from the training data by the one rule (riskcore.model.drift.data_drift,
    automation.psi_threshold and ks_alpha, on the training profile), or it has too few rows to tell. Also
    where the training rows cannot be cut into CALIBRATION_FOLDS stratified folds. The course's rule
    (drift_test "raw") takes latestscore.txt as its baseline: the test data, always.
    """
    from riskcore.model.drift import data_drift
    from riskcore.model.drift_evidence import figures_text

    auto = config.automation
    if auto["drift_test"] == "raw" or not config.test_data_file.is_file():
        return None
    drift = data_drift(read_client_csv(config.test_data_file), profile, auto["psi_threshold"], auto["ks_alpha"])
    if drift["too_few_rows"]:
        log.info("drift baseline: the test data, %s, has too few rows (%d) to tell whether it is of the model's "
                 "market: scoring.py measures the baseline there", TEST_DATA, drift["rows"])
        return None
    if not drift["drift"]:
        log.info("drift baseline: the test data, %s, is of the model's market (no feature drifted from the training "
                 "data): scoring.py measures the baseline there", TEST_DATA)
        return None
    drifted = "; ".join(f"{name} {figures_text(figures)}" for name, figures in drift["features"].items()
                        if figures["drift"])
    return foldable(frame, f"the test data, {TEST_DATA}, is of another market ({drifted})")


def foldable(frame, why: str) -> str | None:
    """`why` the baseline is measured on the training rows by folds, where they can be cut into CALIBRATION_FOLDS
    stratified folds; else None, the test data staying the baseline (a warning says so)."""
    from riskcore.model.calibration import CALIBRATION_FOLDS

    if np.bincount(labelled(frame)[TARGET].to_numpy(), minlength=2).min() >= CALIBRATION_FOLDS:
        return why
    log.warning("drift baseline: %s, but the training data has fewer than %d rows of a class to hold out in folds: "
                "the test data, %s, stays the baseline", why, CALIBRATION_FOLDS, TEST_DATA)
    return None


def no_leaver_held_out(config: Config, frame, held_out: int) -> str | None:
    """Why a retrain whose `held_out` rows hold nobody who left is measured on its own rows (`frame`, the rows it
    learns from) by folds; None where the test data stays its baseline (the course's rule, whose baseline is
    latestscore.txt, or too few rows of a class to fold, logged)."""
    if config.automation["drift_test"] == "raw":
        return None
    return foldable(frame, f"its {held_out:,} held-out rows of the new market hold nobody who left (F1 is undefined "
                           "there)")


def newest_with_leavers(target, newest: int, leavers: int) -> int:
    """How many of the newest rows to measure on: `newest`, widened until they hold `leavers` clients who left (or
    every row); the newest 2,000 rows of a retrain after an all-negative window held none, so no F1."""
    newest = min(len(target), newest)
    positions = np.flatnonzero(np.asarray(target) == 1)
    if len(positions) and (positions >= len(target) - newest).sum() < leavers:
        newest = len(target) - int(positions[-min(leavers, len(positions))])
    return newest


def own_market_baseline(frame, log_odds, why: str, newest: int, leavers: int = 1) -> dict[str, Any]:
    """The drift baseline from the training rows' out-of-fold log-odds (train_model's `out_of_fold`), where no
    held-out rows of the model's market can measure it (`why`): on the newest `newest` rows (automation.recent_rows),
    the market the next months come from, widened to hold `leavers` clients who left (automation.min_positives,
    the window's own minimum). The served model stays the one fitted on every row."""
    from riskcore.model.calibration import CALIBRATION_FOLDS

    target = labelled(frame)[TARGET].to_numpy()
    newest = newest_with_leavers(target, newest, leavers)
    rows = f"the newest {newest:,} of its {len(target):,} rows" if newest < len(target) else f"its {newest:,} rows"
    baseline = baseline_of(target[-newest:], log_odds[-newest:] > 0, log_odds[-newest:],  # > 0: the model's predict
                           f"held-out rows of its training data by {CALIBRATION_FOLDS}-fold cross-validation ({rows}): "
                           f"{why}")
    baseline.update(folds=CALIBRATION_FOLDS, training_rows=int(len(target)))
    log.info("drift baseline: F1 %s on %s rows (%s left), %s", score(baseline["f1"]), count(baseline["rows"]),
             count(baseline["positives"]), baseline["source"])
    return baseline
