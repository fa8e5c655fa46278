"""GET /history: the automation's run history as JSON, newest run first, paged.

Each run carries every column of the history (riskcore.ops.history): its drift check (F1 on the new
data against the baseline, and per feature PSI and KS), rejected files, decision, model versions
and step timings; the new rows' quantiles (about a hundred numbers per feature, which the report
draws) only with ?quantiles=1. The history is the one the page shows (RiskService.history: read through
riskcore.ops.history's one reader, once per version of the file, one stat per request), and only the
asked page is sent.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from riskcore.api.errors import KEY_REFUSED, error_answer, json_response
from riskcore.api.query import DEFAULT_LIMIT, MAX_LIMIT, known_parameters, query_number
from riskcore.api.risk_service import service
from riskcore.contract import FEATURES
from riskcore.model.drift_evidence import TOO_FEW_ROWS
from riskcore.ops.history import HISTORY_COLUMNS, QUANTILE_COLUMNS

history = Blueprint("history", __name__)

PARAMETERS = ("limit", "offset", "quantiles")


@history.get("/history")
def list_runs() -> Response:
    """The automation's run history, newest first: ?limit= runs (default 50) from ?offset= (default 0); the
    quantile lists with ?quantiles=1."""
    known_parameters("/history", PARAMETERS)
    limit = query_number("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = query_number("offset", 0, 0)
    quantiles = query_number("quantiles", 0, 0, 1) == 1
    runs = service().history().newest_first
    page = runs[offset:offset + limit]
    if not quantiles:
        page = [{key: value for key, value in run.items() if key not in QUANTILE_COLUMNS} for run in page]
    end = offset + len(page)
    return json_response({"total": len(runs), "limit": limit, "offset": offset, "count": len(page),
                          "next_offset": end if end < len(runs) else None, "runs": page})


# --- Its OpenAPI description (riskcore.api.openapi adds it to the document) ------------------------
SQL_TYPES = {"TEXT": "string", "INTEGER": "integer", "REAL": "number"}


def feature_drift_schema() -> dict[str, Any]:
    number = {"type": "number"}
    return {"type": "object", "required": ["psi", "drift"], "properties": {
        "psi": number, "psi_label": {"enum": ["stable", "some shift", "drift", TOO_FEW_ROWS]},
        "rows": {"type": "integer", "minimum": 0},
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
        "call_effect": {**nullable_object, "description": "does calling help: the clients to call against the "
                                                         "measurement group (riskcore.report.call_effect)",
                        "required": ["cycles", "called", "measurement_group", "difference", "interval", "sentence"],
                        "properties": {
            "cycles": {"type": "array", "items": {"type": "integer"}}, "sentence": {"type": "string"},
            "difference": {"type": ["number", "null"], "description": "share left: called minus measurement group"},
            "interval": {"type": ["array", "null"], "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
            "called": {"type": "object"}, "measurement_group": {"type": "object"}}},
        "window_clients": {"type": ["integer", "null"], "minimum": 0,
                           "description": "the clients the drift check's rows (window_rows) were snapshots of, each "
                                          "once: the estimate takes each one's latest snapshot (estimated_rows), F1 "
                                          "each one's latest labelled snapshot (window_labelled)"},
        "estimated_f1_interval": {"type": ["array", "null"], "items": {"type": "number"}, "minItems": 2,
                                  "maxItems": 2, "description": "the estimated F1's 95% interval [low, high]"},
        "model_drift": {"type": ["boolean", "null"], "description": "the check found model drift, whatever was "
                        "done about it (a retrain, a wait for a holdout big enough to judge one, a pinned release)"},
        "estimated_drift": {"type": ["boolean", "null"], "description": "the warning: a drop estimated without labels"},
        "calibration": {**nullable_object, "description": "a labelled window's calibration: ECE and Brier score of "
                                                         "the calibrated probabilities, the reliability bins",
                        "properties": {
            "ece": {"type": "number", "minimum": 0, "maximum": 1}, "brier": {"type": "number", "minimum": 0,
                                                                              "maximum": 1},
            "rows": {"type": "integer", "minimum": 0}, "bins": {"type": "integer", "minimum": 1},
            "reliability": {"type": "array", "items": {"type": "object", "properties": {
                "predicted": {"type": "number"}, "observed": {"type": "number"}, "rows": {"type": "integer"}}}}}},
        "new_rows_quantiles": {**nullable_object, "description": "per feature, quantiles of the new rows the drift "
                                                                "check took", "additionalProperties": {
            "type": "array", "items": {"type": "number"}}},
    })
    return {"type": "object", "required": ["id", "run_id", "started_at", "outcome"], "properties": properties}


def history_paths() -> dict[str, Any]:
    """The OpenAPI path item of GET /history."""
    page = {"type": "object", "required": ["total", "limit", "offset", "count", "next_offset", "runs"], "properties": {
        "total": {"type": "integer", "minimum": 0, "description": "runs in the history"},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        "offset": {"type": "integer", "minimum": 0},
        "count": {"type": "integer", "minimum": 0, "description": "runs in this page"},
        "next_offset": {"type": ["integer", "null"], "minimum": 1,
                        "description": "the offset of the next page; null on the last"},
        "runs": {"type": "array", "maxItems": MAX_LIMIT, "items": run_schema()}}}
    parameters = [
        {"name": "limit", "in": "query", "required": False, "description": "runs per page",
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
        {"name": "offset", "in": "query", "required": False, "description": "runs to skip, newest first",
         "schema": {"type": "integer", "minimum": 0, "default": 0}},
        {"name": "quantiles", "in": "query", "required": False,
         "description": "1: each run carries new_rows_quantiles (about a hundred numbers per feature); left out "
                        "by default", "schema": {"type": "integer", "enum": [0, 1], "default": 0}},
    ]
    return {"/history": {"get": {
        "summary": "The automation's run history, newest run first, paged: drift checks, decisions, timings",
        "parameters": parameters,
        "responses": {
            "200": {"description": "A page of runs (an empty list before the first run)",
                    "content": {"application/json": {"schema": page}}},
            "400": error_answer("A limit, offset or quantiles that is not a whole number in range, or an unknown "
                         "parameter (the message names it)"),
            "401": error_answer(KEY_REFUSED),
        }}}}
