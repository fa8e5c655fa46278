"""Deploy the trained model and its records to production, all at once; roll back, pin, repair.

Reads:  output_model_path/trainedmodel.pkl, modelmetadata.json, latestscore.txt, scorerecord.json
        output_folder_path/ingestedfiles.txt, ingestionrecord.json
Writes: prod_deployment_path/releases/<NNNNNN-time>/  a complete copy of those files plus a
                                                       manifest (deployment.json) with hashes
        prod_deployment_path/current                  link to the release being served
        prod_deployment_path/<file>                   links through `current`, for the course's names
        prod_deployment_path/control.json             the folder's owner, a pinned release, rolled-back files

A release is consistent or it is not made: the score must be scoring.py's score of this very model, and
the ingestion records those of the data it was trained on. A release folder is filled under a temporary
name and renamed into place, then the `current` link is replaced atomically: a reader sees the old set or
the new set, never a mix. The last few releases are kept; --rollback serves the previous one again and
its files stay processed; --pin keeps the current release until --unpin, whatever the automation finds.
Examples: python deployment.py --config config.json
          python deployment.py --config config.json --rollback
          python deployment.py --config config.json --pin      (or --unpin, --repair)
"""

from __future__ import annotations

import logging
import sys

from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.contract import RUN_HISTORY, DataError
from riskcore.files import utc_now
from riskcore.ops.history import record_run
from riskcore.ops.lock import exclusive_lock
from riskcore.ops.run_record import new_run_id
from riskcore.release.load import Deployment, require_deployment
from riskcore.release.operator_state import claim, operator, pin, unpin
from riskcore.release.publish import deploy, repair, rollback

log = logging.getLogger("deployment")
ACTIONS = ("rollback", "pin", "unpin", "repair")


def run(config: Config, action: str | None = None, take_over: bool = False) -> Deployment:
    """Deploy the trained model (or do one of ACTIONS) holding the run lock; return the release served after."""
    prod = config.prod_deployment_folder
    with exclusive_lock(prod) as held:
        if not held:
            raise DataError(f"Another run (fullprocess.py or deployment.py) is working on {prod}; nothing was done, "
                            "try again when it has finished.")
        claim(config, take_over=take_over)
        return act(config, action)


def record_rollback(config: Config, before: Deployment, after: Deployment) -> None:
    """A rollback is a run of its own in the history: when, from which release to which, by whom."""
    now = utc_now()
    record_run(config.output_model_folder / RUN_HISTORY, {
        "run_id": new_run_id(), "started_at": now, "finished_at": now, "decision": "rollback", "outcome": "done",
        "version_before": before.model_version, "version_after": after.model_version,
        "note": f"rolled back from release {before.release} to {after.release} by {operator()}"})


def act(config: Config, action: str | None) -> Deployment:
    prod = config.prod_deployment_folder
    if action == "rollback":
        before = require_deployment(prod)
        after = rollback(prod)
        record_rollback(config, before, after)
        return after
    if action == "repair":
        return repair(prod)
    if action == "pin":
        current = require_deployment(prod)
        pin(prod, current.release)
        log.info("pinned release %s: the automation keeps model %s until deployment.py --unpin",
                 current.release, current.model_version)
        return current
    if action == "unpin":
        was = unpin(prod)
        log.info("unpinned %s", f"release {was['release']}" if was else "nothing (no release was pinned)")
        return require_deployment(prod)
    return deploy(config)


def main(argv: list[str] | None = None) -> int:
    """Command line: deploy the trained model, or roll back, pin, unpin or repair."""
    parser = argument_parser(__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--rollback", action="store_true", help="serve the previous release again")
    group.add_argument("--pin", action="store_true", help="keep the current release until --unpin")
    group.add_argument("--unpin", action="store_true", help="let the automation replace the release again")
    group.add_argument("--repair", action="store_true", help="point a missing `current` at the newest intact release")
    parser.add_argument("--take-over", action="store_true",
                        help="switch the production folder to this config's setup (another setup owns it)")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    action = next((name for name in ACTIONS if getattr(args, name)), None)

    def body() -> None:
        deployment = run(load_config(args.config), action=action, take_over=args.take_over)
        print(f"release {deployment.release}: model {deployment.model_version}")

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
