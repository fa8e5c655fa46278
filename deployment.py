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
the new set, never a mix. The last few releases are kept; --list shows them. --rollback serves the previous
*model* again (records-only releases of the current model are skipped), --rollback --to RELEASE any kept
release, and the files of the release left stay processed; --roll-forward undoes the newest rollback;
--pin keeps the current release until --unpin, whatever the automation finds. Each of these is a row of
the run history (who, when, from which release to which).
Examples: python deployment.py --config config.json
          python deployment.py --config config.json --list
          python deployment.py --config config.json --rollback            (or --rollback --to 3)
          python deployment.py --config config.json --roll-forward
          python deployment.py --config config.json --pin      (or --unpin, --repair)
"""

from __future__ import annotations

import logging
import sys

from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.contract import RUN_HISTORY, DataError
from riskcore.files import utc_now
from riskcore.formatting import when
from riskcore.ops.alerts import COMMAND_BUDGET, note_run
from riskcore.ops.history import record_run
from riskcore.ops.lock import exclusive_lock
from riskcore.ops.run_record import new_run_id
from riskcore.release.listing import format_releases, release_rows
from riskcore.release.load import Deployment, release_names, require_deployment
from riskcore.release.operator_state import claim, operator, pin, read_control, refuse_while_pinned, unpin
from riskcore.release.publish import deploy, repair, roll_forward, rollback

log = logging.getLogger("deployment")
OPERATOR_ACTIONS = ("rollback", "roll_forward", "pin", "unpin")  # each acts on the release served
ACTIONS = (*OPERATOR_ACTIONS, "repair")


def run(config: Config, action: str | None = None, take_over: bool = False, to: str | None = None) -> Deployment:
    """Deploy the trained model (or do one of ACTIONS) holding the run lock; return the release served after."""
    prod = config.prod_deployment_folder
    if action in OPERATOR_ACTIONS:
        require_deployment(prod)  # nothing to act on: one sentence, and no folder, owner or record is written
    if action == "repair" and not release_names(prod):
        raise DataError(f"No release in {prod} to serve; nothing to repair (run deployment.py to deploy one).")
    with exclusive_lock(prod) as held:
        if not held:
            raise DataError(f"Another run (fullprocess.py or deployment.py) is working on {prod}; nothing was done, "
                            "try again when it has finished.")
        claim(config, take_over=take_over)
        return act(config, action, to)


NOTES = {"rollback": "rolled back from release {before} to {after}", "roll-forward":
         "rolled forward from release {before} to {after} (the newest rollback undone)",
         "pin": "pinned release {after}", "unpin": "unpinned release {before}"}


def record_action(config: Config, decision: str, before: Deployment, after: Deployment) -> None:
    """An operator's action is a run of its own in the history: when, from which release to which, by whom."""
    now = utc_now()
    row = {"run_id": new_run_id(), "started_at": now, "finished_at": now, "decision": decision, "outcome": "done",
           "version_before": before.model_version, "version_after": after.model_version,
           "note": NOTES[decision].format(before=before.release, after=after.release) + f" by {operator()}"}
    record_run(config.output_model_folder / RUN_HISTORY, row)
    note_run(config, row, COMMAND_BUDGET)  # alerts.webhook_urls and alerts.email hear of it, the person waits


def act(config: Config, action: str | None, to: str | None = None) -> Deployment:
    prod = config.prod_deployment_folder
    if action in ("rollback", "roll_forward"):
        before = require_deployment(prod)
        after = rollback(prod, to) if action == "rollback" else roll_forward(prod)
        record_action(config, action.replace("_", "-"), before, after)
        return after
    if action == "repair":
        return repair(prod)
    if action == "pin":
        current = require_deployment(prod)
        held = read_control(prod)["pinned"]
        if held is not None and held["release"] == current.release:  # again: no new row, alert or pin time
            log.info("release %s is already pinned (by %s, %s): nothing to do", current.release, held["by"],
                     when(held["at"]))
            return current
        pin(prod, current.release)
        log.info("pinned release %s: the automation keeps model %s until deployment.py --unpin",
                 current.release, current.model_version)
        record_action(config, "pin", current, current)
        return current
    if action == "unpin":
        current = require_deployment(prod)
        if unpin(prod) is None:
            log.info("release %s was not pinned: nothing to unpin", current.release)
        else:
            log.info("unpinned release %s: the automation may replace it again", current.release)
            record_action(config, "unpin", current, current)
        return current
    refuse_while_pinned(prod, "deployment")  # the pin would name a release no longer served, the banner with it
    return deploy(config)


def main(argv: list[str] | None = None) -> int:
    """Command line: deploy the trained model, or list, roll back, roll forward, pin, unpin or repair."""
    parser = argument_parser(__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="list the releases kept (number, model, kind, when, "
                       "F1, current/pinned/rolled back from)")
    group.add_argument("--rollback", action="store_true",
                       help="serve the previous model again (records-only releases of the current one skipped)")
    group.add_argument("--roll-forward", action="store_true", help="undo the newest rollback")
    group.add_argument("--pin", action="store_true", help="keep the current release until --unpin")
    group.add_argument("--unpin", action="store_true", help="let the automation replace the release again")
    group.add_argument("--repair", action="store_true", help="point a missing `current` at the newest intact release")
    parser.add_argument("--to", metavar="RELEASE", default=None,
                        help="with --rollback: the release to serve, by number or name (see --list)")
    parser.add_argument("--take-over", action="store_true",
                        help="switch the production folder to this config's setup (another setup owns it)")
    args = parser.parse_args(argv)
    if args.to is not None and not args.rollback:
        parser.error("--to goes with --rollback (deployment.py --rollback --to RELEASE)")
    setup_logging(args.verbose)
    action = next((name for name in ACTIONS if getattr(args, name)), None)

    def body() -> None:
        config = load_config(args.config)
        if args.list:
            print(format_releases(release_rows(config.prod_deployment_folder)))
            return
        deployment = run(config, action=action, take_over=args.take_over, to=args.to)
        print(f"release {deployment.release}: model {deployment.model_version}")

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
