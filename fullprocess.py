"""The automation cron runs every 10 minutes: new data? drift? then re-train, re-deploy, report.

Reads:  input_folder_path/*.csv, the deployed release (model, latestscore.txt, ingestion record)
Writes: everything the steps write (ingestion, training, scoring, deployment, diagnostics,
        reporting, apicalls), output_model_path/runhistory.sqlite (one row per run that did
        work) and output_model_path/fullprocess.log (size-rotated)

Decisions (the contract's table; riskcore.cycle makes them):
  no CSV the deployed record lacks (by name and sha256)  -> stop, exit 0; cheap: no pandas
  nothing deployed yet                                   -> first deployment, then the reports
  new data, deployed model's F1 on it passes the test    -> keep the model, record the files
  new data, F1 fails the drift test                      -> re-train, score, deploy, then report

Exit status: 0 done or nothing to do (or another run holds the lock), 1 a step failed
(production then stays as it was), 2 bad configuration.
Examples: python fullprocess.py
          python fullprocess.py --dry-run
          python fullprocess.py --history
"""

from __future__ import annotations

import logging
import sys
from functools import partial

from riskcore.automation import preview, tick
from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.contract import EXIT_OK
from riskcore.history import format_history, read_history
from riskcore.lock import exclusive_lock
from riskcore.runs import AUTOMATION_LOGGER, Run, history_path

# Only the standard library (and stdlib-only riskcore modules) at import: a tick with nothing new
# must stay cheap. riskcore.automation imports the heavy work only when there is some.

log = logging.getLogger(AUTOMATION_LOGGER)


def produce_reports(config: Config, run: Run, api_url: str) -> None:
    """Diagnostics, reports and API calls for the run (imported only when a run has work)."""
    from riskcore.cycle import produce_reports as produce

    produce(config, run, api_url)


def run(config: Config, api_url: str, dry: bool = False, take_over: bool = False) -> int:
    """One automation tick for `config` (the caller holds the run lock); its exit status."""
    if dry:
        print(preview(config))
        return EXIT_OK
    return tick(config, partial(produce_reports, api_url=api_url), take_over=take_over)


def main(argv: list[str] | None = None) -> int:
    """Command line: one automation tick (or --dry-run, or --history)."""
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the decision and its reasons; change nothing")
    parser.add_argument("--history", action="store_true", help="print the run history as a table")
    parser.add_argument("--api-url", default=None, help="API the reports call (default: automation.api_url)")
    parser.add_argument("--take-over", action="store_true",
                        help="switch the production folder to this config's setup (another setup owns it)")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> int:
        config = load_config(args.config)
        if args.history:
            print(format_history(read_history(history_path(config))))
            return EXIT_OK
        with exclusive_lock(config.prod_deployment_folder) as held:
            if not held:
                log.info("another fullprocess run is in progress: exiting")
                return EXIT_OK
            return run(config, args.api_url or config.automation["api_url"], dry=args.dry_run,
                       take_over=args.take_over)

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
