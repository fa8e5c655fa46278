"""Ingestion: every CSV of the input folder validated, merged, deduplicated and recorded."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import polars as pl

from riskcore.config import Config
from riskcore.contract import FINAL_DATA, INGESTED_FILES, INGESTION_RECORD, DataError
from riskcore.faults import checkpoint
from riskcore.files import atomic_path, atomic_write_json, atomic_write_text, sha256_bytes, sha256_file, utc_now
from riskcore.inputs import input_digest, list_input_files
from riskcore.schema import CLIENT_SCHEMA, MAX_INPUT_BYTES, read_client_frame, to_pandas

log = logging.getLogger(__name__)


@dataclass
class FileResult:
    """What happened to one input file."""

    name: str
    sha256: str
    rows_read: int = 0
    rows_kept: int = 0
    duplicates_dropped: int = 0
    read_at: str = ""


@dataclass
class Rejection:
    name: str
    reason: str
    sha256: str | None = None


@dataclass
class IngestionResult:
    """The merged rows and the record of how they were made."""

    data: pl.DataFrame
    files: list[FileResult] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @cached_property
    def frame(self):
        """The merged rows as the pandas DataFrame the course's functions take (made on first use)."""
        return to_pandas(self.data)


def read_candidate(path: Path, folder: Path) -> tuple[bytes, pl.DataFrame]:
    """Read one candidate file's bytes and validated frame, or raise DataError."""
    if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
        raise DataError(f"{path.name} is a link pointing outside the input folder.")
    if not path.is_file():
        raise DataError(f"{path.name} is not a regular file.")
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        raise DataError(f"{path.name} is {size / 2**20:.0f} MiB, above the "
                        f"{MAX_INPUT_BYTES / 2**20:.0f} MiB limit for one input file.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path.name} cannot be read ({exc.strerror or exc.__class__.__name__}).") from None
    # The hash and the rows come from the same bytes, so a file being rewritten meanwhile is
    # recorded exactly as it was parsed.
    return data, read_client_frame(data, path.name)


def first_occurrences(frame: pl.DataFrame) -> pl.Series:
    """True for each row that does not repeat an earlier row exactly."""
    # Only rows whose hash repeats can be duplicates; the exact comparison runs on those alone.
    # On 10 files x 1M rows with 10% duplicates this took 1.9 s and 0.8 GB above the frames,
    # where one exact pass over every row took 2.6 s and 2.3 GB (polars 2.1, 2 cores).
    suspect = frame.hash_rows().is_duplicated()
    rows = suspect.arg_true()
    first = frame[rows].select(pl.struct(frame.columns).is_first_distinct()).to_series()
    return (~suspect).scatter(rows.filter(first), True)


def merge_frames(named_frames: list[tuple[str, pl.DataFrame]]) -> tuple[pl.DataFrame, list[int]]:
    """Stack validated frames in order and drop exact duplicate rows (the first one kept, order kept).

    Returns the merged frame and, per input frame, how many of its rows were kept.
    """
    if not named_frames:
        return pl.DataFrame(schema=CLIENT_SCHEMA), []
    stacked = pl.concat([frame for _, frame in named_frames], rechunk=False)
    first = first_occurrences(stacked)
    kept, start = [], 0
    for _, frame in named_frames:
        kept.append(int(first.slice(start, frame.height).sum()))
        start += frame.height
    return stacked.filter(first), kept


def ingest_folder(folder: Path) -> IngestionResult:
    """Read, validate and merge every CSV in `folder` (pure apart from reading it)."""
    candidates, ignored = list_input_files(folder)
    for name in ignored:
        log.info("ignoring %r: not a CSV file", name)
    good: list[tuple[str, pl.DataFrame]] = []
    results, rejected = [], []
    for path in candidates:
        try:
            data, frame = read_candidate(path, folder)
        except DataError as exc:
            rejected.append(Rejection(path.name, str(exc), input_digest(path, folder)))
            log.error("rejected %s", exc)
            continue
        good.append((path.name, frame))
        results.append(FileResult(path.name, sha256_bytes(data), rows_read=frame.height,
                                  read_at=utc_now()))
    merged, kept = merge_frames(good)
    for result, rows_kept in zip(results, kept, strict=True):
        result.rows_kept = rows_kept
        result.duplicates_dropped = result.rows_read - rows_kept
        log.info("ingested %s: %d rows read, %d kept, %d duplicates dropped",
                 result.name, result.rows_read, result.rows_kept, result.duplicates_dropped)
    return IngestionResult(data=merged, files=results, rejected=rejected, ignored=ignored)


def ingestion_record(result: IngestionResult, folder: Path, final_sha256: str | None) -> dict:
    """The JSON record of one ingestion."""
    return {
        "ingested_at": utc_now(),
        "input_folder": folder.name,
        "files": [asdict(f) for f in result.files],
        "rejected": [asdict(r) for r in result.rejected],
        "ignored": result.ignored,
        "rows_read": sum(f.rows_read for f in result.files),
        "rows_kept": result.data.height,
        "final_data_sha256": final_sha256,
    }


def write_outputs(result: IngestionResult, config: Config) -> None:
    """Write finaldata.csv, ingestedfiles.txt and the record, each atomically."""
    out = config.output_folder
    with atomic_path(out / FINAL_DATA) as tmp:
        result.data.write_csv(tmp)
        final_sha = sha256_file(tmp)
    checkpoint("ingestion-wrote-data")
    names = "".join(f"{f.name}\n" for f in result.files)
    atomic_write_text(out / INGESTED_FILES, names)
    checkpoint("ingestion-wrote-names")
    atomic_write_json(out / INGESTION_RECORD, ingestion_record(result, config.input_folder, final_sha))


def ingest(config: Config) -> IngestionResult:
    """Ingest the configured input folder and write the outputs.

    Nothing is written when no file could be ingested, so earlier outputs are never lost.
    """
    result = ingest_folder(config.input_folder)
    if not result.files:
        reasons = "; ".join(r.reason for r in result.rejected) or "it holds no CSV file"
        raise DataError(f"Nothing ingested from {config.input_folder}: {reasons}")
    write_outputs(result, config)
    log.info("wrote %s: %d rows from %d files (%d rejected)", config.final_data_file,
             result.data.height, len(result.files), len(result.rejected))
    return result
