"""The rows a prediction request supplies: JSON records, a CSV body, an upload, or a confined dataset location.

Every form ends as (client ids, feature matrix, revenues) or an ApiError naming the field at fault;
revenues (annual_revenue, optional: never a feature) are None where no row gives one. JSON
records are checked in plain Python against the contract's rules (riskcore.data.contract_rules:
no DataFrame for a few rows); CSV content goes through the one reader of client CSV files and the data contract's
own checks (riskcore.data.client_csv), imported on the first CSV request.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
from flask import request

from riskcore.api.errors import MEGABYTE, ApiError, body_too_large
from riskcore.config import Config
from riskcore.contract import FEATURES, ID_COLUMN, REVENUE, DataError
from riskcore.data.contract_rules import RecordError, check_record, json_kind

MAX_CONTENT_LENGTH = 16 * MEGABYTE  # request bodies
MAX_DATASET_BYTES = 64 * MEGABYTE  # a dataset file named by location
MAX_RECORDS = 100_000  # rows per prediction request, whatever the input form
MAX_LOCATION_LENGTH = 1024

PREDICTION_FIELDS = frozenset({"records", "dataset"})
PERCENT_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
CSV_TYPES = frozenset({"text/csv", "application/csv"})
OUTSIDE = '"dataset" must name a file inside the input, ingested or test data folder.'

# Client ids, their feature matrix (numpy, float64) and their revenues (None: unknown, or no row gives one).
Rows = tuple[list[str], Any, list[float | None] | None]


# --- JSON records ----------------------------------------------------------------------------
def check_records(records: Any) -> tuple[list[str], list[list[int]], list[float | None] | None]:
    """Validate {"records": [...]} rows against the contract (check_record); return the ids, the feature rows and
    the revenues (None when no record gives one)."""
    if not isinstance(records, list):
        raise ApiError(400, f'"records" must be a list of objects, not {json_kind(records)}.', field="records")
    if not records:
        raise ApiError(400, '"records" is empty; send at least one row.', field="records")
    if len(records) > MAX_RECORDS:
        raise ApiError(413, f"{len(records)} records is more than the {MAX_RECORDS} one request may hold.",
                       field="records")
    ids: list[str] = []
    rows: list[list[int]] = []
    revenues: list[float | None] = []
    for index, record in enumerate(records):
        try:
            corporation, features, revenue = check_record(record, f"records[{index}]")
        except RecordError as exc:
            raise ApiError(400, str(exc), field=exc.field) from None
        ids.append(corporation)
        rows.append(features)
        revenues.append(revenue)
    return ids, rows, revenues if any(revenue is not None for revenue in revenues) else None


# --- CSV content -----------------------------------------------------------------------------
def rows_of_csv(data: bytes, name: str) -> Rows:
    """Parse CSV content against the data contract ("exited" optional)."""
    from riskcore.data.client_csv import read_client_frame

    try:
        frame = read_client_frame(data, name, require_target=False)
    except DataError as exc:
        raise ApiError(400, str(exc)) from None
    if frame.height > MAX_RECORDS:
        raise ApiError(413, f"{frame.height} rows is more than the {MAX_RECORDS} one request may hold.")
    revenues = frame[REVENUE].to_list() if REVENUE in frame.columns else None
    return frame[ID_COLUMN].to_list(), frame.select(FEATURES).to_numpy().astype("float64"), revenues


# --- A dataset named by location -------------------------------------------------------------
def confine_dataset(config: Config, location: Any) -> Path:
    """Resolve a caller's dataset location inside the data folders, or refuse it without naming server paths.

    The location is relative to the config file's folder and taken literally; links are followed
    before the check, so a link pointing out of the data folders is refused too.
    """
    if not isinstance(location, str):
        raise ApiError(400, f'"dataset" must be a string, not {json_kind(location)}.', field="dataset")
    if not location.strip():
        raise ApiError(400, '"dataset" is empty; name a CSV file such as "testdata/testdata.csv".', field="dataset")
    if "\x00" in location:
        raise ApiError(400, '"dataset" contains a NUL byte.', field="dataset")
    if len(location) > MAX_LOCATION_LENGTH:
        raise ApiError(400, f'"dataset" is longer than {MAX_LOCATION_LENGTH} characters.', field="dataset")
    if PERCENT_ENCODED.search(location) or "\\" in location:
        raise ApiError(400, '"dataset" must be a plain relative path: no percent-encoding, no backslashes.',
                       field="dataset")
    relative = PurePosixPath(location)
    if relative.is_absolute() or location.startswith("~"):
        raise ApiError(403, '"dataset" must be a path relative to the project folder, not an absolute path.',
                       field="dataset")
    if ".." in relative.parts:
        raise ApiError(403, '"dataset" must not contain "..".', field="dataset")
    try:
        resolved = (config.config_file.parent / relative).resolve()
        roots = [folder.resolve() for folder in config.data_folders]
    except (OSError, RuntimeError):  # a link loop
        raise ApiError(403, OUTSIDE, field="dataset") from None
    if not any(resolved.is_relative_to(root) for root in roots):
        raise ApiError(403, OUTSIDE, field="dataset")
    if not resolved.is_file():
        raise ApiError(404, f"No dataset file at {json.dumps(location)}.", field="dataset")
    return resolved


def read_dataset(path: Path) -> bytes:
    """Read a confined dataset file; a link swapped in after the check is refused (O_NOFOLLOW)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        raise ApiError(403, OUTSIDE, field="dataset") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ApiError(404, "The dataset is not a regular file.", field="dataset")
        if info.st_size > MAX_DATASET_BYTES:
            raise ApiError(413, f"The dataset is larger than the {MAX_DATASET_BYTES // MEGABYTE} MB limit.",
                           field="dataset")
        return handle.read(MAX_DATASET_BYTES + 1)


def rows_of_dataset(config: Config, location: Any) -> Rows:
    path = confine_dataset(config, location)
    return rows_of_csv(read_dataset(path), PurePosixPath(location).name)


# --- The request -----------------------------------------------------------------------------
def request_body() -> bytes:
    """The whole request body, or 413 when it reaches the size limit.

    A streamed (chunked) body has no Content-Length to refuse up front, and werkzeug stops reading it
    at the limit without an error: without this check the rows would be silently cut short.
    """
    body = request.get_data(cache=False)
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(body) >= limit:
        raise ApiError(413, body_too_large(limit))
    return body


def each_key_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads' object_pairs_hook: the object, or ApiError 400 naming a key it gives twice."""
    document = dict(pairs)
    if len(document) < len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ApiError(400, f"The JSON body gives the key {json.dumps(repeated[:60])} twice in one object; give each "
                            "key once (one of the two values would be lost).", field=repeated[:60])
    return document


def json_body(expected: str) -> Any:
    """The request's JSON document, or ApiError 400 saying what is wrong (`expected`: what to send instead)."""
    body = request_body()
    if not body.strip():
        raise ApiError(400, f"The request body is empty; send {expected}.")
    # orjson reads the bench's 1,000 records in 0.2 ms instead of json.loads' 0.5, to the same values, but for an
    # integer beyond 64 bits (a float to orjson), far above MAX_VALUE either way and refused in the same words.
    # What orjson refuses (NaN, Infinity, a number too large for a float, a lone surrogate, UTF-16, a BOM, deep
    # nesting) goes on to json.loads as before: read, or worded as before.
    try:
        document = orjson.loads(body)
        # A key given twice in one object keeps its last value in every JSON reader: a second "records" would lose
        # the first one's rows without a word. Written again, the document holds fewer quotes than the body only
        # where a key (with its string value) was dropped (an escaped quote is written \" whichever way it came);
        # such a body goes on to json.loads, which names the key (0.2 ms for the bench's 1,000 records, 2 µs for one).
        if body.count(b'"') <= orjson.dumps(document).count(b'"'):
            return document
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # orjson writes at most 254 levels of nesting
        pass
    try:
        document = json.loads(body, object_pairs_hook=each_key_once)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"The request body is not valid JSON ({exc.msg} at line {exc.lineno}, "
                            f"column {exc.colno}).") from None
    except (ValueError, RecursionError) as exc:
        reason = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "nested too deeply or a number too long"
        raise ApiError(400, f"The request body is not valid JSON ({reason}).") from None
    # json.loads takes an escaped lone surrogate ("\ud800"), which no answer can then be written with (a 500).
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "The request body is not valid JSON (a string holds a lone surrogate such as "
                            "\\ud800, which is not a character).") from None
    return document


def rows_of_json(config: Config) -> Rows:
    document = json_body('{"records": [...]} or {"dataset": "..."}')
    if not isinstance(document, dict):
        raise ApiError(400, f'The JSON body must be an object with "records" or "dataset", not {json_kind(document)}.')
    unknown = [key for key in document if key not in PREDICTION_FIELDS]
    if unknown:
        raise ApiError(400, f'Unknown field {json.dumps(unknown[0][:60])} in the JSON body; expected "records" '
                            'or "dataset".', field=unknown[0][:60])
    if len(document) != 1:
        raise ApiError(400, 'The JSON body needs exactly one of "records" (a list of rows) or "dataset" '
                            '(a CSV file location).')
    if "dataset" in document:
        return rows_of_dataset(config, document["dataset"])
    import numpy as np

    ids, rows, revenues = check_records(document["records"])
    return ids, np.array(rows, dtype="float64"), revenues


def rows_of_upload() -> Rows:
    uploads = [name for name in request.files for _ in request.files.getlist(name)]
    if len(uploads) > 1:  # one would be read and the others' rows lost without a word
        names = ", ".join(json.dumps(name[:60]) for name in uploads[:5])
        raise ApiError(400, f"A multipart request carries one CSV file; this one carries {len(uploads)} ({names}): "
                            "send each file in its own request, or their rows in one file.", field="file")
    upload = request.files.get("file")
    if upload is None and len(request.files) == 1:
        upload = next(iter(request.files.values()))
    if upload is None:
        raise ApiError(400, 'A multipart request needs the CSV file in the field "file".', field="file")
    return rows_of_csv(upload.read(), "The uploaded file")


def rows_of_request(config: Config) -> Rows:
    """The ids, feature matrix and revenues of the rows a prediction request supplies, in any accepted form."""
    extra = [key for key in request.args if key != "dataset"]
    if extra:
        raise ApiError(400, f"Unknown query parameter {json.dumps(extra[0][:60])}; only \"dataset\" is accepted.",
                       field=extra[0][:60])
    mimetype = request.mimetype
    if "dataset" in request.args:
        if len(request.args.getlist("dataset")) > 1:
            raise ApiError(400, 'The query string names "dataset" more than once; give one location.',
                           field="dataset")
        if request.content_length or mimetype:
            raise ApiError(400, 'Send the dataset location either as ?dataset=... or in the body, not both.',
                           field="dataset")
        return rows_of_dataset(config, request.args["dataset"])
    if mimetype == "application/json" or mimetype.endswith("+json"):
        return rows_of_json(config)
    if mimetype in CSV_TYPES:
        return rows_of_csv(request_body(), "The request body")
    if mimetype == "multipart/form-data":
        return rows_of_upload()
    shown = json.dumps(mimetype[:60]) if mimetype else "none"
    raise ApiError(415, "POST /prediction takes application/json, text/csv or multipart/form-data "
                        f"(or ?dataset=...); the request's content type is {shown}.")
