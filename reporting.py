"""Report on the deployed model: the client risk list, a confusion matrix and a PDF summary.

Reads:  prod_deployment_path  the deployed model (after its sha256 check), its metadata and the
                              manifests of earlier releases (the F1 trend)
        test_data_path/testdata.csv, output_folder_path/finaldata.csv and ingestionrecord.json
        output_model_path/diagnostics.json (timings, dependencies) and runhistory.sqlite, if any
Writes: output_model_path/risk_scores.csv     the call list: each client who has not left, once,
                                              highest attrition risk first, with the reasons
                                              (overwritten on each run)
        output_model_path/risk_scores.json    which model ranked it, when, how many clients
        output_model_path/confusionmatrix.png the deployed model on the test data
        output_model_path/summary_report.pdf  a few pages for the people who run the system
Reports of earlier runs are kept: the first run writes the plain names, later runs
confusionmatrix2.png and summary_report2.pdf, then 3, 4, ... (--run-label N picks the number).
Examples: python reporting.py --config config.json
          python reporting.py --config config.json --clients new_clients.csv --run-label 7
"""

from __future__ import annotations

import sys
from pathlib import Path

from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.report.writer import write_reports


def run(config: Config, run_number: int | None = None, clients: Path | None = None) -> dict[str, Path]:
    """Write the risk list, the confusion matrix and the PDF report; return their paths."""
    return write_reports(config, run_number=run_number, clients=clients)


def main(argv: list[str] | None = None) -> int:
    """Command line: write the risk list and the reports, and print where they are."""
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--run-label", type=int, default=None, metavar="N",
                        help="number the reports N (default: the next number not yet used)")
    parser.add_argument("--clients", default=None, metavar="FILE",
                        help="score the clients of this CSV instead of the ingested data")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        config = load_config(args.config)
        clients = Path(args.clients).absolute() if args.clients else None
        for path in run(config, run_number=args.run_label, clients=clients).values():
            print(path)

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
