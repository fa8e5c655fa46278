"""Report on the deployed model: the client risk list, a confusion matrix and a PDF summary.

Reads:  prod_deployment_path  the deployed model (after its sha256 check), its metadata and the
                              manifests of earlier releases (the F1 trend)
        test_data_path/testdata.csv, output_folder_path/finaldata.csv and ingestionrecord.json
        output_model_path/diagnostics.json (timings, dependencies) and runhistory.sqlite, if any
Writes: output_model_path/risk_scores.csv     every client, highest attrition risk first
                                              (overwritten on each run)
        output_model_path/confusionmatrix.png the deployed model on the test data
        output_model_path/summary_report.pdf  a few pages for the people who run the system
Reports of earlier runs are kept: the first run writes the plain names, later runs
confusionmatrix2.png and summary_report2.pdf, then 3, 4, ... (--run-label N picks the number).
Examples: python reporting.py --config config.json
          python reporting.py --config config.json --clients new_clients.csv --run-label 7
"""

from __future__ import annotations

import logging
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.contract import (
    CONFUSION_MATRIX,
    DIAGNOSTICS_RECORD,
    FEATURES,
    FINAL_DATA,
    ID_COLUMN,
    INGESTION_RECORD,
    MANIFEST,
    MODEL_METADATA,
    RELEASES_DIR,
    RISK_SCORES,
    RUN_HISTORY,
    SUMMARY_REPORT,
    TARGET,
    DataError,
    UserError,
)
from riskcore.files import atomic_path, atomic_write_bytes, next_report_number, numbered_name, read_json, utc_now
from riskcore.releases import Deployment, load_deployed_model, read_verified, require_deployment
from riskcore.schema import CSV_READ_OPTIONS, check_raw_csv, features_of, validate_frame
from riskcore.summary import missing_shares, read_ingested, summarize, summary_table

log = logging.getLogger("reporting")

CHUNK_ROWS = 100_000  # rows read, validated and scored at a time
WRITE_ROWS = 200_000  # ranked rows formatted at a time ...
WRITE_BYTES = 16 << 20  # ... or fewer, when long ids would make the block bigger than this
TOP_CLIENTS = 20
DECIMALS = 6  # attrition probability in risk_scores.csv
RISK_HEADER = b"rank,corporation,attrition_probability,model_version\n"
CLASS_NAMES = ("stayed (0)", "exited (1)")
SECTIONS = {
    "headline": "Headline",
    "trend": "F1 across deployments",
    "matrix": "Confusion matrix and ROC curve",
    "clients": "Clients most likely to leave",
    "summary": "Summary statistics",
    "missing": "Missing data",
    "distributions": "Feature distributions: training data beside newest data",
    "timings": "Step timings",
    "dependencies": "Dependencies",
    "ingestion": "Ingestion record",
}
FEATURE_LABELS = {
    "lastmonth_activity": "activity last month",
    "lastyear_activity": "activity last year",
    "number_of_employees": "employees",
}


# --- Risk from features ----------------------------------------------------------------------
class Scorer:
    """Attrition risk of feature rows under a deployed model.

    For the course's logistic regression the risk key is the logit, a numpy dot product on the
    coefficient vector: it ranks exactly like the probability but never saturates at 0 or 1, so
    the very highest risks stay in order. Any other model falls back to predict_proba.
    """

    def __init__(self, model) -> None:
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        self.model = model
        self.linear = (isinstance(model, LogisticRegression) and model.coef_.shape == (1, len(FEATURES))
                       and [int(c) for c in model.classes_] == [0, 1])
        if self.linear:
            self.coef = np.asarray(model.coef_[0], dtype="float64")
            self.intercept = float(model.intercept_[0])

    def key(self, features):
        """A float64 per row that orders rows by risk (higher is riskier)."""
        if self.linear:
            return features @ self.coef + self.intercept
        classes = [int(c) for c in self.model.classes_]
        return self.model.predict_proba(features)[:, classes.index(1)].astype("float64")

    def probability(self, key):
        """The attrition probability for risk keys."""
        if self.linear:
            from scipy.special import expit

            return expit(key)
        return key


# --- Reading client files in chunks ----------------------------------------------------------
ROW_IN_MESSAGE = re.compile(r"at row (\d+)")


def _parse_failure(exc: Exception, name: str) -> DataError:
    if isinstance(exc, UnicodeDecodeError):
        return DataError(f"{name} is not UTF-8 text.")
    detail = str(exc).strip().splitlines()[-1][:120] if str(exc).strip() else "unreadable"
    return DataError(f"{name} is not a well-formed CSV file ({detail}).")


def check_client_file(path: Path) -> None:
    """Refuse a file that is not a client CSV before streaming it: content, header, first row."""
    import pandas as pd

    try:
        with open(path, "rb") as handle:
            head = handle.read(65536)
    except OSError as exc:
        raise DataError(f"{path.name} cannot be read ({exc.strerror or exc.__class__.__name__}).") from None
    check_raw_csv(head, path.name)
    try:
        first = pd.read_csv(path, nrows=1, **CSV_READ_OPTIONS)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name} is empty.") from None
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
        raise _parse_failure(exc, path.name) from None
    validate_frame(first, path.name, require_target=False)


def validate_chunk(chunk, name: str, first_row: int):
    """validate_frame on one chunk, with row numbers in its messages counted from the file's start."""
    try:
        return validate_frame(chunk, name, require_target=False)
    except DataError as exc:
        message = ROW_IN_MESSAGE.sub(lambda m: f"at row {int(m.group(1)) + first_row - 1}", str(exc))
        raise DataError(message) from None


def client_chunks(path: Path, chunk_rows: int, progress=None):
    """Yield (first row number, validated chunk) for a client CSV, read `chunk_rows` at a time.

    Only the id and feature columns are parsed; `progress(bytes_read)` is called after each chunk.
    """
    import pandas as pd

    check_client_file(path)
    with open(path, "rb") as handle, pd.read_csv(handle, usecols=[ID_COLUMN, *FEATURES],
                                                 chunksize=chunk_rows, **CSV_READ_OPTIONS) as reader:
        first_row = 1
        while True:
            try:
                chunk = next(reader)
            except StopIteration:
                return
            except (UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
                raise _parse_failure(exc, path.name) from None
            yield first_row, validate_chunk(chunk, path.name, first_row)
            first_row += len(chunk)
            if progress is not None:
                progress(handle.tell())


# --- Ranking in bounded memory ---------------------------------------------------------------
CSV_SPECIAL = (",", '"', "\r", "\n")


def csv_field(text: str) -> str:
    """One CSV field, quoted when it has to be."""
    if any(ch in text for ch in CSV_SPECIAL):
        return '"' + text.replace('"', '""') + '"'
    return text


def grow(array, size: int):
    """`array` with room for at least `size` items; big arrays grow in place (realloc), not by copying."""
    if size > len(array):
        array.resize(max(size, len(array) + len(array) // 4 + (1 << 16)), refcheck=False)
    return array


class ScoredRows:
    """What the ranking needs of every scored row: risk keys and client ids, added chunk by chunk.

    The keys (float64) and the end offset of each id (int32, int64 past 2 GiB of ids) stay in
    memory in arrays that grow in place; the ids go to a temporary file as one UTF-8 blob, each id
    CSV-ready and followed by a NUL byte, and come back only after the ranking.
    """

    def __init__(self, folder: Path) -> None:
        import numpy as np

        self.ids = tempfile.TemporaryFile(prefix=".risk-ids-", dir=folder)
        self._keys = np.empty(0, dtype=np.float64)
        self._ends = np.empty(0, dtype=np.int32)
        self.rows = 0
        self.id_bytes = 0
        self.longest_id = 0

    def add(self, ids: list[str], keys) -> None:
        import numpy as np

        if not ids:
            return
        joined = "\0".join(ids) + "\0"
        if any(ch in joined for ch in CSV_SPECIAL):
            ids = [csv_field(i) for i in ids]
            joined = "\0".join(ids) + "\0"
        data = joined.encode("utf-8")
        if joined.count("\0") == len(ids):
            ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0)
        else:  # an id holds a NUL itself: count bytes id by id
            ends = np.cumsum([len(i.encode("utf-8")) + 1 for i in ids], dtype=np.int64) - 1
        if len(ends):
            self.longest_id = max(self.longest_id, int(ends[0]), int(np.diff(ends).max(initial=1)) - 1)
        if self.id_bytes + len(data) >= 2**31 and self._ends.dtype != np.int64:
            self._ends = self._ends.astype(np.int64)
        end = self.rows + len(ids)
        self._keys = grow(self._keys, end)
        self._ends = grow(self._ends, end)
        self._keys[self.rows:end] = keys
        self._ends[self.rows:end] = ends + self.id_bytes
        self.ids.write(data)
        self.rows = end
        self.id_bytes += len(data)

    def release_keys(self) -> None:
        import numpy as np

        self._keys = np.empty(0, dtype=np.float64)

    @property
    def keys(self):
        """All keys so far; the spare room of the growing array is given back first."""
        self._keys.resize(self.rows, refcheck=False)
        return self._keys

    def read_ids(self):
        """The id blob (uint8) and the NUL offsets with -1 prepended."""
        import numpy as np

        self.ids.seek(0)
        blob = np.fromfile(self.ids, dtype=np.uint8)
        ends = np.empty(self.rows + 1, dtype=self._ends.dtype)
        ends[0] = -1
        ends[1:] = self._ends[:self.rows]
        self._ends = np.empty(0, dtype=ends.dtype)
        return blob, ends

    def close(self) -> None:
        self.ids.close()


SIGN_BIT = 1 << 63
BLOCK = 1 << 20


def rank_order(keys):
    """Row indices from the highest key to the lowest, equal keys in file order.

    The same result as a stable argsort of -keys, which takes about 2 s and 120 MB of scratch
    for 10 million keys; this takes well under half of that time. Each key's IEEE bit pattern is
    mapped to an integer that sorts in descending key order and cut to its top bits; the row index
    goes into the freed low bits, and one in-place value sort of that array (which numpy
    vectorizes) gives the order. Only keys that differ beyond the cut (below 1 part in 10**8)
    can come out of order: those few runs are then sorted exactly.
    """
    import numpy as np

    n = len(keys)
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > 40:
        raise ValueError("too many rows to rank")
    shift = np.uint64(index_bits)
    packed = np.empty(n, dtype=np.uint64)
    for begin in range(0, n, BLOCK):
        part = packed[begin:begin + BLOCK]
        part[:] = (keys[begin:begin + BLOCK].astype(np.float64) + 0.0).view(np.uint64)  # -0.0 becomes 0.0
        # Negative floats: flip every bit; others: set the sign bit. Then the integers ascend with
        # the keys; inverted, they descend.
        flip = np.uint64(0) - (part >> np.uint64(63))
        flip |= np.uint64(SIGN_BIT)
        part ^= flip
        np.invert(part, out=part)
        # Two spare top bits keep every pattern a finite non-negative float64, which sorts like
        # its integer bits.
        part >>= shift + np.uint64(2)
        part <<= shift
        part |= np.arange(begin, begin + len(part), dtype=np.uint64)
    packed.view(np.float64).sort()
    order = np.empty(n, dtype=np.int32 if n < 2**31 else np.int64)
    tied = np.zeros(max(n - 1, 0), dtype=bool)  # tied[i]: ranks i and i + 1 share the cut key
    for begin in range(0, n, BLOCK):
        end = min(n, begin + BLOCK)
        order[begin:end] = packed[begin:end] & np.uint64((1 << index_bits) - 1)
        stop = min(end, n - 1)
        np.equal(packed[begin:stop] >> shift, packed[begin + 1:stop + 1] >> shift, out=tied[begin:stop])
    del packed
    for begin, end in unequal_runs(keys, order, tied):
        rows = order[begin:end]
        order[begin:end] = rows[np.lexsort((rows, -keys[rows]))]
    return order


def unequal_runs(keys, order, tied) -> list[tuple[int, int]]:
    """[begin, end) of each run of tied ranks whose keys are not all equal (rare: see rank_order)."""
    import numpy as np

    runs: list[tuple[int, int]] = []
    for begin in range(0, len(tied), BLOCK):
        at = np.flatnonzero(tied[begin:begin + BLOCK]) + begin
        at = at[keys[order[at]] != keys[order[at + 1]]]
        for position in at.tolist():
            if runs and position < runs[-1][1]:
                continue
            start = position
            while start > 0 and tied[start - 1]:
                start -= 1
            end = position + 1
            while end < len(tied) and tied[end]:
                end += 1
            runs.append((start, end + 1))
    return runs


PAD = 0xFF  # never a byte of UTF-8 text: marks the unused cells of fixed-width lines


def render_rows(first_rank: int, blob, starts, lengths, micros, suffix: bytes):
    """CSV lines "rank,id,probability" + suffix for consecutive ranks, as one uint8 array.

    The lines are laid out in a fixed-width grid (rank right-aligned, id left-aligned) whose
    unused cells hold PAD and are squeezed out at the end. The varying head of each line is
    built column by column (contiguous writes), then copied across beside the constant suffix:
    every step is a numpy operation over the whole block, none per row.
    `blob[starts[i]:starts[i] + lengths[i]]` is the i-th id; `micros` are the probabilities in
    units of 10**-DECIMALS (0 to 10**DECIMALS).
    """
    import numpy as np

    m = len(starts)
    if m == 0:
        return np.empty(0, dtype=np.uint8)
    last_rank = first_rank + m - 1
    rank_width = len(str(last_rank))
    id_width = max(1, int(lengths.max()))
    id_at = rank_width + 1
    p_at = id_at + id_width + 1
    head = np.empty((p_at + 2 + DECIMALS, m), dtype=np.uint8)  # one row per character position

    integer = np.uint32 if last_rank < 2**32 else np.uint64
    value = np.arange(first_rank, last_rank + 1, dtype=integer)
    digit = np.empty(m, dtype=integer)
    for column in range(rank_width - 1, -1, -1):
        np.divmod(value, integer(10), out=(value, digit))
        head[column] = digit
    head[:rank_width] += ord("0")
    padded = False
    for column in range(rank_width - 1):  # ranks are consecutive: the shorter ones come first
        shorter = 10 ** (rank_width - 1 - column) - first_rank
        if shorter > 0:
            head[column, :shorter] = PAD
            padded = True
    head[rank_width] = ord(",")

    where = np.empty(m, dtype=starts.dtype)
    for k in range(id_width):
        np.add(starts, k, out=where)
        np.minimum(where, len(blob) - 1, out=where)
        np.take(blob, where, out=head[id_at + k])
        short = lengths <= k
        if short.any():
            head[id_at + k, short] = PAD
            padded = True
    head[p_at - 1] = ord(",")

    whole, fraction = np.divmod(np.minimum(micros, 10**DECIMALS).astype(np.uint32), np.uint32(10**DECIMALS))
    head[p_at] = whole
    small = np.empty(m, dtype=np.uint32)
    for k in range(DECIMALS):
        np.divmod(fraction, np.uint32(10), out=(fraction, small))
        head[p_at + 1 + DECIMALS - k] = small
    head[p_at:] += ord("0")
    head[p_at + 1] = ord(".")

    tail = np.frombuffer(suffix, dtype=np.uint8)
    lines = np.empty((m, len(head) + len(tail)), dtype=np.uint8)
    lines[:, :len(head)] = head.T
    lines[:, len(head):] = tail
    flat = lines.reshape(-1)
    return flat[flat != PAD] if padded else flat


@dataclass
class RiskList:
    """What risk_scores wrote, and the riskiest clients for the report."""

    path: Path
    source: Path
    rows: int
    model_version: str
    top: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class Progress:
    """A one-line progress indicator on stderr, shown only when stderr is a terminal."""

    def __init__(self, name: str, total_bytes: int) -> None:
        self.name, self.total = name, max(total_bytes, 1)
        self.enabled = sys.stderr.isatty()
        self.rows = 0

    def __call__(self, bytes_read: int) -> None:
        if self.enabled:
            percent = min(100, 100 * bytes_read // self.total)
            print(f"\rscoring {self.name}: {self.rows:,} rows ({percent}%)", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.enabled:
            print(f"\rscoring {self.name}: {self.rows:,} rows, ranking ...", end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)


def top_candidates(frame, keys, first_row: int, k: int) -> dict[int, dict[str, Any]]:
    """The `k` riskiest rows of a chunk (ties: earlier row first), by 0-based row number in the file."""
    import numpy as np

    if len(keys) > k:
        threshold = np.partition(keys, len(keys) - k)[len(keys) - k]
        candidates = np.flatnonzero(keys >= threshold)
        picked = candidates[np.argsort(-keys[candidates], kind="stable")[:k]]
    else:
        picked = np.arange(len(keys))
    columns = [ID_COLUMN, *FEATURES]
    records = frame.iloc[picked][columns].to_dict("records")
    return {int(row) + first_row - 1: record for row, record in zip(picked, records, strict=True)}


def risk_scores(config: Config, clients_path: Path | None = None, chunk_rows: int = CHUNK_ROWS,
                model=None, deployment: Deployment | None = None) -> RiskList:
    """Score every client of a CSV (default: the ingested data) and write the ranked risk list.

    Bounded memory: the file is read, validated and scored `chunk_rows` rows at a time; what is
    kept of each row is its risk key (8 bytes) and the offset of its id (4), the ids themselves
    wait in a temporary file. rank_order ranks the keys (4 bytes a row), and the CSV is assembled
    from these arrays in blocks of ranked rows. No Python object is kept per row: at 10 million
    rows of 9-character ids that is about 260 MB of arrays at the peak.
    """
    import numpy as np

    started = time.perf_counter()
    source = Path(clients_path) if clients_path is not None else config.final_data_file
    if not source.is_file():
        hint = "; run ingestion.py first" if clients_path is None else ""
        raise DataError(f"Client file {source} does not exist{hint}.")
    if chunk_rows < 1:
        raise UserError("The chunk size must be at least 1 row.")
    if deployment is None:
        deployment = require_deployment(config.prod_deployment_folder)
    scorer = Scorer(model if model is not None else load_deployed_model(deployment))
    target = config.output_model_folder / RISK_SCORES
    target.parent.mkdir(parents=True, exist_ok=True)
    progress = Progress(source.name, source.stat().st_size)
    scored = ScoredRows(target.parent)
    candidates: dict[int, dict[str, Any]] = {}
    try:
        for first_row, chunk in client_chunks(source, chunk_rows, progress):
            keys = scorer.key(features_of(chunk))
            candidates.update(top_candidates(chunk, keys, first_row, TOP_CLIENTS))
            scored.add(chunk[ID_COLUMN].tolist(), keys)
            progress.rows += len(chunk)
        progress.done()
        keys = scored.keys
        order = rank_order(keys)
        top = [{"rank": rank, **candidates[int(row)], "probability": float(scorer.probability(keys[row]))}
               for rank, row in enumerate(order[:TOP_CLIENTS], start=1)]
        # Probabilities in rank order, as the integers written (4 bytes a row instead of the 8 of a key).
        micros = np.empty(len(order), dtype=np.uint32)
        for begin in range(0, len(order), BLOCK):
            rows = order[begin:begin + BLOCK]
            micros[begin:begin + len(rows)] = np.rint(scorer.probability(keys[rows]) * 10**DECIMALS)
        del keys
        scored.release_keys()
        blob, ends = scored.read_ids()
        suffix = ("," + csv_field(deployment.model_version) + "\n").encode("utf-8")
        block = max(1, min(WRITE_ROWS, WRITE_BYTES // (scored.longest_id + 64)))
        with atomic_path(target) as tmp, open(tmp, "wb") as out:
            out.write(RISK_HEADER)
            for begin in range(0, len(order), block):
                rows = order[begin:begin + block]
                starts = ends[rows] + 1
                out.write(render_rows(begin + 1, blob, starts, ends[rows + 1] - starts,
                                      micros[begin:begin + block], suffix).data)
    finally:
        scored.close()
    seconds = time.perf_counter() - started
    log.info("wrote %s: %d clients of %s ranked by model %s in %.2f s", target, len(order), source.name,
             deployment.model_version, seconds)
    return RiskList(path=target, source=source, rows=int(len(order)), model_version=deployment.model_version,
                    top=top, seconds=seconds)


# --- The deployed model on the test data -----------------------------------------------------
@dataclass
class Evaluation:
    """How the deployed model does on the test data."""

    rows: int
    positives: int
    f1: float
    precision: float
    recall: float
    matrix: list[list[int]]  # [[true 0 predicted 0, true 0 predicted 1], [true 1 ..., ...]]
    auc: float | None
    roc: tuple[list[float], list[float]] | None  # false and true positive rates


def evaluate(model, frame) -> Evaluation:
    """F1, precision, recall, confusion matrix and ROC curve of `model` on a labelled frame."""
    from sklearn.metrics import confusion_matrix, precision_score, recall_score, roc_auc_score, roc_curve

    from riskcore.evaluation import f1_of

    features = features_of(frame)
    labels = frame[TARGET].to_numpy()
    predictions = model.predict(features)
    scorer = Scorer(model)
    probabilities = scorer.probability(scorer.key(features))
    both = len(set(labels.tolist())) == 2
    roc = roc_curve(labels, probabilities)[:2] if both else None
    return Evaluation(
        rows=int(len(labels)),
        positives=int(labels.sum()),
        f1=f1_of(labels, predictions),
        precision=float(precision_score(labels, predictions, zero_division=0.0)),
        recall=float(recall_score(labels, predictions, zero_division=0.0)),
        matrix=confusion_matrix(labels, predictions, labels=[0, 1]).tolist(),
        auc=float(roc_auc_score(labels, probabilities)) if both else None,
        roc=(roc[0].tolist(), roc[1].tolist()) if roc is not None else None,
    )


# --- History ---------------------------------------------------------------------------------
def deployment_history(prod: Path) -> list[dict[str, Any]]:
    """Every release still kept: when it was deployed, which model, its F1 on the test data."""
    releases = prod / RELEASES_DIR
    history = []
    if not releases.is_dir():
        return history
    for manifest_path in sorted(releases.glob(f"*/{MANIFEST}")):
        if manifest_path.parent.name.startswith("."):
            continue
        try:
            manifest = read_json(manifest_path, "Deployment manifest")
            history.append({"release": manifest_path.parent.name, "deployed_at": str(manifest["deployed_at"]),
                            "model_version": str(manifest["model_version"]), "score": float(manifest["score"]),
                            "kind": str(manifest.get("kind", "model"))})
        except (DataError, KeyError, TypeError, ValueError) as exc:
            log.warning("skipping release %s in the F1 trend: %s", manifest_path.parent.name, exc)
    return sorted(history, key=lambda item: item["deployed_at"])


RUN_COLUMNS = ("started_at", "f1_new_data", "baseline", "decision", "drift_verdict", "version_before",
               "version_after")


def run_history(model_folder: Path) -> list[dict[str, Any]]:
    """The automation's runs from runhistory.sqlite, oldest first; [] when there is none yet."""
    import sqlite3

    path = model_folder / RUN_HISTORY
    if not path.is_file():
        return []
    try:
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            connection.row_factory = sqlite3.Row
            present = {row["name"] for row in connection.execute("PRAGMA table_info(runs)")}
            if "started_at" not in present:
                return []
            columns = ", ".join(c if c in present else f"NULL AS {c}" for c in RUN_COLUMNS)
            rows = connection.execute(f"SELECT {columns} FROM runs ORDER BY started_at").fetchall()  # noqa: S608
        finally:
            connection.close()
    except sqlite3.Error as exc:
        log.warning("run history %s cannot be read (%s); the report shows no run history", path, exc)
        return []
    return [dict(row) for row in rows]


def parse_time(text: str | None):
    """An ISO 8601 time as a naive UTC datetime, or None."""
    from datetime import UTC, datetime

    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def model_deployments(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per model, at its first deployment: records-only releases repeat the model."""
    seen: set[str] = set()
    firsts = []
    for item in history:
        if item["model_version"] not in seen:
            seen.add(item["model_version"])
            firsts.append(item)
    return firsts


# --- Drift view ------------------------------------------------------------------------------
def population_stability(expected, actual, bins: int = 10) -> float:
    """Population stability index of `actual` against `expected`, on deciles of `expected`."""
    import numpy as np

    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if len(expected) == 0 or len(actual) == 0:
        return 0.0
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    share_expected = np.bincount(np.searchsorted(edges, expected, side="right"),
                                 minlength=len(edges) + 1) / len(expected)
    share_actual = np.bincount(np.searchsorted(edges, actual, side="right"),
                               minlength=len(edges) + 1) / len(actual)
    share_expected = np.clip(share_expected, 1e-4, None)
    share_actual = np.clip(share_actual, 1e-4, None)
    return float(np.sum((share_actual - share_expected) * np.log(share_actual / share_expected)))


def drift_label(psi: float, threshold: float) -> str:
    if psi >= threshold:
        return "drift"
    return "some shift" if psi >= 0.1 else "stable"


# --- Charts ----------------------------------------------------------------------------------
INK = "#1f2a36"
BLUE = "#2f6690"
ORANGE = "#d1603d"
GREY = "#8a96a3"


def figure(width_in: float, height_in: float):
    """A matplotlib figure drawn by the Agg canvas: no display, no pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig, dpi: int = 150) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def confusion_matrix_chart(evaluation: Evaluation, model_version: str, day: str):
    """The confusion matrix: counts in labelled cells, F1, model version and date in the title."""
    import numpy as np
    from matplotlib.colors import LinearSegmentedColormap

    matrix = np.array(evaluation.matrix)
    fig = figure(5.6, 4.9)
    ax = fig.add_subplot()
    cmap = LinearSegmentedColormap.from_list("risk", ["#f4f7fa", BLUE])
    ax.imshow(matrix, cmap=cmap, vmin=0, vmax=max(int(matrix.max()), 1))
    captions = [["correctly expected to stay", "false alarm"], ["missed: left unexpectedly", "correctly flagged"]]
    total = max(int(matrix.sum()), 1)
    for actual in (0, 1):
        for predicted in (0, 1):
            count = int(matrix[actual, predicted])
            dark = count > 0.55 * max(int(matrix.max()), 1)
            color = "white" if dark else INK
            ax.text(predicted, actual - 0.08, f"{count:,}", ha="center", va="center", fontsize=22,
                    fontweight="bold", color=color)
            ax.text(predicted, actual + 0.2, f"{captions[actual][predicted]}\n{100 * count / total:.1f}% of clients",
                    ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks([0, 1], labels=list(CLASS_NAMES), fontsize=10)
    ax.set_yticks([0, 1], labels=list(CLASS_NAMES), fontsize=10, rotation=90, va="center")
    ax.set_xlabel("predicted", fontsize=11, labelpad=8)
    ax.set_ylabel("actual", fontsize=11, labelpad=8)
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"Confusion matrix on the test data: F1 {evaluation.f1:.4f}\n"
                 f"model {model_version} \N{MIDDLE DOT} {day} \N{MIDDLE DOT} {evaluation.rows:,} clients",
                 fontsize=11, color=INK, pad=10)
    return fig


def roc_chart(evaluation: Evaluation):
    """The ROC curve, with the point where the model's 0.5 threshold puts it."""
    fig = figure(4.6, 4.4)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color=GREY, linewidth=1, label="random guess")
    if evaluation.roc is not None:
        fpr, tpr = evaluation.roc
        ax.plot(fpr, tpr, color=BLUE, linewidth=2, label=f"model (AUC {evaluation.auc:.3f})")
        (tn, fp), (fn, tp) = evaluation.matrix
        ax.plot([fp / max(fp + tn, 1)], [tp / max(tp + fn, 1)], "o", color=ORANGE, markersize=7,
                label="threshold 0.5 (the predictions)")
        ax.set_title("ROC curve on the test data", fontsize=11, color=INK)
    else:
        ax.set_title("ROC curve: undefined\n(the test data holds one class only)", fontsize=11, color=INK)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (stayers flagged)")
    ax.set_ylabel("true positive rate (leavers flagged)")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.grid(alpha=0.25)
    return fig


def trend_chart(deployments: list[dict[str, Any]], runs: list[dict[str, Any]], now: str):
    """F1 over time: each model's F1 on the test data when deployed, and the drift checks."""
    import matplotlib.dates as mdates

    fig = figure(7.2, 2.9)
    ax = fig.add_subplot()
    models = [(parse_time(d["deployed_at"]), d["score"]) for d in model_deployments(deployments)]
    models = [(t, f) for t, f in models if t is not None]
    checks = [(parse_time(r.get("started_at")), r.get("f1_new_data"), r.get("baseline")) for r in runs]
    checks = [(t, f, b) for t, f, b in checks if t is not None and isinstance(f, (int, float))]
    if models:
        # Each model's level holds until the next deployment, drawn up to the latest event.
        end = max([t for t, _ in models] + [t for t, _, _ in checks] + [parse_time(now) or models[-1][0]])
        times = [t for t, _ in models] + [end]
        levels = [f for _, f in models] + [models[-1][1]]
        ax.step(times, levels, where="post", color=BLUE, linewidth=1.5)
        ax.plot([t for t, _ in models], [f for _, f in models], "o", color=BLUE, markersize=6,
                label="model deployed: its F1 on the test data")
    if checks:
        ax.plot([t for t, _, _ in checks], [f for _, f, _ in checks], "D", markerfacecolor="white",
                markeredgecolor=ORANGE, markersize=5, linestyle="none",
                label="drift check: deployed model's F1 on the new data")
        baselines = [(t, b) for t, _, b in checks if isinstance(b, (int, float))]
        if baselines:
            ax.plot([t for t, _ in baselines], [b for _, b in baselines], "_", color=INK, markersize=12,
                    markeredgewidth=1.5, linestyle="none", label="baseline the check compared against")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.grid(alpha=0.25)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(mdates.AutoDateLocator()))
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    return fig


def distribution_chart(profile: dict[str, list[float]], newest, psi: dict[str, tuple[float, str]]):
    """Per feature: the training distribution (from its stored quantiles) beside the newest data."""
    import numpy as np

    fig = figure(7.2, 5.6)
    axes = fig.subplots(len(FEATURES), 1)
    for ax, feature in zip(axes, FEATURES, strict=True):
        train = np.asarray(profile.get(feature, []), dtype=np.float64)
        new = newest[feature].dropna().to_numpy(dtype=np.float64) if feature in newest else np.empty(0)
        both = np.concatenate([train, new])
        if len(both) == 0:
            ax.set_axis_off()
            continue
        top = float(np.quantile(both, 0.99)) or float(both.max()) or 1.0
        bins = np.linspace(0, top, 41)
        weights_new = np.full(len(new), 100 / max(len(new), 1))
        weights_train = np.full(len(train), 100 / max(len(train), 1))
        ax.hist(np.clip(train, 0, top), bins=bins, weights=weights_train, color=BLUE, alpha=0.45,
                label="training data of the deployed model")
        ax.hist(np.clip(new, 0, top), bins=bins, weights=weights_new, histtype="step", color=ORANGE,
                linewidth=1.8, label="newest data (finaldata.csv)")
        value, label = psi[feature]
        ax.set_title(f"{FEATURE_LABELS.get(feature, feature)}: PSI {value:.3f} ({label})", fontsize=10,
                     color=ORANGE if label == "drift" else INK, loc="left")
        ax.set_ylabel("% of clients", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.2)
    axes[0].legend(fontsize=8, frameon=False, loc="upper right")
    axes[-1].set_xlabel("value (the top 1% are counted in the last bar)", fontsize=8)
    return fig


# --- The PDF report --------------------------------------------------------------------------
@dataclass
class ReportData:
    """Everything the PDF shows, gathered before anything is written."""

    run_number: int
    generated_at: str
    deployment: Deployment
    metadata: dict[str, Any]
    evaluation: Evaluation
    risk: RiskList
    deployments: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    summary: list[dict[str, Any]] | None
    missing: list[dict[str, Any]] | None
    ingested_rows: int | None
    psi: dict[str, tuple[float, str]]
    psi_threshold: float
    diagnostics: dict[str, Any] | None
    ingestion: dict[str, Any] | None
    charts: dict[str, bytes]


def register_fonts() -> tuple[str, str]:
    """DejaVu Sans (shipped with matplotlib) for any client name; Helvetica if it is missing."""
    import os

    import matplotlib
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
    if not (os.path.isfile(regular) and os.path.isfile(bold)):
        return "Helvetica", "Helvetica-Bold"
    if "ReportSans" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("ReportSans", str(regular)))
        pdfmetrics.registerFont(TTFont("ReportSans-Bold", str(bold)))
        addMapping("ReportSans", 0, 0, "ReportSans")
        addMapping("ReportSans", 1, 0, "ReportSans-Bold")
        addMapping("ReportSans", 0, 1, "ReportSans")
        addMapping("ReportSans", 1, 1, "ReportSans-Bold")
    return "ReportSans", "ReportSans-Bold"


class Styles:
    """The report's paragraph styles."""

    def __init__(self) -> None:
        from reportlab.lib.colors import HexColor
        from reportlab.lib.enums import TA_RIGHT
        from reportlab.lib.styles import ParagraphStyle

        self.regular, self.bold = register_fonts()
        ink, grey, blue = HexColor(INK), HexColor("#5b6875"), HexColor(BLUE)
        base = ParagraphStyle("base", fontName=self.regular, fontSize=9.5, leading=13, textColor=ink)
        self.title = ParagraphStyle("title", base, fontName=self.bold, fontSize=20, leading=24)
        self.subtitle = ParagraphStyle("subtitle", base, fontSize=9, textColor=grey, spaceAfter=10)
        self.h2 = ParagraphStyle("h2", base, fontName=self.bold, fontSize=13, leading=16, textColor=blue,
                                 spaceBefore=12, spaceAfter=6)
        self.body = base
        self.spaced = ParagraphStyle("spaced", base, spaceBefore=8, spaceAfter=2)
        self.note = ParagraphStyle("note", base, fontSize=8, leading=10.5, textColor=grey, spaceBefore=3)
        self.cell = ParagraphStyle("cell", base, fontSize=8.5, leading=10.5)
        self.cell_right = ParagraphStyle("cell_right", self.cell, alignment=TA_RIGHT)
        self.head = ParagraphStyle("head", self.cell, fontName=self.bold, textColor=HexColor("#ffffff"))
        self.head_right = ParagraphStyle("head_right", self.head, alignment=TA_RIGHT)
        self.metric = ParagraphStyle("metric", base, fontName=self.bold, fontSize=22, leading=26, textColor=blue)
        self.metric_label = ParagraphStyle("metric_label", base, fontSize=8.5, leading=10, textColor=grey)
        self.box_title = ParagraphStyle("box_title", base, fontName=self.bold, fontSize=11, leading=14)


def escape(text: Any) -> str:
    from xml.sax.saxutils import escape as xml_escape

    return xml_escape(str(text))


def number(value: Any, decimals: int = 2) -> str:
    if value is None:
        return "\N{EM DASH}"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and decimals == 0):
        return f"{int(value):,}"
    return f"{value:,.{decimals}f}"


def percent(probability: float) -> str:
    """A probability as a percentage a reader can trust: never "100.0%" for a client who may stay."""
    if probability > 0.999:
        return ">99.9%"
    if probability < 0.001:
        return "<0.1%"
    return f"{100 * probability:.1f}%"


def data_table(styles: Styles, headers: list[str], rows: list[list[Any]], widths: list[float],
               right: set[int] | None = None):
    """A table with a dark header row, light stripes and numbers right-aligned."""
    from reportlab.lib.colors import HexColor
    from reportlab.platypus import Paragraph, Table, TableStyle

    right = right or set()
    cells = [[Paragraph(escape(h), styles.head_right if i in right else styles.head)
              for i, h in enumerate(headers)]]
    for row in rows:
        cells.append([Paragraph(escape(v), styles.cell_right if i in right else styles.cell)
                      for i, v in enumerate(row)])
    table = Table(cells, colWidths=widths, repeatRows=1, hAlign="LEFT")
    style = [
        ("BACKGROUND", (0, 0), (-1, 0), HexColor(INK)),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
        ("LINEBELOW", (0, -1), (-1, -1), 0.6, HexColor("#c3ccd5")),
    ]
    style += [("BACKGROUND", (0, r), (-1, r), HexColor("#f1f4f7")) for r in range(2, len(cells), 2)]
    table.setStyle(TableStyle(style))
    return table


def image(png: bytes, width: float):
    """A PNG flowable `width` points wide, its height from the image's own proportions."""
    import io

    from reportlab.lib.utils import ImageReader
    from reportlab.platypus import Image

    pixels_wide, pixels_high = ImageReader(io.BytesIO(png)).getSize()
    return Image(io.BytesIO(png), width=width, height=width * pixels_high / pixels_wide)


def headline_box(data: ReportData, styles: Styles, width: float):
    """The framed headline: the four numbers that matter and what they describe."""
    from reportlab.lib.colors import HexColor
    from reportlab.platypus import Paragraph, Table, TableStyle

    ev = data.evaluation
    metrics = [(f"{ev.f1:.4f}", "F1 on the test data"), (f"{ev.precision:.4f}", "precision"),
               (f"{ev.recall:.4f}", "recall"),
               (f"{ev.auc:.3f}" if ev.auc is not None else "\N{EM DASH}", "ROC AUC")]
    cards = Table([[Paragraph(value, styles.metric) for value, _ in metrics],
                   [Paragraph(label, styles.metric_label) for _, label in metrics]],
                  colWidths=[(width - 24) / 4] * 4, hAlign="LEFT")
    cards.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0), ("BOTTOMPADDING", (0, 0), (-1, 0), 0)]))
    deployment, metadata = data.deployment, data.metadata
    first_deployed = next((d["deployed_at"] for d in data.deployments
                           if d["model_version"] == deployment.model_version), deployment.deployed_at)
    lines = [
        f"<b>Model {escape(deployment.model_version)}</b>, trained {escape(metadata.get('trained_at', '?'))} "
        f"on {number(metadata.get('training_rows'), 0)} clients, deployed {escape(first_deployed)} "
        f"(now served from release {escape(deployment.release)}).",
        f"Test data: {ev.rows:,} clients, {ev.positives:,} of whom left. Of those who left the model flagged "
        f"{ev.matrix[1][1]:,} (recall); of the {ev.matrix[0][1] + ev.matrix[1][1]:,} it flagged, "
        f"{ev.matrix[1][1]:,} did leave (precision). F1 recorded at deployment: "
        f"{float(deployment.manifest.get('score', ev.f1)):.4f}.",
    ]
    checks = [r for r in data.runs if isinstance(r.get("f1_new_data"), (int, float))]
    if checks:
        last = checks[-1]
        baseline = last.get("baseline")
        verdict = f" ({escape(last['drift_verdict'])})" if last.get("drift_verdict") else ""
        lines.append(f"Latest drift check ({escape(last.get('started_at'))}): F1 {last['f1_new_data']:.4f} on the "
                     f"new data against the baseline {number(baseline, 4)}; decision: "
                     f"{escape(last.get('decision') or 'not recorded')}{verdict}.")
    drifted = [FEATURE_LABELS.get(f, f) for f, (_, label) in data.psi.items() if label == "drift"]
    if drifted:
        lines.append(f"<b>Data drift:</b> the newest data differs from the data the model was trained on in "
                     f"{escape(', '.join(drifted))} (PSI at or above {data.psi_threshold:g}; page 3).")
    if data.risk.top:
        first = data.risk.top[0]
        lines.append(f"{data.risk.rows:,} clients of {escape(data.risk.source.name)} ranked by their risk of "
                     f"leaving; the riskiest, {escape(first[ID_COLUMN])}, leaves with probability "
                     f"{escape(percent(first['probability']))}.")
    inner = [[Paragraph(SECTIONS["headline"], styles.box_title)], [cards],
             *[[Paragraph(line, styles.body)] for line in lines]]
    box = Table(inner, colWidths=[width], hAlign="LEFT")
    box.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, -1), HexColor("#eef3f8")),
        ("BOX", (0, 0), (-1, -1), 1.2, HexColor(BLUE)),
        ("LEFTPADDING", (0, 0), (-1, -1), 12),
        ("RIGHTPADDING", (0, 0), (-1, -1), 12),
        ("TOPPADDING", (0, 0), (-1, 0), 10),
        ("BOTTOMPADDING", (0, -1), (-1, -1), 10),
    ]))
    return box


def trend_section(data: ReportData, styles: Styles, width: float) -> list:
    from reportlab.platypus import Paragraph

    flow: list = []
    models = model_deployments(data.deployments)
    checks = [r for r in data.runs if isinstance(r.get("f1_new_data"), (int, float))]
    if len(models) + len(checks) >= 2:
        flow.append(image(data.charts["trend"], width))
    else:
        flow.append(Paragraph("Only one deployment and no drift check so far: the trend starts with the next "
                              "run of the automation.", styles.body))
    recent = models[-6:]
    if recent:
        flow.append(data_table(styles, ["deployed at (UTC)", "model version", "F1 on the test data"],
                               [[d["deployed_at"], d["model_version"], f"{d['score']:.4f}"] for d in recent],
                               [width * 0.3, width * 0.45, width * 0.25], right={2}))
    flow.append(Paragraph(
        "Deployments come from the release manifests still kept in the production folder; drift checks from "
        f"the automation's run history ({RUN_HISTORY}"
        f"{', not present yet' if not data.runs else f', {len(data.runs)} runs'}).", styles.note))
    return section(styles, "trend", *flow)


def matrix_section(data: ReportData, styles: Styles, width: float) -> list:
    from reportlab.platypus import Paragraph, Table, TableStyle

    ev = data.evaluation
    pair = Table([[image(data.charts["confusion"], width * 0.53), image(data.charts["roc"], width * 0.45)]],
                 colWidths=[width * 0.55, width * 0.45], hAlign="LEFT")
    pair.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    (tn, fp), (fn, tp) = ev.matrix
    return section(
        styles, "matrix",
        pair,
        Paragraph(f"Reading it: of {fn + tp:,} test clients who left, the model expected {tp:,} to leave and missed "
                  f"{fn:,}; it raised {fp:,} false alarms among the {tn + fp:,} who stayed.", styles.body),
    )


def clients_section(data: ReportData, styles: Styles, width: float) -> list:
    from reportlab.platypus import Paragraph

    risk = data.risk
    rows = [[c["rank"], c[ID_COLUMN], percent(c["probability"]),
             *(f"{int(c[f]):,}" for f in FEATURES)] for c in risk.top]
    headers = ["rank", "client", "probability of leaving", *(FEATURE_LABELS[f] for f in FEATURES)]
    return section(
        styles, "clients",
        Paragraph(f"The {len(risk.top)} clients of {escape(risk.source.name)} with the highest probability of "
                  "leaving: the ones to call first.", styles.body),
        data_table(styles, headers, rows, [w * width for w in (0.08, 0.2, 0.18, 0.18, 0.18, 0.18)],
                   right={0, 2, 3, 4, 5}),
        Paragraph(f"The full list, all {risk.rows:,} clients ranked, is {escape(risk.path.name)} in "
                  f"{escape(risk.path.parent)} (scored by model {escape(risk.model_version)}).", styles.note),
    )


def section(styles: Styles, key: str, *flowables) -> list:
    """A titled section whose title never sits alone at the foot of a page."""
    from reportlab.platypus import KeepTogether, Paragraph

    heading = Paragraph(SECTIONS[key], styles.h2)
    return [KeepTogether([heading, *flowables[:2]]), *flowables[2:]]


def no_data(styles: Styles):
    from reportlab.platypus import Paragraph

    return Paragraph(f"No ingested data ({FINAL_DATA}) yet.", styles.body)


def summary_section(data: ReportData, styles: Styles, width: float) -> list:
    from reportlab.platypus import Paragraph

    if data.summary is None:
        return section(styles, "summary", no_data(styles))
    by_column = summary_table(data.summary)
    rows = [[FEATURE_LABELS.get(c, c), number(s["mean"]), number(s["median"]), number(s["std"]),
             number(s["min"], 0), number(s["max"], 0), number(s["count"], 0)] for c, s in by_column.items()]
    return section(
        styles, "summary",
        Paragraph(f"The {data.ingested_rows:,} rows of the ingested data ({FINAL_DATA}); "
                  "std is the sample standard deviation.", styles.body),
        data_table(styles, ["feature", "mean", "median", "std", "min", "max", "count"], rows,
                   [width * w for w in (0.25, 0.13, 0.12, 0.13, 0.1, 0.13, 0.14)], right={1, 2, 3, 4, 5, 6}),
    )


def distributions_section(data: ReportData, styles: Styles, width: float) -> list:
    from reportlab.platypus import Paragraph

    if "distributions" not in data.charts:
        return section(styles, "distributions", Paragraph(
            "Not available: the deployed model carries no training profile, or no data is ingested yet.",
            styles.body))
    return section(
        styles, "distributions",
        Paragraph("Filled bars: the data the deployed model was trained on (from the 1,001 quantiles stored with "
                  "it). Outline: the newest ingested data. Where the two part, the clients have changed since "
                  "training and the model may no longer fit them. PSI (population stability index) below 0.1 "
                  f"means stable; at or above {data.psi_threshold:g} counts as drift.", styles.body),
        image(data.charts["distributions"], width),
    )


def missing_section(data: ReportData, styles: Styles, width: float) -> list:
    from reportlab.platypus import Paragraph

    if data.missing is None:
        return section(styles, "missing", no_data(styles))
    table = data_table(styles, ["column", "missing", "rows missing"],
                       [[m["column"], f"{m['missing_percent']:.2f}%", f"{m['missing_count']:,}"]
                        for m in data.missing], [width * 0.4, width * 0.2, width * 0.2], right={1, 2})
    complete = all(m["missing_count"] == 0 for m in data.missing)
    note = f"No value is missing in the {data.ingested_rows:,} rows." if complete else (
        f"Share of the {data.ingested_rows:,} rows of {FINAL_DATA} with no value in the column.")
    return section(styles, "missing", table, Paragraph(note, styles.note))


def timings_section(data: ReportData, styles: Styles, width: float) -> list:
    from reportlab.platypus import Paragraph

    record = data.diagnostics
    if not (record and record.get("timings")):
        return section(styles, "timings", Paragraph(
            f"Not measured yet: diagnostics.py writes them to {DIAGNOSTICS_RECORD}.", styles.body))
    runs = record.get("timing_runs", 1)
    rows = [[step, f"{record['timings'][step]:.3f}"]
            for step in ("ingestion", "training", "scoring") if step in record["timings"]]
    return section(
        styles, "timings",
        data_table(styles, ["step", "seconds"], rows, [width * 0.3, width * 0.2], right={1}),
        Paragraph(f"Median of {runs} run{'s' if runs != 1 else ''} of the real steps on a temporary copy, "
                  f"measured {escape(record.get('generated_at'))} by diagnostics.py.", styles.note),
    )


def dependencies_section(data: ReportData, styles: Styles, width: float) -> list:
    from reportlab.platypus import Paragraph

    record = data.diagnostics
    if not (record and record.get("dependencies")):
        return section(styles, "dependencies", Paragraph(
            f"Not checked yet: diagnostics.py writes them to {DIAGNOSTICS_RECORD}.", styles.body))
    deps = record["dependencies"]
    notes = [Paragraph(f"Latest version unknown: {escape(reason)}.", styles.note)
             for reason in sorted({d["reason"] for d in deps if d.get("reason")})]
    notes.append(Paragraph(f"Packages of requirements.txt, checked {escape(record.get('generated_at'))}.",
                           styles.note))
    return section(
        styles, "dependencies",
        data_table(styles, ["package", "pinned", "installed", "latest", "status"],
                   [[d["package"], d["pinned"], d["installed"], d["latest"], d.get("status", "")] for d in deps],
                   [width * w for w in (0.26, 0.16, 0.16, 0.16, 0.2)]),
        *notes,
    )


def ingestion_section(data: ReportData, styles: Styles, width: float) -> list:
    from reportlab.platypus import Paragraph

    record = data.ingestion
    if not record:
        return section(styles, "ingestion", Paragraph(
            f"No ingestion record ({INGESTION_RECORD}) found.", styles.body))
    files = record.get("files", [])
    flow = [
        Paragraph(f"Ingested {escape(record.get('ingested_at', '?'))} from {escape(record.get('input_folder', '?'))}: "
                  f"{number(record.get('rows_read'), 0)} rows read from {len(files)} file"
                  f"{'s' if len(files) != 1 else ''}, {number(record.get('rows_kept'), 0)} kept after dropping "
                  "exact duplicates.", styles.body),
        data_table(styles, ["file", "rows read", "rows kept", "duplicates dropped"],
                   [[f.get("name"), number(f.get("rows_read"), 0), number(f.get("rows_kept"), 0),
                     number(f.get("duplicates_dropped"), 0)] for f in files],
                   [width * w for w in (0.4, 0.18, 0.18, 0.24)], right={1, 2, 3}),
    ]
    rejected = record.get("rejected", [])
    if rejected:
        flow.append(Paragraph(f"Rejected files ({len(rejected)}): not ingested, picked up again once fixed.",
                              styles.spaced))
        flow.append(data_table(styles, ["file", "reason"], [[r.get("name"), r.get("reason")] for r in rejected],
                               [width * 0.3, width * 0.7]))
    else:
        flow.append(Paragraph("No file was rejected.", styles.note))
    return section(styles, "ingestion", *flow)


def build_pdf(data: ReportData) -> bytes:
    """The summary report as PDF bytes: four A4 pages for the usual project."""
    import io

    from reportlab.lib.colors import HexColor
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer

    styles = Styles()
    footer = (f"Client attrition risk report \N{MIDDLE DOT} run {data.run_number} \N{MIDDLE DOT} "
              f"model {data.deployment.model_version} \N{MIDDLE DOT} {data.generated_at}")

    class NumberedCanvas(Canvas):
        """Draws "page i of n" once the number of pages is known."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._saved: list[dict] = []

        def showPage(self) -> None:  # noqa: N802 - reportlab's name
            self._saved.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            for state in self._saved:
                self.__dict__.update(state)
                self.setFont(styles.regular, 7.5)
                self.setFillColor(HexColor("#7a8794"))
                self.drawString(18 * mm, 10 * mm, footer)
                self.drawRightString(A4[0] - 18 * mm, 10 * mm, f"page {self._pageNumber} of {len(self._saved)}")
                super().showPage()
            super().save()

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm,
                            bottomMargin=18 * mm, title="Client attrition risk report",
                            author="reporting.py", subject=f"model {data.deployment.model_version}")
    width = doc.width
    story = [
        Paragraph("Client attrition risk report", styles.title),
        Paragraph(f"Run {data.run_number} \N{MIDDLE DOT} generated {escape(data.generated_at)} \N{MIDDLE DOT} "
                  f"deployed model {escape(data.deployment.model_version)}", styles.subtitle),
        headline_box(data, styles, width),
        *trend_section(data, styles, width),
        PageBreak(),
        *matrix_section(data, styles, width),
        Spacer(1, 4),
        *clients_section(data, styles, width),
        PageBreak(),
        *summary_section(data, styles, width),
        *distributions_section(data, styles, width),
        PageBreak(),
        *missing_section(data, styles, width),
        *timings_section(data, styles, width),
        *dependencies_section(data, styles, width),
        *ingestion_section(data, styles, width),
    ]
    doc.build(story, canvasmaker=NumberedCanvas)
    return buffer.getvalue()


# --- Putting it together ---------------------------------------------------------------------
def deployed_metadata(deployment: Deployment) -> dict[str, Any]:
    """The deployed model's metadata, checked against the manifest's hash when it has one."""
    import json

    expected = deployment.manifest.get("files", {}).get(MODEL_METADATA)
    if expected is None:
        return read_json(deployment.path(MODEL_METADATA), "Model metadata")
    return json.loads(read_verified(deployment.path(MODEL_METADATA), expected))


def optional_record(path: Path, what: str) -> dict[str, Any] | None:
    """A JSON record the report can do without: None (and a log line) when missing or unreadable."""
    if not path.is_file():
        log.info("no %s at %s; the report says so", what, path)
        return None
    try:
        record = read_json(path, what)
    except DataError as exc:
        log.warning("%s; the report leaves it out", exc)
        return None
    return record if isinstance(record, dict) else None


def report_number(folder: Path, run_number: int | None) -> int:
    """The run number to write: as asked, or the first one free for both report files."""
    if run_number is not None:
        if run_number < 1:
            raise UserError("The run label must be a whole number of at least 1.")
        taken = [name for name in (CONFUSION_MATRIX, SUMMARY_REPORT)
                 if (folder / numbered_name(name, run_number)).exists()]
        if taken:
            log.warning("run label %d: replacing the existing %s", run_number,
                        " and ".join(numbered_name(name, run_number) for name in taken))
        return run_number
    return next_report_number(folder, (CONFUSION_MATRIX, SUMMARY_REPORT))


def drift_view(metadata: dict[str, Any], newest, threshold: float) -> tuple[dict, dict[str, tuple[float, str]]]:
    """The training quantiles and, per feature, the PSI of the newest data against them."""
    profile = (metadata.get("training_profile") or {}).get("quantiles") or {}
    if newest is None or not all(f in profile for f in FEATURES):
        return {}, {}
    psi = {}
    for feature in FEATURES:
        value = population_stability(profile[feature], newest[feature].dropna().to_numpy(dtype="float64"))
        psi[feature] = (value, drift_label(value, threshold))
    return profile, psi


def run(config: Config, run_number: int | None = None, clients: Path | None = None,
        chunk_rows: int = CHUNK_ROWS) -> dict[str, Path]:
    """Write the risk list, the confusion matrix and the PDF report; return their paths."""
    from riskcore.evaluation import read_test_data

    folder = config.output_model_folder
    deployment = require_deployment(config.prod_deployment_folder)
    model = load_deployed_model(deployment)
    metadata = deployed_metadata(deployment)
    evaluation = evaluate(model, read_test_data(config))
    risk = risk_scores(config, clients, chunk_rows=chunk_rows, model=model, deployment=deployment)
    newest = read_ingested(config) if config.final_data_file.is_file() else None
    threshold = float(config.automation["psi_threshold"])
    profile, psi = drift_view(metadata, newest, threshold)
    generated = utc_now()
    deployments = deployment_history(config.prod_deployment_folder)
    runs = run_history(folder)
    charts = {
        "confusion": png_bytes(confusion_matrix_chart(evaluation, deployment.model_version, generated[:10])),
        "roc": png_bytes(roc_chart(evaluation)),
        "trend": png_bytes(trend_chart(deployments, runs, generated)),
    }
    if psi:
        charts["distributions"] = png_bytes(distribution_chart(profile, newest, psi))
    ingestion = (optional_record(config.output_folder / INGESTION_RECORD, "Ingestion record")
                 or optional_record(deployment.path(INGESTION_RECORD), "Ingestion record"))
    number_ = report_number(folder, run_number)
    data = ReportData(
        run_number=number_, generated_at=generated, deployment=deployment, metadata=metadata,
        evaluation=evaluation, risk=risk, deployments=deployments, runs=runs,
        summary=summarize(newest) if newest is not None else None,
        missing=missing_shares(newest) if newest is not None else None,
        ingested_rows=int(len(newest)) if newest is not None else None,
        psi=psi, psi_threshold=threshold,
        diagnostics=optional_record(folder / DIAGNOSTICS_RECORD, "Diagnostics record"),
        ingestion=ingestion, charts=charts,
    )
    pdf = build_pdf(data)
    paths = {
        "confusion_matrix": folder / numbered_name(CONFUSION_MATRIX, number_),
        "summary_report": folder / numbered_name(SUMMARY_REPORT, number_),
        "risk_scores": risk.path,
    }
    atomic_write_bytes(paths["confusion_matrix"], charts["confusion"])
    atomic_write_bytes(paths["summary_report"], pdf)
    log.info("run %d: wrote %s and %s for model %s (F1 %.4f on the test data)", number_,
             paths["confusion_matrix"].name, paths["summary_report"].name, deployment.model_version, evaluation.f1)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command line: write the risk list and the reports, and print where they are."""
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--run-label", type=int, default=None, metavar="N",
                        help="number the reports N (default: the next number not yet used)")
    parser.add_argument("--clients", default=None, metavar="FILE",
                        help="score the clients of this CSV instead of the ingested data")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, metavar="ROWS",
                        help=f"rows scored at a time (default: {CHUNK_ROWS:,})")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        config = load_config(args.config)
        clients = Path(args.clients).absolute() if args.clients else None
        paths = run(config, run_number=args.run_label, clients=clients, chunk_rows=args.chunk_rows)
        for path in paths.values():
            print(path)

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
