"""Shared core of the risk-assessment scripts: config, artifact names, schema, atomic files, CLI edge.

Everything two scripts need lives here once. Importing this module is cheap: it pulls in only
the standard library, so the cron tick with nothing to do never pays for pandas or scikit-learn.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import stat
import sys
import warnings
from collections import namedtuple
from pathlib import Path

# Standard library only, and only what the cheap paths need: the cron tick with nothing new
# imports this module, so dataclasses, typing, tempfile and datetime are kept off its path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = PROJECT_DIR / "config.json"

# --- Data schema -----------------------------------------------------------------------------
ID_COLUMN = "corporation"
FEATURES = ("lastmonth_activity", "lastyear_activity", "number_of_employees")
TARGET = "exited"
COLUMNS = (ID_COLUMN, *FEATURES, TARGET)

# --- Artifact names (one place) --------------------------------------------------------------
FINAL_DATA = "finaldata.csv"
INGESTED_FILES = "ingestedfiles.txt"
INGESTION_RECORD = "ingestionrecord.json"
MODEL_FILE = "trainedmodel.pkl"
MODEL_METADATA = "modelmetadata.json"
SCORE_FILE = "latestscore.txt"
TEST_DATA = "testdata.csv"
DIAGNOSTICS_RECORD = "diagnostics.json"
RISK_SCORES = "risk_scores.csv"
CONFUSION_MATRIX = "confusionmatrix.png"
SUMMARY_REPORT = "summary_report.pdf"
API_RETURNS = "apireturns.txt"
RUN_HISTORY = "runhistory.sqlite"
# What deployment.py publishes; the first three are the course's graded names.
DEPLOYED_FILES = (MODEL_FILE, SCORE_FILE, INGESTED_FILES, MODEL_METADATA, INGESTION_RECORD)

# --- Exit statuses ---------------------------------------------------------------------------
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


class UserError(Exception):
    """A mistake a user can cause and fix; its message is one sentence naming what is wrong."""

    exit_code = EXIT_FAILED


class ConfigError(UserError):
    """The configuration file is missing, malformed or inconsistent."""

    exit_code = EXIT_CONFIG


class DataError(UserError):
    """An input file does not follow the data contract."""


class IntegrityError(UserError):
    """A deployed artifact does not match the hash recorded when it was deployed."""


# --- Config ----------------------------------------------------------------------------------
PATH_KEYS = (
    "input_folder_path",
    "output_folder_path",
    "test_data_path",
    "output_model_path",
    "prod_deployment_path",
)

# The course's LogisticRegression settings; `penalty` is left at its (L2) default because
# current scikit-learn deprecates passing it.
MODEL_DEFAULTS: dict[str, Any] = {
    "C": 1.0,
    "solver": "liblinear",
    "max_iter": 100,
    "tol": 1e-4,
    "random_state": 0,
    "fit_intercept": True,
    "intercept_scaling": 1,
    "class_weight": None,
}
MODEL_TYPES: dict[str, tuple[type, ...]] = {
    "C": (int, float),
    "solver": (str,),
    "max_iter": (int,),
    "tol": (int, float),
    "random_state": (int, type(None)),
    "fit_intercept": (bool,),
    "intercept_scaling": (int, float),
    "class_weight": (str, dict, type(None)),
}
SOLVERS = ("lbfgs", "liblinear", "newton-cg", "newton-cholesky", "sag", "saga")

AUTOMATION_DEFAULTS: dict[str, Any] = {
    "drift_test": "raw",
    "min_history": 5,
    "data_drift_triggers_retrain": False,
    "psi_threshold": 0.25,
    "ks_alpha": 0.01,
    "keep_releases": 5,
    "api_url": "http://127.0.0.1:8000",
}
AUTOMATION_TYPES: dict[str, tuple[type, ...]] = {
    "drift_test": (str,),
    "min_history": (int,),
    "data_drift_triggers_retrain": (bool,),
    "psi_threshold": (int, float),
    "ks_alpha": (int, float),
    "keep_releases": (int,),
    "api_url": (str,),
}
DRIFT_TESTS = ("raw", "parametric", "nonparametric")


class Config(namedtuple("Config", "config_file input_folder output_folder test_data_folder "
                                  "output_model_folder prod_deployment_folder model automation")):
    """Validated settings with every path resolved against the config file's folder (immutable)."""

    __slots__ = ()

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed (e.g. outputs pointed at a scratch folder)."""
        return self._replace(**changes)

    @property
    def final_data_file(self) -> Path:
        return self.output_folder / FINAL_DATA

    @property
    def test_data_file(self) -> Path:
        return self.test_data_folder / TEST_DATA

    @property
    def model_file(self) -> Path:
        return self.output_model_folder / MODEL_FILE

    @property
    def data_folders(self) -> tuple[Path, ...]:
        """Folders an API caller may name a dataset in."""
        return (self.input_folder, self.output_folder, self.test_data_folder)


def _is_type(value: Any, types: tuple[type, ...]) -> bool:
    # bool is an int in Python; a `true` where a number belongs is still a mistake.
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             dict: "an object", type(None): "null"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _check_section(raw: Any, section: str, defaults: dict, types: dict, where: str) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f'Config key "{section}" in {where} must be an object.')
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        raise ConfigError(f'Unknown config key "{section}.{unknown[0]}" in {where}.')
    merged = {**defaults, **raw}
    for key, value in raw.items():
        if not _is_type(value, types[key]):
            raise ConfigError(
                f'Config key "{section}.{key}" in {where} must be {_type_names(types[key])}.'
            )
    return merged


def _check_model(model: dict, where: str) -> None:
    if model["solver"] not in SOLVERS:
        raise ConfigError(f'Config key "model.solver" in {where} must be one of {", ".join(SOLVERS)}.')
    if model["C"] <= 0 or model["tol"] <= 0 or model["max_iter"] <= 0:
        raise ConfigError(f'Config keys "model.C", "model.tol" and "model.max_iter" in {where} must be positive.')


def _check_automation(auto: dict, where: str) -> None:
    if auto["drift_test"] not in DRIFT_TESTS:
        raise ConfigError(
            f'Config key "automation.drift_test" in {where} must be one of {", ".join(DRIFT_TESTS)}.'
        )
    if auto["min_history"] < 2:
        raise ConfigError(f'Config key "automation.min_history" in {where} must be at least 2.')
    if auto["keep_releases"] < 2:
        raise ConfigError(f'Config key "automation.keep_releases" in {where} must be at least 2.')
    if not auto["api_url"].startswith(("http://", "https://")):
        raise ConfigError(f'Config key "automation.api_url" in {where} must be an http(s) URL.')


def parse_config(raw: Any, config_file: Path) -> Config:
    """Validate a decoded config document; relative paths resolve against its folder."""
    where = str(config_file)
    if not isinstance(raw, dict):
        raise ConfigError(f"Config file {where} must hold a JSON object.")
    allowed = set(PATH_KEYS) | {"model", "automation"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f'Unknown config key "{unknown[0]}" in {where}.')
    for key in PATH_KEYS:
        if key not in raw:
            raise ConfigError(f'Config key "{key}" is missing from {where}.')
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise ConfigError(f'Config key "{key}" in {where} must be a non-empty string.')
    base = config_file.parent
    paths = {key: (base / raw[key]).resolve() for key in PATH_KEYS}
    if not paths["input_folder_path"].is_dir():
        raise ConfigError(
            f'Config key "input_folder_path" in {where} names a folder that does not exist: {raw["input_folder_path"]}.'
        )
    model = _check_section(raw.get("model", {}), "model", MODEL_DEFAULTS, MODEL_TYPES, where)
    _check_model(model, where)
    automation = _check_section(
        raw.get("automation", {}), "automation", AUTOMATION_DEFAULTS, AUTOMATION_TYPES, where
    )
    _check_automation(automation, where)
    return Config(
        config_file=config_file,
        input_folder=paths["input_folder_path"],
        output_folder=paths["output_folder_path"],
        test_data_folder=paths["test_data_path"],
        output_model_folder=paths["output_model_path"],
        prod_deployment_folder=paths["prod_deployment_path"],
        model=model,
        automation=automation,
    )


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and validate the config file (default: config.json beside the scripts)."""
    config_file = Path(path if path is not None else DEFAULT_CONFIG).absolute()
    try:
        text = config_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Config file {config_file} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {config_file} cannot be read ({exc.__class__.__name__}).") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"Config file {config_file} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
        ) from None
    return parse_config(raw, config_file)


# --- Command-line edge -----------------------------------------------------------------------
class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (tests swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(verbose: bool = False) -> None:
    """Configure logging for an entry point: one line per event on stderr."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if any(isinstance(h, _StderrHandler) for h in root.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)


def argument_parser(description: str | None) -> argparse.ArgumentParser:
    """An argparse parser with the options every script shares (--config, --verbose)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=None, metavar="PATH",
                        help="config file (default: config.json beside the scripts)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    return parser


def run_cli(body: Callable[[], int | None]) -> int:
    """Run a command body; a user error becomes one sentence on stderr and its exit status."""
    try:
        status = body()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a full disk, a read-only folder: the environment, not a bug
        print(f"error: {os_error_text(exc)}.", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    return EXIT_OK if status is None else status


def os_error_text(exc: OSError) -> str:
    """An OSError in words, naming its file when it has one: "/x/y.csv: No space left on device"."""
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason


# --- Files -----------------------------------------------------------------------------------
def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is fsynced and renamed onto it.

    On failure the temporary file is removed and `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    import tempfile

    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix if suffix is not None else f".tmp{target.suffix}",
        dir=target.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            # A failed write() names no file; say which one could not be written.
            raise OSError(exc.errno, exc.strerror, str(target)) from exc
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write bytes to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text to `target` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike, document: Any) -> None:
    """Write a JSON document to `target` atomically."""
    atomic_write_text(target, json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: Path, what: str) -> Any:
    """Read a JSON artifact, or raise DataError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{what} {path} does not exist.") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{what} {path} cannot be read ({exc.__class__.__name__}).") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string with a Z."""
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def numbered_name(name: str, run_number: int | None) -> str:
    """The contract's report numbering: run 1 keeps the plain name, run n is name<n>.ext."""
    if run_number is None or run_number <= 1:
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem}{run_number}{dot}{ext}" if dot else f"{name}{run_number}"


def next_run_number(folder: Path, name: str) -> int:
    """The first run number whose numbered file does not exist yet in `folder`."""
    number = 1
    while (folder / numbered_name(name, number)).exists():
        number += 1
    return number


def as_plain(obj: Any) -> Any:
    """Convert dataclasses and paths to JSON-ready values."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: as_plain(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): as_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_plain(v) for v in obj]
    return obj


def list_input_files(folder: Path) -> tuple[list[Path], list[str]]:
    """Split a folder's entries into CSV candidates and ignored names, sorted by name."""
    candidates, ignored = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.lower().endswith(".csv") and not entry.name.startswith("."):
            candidates.append(entry)
        else:
            ignored.append(entry.name)
    return candidates, ignored


def input_digest(path: Path, folder: Path) -> str:
    """What identifies an input entry between runs, reading it only if it is a regular file in `folder`.

    A regular file (directly, or through a link that stays in `folder`) gets the sha256 of its
    content. Anything else (a link out of the folder, a directory, a pipe, a device, a dangling
    link) is never read, since reading it could block or never end; it gets a description that
    stays the same as long as the entry does, so a rejected entry is not new again on every run.
    """
    try:
        if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
            return f"link to {os.readlink(path)}"
        # O_NONBLOCK: opening a pipe must not wait for a writer; fstat then says what was opened.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a link loop
        return f"unreadable ({getattr(exc, 'strerror', None) or exc.__class__.__name__})"
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            return f"not a regular file (mode {stat.S_IFMT(mode):o})"
        digest = hashlib.sha256()
        for block in iter(lambda: os.read(fd, 1 << 20), b""):
            digest.update(block)
        return digest.hexdigest()
    finally:
        os.close(fd)


# --- CSV schema ------------------------------------------------------------------------------
MAX_VALUE = 10**12  # far above any real activity count; keeps values exact in float64
MAX_INPUT_BYTES = 128 * 1024 * 1024  # one input file; ~4M rows, far beyond one delivery of client data
GZIP_MAGIC = b"\x1f\x8b"
# How every client CSV is read (ingestion, the API, reports, diagnostics): ids stay text, blanks
# before a value are skipped, only an empty field is missing ("NA" is a valid id).
CSV_READ_OPTIONS: dict[str, Any] = {
    "encoding": "utf-8-sig", "dtype": {ID_COLUMN: str}, "skipinitialspace": True,
    "keep_default_na": False, "na_values": [""],
}


def check_raw_csv(data: bytes, name: str) -> None:
    """Refuse content that is plainly not a CSV text file, before parsing it."""
    if not data.strip():
        raise DataError(f"{name} is empty.")
    if data.startswith(GZIP_MAGIC):
        raise DataError(f"{name} is gzip-compressed, not a CSV text file.")
    if b"\x00" in data[:65536]:
        raise DataError(f"{name} is binary, not a CSV text file.")


def _check_header(columns: list[str], name: str, require_target: bool) -> None:
    if len(columns) == 1 and ";" in columns[0]:
        raise DataError(f"{name} uses ';' as its separator; expected ','.")
    required = [c for c in COLUMNS if require_target or c != TARGET]
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f'{name} is missing the column "{missing[0]}".')
    extra = [c for c in columns if c not in COLUMNS]
    if extra:
        raise DataError(f'{name} has an unexpected column "{extra[0]}".')
    if len(set(columns)) != len(columns):
        raise DataError(f"{name} repeats a column name in its header.")


def _first_bad_row(mask) -> int:
    """The 1-based data row number of the first True in a boolean Series."""
    import numpy as np

    return int(np.argmax(mask.to_numpy())) + 1


def _check_counts(frame, column: str, name: str):
    """Return `column` as int64, or raise DataError naming the first bad row."""
    import pandas as pd

    series = frame[column]
    if not pd.api.types.is_integer_dtype(series.dtype):
        text = series.astype("string").str.strip()
        numeric = pd.to_numeric(text.where(text.str.fullmatch(r"\+?\d+", na=False)), errors="coerce")
        bad = numeric.isna()
        if bad.any():
            row = _first_bad_row(bad)
            value = series.iloc[row - 1]
            shown = "an empty value" if pd.isna(value) or str(value).strip() == "" else f'"{str(value)[:30]}"'
            raise DataError(f'{name} has {shown} in column "{column}" at row {row}; expected a whole number >= 0.')
        series = numeric
    if (series < 0).any():
        row = _first_bad_row(series < 0)
        raise DataError(f'{name} has a negative value in column "{column}" at row {row}.')
    if (series > MAX_VALUE).any():
        row = _first_bad_row(series > MAX_VALUE)
        raise DataError(f'{name} has an implausibly large value in column "{column}" at row {row}.')
    return series.astype("int64")


def validate_frame(frame, name: str, require_target: bool = True):
    """Check a parsed table against the data contract; return it typed and in contract order."""
    _check_header([str(c) for c in frame.columns], name, require_target)
    if frame.empty:
        raise DataError(f"{name} has a header but no rows.")
    import pandas as pd

    first = frame[FEATURES[0]]
    # A repeated header line leaves text in the first feature column; where that column parsed
    # as whole numbers there is none, and the costly text comparison is skipped.
    if not pd.api.types.is_integer_dtype(first.dtype):
        repeated = (frame[ID_COLUMN].astype("string") == ID_COLUMN) & (first.astype("string") == FEATURES[0])
        if repeated.any():
            raise DataError(f"{name} repeats its header line at row {_first_bad_row(repeated)}.")
    ids = frame[ID_COLUMN].astype(str)
    # The parser already skips leading blanks and reads an empty field as missing, so an id of
    # spaces arrives as NaN: no per-row strip is needed (it was the slowest check on large files).
    empty = ids.isna() | (ids == "")
    if empty.any():
        raise DataError(f'{name} has an empty "{ID_COLUMN}" at row {_first_bad_row(empty)}.')
    columns = {ID_COLUMN: ids}
    for column in FEATURES:
        columns[column] = _check_counts(frame, column, name)
    if TARGET in frame.columns:
        target = _check_counts(frame, TARGET, name)
        if (target > 1).any():
            row = _first_bad_row(target > 1)
            raise DataError(f'{name} has a value other than 0 or 1 in column "{TARGET}" at row {row}.')
        columns[TARGET] = target
    return pd.DataFrame(columns)


def parse_csv_bytes(data: bytes, name: str, require_target: bool = True):
    """Parse and validate CSV content; any problem is one DataError sentence naming `name`."""
    import io

    import pandas as pd

    check_raw_csv(data, name)
    try:
        with warnings.catch_warnings():
            # A row longer than the header would otherwise be cut silently.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.BytesIO(data), index_col=False, **CSV_READ_OPTIONS)
    except pd.errors.ParserWarning:
        raise DataError(f"{name} is not a well-formed CSV file (a row has more fields than the header).") from None
    except UnicodeDecodeError:
        raise DataError(f"{name} is not UTF-8 text.") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} is empty.") from None
    except (pd.errors.ParserError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[-1][:120] if str(exc).strip() else "unreadable"
        raise DataError(f"{name} is not a well-formed CSV file ({detail}).") from None
    return validate_frame(frame, name, require_target)


def read_client_csv(path: Path, require_target: bool = True):
    """Read and validate one client CSV file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path.name} cannot be read ({exc.strerror or exc.__class__.__name__}).") from None
    return parse_csv_bytes(data, path.name, require_target)


# --- Deployment layout (read side; deployment.py writes) -------------------------------------
RELEASES_DIR = "releases"
CURRENT_LINK = "current"
MANIFEST = "deployment.json"


class Deployment(namedtuple("Deployment", "folder manifest")):
    """One published release: its folder and its manifest."""

    __slots__ = ()

    @property
    def release(self) -> str:
        return self.folder.name

    @property
    def model_version(self) -> str:
        return self.manifest["model_version"]

    @property
    def deployed_at(self) -> str:
        return self.manifest["deployed_at"]

    def path(self, name: str) -> Path:
        return self.folder / name


def current_release_name(prod: Path) -> str | None:
    """The release the deployment pointer names, read cheaply; None when nothing is deployed."""
    try:
        return Path(os.readlink(prod / CURRENT_LINK)).name
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise IntegrityError(f"Deployment pointer {prod / CURRENT_LINK} is not a link ({exc.strerror}).") from None


def current_deployment(prod: Path) -> Deployment | None:
    """The current deployment with its manifest; None when nothing is deployed yet."""
    name = current_release_name(prod)
    if name is None:
        return None
    folder = prod / RELEASES_DIR / name
    manifest = read_json(folder / MANIFEST, "Deployment manifest")
    return Deployment(folder=folder, manifest=manifest)


def require_deployment(prod: Path) -> Deployment:
    """The current deployment, or a UserError saying nothing is deployed."""
    deployment = current_deployment(prod)
    if deployment is None:
        raise DataError(f"No model is deployed in {prod} yet; run deployment.py first.")
    return deployment


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """Read a file and check it against its recorded sha256, or raise IntegrityError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IntegrityError(f"{path} cannot be read ({exc.strerror or exc.__class__.__name__}).") from None
    if sha256_bytes(data) != expected_sha256:
        raise IntegrityError(f"{path} does not match its recorded sha256; refusing to load it.")
    return data


def load_model_bytes(data: bytes):
    """Unpickle a model whose bytes have already been verified."""
    import pickle

    return pickle.loads(data)  # noqa: S301 - only after the sha256 check


def load_deployed_model(deployment: Deployment):
    """The deployed model, loaded only if its bytes match the hash recorded at deployment."""
    data = read_verified(deployment.path(MODEL_FILE), deployment.manifest["files"][MODEL_FILE])
    return load_model_bytes(data)


def load_trained_model(model_folder: Path) -> tuple[Any, dict[str, Any]]:
    """The model training.py wrote, checked against the sha256 in its metadata."""
    metadata = read_json(model_folder / MODEL_METADATA, "Model metadata")
    data = read_verified(model_folder / MODEL_FILE, metadata["model_sha256"])
    return load_model_bytes(data), metadata


def features_of(frame):
    """The feature matrix, in contract order, as float64."""
    return frame.loc[:, list(FEATURES)].to_numpy(dtype="float64")


# --- Fault injection for the reliability tests -----------------------------------------------
KILL_AT_ENV = "RISK_KILL_AT"


def checkpoint(name: str) -> None:
    """A named point between steps; RISK_KILL_AT=<name> kills the process here (tests only)."""
    if os.environ.get(KILL_AT_ENV) == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
