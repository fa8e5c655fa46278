"""Ingest every CSV in input_folder_path into one training set and call list: one row per client.

Reads:  input_folder_path/*.csv, the deployed ingestion record (what production has ingested)
Writes: output_folder_path/finaldata.csv       one row per client: its latest snapshot (the last row
                                                for its id, files read in name order); an empty
                                                "exited" for a client not labelled yet
        output_folder_path/ingestedfiles.txt   the ingested file names, one per line
        output_folder_path/ingestionrecord.json per file: rows read/kept, duplicates, superseded
                                                snapshots, sha256; per rejected file: the reason;
                                                conflicting labels; files dropped (removed)

A file without the "exited" column is accepted: clients whose outcome is not known yet. A file
that breaks the data contract is rejected with one sentence, is not recorded as ingested (so it is
picked up again once fixed), and the good files are still ingested; the exit status is then 1.
A file production has ingested that is now broken, or gone, holds the whole ingestion back:
nothing is written, exit 1. --allow-removed drops the rows of files that are gone, on purpose.
Example: python ingestion.py --config config.json
"""

from __future__ import annotations

import sys

from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.contract import EXIT_FAILED, EXIT_OK
from riskcore.data.folder_ingest import IngestionResult, ingest, ingest_folder
from riskcore.ops.new_data import processed_files
from riskcore.release.load import current_deployment

__all__ = ["IngestionResult", "ingest_folder", "main", "run"]


def run(config: Config, allow_removed: bool = False) -> IngestionResult:
    """Ingest the configured input folder and write the outputs (nothing when no file could be ingested)."""
    deployed = current_deployment(config.prod_deployment_folder)
    return ingest(config, processed_files(config.input_folder, deployed), allow_removed)


def main(argv: list[str] | None = None) -> int:
    """Command line: ingest the input folder named in the config."""
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--allow-removed", action="store_true",
                        help="drop the rows of files production ingested that are no longer in the input folder")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> int:
        config = load_config(args.config)
        result = run(config, allow_removed=args.allow_removed)
        return EXIT_FAILED if result.rejected else EXIT_OK

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
