"""The evidence endpoints: GET /history, the automation's run history as JSON, newest run first, paged.

Each run carries every column of the history (riskcore.ops.history): its drift check (F1 on the new
data against the baseline, and per feature PSI and KS), rejected files, decision, model versions
and step timings. The history is read through riskcore.ops.history's one reader, once per version of
the file (one stat per request), and only the asked page is sent.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from flask import Blueprint, Response, current_app, request

from riskcore.api.errors import ApiError, json_response
from riskcore.api.serving import file_signature
from riskcore.contract import API_KEY_HEADER, FEATURES, RUN_HISTORY
from riskcore.ops.history import HISTORY_COLUMNS, read_history

evidence = Blueprint("evidence", __name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


class HistoryCache:
    """The decoded run history, read again only when the file changed."""

    def __init__(self) -> None:
        self._entry: tuple[Any, list[dict[str, Any]]] | None = None
        self._lock = threading.Lock()

    def runs(self, path) -> list[dict[str, Any]]:
        """Every run, newest first."""
        signature = file_signature(path)
        entry = self._entry
        if entry is not None and entry[0] == signature:
            return entry[1]
        with self._lock:
            rows = [finite(row) for row in read_history(path)[::-1]] if signature is not None else []
            self._entry = (signature, rows)
        return rows


def add_cache(state) -> None:
    """Each app that registers the blueprint gets its own cache."""
    state.app.extensions["risk_history"] = HistoryCache()


evidence.record_once(add_cache)


def finite(value: Any) -> Any:
    """A decoded history value with any NaN or infinity (which JSON cannot carry) as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [finite(inner) for inner in value]
    return value


def whole_number(name: str, default: int, lowest: int, highest: int | None) -> int:
    """A query parameter that must be a whole number in a range, or ApiError 400 naming it."""
    given = request.args.getlist(name)
    if not given:
        return default
    bounds = f"from {lowest} to {highest}" if highest is not None else f"of at least {lowest}"
    message = f'The query parameter "{name}" must be a whole number {bounds}.'
    if len(given) > 1:
        raise ApiError(400, f'The query parameter "{name}" may be given once only.', field=name)
    text = given[0].strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise ApiError(400, message, field=name)
    value = int(text)
    if value < lowest or (highest is not None and value > highest):
        raise ApiError(400, message, field=name)
    return value


@evidence.get("/history")
def history() -> Response:
    """The automation's run history, newest first: ?limit= runs (default 50) from ?offset= (default 0)."""
    limit = whole_number("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = whole_number("offset", 0, 0, None)
    config = current_app.extensions["risk"].config
    runs = current_app.extensions["risk_history"].runs(config.output_model_folder / RUN_HISTORY)
    return json_response({"total": len(runs), "limit": limit, "offset": offset,
                          "runs": runs[offset:offset + limit]})


# --- Its OpenAPI description (riskcore.api.openapi adds it to the document) ------------------------
SQL_TYPES = {"TEXT": "string", "INTEGER": "integer", "REAL": "number"}


def feature_drift_schema() -> dict[str, Any]:
    number = {"type": "number"}
    return {"type": "object", "required": ["psi", "drift"], "properties": {
        "psi": number, "psi_label": {"enum": ["stable", "some shift", "drift"]},
        "ks_statistic": {"type": "number", "minimum": 0, "maximum": 1},
        "ks_p_value": {"type": "number", "minimum": 0, "maximum": 1}, "drift": {"type": "boolean"}}}


def scores_schema() -> dict[str, Any]:
    """One model's figures on one data set (riskcore.model.evaluation.scores_with_intervals)."""
    share = {"type": "number", "minimum": 0, "maximum": 1}
    interval = {"type": ["array", "null"], "items": share, "minItems": 2, "maxItems": 2,
                "description": "bootstrap 95% interval"}
    return {"type": "object", "required": ["rows", "f1", "auc"], "properties": {
        "rows": {"type": "integer", "minimum": 0}, "positives": {"type": "integer", "minimum": 0},
        "few_rows": {"type": "boolean", "description": "measured on fewer than 30 rows"},
        "f1": share, "f1_interval": interval, "auc": {**share, "type": ["number", "null"]}, "auc_interval": interval,
        "resamples": {"type": "integer", "minimum": 1}, "seed": {"type": "integer"}}}


def both_models_schema() -> dict[str, Any]:
    return {"type": "object", "required": ["old", "new"], "properties": {"old": scores_schema(),
                                                                          "new": scores_schema()}}


def run_schema() -> dict[str, Any]:
    """One run of the history: every column, null where a run did not get that far."""
    nullable_object = {"type": ["object", "null"]}
    properties: dict[str, Any] = {name: {"type": [SQL_TYPES[kind], "null"]} for name, kind in HISTORY_COLUMNS.items()}
    properties.update({
        "id": {"type": "integer", "minimum": 1},
        "new_files": {"type": ["array", "null"], "items": {"type": "string"}},
        "files_rejected": {"type": ["array", "null"], "items": {
            "type": "object", "properties": {"name": {"type": "string"}, "reason": {"type": "string"}}}},
        "data_drift": {**nullable_object, "description": "PSI and KS per feature of the checked model's training "
                                                        "data against the new rows", "properties": {
            "drift": {"type": "boolean"},
            "features": {"type": "object", "additionalProperties": feature_drift_schema(),
                         "propertyNames": {"enum": list(FEATURES)}}}},
        "step_seconds": {**nullable_object, "additionalProperties": {"type": "number", "minimum": 0},
                         "description": "seconds per step of the run"},
        "evaluation": {**nullable_object, "description": "a retrain's old and new model on the held-out new rows "
                                                        "and on the test data", "properties": {
            "old_model": {"type": "string"}, "new_model": {"type": "string"}, "new_worse": {"type": "boolean"},
            "holdout": {"oneOf": [{"type": "null"}, both_models_schema()]}, "test_data": both_models_schema()}},
        "new_rows_quantiles": {**nullable_object, "description": "per feature, quantiles of the new rows the drift "
                                                                "check took", "additionalProperties": {
            "type": "array", "items": {"type": "number"}}},
    })
    return {"type": "object", "required": ["id", "run_id", "started_at", "outcome"], "properties": properties}


def history_paths() -> dict[str, Any]:
    """The OpenAPI path item of GET /history."""
    def error(description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

    page = {"type": "object", "required": ["total", "limit", "offset", "runs"], "properties": {
        "total": {"type": "integer", "minimum": 0, "description": "runs in the history"},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        "offset": {"type": "integer", "minimum": 0},
        "runs": {"type": "array", "maxItems": MAX_LIMIT, "items": run_schema()}}}
    parameters = [
        {"name": "limit", "in": "query", "required": False, "description": "runs per page",
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
        {"name": "offset", "in": "query", "required": False, "description": "runs to skip, newest first",
         "schema": {"type": "integer", "minimum": 0, "default": 0}},
    ]
    return {"/history": {"get": {
        "summary": "The automation's run history, newest run first, paged: drift checks, decisions, timings",
        "parameters": parameters,
        "responses": {
            "200": {"description": "A page of runs (an empty list before the first run)",
                    "content": {"application/json": {"schema": page}}},
            "400": error("A limit or offset that is not a whole number in range"),
            "401": error(f"Missing or wrong {API_KEY_HEADER}"),
        }}}}
