"""New data: the input files a deployment has not processed yet, by name and sha256.

Standard library only: this is the whole work of a cron tick with nothing new.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from riskcore.contract import INGESTION_RECORD, DataError
from riskcore.inputs import input_digest, list_input_files
from riskcore.releases import Deployment, read_deployed


def known_files(record: dict[str, Any]) -> dict[str, str]:
    """Name -> sha256 of every file a deployed ingestion record accounts for (rejected too)."""
    known = {f["name"]: f["sha256"] for f in record.get("files", [])}
    known.update({r["name"]: r["sha256"] for r in record.get("rejected", []) if r.get("sha256")})
    return known


def detect_new_files(input_folder: Path, deployment: Deployment | None) -> list[str]:
    """CSV files the deployed record does not list, or whose content changed since."""
    candidates, _ = list_input_files(input_folder)
    if deployment is None:
        return [path.name for path in candidates]
    # Checked against the manifest: a record edited by hand could otherwise hide new files for good.
    data = read_deployed(deployment, INGESTION_RECORD)
    try:
        known = known_files(json.loads(data))
    except ValueError:
        raise DataError(f"Ingestion record {deployment.path(INGESTION_RECORD)} is not valid JSON.") from None
    return [path.name for path in candidates if known.get(path.name) != input_digest(path, input_folder)]
