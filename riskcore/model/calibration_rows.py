"""Which held-out rows calibrate a newly trained model, and the calibrator fitted on them (riskcore.model.calibration).

A retrain's held-out rows, else the test data of the model's market, else the out-of-fold log-odds
of the newest training rows; where a retrain's held-out rows are too few, its training rows'
out-of-fold log-odds join them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from riskcore.config import Config
from riskcore.contract import TARGET, TEST_DATA
from riskcore.data.client_csv import read_client_csv
from riskcore.data.validation import features_of, labelled
from riskcore.model.time_limit import TrainingTimedOut, run_within

log = logging.getLogger(__name__)


def calibration_rows(config: Config, held_out):
    """The labelled rows the calibrator is fitted on, and what they are, in words.

    A retrain's holdout (riskcore.model.holdout: new rows its model never saw); for a first model, the
    test data of its market, so that the model still learns from every labelled row (and predicts as
    the course's model does; a test data of another market gives way to out_of_fold_rows). None when
    there are none.
    """
    if held_out is not None and len(held_out):
        return held_out, "held-out rows of the new market, left out of its training"
    if config.test_data_file.is_file():
        return read_client_csv(config.test_data_file), f"the test data ({TEST_DATA})"
    return None, f"no held-out rows ({TEST_DATA} does not exist)"


def out_of_fold_rows(frame, log_odds, baseline: dict[str, Any]) -> tuple[str, tuple]:
    """The rows an out-of-fold baseline was measured on (own_market_baseline: the newest training rows), in words,
    with their out-of-fold log-odds and labels: what calibrate fits on where the test data is of another market."""
    newest = int(baseline["rows"])
    target = labelled(frame)[TARGET].to_numpy()
    source = (f"out-of-fold log-odds of the newest {newest:,} of its {len(target):,} training rows "
              f"({baseline['folds']} folds), the rows of its drift baseline")
    return source, (log_odds[-newest:], target[-newest:])


def with_out_of_fold(log_odds, labels, training, settings: dict[str, Any], seconds: float | None):
    """The training rows' out-of-fold log-odds and labels followed by the held-out rows' ones, their source in words
    and what they are; None where even together they are too few (or a class has fewer rows than folds).

    The final model stays the one fitted on every training row: only its calibrator learns from
    the models that each left a fold of those rows out. Their fits run in one child process stopped
    after `seconds` (automation.max_train_seconds, TrainingTimedOut), as training's fit does.
    """
    from riskcore.model.calibration import CALIBRATION_FOLDS, too_few_to_calibrate
    from riskcore.model.training import out_of_fold_log_odds  # the model's own fits: training imports this module

    training = labelled(training)
    target = training[TARGET].to_numpy()
    joined_labels = np.concatenate([target, labels])
    if too_few_to_calibrate(joined_labels) or np.bincount(target, minlength=2).min() < CALIBRATION_FOLDS:
        return None
    features = features_of(training)
    if seconds is None:
        folded = out_of_fold_log_odds(settings, features, target)
    else:
        folded = run_within(seconds, f"the out-of-fold fits stopped after {seconds:g} s (automation.max_train_seconds)",
                            out_of_fold_log_odds, settings, features, target)
    source = (f"out-of-fold log-odds of the {len(target):,} training rows ({CALIBRATION_FOLDS} folds) and the "
              f"{len(labels):,} held-out rows: the held-out rows alone were too few")
    detail = {"training_rows": int(len(target)), "held_out_rows": int(len(labels)), "folds": CALIBRATION_FOLDS}
    return np.concatenate([folded, log_odds]), joined_labels, source, detail


def calibrate(model, rows, source: str, training=None, settings: dict[str, Any] | None = None,
              seconds: float | None = None, scored: tuple | None = None):
    """The model's calibrator, fitted on held-out labelled rows (riskcore.model.calibration), and its record.

    `training`: a retrain's training rows (`rows` its held-out ones). Where the held-out rows are too
    few to calibrate, the training rows' out-of-fold log-odds join them (with_out_of_fold: the model's
    `settings`, within `seconds`); the record's "out_of_fold" says how many of each. `scored`: log-odds
    and labels of rows the model never learnt from, given instead of `rows` (out_of_fold_rows).
    """
    import time

    from riskcore.model.calibration import fit_calibrator, too_few_to_calibrate

    started = time.perf_counter()
    rows = labelled(rows) if rows is not None else None
    if scored is not None:
        log_odds, labels = scored
    elif rows is None or not len(rows):
        log_odds, labels = np.zeros(0), np.zeros(0)
    else:
        log_odds, labels = model.decision_function(features_of(rows)), rows[TARGET].to_numpy()
    joined, stopped = None, None
    if training is not None and too_few_to_calibrate(labels):
        try:
            joined = with_out_of_fold(log_odds, labels, training, settings, seconds)
        except TrainingTimedOut as exc:  # the model is fitted: it goes without a calibrator, and the record says why
            stopped = str(exc)
    if joined is not None:
        log_odds, labels, source, detail = joined
    calibrator, record = fit_calibrator(log_odds, labels, source)
    if joined is not None:
        record["out_of_fold"] = detail
    if stopped:
        record["reason"] += f" ({stopped})"
    record["seconds"] = round(time.perf_counter() - started, 4)
    before, after = record.get("before") or {}, record.get("after") or {}
    log.info("calibration on %s (%d rows): %s; ECE %s -> %s, Brier %s -> %s", source, record["rows"],
             record["method"], *(f"{v:.4f}" if v is not None else "-" for v in (
                 before.get("ece"), after.get("ece"), before.get("brier"), after.get("brier"))))
    return calibrator, record
