"""Diagnose the model and the data: predictions, statistics, missing data, timings, dependencies.

Reads:  prod_deployment_path  the deployed model (loaded only after its sha256 check)
        output_folder_path/finaldata.csv, test_data_path/testdata.csv
        input_folder_path (the timing runs ingest it into a temporary folder)
        requirements.txt beside the scripts
Writes: output_model_path/diagnostics.json  everything below, with the time it was taken and
                                            the model version it describes, for the API to serve

Step timings run the real ingestion, training and scoring against a temporary copy of the
output folders: the deployed model, the production folder and the configured outputs are never
touched. The dependency check asks pip for the latest versions with a time limit, so a run
without a reachable package index finishes in seconds and says why the versions are unknown.
Example: python diagnostics.py --config config.json --repeat 3
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.contract import DIAGNOSTICS_RECORD, FEATURES, PROJECT_DIR, TEST_DATA, DataError, UserError
from riskcore.files import atomic_write_json, utc_now
from riskcore.releases import load_deployed_model, require_deployment
from riskcore.schema import features_of
from riskcore.summary import STATISTICS, missing_shares, read_ingested, summarize, summary_table

log = logging.getLogger("diagnostics")

STEPS = ("ingestion", "training", "scoring")
REQUIREMENTS = PROJECT_DIR / "requirements.txt"
DEPENDENCY_TIMEOUT = 10.0  # seconds for the whole dependency check, however many packages
UNKNOWN = "unknown"


# --- Predictions -----------------------------------------------------------------------------
def deployed_model(config: Config):
    """The deployed model, loaded through the deployment's integrity check."""
    return load_deployed_model(require_deployment(config.prod_deployment_folder))


def feature_matrix(dataframe):
    """The three features as float64, or a DataError naming the first missing or bad column."""
    import numpy as np

    for column in FEATURES:
        if column not in dataframe.columns:
            raise DataError(f'The rows to predict are missing the column "{column}".')
    try:
        matrix = features_of(dataframe)
    except (TypeError, ValueError):
        raise DataError("The rows to predict hold a feature value that is not a number.") from None
    finite = np.isfinite(matrix)
    if not finite.all():
        column = FEATURES[int(np.argmin(finite.all(axis=0)))]
        raise DataError(f'The rows to predict have a missing value in column "{column}".')
    return matrix


def model_predictions(config: Config, dataframe, model=None) -> list[int]:
    """The deployed model's class predictions (0 or 1) for the rows of `dataframe`."""
    model = model if model is not None else deployed_model(config)
    if len(dataframe) == 0:
        return []
    return [int(p) for p in model.predict(feature_matrix(dataframe))]


# --- Data statistics -------------------------------------------------------------------------
# --- Data statistics (the course's names) -------------------------------------------------
def dataframe_summary(config: Config, frame=None) -> list[dict[str, Any]]:
    """Mean, median, std, count, min and max of each feature of the ingested data (or `frame`)."""
    return summarize(read_ingested(config) if frame is None else frame)


def missing_data(config: Config, frame=None) -> list[dict[str, Any]]:
    """The share of missing values in every column of the ingested data (or `frame`), in percent."""
    return missing_shares(read_ingested(config) if frame is None else frame)


# --- Step timings ----------------------------------------------------------------------------
def scratch_config(config: Config, folder: Path) -> Config:
    """The same settings with every folder the steps write to moved under `folder`."""
    return config.replace(
        output_folder=folder / "ingested",
        output_model_folder=folder / "models",
        prod_deployment_folder=folder / "production",
    )


def time_steps_once(config: Config) -> dict[str, float]:
    """Run ingestion, training and scoring once with `config`; seconds per step."""
    from riskcore.evaluation import score_trained
    from riskcore.ingest import ingest
    from riskcore.model import train

    steps = {"ingestion": ingest, "training": train, "scoring": score_trained}
    seconds = {}
    for step, run_step in steps.items():
        start = time.perf_counter()
        run_step(config)
        seconds[step] = time.perf_counter() - start
    return seconds


def execution_time(config: Config, repeat: int = 1) -> dict[str, float]:
    """Seconds taken by ingestion, training and scoring: the median of `repeat` real runs.

    The steps run in this process and read the configured input and test data, but write only
    to a temporary folder. The libraries are imported before the clock starts: the figures are
    the steps' own work, not Python's start-up.
    """
    import pandas  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.metrics  # noqa: F401

    if repeat < 1:
        raise UserError("The number of timing runs must be at least 1.")
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="risk-timing-") as tmp:
        scratch = scratch_config(config, Path(tmp))
        for number in range(1, repeat + 1):
            runs.append(time_steps_once(scratch))
            log.info("timing run %d of %d: %s", number, repeat,
                     ", ".join(f"{step} {seconds:.3f} s" for step, seconds in runs[-1].items()))
    return {step: round(statistics.median(run[step] for run in runs), 4) for step in STEPS}


# --- Dependencies ----------------------------------------------------------------------------
REQUIREMENT_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def parse_requirements(path: Path, seen: set[Path] | None = None) -> list[tuple[str, str]]:
    """(name, pinned version or specifier) for each requirement, following -r includes."""
    seen = seen if seen is not None else set()
    path = path.resolve()
    if path in seen:
        return []
    seen.add(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(
            f"Requirements file {path} cannot be read ({exc.strerror or exc.__class__.__name__})."
        ) from None
    found: list[tuple[str, str]] = []
    for raw in lines:
        line = raw.split(" #", 1)[0].split(";", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            found.extend(parse_requirements(path.parent / line.split(None, 1)[1].strip(), seen))
            continue
        match = REQUIREMENT_LINE.match(line)
        if line.startswith("-") or not match:
            log.debug("skipping requirements line %r: not a package", raw)
            continue
        name, spec = match.group(1), match.group(3).replace(" ", "")
        pinned = spec[2:] if spec.startswith("==") and "," not in spec else (spec or "unpinned")
        found.append((name, pinned))
    return found


def installed_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


FETCH_FAILURE = re.compile(r"Could not fetch URL (\S+): (.*?) - skipping")
ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


NO_VERSION = "pip gave no version"


def failure_reason(stderr: str) -> str:
    """Why pip found no version, in one short phrase."""
    from urllib.parse import urlsplit

    fetch = FETCH_FAILURE.search(stderr)
    if fetch:
        host = urlsplit(fetch.group(1)).netloc or fetch.group(1)
        detail = fetch.group(2)
        errno = ERRNO.search(detail)
        if errno:
            detail = errno.group(1).strip()
        elif "timed out" in detail or "Read timed out" in detail:
            detail = "timed out"
        return f"package index {host} unreachable ({detail[:80]})"
    errors = [line[len("ERROR: "):] for line in stderr.splitlines() if line.startswith("ERROR: ")]
    if errors:
        return f"pip: {errors[-1][:120]}"
    return NO_VERSION


def ask_pip(name: str, deadline: float, verbose: bool = False) -> subprocess.CompletedProcess | str:
    """Run `pip index versions name` before `deadline`; the finished process, or why it did not finish."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return "no time left for the check"
    command = [sys.executable, "-m", "pip", "index", "versions", name,
               "--disable-pip-version-check", "--no-input",
               "--timeout", f"{max(1.0, min(remaining, 10.0)):.1f}", *(["-vv"] if verbose else [])]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=remaining, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"no answer from the package index within {remaining:.1f} s"
    except OSError as exc:
        return f"pip could not be started ({exc.strerror or exc.__class__.__name__})"


def read_latest(name: str, answer: subprocess.CompletedProcess | str) -> tuple[str, str | None]:
    """The latest version in pip's answer about `name`, or UNKNOWN and why."""
    if isinstance(answer, str):
        return UNKNOWN, answer
    spelled = "[-_.]+".join(re.escape(part) for part in re.split(r"[-_.]+", name))  # pip may normalize
    # The last match: pip prints its answer after any debug output.
    matches = re.findall(rf"^{spelled}\s*\(([^)]+)\)", answer.stdout, re.IGNORECASE | re.MULTILINE)
    if answer.returncode == 0 and matches:
        return matches[-1], None
    if "No module named pip" in answer.stderr:
        return UNKNOWN, "pip is not installed in this environment"
    return UNKNOWN, failure_reason(answer.stderr)


def latest_versions(names: list[str], deadline: float) -> list[tuple[str, str | None]]:
    """(latest version or UNKNOWN, reason) per package, asked before `deadline`.

    The first package is asked alone. When pip finds nothing for it, it is asked once more,
    verbosely, since pip says why only in its debug output; when that reason is not about the
    package (the index cannot be reached, no time is left, no pip), the others are not asked:
    each pip costs most of a second of CPU, and every one would fail the same way. Otherwise the
    others are asked in parallel.
    """
    from concurrent.futures import ThreadPoolExecutor

    first = ask_pip(names[0], deadline)
    version, reason = read_latest(names[0], first)
    if version == UNKNOWN and not isinstance(first, str) and "No module named pip" not in first.stderr:
        verbose = ask_pip(names[0], deadline, verbose=True)
        version, reason = read_latest(names[0], verbose)
        if version == UNKNOWN and not isinstance(verbose, str):
            reason = failure_reason(verbose.stdout + verbose.stderr)
    if version == UNKNOWN and not (reason.startswith("pip: ") or reason == NO_VERSION):
        return [(UNKNOWN, reason)] * len(names)
    rest = names[1:]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(rest)))) as pool:
        answers = list(pool.map(lambda name: ask_pip(name, deadline), rest))
    return [(version, reason), *(read_latest(name, answer) for name, answer in zip(rest, answers, strict=True))]


def version_status(installed: str, latest: str) -> str:
    """"up to date", "outdated", "unknown" or "not installed"."""
    if installed == "not installed":
        return installed
    if latest == UNKNOWN:
        return UNKNOWN
    try:
        from packaging.version import InvalidVersion, Version

        try:
            return "outdated" if Version(installed) < Version(latest) else "up to date"
        except InvalidVersion:
            pass
    except ImportError:
        pass
    return "up to date" if installed == latest else "outdated"


def outdated_packages_list(requirements: Path | str | None = None,
                           timeout: float = DEPENDENCY_TIMEOUT) -> list[dict[str, Any]]:
    """For each package in requirements.txt: pinned, installed and latest version.

    pip is asked about all packages at once, in parallel subprocesses that share one deadline of
    `timeout` seconds; a package whose latest version pip could not find in time gets "unknown"
    and the reason.
    """
    packages = parse_requirements(Path(requirements) if requirements is not None else REQUIREMENTS)
    if not packages:
        return []
    latest = latest_versions([name for name, _ in packages], time.monotonic() + timeout)
    rows = []
    for (name, pinned), (newest, reason) in zip(packages, latest, strict=True):
        installed = installed_version(name)
        rows.append({"package": name, "pinned": pinned, "installed": installed, "latest": newest,
                     "status": version_status(installed, newest), "reason": reason})
    unknown = [row for row in rows if row["latest"] == UNKNOWN]
    if unknown:
        log.warning("latest version unknown for %d of %d packages: %s", len(unknown), len(rows),
                    unknown[0]["reason"])
    return rows


# --- The diagnostics record ------------------------------------------------------------------
def run(config: Config, repeat: int = 1, timeout: float = DEPENDENCY_TIMEOUT) -> dict[str, Any]:
    """Compute every diagnostic and write the record to output_model_path/diagnostics.json."""
    from riskcore.evaluation import read_test_data

    deployment = require_deployment(config.prod_deployment_folder)
    model = load_deployed_model(deployment)
    test = read_test_data(config)
    ingested = read_ingested(config)
    record = {
        "generated_at": utc_now(),
        "model_version": deployment.model_version,
        "release": deployment.release,
        "summary": summarize(ingested),
        "missing": missing_shares(ingested),
        "ingested_rows": int(len(ingested)),
        "timings": execution_time(config, repeat),
        "timing_runs": repeat,
        "dependencies": outdated_packages_list(timeout=timeout),
        "predictions": model_predictions(config, test, model=model),
        "test_data": TEST_DATA,
    }
    # The record is stamped when it is complete, so its time says how fresh every part is.
    record["generated_at"] = utc_now()
    path = config.output_model_folder / DIAGNOSTICS_RECORD
    atomic_write_json(path, record)
    log.info("wrote %s for model %s", path, deployment.model_version)
    return record


# --- Printing --------------------------------------------------------------------------------
def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1e6 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def text_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table: text left-aligned, numbers right-aligned."""
    cells = [[format_value(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) and bool(rows)
               for i in range(len(headers))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def summary_rows(summary: list[dict[str, Any]]) -> list[list[Any]]:
    """The long summary list as one row per column, one cell per statistic."""
    return [[column, *(stats.get(name) for name in STATISTICS)] for column, stats in summary_table(summary).items()]


def render(record: dict[str, Any]) -> str:
    """The diagnostics record as readable text."""
    predictions = record["predictions"]
    positives = sum(predictions)
    parts = [
        f"Diagnostics of model {record['model_version']} (release {record['release']}), "
        f"taken {record['generated_at']}",
        "",
        f"Summary statistics of the ingested data ({record['ingested_rows']:,} rows)",
        text_table(["column", *STATISTICS], summary_rows(record["summary"])),
        "",
        "Missing data",
        text_table(["column", "missing %", "missing rows"],
                   [[m["column"], m["missing_percent"], m["missing_count"]] for m in record["missing"]]),
        "",
        f"Step timings (median of {record['timing_runs']} run{'s' if record['timing_runs'] > 1 else ''})",
        text_table(["step", "seconds"], [[step, s] for step, s in record["timings"].items()]),
        "",
        "Dependencies",
        text_table(["package", "pinned", "installed", "latest", "status"],
                   [[d["package"], d["pinned"], d["installed"], d["latest"], d["status"]]
                    for d in record["dependencies"]]),
    ]
    reasons = sorted({d["reason"] for d in record["dependencies"] if d.get("reason")})
    parts.extend(f"  latest version unknown: {reason}" for reason in reasons)
    parts += ["", f"Predictions on the test data: {len(predictions)} rows, {positives} predicted to exit",
              " ".join(str(p) for p in predictions[:60]) + (" ..." if len(predictions) > 60 else "")]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Command line: compute the diagnostics, write the record and print it."""
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="time each step N times and report the median (default: 1)")
    parser.add_argument("--timeout", type=float, default=DEPENDENCY_TIMEOUT, metavar="SECONDS",
                        help=f"time limit for the dependency check (default: {DEPENDENCY_TIMEOUT:g})")
    parser.add_argument("--json", action="store_true", help="print the record as JSON")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        import json

        if args.repeat < 1:
            raise UserError("--repeat must be at least 1.")
        if args.timeout <= 0:
            raise UserError("--timeout must be positive.")
        record = run(load_config(args.config), repeat=args.repeat, timeout=args.timeout)
        print(json.dumps(record, indent=2) if args.json else render(record))

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
