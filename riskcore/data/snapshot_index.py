"""Every snapshot of a client, found by id: the rows of the data the ingestion reads, indexed once.

The sources are what the ingestion reads, in its order: the input folder's CSV files in name order
(each read and checked as ingestion reads it, riskcore.data.folder_ingest.read_candidate: a link out
of the folder, a file too large or one that breaks the data contract is left out), or, for a
database table, the table's rows as last read (tablesnapshot.csv beside finaldata.csv, kept for a
table without a watermark column) or else its clients' latest rows (finaldata.csv). Their rows are
stacked with their source and row number and sorted by client id once, so a client's snapshots are
a binary search away: no file is read again per lookup.

Which snapshot recorded that a client left (recording_snapshot) is the first of the client's last
rows that say exited = 1: the snapshot whose label made it leave the call list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from riskcore.config import Config
from riskcore.contract import FEATURES, FINAL_DATA, ID_COLUMN, TABLE_SNAPSHOT, TARGET, DataError
from riskcore.data.input_files import list_input_files, printable_name

log = logging.getLogger(__name__)

SOURCE, ROW = "source", "row"  # a snapshot's file (or table) and its row there, counted from 1 below the header


@dataclass(frozen=True)
class Source:
    """One place snapshots are read from: its name as the page says it and the file that holds its rows."""

    name: str  # a file name, or the table's label
    path: Path
    table: bool = False  # the rows of a database table (the ingestion record dates them by the table's read)


def snapshot_sources(config: Config) -> list[Source]:
    """What the ingestion reads, in its order; a folder's files or the table's kept rows."""
    if config.input_database is not None:
        kept = config.output_folder / TABLE_SNAPSHOT
        if kept.is_file():
            return [Source(config.input_database.table, kept, table=True)]
        return [Source(FINAL_DATA, config.final_data_file, table=True)]
    folder = config.input_folder
    if folder is None or not folder.is_dir():
        return []
    return [Source(path.name, path) for path in list_input_files(folder)[0]]


class SnapshotIndex:
    """The snapshots of every client of some sources, sorted by id (stable: in the ingestion's order within one)."""

    def __init__(self, frame: pl.DataFrame, sources: list[Source]) -> None:
        self.frame = frame
        self.sources = sources
        self.ids = frame.get_column(ID_COLUMN)

    def of(self, client_id: str) -> list[dict[str, Any]]:
        """The client's snapshots, oldest first: source, row, the features and exited (None: no label)."""
        start = int(self.ids.search_sorted(client_id, side="left"))
        end = int(self.ids.search_sorted(client_id, side="right"))
        return self.frame.slice(start, end - start).drop(ID_COLUMN).to_dicts()


def index_frames(named: list[tuple[str, pl.DataFrame]]) -> pl.DataFrame:
    """Validated frames (one per source, in order) as one frame of snapshots sorted by client id."""
    parts = [frame.select(pl.col(ID_COLUMN), pl.lit(name, dtype=pl.String).alias(SOURCE),
                          pl.int_range(1, pl.len() + 1, dtype=pl.UInt32).alias(ROW), *FEATURES,
                          (pl.col(TARGET) if TARGET in frame.columns else pl.lit(None)).cast(pl.Int64).alias(TARGET))
             for name, frame in named]
    if not parts:
        return pl.DataFrame(schema={ID_COLUMN: pl.String, SOURCE: pl.String, ROW: pl.UInt32,
                                    **dict.fromkeys(FEATURES, pl.Int64), TARGET: pl.Int64})
    return pl.concat(parts).with_columns(pl.col(SOURCE).cast(pl.Categorical)).sort(ID_COLUMN, maintain_order=True)


def read_source(source: Source, config: Config) -> pl.DataFrame:
    """A source's rows, checked as the ingestion checks them (DataError when it would reject them)."""
    from riskcore.data.client_csv import read_client_frame
    from riskcore.data.folder_ingest import read_candidate

    if source.table:
        return read_client_frame(source.path, source.name, require_target=False, max_id_length=config.max_id_length)
    return read_candidate(source.path, config.input_folder, config.max_id_length)[1]


def build_index(config: Config, sources: list[Source]) -> SnapshotIndex:
    """The index of the sources' snapshots; a source the ingestion would reject is left out (logged)."""
    named = []
    for source in sources:
        try:
            named.append((source.name, read_source(source, config)))
        except DataError as exc:
            log.info("snapshots: %s left out (%s)", printable_name(source.name), exc)
    return SnapshotIndex(index_frames(named), sources)


def recording_snapshot(snapshots: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The snapshot that recorded that the client left: the first of its last snapshots saying exited = 1
    (unlabelled ones between them aside); None when its last labelled snapshot does not say so."""
    found = None
    for snapshot in reversed(snapshots):
        label = snapshot.get(TARGET)
        if label == 1:
            found = snapshot
        elif label is not None:
            break
    return found

