"""Rows as snapshots of a client: the ingestion's result types and the merge into one row per client.

A client's latest snapshot is its last row, inputs taken in order and each from top to bottom;
exact duplicates and superseded snapshots are counted per input. A client's labels, in that order,
tell its story: stayed (0) in earlier snapshots and left (1) in a later one is how a client leaves,
counted as information (left_after_staying); a snapshot saying it stayed after one saying it left
is a genuine conflict (conflicting), since leaving is final in the data's terms: one of the two
labels is wrong, or the client came back under the same id. Ordering, not files, decides, so a
database table or a file holding a client's history row after row is read the same way. Shared by
the CSV folder (riskcore.data.folder_ingest) and a database table (riskcore.data.db_ingest).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import polars as pl

from riskcore.contract import ID_COLUMN, KNOWN_COLUMNS, REVENUE, TARGET, DataError
from riskcore.data.client_csv import to_pandas
from riskcore.data.validation import CLIENT_SCHEMA, REVENUE_TYPE

CONFLICT_EXAMPLES = 10  # clients with conflicting labels named in the record (the first by id); all are counted


@dataclass
class FileResult:
    """What happened to one input file: every row read is kept, a duplicate, or superseded."""

    name: str
    sha256: str
    rows_read: int = 0
    rows_kept: int = 0
    duplicates_dropped: int = 0
    superseded: int = 0
    labelled: bool = True  # the file has the "exited" column
    new: bool = True  # new or changed since production processed it
    read_at: str = ""
    rows_new: int | None = None  # rows not in the version production processed (all of a new file's)


@dataclass
class Rejection:
    name: str
    reason: str
    sha256: str | None = None


@dataclass
class Merged:
    """Validated frames merged into one row per client, and what became of each frame's rows."""

    data: pl.DataFrame
    kept: list[int]
    duplicates: list[int]
    superseded: list[int]
    conflicting: int  # clients with a labelled snapshot saying 0 (stayed) after one saying 1 (left)
    conflict_examples: list[str]  # the first few of them, by id
    left_after_staying: int = 0  # clients whose labelled snapshots say 0, then 1: they left since
    # Each client's latest labelled snapshot, when some client's latest snapshot is not labelled
    # (this month's export): what training takes. None when every latest snapshot is labelled.
    labelled_latest: pl.DataFrame | None = None


@dataclass
class IngestionResult:
    """The merged rows and the record of how they were made."""

    data: pl.DataFrame
    files: list[FileResult] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    conflicting: int = 0  # clients with a labelled snapshot saying 0 (stayed) after one saying 1 (left)
    conflict_examples: list[str] = field(default_factory=list)
    left_after_staying: int = 0  # clients whose labelled snapshots say 0, then 1: they left since
    # The rows of the new or changed files alone, merged the same way; None when every file is new.
    only_new: pl.DataFrame | None = None
    only_new_labelled: pl.DataFrame | None = None  # their Merged.labelled_latest
    removed: list[dict[str, str]] = field(default_factory=list)
    database: dict | None = None  # a database table's part of the record (riskcore.data.db_ingest)
    labelled_latest: pl.DataFrame | None = None  # Merged.labelled_latest: the training rows, when they differ
    row_digests: dict[str, pl.Series] = field(default_factory=dict)  # sha256 -> a file's row digests

    @property
    def new_data(self) -> pl.DataFrame:
        """One row per client of the files that are new or changed in this run: what the drift check takes."""
        return self.data if self.only_new is None else self.only_new

    @property
    def new_labelled(self) -> pl.DataFrame | None:
        """Each client's latest labelled snapshot among the new rows, when a new latest snapshot is unlabelled; else
        None. A labelled file and an unlabelled export of its clients in one run: the labels the drift check keeps."""
        return self.labelled_latest if self.only_new is None else self.only_new_labelled

    @cached_property
    def frame(self):
        """The merged rows as the pandas DataFrame the course's functions take (made on first use)."""
        return to_pandas(self.data)

    @cached_property
    def new_frame(self):
        """new_data as pandas (made on first use)."""
        return self.frame if self.only_new is None else to_pandas(self.only_new)


DROP_COMMAND = "python fullprocess.py --allow-removed (or python ingestion.py --allow-removed)"


class HeldBack(DataError):
    """A source production ingested is broken, gone or shrunk: nothing was ingested, so nothing of it is lost."""

    def __init__(self, message: str, result: IngestionResult) -> None:
        super().__init__(message)
        self.result = result


def first_occurrences(frame: pl.DataFrame, hashes: pl.Series | None = None) -> pl.Series:
    """True for each row that does not repeat an earlier row exactly."""
    # Only rows whose hash repeats can be duplicates; the exact comparison runs on those alone.
    # On 10 files x 1M rows with 10% duplicates this took 1.9 s and 0.8 GB above the frames,
    # where one exact pass over every row took 2.6 s and 2.3 GB (polars 2.1, 2 cores).
    hashes = frame.hash_rows() if hashes is None else hashes
    suspect = hashes.is_duplicated()
    rows = suspect.arg_true()
    first = frame[rows].select(pl.struct(frame.columns).is_first_distinct()).to_series()
    return (~suspect).scatter(rows.filter(first), True)


@dataclass
class Clients:
    """Per client of stacked rows: the row of its last snapshot, and what its labels say in order."""

    last: pl.Series  # True at each client's last row
    count: int
    conflicting: int  # clients with a labelled snapshot saying 0 (stayed) after one saying 1 (left)
    conflict_examples: list[str]
    left_after_staying: int  # clients whose labelled snapshots say 0, then 1


def clients_of(frame: pl.DataFrame) -> Clients:
    """One grouping by id gives each client's last row and where its labels say it stayed, then left.

    One pass: each client's last row, and the rows of its last "stayed" and first "left" labels, which
    tell the story of its labels in order (1.0 s on 10M rows for the last rows alone, where reversed
    is_first_distinct (1.2 s) and a second grouping for the labels (0.5 s) each hashed every id again;
    polars 2.1, 2 busy cores).
    """
    row, label = pl.col("_row"), pl.col(TARGET)
    summary = (frame.lazy().with_row_index("_row").group_by(ID_COLUMN)
               .agg(row.max().alias("last"), row.filter(label == 0).max().alias("last_stayed"),
                    row.filter(label == 1).min().alias("first_left"))
               .collect())
    last = pl.repeat(False, frame.height, eager=True).scatter(summary["last"], True)
    both = summary.filter(pl.col("last_stayed").is_not_null() & pl.col("first_left").is_not_null())
    conflicting = both.filter(pl.col("last_stayed") > pl.col("first_left"))[ID_COLUMN]
    return Clients(last, summary.height, len(conflicting), conflicting.bottom_k(CONFLICT_EXAMPLES).sort().to_list(),
                   both.height - len(conflicting))


def latest_snapshots(frame: pl.DataFrame, hashes: pl.Series, distinct: pl.Series, last: pl.Series) -> pl.Series:
    """True for each client's one kept row: the first row holding the values of the client's last row.

    A row whose hash is one of the last rows' hashes is a candidate. Every client has one true
    candidate (equal values hash equally), so as many candidates as clients means no hash matched
    by accident; otherwise the values are compared exactly.
    """
    candidates = distinct & hashes.is_in(hashes.filter(last).implode())
    if candidates.sum() == last.sum():
        return candidates
    numbered = frame.with_row_index("_row")
    latest = frame.filter(last)
    rows = numbered.filter(candidates).join(latest, on=frame.columns, how="semi", nulls_equal=True)["_row"]
    return pl.repeat(False, frame.height, eager=True).scatter(rows, True)


def per_frame(mask: pl.Series, heights: list[int]) -> list[int]:
    """How many True values of `mask` fall in each consecutive slice of the given heights."""
    counts, start = [], 0
    for height in heights:
        counts.append(int(mask.slice(start, height).sum()))
        start += height
    return counts


def merge_frames(frames: list[pl.DataFrame]) -> Merged:
    """Stack validated frames in order and keep one row per client: its latest snapshot, order kept.

    Revenue in some frames only: the others' is unknown (empty); a client's revenue is its latest snapshot's.
    """
    if not frames:
        return Merged(pl.DataFrame(schema=CLIENT_SCHEMA), [], [], [], 0, [])
    stacked = pl.concat(with_revenue_column(frames), rechunk=False)
    heights = [frame.height for frame in frames]
    clients = clients_of(stacked)
    if clients.count == stacked.height:  # every client once: nothing to drop (the common case, and the cheap one)
        zeros = [0] * len(frames)
        return Merged(stacked, heights, zeros, list(zeros), 0, [], 0, labelled_latest_of(stacked, stacked))
    hashes = stacked.hash_rows()
    distinct = first_occurrences(stacked, hashes)
    kept = latest_snapshots(stacked, hashes, distinct, clients.last)
    data = stacked.filter(kept)
    return Merged(data, per_frame(kept, heights), per_frame(~distinct, heights),
                  per_frame(distinct & ~kept, heights), clients.conflicting, clients.conflict_examples,
                  clients.left_after_staying, labelled_latest_of(stacked, data))


def labelled_latest_of(stacked: pl.DataFrame, data: pl.DataFrame) -> pl.DataFrame | None:
    """Each client's latest labelled snapshot, when a latest snapshot (in `data`) is unlabelled; else None.

    An export of every client without labels must not erase what their earlier snapshots say.
    """
    if TARGET not in data.columns or data[TARGET].null_count() == 0:
        return None
    return merge_frames([stacked.filter(pl.col(TARGET).is_not_null())]).data


# --- New rows of a changed file: a multiset difference by content ----------------------------------
def row_digests(frame: pl.DataFrame) -> pl.Series:
    """A 64-bit digest of each row's values (seeded: equal rows, equal digests, in one polars version)."""
    return frame.hash_rows(seed=0)


def rows_not_in_digests(frame: pl.DataFrame, digests: pl.Series, previous: pl.Series) -> pl.DataFrame:
    """The rows of `frame` that the previous version (its row digests) did not hold, counted as a multiset.

    A row that occurs k times now and j times before is new k - j times (its last occurrences).
    """
    before = pl.DataFrame({"_digest": previous}).group_by("_digest").agg(pl.len().alias("_before"))
    numbered = frame.with_columns(digests.alias("_digest")).with_columns(
        pl.int_range(pl.len()).over("_digest").alias("_occurrence"))
    joined = numbered.join(before, on="_digest", how="left", maintain_order="left")
    new = joined.filter(pl.col("_occurrence") >= pl.col("_before").fill_null(0))
    return new.drop("_digest", "_occurrence", "_before")


def with_label_column(frame: pl.DataFrame) -> pl.DataFrame:
    """A validated frame with "exited", empty where the file had no labels (in contract order)."""
    if TARGET in frame.columns:
        return frame
    labelled = frame.with_columns(pl.lit(None, dtype=pl.Int64).alias(TARGET))
    return labelled.select(column for column in KNOWN_COLUMNS if column in labelled.columns)


def with_revenue_column(frames: list[pl.DataFrame]) -> list[pl.DataFrame]:
    """The frames as they are when none has revenue; else each with annual_revenue, empty where it had none."""
    if not any(REVENUE in frame.columns for frame in frames):
        return frames
    return [frame if REVENUE in frame.columns else frame.with_columns(pl.lit(None, dtype=REVENUE_TYPE).alias(REVENUE))
            for frame in frames]


# --- The folder ------------------------------------------------------------------------------
