"""The automation cron runs every 10 minutes: new data? drift? then re-train, re-deploy, report.

Reads:  input_folder_path/*.csv, the deployed release (model, latestscore.txt, ingestion record)
Writes: everything the steps write (ingestion, training, scoring, deployment, diagnostics,
        reporting, apicalls), output_model_path/runhistory.sqlite (one row per run that did
        work) and output_model_path/fullprocess.log (size-rotated)

Decisions (the contract's table; riskcore.ops.run makes them):
  no CSV the deployed record lacks (by name and sha256)  -> stop, exit 0; cheap: no pandas
  nothing deployed yet                                   -> first deployment, then the reports
  new data, deployed model's F1 on it passes the test    -> keep the model, record the files
  new data, F1 fails the drift test                      -> re-train, score, deploy, then report
  new data without labels                                -> keep the model ("no labels yet"), record the files
  a file production ingested is now broken or gone       -> nothing ingested or deployed, exit 1
"New data" is the rows of the files new or changed in this run; F1 is taken on its labelled rows.

Exit status: 0 done or nothing to do (or another run holds the lock), 1 a step failed, a file
was rejected, the run reached automation.max_run_seconds (production then stays as it was) or
another run has held the lock for longer than that, 2 bad configuration.
Examples: python fullprocess.py
          python fullprocess.py --dry-run
          python fullprocess.py --allow-removed   (drop the rows of files deleted from the input folder)
          python fullprocess.py --history
          python fullprocess.py --history --format csv > history.csv
          python fullprocess.py --test-alerts   (one test message to every webhook and mail in "alerts")
"""

from __future__ import annotations

import gc
import logging
import sys
from functools import partial

from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.contract import EXIT_FAILED, EXIT_OK, ConfigError, DataError
from riskcore.ops.alerts import tick_finished
from riskcore.ops.deadline import run_deadline
from riskcore.ops.history import HISTORY_FORMATS, read_history, render_history
from riskcore.ops.lock import exclusive_lock, lock_holder
from riskcore.ops.run_record import AUTOMATION_LOGGER, Run, history_path
from riskcore.ops.tick import preview, tick

# Only the standard library (and stdlib-only riskcore modules) at import: a tick with nothing new
# must stay cheap. riskcore.ops.tick imports the heavy work only when there is some.

log = logging.getLogger(AUTOMATION_LOGGER)


def produce_reports(config: Config, run: Run, api_url: str) -> None:
    """Diagnostics, reports and API calls for the run (imported only when a run has work)."""
    from riskcore.ops.run import produce_reports as produce

    produce(config, run, api_url)


def run(config: Config, api_url: str, dry: bool = False, take_over: bool = False, allow_removed: bool = False) -> int:
    """One automation tick for `config` (the caller holds the run lock); its exit status."""
    if dry:
        print(preview(config, allow_removed=allow_removed))
        return EXIT_OK
    return tick(config, partial(produce_reports, api_url=api_url), take_over=take_over, allow_removed=allow_removed)


def lock_taken(config: Config) -> int:
    """Another process holds the run lock: a run still within its time is left alone (exit 0); one older than
    automation.max_run_seconds is stuck, and said so with its age and process id (exit 1, so cron mails it)."""
    limit = config.automation["max_run_seconds"]
    holder = lock_holder(config.prod_deployment_folder)
    if holder is None or holder.seconds is None:
        log.info("another fullprocess run is in progress (it holds the lock on %s): exiting",
                 config.prod_deployment_folder)
        return EXIT_OK
    if holder.seconds <= limit:
        log.info("another fullprocess run is in progress (process %d, started %.0f s ago, holds the lock on %s): "
                 "exiting", holder.pid, holder.seconds, config.prod_deployment_folder)
        return EXIT_OK
    tick_finished(config, succeeded=False)  # a stuck run is silence: the alert says so once it lasts
    raise DataError(f"Process {holder.pid} ({holder.command or 'command unknown'}) has held the run lock on "
                    f"{config.prod_deployment_folder} for {holder.seconds:.0f} s, longer than automation."
                    f"max_run_seconds ({limit:g} s): it looks stuck, and no tick can run until it ends (kill "
                    f"{holder.pid} to stop it; production stays as that run left it).")


def test_alerts(config: Config) -> int:
    """Send a test message to every alert channel; print each one's result; exit 1 when one failed."""
    from riskcore.ops.alerts import send_test

    results = send_test(config)
    if not results:
        raise ConfigError(f'{config.config_file} names no alert channel: add "webhook_urls" or "email" to "alerts".')
    for name, error in results:
        print(f"{name}: {'sent' if error is None else 'failed: ' + error}")
    return EXIT_OK if all(error is None for _, error in results) else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Command line: one automation tick (or --dry-run, or --history)."""
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the decision and its reasons; change nothing")
    parser.add_argument("--history", action="store_true", help="print the run history (every column), oldest first")
    parser.add_argument("--format", choices=HISTORY_FORMATS, default="table",
                        help="how --history prints: table (default), json or csv")
    parser.add_argument("--test-alerts", action="store_true",
                        help='send a test message to every channel of the "alerts" config section now')
    parser.add_argument("--api-url", default=None, help="API the reports call (default: automation.api_url)")
    parser.add_argument("--take-over", action="store_true",
                        help="switch the production folder to this config's setup (another setup owns it)")
    parser.add_argument("--allow-removed", action="store_true",
                        help="drop the rows of ingested files that are no longer in the input folder (held back "
                             "otherwise)")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> int:
        config = load_config(args.config)
        if args.history:
            print(render_history(read_history(history_path(config)), args.format, config.automation["ks_alpha"]))
            return EXIT_OK
        if args.test_alerts:
            return test_alerts(config)
        with exclusive_lock(config.prod_deployment_folder) as held:
            if not held:
                return lock_taken(config)
            with run_deadline(config.automation["max_run_seconds"]):
                return run(config, args.api_url or config.automation["api_url"], dry=args.dry_run,
                           take_over=args.take_over, allow_removed=args.allow_removed)

    return run_cli(body)


if __name__ == "__main__":
    status = main()
    # A run with work leaves scikit-learn's, scipy's and pandas' objects behind: the interpreter's last
    # garbage collection of them took 0.25-0.5 s at exit. Frozen, they are left for the system to free.
    gc.freeze()
    sys.exit(status)
