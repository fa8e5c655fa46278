"""The diagnostics record: predictions, statistics, missing data, step timings and dependencies, as
JSON for the API (output_model_path/diagnostics.json) and as text for the command line."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from riskcore.config import Config
from riskcore.contract import DIAGNOSTICS_RECORD, FEATURES, TEST_DATA, DataError
from riskcore.data.validation import features_of
from riskcore.files import atomic_write_json, parse_utc, read_json, utc_now
from riskcore.formatting import table_cell
from riskcore.model.evaluation import read_test_data
from riskcore.release.load import load_deployed_model, require_deployment
from riskcore.report.dependencies import DEPENDENCY_TIMEOUT, outdated_packages_list, rows_from_earlier_answer
from riskcore.report.statistics import STATISTICS, missing_shares, read_ingested, summarize, summary_table
from riskcore.report.timing import execution_time

log = logging.getLogger(__name__)


def feature_matrix(dataframe) -> np.ndarray:
    """The three features as float64, or a DataError naming the first missing or bad column."""
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


def predictions(model, dataframe) -> list[int]:
    """A model's class predictions (0 or 1) for the rows of `dataframe`, as plain ints."""
    if len(dataframe) == 0:
        return []
    return [int(p) for p in model.predict(feature_matrix(dataframe))]


DependencyCheck = Callable[..., list[dict[str, Any]]]


def earlier_record(config: Config) -> dict[str, Any] | None:
    """The diagnostics record an earlier run wrote, if it can be read."""
    path = config.output_model_folder / DIAGNOSTICS_RECORD
    if not path.is_file():
        return None
    try:
        record = read_json(path, "Diagnostics record")
    except DataError as exc:
        log.info("%s; starting afresh", exc)
        return None
    return record if isinstance(record, dict) else None


def hours_since(moment: Any) -> float | None:
    """Hours from an ISO 8601 UTC time to now; None when it is unreadable or in the future (a clock set back)."""
    then = parse_utc(moment)
    if then is None:
        return None
    hours = (datetime.now(UTC) - then).total_seconds() / 3600
    return hours if hours >= 0 else None


def dependency_rows(config: Config, timeout: float, check_dependencies: DependencyCheck) -> tuple[list, str]:
    """The dependency rows and when the package index gave their latest versions.

    The index is asked at most every automation.dependency_check_hours; in between, the earlier
    answer stands, with the pins and installed versions of today.
    """
    every = float(config.automation["dependency_check_hours"])
    earlier = earlier_record(config) or {}
    asked_at = earlier.get("dependencies_checked_at")
    age = hours_since(asked_at)
    if age is not None and age < every and isinstance(earlier.get("dependencies"), list):
        rows = rows_from_earlier_answer(earlier["dependencies"])
        if rows is not None:
            log.info("dependency check: latest versions as the package index gave them at %s (%.1f h ago; asked at "
                     "most every %g h, automation.dependency_check_hours)", asked_at, age, every)
            return rows, asked_at
    why = ("never asked before" if asked_at is None else
           f"last asked at {asked_at}" + (f", {age:.1f} h ago" if age is not None else ""))
    log.info("dependency check: asking the package index for the latest versions (%s; within %g s)", why, timeout)
    return check_dependencies(timeout=timeout), utc_now()


def write_diagnostics(config: Config, repeat: int = 1, timeout: float = DEPENDENCY_TIMEOUT,
                      check_dependencies: DependencyCheck = outdated_packages_list) -> dict[str, Any]:
    """Compute every diagnostic of the deployed model and write the record to output_model_path/diagnostics.json.

    `check_dependencies(timeout=...)` gives the dependency rows (diagnostics.py passes its course-named function).
    """
    deployment = require_deployment(config.prod_deployment_folder)
    model = load_deployed_model(deployment)
    test = read_test_data(config)
    ingested = read_ingested(config)
    timings = execution_time(config, repeat)
    dependencies, asked_at = dependency_rows(config, timeout, check_dependencies)
    record = {
        "generated_at": None,
        "model_version": deployment.model_version,
        "release": deployment.release,
        "summary": summarize(ingested),
        "missing": missing_shares(ingested),
        "ingested_rows": int(len(ingested)),
        "timings": timings,
        "timing_runs": repeat,
        "dependencies": dependencies,
        "dependencies_checked_at": asked_at,  # when the package index gave the latest versions
        "predictions": predictions(model, test),
        "test_data": TEST_DATA,
    }
    # The record is stamped when it is complete, so its time says how fresh every part is.
    record["generated_at"] = utc_now()
    path = config.output_model_folder / DIAGNOSTICS_RECORD
    atomic_write_json(path, record)
    log.info("wrote %s for model %s", path, deployment.model_version)
    return record


# --- As text -----------------------------------------------------------------------------------
def text_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table: text left-aligned, numbers right-aligned."""
    cells = [[table_cell(v) for v in row] for row in rows]
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
    predicted = record["predictions"]
    runs = record["timing_runs"]
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
        f"Step timings (median of {runs} run{'s' if runs > 1 else ''})",
        text_table(["step", "seconds"], [[step, s] for step, s in record["timings"].items()]),
        "",
        "Dependencies" + (f" (latest versions as the package index gave them at {record['dependencies_checked_at']})"
                          if record.get("dependencies_checked_at") else ""),
        text_table(["package", "pinned", "installed", "latest", "status"],
                   [[d["package"], d["pinned"], d["installed"], d["latest"], d["status"]]
                    for d in record["dependencies"]]),
    ]
    reasons = sorted({d["reason"] for d in record["dependencies"] if d.get("reason")})
    parts.extend(f"  latest version unknown: {reason}" for reason in reasons)
    parts += ["", f"Predictions on the test data: {len(predicted)} rows, {sum(predicted)} predicted to exit",
              " ".join(str(p) for p in predicted[:60]) + (" ..." if len(predicted) > 60 else "")]
    return "\n".join(parts)
