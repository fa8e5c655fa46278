"""The calls endpoints, for a CRM to sync with (X-API-Key, as every JSON endpoint): the calls managers recorded.

GET /calls        newest call first, paged (limit, offset, next_offset), ?corporation= for one client
POST /calls       a call or a list of calls ({corporation, when, outcome, note, by}); one already stored is not doubled
GET /calls.csv    every call, in the order recorded

The store is riskcore.ops.calls (calls.sqlite beside the run history); the web page's form writes
the same store (riskcore.api.pages).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from flask import Blueprint, Response, request

from riskcore.api.errors import KEY_REFUSED, ApiError, error_answer, json_response
from riskcore.api.query import DEFAULT_LIMIT, MAX_LIMIT, known_parameters, query_number
from riskcore.api.request_rows import json_body
from riskcore.api.risk_service import service
from riskcore.contract import ID_COLUMN
from riskcore.ops.calls import (
    CALL_FIELDS,
    CSV_COLUMNS,
    MAX_CALLS,
    MAX_CLIENT,
    MAX_NOTE,
    OUTCOMES,
    CallError,
    all_calls,
    calls_csv,
    calls_path,
    check_calls,
    read_calls,
    record_calls,
)

calls = Blueprint("calls", __name__)

LIST_PARAMETERS = ("limit", "offset", ID_COLUMN)


def store():
    return calls_path(service().config.output_model_folder)


@calls.get("/calls")
def list_calls() -> Response:
    """The recorded calls, newest first: ?limit= (default 50) from ?offset= (default 0), ?corporation= for one
    client."""
    known_parameters("/calls", LIST_PARAMETERS)
    limit = query_number("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = query_number("offset", 0, 0)
    client = request.args.get(ID_COLUMN)
    if client is not None and not 0 < len(client.strip()) <= MAX_CLIENT:
        raise ApiError(400, f'The query parameter "{ID_COLUMN}" must be a client id of 1 to {MAX_CLIENT} '
                            "characters.", field=ID_COLUMN)
    total, found = read_calls(store(), limit, offset, client.strip() if client is not None else None)
    end = offset + len(found)
    return json_response({"total": total, "limit": limit, "offset": offset, "count": len(found),
                          "next_offset": end if end < total else None, "calls": found})


@calls.post("/calls")
def add_calls() -> Response:
    """Record a call or a list of calls; a call already stored is counted, not stored again."""
    if request.args:
        raise ApiError(400, "POST /calls takes no query parameters; send the calls in the JSON body.")
    if not (request.mimetype == "application/json" or request.mimetype.endswith("+json")):
        shown = json.dumps(request.mimetype[:60]) if request.mimetype else "none"
        raise ApiError(415, f"POST /calls takes application/json; the request's content type is {shown}.")
    document = json_body("a call {corporation, when, outcome, note, by} or a list of calls")
    try:
        checked = check_calls(document, date.today())
    except CallError as exc:
        raise ApiError(413 if exc.too_many else 400, str(exc), field=exc.field) from None
    stored, repeats = record_calls(store(), checked)
    return json_response({"recorded": len(stored), "already_stored": repeats, "calls": stored,
                          "not_in_data": not_in_data([call.corporation for call in checked])})


def not_in_data(clients: list[str]) -> list[str] | None:
    """The ids among `clients` that the ingested data does not hold (neither on the call list nor among the clients
    who left), sorted; None when there is no call list to check them against (no deployment or no ingested data).

    Such a call is stored all the same (the client may arrive with the next export), but no page, list or
    measurement shows it: a CRM that sent a mistyped id learns it here.
    """
    from riskcore.api.client_story import has_left
    from riskcore.api.paged_call_list import CallList

    risk = service()
    try:
        calls = risk.call_list(risk.models.get())
    except ApiError:
        return None
    if not isinstance(calls, CallList):
        return None
    return sorted({client for client in clients if calls.place(client) is None and not has_left(risk, client)})


@calls.get("/calls.csv")
def calls_export() -> Response:
    """Every recorded call as CSV, in the order recorded."""
    known_parameters("/calls.csv", ())
    return Response(calls_csv(all_calls(store())), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=calls.csv"})


# --- Its OpenAPI description (riskcore.api.openapi adds it to the document) ------------------------
def call_schema(stored: bool) -> dict[str, Any]:
    """A call as sent (stored False: when and note optional) or as stored (with id and recorded_at)."""
    properties: dict[str, Any] = {
        ID_COLUMN: {"type": "string", "minLength": 1, "maxLength": MAX_CLIENT, "description": "the client's id"},
        "when": {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$",
                 "description": "the day of the call, YYYY-MM-DD; default today"},
        "outcome": {"enum": list(OUTCOMES), "description": "; ".join(f"{k}: {v}" for k, v in OUTCOMES.items())},
        "note": {"type": "string", "maxLength": MAX_NOTE},
        "by": {"type": "string", "minLength": 1, "description": "who called"},
    }
    if not stored:
        return {"type": "object", "required": [ID_COLUMN, "outcome", "by"], "properties": properties,
                "additionalProperties": False}
    properties.update({"id": {"type": "integer", "minimum": 1}, "recorded_at": {"type": "string"}})
    return {"type": "object", "required": ["id", *CALL_FIELDS, "recorded_at"], "properties": properties}


def calls_paths() -> dict[str, Any]:
    """The OpenAPI path items of /calls and /calls.csv."""
    def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}

    stored = {"type": "array", "items": call_schema(stored=True)}
    page = {"type": "object", "required": ["total", "limit", "offset", "count", "next_offset", "calls"], "properties": {
        "total": {"type": "integer", "minimum": 0}, "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        "offset": {"type": "integer", "minimum": 0}, "count": {"type": "integer", "minimum": 0,
                                                               "description": "calls in this page"},
        "next_offset": {"type": ["integer", "null"]},
        "calls": {**stored, "maxItems": MAX_LIMIT}}}
    recorded = {"type": "object", "required": ["recorded", "already_stored", "calls", "not_in_data"], "properties": {
        "recorded": {"type": "integer", "minimum": 0}, "already_stored": {"type": "integer", "minimum": 0},
        "calls": stored,
        "not_in_data": {"type": ["array", "null"], "items": {"type": "string"},
                        "description": "ids of the calls sent that the ingested data does not hold (stored all the "
                                       "same; no page or list shows them); null when there is no call list to check "
                                       "them against"}}}
    unauthorised = error_answer(KEY_REFUSED)
    return {
        "/calls": {
            "get": {
                "summary": "The calls managers recorded, newest first, paged",
                "parameters": [
                    query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                          "calls per page"),
                    query("offset", {"type": "integer", "minimum": 0, "default": 0}, "calls to skip"),
                    query(ID_COLUMN, {"type": "string", "maxLength": MAX_CLIENT}, "one client's calls only")],
                "responses": {"200": {"description": "A page of calls", "content": {"application/json": {
                    "schema": page}}}, "400": error_answer(f"A bad limit, offset, {ID_COLUMN} or unknown parameter"),
                    "401": unauthorised}},
            "post": {
                "summary": "Record a call or a list of calls (a call already stored is not stored twice)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    call_schema(stored=False),
                    {"type": "array", "minItems": 1, "maxItems": MAX_CALLS, "items": call_schema(stored=False)}]}}}},
                "responses": {"200": {"description": "The calls stored", "content": {"application/json": {
                    "schema": recorded}}}, "400": error_answer("A call with a bad field; the message names it"),
                    "401": unauthorised, "413": error_answer(f"More than {MAX_CALLS} calls, or a body over the limit"),
                    "415": error_answer("Not JSON")}},
        },
        "/calls.csv": {"get": {
            "summary": "Every call as CSV, in the order recorded",
            "description": f"Columns: {', '.join(CSV_COLUMNS)}. A cell that would start a spreadsheet formula "
                           "(=, +, -, @) starts with an apostrophe.",
            "responses": {"200": {"description": "The calls", "content": {"text/csv": {"schema": {
                "type": "string", "pattern": f"^{','.join(CSV_COLUMNS)}\\n"}}}},
                "400": error_answer("A query parameter: the export takes none"), "401": unauthorised}}},
    }
