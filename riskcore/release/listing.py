"""The releases kept, as deployment.py --list shows them, and what is served, as /health, the pages and the PDF say it.

Standard library only, like the rest of the reading side of riskcore.release.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from riskcore.contract import DataError, IntegrityError
from riskcore.formatting import score, when
from riskcore.model.drift_evidence import baseline_rows, drift_baseline
from riskcore.release.load import (
    Deployment,
    current_release_name,
    deployed_metadata,
    first_deployed,
    read_release,
    release_names,
)
from riskcore.release.operator_state import read_control, rollback_in_force, serving_state

log = logging.getLogger(__name__)

KINDS = {"model": "new model", "records": "same model, newer records"}


def release_rows(prod: Path) -> list[dict[str, Any]]:
    """Every release kept, oldest first: number, model, kind, when, its F1 on the test data and its drift
    baseline, and its marks (current, pinned, ...)."""
    control = read_control(prod)
    current = current_release_name(prod)
    pinned = (control.get("pinned") or {}).get("release")
    rolled_from = {entry["from"]: entry for entry in control.get("rollbacks") or []}
    rows = []
    for name in release_names(prod):
        try:
            release = read_release(prod, name)
            metadata = deployed_metadata(release)
        except (DataError, IntegrityError, KeyError, ValueError) as exc:
            rows.append({"release": name, "number": int(name.split("-", 1)[0]), "unreadable": str(exc),
                         "marks": ["current"] if name == current else []})
            continue
        marks = []
        if name == current:
            marks.append("current")
            rolled = rollback_in_force(control, release.model_version)
            if rolled:
                marks.append(f"served by a rollback from {rolled['from']}")
        if name == pinned:
            marks.append("pinned")
        if name in rolled_from and name != current:  # served again (--rollback --to it): "rolled back from" misled
            entry = rolled_from[name]
            marks.append(f"rolled back from ({when(entry['at'])} by {entry['by']})")
        rows.append({"release": name, "number": int(name.split("-", 1)[0]), "model_version": release.model_version,
                     "kind": release.kind, "deployed_at": release.deployed_at,
                     "model_deployed_at": release.model_deployed_at, "test_f1": release.manifest.get("score"),
                     "baseline": drift_baseline(metadata), "marks": marks})
    return rows


def _baseline_text(baseline: dict[str, Any] | None) -> str:
    """ "0.8429 (2,000 rows of the new market, left out of its training)" ("-": none recorded); the column's header
    says "F1 on its own market"."""
    if baseline is None:
        return "-"
    # Which rows, not why: the why is the data-drift evidence (PSI and KS of every feature), 300 characters that
    # made each row of the table wrap in a terminal; deployment.py's log and the model page give it in full.
    rows = baseline_rows(baseline)
    return f"{score(baseline['f1'])} ({rows})" if rows else score(baseline["f1"])


def format_releases(rows: list[dict[str, Any]]) -> str:
    """The releases as a plain-text table, oldest first (the release number is what --rollback --to takes)."""
    if not rows:
        return "no release is kept yet"
    headers = ("release", "model", "kind", "deployed", "test F1", "drift baseline: F1 on its own market", "")
    lines = [headers]
    for row in rows:
        if "unreadable" in row:
            lines.append((f"{row['number']}", "?", "?", "?", "-", "-",
                          ", ".join([*row["marks"], f"unreadable: {row['unreadable']}"])))
            continue
        test = "-" if row["test_f1"] is None else f"{row['test_f1']:.4f}"
        lines.append((str(row["number"]), row["model_version"], KINDS.get(row["kind"], row["kind"]),
                      when(row["deployed_at"]), test, _baseline_text(row["baseline"]), ", ".join(row["marks"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def served_summary(prod: Path, deployment: Deployment) -> dict[str, Any]:
    """What is served, said the same way by /health, the pages and the PDF: the model, when it was first
    deployed, the release and when that was published, and a rollback or pin keeping it (else None)."""
    try:
        state = serving_state(read_control(prod), deployment.release, deployment.model_version)
    except DataError as exc:
        log.warning("%s", exc)
        state = None
    return {"model_version": deployment.model_version, "deployed_at": first_deployed(prod, deployment),
            "release": deployment.release, "release_deployed_at": deployment.deployed_at, "operator_state": state}
