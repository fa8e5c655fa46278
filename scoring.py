"""Score the trained model: F1 on the held-out test data.

Reads:  output_model_path/trainedmodel.pkl (checked against its metadata's sha256)
        test_data_path/testdata.csv
Writes: output_model_path/latestscore.txt  the bare F1 number
Example: python scoring.py --config config.json
"""

from __future__ import annotations

import sys
from pathlib import Path

from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.model.evaluation import score_model, score_trained

__all__ = ["main", "run", "score_model"]  # score_model: the course's public function


def run(config: Config, model_folder: Path | None = None) -> float:
    """Score the trained model on the test data and write latestscore.txt."""
    return score_trained(config, model_folder)


def main(argv: list[str] | None = None) -> int:
    """Command line: score the trained model and print its F1."""
    args = argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        print(f"{run(load_config(args.config)):.4f}")

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
