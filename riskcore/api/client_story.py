"""A client's story, for its page (/clients/<id>) and GET /risk/<id>: its snapshots with their dates and risk,
its risk across the kept runs, and, for a client who left, the snapshot that recorded it.

A snapshot is dated by when its file was first ingested: the start of the first run of the automation
(fullprocess.py) that ingested the file, from the run history (its new_files); a file ingested outside
a run (ingestion.py by hand, or a history that no longer holds the run) by the latest ingestion that
read it, from the ingestion record (ingestionrecord.json); a file no ingestion read yet has no date.
A table's rows are dated by the table's last read (the ingestion record). The risk of each snapshot is
the served model's calibrated probability (Served.predict, as /prediction and the call list give it),
computed on request for the client's few rows.

A client is on the call list ("listed"), or left: its latest snapshot in the ingested data
(finaldata.csv) says exited = 1, which keeps it off the list. Any other id is unknown (a 404). Every
index is built once per version of the files it reads and kept in the API's one file cache; a request
does binary searches in them, never a scan of a data file.
"""

from __future__ import annotations

import logging
from typing import Any

from riskcore.api.errors import ApiError
from riskcore.api.paged_call_list import CallList
from riskcore.api.risk_service import RiskService
from riskcore.api.served_model import Served
from riskcore.contract import FEATURES, FINAL_DATA, ID_COLUMN, INGESTION_RECORD, RUN_HISTORY, TARGET, UserError
from riskcore.files import read_json
from riskcore.formatting import day

log = logging.getLogger(__name__)

SNAPSHOTS = "snapshots"
LEFT_RECORDED = "left_recorded"
RUNS = "runs"
LISTED, LEFT = "listed", "left"  # a known client's status
RUN_HISTORY_DATE, RECORD_DATE = "run history", "ingestion record"  # what dated a snapshot (`dated_by`)
CLIENT_RUNS_KEPT = 32  # clients whose runs across the kept rankings are kept
DATES_NOTE = ("Dated by when its file was first ingested: the first run of fullprocess.py that ingested it (the run "
              "history); a file ingested outside a run by the latest ingestion that read it (ingestionrecord.json); "
              "a table's rows by the table's last read.")


# --- The indexes, built once per version of their files -----------------------------------------
def snapshot_index(risk: RiskService):
    """Every client's snapshots (riskcore.data.snapshot_index), indexed once per version of the sources."""
    from riskcore.data.snapshot_index import build_index, snapshot_sources

    sources = snapshot_sources(risk.config)
    return risk.files.get("snapshot_index", [source.path for source in sources],
                          lambda _: build_index(risk.config, sources), key=tuple(s.name for s in sources))


def ingestion_dates(runs: list[dict[str, Any]], record: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    """Each ingested file's (or table's) date and what dated it: the first run that ingested it, else the record."""
    dates: dict[str, tuple[str, str]] = {}
    for run in runs:  # oldest first
        if run.get("rows_ingested") is not None and run.get("started_at"):
            refused = {r.get("name") for r in run.get("files_rejected") or [] if isinstance(r, dict)}
            for name in run.get("new_files") or []:
                if name not in refused:  # new in that run, but not ingested: its rows came with a later version
                    dates.setdefault(name, (run["started_at"], RUN_HISTORY_DATE))
    if isinstance(record, dict):
        for entry in record.get("files") or []:
            if isinstance(entry, dict) and entry.get("name") and entry.get("read_at"):
                dates.setdefault(entry["name"], (entry["read_at"], RECORD_DATE))
        if record.get("ingested_at"):
            dates.setdefault(FINAL_DATA, (record["ingested_at"], RECORD_DATE))
    return dates


def dates(risk: RiskService) -> dict[str, tuple[str, str]]:
    """ingestion_dates of the run history and the ingestion record, once per version of the two."""
    record_path = risk.config.output_folder / INGESTION_RECORD

    def build(_) -> dict[str, tuple[str, str]]:
        try:
            record = read_json(record_path, "Ingestion record", missing=None)
        except UserError as exc:
            log.warning("snapshot dates without the ingestion record: %s", exc)
            record = None
        return ingestion_dates(risk.history().runs, record)

    return risk.files.get("ingestion_dates", (record_path, risk.config.output_model_folder / RUN_HISTORY), build)


def left_clients(risk: RiskService):
    """The ids of the ingested clients whose latest snapshot says they left, sorted (once per finaldata.csv)."""
    import polars as pl

    from riskcore.data.client_scan import open_clients

    def build(signature) -> pl.Series:
        if signature[0] is None:
            return pl.Series(ID_COLUMN, [], dtype=pl.String)
        try:
            frame, labelled = open_clients(risk.config.final_data_file)
            if not labelled:
                return pl.Series(ID_COLUMN, [], dtype=pl.String)
            return frame.filter(pl.col(TARGET) == 1).select(ID_COLUMN).collect().get_column(ID_COLUMN).sort()
        except (UserError, pl.exceptions.PolarsError) as exc:
            log.error("the clients who left cannot be read from %s: %s", FINAL_DATA, exc)
            return pl.Series(ID_COLUMN, [], dtype=pl.String)

    return risk.files.get("left_clients", (risk.config.final_data_file,), build)


def has_left(risk: RiskService, client_id: str) -> bool:
    """Whether the client is in the ingested data with a latest snapshot saying it left."""
    ids = left_clients(risk)
    place = int(ids.search_sorted(client_id, side="left"))
    return place < len(ids) and ids[place] == client_id


def runs_of_client(risk: RiskService, client_id: str) -> list[dict[str, Any]]:
    """The client in each kept ranking (riskcore.report.rankings), kept until a ranking is added or dropped."""
    from riskcore.report.rankings import RANKINGS, client_across_runs

    folder = risk.config.output_model_folder
    return risk.files.get("client_runs", (folder / RANKINGS,), lambda _: client_across_runs(folder, client_id),
                          key=client_id, keep=CLIENT_RUNS_KEPT)


# --- The story ---------------------------------------------------------------------------------
def scored_snapshots(risk: RiskService, served: Served, client_id: str) -> list[dict[str, Any]]:
    """The client's snapshots, oldest first, each with its date, what dated it and the served model's probability."""
    import numpy as np

    found = snapshot_index(risk).of(client_id)
    if not found:
        return []
    _, probabilities = served.predict(np.array([[row[f] for f in FEATURES] for row in found], dtype="float64"))
    known = dates(risk)
    for row, probability in zip(found, probabilities, strict=True):
        when, dated_by = known.get(row["source"], (None, None))
        row.update(ingested_at=when, dated_by=dated_by, probability=probability)
    return found


def left_record(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Where and when the client's leaving was recorded: the snapshot that recorded it, or the ingested data."""
    from riskcore.data.snapshot_index import recording_snapshot

    recorded = recording_snapshot(snapshots)
    if recorded is None:  # the sources no longer hold it (a file dropped since): the ingested data says so
        return {"source": FINAL_DATA, "row": None, "ingested_at": None, "dated_by": None}
    return {key: recorded[key] for key in ("source", "row", "ingested_at", "dated_by")}


def client_story(risk: RiskService, served: Served, client_id: str, status: str) -> dict[str, Any]:
    """A known client's story: status, snapshots (oldest first), runs, and where its leaving was recorded."""
    snapshots = scored_snapshots(risk, served, client_id)
    return {"status": status, SNAPSHOTS: snapshots, RUNS: runs_of_client(risk, client_id),
            LEFT_RECORDED: left_record(snapshots) if status == LEFT else None}


def left_sentence(recorded: dict[str, Any], table: bool = False) -> str:
    """"Left: recorded in dataset4.csv (row 2,920), ingested 3 Dec 2026." (left_record in words; `table`: the
    source is a database table)."""
    if recorded["row"] is None:
        return (f"Left: recorded in the ingested data ({recorded['source']}); the snapshot that recorded it is no "
                "longer among the input files.")
    when = (f"ingested {day(recorded['ingested_at'], year=True)}" if recorded["ingested_at"]
            else "not ingested yet")
    source = f'table "{recorded["source"]}"' if table else recorded["source"]
    return f"Left: recorded in {source} (row {recorded['row']:,}), {when}."


def known_client(risk: RiskService, served: Served, client_id: str) -> tuple[CallList, str]:
    """The call list and the client's status: LISTED or LEFT; ApiError 503 without a list, 404 (unknown_client) for
    an id the ingested data does not hold."""
    calls = risk.call_list(served)
    if not isinstance(calls, CallList):
        raise ApiError(503, calls)
    if calls.place(client_id) is not None:
        return calls, LISTED
    if has_left(risk, client_id):
        return calls, LEFT
    raise ApiError(404, unknown_client(client_id), field="client_id")


def unknown_client(client_id: str) -> str:
    """The 404's sentence for an id neither on the call list nor among the clients who left."""
    from json import dumps

    shown = client_id if len(client_id) <= 60 else client_id[:57] + "..."
    return (f"No client {dumps(shown)} in the ingested data ({FINAL_DATA}): it is neither on the call list nor "
            "among the clients who left.")
