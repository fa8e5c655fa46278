"""What changed since the last run: each call list's ranks, kept per run, and each client's move.

Every run that writes the call list keeps its ranking in output_model_path/rankings/<run number>.parquet:
the client id, its rank, log-odds and probability (as the list gave it), one row per listed client,
riskiest first (Parquet, columnar and compressed: at 10M clients a few tens of MB, read back by column).
The file's metadata says which list it ranks: the model version and the data file (name, size,
modification time). The last `reporting.keep_rankings` runs are kept.

The previous ranking of a list is the newest kept ranking of another list (another model or another
version of the data): reporting.py run twice on the same data, or the API ranking the data the last
run ranked, still compares with the run before. Each client then has its `previous_rank` (empty for a
client new on the list) and its `change` in words: "new", "up 12", "down 3" or "same"; both are empty
when no earlier ranking is kept.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import polars as pl

from riskcore.contract import ID_COLUMN
from riskcore.files import atomic_path, utc_at

log = logging.getLogger(__name__)

RANKINGS = "rankings"  # the folder under output_model_path
RANKING_NAME = re.compile(r"^(\d+)\.parquet$")
IDENTITY_KEY = "risk_list"  # the Parquet metadata key that says which list a ranking ranks
KEY = "log_odds"  # the rank key; the call list and its kept rankings name their columns alike
PROBABILITY = "probability"  # the calibrated probability: one name in the CSV, the JSON and the page
PREVIOUS_RANK = "previous_rank"
CHANGE = "change"
CHANGE_COLUMNS = (PREVIOUS_RANK, CHANGE)


def list_identity(model_version: str, source: Path) -> dict[str, Any]:
    """Which list a ranking ranks: the model and the data file's version (one stat)."""
    st = source.stat()
    return {"model_version": model_version, "source": source.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def kept_rankings(folder: Path) -> list[tuple[int, Path]]:
    """The kept rankings under output_model_path, oldest run first."""
    try:
        found = [(int(m.group(1)), entry) for entry in (folder / RANKINGS).iterdir()
                 if (m := RANKING_NAME.match(entry.name))]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(found)


def identity_of(path: Path) -> dict[str, Any] | None:
    """The list a kept ranking ranks, from its metadata; None for a file that says nothing readable."""
    try:
        return json.loads(pl.read_parquet_metadata(path).get(IDENTITY_KEY, "null"))
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return None


def previous_ranking(folder: Path, identity: dict[str, Any],
                     skip: int | None = None) -> tuple[int, pl.DataFrame] | None:
    """The newest kept ranking of another list than `identity`: (its run number, its ids and ranks as
    previous_rank), or None when none is kept.

    `skip`: a run number to pass over (the run about to replace its own ranking).
    """
    for number, path in reversed(kept_rankings(folder)):
        if number == skip or identity_of(path) == identity:
            continue
        try:
            return number, pl.read_parquet(path, columns=[ID_COLUMN, "rank"]).rename({"rank": PREVIOUS_RANK})
        except (OSError, pl.exceptions.PolarsError) as exc:
            log.warning("ranking %s cannot be read (%s); comparing with an earlier one", path.name, exc)
    return None


def with_changes(ranked: pl.LazyFrame, previous: pl.DataFrame | None) -> pl.LazyFrame:
    """A ranking (with its `rank`) with each client's previous_rank and change in words, in the same order."""
    if previous is None:
        return ranked.with_columns(pl.lit(None, dtype=pl.UInt32).alias(PREVIOUS_RANK),
                                   pl.lit(None, dtype=pl.String).alias(CHANGE))
    rank, before = pl.col("rank").cast(pl.Int64), pl.col(PREVIOUS_RANK).cast(pl.Int64)
    change = (pl.when(before.is_null()).then(pl.lit("new"))
              .when(before > rank).then(pl.format("up {}", before - rank))
              .when(before < rank).then(pl.format("down {}", rank - before))
              .otherwise(pl.lit("same")))
    return (ranked.join(previous.lazy(), on=ID_COLUMN, how="left", maintain_order="left")
            .with_columns(change.alias(CHANGE)))


def ranks_of(previous: pl.DataFrame | None, clients: pl.DataFrame) -> pl.DataFrame | None:
    """The previous ranks (previous_ranking) of a few clients: with_changes of a ranking's head then builds its join
    on them, not on every client of the previous run (at 10M clients 0.6-1.3 s of CPU for the 200 of a report)."""
    if previous is None:
        return None
    return previous.filter(pl.col(ID_COLUMN).is_in(clients.get_column(ID_COLUMN).implode()))


def keep_ranking(folder: Path, number: int, ranking: pl.DataFrame, identity: dict[str, Any], keep: int,
                 chances: pl.Series) -> Path:
    """Write run `number`'s ranking (id, log-odds and the probability its list gave, `chances`, riskiest first) and
    drop all but the newest `keep` runs.

    The probability is kept as 32-bit floats: a client's chart shows it as a percentage, and each run's
    calibrator is its model's, so it cannot be computed again from the log-odds later.
    """
    target = folder / RANKINGS / f"{number}.parquet"
    table = ranking.select(ID_COLUMN, pl.int_range(1, pl.len() + 1, dtype=pl.UInt32).alias("rank"), KEY,
                           chances.cast(pl.Float32).alias(PROBABILITY))
    with atomic_path(target) as tmp:
        # zstd's fastest level: at 10M clients 0.6 s of CPU and 77 MB, where polars' default level took 1.0 s for 80 MB.
        table.write_parquet(tmp, compression="zstd", compression_level=1, metadata={IDENTITY_KEY: json.dumps(identity)})
    kept = kept_rankings(folder)
    for _, old in kept[:max(len(kept) - keep, 0)]:
        old.unlink(missing_ok=True)
    log.info("kept the ranking of run %d (%d clients) in %s; %d runs kept", number, table.height,
             target.relative_to(folder), min(len(kept), keep))
    return target


def client_across_runs(folder: Path, client_id: str) -> list[dict[str, Any]]:
    """A client's rank, log-odds and probability in each kept ranking that lists it, oldest run first (one column scan
    each), with when the run ranked the list (`ranked_at`: when its ranking was written, UTC). A ranking kept before
    rankings kept the probability gives it as null."""
    found = []
    for number, path in kept_rankings(folder):
        try:
            scan = pl.scan_parquet(path)
            chance = pl.col(PROBABILITY) if PROBABILITY in scan.collect_schema() else pl.lit(None, dtype=pl.Float32)
            rows = scan.filter(pl.col(ID_COLUMN) == client_id).select("rank", KEY, chance.alias(PROBABILITY)).collect()
            written = path.stat().st_mtime
        except (OSError, pl.exceptions.PolarsError) as exc:
            log.warning("ranking %s cannot be read (%s); the client's chart leaves it out", path.name, exc)
            continue
        if rows.height:
            found.append({"run": number, "ranked_at": utc_at(written), "rank": int(rows.item(0, "rank")),
                          KEY: float(rows.item(0, KEY)), PROBABILITY: kept_probability(rows.item(0, PROBABILITY))})
    return found


def kept_probability(value: float | None) -> float | None:
    """A kept 32-bit probability as the JSON gives it: 6 decimals, as in risk_scores.csv (the rest is float noise)."""
    return None if value is None else round(float(value), 6)


def next_ranking_number(folder: Path) -> int:
    """The run number after the newest kept ranking (risk_scores called outside a numbered run)."""
    kept = kept_rankings(folder)
    return kept[-1][0] + 1 if kept else 1
