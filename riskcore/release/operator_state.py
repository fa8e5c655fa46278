"""The operator's state of a production folder (control.json): its owner, a pinned release, rolled-back files.

- Owner: the setup (input, ingested and model folders of a config) that deploys to the folder. The course's
  progression is allowed once without asking: the practice setup deploys first, the production setup takes
  over, recorded. Any later change of owner must be asked for (--take-over); otherwise one sentence, exit 2.
- Pin: a release the automation keeps until it is unpinned, whatever the drift check says.
- Acknowledged files: the input files of a release rolled back from; they count as processed, so the
  next tick does not retrain on them and undo the rollback.
- Rollbacks: each rollback still in force (from which release to which, when, by whom), newest last;
  --roll-forward undoes the newest, a new model's deployment ends them all.

Standard library only: the cron tick reads this before deciding anything.
"""

from __future__ import annotations

import getpass
import logging
from pathlib import Path
from typing import Any

from riskcore.config import Config
from riskcore.contract import ConfigError, UserError
from riskcore.files import atomic_write_json, read_json, utc_now, when
from riskcore.release.load import current_deployment

log = logging.getLogger(__name__)

CONTROL_FILE = "control.json"


def setup_of(config: Config) -> dict[str, str]:
    """What identifies a setup: its config file and the folders it reads and writes."""
    return {"config_file": str(config.config_file), "input_folder": config.input_source,
            "output_folder": str(config.output_folder), "output_model_folder": str(config.output_model_folder)}


SETUP_KEYS = ("input_folder", "output_folder", "output_model_folder")


def same_setup(first: dict[str, str] | None, second: dict[str, str]) -> bool:
    return first is not None and all(first.get(key) == second[key] for key in SETUP_KEYS)


def operator() -> str:
    """Who runs this process, for the records ("unknown" when the system cannot say)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def read_control(prod: Path) -> dict[str, Any]:
    """The folder's control record; an empty one when there is none yet."""
    document = read_json(prod / CONTROL_FILE, "Control record", missing={}, advice="fix or remove it by hand")
    document.setdefault("owner", None)
    document.setdefault("owners", [])
    document.setdefault("pinned", None)
    document.setdefault("acknowledged", {})
    document.setdefault("rollbacks", [])
    return document


def write_control(prod: Path, document: dict[str, Any]) -> None:
    prod.mkdir(parents=True, exist_ok=True)
    atomic_write_json(prod / CONTROL_FILE, document)


def describe(setup: dict[str, str]) -> str:
    return f"{setup.get('config_file', 'an unnamed config')} (input {Path(setup['input_folder']).name}, models " \
           f"{Path(setup['output_model_folder']).name})"


def claim(config: Config, take_over: bool = False, record: bool = True) -> str:
    """Make sure this config's setup may write to its production folder; record it as the owner.

    Returns what happened, for the log. Raises ConfigError (exit 2) when another setup owns the folder
    and the switch was not asked for. With record=False (a dry run) nothing is written.
    """
    prod = config.prod_deployment_folder
    control = read_control(prod)
    mine = setup_of(config)
    if control["owner"] is None:
        adopt_deployed_setup(prod, control)
    owner = control["owner"]
    if same_setup(owner, mine):
        return "owner"
    first_handover = owner is not None and len(control["owners"]) == 1 and not any(
        same_setup(entry["setup"], mine) for entry in control["owners"])
    if owner is not None and not (take_over or first_handover):
        raise ConfigError(
            f"Production folder {prod} belongs to the setup of {describe(owner)}, not to {config.config_file}; "
            "it would overwrite that setup's outputs, so nothing was done (run with --take-over to switch "
            "the folder to this setup).")
    if not record:
        return "would take over" if owner is not None else "would be the first owner"
    control["owner"] = mine
    control["owners"].append({"setup": mine, "since": utc_now(), "by": operator(),
                              "how": "first owner" if owner is None else
                              ("taken over (asked)" if take_over else "taken over (the course's one handover)")})
    write_control(prod, control)
    if owner is None:
        log.info("production folder %s: owned by the setup of %s from now on", prod, config.config_file)
        return "first owner"
    log.warning("production folder %s: the setup of %s takes over from %s", prod, config.config_file,
                describe(owner))
    return "taken over"


def adopt_deployed_setup(prod: Path, control: dict[str, Any]) -> None:
    """A folder deployed to before any claim: the setup its current release names is its first owner."""
    try:
        deployment = current_deployment(prod)
    except UserError:
        return  # unreadable: the deployment's own checks say so
    if deployment is None:
        return  # nothing deployed
    manifest = deployment.manifest
    setup = manifest.get("setup") if isinstance(manifest, dict) else None
    if isinstance(setup, dict) and all(isinstance(setup.get(key), str) for key in SETUP_KEYS):
        control["owner"] = setup
        control["owners"].append({"setup": setup, "since": manifest.get("deployed_at"), "by": "unknown",
                                  "how": "first owner"})


def pin(prod: Path, release: str) -> dict[str, Any]:
    control = read_control(prod)
    control["pinned"] = {"release": release, "at": utc_now(), "by": operator()}
    write_control(prod, control)
    return control["pinned"]


def unpin(prod: Path) -> dict[str, Any] | None:
    control = read_control(prod)
    was = control["pinned"]
    control["pinned"] = None
    write_control(prod, control)
    return was


def acknowledge(prod: Path, files: dict[str, str]) -> None:
    """Count these input files (name -> sha256) as processed from now on."""
    control = read_control(prod)
    control["acknowledged"].update(files)
    write_control(prod, control)


def note_rollback(prod: Path, before: tuple[str, str], after: tuple[str, str]) -> dict[str, Any]:
    """Remember a rollback from (release, model) `before` to `after`, for --roll-forward, --list and the banner."""
    control = read_control(prod)
    entry = {"from": before[0], "from_model": before[1], "to": after[0], "to_model": after[1],
             "at": utc_now(), "by": operator()}
    control["rollbacks"].append(entry)
    write_control(prod, control)
    return entry


def drop_last_rollback(prod: Path) -> None:
    control = read_control(prod)
    control["rollbacks"] = control["rollbacks"][:-1]
    write_control(prod, control)


def end_rollbacks(prod: Path) -> None:
    """A new model is deployed: no rollback is in force any more."""
    control = read_control(prod)
    if control["rollbacks"]:
        control["rollbacks"] = []
        write_control(prod, control)


def rollback_in_force(control: dict[str, Any], served_model: str) -> dict[str, Any] | None:
    """The newest rollback, while the model it went back to is served (records-only releases the automation
    adds after it do not end it; a new model's deployment does, riskcore.release.publish.deploy); else None."""
    rollbacks = control.get("rollbacks") or []
    return rollbacks[-1] if rollbacks and rollbacks[-1].get("to_model") == served_model else None


def serving_state(control: dict[str, Any], served_release: str, served_model: str) -> dict[str, Any] | None:
    """What keeps the served model in place against the automation, in words for the banner and the PDF; or None.

    {"state": "rolled back", "sentence": ..., "from": release, "at": ..., "by": ...} or the same for "pinned".
    """
    rolled = rollback_in_force(control, served_model)
    pinned = control.get("pinned")
    parts, state = [], None
    if rolled:
        state = "rolled back"
        parts.append(f"Rolled back from release {rolled['from']} (model {rolled['from_model']}) to release "
                     f"{rolled['to']} on {when(rolled['at'])} by {rolled['by']}")
    if pinned:
        state = state or "pinned"
        parts.append(f"Release {pinned['release']} pinned on {when(pinned['at'])} by {pinned['by']}: the automation "
                     "keeps this model until deployment.py --unpin")
    if state is None:
        return None
    return {"state": state, "sentence": "; ".join(parts) + ".", "rollback": rolled, "pinned": pinned,
            "release": served_release, "model_version": served_model}
