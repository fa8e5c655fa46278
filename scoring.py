"""Score the trained model: F1 on the held-out test data.

Reads:  output_model_path/trainedmodel.pkl (checked against its metadata's sha256)
        test_data_path/testdata.csv
Writes: output_model_path/latestscore.txt  the bare F1 number
Example: python scoring.py --config config.json
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import riskcore

log = logging.getLogger("scoring")


def predict(model, frame):
    """Class predictions (0/1) for a validated frame."""
    return model.predict(riskcore.features_of(frame))


def f1_of(labels, predictions) -> float:
    """F1 of the positive class; 0.0 where it is undefined (no positives at all)."""
    from sklearn.metrics import f1_score

    return float(f1_score(labels, predictions, zero_division=0.0))


def score_model(model, dataframe, score_path: Path | None = None) -> float:
    """F1 of `model` on `dataframe`; saved atomically to `score_path` when one is given."""
    score = f1_of(dataframe[riskcore.TARGET].to_numpy(), predict(model, dataframe))
    if score_path is not None:
        riskcore.atomic_write_text(score_path, repr(score))
    return score


def read_score(path: Path) -> float:
    """Read a latestscore.txt, or raise DataError naming it."""
    try:
        return float(path.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        raise riskcore.DataError(f"Score file {path} does not exist.") from None
    except (OSError, ValueError):
        raise riskcore.DataError(f"Score file {path} does not hold a number.") from None


def read_test_data(config: riskcore.Config):
    """The validated test data."""
    if not config.test_data_file.is_file():
        raise riskcore.DataError(f"Test data {config.test_data_file} does not exist.")
    return riskcore.read_client_csv(config.test_data_file)


def run(config: riskcore.Config, model_folder: Path | None = None) -> float:
    """Score the trained model on the test data and write latestscore.txt."""
    model_folder = model_folder or config.output_model_folder
    if not (model_folder / riskcore.MODEL_FILE).is_file():
        raise riskcore.DataError(f"No trained model in {model_folder}; run training.py first.")
    model, metadata = riskcore.load_trained_model(model_folder)
    score = score_model(model, read_test_data(config), model_folder / riskcore.SCORE_FILE)
    log.info("model %s scores F1 %.4f on %s", metadata["model_version"], score, riskcore.TEST_DATA)
    return score


def main(argv: list[str] | None = None) -> int:
    """Command line: score the trained model and print its F1."""
    args = riskcore.argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    riskcore.setup_logging(args.verbose)

    def body() -> None:
        print(f"{run(riskcore.load_config(args.config)):.4f}")

    return riskcore.run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
