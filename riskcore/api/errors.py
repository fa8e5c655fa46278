"""The API's JSON and refusals: how every answer is encoded, ApiError, the JSON error document, and the handlers
that make every error JSON."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

import orjson
from flask import Flask, Response, request
from flask.json.provider import JSONProvider
from werkzeug.exceptions import HTTPException

from riskcore.contract import API_KEY_HEADER

log = logging.getLogger(__name__)

MEGABYTE = 1024 * 1024
# Werkzeug's own errors, in our words; a 413 names the configured limit (body_too_large).
ERROR_MESSAGES = {
    404: "No such endpoint; GET /openapi.json lists them.",
    405: "This endpoint does not accept that method; see the Allow header.",
}


class ApiError(Exception):
    """A request the API refuses: an HTTP status and one sentence for the caller."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}  # sent with the answer (a 429's Retry-After)


Answer = tuple[int, bytes]  # an HTTP status and a JSON body, ready to send


# numpy scalars (np.float64 is a float to the standard library) and non-string keys ("1", "true") written as
# json.dumps wrote them; dict keys keep the order they were built in, as before (the API never sorted them).
# Allowing non-string keys costs 0.45 of the 1 ms below, so they are only allowed for the answers that have one.
ANSWER_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def json_bytes(document: Any) -> bytes:
    """A JSON answer's body: compact UTF-8 (not \\u escapes), no trailing newline, NaN and infinity as null.

    orjson, not json.dumps: the 850 KB answer to POST /prediction of 1,000 records takes 1 ms instead of 10-12 ms,
    which halves that request in-process (docs/benchmarks.md). The values are the ones json.dumps wrote (small
    floats without an exponent: 0.0000527 for 5.27e-05); a NaN, which json.dumps refused with a 500, is null here,
    as the answers' builders already write it.
    """
    try:
        return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError:  # a key that is not a string (or what neither call encodes: raised again)
        return orjson.dumps(document, option=ANSWER_OPTIONS)


def answer_response(answer: Answer) -> Response:
    """An answer already encoded (a status and its JSON bytes, as the risk service keeps them) as a response."""
    status, body = answer
    return Response(body, status=status, mimetype="application/json")


def json_response(document: Any, status: int = 200) -> Response:
    return Response(json_bytes(document), status=status, mimetype="application/json")


class AnswerJSONProvider(JSONProvider):
    """Flask's own JSON (jsonify, a view returning a dict, Jinja's tojson) encoded as the answers are; request
    bodies decoded by the standard library, whose errors json_body words (orjson refuses NaN, which the row
    checks name)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return json_bytes(obj).decode("utf-8")

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return json.loads(s, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        return json_response(self._prepare_response_obj(args, kwargs))


def error_document(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    """{"status", "error" (the reason phrase), "message", and "field" when one field is at fault}."""
    document: dict[str, Any] = {"status": status, "error": HTTPStatus(status).phrase, "message": message}
    if field is not None:
        document["field"] = field
    return document


KEY_REFUSED = f"Missing or wrong {API_KEY_HEADER}"  # the 401 every keyed endpoint may answer, as OpenAPI says it
KEY_TRIES_USED_UP = "Too many wrong keys from this address in the last minute (Retry-After says how long to wait)"


def error_answer(description: str) -> dict[str, Any]:
    """An OpenAPI response holding the Error document (error_document)."""
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def body_too_large(limit: int) -> str:
    """The 413 message, whether werkzeug refused the Content-Length or a streamed body reached the limit."""
    return f"The request body is larger than the {limit // MEGABYTE} MB limit."


def handle_api_error(exc: ApiError) -> Response:
    response = json_response(error_document(exc.status, exc.message, exc.field), exc.status)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = f'ApiKey header="{API_KEY_HEADER}"'
    response.headers.update(exc.headers)
    return response


def handle_http_error(exc: HTTPException) -> Response:
    """Werkzeug's errors (404, 405, 413, ...) as JSON, keeping their headers (Allow)."""
    status = exc.code or 500
    if status == 413 and request.max_content_length is not None:
        message = body_too_large(request.max_content_length)
    else:
        message = ERROR_MESSAGES.get(status, exc.description or "")
    response = exc.get_response()
    response.set_data(json_bytes(error_document(status, message)))
    response.mimetype = "application/json"
    return response


def handle_unexpected(exc: Exception) -> Response:
    """A bug: logged with its traceback, answered with a 500 that names nothing of the server."""
    log.exception("unexpected error in %s %s", request.method, request.path)
    return json_response(error_document(500, "Internal error; see the server log."), 500)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
