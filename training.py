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

import sys
from pathlib import Path

from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.model.training import train


def run(config: Config, data_file: Path | None = None, model_folder: Path | None = None) -> dict:
    """Train on the ingested data and save model and metadata; return the metadata."""
    return train(config, data_file, model_folder)


def main(argv: list[str] | None = None) -> int:
    """Command line: train on finaldata.csv and save the model."""
    args = argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    setup_logging(args.verbose)
    return run_cli(lambda: run(load_config(args.config)) and None)


if __name__ == "__main__":
    sys.exit(main())
