"""How well a model does: predictions, probabilities, F1 (the course's score) and the fuller evaluation."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score, roc_curve

from riskcore.config import Config
from riskcore.contract import (
    FEW_ROWS,
    MODEL_FILE,
    MODEL_METADATA,
    SCORE_FILE,
    SCORE_RECORD,
    TARGET,
    TEST_DATA,
    DataError,
)
from riskcore.data.client_csv import read_client_csv
from riskcore.data.validation import features_of
from riskcore.files import atomic_write_json, atomic_write_text, read_json, sha256_file, utc_now
from riskcore.model.drift import Counts
from riskcore.release.load import load_trained_model

log = logging.getLogger(__name__)


def attrition_probability(model, features) -> np.ndarray:
    """P(exited = 1) per feature row, from the model's own predict_proba."""
    column = list(model.classes_).index(1)
    return model.predict_proba(features)[:, column]


def predict(model, frame):
    """Class predictions (0/1) for a validated frame."""
    return model.predict(features_of(frame))


def f1_of(labels, predictions) -> float:
    """F1 of the positive class; 0.0 where it is undefined (no positives at all)."""
    return float(f1_score(labels, predictions, zero_division=0.0))


def score_model(model, dataframe, score_path: Path | None = None) -> float:
    """F1 of `model` on `dataframe`; saved atomically to `score_path` when one is given."""
    score = f1_of(dataframe[TARGET].to_numpy(), predict(model, dataframe))
    if score_path is not None:
        atomic_write_text(score_path, repr(score))
    return score


def read_score(path: Path) -> float:
    """Read a latestscore.txt, or raise DataError naming it."""
    try:
        return float(path.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        raise DataError(f"Score file {path} does not exist.") from None
    except (OSError, ValueError):
        raise DataError(f"Score file {path} does not hold a number.") from None


def read_test_data(config: Config):
    """The validated test data."""
    if not config.test_data_file.is_file():
        raise DataError(f"Test data {config.test_data_file} does not exist.")
    return read_client_csv(config.test_data_file)


def score_trained(config: Config, model_folder: Path | None = None) -> float:
    """Score the trained model on the test data and write latestscore.txt beside it."""
    model_folder = model_folder or config.output_model_folder
    if not (model_folder / MODEL_FILE).is_file():
        raise DataError(f"No trained model in {model_folder}; run training.py first.")
    model, metadata = load_trained_model(model_folder)
    test = read_test_data(config)
    score = score_model(model, test, model_folder / SCORE_FILE)
    # Training measured the baseline on its own rows where the test data is of another market
    # (riskcore.model.own_market.own_market_baseline); otherwise, until a retrain measures it on held-out
    # rows of the new market (riskcore.model.holdout), the test data, of the model's market, is its baseline.
    if not (metadata.get("baseline") or {}).get("folds"):
        record_baseline(model_folder, baseline_measurement(model, test, f"the test data, {TEST_DATA}"))
    # Beside the bare number of the course's file: which model it scores, so a deployment can refuse a
    # score that belongs to another model.
    atomic_write_json(model_folder / SCORE_RECORD, {
        "score": score, "model_sha256": metadata["model_sha256"], "model_version": metadata["model_version"],
        "test_data_sha256": sha256_file(config.test_data_file), "scored_at": utc_now()})
    log.info("model %s scores F1 %.4f on %s", metadata["model_version"], score, TEST_DATA)
    return score


def baseline_measurement(model, frame, source: str) -> dict[str, Any]:
    """The model measured on held-out labelled rows: the drift baseline later windows are tested against."""
    features = features_of(frame)
    return baseline_of(frame[TARGET].to_numpy(), model.predict(features), attrition_probability(model, features),
                       source)


def baseline_of(labels, predictions, scores, source: str) -> dict[str, Any]:
    """A baseline from held-out labels, the model's predictions and its scores (probabilities or log-odds: the AUC
    takes their order only).

    F1, precision, recall and ROC AUC with the rows and clients who left they were measured on,
    and the confusion counts (all the significance test needs of the baseline).
    """
    labels = np.asarray(labels)
    counts = Counts.of(labels == 1, np.asarray(predictions) == 1)
    both = len(set(labels.tolist())) == 2
    predicted = counts.tp + counts.fp
    return {
        "source": source, "rows": counts.rows, "positives": counts.positives, "f1": counts.f1,
        "precision": counts.tp / predicted if predicted else None,
        "recall": counts.tp / counts.positives if counts.positives else None,
        "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
        "counts": counts.as_dict(), "measured_at": utc_now(),
    }


def record_baseline(model_folder: Path, baseline: dict[str, Any]) -> None:
    """Keep a baseline in the trained model's metadata (modelmetadata.json), deployed with it."""
    path = model_folder / MODEL_METADATA
    atomic_write_json(path, {**read_json(path, "Model metadata"), "baseline": baseline})


@dataclass
class Evaluation:
    """How a model does on labelled data."""

    rows: int
    positives: int
    f1: float
    precision: float
    recall: float
    matrix: list[list[int]]  # [[true 0 predicted 0, true 0 predicted 1], [true 1 ..., ...]]
    auc: float | None
    roc: tuple[list[float], list[float]] | None  # false and true positive rates


def evaluate(model, frame) -> Evaluation:
    """F1, precision, recall, confusion matrix and ROC curve of `model` on a labelled frame."""
    features = features_of(frame)
    labels = frame[TARGET].to_numpy()
    predictions = model.predict(features)
    probabilities = attrition_probability(model, features)
    both = len(set(labels.tolist())) == 2
    roc = roc_curve(labels, probabilities)[:2] if both else None
    return Evaluation(
        rows=int(len(labels)),
        positives=int(labels.sum()),
        f1=f1_of(labels, predictions),
        precision=float(precision_score(labels, predictions, zero_division=0.0)),
        recall=float(recall_score(labels, predictions, zero_division=0.0)),
        matrix=confusion_matrix(labels, predictions, labels=[0, 1]).tolist(),
        auc=float(roc_auc_score(labels, probabilities)) if both else None,
        roc=(roc[0].tolist(), roc[1].tolist()) if roc is not None else None,
    )


BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def _f1_and_auc(labels, *per_model, axis=-1):
    """F1 and ROC AUC of each resample at once (scipy.stats.bootstrap's vectorized statistic), for each model.

    `per_model` is each model's predictions and the rank of each row's probability among the frame's
    (ties share one: score_groups). The AUC is the Mann-Whitney form with ties counting one half,
    equal to roc_auc_score and, exactly, to the average-rank form; NaN for a resample of one class.
    Counting instead of sorting each resample (stats.rankdata: 85% of the time), with the resamples
    still drawn by scipy.stats.bootstrap and shared by both models, took both models' figures on a
    2,000-row holdout from 0.48-0.81 s to 0.12-0.14 s. Returns F1 and AUC of the first model, then
    of the second, and so on.
    """
    if axis not in (-1, labels.ndim - 1):
        raise ValueError("the statistic takes the rows on the last axis")
    shape = labels.shape[:-1]
    labels = labels.reshape(-1, labels.shape[-1])
    positive = labels == 1
    positives = labels.sum(-1)
    figures = []
    for predictions, groups in zip(per_model[::2], per_model[1::2], strict=True):
        predictions, groups = predictions.reshape(labels.shape), groups.reshape(labels.shape)
        tp = (labels * predictions).sum(-1)
        wrong = predictions.sum(-1) + positives - 2 * tp  # false positives and false negatives: whole numbers
        f1 = np.divide(2 * tp, 2 * tp + wrong, out=np.zeros_like(tp, dtype="float64"), where=(2 * tp + wrong) > 0)
        figures += [f1.reshape(shape), _auc_of_draws(positive, groups).reshape(shape)]
    return np.stack(figures)


def _auc_of_draws(positive, groups) -> np.ndarray:
    """ROC AUC of each resample (a row of `positive` and `groups`), from how often each score group was drawn.

    With the draws counted per group and class (one bincount, no sort per resample): every positive
    beats each negative of a lower group and ties with those of its own, so the Mann-Whitney U is a
    sum of whole and half numbers, exact in float64, as is the average-rank sum it equals.
    """
    resamples, width = groups.shape[0], int(groups.max()) + 1 if groups.size else 1
    cells = 2 * (groups + width * np.arange(resamples)[:, None]) + positive
    drawn = np.bincount(cells.ravel(), minlength=2 * resamples * width).reshape(resamples, width, 2)
    negatives, positives = drawn[..., 0], drawn[..., 1]
    below = np.cumsum(negatives, axis=1) - negatives
    wins = (positives * (below + 0.5 * negatives)).sum(1)
    count = positive.sum(1).astype("float64")
    pairs = count * (positive.shape[1] - count)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def score_groups(probabilities) -> np.ndarray:
    """Each row's place among the distinct probabilities (0 the lowest; ties share a place)."""
    return np.unique(probabilities, return_inverse=True)[1].reshape(-1)


def scores_with_intervals(model, frame, resamples: int = BOOTSTRAP_RESAMPLES,
                          seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """F1 and ROC AUC of `model` on a labelled frame, each with a bootstrap 95% interval (percentile, seeded).

    scipy.stats.bootstrap resamples the rows, `resamples` times; resamples of one class have no AUC
    and are left out of its interval. `few_rows` marks figures measured on fewer than FEW_ROWS rows.
    """
    return models_with_intervals([model], frame, resamples, seed)[0]


def models_with_intervals(models, frame, resamples: int = BOOTSTRAP_RESAMPLES,
                          seed: int = BOOTSTRAP_SEED) -> list[dict[str, Any]]:
    """scores_with_intervals of several models on the same frame, from one set of resampled rows.

    The same seed draws the same rows for every model, so each model's figures are those
    scores_with_intervals gives it alone; the rows are drawn once.
    """
    features = features_of(frame)
    labels = frame[TARGET].to_numpy(dtype="float64")
    both = len(set(labels.tolist())) == 2
    results, columns = [], []
    for model in models:
        predictions = model.predict(features).astype("float64")
        probabilities = attrition_probability(model, features)
        results.append({
            "rows": int(len(labels)), "positives": int(labels.sum()), "few_rows": len(labels) < FEW_ROWS,
            "f1": f1_of(labels, predictions), "f1_interval": None,
            "auc": float(roc_auc_score(labels, probabilities)) if both else None, "auc_interval": None,
            "resamples": resamples, "seed": seed,
        })
        columns += [predictions, score_groups(probabilities)]
    if len(labels) < 2:
        return results
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # a resample of one class: no AUC
        drawn = stats.bootstrap((labels, *columns), _f1_and_auc, n_resamples=resamples, paired=True,
                                vectorized=True, batch=100, method="percentile",
                                rng=np.random.default_rng(seed)).bootstrap_distribution
    for number, result in enumerate(results):
        f1s, aucs = drawn[2 * number], drawn[2 * number + 1]
        result["f1_interval"] = [float(x) for x in np.percentile(f1s, [2.5, 97.5])]
        aucs = aucs[np.isfinite(aucs)]
        if both and len(aucs):
            result["auc_interval"] = [float(x) for x in np.percentile(aucs, [2.5, 97.5])]
    return results
