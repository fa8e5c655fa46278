"""scoring.py: score_model on known data, latestscore.txt, integrity of the trained model."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

import ingestion
import scoring
import training
from riskcore.config import Config
from riskcore.contract import FEATURES, SCORE_FILE, DataError, IntegrityError
from riskcore.model import evaluation


class FixedModel:
    """A stand-in whose predictions are given, so F1 can be worked out by hand."""

    def __init__(self, predictions):
        self.predictions = predictions

    def predict(self, features):
        assert features.shape[1] == len(FEATURES)
        return self.predictions


def frame(labels):
    return pd.DataFrame({"corporation": [f"c{i}" for i in range(len(labels))],
                         "lastmonth_activity": 1, "lastyear_activity": 1,
                         "number_of_employees": 1, "exited": labels})


def test_score_model_is_f1(tmp_path):
    # tp=2, fp=1, fn=1 -> precision 2/3, recall 2/3, F1 2/3
    score = scoring.score_model(FixedModel([1, 1, 1, 0, 0]), frame([1, 1, 0, 1, 0]),
                                tmp_path / "latestscore.txt")
    assert score == pytest.approx(2 / 3)
    assert float((tmp_path / "latestscore.txt").read_text()) == pytest.approx(2 / 3)


def test_score_without_path_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a score written to a default, relative name would land
    scoring.score_model(FixedModel([0, 1]), frame([0, 1]))
    assert list(tmp_path.iterdir()) == []


def test_undefined_f1_is_zero_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn's UndefinedMetricWarning included
        assert scoring.score_model(FixedModel([0, 0]), frame([0, 0])) == 0.0


def test_run_writes_latestscore(config: Config):
    ingestion.run(config)
    training.run(config)
    score = scoring.run(config)
    assert 0.5 < score <= 1.0
    assert evaluation.read_score(config.output_model_folder / SCORE_FILE) == score


def test_tampered_trained_model_is_refused(config: Config):
    ingestion.run(config)
    training.run(config)
    with open(config.model_file, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(IntegrityError, match="sha256"):
        scoring.run(config)


def test_no_model_is_a_clear_error(config: Config):
    with pytest.raises(DataError, match="run training.py first"):
        scoring.run(config)
