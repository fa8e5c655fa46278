"""Train the attrition model: logistic regression on the three features of the ingested data.

Reads:  output_folder_path/finaldata.csv
Writes: output_model_path/trainedmodel.pkl    the fitted scikit-learn model
        output_model_path/modelmetadata.json  model version and sha256, features, sha256 of the
                                              training data, library versions, settings, time,
                                              and a quantile profile of the training features
Model settings come from the config's "model" section (default: the course's settings).
Example: python training.py --config config.json
"""

from __future__ import annotations

import logging
import pickle
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import riskcore

log = logging.getLogger("training")

PROFILE_POINTS = 1001  # quantiles kept per feature: enough for KS and PSI against new data


def build_model(settings: dict[str, Any]):
    """An unfitted LogisticRegression with the given settings."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(**settings)


def train_model(frame, settings: dict[str, Any]):
    """Fit the model on a validated frame."""
    if frame[riskcore.TARGET].nunique() < 2:
        raise riskcore.DataError("The training data holds only one class of \"exited\"; a model needs both.")
    model = build_model(settings)
    model.fit(riskcore.features_of(frame), frame[riskcore.TARGET].to_numpy())
    return model


def feature_profile(frame) -> dict[str, Any]:
    """Quantiles of each feature, so later runs can compare new data without the old rows."""
    import numpy as np

    probs = np.linspace(0.0, 1.0, PROFILE_POINTS)
    return {
        "rows": int(len(frame)),
        "exited_share": float(frame[riskcore.TARGET].mean()),
        "quantiles": {
            col: np.quantile(frame[col].to_numpy(dtype="float64"), probs).round(6).tolist()
            for col in riskcore.FEATURES
        },
    }


def library_versions() -> dict[str, str]:
    import numpy
    import pandas
    import sklearn

    return {"python": platform.python_version(), "numpy": numpy.__version__,
            "pandas": pandas.__version__, "scikit-learn": sklearn.__version__}


def model_version(trained_at: datetime, model_sha256: str) -> str:
    """A sortable, human-readable model version: training time and the model's hash."""
    return f"{trained_at:%Y%m%dT%H%M%SZ}-{model_sha256[:8]}"


def model_metadata(model_bytes: bytes, frame, data_sha256: str, settings: dict[str, Any]) -> dict:
    """Everything recorded beside a trained model."""
    now = datetime.now(UTC)
    sha = riskcore.sha256_bytes(model_bytes)
    return {
        "model_version": model_version(now, sha),
        "model_sha256": sha,
        "trained_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "features": list(riskcore.FEATURES),
        "target": riskcore.TARGET,
        "training_data_sha256": data_sha256,
        "training_rows": int(len(frame)),
        "settings": settings,
        "library_versions": library_versions(),
        "training_profile": feature_profile(frame),
    }


def save_model(model, metadata_for, model_folder: Path) -> dict:
    """Pickle the model and write it with its metadata, each atomically."""
    model_bytes = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    metadata = metadata_for(model_bytes)
    riskcore.atomic_write_bytes(model_folder / riskcore.MODEL_FILE, model_bytes)
    riskcore.checkpoint("training-wrote-model")
    riskcore.atomic_write_json(model_folder / riskcore.MODEL_METADATA, metadata)
    return metadata


def run(config: riskcore.Config, data_file: Path | None = None, model_folder: Path | None = None) -> dict:
    """Train on the ingested data and save model and metadata; return the metadata."""
    data_file = data_file or config.final_data_file
    model_folder = model_folder or config.output_model_folder
    if not data_file.is_file():
        raise riskcore.DataError(f"Training data {data_file} does not exist; run ingestion.py first.")
    data_sha = riskcore.sha256_file(data_file)
    frame = riskcore.read_client_csv(data_file)
    model = train_model(frame, config.model)
    metadata = save_model(
        model, lambda b: model_metadata(b, frame, data_sha, config.model), model_folder
    )
    log.info("trained model %s on %d rows of %s", metadata["model_version"], len(frame), data_file.name)
    return metadata


def main(argv: list[str] | None = None) -> int:
    """Command line: train on finaldata.csv and save the model."""
    args = riskcore.argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    riskcore.setup_logging(args.verbose)
    return riskcore.run_cli(lambda: run(riskcore.load_config(args.config)) and None)


if __name__ == "__main__":
    sys.exit(main())
