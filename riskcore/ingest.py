"""Ingestion: every CSV of the input folder validated, merged, deduplicated and recorded."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from riskcore.config import Config
from riskcore.contract import (
    COLUMNS,
    FINAL_DATA,
    ID_COLUMN,
    INGESTED_FILES,
    INGESTION_RECORD,
    DataError,
)
from riskcore.faults import checkpoint
from riskcore.files import atomic_path, atomic_write_json, atomic_write_text, sha256_bytes, sha256_file, utc_now
from riskcore.inputs import input_digest, list_input_files
from riskcore.schema import MAX_INPUT_BYTES, parse_csv_bytes

log = logging.getLogger(__name__)

DIGIT_LIMITS = tuple(10**k for k in range(1, 19))  # a count >= 10**k has more than k digits


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
    """The merged frame and the record of how it was made."""

    frame: object  # pandas.DataFrame
    files: list[FileResult] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def read_candidate(path: Path, folder: Path) -> tuple[bytes, object]:
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
    return data, parse_csv_bytes(data, path.name)


def merge_frames(named_frames: list[tuple[str, object]]) -> tuple[object, list[int]]:
    """Concatenate frames in order and drop exact duplicate rows (first one kept).

    Returns the merged frame and, per input frame, how many of its rows were kept.
    """
    import numpy as np
    import pandas as pd

    if not named_frames:
        return pd.DataFrame(columns=list(COLUMNS)), []
    merged = pd.concat([frame for _, frame in named_frames], ignore_index=True)
    origin = np.repeat(np.arange(len(named_frames)), [len(frame) for _, frame in named_frames])
    keep = ~merged.duplicated(keep="first").to_numpy()
    kept_counts = np.bincount(origin[keep], minlength=len(named_frames)).tolist()
    return merged.loc[keep].reset_index(drop=True), kept_counts


WRITE_ROWS = 1_000_000  # rows of finaldata.csv formatted at a time


def csv_lines(frame):
    """The CSV lines of a validated frame's rows (uint8), byte for byte what DataFrame.to_csv writes.

    Whole columns are formatted at once with numpy: to_csv formats value by value, which took
    longer than reading, validating and deduplicating millions of rows together. None when an id
    would need quoting or a column is not whole numbers >= 0: to_csv writes such a frame.
    """
    import numpy as np

    if list(frame.columns) != list(COLUMNS):
        return None
    numbers = [frame[column].to_numpy() for column in COLUMNS[1:]]
    if any(values.dtype != np.int64 or (len(values) and values.min() < 0) for values in numbers):
        return None
    ids = frame[ID_COLUMN].tolist()
    joined = "\0".join(ids) + "\0"
    if joined.count("\0") != len(ids) or any(ch in joined for ch in ',"\r\n'):
        return None
    raw = np.frombuffer(joined.encode("utf-8"), dtype=np.uint8)
    id_ends = np.flatnonzero(raw == 0)
    id_lengths = np.diff(id_ends, prepend=-1) - 1
    digits = [np.searchsorted(DIGIT_LIMITS, values, side="right") + 1 for values in numbers]
    line_lengths = id_lengths + sum(digits) + len(numbers) + 1  # the commas and the newline
    line_starts = np.cumsum(line_lengths) - line_lengths
    out = np.empty(int(line_lengths.sum()), dtype=np.uint8)
    # Each id is copied to the start of its line with the NUL after it, which lands where the
    # first comma goes.
    out[np.repeat(line_starts - (id_ends - id_lengths), id_lengths + 1) + np.arange(len(raw))] = raw
    position = line_starts + id_lengths
    for values, count in zip(numbers, digits, strict=True):
        out[position] = ord(",")
        place, rest = position + count, values  # the last digit first
        while len(place):
            out[place] = rest % 10 + ord("0")
            rest = rest // 10
            more = rest > 0
            place, rest = place[more] - 1, rest[more]
        position = position + count + 1
    out[position] = ord("\n")
    return out


def write_final_data(frame, path: Path) -> str:
    """Write the merged rows as a CSV file (with the header); return its sha256."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "wb") as out:
        header = (",".join(map(str, frame.columns)) + "\n").encode("utf-8")
        out.write(header)
        digest.update(header)
        for begin in range(0, len(frame), WRITE_ROWS):
            lines = csv_lines(frame.iloc[begin:begin + WRITE_ROWS])
            if lines is None:
                break
            out.write(lines.data)
            digest.update(lines.data)
        else:
            return digest.hexdigest()
    frame.to_csv(path, index=False, lineterminator="\n")
    return sha256_file(path)


def ingest_folder(folder: Path) -> IngestionResult:
    """Read, validate and merge every CSV in `folder` (pure apart from reading it)."""
    candidates, ignored = list_input_files(folder)
    for name in ignored:
        log.info("ignoring %r: not a CSV file", name)
    good: list[tuple[str, object]] = []
    results, rejected = [], []
    for path in candidates:
        try:
            data, frame = read_candidate(path, folder)
        except DataError as exc:
            rejected.append(Rejection(path.name, str(exc), input_digest(path, folder)))
            log.error("rejected %s", exc)
            continue
        good.append((path.name, frame))
        results.append(FileResult(path.name, sha256_bytes(data), rows_read=len(frame),
                                  read_at=utc_now()))
    merged, kept = merge_frames(good)
    for result, rows_kept in zip(results, kept, strict=True):
        result.rows_kept = rows_kept
        result.duplicates_dropped = result.rows_read - rows_kept
        log.info("ingested %s: %d rows read, %d kept, %d duplicates dropped",
                 result.name, result.rows_read, result.rows_kept, result.duplicates_dropped)
    return IngestionResult(frame=merged, files=results, rejected=rejected, ignored=ignored)


def ingestion_record(result: IngestionResult, folder: Path, final_sha256: str | None) -> dict:
    """The JSON record of one ingestion."""
    return {
        "ingested_at": utc_now(),
        "input_folder": folder.name,
        "files": [asdict(f) for f in result.files],
        "rejected": [asdict(r) for r in result.rejected],
        "ignored": result.ignored,
        "rows_read": sum(f.rows_read for f in result.files),
        "rows_kept": len(result.frame),
        "final_data_sha256": final_sha256,
    }


def write_outputs(result: IngestionResult, config: Config) -> None:
    """Write finaldata.csv, ingestedfiles.txt and the record, each atomically."""
    out = config.output_folder
    with atomic_path(out / FINAL_DATA) as tmp:
        final_sha = write_final_data(result.frame, tmp)
    checkpoint("ingestion-wrote-data")
    names = "".join(f"{f.name}\n" for f in result.files)
    atomic_write_text(out / INGESTED_FILES, names)
    checkpoint("ingestion-wrote-names")
    atomic_write_json(out / INGESTION_RECORD,
                               ingestion_record(result, config.input_folder, final_sha))


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
             len(result.frame), len(result.files), len(result.rejected))
    return result
