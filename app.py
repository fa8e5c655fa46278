"""The risk-assessment HTTP API: predictions from the deployed model, its score and its diagnostics.

Reads:  prod_deployment_path/current              the deployment pointer: one readlink per request
        prod_deployment_path/releases/<release>/  the deployed model, loaded once per release and only
                                                  after its bytes match the manifest's sha256
        test_data_path/testdata.csv               for GET /scoring, once per release
        output_folder_path/finaldata.csv          for GET /summarystats, again only when it changes
        output_model_path/diagnostics.json        for GET /diagnostics, again only when it changes (served
                                                  as written, absolute paths reduced to file names)
        a CSV file named by a caller of POST /prediction, only inside the input, ingested or test
        data folder
Writes: nothing.

Endpoints: POST /prediction, GET /scoring, /summarystats, /diagnostics, /health and /openapi.json
(the OpenAPI 3 description of them all). Every answer, errors included, is JSON.

POST /prediction takes the rows to score as {"records": [{...}, ...]}, as a CSV body (text/csv),
as a multipart upload (field "file"), or as a dataset location, {"dataset": "testdata/testdata.csv"}
or ?dataset=...: a path relative to the config file's folder, taken literally (no percent-decoding,
no "..", not absolute) that must resolve, links followed, inside the input, ingested or test data
folder.

A new deployment is noticed on the next request and served without a restart; a deployment that
fails to load (tampered, incomplete) never replaces the model being served.

Environment: RISK_CONFIG names the config file when create_app() gets none (wsgi.py, gunicorn);
RISK_API_KEY, when set and not empty, is required in the X-API-Key header on every endpoint but
/health.
Example: python app.py --config config.json   (development server on 127.0.0.1:8000, no debugger)
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.contract import (
    COLUMNS,
    DIAGNOSTICS_RECORD,
    FEATURES,
    FINAL_DATA,
    ID_COLUMN,
    MAX_VALUE,
    TARGET,
    TEST_DATA,
    DataError,
    IntegrityError,
    UserError,
)
from riskcore.files import read_json
from riskcore.releases import Deployment, current_deployment, current_release_name, load_deployed_model
from riskcore.schema import features_of, parse_csv_bytes, read_client_csv

log = logging.getLogger("app")

CONFIG_ENV = "RISK_CONFIG"
API_KEY_ENV = "RISK_API_KEY"
API_KEY_HEADER = "X-API-Key"
OPEN_PATHS = frozenset({"/health"})  # answered without the API key

MAX_CONTENT_LENGTH = 16 * 1024 * 1024  # request bodies
MAX_DATASET_BYTES = 64 * 1024 * 1024  # a dataset file named by location
MAX_RECORDS = 100_000  # rows per prediction request, whatever the input form
MAX_LOCATION_LENGTH = 1024
RETRY_FAILED_RELEASE_SECONDS = 30.0  # a release that failed to load is not retried on every request
BROKEN_POINTER = "current"  # stands for a deployment pointer that is not a link

RECORD_FIELDS = frozenset(COLUMNS)
PREDICTION_FIELDS = frozenset({"records", "dataset"})
PERCENT_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
CSV_TYPES = frozenset({"text/csv", "application/csv"})
ERROR_MESSAGES = {
    404: "No such endpoint; GET /openapi.json lists them.",
    405: "This endpoint does not accept that method; see the Allow header.",
    413: f"The request body is larger than the {MAX_CONTENT_LENGTH // (1024 * 1024)} MB limit.",
}

api = Blueprint("api", __name__)


class ApiError(Exception):
    """A request the API refuses: an HTTP status and one sentence for the caller."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


# --- Responses -------------------------------------------------------------------------------
def json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")


def json_response(document: Any, status: int = 200) -> Response:
    return Response(json_bytes(document), status=status, mimetype="application/json")


def error_document(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    from http import HTTPStatus

    document: dict[str, Any] = {"status": status, "error": HTTPStatus(status).phrase, "message": message}
    if field is not None:
        document["field"] = field
    return document


# --- The served model ------------------------------------------------------------------------
@dataclass(frozen=True)
class Served:
    """A deployed model, loaded and ready to predict."""

    deployment: Deployment
    model: Any
    classes: Any  # numpy array of the model's class labels
    positive: int  # column of predict_proba holding the attrition (class 1) probability
    predict_proba: Callable[[Any], Any]  # the model's, or an equivalent shortcut (see linear_shortcut)

    @property
    def release(self) -> str:
        return self.deployment.release

    @property
    def model_version(self) -> str:
        return self.deployment.model_version


def probe_rows():
    """Feature rows spanning the valid range, to compare a shortcut with the model it stands for."""
    import numpy as np

    rng = np.random.default_rng(0)
    scales = np.array([0.0, 1.0, 10.0, 1e2, 1e3, 1e4, 1e6, float(MAX_VALUE)])
    rows = rng.integers(0, 1000, size=(64, len(FEATURES))) * rng.choice(scales, size=(64, 1)) / 1000
    return np.vstack([np.zeros((1, len(FEATURES))), np.floor(rows)])


def linear_shortcut(model, probe) -> Callable[[Any], Any] | None:
    """predict_proba of a binary linear model without scikit-learn's per-call input checks, or None.

    The rows reaching it are already validated, and the checks cost several times the arithmetic
    on small requests. It is used only if it reproduces the model's own predict_proba on `probe`.
    """
    import numpy as np
    from scipy.special import expit

    coef, intercept = getattr(model, "coef_", None), getattr(model, "intercept_", None)
    if not (isinstance(coef, np.ndarray) and isinstance(intercept, np.ndarray) and len(model.classes_) == 2
            and coef.shape == (1, probe.shape[1]) and intercept.shape == (1,)):
        return None
    weights, bias = coef[0].astype("float64"), float(intercept[0])

    def predict_proba(features):
        attrition = expit(features @ weights + bias)
        return np.column_stack([1.0 - attrition, attrition])

    try:
        same = np.allclose(predict_proba(probe), model.predict_proba(probe), rtol=1e-12, atol=1e-15)
    except (ValueError, TypeError):
        return None
    return predict_proba if same else None


def prepare_model(deployment: Deployment) -> Served:
    """Load a deployment's model (hash-checked) and check it can answer predictions."""
    import numpy as np

    model = load_deployed_model(deployment)
    classes = np.asarray(model.classes_)
    positive = [i for i, label in enumerate(classes.tolist()) if label == 1]
    if not positive:
        raise DataError("the deployed model has no class 1 (attrition) to give a probability for")
    if not isinstance(deployment.manifest.get("model_version"), str):
        raise DataError("the deployment manifest has no model_version")
    probe = probe_rows()
    model.predict_proba(probe)  # fail here, not in a request
    shortcut = linear_shortcut(model, probe)
    log.info("release %s: %s", deployment.release,
             "linear shortcut verified for predict_proba" if shortcut else "using the model's predict_proba")
    return Served(deployment=deployment, model=model, classes=classes, positive=positive[0],
                  predict_proba=shortcut or model.predict_proba)


class ModelCache:
    """The model to serve, loaded once per deployed release; a release that fails to load is skipped."""

    def __init__(self, prod: Path) -> None:
        self.prod = prod
        self._served: Served | None = None
        self._failed: dict[str, float] = {}  # release -> monotonic time its load failed
        self._lock = threading.Lock()

    def pointer(self) -> str | None:
        """The release the deployment pointer names now (a readlink); None when nothing is deployed."""
        try:
            return current_release_name(self.prod)
        except IntegrityError as exc:
            self._note_failure(BROKEN_POINTER, exc)
            return BROKEN_POINTER

    def serve(self) -> tuple[str | None, Served | None]:
        """(the release the pointer names, the model to serve), switching when the pointer moved."""
        name = self.pointer()
        if name is None:
            return None, None
        served = self._served
        if served is None or served.release != name:
            served = self._switch(name)
        return name, served

    def get(self) -> Served:
        """The model to serve now, or ApiError 503 when there is none."""
        name, served = self.serve()
        if served is None:
            raise ApiError(503, "No model is deployed yet; run deployment.py first." if name is None else
                           "The deployed model could not be loaded (see the server log) and no earlier "
                           "model is available to serve.")
        return served

    def _switch(self, name: str) -> Served | None:
        with self._lock:
            served = self._served
            if served is not None and served.release == name:
                return served
            failed_at = self._failed.get(name)
            if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_RELEASE_SECONDS:
                return served
            try:
                deployment = current_deployment(self.prod)
                if deployment is None:
                    raise DataError("the deployment pointer vanished while loading")
                new = prepare_model(deployment)
            except Exception as exc:  # whatever is wrong with a deployment must not take the API down
                self._note_failure(name, exc)
                return served
            self._failed.clear()  # earlier failures are moot; a release named again is tried again
            self._served = new
            log.info("serving release %s (model %s)", new.release, new.model_version)
            return new

    def _note_failure(self, name: str, exc: BaseException) -> None:
        if name not in self._failed:
            now = self._served
            log.error("deployment %s cannot be served (%s: %s); still serving %s", name,
                      exc.__class__.__name__, exc, f"release {now.release}" if now else "nothing")
        self._failed[name] = time.monotonic()


# --- Answers derived from files, cached by the files' identity -------------------------------
def file_signature(path: Path) -> tuple[int, int, int, int] | None:
    """A cheap identity of a file's content (one stat); None when it does not exist."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class KeyedCache:
    """One prepared answer, rebuilt only when its key changes."""

    def __init__(self) -> None:
        self._entry: tuple[Any, tuple[int, bytes]] | None = None

    def get(self, key: Any, build: Callable[[], tuple[int, bytes]]) -> tuple[int, bytes]:
        """The answer for `key`: the cached one, or build() when the key changed."""
        entry = self._entry
        if entry is not None and entry[0] == key:
            return entry[1]
        answer = build()
        self._entry = (key, answer)
        return answer


class RiskService:
    """Everything one process keeps between requests."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.models = ModelCache(config.prod_deployment_folder)
        self._scoring = KeyedCache()
        self._summary = KeyedCache()
        self._diagnostics = KeyedCache()

    def scoring(self, served: Served) -> tuple[int, bytes]:
        """GET /scoring's answer, per release and version of the test data."""
        signature = file_signature(self.config.test_data_file)
        return self._scoring.get((served.release, signature), lambda: self._build_scoring(served, signature))

    def summary(self) -> tuple[int, bytes]:
        """GET /summarystats' answer, per version of finaldata.csv."""
        signature = file_signature(self.config.final_data_file)
        return self._summary.get(signature, lambda: self._build_summary(signature))

    def diagnostics(self) -> tuple[int, bytes]:
        """GET /diagnostics' answer, per version of the diagnostics record."""
        signature = file_signature(self.config.output_model_folder / DIAGNOSTICS_RECORD)
        return self._diagnostics.get(signature, lambda: self._build_diagnostics(signature))

    def _build_scoring(self, served: Served, signature: Any) -> tuple[int, bytes]:
        from riskcore.evaluation import score_model

        if signature is None:
            return 503, json_bytes(error_document(503, f"The test data ({TEST_DATA}) does not exist yet."))
        try:
            frame = read_client_csv(self.config.test_data_file)
        except DataError as exc:  # its messages name the file, not the folder
            return 503, json_bytes(error_document(503, f"The test data cannot be scored: {exc}"))
        f1 = score_model(served.model, frame)
        log.info("release %s: F1 %.4f on %s", served.release, f1, TEST_DATA)
        return 200, json_bytes({"f1": f1, "data": TEST_DATA, "rows": int(len(frame)),
                                "model_version": served.model_version, "release": served.release,
                                "deployed_score": served.deployment.manifest.get("score")})

    def _build_summary(self, signature: Any) -> tuple[int, bytes]:
        name = FINAL_DATA
        if signature is None:
            return 503, json_bytes(error_document(503, f"No ingested data ({name}) yet; run ingestion.py first."))
        try:
            from riskcore.summary import read_ingested, summarize

            summary = summarize(read_ingested(self.config))
        except ImportError as exc:
            log.error("summary statistics need diagnostics.py: %s", exc)
            return 503, json_bytes(error_document(503, "Summary statistics are not available on this server."))
        except UserError as exc:
            log.error("summary statistics of %s failed: %s", name, exc)
            return 503, json_bytes(error_document(503, f"The ingested data ({name}) cannot be summarised; "
                                                       "see the server log."))
        return 200, json_bytes({"data": name, "modified_at": utc_time(signature[3]), "summary": summary})

    def _build_diagnostics(self, signature: Any) -> tuple[int, bytes]:
        name = DIAGNOSTICS_RECORD
        if signature is None:
            return 503, json_bytes(error_document(503, f"No diagnostics record ({name}) yet; "
                                                       "run diagnostics.py first."))
        path = self.config.output_model_folder / name
        try:
            record = read_json(path, "Diagnostics record")
            if not isinstance(record, dict):
                raise DataError(f"Diagnostics record {path} is not a JSON object.")
            return 200, json_bytes(without_server_paths(record))
        except (DataError, ValueError) as exc:  # ValueError: NaN, which JSON cannot carry
            log.error("%s", exc)
            return 503, json_bytes(error_document(503, f"The diagnostics record ({name}) is unreadable; "
                                                       "run diagnostics.py again."))


def without_server_paths(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its top-level absolute paths reduced to file names: callers need no server layout."""
    return {key: PurePosixPath(value).name if isinstance(value, str) and value.startswith("/") else value
            for key, value in record.items()}


def utc_time(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def service() -> RiskService:
    return current_app.extensions["risk"]


# --- Validating the rows to predict ----------------------------------------------------------
def describe(value: Any) -> str:
    """How a bad JSON value is named in an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if abs(value) > MAX_VALUE:
        return f"a number above {MAX_VALUE}" if value > 0 else "a negative number"
    return repr(value)


def whole_number(value: Any, where: str) -> int:
    """A JSON value that must be an integer >= 0 (5.0 counts; true, "5", 5.5, NaN do not)."""
    kind = type(value)
    if kind is float and math.isfinite(value) and value.is_integer():
        value, kind = int(value), int
    if kind is not int or value < 0 or value > MAX_VALUE:
        raise ApiError(400, f"{where} must be a whole number from 0 to {MAX_VALUE}, "
                            f"not {describe(value)}.", field=where)
    return value


def check_records(records: Any) -> tuple[list[str], list[list[int]]]:
    """Validate {"records": [...]} rows in plain Python; return the ids and the feature rows."""
    if not isinstance(records, list):
        raise ApiError(400, f'"records" must be a list of objects, not {describe(records)}.', field="records")
    if not records:
        raise ApiError(400, '"records" is empty; send at least one row.', field="records")
    if len(records) > MAX_RECORDS:
        raise ApiError(413, f"{len(records)} records is more than the {MAX_RECORDS} one request may hold.",
                       field="records")
    ids: list[str] = []
    rows: list[list[int]] = []
    for index, record in enumerate(records):
        where = f"records[{index}]"
        if type(record) is not dict:
            raise ApiError(400, f"{where} must be an object with the fields {', '.join(COLUMNS[:-1])}, "
                                f"not {describe(record)}.", field=where)
        if not RECORD_FIELDS.issuperset(record):
            unknown = next(k for k in record if k not in RECORD_FIELDS)
            shown = json.dumps(unknown[:60])
            raise ApiError(400, f"{where} has an unknown field {shown}; expected "
                                f"{', '.join(COLUMNS)}.", field=f"{where}.{unknown[:60]}")
        for name in (ID_COLUMN, *FEATURES):
            if name not in record:
                raise ApiError(400, f'{where} is missing the field "{name}".', field=f"{where}.{name}")
        corporation = record[ID_COLUMN]
        if type(corporation) is not str or not corporation.strip():
            shown = "a blank string" if type(corporation) is str else describe(corporation)
            raise ApiError(400, f"{where}.{ID_COLUMN} must be a non-empty string, not {shown}.",
                           field=f"{where}.{ID_COLUMN}")
        if TARGET in record and whole_number(record[TARGET], f"{where}.{TARGET}") > 1:
            raise ApiError(400, f"{where}.{TARGET} must be 0 or 1.", field=f"{where}.{TARGET}")
        ids.append(corporation)
        rows.append([whole_number(record[name], f"{where}.{name}") for name in FEATURES])
    return ids, rows


def rows_of_frame(frame) -> tuple[list[str], Any]:
    if len(frame) > MAX_RECORDS:
        raise ApiError(413, f"{len(frame)} rows is more than the {MAX_RECORDS} one request may hold.")
    return frame[ID_COLUMN].tolist(), features_of(frame)


def rows_of_csv(data: bytes, name: str) -> tuple[list[str], Any]:
    """Parse CSV content against the data contract ("exited" optional)."""
    try:
        frame = parse_csv_bytes(data, name, require_target=False)
    except DataError as exc:
        raise ApiError(400, str(exc)) from None
    return rows_of_frame(frame)


def confine_dataset(config: Config, location: Any) -> Path:
    """Resolve a caller's dataset location inside the data folders, or refuse it without naming server paths.

    The location is relative to the config file's folder and taken literally; links are followed
    before the check, so a link pointing out of the data folders is refused too.
    """
    if not isinstance(location, str):
        raise ApiError(400, f'"dataset" must be a string, not {describe(location)}.', field="dataset")
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
    outside = ApiError(403, '"dataset" must name a file inside the input, ingested or test data folder.',
                       field="dataset")
    try:
        resolved = (config.config_file.parent / relative).resolve()
        roots = [folder.resolve() for folder in config.data_folders]
    except (OSError, RuntimeError):  # a link loop
        raise outside from None
    if not any(resolved.is_relative_to(root) for root in roots):
        raise outside
    if not resolved.is_file():
        raise ApiError(404, f"No dataset file at {json.dumps(location)}.", field="dataset")
    return resolved


def read_dataset(path: Path) -> bytes:
    """Read a confined dataset file; a link swapped in after the check is refused (O_NOFOLLOW)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        raise ApiError(403, '"dataset" must name a file inside the input, ingested or test data folder.',
                       field="dataset") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ApiError(404, "The dataset is not a regular file.", field="dataset")
        if info.st_size > MAX_DATASET_BYTES:
            raise ApiError(413, f"The dataset is larger than the {MAX_DATASET_BYTES // (1024 * 1024)} MB limit.",
                           field="dataset")
        return handle.read(MAX_DATASET_BYTES + 1)


def rows_of_dataset(config: Config, location: Any) -> tuple[list[str], Any]:
    path = confine_dataset(config, location)
    return rows_of_csv(read_dataset(path), PurePosixPath(location).name)


def request_body() -> bytes:
    """The whole request body, or 413 when it reaches the size limit.

    A streamed (chunked) body has no Content-Length to refuse up front, and werkzeug stops reading it
    at the limit without an error: without this check the rows would be silently cut short.
    """
    body = request.get_data(cache=False)
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(body) >= limit:
        raise ApiError(413, ERROR_MESSAGES[413])
    return body


def rows_of_json(config: Config) -> tuple[list[str], Any]:
    body = request_body()
    if not body.strip():
        raise ApiError(400, 'The request body is empty; send {"records": [...]} or {"dataset": "..."}.')
    try:
        document = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"The request body is not valid JSON ({exc.msg} at line {exc.lineno}, "
                            f"column {exc.colno}).") from None
    except (ValueError, RecursionError) as exc:
        reason = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "nested too deeply or a number too long"
        raise ApiError(400, f"The request body is not valid JSON ({reason}).") from None
    if not isinstance(document, dict):
        raise ApiError(400, f'The JSON body must be an object with "records" or "dataset", not {describe(document)}.')
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

    ids, rows = check_records(document["records"])
    return ids, np.array(rows, dtype="float64")


def rows_of_upload() -> tuple[list[str], Any]:
    upload = request.files.get("file")
    if upload is None and len(request.files) == 1:
        upload = next(iter(request.files.values()))
    if upload is None:
        raise ApiError(400, 'A multipart request needs the CSV file in the field "file".', field="file")
    return rows_of_csv(upload.read(), "The uploaded file")


def rows_of_request(config: Config) -> tuple[list[str], Any]:
    """The ids and feature matrix of the rows a prediction request supplies, in any accepted form."""
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


# --- Endpoints -------------------------------------------------------------------------------
@api.post("/prediction")
def prediction() -> Response:
    """Predictions and attrition probabilities for the supplied rows."""
    served = service().models.get()
    ids, features = rows_of_request(service().config)
    probabilities = served.predict_proba(features)
    labels = served.classes[probabilities.argmax(axis=1)].tolist()
    attrition = probabilities[:, served.positive].tolist()
    return json_response({
        "model_version": served.model_version,
        "release": served.release,
        "count": len(ids),
        "predictions": [{"corporation": c, "prediction": p, "probability": q}
                        for c, p, q in zip(ids, labels, attrition, strict=True)],
    })


@api.get("/scoring")
def scoring() -> Response:
    """F1 of the deployed model on the test data, computed once per release."""
    status, body = service().scoring(service().models.get())
    return Response(body, status=status, mimetype="application/json")


@api.get("/summarystats")
def summarystats() -> Response:
    """Mean, median and standard deviation of each numeric column of the ingested data."""
    status, body = service().summary()
    return Response(body, status=status, mimetype="application/json")


@api.get("/diagnostics")
def diagnostics_record() -> Response:
    """The latest diagnostics record: timings, missing-data shares, dependency versions."""
    status, body = service().diagnostics()
    return Response(body, status=status, mimetype="application/json")


@api.get("/health")
def health() -> Response:
    """Liveness, and which model is served."""
    pointer, served = service().models.serve()
    document: dict[str, Any] = {"status": "ok" if served else "no_model", "model_version": None,
                                "deployed_at": None, "release": None}
    if served is not None:
        document.update(model_version=served.model_version, deployed_at=served.deployment.manifest.get("deployed_at"),
                        release=served.release)
    if pointer is not None and (served is None or served.release != pointer):
        document["warning"] = (f"The current deployment ({pointer}) failed to load; "
                               + (f"still serving release {served.release}." if served else "nothing is served."))
    return json_response(document)


@api.get("/openapi.json")
def openapi() -> Response:
    """This API's OpenAPI 3 description."""
    return Response(current_app.config["RISK_OPENAPI"], mimetype="application/json")


# --- OpenAPI ---------------------------------------------------------------------------------
def _json_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {400: "Bad input; the message names the field", 401: "Missing or wrong X-API-Key",
               403: "A dataset location outside the data folders", 404: "No such dataset file",
               405: "Method not allowed", 413: "Request body, dataset or record count over the limit",
               415: "Unsupported content type", 503: "Not available yet (nothing deployed, no data or record)"}
    return {str(code): _json_answer(reasons[code], {"$ref": "#/components/schemas/Error"}) for code in codes}


def openapi_document(api_key_required: bool) -> dict[str, Any]:
    """The OpenAPI 3 description of every route create_app registers."""
    count = {"type": "integer", "minimum": 0, "maximum": MAX_VALUE}
    record = {"type": "object", "additionalProperties": False,
              "required": [ID_COLUMN, *FEATURES],
              "properties": {ID_COLUMN: {"type": "string", "minLength": 1},
                             **{name: count for name in FEATURES},
                             TARGET: {"type": "integer", "enum": [0, 1],
                                               "description": "optional; ignored"}}}
    obj = {"type": "object"}
    nullable_str = {"type": ["string", "null"]}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Dynamic Risk Assessment API", "version": "1.0.0",
                 "description": "Client attrition risk from the deployed model. Every answer is JSON."},
        "paths": {
            "/prediction": {"post": {
                "summary": "Predictions and attrition probabilities for the supplied rows",
                "parameters": [{"name": "dataset", "in": "query", "required": False, "schema": {"type": "string"},
                                "description": "a CSV location, as in the JSON body's \"dataset\""}],
                "requestBody": {"required": False, "content": {
                    "application/json": {"schema": {"oneOf": [
                        {"type": "object", "additionalProperties": False, "required": ["records"],
                         "properties": {"records": {"type": "array", "minItems": 1, "maxItems": MAX_RECORDS,
                                                    "items": {"$ref": "#/components/schemas/Record"}}}},
                        {"type": "object", "additionalProperties": False, "required": ["dataset"],
                         "properties": {"dataset": {
                             "type": "string", "example": "testdata/testdata.csv",
                             "description": "relative to the config file's folder, taken literally; must "
                                            "resolve (links followed) inside the input, ingested or test "
                                            "data folder"}}}]}},
                    "text/csv": {"schema": {"type": "string"}},
                    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                        "file": {"type": "string", "format": "binary"}}}}}},
                "responses": {"200": _json_answer("One prediction per row, in order", {
                    "type": "object", "required": ["model_version", "release", "count", "predictions"],
                    "properties": {"model_version": {"type": "string"}, "release": {"type": "string"},
                                   "count": {"type": "integer"},
                                   "predictions": {"type": "array", "items": {
                                       "type": "object", "properties": {
                                           "corporation": {"type": "string"},
                                           "prediction": {"type": "integer", "enum": [0, 1]},
                                           "probability": {"type": "number", "minimum": 0, "maximum": 1}}}}}}),
                              **_errors(400, 401, 403, 404, 405, 413, 415, 503)}}},
            "/scoring": {"get": {
                "summary": "F1 of the deployed model on the test data (computed once per deployment)",
                "responses": {"200": _json_answer("The F1 score", {
                    "type": "object", "required": ["f1", "model_version"],
                    "properties": {"f1": {"type": "number"}, "data": {"type": "string"}, "rows": {"type": "integer"},
                                   "model_version": {"type": "string"}, "release": {"type": "string"},
                                   "deployed_score": {"type": ["number", "null"]}}}),
                              **_errors(401, 405, 503)}}},
            "/summarystats": {"get": {
                "summary": "Mean, median and standard deviation of each numeric column of the ingested data",
                "responses": {"200": _json_answer("The summary statistics", {
                    "type": "object", "required": ["summary"],
                    "properties": {"data": {"type": "string"}, "modified_at": {"type": "string"},
                                   "summary": {"type": "array", "items": {
                                       "type": "object", "properties": {"column": {"type": "string"},
                                                                        "statistic": {"type": "string"},
                                                                        "value": {"type": ["number", "null"]}}}}}}),
                              **_errors(401, 405, 503)}}},
            "/diagnostics": {"get": {
                "summary": "The latest diagnostics record (never recomputed in a request)",
                "responses": {"200": _json_answer("The record diagnostics.py wrote", {
                    "type": "object", "properties": {"generated_at": {"type": "string"},
                                                     "model_version": nullable_str, "summary": {"type": "array"},
                                                     "missing": obj, "timings": obj, "dependencies": obj}}),
                              **_errors(401, 405, 503)}}},
            "/health": {"get": {
                "summary": "Liveness and the served model (no API key needed)", "security": [],
                "responses": {"200": _json_answer("Up", {
                    "type": "object", "required": ["status"],
                    "properties": {"status": {"type": "string", "enum": ["ok", "no_model"]},
                                   "model_version": nullable_str, "deployed_at": nullable_str,
                                   "release": nullable_str, "warning": {"type": "string"}}}),
                              **_errors(405)}}},
            "/openapi.json": {"get": {
                "summary": "This description",
                "responses": {"200": _json_answer("The OpenAPI 3 document", obj), **_errors(401, 405)}}},
        },
        "components": {
            "schemas": {
                "Record": record,
                "Error": {"type": "object", "required": ["status", "error", "message"],
                          "properties": {"status": {"type": "integer"}, "error": {"type": "string"},
                                         "message": {"type": "string"}, "field": {"type": "string"}}},
            },
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}},
        },
    }
    if api_key_required:
        document["security"] = [{"ApiKey": []}]
    return document


# --- The application -------------------------------------------------------------------------
def check_api_key() -> None:
    """Before every request: the X-API-Key header must match RISK_API_KEY when one is set."""
    expected = current_app.config["RISK_API_KEY"]
    if not expected or request.path in OPEN_PATHS:
        return
    given = request.headers.get(API_KEY_HEADER, "")
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise ApiError(401, f"This endpoint needs the {API_KEY_HEADER} header with the API key."
                       if not given else f"The {API_KEY_HEADER} header does not hold the API key.")


def handle_api_error(exc: ApiError) -> Response:
    response = json_response(error_document(exc.status, exc.message, exc.field), exc.status)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = f'ApiKey header="{API_KEY_HEADER}"'
    return response


def handle_http_error(exc: HTTPException) -> Response:
    """Werkzeug's errors (404, 405, 413, ...) as JSON, keeping their headers (Allow)."""
    status = exc.code or 500
    response = exc.get_response()
    response.set_data(json_bytes(error_document(status, ERROR_MESSAGES.get(status, exc.description or ""))))
    response.mimetype = "application/json"
    return response


def handle_unexpected(exc: Exception) -> Response:
    log.exception("unexpected error in %s %s", request.method, request.path)
    return json_response(error_document(500, "Internal error; see the server log."), 500)


def add_headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


def create_app(config_path: str | os.PathLike | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Build the API for a config file (default: $RISK_CONFIG, else config.json beside the scripts)."""
    config = load_config(config_path if config_path is not None else os.environ.get(CONFIG_ENV) or None)
    app = Flask(__name__, static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        RISK_API_KEY=os.environ.get(API_KEY_ENV) or None,
        DEBUG=False,
        PROPAGATE_EXCEPTIONS=False,
        PROVIDE_AUTOMATIC_OPTIONS=False,  # OPTIONS would answer 200 with an empty HTML body; it is a 405 here
    )
    if test_config:
        app.config.update(test_config)
    app.config["RISK_OPENAPI"] = json_bytes(openapi_document(bool(app.config["RISK_API_KEY"])))
    app.extensions["risk"] = RiskService(config)
    app.before_request(check_api_key)
    app.after_request(add_headers)
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
    app.register_blueprint(api)
    return app


def main(argv: list[str] | None = None) -> int:
    """Command line: run the development server, e.g. python app.py --config config.json --port 8000."""
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        create_app(args.config).run(host=args.host, port=args.port, debug=False, use_reloader=False,
                                    threaded=True)

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
