"""Ingest every CSV in input_folder_path into one deduplicated training set.

Reads:  input_folder_path/*.csv
Writes: output_folder_path/finaldata.csv       the merged rows, exact duplicates dropped
        output_folder_path/ingestedfiles.txt   the ingested file names, one per line
        output_folder_path/ingestionrecord.json per file: rows read/kept, duplicates, sha256;
                                                per rejected file: the reason

A file that breaks the data contract is rejected with one sentence, is not recorded as
ingested (so it is picked up again once fixed), and the good files are still ingested; the
exit status is then 1. Example: python ingestion.py --config config.json
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import riskcore
from riskcore import DataError

log = logging.getLogger("ingestion")


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
    if size > riskcore.MAX_INPUT_BYTES:
        raise DataError(f"{path.name} is {size / 2**20:.0f} MiB, above the "
                        f"{riskcore.MAX_INPUT_BYTES / 2**20:.0f} MiB limit for one input file.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path.name} cannot be read ({exc.strerror or exc.__class__.__name__}).") from None
    # The hash and the rows come from the same bytes, so a file being rewritten meanwhile is
    # recorded exactly as it was parsed.
    return data, riskcore.parse_csv_bytes(data, path.name)


def merge_frames(named_frames: list[tuple[str, object]]) -> tuple[object, list[int]]:
    """Concatenate frames in order and drop exact duplicate rows (first one kept).

    Returns the merged frame and, per input frame, how many of its rows were kept.
    """
    import numpy as np
    import pandas as pd

    if not named_frames:
        return pd.DataFrame(columns=list(riskcore.COLUMNS)), []
    merged = pd.concat([frame for _, frame in named_frames], ignore_index=True)
    origin = np.repeat(np.arange(len(named_frames)), [len(frame) for _, frame in named_frames])
    keep = ~merged.duplicated(keep="first").to_numpy()
    kept_counts = np.bincount(origin[keep], minlength=len(named_frames)).tolist()
    return merged.loc[keep].reset_index(drop=True), kept_counts


def ingest_folder(folder: Path) -> IngestionResult:
    """Read, validate and merge every CSV in `folder` (pure apart from reading it)."""
    candidates, ignored = riskcore.list_input_files(folder)
    for name in ignored:
        log.info("ignoring %r: not a CSV file", name)
    good: list[tuple[str, object]] = []
    results, rejected = [], []
    for path in candidates:
        try:
            data, frame = read_candidate(path, folder)
        except DataError as exc:
            rejected.append(Rejection(path.name, str(exc), riskcore.input_digest(path, folder)))
            log.error("rejected %s", exc)
            continue
        good.append((path.name, frame))
        results.append(FileResult(path.name, riskcore.sha256_bytes(data), rows_read=len(frame),
                                  read_at=riskcore.utc_now()))
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
        "ingested_at": riskcore.utc_now(),
        "input_folder": folder.name,
        "files": riskcore.as_plain(result.files),
        "rejected": riskcore.as_plain(result.rejected),
        "ignored": result.ignored,
        "rows_read": sum(f.rows_read for f in result.files),
        "rows_kept": len(result.frame),
        "final_data_sha256": final_sha256,
    }


def write_outputs(result: IngestionResult, config: riskcore.Config) -> None:
    """Write finaldata.csv, ingestedfiles.txt and the record, each atomically."""
    out = config.output_folder
    with riskcore.atomic_path(out / riskcore.FINAL_DATA) as tmp:
        result.frame.to_csv(tmp, index=False, lineterminator="\n")
        final_sha = riskcore.sha256_file(tmp)
    riskcore.checkpoint("ingestion-wrote-data")
    names = "".join(f"{f.name}\n" for f in result.files)
    riskcore.atomic_write_text(out / riskcore.INGESTED_FILES, names)
    riskcore.checkpoint("ingestion-wrote-names")
    riskcore.atomic_write_json(out / riskcore.INGESTION_RECORD,
                               ingestion_record(result, config.input_folder, final_sha))


def run(config: riskcore.Config) -> IngestionResult:
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


def main(argv: list[str] | None = None) -> int:
    """Command line: ingest the input folder named in the config."""
    args = riskcore.argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    riskcore.setup_logging(args.verbose)

    def body() -> int:
        config = riskcore.load_config(args.config)
        result = run(config)
        return riskcore.EXIT_FAILED if result.rejected else riskcore.EXIT_OK

    return riskcore.run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
