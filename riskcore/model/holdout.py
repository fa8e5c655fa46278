"""Honest evaluation of a retrain: part of the labelled new rows held out, both models scored on the same data.

When the automation retrains, a share of the labelled new rows (automation.holdout_share, 20% by
default; at least one row when there are two or more) is left out of the new model's training,
picked by a shuffle seeded with HOLDOUT_SEED. The old (deployed) and the new model are then both
scored on those rows (the new market, which neither has seen) and on testdata.csv: F1 and ROC AUC,
each with a seeded bootstrap 95% interval (riskcore.model.evaluation.scores_with_intervals). A new model
whose F1 on the holdout is below the old one's is flagged; automation.promotion_gate (off by
default, so the course's decision table holds) then keeps the old model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from riskcore.config import Config
from riskcore.contract import ID_COLUMN, MODEL_METADATA, TEST_DATA
from riskcore.data.validation import labelled
from riskcore.files import atomic_write_json
from riskcore.model.evaluation import read_test_data, scores_with_intervals
from riskcore.ops.history import describe_evaluation, worse_on_holdout
from riskcore.release.load import Deployment, load_deployed_model, load_trained_model

log = logging.getLogger(__name__)

HOLDOUT_SEED = 0


def holdout_clients(new_rows, share: float, seed: int = HOLDOUT_SEED) -> list[str]:
    """The clients of the labelled new rows to hold out of training: a seeded share, never all of them."""
    ids = labelled(new_rows)[ID_COLUMN].astype(str).tolist() if new_rows is not None else []
    if len(ids) < 2 or share <= 0:
        return []
    count = min(len(ids) - 1, max(1, round(share * len(ids))))
    order = np.random.default_rng(seed).permutation(len(ids))
    return sorted(ids[i] for i in order[:count])


def held_out_rows(new_rows, clients: list[str]):
    """The labelled new rows of the held-out clients."""
    rows = labelled(new_rows)
    return rows[rows[ID_COLUMN].astype(str).isin(set(clients))]


def both_models(old, new, frame) -> dict[str, Any]:
    return {"old": scores_with_intervals(old, frame), "new": scores_with_intervals(new, frame)}


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
        "holdout": ({"share": float(config.automation["holdout_share"]), "seed": HOLDOUT_SEED,
                     **both_models(old, new, holdout)} if len(holdout) else None),
        "test_data": {"name": TEST_DATA, **both_models(old, new, read_test_data(config))},
    }
    held = evaluation["holdout"]
    evaluation["new_worse"] = held is not None and held["new"]["f1"] < held["old"]["f1"]
    evaluation["promoted"] = not (evaluation["new_worse"] and config.automation["promotion_gate"])
    atomic_write_json(config.output_model_folder / MODEL_METADATA, {**metadata, "evaluation": evaluation})
    log.info("old and new model on the same data: %s", describe_evaluation(evaluation))
    if evaluation["new_worse"]:
        log.warning("%s", worse_on_holdout(evaluation))
    return evaluation
