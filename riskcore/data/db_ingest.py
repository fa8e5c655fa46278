"""Ingesting the configured database table: the same validated rows, finaldata.csv and record as a CSV folder.

One read-only snapshot (a repeatable-read transaction in PostgreSQL, a read transaction in
SQLite) gives the rows and the state the next tick compares with (riskcore.data.db_changes). Rows come
in watermark order when there is a watermark column (rows without one first), so a client's
latest snapshot is its last row, as with files read in name order. PostgreSQL rows arrive through
ADBC's libpq driver as Arrow columns straight into polars (make bench measures it against psql's
\\copy); SQLite's through sqlite3.

New data, for the drift check: with a watermark column, the rows above the recorded watermark;
without one, the rows that were not in the previous snapshot (tablesnapshot.csv, the rows as
read, kept beside finaldata.csv for such a table). Nothing recorded: every row is new. The record
keeps the snapshot's sha256 (of the rows as read, as CSV) either way.

Validation is the CSV path's (riskcore.data.validation.validate_client_frame); `exited` may be missing or
empty (clients not labelled yet). Columns that are not whole numbers or text in the database
(numeric, real, boolean) are read as their text, as an export would write them. A table with a
bad value is not ingested at all, as a broken file that was ingested before holds the ingestion
back: the sentence names the first bad value and counts the rows, naming their clients.
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from riskcore.config import Config
from riskcore.contract import CURRENT_LINK, ID_COLUMN, MAX_ID_LENGTH, TABLE_SNAPSHOT, TARGET, DataError
from riskcore.data.contract_rules import LABELS_OPTIONAL, expected, shown
from riskcore.data.db_changes import (
    IN_RECENT,
    IN_WINDOW,
    ROW_HASH,
    TableState,
    look_back_sql,
    recorded_hashes,
    recorded_state,
    table_state,
)
from riskcore.data.db_connection import (
    DatabaseError,
    connect,
    contract_columns,
    quote_identifier,
    table_sql,
)
from riskcore.data.db_setting import DatabaseSource
from riskcore.data.input_files import printable_name
from riskcore.data.snapshots import DROP_COMMAND, FileResult, HeldBack, IngestionResult, merge_frames, with_label_column
from riskcore.data.validation import id_breaks, normalise_ids, row_breaks, validate_client_frame
from riskcore.files import atomic_path, utc_now
from riskcore.release.operator_state import operator

SHOWN_CLIENTS = 5
SHOWN_ID = 40  # characters of an id a sentence shows: a 1,000-character id would drown it


@dataclass
class TableRead:
    """The validated rows of one snapshot of the table, the new ones among them, and what the record keeps."""

    source: DatabaseSource
    raw: pl.DataFrame  # the rows as read
    frame: pl.DataFrame  # validated
    new: pl.DataFrame  # the rows new since the recorded state (all of them when nothing was recorded)
    state: TableState
    snapshot: bytes = b""  # the rows as read, as CSV (what tablesnapshot.csv holds)
    read_at: str = field(default_factory=utc_now)

    @property
    def snapshot_sha256(self) -> str:
        return hashlib.sha256(self.snapshot).hexdigest()

    def record(self) -> dict[str, Any]:
        """The ingestion record's "database" section: where, what state, how many rows, which snapshot."""
        return {"source": self.source.identity(), "label": self.source.label, "state": self.state.as_record(),
                "rows_read": self.frame.height,
                "new_rows": self.new.height, "snapshot_sha256": self.snapshot_sha256, "read_at": self.read_at}


def select_sql(source: DatabaseSource, columns: dict[str, bool], marks: dict[str, str] | None = None) -> str:
    """The snapshot's query: the contract's columns (cast to text where not numbers or text), in watermark order;
    `marks`: name -> SQL of columns marking the look-back's rows (riskcore.data.db_changes.look_back_sql)."""
    listed = [f"{sql} AS {quote_identifier(name)}" for name, sql in (marks or {}).items()]
    for column in columns:
        quoted = quote_identifier(column)
        listed.append(quoted if columns[column] else f"{quoted}::text AS {quoted}")
    order = f" ORDER BY {quote_identifier(source.watermark_column)} NULLS FIRST" if source.watermark_column else ""
    return f"SELECT {', '.join(listed)} FROM {table_sql(source.table)}{order}"


def column_of(name: str, values: list[Any]) -> pl.Series:
    """One SQLite column: whole numbers stay numbers; anything else becomes its text (None stays missing)."""
    if all(value is None or (isinstance(value, int) and not isinstance(value, bool)) for value in values):
        return pl.Series(name, values, dtype=pl.Int64)
    return pl.Series(name, [None if v is None else v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                            for v in values], dtype=pl.String)


def fetch(connection, columns: dict[str, bool], marks: dict[str, str] | None = None) -> pl.DataFrame:
    """The snapshot's rows as polars columns: whole numbers as Int64, everything else as text."""
    sql = select_sql(connection.source, columns, marks)
    if connection.source.kind == "sqlite":
        names, rows = connection.tuples(sql)
        values = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
        return pl.DataFrame([column_of(name, list(column)) for name, column in zip(names, values, strict=True)])
    frame = connection.consume(sql, pl.DataFrame)
    return frame.with_columns(pl.col(c).cast(pl.Int64 if frame[c].dtype.is_integer() else pl.String)
                              for c in frame.columns)


def as_csv(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return buffer.getvalue()


# --- Bad values: which rows, for the sentence --------------------------------------------------
def bad_value_masks(frame: pl.DataFrame, max_id_length: int = MAX_ID_LENGTH) -> dict[str, pl.Series]:
    """Per column, the rows whose value the contract refuses (validation.row_breaks, and ids over
    max_id_length), to count and name them."""
    ids = frame[ID_COLUMN].cast(pl.String)
    checked = frame.with_columns(normalise_ids(ids))
    breaks = row_breaks(checked.schema, LABELS_OPTIONAL)
    breaks[ID_COLUMN] = breaks[ID_COLUMN] | id_breaks(pl.col(ID_COLUMN), max_id_length).fill_null(False)
    return checked.select(mask.alias(column) for column, mask in breaks.items()).to_dict()


def bad_values_sentence(frame: pl.DataFrame, source: DatabaseSource, fallback: str,
                        max_id_length: int = MAX_ID_LENGTH) -> str:
    """The table's bad rows in one sentence: how many, which clients, and the first bad value."""
    masks = bad_value_masks(frame, max_id_length)
    any_bad = pl.Series([False] * frame.height)
    for mask in masks.values():
        any_bad = any_bad | mask
    rows = any_bad.arg_true()
    if rows.len() == 0:
        return fallback
    ids = normalise_ids(frame[ID_COLUMN].cast(pl.String)).gather(rows).to_list()
    named = [f'"{printable_name(i if len(i) <= SHOWN_ID else i[:SHOWN_ID - 1] + chr(0x2026))}"' if i else "(no id)"
             for i in ids[:SHOWN_CLIENTS]]
    more = f" and {len(ids) - SHOWN_CLIENTS} more" if len(ids) > SHOWN_CLIENTS else ""
    first = int(rows[0])
    column = next(c for c, mask in masks.items() if mask[first])
    value = shown(frame[column][first])
    noun = "row has" if len(ids) == 1 else "rows have"
    wanted = expected(column, LABELS_OPTIONAL) + (f" of at most {max_id_length} characters, with no control character"
                                                  if column == ID_COLUMN else "")
    return (f"{source.subject} is not ingested: {len(ids)} {noun} bad values (clients {', '.join(named)}{more}); "
            f'client {named[0]} has {value} in column "{column}", expected {wanted}.')


def validated(frame: pl.DataFrame, source: DatabaseSource, max_id_length: int = MAX_ID_LENGTH) -> pl.DataFrame:
    """The snapshot checked as a CSV file is; a bad value holds the whole table back (DatabaseError)."""
    if frame.height == 0:
        raise DatabaseError(f"{source.subject} has no rows.")
    try:
        return validate_client_frame(frame, source.subject, require_target=LABELS_OPTIONAL,
                                     max_id_length=max_id_length)
    except DataError as exc:  # the CSV path's rule decides; the sentence counts and names the rows
        raise DatabaseError(bad_values_sentence(frame, source, str(exc), max_id_length)) from None


# --- New rows ----------------------------------------------------------------------------------
def rows_not_in(frame: pl.DataFrame, previous: pl.DataFrame) -> pl.DataFrame:
    """The rows of `frame` that are not rows of `previous` (every column compared; order kept)."""
    columns = [c for c in frame.columns if c in previous.columns]
    previous = previous.select(pl.col(c).cast(frame[c].dtype) for c in columns)
    return frame.join(previous.unique(), on=columns, how="anti", nulls_equal=True, maintain_order="left")


def previous_snapshot(config: Config, known: dict[str, Any] | None) -> pl.DataFrame | None:
    """The rows of the recorded snapshot: the deployed tablesnapshot.csv (checked against the manifest), or, for
    a release from before snapshots were deployed, the output folder's copy if its sha256 is the recorded one."""
    if known is None:
        return None
    for path in (config.prod_deployment_folder / CURRENT_LINK / TABLE_SNAPSHOT, config.output_folder / TABLE_SNAPSHOT):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() == known.get("snapshot_sha256"):
            return pl.read_csv(data, infer_schema=False)
    return None


def deletion_held_back(source: DatabaseSource, known: dict[str, Any] | None, rows_now: int) -> str | None:
    """Why a read with many rows gone must not be ingested (one sentence), or None.

    More than input_database.max_deleted_share of the rows last ingested gone is held back, as a file
    source holds back a removed file, until the operator allows it (--allow-removed).
    """
    before = ((known or {}).get("state") or {}).get("rows")
    if not isinstance(before, int) or before <= 0 or rows_now >= before:
        return None
    gone = before - rows_now
    if gone / before <= source.max_deleted_share:
        return None
    return (f"Nothing was ingested: {source.label} holds {rows_now:,} rows, {gone:,} fewer than the {before:,} "
            f"ingested before ({gone / before:.0%}, more than input_database.max_deleted_share "
            f"{source.max_deleted_share:.0%}), so the rows stay in use (finaldata.csv and the deployment are "
            f"unchanged); to drop them, run {DROP_COMMAND}.")


def recent_hashes(raw: pl.DataFrame) -> tuple[str, int]:
    """The hashes of the rows within the look-back of the table's max as the record keeps them, one text in
    increasing order (riskcore.data.db_changes.recorded_hashes), and their sum. After a bulk load that is
    every row."""
    if IN_RECENT not in raw.columns:
        return "", 0
    hashes = raw[ROW_HASH].filter(raw[IN_RECENT] == 1).sort()
    return hashes.cast(pl.String).str.join(" ").item(), int(hashes.cast(pl.Int128).sum())


def read_table(source: DatabaseSource, record: dict[str, Any] | None, previous: pl.DataFrame | None = None,
               render_snapshot: bool = True, max_id_length: int = MAX_ID_LENGTH) -> TableRead:
    """Read one snapshot of the table, validated, and its rows that are new since `record` (an ingestion record).

    `previous`: the rows of the recorded snapshot, for a table without a watermark column.
    `render_snapshot` False leaves the snapshot's CSV to the caller.
    """
    known = recorded_state(record, source)
    since = known["state"]["watermark"]["max"] if known and source.watermark_column else None
    recorded = (recorded_hashes(known["state"]) if known else None) or []
    with connect(source) as connection:
        connection.begin_snapshot()
        present = connection.columns(source.table)
        columns = contract_columns(present, source)
        state = table_state(connection, columns, since=since, known=known is not None)
        marks = {}
        if source.watermark_column:  # a record from before the look-back has no hashes: no margin below it then
            marks = look_back_sql(connection, columns, since, state.watermark_max,
                                  lookback=since is None or "recent" in known["state"])
        raw = fetch(connection, {column: present[column] for column in columns}, marks)
    window = None
    if source.watermark_column:
        text, total = recent_hashes(raw)
        state = replace(state, recent=text, recent_sum=total)
        if IN_WINDOW in raw.columns:
            window = pl.when(raw[IN_WINDOW] == 1).then(raw[ROW_HASH].cast(pl.String))
            window = raw.select(window.alias(ROW_HASH))[ROW_HASH]
    raw = raw.drop(list(marks))
    state = replace(state, rows=raw.height)
    frame = validated(raw, source, max_id_length)
    if known is None:
        new = frame
    elif source.watermark_column:
        if window is None:  # nothing recorded above: every row with a watermark is new
            new = frame.tail(state.new_rows or 0)
        else:  # the rows above the recorded watermark, and the late ones below it not seen before
            fresh = window.is_not_null() & ~window.is_in(recorded)
            new = frame.filter(fresh)
            state = replace(state, new_rows=int(fresh.sum()))
    elif previous is not None:
        changed = rows_not_in(raw, previous)
        new = validated(changed, source, max_id_length) if changed.height else frame.clear()
    else:
        new = frame
    return TableRead(source, raw, frame, new, state, as_csv(raw) if render_snapshot else b"")


def ingest_table(config: Config, record: dict[str, Any] | None, keep_snapshot: bool = True,
                 allow_removed: bool = False) -> IngestionResult:
    """Read the configured table into an IngestionResult (one row per client) and keep its snapshot.

    `record`: the deployed ingestion record (None when nothing is deployed). `keep_snapshot`
    False (a dry run) writes nothing. Many rows gone since `record` hold the ingestion back (HeldBack)
    unless `allow_removed`.
    """
    source = config.input_database
    known = recorded_state(record, source)
    read = read_table(source, record, previous_snapshot(config, known) if not source.watermark_column else None,
                      render_snapshot=False, max_id_length=config.max_id_length)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The snapshot's CSV (for its sha256) renders while the rows are merged: 0.06 s less of the
        # 0.22 s the two take one after the other on 1M rows (2 busy cores).
        snapshot = pool.submit(as_csv, read.raw)
        frame = with_label_column(read.frame)
        merged = merge_frames([frame])
        merged_new = None if read.new.height == frame.height else merge_frames([with_label_column(read.new)])
        read.snapshot = snapshot.result()
    result = FileResult(source.table, read.snapshot_sha256, rows_read=frame.height, rows_kept=merged.kept[0],
                        duplicates_dropped=merged.duplicates[0], superseded=merged.superseded[0],
                        labelled=TARGET in read.frame.columns, read_at=read.read_at, rows_new=read.new.height)
    ingested = IngestionResult(data=merged.data, files=[result], conflicting=merged.conflicting,
                               conflict_examples=merged.conflict_examples, left_after_staying=merged.left_after_staying,
                               only_new=None if merged_new is None else merged_new.data,
                               only_new_labelled=None if merged_new is None else merged_new.labelled_latest,
                               database=read.record(), labelled_latest=merged.labelled_latest)
    reason = deletion_held_back(source, known, read.raw.height)
    if reason is not None and not allow_removed:
        raise HeldBack(reason, ingested)
    if reason is not None:
        ingested.removed.append({"rows": known["state"]["rows"] - read.raw.height, "removed_at": utc_now(),
                                 "by": operator()})
    if keep_snapshot and not source.watermark_column:  # the next read finds the changed rows against it
        with atomic_path(config.output_folder / TABLE_SNAPSHOT) as tmp:
            tmp.write_bytes(read.snapshot)
    return ingested
