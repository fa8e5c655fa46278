"""Ingest every CSV in input_folder_path into one deduplicated training set.

Reads:  input_folder_path/*.csv
Writes: output_folder_path/finaldata.csv       the merged rows, exact duplicates dropped
        output_folder_path/ingestedfiles.txt   the ingested file names, one per line
        output_folder_path/ingestionrecord.json per file: rows read/kept, duplicates, sha256;
                                                per rejected file: the reason

A file that breaks the data contract is rejected with one sentence, is not recorded as
ingested (so it is picked up again once fixed), and the good files are still ingested; the
exit status is then 1. Example: python ingestion.py --config config.json
"""

from __future__ import annotations

import sys

from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.contract import EXIT_FAILED, EXIT_OK
from riskcore.ingest import IngestionResult, ingest, ingest_folder

__all__ = ["IngestionResult", "ingest_folder", "main", "run"]


def run(config: Config) -> IngestionResult:
    """Ingest the configured input folder and write the outputs (nothing when no file could be ingested)."""
    return ingest(config)


def main(argv: list[str] | None = None) -> int:
    """Command line: ingest the input folder named in the config."""
    args = argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    setup_logging(args.verbose)

    def body() -> int:
        config = load_config(args.config)
        result = run(config)
        return EXIT_FAILED if result.rejected else EXIT_OK

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
