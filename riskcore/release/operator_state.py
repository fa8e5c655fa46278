"""The operator's state of a production folder (control.json): its owner, a pinned release, rolled-back files.

- Owner: the setup (input, ingested and model folders of a config) that deploys to the folder. The course's
  progression is allowed once without asking: the practice setup deploys first, the production setup takes
  over, recorded. Any later change of owner must be asked for (--take-over); otherwise one sentence, exit 2.
- Pin: a release the automation keeps until it is unpinned, whatever the drift check says.
- Acknowledged files: the input files of a release rolled back from; they count as processed, so the
  next tick does not retrain on them and undo the rollback. For a database table, the table's state as
  the newest release rolled back from read it (acknowledged_table) stands in for the deployed one's.
- Rollbacks: each rollback still in force (from which release to which, when, by whom), newest last;
  --roll-forward undoes the newest, a new model's deployment ends them all.

Standard library only: the cron tick reads this before deciding anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from riskcore.config import Config
from riskcore.contract import (
    RUN_HISTORY,
    ConfigError,
    DataError,
    IntegrityError,
    UserError,
)
from riskcore.faults import checkpoint
from riskcore.files import atomic_path, atomic_write_bytes, atomic_write_json, json_text, sha256_bytes, utc_now
from riskcore.formatting import when
from riskcore.release.load import (
    current_deployment,
    current_release_name,
    deployed_record,
    known_files,
    read_release,
    release_names,
)

log = logging.getLogger(__name__)

CONTROL_FILE = "control.json"
ACKNOWLEDGED_TABLE = "acknowledged-table.json"  # a table's state as the newest release rolled back from read it


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


JOURNAL_FILE = "control.journal"  # the states control.json held, one JSON line each, newest last
# The journal only has to give back the newest state, so it is compacted past either bound to the newest
# JOURNAL_KEEP states (at most half the byte bound, the newest always kept): it stays small for good.
JOURNAL_MAX_LINES = 1000
JOURNAL_MAX_BYTES = 1_000_000
JOURNAL_KEEP = 100
EMPTY_CONTROL = {"owner": None, "owners": [], "pinned": None, "acknowledged": {}, "acknowledged_table": None,
                 "rollbacks": []}


def with_defaults(document: dict[str, Any]) -> dict[str, Any]:
    for key, value in EMPTY_CONTROL.items():
        document.setdefault(key, json.loads(json.dumps(value)))
    return document


def read_control(prod: Path) -> dict[str, Any]:
    """The folder's control record; an empty one when there is none yet.

    A control.json that is missing or unreadable is restored from its journal, or, with no journal
    either, rebuilt from the release manifests and the run history; an unreadable one is kept aside
    for a look. The operator's state is never lost to a bad file, nor to one removed by hand.
    """
    path = prod / CONTROL_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        if not (prod / JOURNAL_FILE).exists() and not _claimed_before(prod):
            return with_defaults({})  # never written (a folder deployed to before any claim: claim adopts it)
        return restore_control(prod, "missing")
    except (OSError, ValueError) as exc:
        aside = path.with_name(f"{CONTROL_FILE}.unreadable-{utc_now().replace(':', '')}")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        return restore_control(prod, f"unreadable ({exc.__class__.__name__}; kept as {aside.name})")
    if not (prod / JOURNAL_FILE).exists():  # written before the journal existed: it starts with this state
        with contextlib.suppress(OSError):
            append_journal(prod, document)
    return with_defaults(document)


def last_journal_state(prod: Path) -> dict[str, Any] | None:
    """The newest complete state in the journal (a line cut short by a crash is skipped), or None."""
    try:
        lines = (prod / JOURNAL_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            document = json.loads(line)
            if isinstance(document, dict):
                return document
    return None


def restore_control(prod: Path, why: str) -> dict[str, Any]:
    """control.json restored from the journal, or rebuilt from the releases and the run history; written back."""
    document = last_journal_state(prod)
    source = "its journal " + JOURNAL_FILE
    if document is None:
        document, source = rebuild_control(prod), "the release manifests and the run history"
    document = with_defaults(document)
    log.warning("control record %s was %s: restored from %s", prod / CONTROL_FILE, why, source)
    write_control(prod, document)
    return document


def _manifests(prod: Path) -> list[tuple[str, dict[str, Any]]]:
    """(release, manifest) of every kept release whose manifest reads, oldest first."""
    found = []
    for name in release_names(prod):
        with contextlib.suppress(DataError):
            manifest = read_release(prod, name).manifest
            if isinstance(manifest, dict):
                found.append((name, manifest))
    return found


def _claimed_before(prod: Path) -> bool:
    """Whether a kept release names the setup that deployed it: the folder had a control record, so one found
    missing with its journal was removed by hand (rebuilt: no free handover), not never written (adopted)."""
    return any(isinstance(manifest.get("setup"), dict) for _, manifest in _manifests(prod))


def rebuild_control(prod: Path) -> dict[str, Any]:
    """The control record as the releases and the run history tell it.

    Owners: every setup the kept manifests name, in order, the current release's last; marked
    "rebuilt", so no setup takes the folder over without --take-over (the one free handover needs the
    full story). Pin and rollbacks: the operator's actions in the run history (deployment.py records
    each), since the newest model deployment; the files of a release rolled back from stay processed.
    """
    from riskcore.ops.history import read_history  # standard library only

    manifests = _manifests(prod)
    current_name = None  # a broken pointer names no release: the newest setup owns the folder
    with contextlib.suppress(IntegrityError):
        current_name = current_release_name(prod)
    current = next((m for name, m in manifests if name == current_name), None)
    setups: list[dict[str, str]] = []
    for _, manifest in manifests:
        setup = manifest.get("setup")
        if isinstance(setup, dict) and all(isinstance(setup.get(k), str) for k in SETUP_KEYS) and \
                not any(same_setup(known, setup) for known in setups):
            setups.append(setup)
    owner = current.get("setup") if current and isinstance(current.get("setup"), dict) else \
        (setups[-1] if setups else None)
    document = with_defaults({"owner": owner, "rebuilt": utc_now(), "owners": [
        {"setup": setup, "since": None, "by": "unknown", "how": "rebuilt from the release manifests"}
        for setup in [s for s in setups if not same_setup(s, owner or {})] + ([owner] if owner else [])]})
    rows = []
    for setup in setups:
        rows += read_history(Path(setup["output_model_folder"]) / RUN_HISTORY)
    seen = set()
    for row in sorted(rows, key=lambda r: (r.get("finished_at") or "", r.get("id") or 0)):
        if row["run_id"] in seen:
            continue
        seen.add(row["run_id"])
        apply_action(prod, document, row)
    return document


ACTION_NOTE = re.compile(r"^(?:pinned release (?P<pinned>\S+)|unpinned release \S+|rolled back from release "
                         r"(?P<source>\S+) to (?P<target>\S+)) by (?P<by>.+)$")


def apply_action(prod: Path, document: dict[str, Any], row: dict[str, Any]) -> None:
    """One history row's effect on the rebuilt record: pin, unpin, rollback, roll forward, a new model."""
    decision, note = row.get("decision"), row.get("note") or ""
    if decision in ("retrain", "first deployment") and row.get("version_after") != row.get("version_before"):
        document["rollbacks"] = []
        return
    match = ACTION_NOTE.match(note)
    if decision == "unpin":
        document["pinned"] = None
    elif decision == "pin" and match and match["pinned"]:
        document["pinned"] = {"release": match["pinned"], "at": row.get("finished_at"), "by": match["by"]}
    elif decision == "roll-forward":
        document["rollbacks"] = document["rollbacks"][:-1]
    elif decision == "rollback" and match and match["source"]:
        document["rollbacks"].append({"from": match["source"], "from_model": row.get("version_before"),
                                      "to": match["target"], "to_model": row.get("version_after"),
                                      "at": row.get("finished_at"), "by": match["by"]})
        note_processed(prod, document, match["source"], release_record(prod, match["source"]))


def release_record(prod: Path, release: str) -> dict[str, Any]:
    """A kept release's ingestion record, checked against its manifest, as a rollback acknowledges it
    (riskcore.release.publish.switch_release); {} when the release is gone or its record does not check out."""
    try:
        return deployed_record(read_release(prod, release))
    except (UserError, KeyError, TypeError):
        return {}


def write_control(prod: Path, document: dict[str, Any]) -> None:
    """Append the state to the journal (fsynced; compacted past its bounds), then replace control.json atomically."""
    prod.mkdir(parents=True, exist_ok=True)
    append_journal(prod, document, compact=True)
    atomic_write_json(prod / CONTROL_FILE, document)


@contextlib.contextmanager
def locked_journal(prod: Path) -> Iterator[int]:
    """The journal open for appending, under an flock of its own, so one process at a time appends or compacts it.

    Every writer of control.json holds the run lock, except a restore by a reader (the API finding the file
    missing); this lock keeps that append from landing in a journal a compaction is replacing. A writer that
    waited for a compaction finds the file replaced and opens the new one.
    """
    path = prod / JOURNAL_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield fd
    finally:
        os.close(fd)  # releases the flock


def append_journal(prod: Path, document: dict[str, Any], compact: bool = False) -> None:
    line = json.dumps(document, sort_keys=True, ensure_ascii=True) + "\n"
    with locked_journal(prod) as fd:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = "\n" + line  # a line cut short by a crash stays a line of its own, skipped on reading
        os.write(fd, line.encode("ascii"))
        os.fsync(fd)
        if compact:
            compact_journal(prod, fd)


def compact_journal(prod: Path, fd: int) -> bool:
    """Past JOURNAL_MAX_LINES or JOURNAL_MAX_BYTES, replace the journal (open as `fd`, locked) atomically by its
    newest complete states: JOURNAL_KEEP of them, in at most half the byte bound, the newest always kept.

    A crash before the rename leaves the whole journal; after it, the compacted one (riskcore.files.atomic_path).
    Returns whether it compacted.
    """
    size = os.fstat(fd).st_size
    start = max(0, size - 2 * JOURNAL_MAX_BYTES)  # a journal grown before compaction: its tail is enough
    data = os.pread(fd, size - start, start)  # (a first line cut by `start` does not parse: skipped)
    if size <= JOURNAL_MAX_BYTES and data.count(b"\n") <= JOURNAL_MAX_LINES:
        return False
    kept: list[bytes] = []
    total = 0
    for line in reversed(data.splitlines()):
        if len(kept) == JOURNAL_KEEP or kept and total + len(line) + 1 > JOURNAL_MAX_BYTES // 2:
            break
        with contextlib.suppress(ValueError):
            if isinstance(json.loads(line), dict):
                kept.append(line)
                total += len(line) + 1
    if not kept:
        return False  # no complete state at all: nothing better to put in its place
    for stale in prod.glob(f".{JOURNAL_FILE}.*"):  # left by a compaction killed before its rename
        with contextlib.suppress(OSError):
            stale.unlink()
    with atomic_path(prod / JOURNAL_FILE) as tmp:
        tmp.write_bytes(b"".join(line + b"\n" for line in reversed(kept)))
        checkpoint("journal-compaction-written")
    log.info("control journal %s compacted: the newest %d of its states kept (%d bytes, was %d)",
             prod / JOURNAL_FILE, len(kept), total, size)
    return True


def setup_words(setup: dict[str, str]) -> str:
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
    first_handover = owner is not None and not control.get("rebuilt") and len(control["owners"]) == 1 and not any(
        same_setup(entry["setup"], mine) for entry in control["owners"])
    if owner is not None and not (take_over or first_handover):
        raise ConfigError(
            f"Production folder {prod} belongs to the setup of {setup_words(owner)}, not to {config.config_file}; "
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
                setup_words(owner))
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


def refuse_while_pinned(prod: Path, action: str) -> None:
    """A pinned release stays served: a rollback (or roll forward) is refused until --unpin (DataError)."""
    pinned = read_control(prod)["pinned"]
    if pinned:
        raise DataError(f"Release {pinned['release']} is pinned (by {pinned['by']}, {pinned['at']}); a {action} would "
                        "serve another release while the pin names this one, so nothing was done (run deployment.py "
                        "--unpin first).")


def pin(prod: Path, release: str) -> dict[str, Any]:
    control = read_control(prod)
    control["pinned"] = {"release": release, "at": utc_now(), "by": operator()}
    write_control(prod, control)
    return control["pinned"]


def unpin(prod: Path) -> dict[str, Any] | None:
    """Unpin; the pin that was, or None (and nothing written) when no release was pinned."""
    control = read_control(prod)
    was = control["pinned"]
    if was is not None:
        control["pinned"] = None
        write_control(prod, control)
    return was


def note_processed(prod: Path, control: dict[str, Any], release: str, record: dict[str, Any]) -> None:
    """Count what `release`'s ingestion record processed as processed: its files, and its table's state unless a
    newer release's already stands (a table has one state, the newest read; files add up).

    The table's state goes to a file of its own (ACKNOWLEDGED_TABLE), named in control.json by its sha256:
    its look-back hashes can be megabytes, which every state of the journal would otherwise repeat.
    """
    control["acknowledged"].update(known_files(record))
    held = control["acknowledged_table"]
    if isinstance(record.get("database"), dict) and (held is None or held["release"] < release):
        data = json_text(record["database"]).encode("utf-8")
        atomic_write_bytes(prod / ACKNOWLEDGED_TABLE, data)
        control["acknowledged_table"] = {"release": release, "sha256": sha256_bytes(data)}


def acknowledge(prod: Path, release: str, record: dict[str, Any]) -> None:
    """Count what `release` (left by a rollback or roll forward) had processed as processed from now on."""
    control = read_control(prod)
    note_processed(prod, control, release, record)
    write_control(prod, control)


def table_record(prod: Path, release: str, record: dict[str, Any]) -> dict[str, Any]:
    """The deployed ingestion record of `release`, its table's state replaced by an acknowledged newer one.

    After a rollback the served release read the table before the release rolled back from did: the rows
    in between would count as new, and the next tick would retrain on them and undo the rollback.
    """
    held = read_control(prod)["acknowledged_table"]
    if held is None or held["release"] <= release:
        return record
    try:
        data = (prod / ACKNOWLEDGED_TABLE).read_bytes()
        if sha256_bytes(data) == held.get("sha256"):
            return {**record, "database": json.loads(data)}
    except (OSError, ValueError):
        pass
    database = release_record(prod, held["release"]).get("database")  # the release itself, while it is kept
    if isinstance(database, dict):
        return {**record, "database": database}
    log.warning("the table's state as release %s read it (%s, rolled back from) is gone: the rows it had read "
                "count as new again", held["release"], ACKNOWLEDGED_TABLE)
    return record


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
    return {"state": state, "sentence": ". ".join(parts) + ".", "rollback": rolled, "pinned": pinned,
            "release": served_release, "model_version": served_model}
