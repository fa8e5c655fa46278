"""The API's OpenAPI 3.1 description, served at GET /openapi.json (its schemas are JSON Schema 2020-12).

tests/test_app.py checks real answers of every endpoint, errors included, against these schemas.
"""

from __future__ import annotations

from typing import Any

from riskcore.api.calls_view import calls_paths
from riskcore.api.errors import KEY_REFUSED, KEY_TRIES_USED_UP, error_answer
from riskcore.api.history_view import history_paths
from riskcore.api.paged_call_list import MOVES, SIZE_BANDS
from riskcore.api.query import DEFAULT_LIMIT, MAX_LIMIT
from riskcore.api.request_rows import MAX_RECORDS
from riskcore.api.views import ORDERS
from riskcore.contract import API_KEY_HEADER, FEATURES, ID_COLUMN, MAX_VALUE, REVENUE, TARGET
from riskcore.model.reasons import TREND

ERROR_REASONS = {
    400: "Bad input; the message names the field",
    401: KEY_REFUSED,
    403: "A dataset location outside the data folders",
    404: "No such dataset file, or no such client in the ingested data",
    413: "Request body, dataset or record count over the limit",
    415: "Unsupported content type",
    429: KEY_TRIES_USED_UP,
    503: "Not available yet (nothing deployed, no data or record)",
}

STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
NUMBER = {"type": "number"}
REASONS = {"type": "array", "items": {"$ref": "#/components/schemas/Reason"},
           "description": "raising the risk first, the largest first; empty for a model trained before its "
                          "metadata recorded the average client"}
COUNT = {"type": "integer", "minimum": 0}
REVENUE_VALUE = {"type": ["number", "null"], "minimum": 0, "maximum": MAX_VALUE,
                 "description": "optional, never a feature: the client's yearly revenue, in the data's own currency; "
                                "null: unknown"}
AT_RISK = {"type": ["number", "null"], "minimum": 0,
           "description": "probability x annual_revenue, to the cent (the calibrated probability, as shown); null "
                          "where the revenue is unknown"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), **more: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties, **more}


def json_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*codes: int) -> dict[str, Any]:
    return {str(code): error_answer(ERROR_REASONS[code]) for code in codes}


def with_key_limit(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation that may answer 401 may also answer 429: too many wrong keys from one address."""
    for item in paths.values():
        for operation in item.values():
            if "401" in operation["responses"]:
                operation["responses"]["429"] = error_answer(ERROR_REASONS[429])
    return paths


def component_schemas() -> dict[str, Any]:
    """The schemas more than one operation uses, or that are worth a name."""
    value = {"type": "integer", "minimum": 0, "maximum": MAX_VALUE}
    return {
        "Record": obj({ID_COLUMN: {"type": "string", "minLength": 1}, **dict.fromkeys(FEATURES, value),
                       TARGET: {"type": "integer", "enum": [0, 1], "description": "optional; ignored"},
                       REVENUE: REVENUE_VALUE},
                      (ID_COLUMN, *FEATURES), additionalProperties=False),
        "Reason": obj({"feature": {"enum": [*FEATURES, TREND],
                                   "description": f"what the reason is about; {TREND}: the two activity features "
                                                  "read together (last month against a twelfth of the year)"},
                       "values": obj({f: value for f in FEATURES}, additionalProperties=False,
                                     description="the client's value of each feature the reason stands for"),
                       "contributions": obj({f: NUMBER for f in FEATURES}, additionalProperties=False,
                                            description="each of those features' exact contribution to the "
                                                        "log-odds: coefficient x (value - mean)"),
                       "contribution": {"type": "number", "description": "their sum: what the reason adds to the "
                                                                         "log-odds against the average client"},
                       "text": {"type": "string", "description": "in the manager's words; its direction is the "
                                                                 "sign of contribution",
                                "examples": ["employees 6,462, about 65 times the typical 99: raises the risk "
                                             "strongly"]}},
                      ("feature", "values", "contributions", "contribution", "text")),
        "Prediction": obj({ID_COLUMN: STRING, "prediction": {"type": "integer", "enum": [0, 1]},
                           "probability": {"type": "number", "minimum": 0, "maximum": 1},
                           "revenue_at_risk": AT_RISK, "reasons": REASONS},
                          (ID_COLUMN, "prediction", "probability", "revenue_at_risk", "reasons")),
        "Client": obj({"rank": {"type": "integer", "minimum": 1}, ID_COLUMN: STRING,
                       "probability": {"type": "number", "minimum": 0, "maximum": 1},
                       "log_odds": {"type": "number", "description": "the rank key: the model's log-odds"},
                       "previous_rank": {"type": ["integer", "null"], "minimum": 1,
                                         "description": "the client's rank in the previous run's call list; null "
                                                        "for a client new on the list, or with no earlier run kept"},
                       "change": {"type": ["string", "null"], "pattern": "^(new|same|up [0-9]+|down [0-9]+)$",
                                  "description": "since the previous run: new, up N, down N or same; null with no "
                                                 "earlier run kept", "examples": ["up 12"]},
                       **dict.fromkeys(FEATURES, value), REVENUE: REVENUE_VALUE, "revenue_at_risk": AT_RISK,
                       "reasons": REASONS,
                       "contributions": {"type": ["object", "null"], "properties": {f: NUMBER for f in FEATURES},
                                         "description": "each feature's exact contribution to the log-odds; null "
                                                        "for a model without reasons"},
                       "measurement_group": {"type": "boolean", "description": "in this cycle's measurement group: "
                                                                               "not to be called this cycle"}},
                      ("rank", ID_COLUMN, "probability", "log_odds", "previous_rank", "change", *FEATURES, REVENUE,
                       "revenue_at_risk", "reasons", "contributions")),
        "SummaryRow": obj({"column": {"enum": list(FEATURES)}, "statistic": {"type": "string", "examples": ["median"]},
                           "value": {"type": ["number", "null"]}}, ("column", "statistic", "value")),
        "MissingShare": obj({"column": STRING, "missing_percent": {"type": "number", "minimum": 0, "maximum": 100},
                             "missing_count": COUNT}, ("column", "missing_percent", "missing_count")),
        "Dependency": obj({"package": STRING, "pinned": STRING, "installed": STRING, "latest": STRING,
                           "status": STRING, "reason": NULLABLE_STRING},
                          ("package", "pinned", "installed", "latest", "status")),
        "Error": obj({"status": {"type": "integer"}, "error": STRING, "message": STRING,
                      "field": {"type": "string", "description": "the field at fault, when there is one"}},
                     ("status", "error", "message")),
    }


def prediction_operation() -> dict[str, Any]:
    dataset = {"type": "string", "examples": ["testdata/testdata.csv"],
               "description": "relative to the config file's folder, taken literally; must resolve (links "
                              "followed) inside the input, ingested or test data folder"}
    records = {"type": "array", "minItems": 1, "maxItems": MAX_RECORDS, "items": ref("Record")}
    return {
        "summary": "Predictions and attrition probabilities for the supplied rows",
        "parameters": [{"name": "dataset", "in": "query", "required": False, "schema": STRING,
                        "description": "a CSV location, as in the JSON body's \"dataset\""}],
        "requestBody": {"required": False, "content": {
            "application/json": {"schema": {"oneOf": [
                obj({"records": records}, ("records",), additionalProperties=False),
                obj({"dataset": dataset}, ("dataset",), additionalProperties=False)]}},
            "text/csv": {"schema": STRING},
            "multipart/form-data": {"schema": obj({"file": {"type": "string", "format": "binary"}}, ("file",))}}},
        "responses": {
            "200": json_answer("One prediction per row, in order", obj(
                {"model_version": STRING, "release": STRING, "count": {"type": "integer", "minimum": 1},
                 "predictions": {"type": "array", "minItems": 1, "items": ref("Prediction")}},
                ("model_version", "release", "count", "predictions"))),
            **errors(400, 401, 403, 404, 413, 415, 503)},
    }


def call_list_header() -> dict[str, Any]:
    """What GET /risk and GET /risk/<id> both say of the call list they answer from."""
    return {
        "model_version": STRING, "release": STRING, "data": STRING, "modified_at": STRING,
        "total": COUNT, "rows_read": COUNT,
        "left_out": obj({"earlier_snapshots": COUNT, "left": COUNT}, ("earlier_snapshots", "left")),
        "average_log_odds": {"type": ["number", "null"],
                             "description": "the average client's; null for a model without reasons"},
        "compared_with_run": {"type": ["integer", "null"],
                              "description": "the run whose kept ranking previous_rank and change compare "
                                             "with; null when no earlier ranking is kept"}}


SIZE_TEXT = ", ".join(f"{band} {low}-{high}" if high is not None else f"{band} {low} or more"
                      for band, (low, high) in SIZE_BANDS.items())


def risk_operation() -> dict[str, Any]:
    def page(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}

    return {
        "summary": "The call list: the ingested clients who have not left, riskiest first, with their reasons",
        "description": "One row per client (its latest snapshot), ranked by the deployed model's log-odds; "
                       "ranked once per deployment and version of the ingested data. Unknown parameters are "
                       "refused.",
        "parameters": [page("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                            "clients per page"),
                       {**page("top", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                               "the older name of limit (give one of the two)"), "deprecated": True},
                       page("offset", {"type": "integer", "minimum": 0, "default": 0},
                            "clients to skip; at most the number of clients in the list (or of matches)"),
                       page("q", {"type": "string", "maxLength": 100},
                            "keep the clients whose id contains this text, whatever the case (as the page's "
                            "search)"),
                       page("size", {"enum": list(SIZE_BANDS)},
                            "keep the clients of a size band, in employees: " + SIZE_TEXT + " (as the page's filter)"),
                       page("moved", {"enum": list(MOVES)},
                            "new: the clients new on the list since the previous run; up: those who moved up (as the "
                            "page's filter)"),
                       page("order", {"enum": list(ORDERS), "default": ORDERS[0]},
                            "risk: riskiest first (the ranking); revenue_at_risk: the largest revenue at risk first, "
                            "clients whose revenue is unknown last, in rank order (rank stays the risk rank)")],
        "responses": {
            "200": json_answer("A page of the call list", obj({
                **call_list_header(),
                "q": {"type": ["string", "null"], "description": "the search, null without one"},
                "size": {"enum": [*SIZE_BANDS, None], "description": "the size band kept, null without one"},
                "moved": {"enum": [*MOVES, None], "description": "new or up: the move kept, null without one"},
                "order": {"enum": list(ORDERS), "description": "how the clients are ordered"},
                "matches": {"type": ["integer", "null"], "minimum": 0,
                            "description": "clients that q, size and moved keep (what offset pages through); null "
                                           "without any of them"},
                "offset": COUNT, "limit": {"type": "integer", "minimum": 1},
                "count": COUNT, "next_offset": {"type": ["integer", "null"]},
                "clients": {"type": "array", "items": ref("Client")}},
                ("model_version", "release", "data", "total", "q", "size", "moved", "matches", "offset", "limit",
                 "count", "next_offset", "clients"))),
            **errors(400, 401, 503)},
    }


def risk_client_operation() -> dict[str, Any]:
    value = {"type": "integer", "minimum": 0}
    dated = {"ingested_at": {"type": ["string", "null"],
                             "description": "when the snapshot's file was first ingested (ISO UTC): the first run "
                                            "that ingested it (run history), else the latest ingestion that read it "
                                            "(ingestion record), or a table's last read; null: not ingested yet"},
             "dated_by": {"enum": ["run history", "ingestion record", None],
                          "description": "where ingested_at comes from"}}
    where = {"source": {"type": "string", "description": "the input file (or table) holding the snapshot"},
             "row": {"type": ["integer", "null"], "minimum": 1,
                     "description": "its row in the source, counted from 1 below the header"}}
    return {
        "summary": "One client: its row of the call list as GET /risk gives it, or when it left; its story",
        "description": "A client on the call list has status \"listed\" and its row in client; a client whose "
                       "latest snapshot in the ingested data says it left (exited = 1) has status \"left\", client "
                       "null and left_recorded. Both carry their snapshots (every row of the client in the input "
                       "files or table, oldest first, dated, with the served model's probability) and runs (the "
                       "kept rankings that listed it). An id the ingested data does not hold is a 404.",
        "parameters": [{"name": "client_id", "in": "path", "required": True, "schema": STRING,
                        "description": "the client id (corporation), URL-encoded"}],
        "responses": {
            "200": json_answer("The client, with the list it belongs to and its story", obj({
                **call_list_header(), ID_COLUMN: STRING,
                "status": {"enum": ["listed", "left"]},
                "client": {"oneOf": [ref("Client"), {"type": "null"}],
                           "description": "the client's row of the call list; null for a client who left"},
                "left_recorded": {"oneOf": [{"type": "null"}, obj({**where, **dated}, ("source", "row",
                                                                                          "ingested_at", "dated_by"))],
                                  "description": "the snapshot that recorded that the client left (the first of its "
                                                 "last snapshots saying exited = 1; source finaldata.csv and row "
                                                 "null when the input no longer holds it); null for a listed client"},
                "snapshots": {"type": "array", "description": "oldest first", "items": obj({
                    **where, **dated, **dict.fromkeys(FEATURES, value),
                    TARGET: {"type": ["integer", "null"], "enum": [0, 1, None], "description": "null: no label"},
                    "probability": {"type": "number", "minimum": 0, "maximum": 1,
                                    "description": "the served model's calibrated probability of leaving for the "
                                                   "snapshot's figures"}},
                    ("source", "row", "ingested_at", "dated_by", *FEATURES, TARGET, "probability"))},
                "runs": {"type": "array", "description": "the kept rankings that listed the client, oldest first",
                         "items": obj({"run": {"type": "integer", "minimum": 1},
                                       "ranked_at": {"type": "string", "description": "when the run wrote its "
                                                                                      "ranking (ISO UTC)"},
                                       "rank": {"type": "integer", "minimum": 1},
                                       "log_odds": {"type": "number", "description": "the run's model's log-odds"},
                                       "probability": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                                                       "description": "the calibrated probability the run's list "
                                                                      "gave; null for a ranking kept without it"}},
                                      ("run", "ranked_at", "rank", "log_odds", "probability"))}},
                ("model_version", "release", "data", "total", ID_COLUMN, "status", "client", "left_recorded",
                 "snapshots", "runs"))),
            **errors(401, 404, 503)},
    }


def diagnostics_schema() -> dict[str, Any]:
    """The record diagnostics.py writes, as served (absolute paths reduced to file names)."""
    return obj({
        "generated_at": STRING, "model_version": STRING, "release": STRING,
        "summary": {"type": "array", "items": ref("SummaryRow")},
        "missing": {"type": "array", "items": ref("MissingShare")},
        "ingested_rows": COUNT,
        "timings": {"type": "object", "additionalProperties": NUMBER, "description": "seconds per step"},
        "timing_runs": {"type": "integer", "minimum": 1},
        "dependencies": {"type": "array", "items": ref("Dependency")},
        "dependencies_checked_at": {"type": ["string", "null"],
                                    "description": "when the package index gave the latest versions (ISO UTC); the "
                                                   "answer is reused for automation.dependency_check_hours"},
        "predictions": {"type": "array", "items": {"type": "integer", "enum": [0, 1]},
                        "description": "the deployed model's predictions for the test data, in order"},
        "test_data": STRING,
    }, ("generated_at", "model_version", "release", "summary", "missing", "timings", "dependencies"))


def openapi_document(api_key_required: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route create_app registers."""
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Dynamic Risk Assessment API", "version": "1.0.0",
                 "description": "Client attrition risk from the deployed model. Every answer is JSON, errors "
                                "included, but GET /metrics' (the Prometheus text format): a method a path does "
                                "not list is answered 405 (with an Allow header), an unknown path 404, both with "
                                "the Error document."},
        "paths": with_key_limit({
            "/prediction": {"post": prediction_operation()},
            "/risk": {"get": risk_operation()},
            "/risk/{client_id}": {"get": risk_client_operation()},
            "/scoring": {"get": {
                "summary": "F1 of the deployed model on the test data (computed once per deployment)",
                "responses": {"200": json_answer("The F1 score", obj(
                    {"f1": {"type": "number", "minimum": 0, "maximum": 1}, "data": STRING, "rows": COUNT,
                     "model_version": STRING, "release": STRING, "deployed_score": {"type": ["number", "null"]}},
                    ("f1", "data", "rows", "model_version", "release", "deployed_score"))),
                              **errors(401, 503)}}},
            "/summarystats": {"get": {
                "summary": "Mean, median and standard deviation of each numeric column of the ingested data",
                "responses": {"200": json_answer("The summary statistics", obj(
                    {"data": STRING, "modified_at": STRING, "summary": {"type": "array", "items": ref("SummaryRow")}},
                    ("data", "modified_at", "summary"))),
                              **errors(401, 503)}}},
            "/diagnostics": {"get": {
                "summary": "The latest diagnostics record (never recomputed in a request)",
                "responses": {"200": json_answer("The record diagnostics.py wrote", diagnostics_schema()),
                              **errors(401, 503)}}},
            **history_paths(),
            **calls_paths(),
            "/health": {"get": {
                "summary": "Liveness and the served model: when it was first deployed, its release and when that "
                           "was published, and a rollback or pin keeping it (no API key needed)", "security": [],
                "responses": {"200": json_answer("Up", obj(
                    {"status": {"enum": ["ok", "no_model"]}, "model_version": NULLABLE_STRING,
                     "deployed_at": NULLABLE_STRING, "release": NULLABLE_STRING,
                     "release_deployed_at": NULLABLE_STRING,
                     "operator_state": {"oneOf": [{"type": "null"}, obj(
                         {"state": {"enum": ["rolled back", "pinned"]}, "sentence": STRING,
                          "rollback": {"type": ["object", "null"]}, "pinned": {"type": ["object", "null"]},
                          "release": STRING, "model_version": STRING}, ("state", "sentence"))]},
                     "warning": STRING},
                    ("status", "model_version", "deployed_at", "release", "release_deployed_at",
                     "operator_state")))}}},
            "/metrics": {"get": {
                "summary": "Requests and latency per endpoint and status, the served model, its baseline F1, the "
                           "latest window's F1 or estimate, PSI per feature, seconds since the last successful "
                           "tick, the last run's outcome and step timings",
                "description": "The Prometheus text format (prometheus_client); figures the files do not hold yet "
                               "are left out. With api.metrics_open_on_loopback, a client on loopback needs no "
                               "API key.",
                "responses": {"200": {"description": "The metrics", "content": {
                    "text/plain": {"schema": {"type": "string", "examples": [
                        'risk_requests_total{endpoint="/health",status="200"} 3.0']}}}},
                              **errors(401)}}},
            "/openapi.json": {"get": {
                "summary": "This description",
                "responses": {"200": json_answer("The OpenAPI 3.1 document", obj(
                    {"openapi": STRING, "info": {"type": "object"}, "paths": {"type": "object"},
                     "components": {"type": "object"}, "security": {"type": "array"}},
                    ("openapi", "info", "paths", "components"))),
                              **errors(401)}}},
        }),
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}},
        },
    }
    if api_key_required:
        document["security"] = [{"ApiKey": []}]
    return document
