"""New data: the input files production has not processed yet, by name and sha256.

Processed means listed in the deployed ingestion record (ingested or rejected), or acknowledged
in the production folder's control.json (the files of a release rolled back from; for a table, the
state of the table as the newest release rolled back from read it). Standard
library only: this is the whole work of a cron tick with nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riskcore.config import Config
from riskcore.data.input_files import input_digest, list_input_files
from riskcore.release.load import Deployment, deployed_record, known_files
from riskcore.release.operator_state import read_control, table_record


@dataclass(frozen=True)
class Processed:
    """What production has processed from an input folder."""

    known: dict[str, set[str]] = field(default_factory=dict)  # name -> sha256s that count as processed
    ingested: dict[str, str] = field(default_factory=dict)  # name -> sha256 of each file whose rows are deployed
    same_input_folder: bool = False  # the deployed record was made from this folder
    record: dict[str, Any] | None = None  # the deployed ingestion record of a table (riskcore.data.db_ingest)


NOTHING_PROCESSED = Processed()


def made_from(deployment: Deployment, record: dict[str, Any], input_folder: Path) -> bool:
    """Whether the deployed record was made from `input_folder` (and not, say, the course's practice data)."""
    setup = deployment.manifest.get("setup")
    if isinstance(setup, dict) and isinstance(setup.get("input_folder"), str):
        return setup["input_folder"] == str(input_folder)
    return record.get("input_folder") == input_folder.name  # a release from before setups were recorded


def processed_files(input_folder: Path | None, deployment: Deployment | None) -> Processed:
    """What the current deployment (and control.json) count as processed; nothing when nothing is deployed.

    `input_folder` None: the source is a database table, whose state is in the record alone.
    """
    if deployment is None:
        return NOTHING_PROCESSED
    record = deployed_record(deployment)
    prod = deployment.folder.parent.parent  # prod/releases/<release>
    if input_folder is None:
        return Processed(record=table_record(prod, deployment.release, record))
    known: dict[str, set[str]] = {}
    for name, sha in known_files(record).items():
        known.setdefault(name, set()).add(sha)
    for name, sha in read_control(prod)["acknowledged"].items():
        known.setdefault(name, set()).add(sha)
    ingested = {f["name"]: f["sha256"] for f in record.get("files", [])}
    return Processed(known=known, ingested=ingested, same_input_folder=made_from(deployment, record, input_folder))


def detect_new_data(config: Config, deployment: Deployment | None) -> list[str]:
    """New for production: CSV files, or a database table's new rows (riskcore.data.db_changes)."""
    if config.input_database is None:
        return detect_new_files(config.input_folder, deployment)
    from riskcore.data.db_changes import new_data

    return new_data(config.input_database, processed_files(None, deployment).record)


def detect_new_files(input_folder: Path, deployment: Deployment | None) -> list[str]:
    """CSV files production has not processed, or whose content changed since."""
    candidates, _ = list_input_files(input_folder)
    known = processed_files(input_folder, deployment).known
    return [path.name for path in candidates if input_digest(path, input_folder) not in known.get(path.name, ())]


def detect_removed(config: Config, deployment: Deployment | None) -> list[str]:
    """What the operator may drop (--allow-removed): files gone from the input folder, or a table's deleted rows."""
    if config.input_database is None:
        return detect_removed_files(config.input_folder, deployment)
    if deployment is None:
        return []
    from riskcore.data.db_changes import deleted_rows

    gone = deleted_rows(config.input_database, processed_files(None, deployment).record)
    return [f"{gone:,} rows deleted from {config.input_database.table}"] if gone else []


def detect_removed_files(input_folder: Path, deployment: Deployment | None) -> list[str]:
    """Files whose rows are deployed but which are no longer in the input folder (the operator may drop them)."""
    processed = processed_files(input_folder, deployment)
    if not processed.same_input_folder:
        return []
    present = {path.name for path in list_input_files(input_folder)[0]}
    return sorted(name for name in processed.ingested if name not in present)
