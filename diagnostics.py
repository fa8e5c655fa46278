"""Diagnose the model and the data: predictions, statistics, missing data, timings, dependencies.

Reads:  prod_deployment_path  the deployed model (loaded only after its sha256 check)
        output_folder_path/finaldata.csv, test_data_path/testdata.csv
        input_folder_path (the timing runs ingest it into a temporary folder)
        requirements.txt beside the scripts
Writes: output_model_path/diagnostics.json  everything below, with the time it was taken and
                                            the model version it describes, for the API to serve

Step timings run the real ingestion, training and scoring against a temporary copy of the
output folders: the deployed model, the production folder and the configured outputs are never
touched. The dependency check asks pip for the latest versions with a time limit, so a run
without a reachable package index finishes in seconds and says why the versions are unknown.
Example: python diagnostics.py --config config.json --repeat 3
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.contract import UserError
from riskcore.release.load import load_deployed_model, require_deployment
from riskcore.report import dependencies, timing
from riskcore.report.dependencies import DEPENDENCY_TIMEOUT
from riskcore.report.diagnostics import predictions, render, write_diagnostics
from riskcore.report.statistics import missing_shares, read_ingested, summarize


# --- The course's functions ----------------------------------------------------------------------
def model_predictions(config: Config, dataframe, model=None) -> list[int]:
    """The deployed model's class predictions (0 or 1) for the rows of `dataframe`."""
    if model is None:
        model = load_deployed_model(require_deployment(config.prod_deployment_folder))
    return predictions(model, dataframe)


def dataframe_summary(config: Config, frame=None) -> list[dict[str, Any]]:
    """Mean, median, std, count, min and max of each feature of the ingested data (or `frame`)."""
    return summarize(read_ingested(config) if frame is None else frame)


def missing_data(config: Config, frame=None) -> list[dict[str, Any]]:
    """The share of missing values in every column of the ingested data (or `frame`), in percent."""
    return missing_shares(read_ingested(config) if frame is None else frame)


def execution_time(config: Config, repeat: int = 1) -> dict[str, float]:
    """Seconds taken by ingestion, training and scoring: the median of `repeat` real runs, writing nothing."""
    return timing.execution_time(config, repeat)


def outdated_packages_list(requirements: Path | str | None = None,
                           timeout: float = DEPENDENCY_TIMEOUT) -> list[dict[str, Any]]:
    """For each package in requirements.txt: pinned, installed and latest version."""
    return dependencies.outdated_packages_list(requirements, timeout)


# --- The command ----------------------------------------------------------------------------------
def run(config: Config, repeat: int = 1, timeout: float = DEPENDENCY_TIMEOUT) -> dict[str, Any]:
    """Compute every diagnostic and write the record to output_model_path/diagnostics.json."""
    return write_diagnostics(config, repeat=repeat, timeout=timeout, check_dependencies=outdated_packages_list)


def main(argv: list[str] | None = None) -> int:
    """Command line: compute the diagnostics, write the record and print it."""
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="time each step N times and report the median (default: 1)")
    parser.add_argument("--timeout", type=float, default=DEPENDENCY_TIMEOUT, metavar="SECONDS",
                        help=f"time limit for the dependency check (default: {DEPENDENCY_TIMEOUT:g})")
    parser.add_argument("--json", action="store_true", help="print the record as JSON")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        if args.repeat < 1:
            raise UserError("--repeat must be at least 1.")
        if args.timeout <= 0:
            raise UserError("--timeout must be positive.")
        record = run(load_config(args.config), repeat=args.repeat, timeout=args.timeout)
        print(json.dumps(record, indent=2) if args.json else render(record))

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
