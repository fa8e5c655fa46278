"""Honest evaluation of a retrain: part of the labelled new rows held out, both models scored on the same data.

When the automation retrains, a share of the labelled new rows (automation.holdout_share, 20% by
default; at least one row when there are two or more) is left out of the new model's training,
picked by a shuffle seeded with HOLDOUT_SEED within each class (stratified: clients who left among them
whenever the rows hold one). The old (deployed) and the new model are then both
scored on those rows (the new market, which neither has seen) and on testdata.csv: F1 and ROC AUC,
each with a seeded bootstrap 95% interval (riskcore.model.evaluation.models_with_intervals), and the
difference of the two F1s with a paired bootstrap 95% interval (the same resampled rows for both).

automation.promotion_gate (on by default; off in the course's configuration, whose decision table
deploys every retrain) keeps the old model when the new one is worse beyond that interval (its
whole interval below 0). Without the gate, a new model whose F1 there is below the old one's is
flagged and deployed all the same. A promoted model's baseline becomes its F1 on the holdout: rows
of the market it was retrained for (a holdout without a client who left has no F1: training then
measures the baseline on its own newest rows by folds, riskcore.model.own_market).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from riskcore.config import Config
from riskcore.contract import ID_COLUMN, MODEL_METADATA, TARGET, TEST_DATA
from riskcore.data.validation import labelled
from riskcore.files import atomic_write_json
from riskcore.model.drift import f1_of_counts
from riskcore.model.evaluation import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    baseline_measurement,
    models_with_intervals,
    predict,
    read_test_data,
)
from riskcore.ops.history import describe_evaluation, worse_on_holdout
from riskcore.release.load import Deployment, load_deployed_model, load_trained_model

log = logging.getLogger(__name__)

HOLDOUT_SEED = 0


def holdout_clients(new_rows, share: float, seed: int = HOLDOUT_SEED) -> list[str]:
    """The clients of the labelled new rows to hold out of training: a seeded share, never all of them, stratified
    by the label.

    Each class gives its share of the holdout (rounded), and a window with a client who left holds at least
    one out: a holdout without one has no F1, so it could neither judge the retrain nor be its baseline (a
    plain shuffle of a window of 250 rows with the 20 leavers automation.min_positives asks for held none of
    them among its 50 rows about once in 100: 0.0094, hypergeometric).
    """
    rows = labelled(new_rows) if new_rows is not None else None
    if rows is None or len(rows) < 2 or share <= 0:
        return []
    ids = rows[ID_COLUMN].astype(str).to_numpy()
    left = rows[TARGET].to_numpy() == 1
    count = min(len(ids) - 1, max(1, round(share * len(ids))))
    leavers = min(int(left.sum()), count, max(1 if left.any() else 0, round(count * left.mean())))
    stayers = min(count - leavers, int((~left).sum()))
    leavers = count - stayers  # a window of nearly all leavers fills the holdout from them
    order = np.random.default_rng(seed).permutation(len(ids))
    return sorted([*ids[order[left[order]][:leavers]], *ids[order[~left[order]][:stayers]]])


def held_out_rows(new_rows, clients: list[str]):
    """The labelled new rows of the held-out clients."""
    rows = labelled(new_rows)
    return rows[rows[ID_COLUMN].astype(str).isin(set(clients))]


def both_models(old, new, frame) -> dict[str, Any]:
    """Each model's F1 and AUC with their intervals, and the paired interval of the F1 difference."""
    old_figures, new_figures = models_with_intervals([old, new], frame)
    return {"old": old_figures, "new": new_figures,
            "f1_difference_interval": f1_difference_interval(old, new, frame) if len(frame) >= 2 else None}


def f1_difference_interval(old, new, frame, resamples: int = BOOTSTRAP_RESAMPLES,
                           seed: int = BOOTSTRAP_SEED) -> list[float]:
    """A paired bootstrap 95% interval of F1(new) - F1(old) on the same labelled rows (percentile)."""
    labels = frame[TARGET].to_numpy() == 1
    drawn = np.random.default_rng(seed).integers(0, len(labels), size=(resamples, len(labels)))
    differences = np.zeros(resamples)
    for sign, model in ((1, new), (-1, old)):
        predicted = (predict(model, frame) == 1)[drawn]
        truth = labels[drawn]
        tp, fp, fn = ((truth & predicted).sum(1), (~truth & predicted).sum(1), (truth & ~predicted).sum(1))
        differences += sign * f1_of_counts(tp, fp, fn)
    return [float(x) for x in np.percentile(differences, [2.5, 97.5])]


def evaluate_retrain(config: Config, current: Deployment, new_rows, clients: list[str]) -> dict[str, Any]:
    """Score the deployed and the newly trained model on the holdout and the test data; record it with the new model.

    The evaluation (with "new_worse" and "promoted": whether the new model is to be deployed) is
    written into the new model's metadata (modelmetadata.json, deployed with it) and returned for
    the run history.
    """
    old = load_deployed_model(current)
    new, metadata = load_trained_model(config.output_model_folder)
    holdout = held_out_rows(new_rows, clients)
    evaluation: dict[str, Any] = {
        "old_model": current.model_version,
        "new_model": metadata["model_version"],
        "holdout_share": float(config.automation["holdout_share"]),
        "holdout": ({"share": float(config.automation["holdout_share"]), "seed": HOLDOUT_SEED,
                     **both_models(old, new, holdout)} if len(holdout) else None),
        "test_data": {"name": TEST_DATA, **both_models(old, new, read_test_data(config))},
    }
    held = evaluation["holdout"]
    gate = config.automation["promotion_gate"]
    if gate:  # worse beyond the interval: the new model's F1 is below the old one's in (nearly) every resample
        interval = (held or {}).get("f1_difference_interval")
        evaluation["new_worse"] = interval is not None and interval[1] < 0
    else:
        evaluation["new_worse"] = held is not None and held["new"]["f1"] < held["old"]["f1"]
    evaluation["promoted"] = not (evaluation["new_worse"] and gate)
    if held is not None and held["new"]["positives"]:
        metadata["baseline"] = baseline_measurement(
            new, holdout, "held-out rows of the new market, left out of its training")
    atomic_write_json(config.output_model_folder / MODEL_METADATA, {**metadata, "evaluation": evaluation})
    log.info("old and new model on the same data: %s", describe_evaluation(evaluation))
    if evaluation["new_worse"]:
        log.warning("%s", worse_on_holdout(evaluation))
    return evaluation
