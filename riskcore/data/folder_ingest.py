"""Ingestion: every CSV of the input folder validated and merged into one row per client, and recorded.

Rows are snapshots of a client. A client's latest snapshot is its last row, files read in name
order and each file from top to bottom; finaldata.csv holds that one row per client, where those
values first appear. Per file the record counts the rows read and kept, the exact duplicates
dropped and the snapshots superseded by a later one; clients whose labelled snapshots say they
stayed, then left, are counted as information (they left since), and clients with a snapshot saying
they stayed after one saying they left as conflicting labels (riskcore.data.snapshots). A file
without "exited" brings clients whose outcome is not known yet: their rows have an empty label in
finaldata.csv.

No ingested row is lost to a broken copy: when a file that production has ingested fails
validation, or is gone from the input folder, the whole ingestion is held back (HeldBack) and
nothing is written. Dropping a file's rows is the operator's decision (allow_removed), recorded in
the ingestion record as "removed".
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import polars as pl

from riskcore.config import Config
from riskcore.contract import (
    FINAL_DATA,
    INGESTED_FILES,
    INGESTION_RECORD,
    MAX_ID_LENGTH,
    ROW_DIGESTS,
    TARGET,
    TRAINING_DATA,
    DataError,
)
from riskcore.data.client_csv import MAX_INPUT_BYTES, read_client_frame
from riskcore.data.input_files import input_digest, list_input_files, printable_name
from riskcore.data.snapshots import (
    DROP_COMMAND,
    FileResult,
    HeldBack,
    IngestionResult,
    Rejection,
    merge_frames,
    row_digests,
    rows_not_in_digests,
    with_label_column,
)
from riskcore.faults import checkpoint
from riskcore.files import atomic_path, atomic_write_json, atomic_write_text, sha256_bytes, sha256_file, utc_now
from riskcore.formatting import plural
from riskcore.ops.new_data import NOTHING_PROCESSED, Processed
from riskcore.release.operator_state import operator

log = logging.getLogger(__name__)



def read_candidate(path: Path, folder: Path, max_id_length: int = MAX_ID_LENGTH) -> tuple[bytes, pl.DataFrame]:
    """Read one candidate file's bytes and validated frame, or raise DataError (naming it printably)."""
    name = printable_name(path.name)
    if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
        raise DataError(f"{name} is a link pointing outside the input folder.")
    if not path.is_file():
        raise DataError(f"{name} is not a regular file.")
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        raise DataError(f"{name} is {size / 2**20:.0f} MiB, above the "
                        f"{MAX_INPUT_BYTES / 2**20:.0f} MiB limit for one input file.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{name} cannot be read ({exc.strerror or exc.__class__.__name__}).") from None
    # The hash and the rows come from the same bytes, so a file being rewritten meanwhile is
    # recorded exactly as it was parsed. A file of clients only ("exited" missing) is accepted.
    return data, read_client_frame(data, name, require_target=False, max_id_length=max_id_length)


# --- Row digests: what a changed file held before ---------------------------------------------------
def digest_path(digests: Path, sha256: str) -> Path:
    """Where a file version's row digests are kept (by content; the digests are polars's, so its version too)."""
    return digests / f"{sha256}.polars-{pl.__version__}.u64"


def read_digests(digests: Path | None, sha256: str | None) -> pl.Series | None:
    if digests is None or sha256 is None:
        return None
    path = digest_path(digests, sha256)
    if not path.is_file():
        return None
    import numpy as np

    return pl.Series(np.fromfile(path, dtype="<u8"))


def write_digests(digests: Path, result: IngestionResult, keep: set[str]) -> None:
    """Keep the row digests of every file version ingested now, and of `keep`; drop the others."""
    digests.mkdir(parents=True, exist_ok=True)
    for sha, series in result.row_digests.items():
        path = digest_path(digests, sha)
        if not path.is_file():
            with atomic_path(path) as tmp:
                series.to_numpy().astype("<u8").tofile(tmp)
    wanted = {digest_path(digests, sha).name for sha in {*keep, *(f.sha256 for f in result.files)}}
    for path in digests.glob("*.u64"):
        if path.name not in wanted:
            path.unlink(missing_ok=True)


def new_rows_of(frame: pl.DataFrame, name: str, sha: str, previous: dict[str, str], digests: Path | None,
                digest: pl.Series) -> pl.DataFrame:
    """The rows of a new or changed file that production has not processed: all of a new file's, and
    those of a changed file that its processed version did not hold (appended or rewritten rows)."""
    before = read_digests(digests, previous.get(name))
    if before is None:
        if name in previous:
            log.info("%s changed, and the row digests of its earlier version are gone: every row counts as new",
                     printable_name(name))
        return frame
    new = rows_not_in_digests(frame, digest, before)
    gone = len(before) - (len(frame) - len(new))  # the earlier version's rows this one does not hold (a multiset)
    if gone > 0:
        log.warning("%s changed and no longer holds %s of the %s rows of its ingested version: their snapshots leave "
                    "finaldata.csv (a client they alone held leaves the call list)", printable_name(name),
                    f"{gone:,}", f"{len(before):,}")
    return new


# --- One row per client ----------------------------------------------------------------------
def ingest_folder(folder: Path, known: dict[str, set[str]] | None = None, previous: dict[str, str] | None = None,
                  digests: Path | None = None, max_id_length: int = MAX_ID_LENGTH) -> IngestionResult:
    """Read, validate and merge every CSV in `folder` (pure apart from reading it).

    `known`: name -> sha256s of the files production has processed; the others are new, and
    their new rows alone are merged again as the result's new_data. None: every file is new.
    `previous`: name -> sha256 of each file whose rows production holds; `digests`: the folder of
    their row digests, so a changed file's new rows are the rows its earlier version lacked.
    """
    candidates, ignored = list_input_files(folder)
    for name in ignored:
        log.info("ignoring %s: not a CSV file", printable_name(name))
    good: list[pl.DataFrame] = []
    new_parts: list[pl.DataFrame] = []
    digest_of: dict[str, pl.Series] = {}
    results, rejected = [], []
    for path in candidates:
        try:
            data, frame = read_candidate(path, folder, max_id_length)
        except DataError as exc:
            rejected.append(Rejection(path.name, str(exc), input_digest(path, folder)))
            log.error("rejected %s", exc)
            continue
        sha = sha256_bytes(data)
        labelled = TARGET in frame.columns
        frame = with_label_column(frame)
        good.append(frame)
        new = known is None or sha not in known.get(path.name, ())
        rows_new = 0
        if new:
            digest_of[sha] = row_digests(frame)
            part = new_rows_of(frame, path.name, sha, previous or {}, digests, digest_of[sha])
            new_parts.append(part)
            rows_new = part.height
        results.append(FileResult(path.name, sha, rows_read=frame.height, labelled=labelled, new=new,
                                  read_at=utc_now(), rows_new=rows_new))
    merged = merge_frames(good)
    for result, kept, duplicates, superseded in zip(results, merged.kept, merged.duplicates, merged.superseded,
                                                    strict=True):
        result.rows_kept, result.duplicates_dropped, result.superseded = kept, duplicates, superseded
        log.info("ingested %s: %d rows read, %d kept, %d duplicates dropped, %d superseded by a later snapshot%s",
                 printable_name(result.name), result.rows_read, kept, duplicates, superseded,
                 "" if result.labelled else " (no labels yet)")
    if merged.left_after_staying:
        log.info("%s since an earlier labelled snapshot, where they had stayed",
                 plural(merged.left_after_staying, "client left", "clients left"))
    if merged.conflicting:
        log.warning("%s a labelled snapshot saying they stayed after one saying they left (the latest is kept), "
                    "e.g. %s",
                    plural(merged.conflicting, "client has", "clients have"),
                    ", ".join(map(repr, merged.conflict_examples[:3])))
    only_new = only_new_labelled = None
    if not all(result.new and result.rows_new == result.rows_read for result in results):
        merged_new = merge_frames(new_parts)
        only_new, only_new_labelled = merged_new.data, merged_new.labelled_latest
    return IngestionResult(data=merged.data, files=results, rejected=rejected, ignored=ignored,
                           conflicting=merged.conflicting, conflict_examples=merged.conflict_examples,
                           left_after_staying=merged.left_after_staying,
                           only_new=only_new, only_new_labelled=only_new_labelled,
                           labelled_latest=merged.labelled_latest, row_digests=digest_of)


# --- Holding back: nothing production ingested is lost to a broken or missing copy ----------------
def missing_files(result: IngestionResult, processed: Processed) -> list[str]:
    """Files whose rows production holds that are no longer in the input folder."""
    if not processed.same_input_folder:
        return []  # another folder's files (the course's practice data) are not this folder's to lose
    present = {f.name for f in result.files} | {r.name for r in result.rejected}
    return sorted(name for name in processed.ingested if name not in present)


def _names(names: list[str], singular: str, plural: str) -> str:
    return ", ".join(names) + (singular if len(names) == 1 else plural)


def hold_back_reason(result: IngestionResult, processed: Processed, allow_removed: bool, folder: Path) -> str | None:
    """Why this ingestion must not be written (one sentence), or None when it may."""
    broken = [r for r in result.rejected if processed.same_input_folder and r.name in processed.ingested]
    if broken:
        reasons = "; ".join(r.reason.rstrip(".") for r in broken)
        names = _names([r.name for r in broken], " was", " were")
        return (f"Nothing was ingested: {reasons}; {names} ingested before, so the earlier rows stay in use "
                "(finaldata.csv and the deployment are unchanged) until a good version replaces the file.")
    gone = missing_files(result, processed)
    if gone and not allow_removed:
        names = _names(gone, " was ingested before and is", " were ingested before and are")
        return (f"Nothing was ingested: {names} no longer in {folder}, so the rows stay in use (finaldata.csv and "
                f"the deployment are unchanged); to drop them, run {DROP_COMMAND}.")
    return None


def ingestion_record(result: IngestionResult, folder: Path | None, final_sha256: str | None) -> dict:
    """The JSON record of one ingestion."""
    return {
        "ingested_at": utc_now(),
        "input_folder": folder.name if folder is not None else None,
        **({"database": result.database} if result.database is not None else {}),
        "files": [asdict(f) for f in result.files],
        "rejected": [asdict(r) for r in result.rejected],
        "ignored": result.ignored,
        "removed": result.removed,
        "rows_read": sum(f.rows_read for f in result.files),
        "rows_kept": result.data.height,
        "duplicates_dropped": sum(f.duplicates_dropped for f in result.files),
        "superseded": sum(f.superseded for f in result.files),
        "unlabelled_rows": result.data[TARGET].null_count(),
        "rows_new": sum(f.rows_new or 0 for f in result.files),
        "conflicting_labels": result.conflicting,
        "conflicting_label_clients": result.conflict_examples,
        "left_after_staying": result.left_after_staying,
        "final_data_sha256": final_sha256,
    }


def write_training_data(result: IngestionResult, out: Path) -> dict | None:
    """trainingdata.csv: each client's latest labelled snapshot, when some latest snapshot is unlabelled."""
    path = out / TRAINING_DATA
    if result.labelled_latest is None:
        path.unlink(missing_ok=True)
        return None
    with atomic_path(path) as tmp:
        result.labelled_latest.write_csv(tmp)
        sha = sha256_file(tmp)
    return {"file": TRAINING_DATA, "sha256": sha, "rows": result.labelled_latest.height}


def write_outputs(result: IngestionResult, config: Config, keep_digests: set[str] = frozenset()) -> None:
    """Write finaldata.csv (and trainingdata.csv when it differs), ingestedfiles.txt and the record, each atomically.

    The row digests of the files ingested, and of `keep_digests` (the versions production holds),
    are kept beside them for the next run's new rows.
    """
    out = config.output_folder
    with atomic_path(out / FINAL_DATA) as tmp:
        result.data.write_csv(tmp)
        final_sha = sha256_file(tmp)
    training = write_training_data(result, out)
    if result.row_digests:
        write_digests(out / ROW_DIGESTS, result, keep_digests)
    checkpoint("ingestion-wrote-data")
    # One line per file, whatever its name holds (a newline, bytes that are not UTF-8); the JSON
    # record keeps the exact name, escaped by JSON itself.
    names = "".join(f"{printable_name(f.name)}\n" for f in result.files)
    atomic_write_text(out / INGESTED_FILES, names)
    checkpoint("ingestion-wrote-names")
    record = ingestion_record(result, config.input_folder, final_sha)
    if training is not None:
        record["training_data"] = training
    atomic_write_json(out / INGESTION_RECORD, record)


def ingest(config: Config, processed: Processed = NOTHING_PROCESSED, allow_removed: bool = False) -> IngestionResult:
    """Ingest the configured input folder and write the outputs.

    `processed` is what production has ingested (riskcore.ops.new_data.processed_files). Nothing is
    written when no file could be ingested, or when the ingestion is held back (HeldBack), so
    earlier outputs are never lost. A database table (input_database) is read by riskcore.data.db_ingest.
    """
    if config.input_database is not None:
        from riskcore.data.db_ingest import ingest_table

        result = ingest_table(config, processed.record, allow_removed=allow_removed)
        write_outputs(result, config)
        log.info("wrote %s: %d clients from %s", config.final_data_file, result.data.height,
                 config.input_database.label)
        return result
    result = ingest_folder(config.input_folder, processed.known, processed.ingested,
                           config.output_folder / ROW_DIGESTS, config.max_id_length)
    reason = hold_back_reason(result, processed, allow_removed, config.input_folder)
    if reason is not None:
        raise HeldBack(reason, result)
    for name in missing_files(result, processed):
        log.warning("dropping the rows of %s: ingested before, no longer in %s, dropped as asked (--allow-removed)",
                    name, config.input_folder)
        result.removed.append({"name": name, "sha256": processed.ingested[name], "removed_at": utc_now(),
                               "by": operator()})
    if not result.files:
        # Each reason is a sentence of its own: joined by "; " they read "…value.; b.csv has …".
        reasons = " ".join(r.reason.rstrip(".") + "." for r in result.rejected) or "it holds no CSV file."
        raise DataError(f"Nothing ingested from {config.input_folder}: {reasons}")
    write_outputs(result, config, set(processed.ingested.values()))
    log.info("wrote %s: %d clients from %d files (%d rejected)", config.final_data_file,
             result.data.height, len(result.files), len(result.rejected))
    return result
