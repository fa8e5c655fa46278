"""The endpoints: POST /prediction, GET /risk, /scoring, /summarystats, /diagnostics, /health and /openapi.json."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from riskcore.api.errors import ApiError, answer_response, json_response
from riskcore.api.query import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    known_parameters,
    query_choice,
    query_number,
    search_text,
)
from riskcore.api.request_rows import rows_of_request
from riskcore.api.risk_service import service
from riskcore.release.listing import served_summary

api = Blueprint("api", __name__)

PAGE_PARAMETERS = ("limit", "top", "offset", "q", "size", "moved", "order")  # top: the older name of limit, still taken
ORDERS = ("risk", "revenue_at_risk")  # ?order=: riskiest first (the ranking), or the largest revenue at risk first


@api.post("/prediction")
def prediction() -> Response:
    """Predictions, attrition probabilities, revenue at risk (where a row gives annual_revenue) and their reasons for
    the supplied rows."""
    served = service().models.get()
    ids, features, revenues = rows_of_request(service().config)
    labels, attrition = served.predict(features)
    reasons = served.reasons(features)
    at_risk = served.revenue_at_risk(attrition, revenues)
    return json_response({
        "model_version": served.model_version,
        "release": served.release,
        "count": len(ids),
        "predictions": [{"corporation": c, "prediction": p, "probability": q, "revenue_at_risk": m, "reasons": r}
                        for c, p, q, m, r in zip(ids, labels, attrition, at_risk, reasons, strict=True)],
    })


@api.get("/risk")
def risk() -> Response:
    """The call list: ?limit= clients (default 50; ?top= is the same) from ?offset= (default 0), riskiest first,
    with their reasons; the page's filters: ?q= keeps the clients whose id contains it, whatever the case, ?size= a
    size band (micro, small, medium, large), ?moved= the clients new on the list or moved up since the previous
    run; ?order=revenue_at_risk puts the largest revenue at risk first (unknown revenue last)."""
    from riskcore.api.paged_call_list import MOVES, SIZE_BANDS

    known_parameters("/risk", PAGE_PARAMETERS, '"limit" (or "top"), "offset", "q", "size", "moved" and "order"')
    if "limit" in request.args and "top" in request.args:
        raise ApiError(400, 'Give "limit" or "top" (the same page size), not both.', field="top")
    name = "top" if "top" in request.args else "limit"
    limit = query_number(name, DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = query_number("offset", 0, 0)
    order = query_choice("order", ORDERS, ORDERS[0])
    band, moved = query_choice("size", tuple(SIZE_BANDS)), query_choice("moved", MOVES)
    return answer_response(service().risk(service().models.get(), limit, offset, search_text(), order, band, moved))


@api.get("/risk/<path:client_id>")
def risk_of_client(client_id: str) -> Response:
    """One client: its row of the call list as /risk gives it, or its status "left" and where that was recorded;
    with its dated snapshots and their risk and its runs (riskcore.api.client_story); a 404 naming an unknown id."""
    from riskcore.api.client_story import client_story, known_client

    risk = service()
    served = risk.models.get()
    calls, status = known_client(risk, served, client_id)
    story = client_story(risk, served, client_id, status)
    return answer_response(calls.one(client_id, risk.measurement_group(), story))


@api.get("/scoring")
def scoring() -> Response:
    """F1 of the deployed model on the test data, computed once per release."""
    return answer_response(service().scoring(service().models.get()))


@api.get("/summarystats")
def summarystats() -> Response:
    """Mean, median and standard deviation of each numeric column of the ingested data."""
    return answer_response(service().summary())


@api.get("/diagnostics")
def diagnostics_record() -> Response:
    """The latest diagnostics record: timings, missing-data shares, dependency versions."""
    return answer_response(service().diagnostics())


@api.get("/health")
def health() -> Response:
    """Liveness, and which model is served: since when, from which release, and whether an operator keeps it."""
    pointer, served = service().models.serve()
    document: dict[str, Any] = {"status": "ok" if served else "no_model", "model_version": None,
                                "deployed_at": None, "release": None, "release_deployed_at": None,
                                "operator_state": None}
    if served is not None:
        document.update(served_summary(service().config.prod_deployment_folder, served.deployment))
    if pointer is not None and (served is None or served.release != pointer):
        document["warning"] = (f"The current deployment ({pointer}) failed to load; "
                               + (f"still serving release {served.release}." if served else "nothing is served."))
    return json_response(document)


@api.get("/openapi.json")
def openapi() -> Response:
    """This API's OpenAPI 3.1 description."""
    return Response(current_app.config["RISK_OPENAPI"], mimetype="application/json")
