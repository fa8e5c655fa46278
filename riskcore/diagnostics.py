"""The diagnostics record: predictions, statistics, missing data, step timings and dependencies, as
JSON for the API (output_model_path/diagnostics.json) and as text for the command line."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from riskcore.config import Config
from riskcore.contract import DIAGNOSTICS_RECORD, FEATURES, TEST_DATA, DataError
from riskcore.dependencies import DEPENDENCY_TIMEOUT, outdated_packages_list
from riskcore.evaluation import read_test_data
from riskcore.files import atomic_write_json, utc_now
from riskcore.releases import load_deployed_model, require_deployment
from riskcore.schema import features_of
from riskcore.summary import STATISTICS, missing_shares, read_ingested, summarize, summary_table
from riskcore.timing import execution_time

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


def write_diagnostics(config: Config, repeat: int = 1, timeout: float = DEPENDENCY_TIMEOUT,
                      check_dependencies: DependencyCheck = outdated_packages_list) -> dict[str, Any]:
    """Compute every diagnostic of the deployed model and write the record to output_model_path/diagnostics.json.

    `check_dependencies(timeout=...)` gives the dependency rows (diagnostics.py passes its course-named function).
    """
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
        "dependencies": check_dependencies(timeout=timeout),
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
        "Dependencies",
        text_table(["package", "pinned", "installed", "latest", "status"],
                   [[d["package"], d["pinned"], d["installed"], d["latest"], d["status"]]
                    for d in record["dependencies"]]),
    ]
    reasons = sorted({d["reason"] for d in record["dependencies"] if d.get("reason")})
    parts.extend(f"  latest version unknown: {reason}" for reason in reasons)
    parts += ["", f"Predictions on the test data: {len(predicted)} rows, {sum(predicted)} predicted to exit",
              " ".join(str(p) for p in predicted[:60]) + (" ..." if len(predicted) > 60 else "")]
    return "\n".join(parts)
