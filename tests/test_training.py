"""training.py: the course's model settings, the metadata, the saved model."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import ingestion
import training
from conftest import write_csv
from riskcore.config import Config
from riskcore.contract import FEATURES, MODEL_METADATA, DataError
from riskcore.files import sha256_bytes, sha256_file
from riskcore.model import training as model_module
from riskcore.release.load import load_trained_model

# A course-sized fixture of our own: 12 rows with two exact duplicates.
SMALL = [
    "aaaa,10,120,5,1", "bbbb,400,5000,80,0", "cccc,25,300,12,1", "dddd,310,3900,45,0",
    "eeee,5,90,3,1", "ffff,280,3300,150,0", "gggg,60,700,9,1", "hhhh,350,4100,60,0",
    "iiii,40,480,20,1", "jjjj,220,2600,33,0",
]


def test_default_settings_are_the_course_settings(config: Config):
    model = model_module.build_model(config.model)
    params = model.get_params()
    expected = dict(C=1.0, solver="liblinear", max_iter=100, tol=1e-4, random_state=0,
                    fit_intercept=True, intercept_scaling=1, class_weight=None)
    assert {k: params[k] for k in expected} == expected
    assert params["l1_ratio"] in (None, 0, 0.0) and params.get("penalty", "l2") in ("l2", "deprecated")


def test_training_on_a_small_fixture_matches_a_direct_fit(config: Config):
    from sklearn.linear_model import LogisticRegression

    for path in config.input_folder.iterdir():
        path.unlink()
    write_csv(config.input_folder / "a.csv", SMALL[:6])
    write_csv(config.input_folder / "b.csv", SMALL[4:])  # rows eeee and ffff repeat
    assert len(ingestion.run(config).frame) == 10
    training.run(config)
    model, _ = load_trained_model(config.output_model_folder)
    rows = np.array([[int(v) for v in r.split(",")[1:4]] for r in SMALL], dtype=float)
    labels = np.array([int(r.split(",")[4]) for r in SMALL])
    reference = LogisticRegression(C=1.0, solver="liblinear", max_iter=100, tol=1e-4,
                                   random_state=0).fit(rows, labels)
    np.testing.assert_allclose(model.coef_, reference.coef_)
    assert model.predict(rows).tolist() == reference.predict(rows).tolist()


def test_metadata_describes_model_and_data(config: Config):
    ingestion.run(config)
    metadata = training.run(config)
    model_bytes = config.model_file.read_bytes()
    saved = json.loads((config.output_model_folder / MODEL_METADATA).read_text())
    assert saved == metadata
    assert metadata["model_sha256"] == sha256_bytes(model_bytes)
    assert metadata["model_version"].endswith(metadata["model_sha256"][:8])
    assert metadata["features"] == list(FEATURES)
    assert metadata["training_data_sha256"] == sha256_file(config.final_data_file)
    assert set(metadata["library_versions"]) >= {"python", "numpy", "pandas", "scikit-learn"}
    assert len(metadata["training_profile"]["quantiles"]["lastmonth_activity"]) == model_module.PROFILE_POINTS
    assert hasattr(pickle.loads(model_bytes), "predict_proba")


def test_single_class_data_is_a_clear_error(config: Config):
    for path in config.input_folder.iterdir():
        path.unlink()
    write_csv(config.input_folder / "a.csv", ["aaaa,1,2,3,0", "bbbb,4,5,6,0"])
    ingestion.run(config)
    with pytest.raises(DataError, match="one class"):
        training.run(config)


def test_missing_training_data_is_a_clear_error(config: Config):
    with pytest.raises(DataError, match="run ingestion.py first"):
        training.run(config)
