"""The attrition model: a logistic regression on the three features, its metadata and how it is saved."""

from __future__ import annotations

import logging
import pickle
import platform
import re
import warnings
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas
import sklearn
from sklearn.linear_model import LogisticRegression

from riskcore.config import Config
from riskcore.contract import (
    CALIBRATOR_FILE,
    FEATURES,
    ID_COLUMN,
    INGESTION_RECORD,
    MODEL_FILE,
    MODEL_METADATA,
    TARGET,
    TRAINING_DATA,
    ConfigError,
    DataError,
)
from riskcore.data.client_csv import read_client_csv
from riskcore.data.contract_rules import LABELS_OPTIONAL
from riskcore.data.validation import features_of, labelled
from riskcore.faults import checkpoint
from riskcore.files import atomic_write_bytes, atomic_write_json, read_json, sha256_bytes, sha256_file
from riskcore.formatting import plural
from riskcore.model.calibration_rows import calibrate, calibration_rows, out_of_fold_rows
from riskcore.model.drift_evidence import quantiles_of
from riskcore.model.own_market import no_leaver_held_out, own_market_baseline, test_data_of_another_market
from riskcore.model.reasons import model_terms
from riskcore.model.time_limit import run_within

log = logging.getLogger(__name__)

PROFILE_POINTS = 1001  # quantiles kept per feature: enough for KS and PSI against new data


CHECK_ITERATIONS = 10  # check_settings' fit on four rows: enough to meet every parameter rule


def check_settings(config: Config) -> None:
    """scikit-learn's own parameter rules for the model settings, applied before any step runs.

    A setting it refuses is a ConfigError (exit 2) naming the key and the config file, not a
    traceback at the first retrain.
    """
    tiny = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [2.0, 1.0, 0.0], [3.0, 3.0, 3.0]])
    # A few iterations check the rules as well as all of them: this fit runs in the tick's own process, where
    # no time limit can stop C code, and sag/saga with C 1e6 and tol 1e-300 took 40-94 s on these four rows.
    settings = {**config.model, "max_iter": min(config.model["max_iter"], CHECK_ITERATIONS)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence on four rows says nothing about the settings
            build_model(settings).fit(tiny, np.array([0, 1, 0, 1]))
    except (ValueError, TypeError, OverflowError) as exc:  # scikit-learn's InvalidParameterError is a ValueError
        named = re.search(r"The '(\w+)' parameter", str(exc))
        key = f"model.{named.group(1)}" if named else "model"
        detail = str(exc).split(" of LogisticRegression ", 1)[-1].rstrip(".")
        raise ConfigError(f'Config key "{key}" in {config.config_file} is refused by scikit-learn: {detail}.') from None


def build_model(settings: dict[str, Any]):
    """An unfitted LogisticRegression with the given settings."""
    return LogisticRegression(**settings)


def fit_model(settings: dict[str, Any], features, target):
    """The model with these settings, fitted on these rows."""
    return build_model(settings).fit(features, target)


def fit_within(settings: dict[str, Any], features, target, seconds: float, job=None):
    """Fit in a process of its own (run_within), killed after `seconds` (TrainingTimedOut); `job`: fit_model or
    fit_with_out_of_fold."""
    return run_within(seconds, f"Training stopped after {seconds:g} s (automation.max_train_seconds): the solver "
                               "did not finish with these model settings, so no model was written.",
                      job or fit_model, settings, features, target)


def fit_with_out_of_fold(settings: dict[str, Any], features, target):
    """The model fitted on every row, and each row's out-of-fold log-odds (out_of_fold_log_odds)."""
    return fit_model(settings, features, target), out_of_fold_log_odds(settings, features, target)


def out_of_fold_log_odds(settings: dict[str, Any], features, target) -> np.ndarray:
    """Each row's log-odds from the model with these settings fitted on the other rows: CALIBRATION_FOLDS stratified,
    seeded folds (scikit-learn's cross_val_predict, as CalibratedClassifierCV(ensemble=False) calibrates)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from riskcore.model.calibration import CALIBRATION_FOLDS, CALIBRATION_SEED

    folds = StratifiedKFold(CALIBRATION_FOLDS, shuffle=True, random_state=CALIBRATION_SEED)
    return cross_val_predict(build_model(settings), features, target, cv=folds, method="decision_function")


def train_model(frame, settings: dict[str, Any], seconds: float | None = None, out_of_fold: bool = False):
    """Fit the model on a validated frame's labelled rows (clients not labelled yet are left out).

    `seconds`: a time limit (automation.max_train_seconds); the fit then runs in a child process.
    `out_of_fold`: also each labelled row's out-of-fold log-odds, returned with the model (own_market_baseline);
    the folds' fits run in the same child process, within the same limit (one process started, not two: a
    start cost 0.1 s, twice the five fits on 10,000 rows).
    """
    frame = labelled(frame)
    if len(frame) == 0:
        raise DataError("The training data holds no labelled row (\"exited\" is empty in every row); "
                        "a model needs clients whose outcome is known.")
    if frame[TARGET].nunique() < 2:
        raise DataError("The training data holds only one class of \"exited\"; a model needs both.")
    features, target = features_of(frame), frame[TARGET].to_numpy()
    job = fit_with_out_of_fold if out_of_fold else fit_model
    if seconds is None:
        return job(settings, features, target)
    return fit_within(settings, features, target, seconds, job)


def feature_profile(frame) -> dict[str, Any]:
    """Quantiles of each feature, so later runs can compare new data without the old rows."""
    return {
        "rows": int(len(frame)),
        "exited_share": float(frame[TARGET].mean()),
        "quantiles": quantiles_of(frame, PROFILE_POINTS),
    }


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), "numpy": np.__version__,
            "pandas": pandas.__version__, "scikit-learn": sklearn.__version__}


def model_version(trained_at: datetime, model_sha256: str) -> str:
    """A sortable, human-readable model version: training time and the model's hash."""
    return f"{trained_at:%Y%m%dT%H%M%SZ}-{model_sha256[:8]}"


def model_metadata(model_bytes: bytes, frame, data_sha256: str, settings: dict[str, Any], model) -> dict:
    """Everything recorded beside a trained model, `frame` the data it was fitted on.

    With its coefficients, intercept and average client (riskcore.model.reasons), the reasons of any
    client's risk can be computed from the metadata alone.
    """
    now = datetime.now(UTC)
    sha = sha256_bytes(model_bytes)
    return {
        "model_version": model_version(now, sha),
        "model_sha256": sha,
        "trained_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "features": list(FEATURES),
        "target": TARGET,
        "training_data_sha256": data_sha256,
        "training_rows": int(len(frame)),
        "settings": settings,
        "library_versions": library_versions(),
        "training_profile": feature_profile(frame),
        **model_terms(model, frame),
    }


def save_model(model, metadata_for, model_folder: Path, calibrator=None) -> dict:
    """Pickle the model (and its calibrator) and write them with their metadata, each atomically."""
    from riskcore.model.calibration import UNCALIBRATED, calibrator_bytes

    model_bytes = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    calibration = calibrator_bytes(calibrator or UNCALIBRATED)
    metadata = {**metadata_for(model_bytes), "calibrator_sha256": sha256_bytes(calibration)}
    atomic_write_bytes(model_folder / MODEL_FILE, model_bytes)
    checkpoint("training-wrote-model")
    atomic_write_bytes(model_folder / CALIBRATOR_FILE, calibration)
    atomic_write_json(model_folder / MODEL_METADATA, metadata)
    return metadata


def training_rows(data_file: Path, data_sha256: str):
    """The labelled rows to learn from: each client's latest labelled snapshot, and how many clients are left out
    (their latest snapshot is unlabelled and no earlier labelled one is known).

    finaldata.csv holds each client's latest snapshot; when some are unlabelled (this month's
    export), ingestion wrote their latest labelled snapshots to trainingdata.csv beside it, named
    with its sha256 in the ingestion record, which is used only while it matches finaldata.csv.
    """
    every_client = read_client_csv(data_file, require_target=LABELS_OPTIONAL)
    frame = labelled(every_client)
    unlabelled = len(every_client) - len(frame)
    side, record_path = data_file.with_name(TRAINING_DATA), data_file.with_name(INGESTION_RECORD)
    if unlabelled and side.is_file() and record_path.is_file():
        record = read_json(record_path, "Ingestion record")
        named = record.get("training_data") or {}
        if record.get("final_data_sha256") == data_sha256 and named.get("sha256") == sha256_file(side):
            frame = read_client_csv(side)
            log.info("%d clients' latest snapshot is not labelled yet: training takes each client's latest labelled "
                     "snapshot (%s, %d rows)", unlabelled, TRAINING_DATA, len(frame))
            unlabelled = len(every_client) - len(set(frame[ID_COLUMN].astype(str)))
    return frame, unlabelled


def recent_rows(frame, newest: int, window_clients: Collection[str]):
    """The newest labelled rows (the last `newest`, in ingestion order) and every row of the window's clients."""
    tail = np.zeros(len(frame), dtype=bool)
    tail[max(len(frame) - newest, 0):] = True
    return frame[tail | frame[ID_COLUMN].astype(str).isin(set(window_clients)).to_numpy()]


def choose_candidate(frame, settings: dict[str, Any], holdout, newest: int, window_clients: Collection[str],
                     seconds: float | None = None):
    """After model drift: a model on every labelled row, one on the recent rows and one on the window's rows alone,
    the best on the holdout.

    A market that changed is learnt better from its own rows than from a mix dominated by the old
    market; one that did not is learnt better from more rows. The recent rows are mostly the old
    market's when the window is small (200 changed rows among the newest 2,000): the window alone is
    the new market's own (on datagen's changed month, F1 0.38-0.55 on 2,000 fresh rows of it against
    0.27-0.40 for the recent rows and 0.24-0.30 for every row, windows of 200 to 1,000 rows). The
    holdout (new rows no model saw) decides; a tie keeps the model with more rows. Returns the model,
    its rows and the record.
    """
    from riskcore.model.evaluation import score_model

    candidates = [("every labelled row", frame)]
    recent = recent_rows(frame, newest, window_clients)
    if len(recent) < len(frame) and recent[TARGET].nunique() == 2:
        candidates.append((f"the recent rows (the window and the newest {newest:,})", recent))
    window = frame[frame[ID_COLUMN].astype(str).isin(set(window_clients)).to_numpy()]
    if 0 < len(window) < len(candidates[-1][1]) and window[TARGET].nunique() == 2:
        candidates.append(("the window's rows alone", window))
    fitted = []
    for name, rows in candidates:
        model = train_model(rows, settings, seconds=seconds)
        fitted.append((score_model(model, holdout), name, model, rows))
    best = max(fitted, key=lambda c: c[0])  # max keeps the first of equals: every labelled row
    record = {"chosen": best[1], "holdout_rows": int(len(holdout)),
              "candidates": [{"name": name, "rows": int(len(rows)), "holdout_f1": f1} for f1, name, _, rows in fitted]}
    log.info("candidates on the %d held-out rows: %s; chosen: %s", len(holdout),
             "; ".join(f"{name} ({len(rows)} rows) F1 {f1:.4f}" for f1, name, _, rows in fitted), best[1])
    return best[2], best[3], record


def train(config: Config, data_file: Path | None = None, model_folder: Path | None = None,
          held_out: Collection[str] = (), holdout=None, window_clients: Collection[str] = (),
          calibration=None) -> dict:
    """Train on the labelled rows of the ingested data and save model and metadata; return the metadata.

    The metadata (rows, training profile) describes the labelled rows the model learnt from. The
    clients `held_out` (a retrain's holdout, riskcore.model.holdout) are left out of it. With the
    holdout's rows given (`holdout`), candidates are compared on them (choose_candidate). The
    calibrator is fitted on `calibration` (a retrain's held-out rows; where they are too few, with the
    training rows' out-of-fold log-odds), else on the test data.
    """
    check_settings(config)
    data_file = data_file or config.final_data_file
    model_folder = model_folder or config.output_model_folder
    if not data_file.is_file():
        raise DataError(f"Training data {data_file} does not exist; run ingestion.py first.")
    data_sha = sha256_file(data_file)
    frame, unlabelled = training_rows(data_file, data_sha)
    if held_out:
        frame = frame[~frame[ID_COLUMN].astype(str).isin(set(held_out))]
        log.info("%d labelled clients held out of training, to score the old and the new model on", len(held_out))
    chosen, why, baseline = None, None, None
    seconds = config.automation["max_train_seconds"]
    retrain = calibration is not None and len(calibration) > 0  # calibrated on its held-out rows, not the test data
    no_leaver = retrain and not labelled(calibration)[TARGET].sum()  # F1 is undefined on them
    if holdout is not None and len(holdout) and not no_leaver:  # a retrain: its held-out rows give the baseline
        model, frame, chosen = choose_candidate(frame, config.model, holdout, config.automation["recent_rows"],
                                                window_clients, seconds)
    else:
        # A first model, one trained by hand, or a retrain whose held-out rows hold nobody who left (no F1 there to
        # choose a candidate or be the baseline): measured on the test data where it is of the model's market, else on
        # its own rows.
        known = labelled(frame)
        if no_leaver:
            why = no_leaver_held_out(config, known, len(calibration))
            if holdout is not None and len(holdout):
                log.info("candidates not compared: the %d held-out rows hold nobody who left, so F1 cannot tell them "
                         "apart; the model learns from every labelled row", len(holdout))
        elif not retrain:
            why = test_data_of_another_market(config, known, feature_profile(known))
        if why is None:
            model = train_model(frame, config.model, seconds=seconds)
        else:
            model, log_odds = train_model(frame, config.model, seconds=seconds, out_of_fold=True)
            baseline = own_market_baseline(frame, log_odds, why, config.automation["recent_rows"],
                                           config.automation["min_positives"])
    if baseline is not None and not retrain:
        # The test data is of another market, so it calibrates no more than it measures: the rows the baseline is
        # measured on do both (calibrated on testdata.csv, a new-market model's estimates read the old market's odds).
        source, scored = out_of_fold_rows(frame, log_odds, baseline)
        calibrator, calibration_record = calibrate(model, None, source, scored=scored)
    else:
        calibrator, calibration_record = calibrate(model, *calibration_rows(config, calibration),
                                                   training=frame if retrain else None, settings=config.model,
                                                   seconds=seconds)
    metadata = save_model(
        model, lambda b: {**model_metadata(b, frame, data_sha, config.model, model),
                          **({"candidates": chosen} if chosen else {}), "calibration": calibration_record,
                          **({"baseline": baseline} if baseline else {})},
        model_folder, calibrator
    )
    log.info("trained model %s on %d labelled rows (%s)%s", metadata["model_version"], len(frame),
             chosen["chosen"] if chosen else "each client's latest labelled snapshot",
             f"; {plural(unlabelled, 'client')} with no label yet left out" if unlabelled else "")
    return metadata
