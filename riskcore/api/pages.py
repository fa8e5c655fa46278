"""The client managers' web page: whom to call, why, and whether the model behind it can be trusted.

GET /                  the managers' page: a one-line health strip, this cycle's calls (the top
                       reporting.calls_per_cycle clients with their main reason), the rest a page at a time
GET /model             the data scientist's page: the served model, its scores, the latest drift check, whether
                       calling helps (riskcore.report.call_effect, as the PDF says it), the runs
GET /clients/<id>      one client: its latest snapshot, its probability, its risk across the runs, its dated
                       snapshots with their risk; a client who left, when that was recorded
GET /downloads/...     the full risk list (risk_scores.csv) and the latest PDF report
GET, POST /login       the key form, when the API has a key; POST /logout forgets it
POST /clients/<id>/calls  a client's call form: records a call (riskcore.ops.calls), then back to the client's page

Rendered on the server with Jinja2 (templates/) and styled by one CSS file the app serves (static/):
no JavaScript, so the page works with it off, and a Content-Security-Policy that allows only the
app's own stylesheet and icon. Jinja escapes every value from the data. What the pages show is
gathered and cached by riskcore.api.page_data.

Who may see the pages and send their forms (the key form, the signed session that remembers the
key, the forms' rate limits) is riskcore.api.page_access; this module registers it on the blueprint.
The pages are read-only but for two forms, the key form and a client's call form. The call form is
POST only, carries a CSRF token held in the signed session (compared in constant time), needs the
key cookie when a key is set, and its body is limited to MAX_FORM_BYTES.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from datetime import date
from typing import Any
from urllib.parse import quote, unquote

from flask import Blueprint, Response, abort, redirect, render_template, request, send_file, session, url_for
from flask.sessions import NullSession
from werkzeug.exceptions import HTTPException

from riskcore.api import page_data
from riskcore.api.client_story import (
    DATES_NOTE,
    LEFT,
    LEFT_RECORDED,
    LISTED,
    RUNS,
    SNAPSHOTS,
    client_story,
    known_client,
    left_sentence,
)
from riskcore.api.errors import ApiError, handle_http_error
from riskcore.api.form_guard import CSRF_FIELD, csrf_ok, csrf_token
from riskcore.api.page_access import (
    MAX_FORM_BYTES,
    error_page,
    keep_the_key_in_a_session,
    limited_form,
    login,
    logout,
    require_key,
    too_many,
)
from riskcore.api.page_charts import risk_chart
from riskcore.api.page_data import downloads, latest_report
from riskcore.api.page_health import call_effect, health_strip, model_health
from riskcore.api.paged_call_list import BY_REVENUE, MOVES, SIZE_BANDS, CallList
from riskcore.api.query import given_number, page_in_range, page_search_text, query_choice
from riskcore.api.risk_service import RiskService, service
from riskcore.api.served_model import Served
from riskcore.contract import FEATURE_LABELS, FEATURES, ID_COLUMN, RISK_SCORES, SUMMARY_REPORT
from riskcore.formatting import (
    BELOW_CHANCE,
    below_chance,
    count,
    day,
    fixed,
    money,
    percent,
    rank_change,
    score,
    signed,
    size,
    when,
)
from riskcore.model.drift_evidence import checked_rows
from riskcore.ops.calls import (
    GROUP_MARK,
    MAX_BY,
    MAX_NOTE,
    OUTCOMES,
    CallError,
    calls_path,
    check_call,
    last_call_text,
    last_calls,
    read_calls,
    record_calls,
)
from riskcore.release.listing import served_summary

log = logging.getLogger(__name__)

site = Blueprint("pages", __name__, template_folder="templates", static_folder="static", static_url_path="/static")
# Access (riskcore.api.page_access): the key form, the session that remembers it, the forms' rate limits.
site.record_once(keep_the_key_in_a_session)
site.before_request(require_key)
site.add_url_rule("/login", view_func=login, methods=["GET", "POST"])
site.add_url_rule("/logout", view_func=logout, methods=["POST"])

CALLER_COOKIE = "risk_caller"  # the name last entered in a call form's "by", to fill it in next time
CALLER_DAYS = 365
CALLS_SHOWN = 50  # a client's calls listed on its page, newest first
# Only the app's own stylesheet and icon; an inline <svg> is markup, not an image, and needs no source.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                           "frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


@site.after_request
def page_headers(response: Response) -> Response:
    response.headers.update(PAGE_HEADERS)
    return response


# --- The pages -------------------------------------------------------------------------------
def serving_now(risk: RiskService, served: Served | None) -> dict[str, Any] | None:
    """The served model as /health and the PDF name it, with the rollback or pin banner (riskcore.release.listing)."""
    return served_summary(risk.config.prod_deployment_folder, served.deployment) if served is not None else None


@site.get("/")
def index() -> str:
    """The managers' page: the health strip and this cycle's calls, then the rest of the list a page at a time."""
    risk = service()
    pointer, served = risk.models.serve()
    query, band, moved, order = list_filters()
    number, _ = given_number("page", 1)  # checked against the pages there are when the page is rendered
    minute = int(time.time() // 60)  # the strip says how long ago the model was checked
    return page_data.rendered(risk, pointer, served, ("calls", number, query, band, moved, order, minute),
                              lambda: render_index(risk, pointer, served, number, query, band, moved, order))


def list_filters() -> tuple[str, str, str, str]:
    """The page's search, filters and order (q, size, moved, order); an unknown size band, move or order is a 400
    naming it. The order is GET /risk's (?order=revenue_at_risk); empty: by risk."""
    return (page_search_text(), query_choice("size", tuple(SIZE_BANDS)), query_choice("moved", MOVES),
            query_choice("order", (BY_REVENUE,)))


def render_index(risk: RiskService, pointer: str | None, served: Served | None, number: int | None, query: str,
                 band: str = "", moved: str = "", order: str = "") -> str:
    from riskcore.report.call_list import at_risk_sentence, calls_at_risk

    calls = risk.call_list(served) if served is not None else None
    rows, pages, matches = [], 1, 0
    size = risk.config.reporting["calls_per_cycle"]
    strip = health_strip(served, pointer, risk.history().runs, time.time())
    if isinstance(calls, CallList):
        rows, number, pages, matches = calls.page(number, query, size, band, moved, order or "risk")
        strip["at_risk"] = at_risk_sentence(calls_at_risk(calls.frame, size, calls.served.calibrator))
    else:
        number = page_in_range(number, pages, "no call list to page through")
    today = date.today()
    called = last_calls(calls_path(risk.config.output_model_folder), [row[ID_COLUMN] for row in rows])
    filters = {"q": query or None, "size": band or None, "moved": moved or None, "order": order or None}
    return render_template("index.html", strip=strip, calls=calls, rows=rows, page=number, pages=pages,
                           last_call={client: last_call_text(call, today) for client, call in called.items()},
                           group=risk.measurement_group(),
                           first_rank=(number - 1) * size + 1, matches=matches, query=query, band=band, moved=moved,
                           order=order, filtered=bool(query or band or moved or order), filters=filters,
                           bands=SIZE_BANDS, serving=serving_now(risk, served),
                           downloads=downloads(risk.config.output_model_folder, served))


@site.get("/model")
def model() -> str:
    """The data scientist's page: the served model, its scores, the latest drift check, the call effect and the runs."""
    risk = service()
    pointer, served = risk.models.serve()
    return page_data.rendered(risk, pointer, served, ("model",), lambda: render_model(risk, pointer, served))


def render_model(risk: RiskService, pointer: str | None, served: Served | None) -> str:
    runs = risk.history().runs
    health = model_health(risk, served, runs)
    health["quality"] = page_data.quality(risk, served, runs) if served is not None else None
    if health["drifted"]:
        health["drift_charts"] = page_data.drift_charts(risk, served, health["check"], health["drifted"])
    return render_template("model.html", health=health, call_effect=call_effect(risk), pointer=pointer,
                           serving=serving_now(risk, served),
                           features=FEATURES, labels=FEATURE_LABELS, new_rows=checked_rows,
                           downloads=downloads(risk.config.output_model_folder, served))


ENCODED_ID = "~"  # a client link's segment that starts with it holds the id in base64url (client_link)


def plain_link(client_id: str) -> bool:
    """Whether /clients/<id> as written reaches the client: browsers drop `.` and `..` segments, treat a
    backslash as a slash, and a slash would split the id."""
    return bool(client_id) and not client_id.startswith(ENCODED_ID) and client_id not in (".", "..") \
        and not any(ch in client_id for ch in "/\\")


def client_link(client_id: str) -> str:
    """The page of a client, as an address every browser opens: the id itself, or ~ and its base64url."""
    if plain_link(client_id):
        return url_for("pages.client", client_id=client_id)
    token = base64.urlsafe_b64encode(client_id.encode("utf-8")).decode("ascii").rstrip("=")
    return url_for("pages.client", client_id=ENCODED_ID + token)


def client_of_link(segment: str) -> str:
    """The client id a link names (client_link's inverse); a segment that is no encoding is the id itself."""
    if segment.startswith(ENCODED_ID):
        with contextlib.suppress(ValueError):
            return base64.urlsafe_b64decode(segment[1:] + "=" * (-len(segment[1:]) % 4)).decode("utf-8")
    return segment


site.add_app_template_global(client_link, "client_link")
site.add_app_template_global(GROUP_MARK, "group_mark")


@site.get("/clients/<path:client_id>")
def client(client_id: str) -> str:
    """One client: its probability and features, its risk across runs, its dated snapshots, its calls and the form;
    a client who left, when; a 404 naming an id the ingested data does not hold."""
    return render_client(client_of_link(client_id))


def listed_client(client_id: str) -> tuple[RiskService, CallList, dict[str, Any]]:
    """The service, its call list and the client's row in it; a 503 page without a list, a 404 without the client."""
    risk = service()
    calls = risk.call_list(risk.models.get())
    if not isinstance(calls, CallList):
        abort(503, calls)
    latest = calls.client(client_id)
    if latest is None:
        abort(404, f"No client {client_id!r} in the call list.")
    return risk, calls, latest


def caller_name() -> str:
    """The name the call form's "by" starts with: the last one this browser sent (CALLER_COOKIE)."""
    name = unquote(request.cookies.get(CALLER_COOKIE, ""))[:MAX_BY]
    return name if name.isprintable() else ""


def render_client(client_id: str, form: dict[str, str] | None = None, problem: str | None = None,
                  status: int = 200) -> tuple[str, int]:
    """The client's page (riskcore.api.client_story): on the list, its probability, reasons and call form; left, when
    that was recorded; either way its risk across the runs and its dated snapshots with their risk. With a refused
    form, the values sent and the sentence naming the bad field."""
    risk = service()
    served = risk.models.get()
    calls, state = known_client(risk, served, client_id)
    story = client_story(risk, served, client_id, state)
    today = date.today()
    total, recorded = read_calls(calls_path(risk.config.output_model_folder), CALLS_SHOWN, 0, client_id)
    token = None if state == LEFT or isinstance(session, NullSession) else csrf_token(session)
    form = form or {"when": today.isoformat(), "outcome": "", "note": "", "by": caller_name()}
    snapshots = story[SNAPSHOTS][::-1]  # newest first
    table = risk.config.input_database is not None
    page = render_template("client.html", client_id=client_id, left=state == LEFT,
                           latest=calls.client(client_id) if state == LISTED else None,
                           left_sentence=left_sentence(story[LEFT_RECORDED], table) if state == LEFT else None,
                           recording=story[LEFT_RECORDED], snapshots=snapshots, dates_note=DATES_NOTE,
                           table_source=table, calls=calls,
                           runs=story[RUNS], risk_chart=risk_chart(story[RUNS]),
                           serving=serving_now(risk, served), features=FEATURES, labels=FEATURE_LABELS,
                           recorded=recorded, recorded_total=total,
                           last_call=last_call_text(recorded[0] if recorded else None, today),
                           in_group=client_id in risk.measurement_group(), outcomes=OUTCOMES, form=form,
                           problem=problem, token=token, today=today.isoformat(), max_note=MAX_NOTE, max_by=MAX_BY)
    return page, status


@site.post("/clients/<path:client_id>/calls")
def record_call(client_id: str) -> Response | tuple[str, int] | tuple[str, int, dict[str, str]]:
    """The call form: a call of this client stored, then back to its page (303); a bad field, the page again (400)."""
    refused = too_many("calls")
    if refused:
        return refused
    sent = limited_form(f"The form is larger than {MAX_FORM_BYTES:,} bytes; a note holds at most {MAX_NOTE} "
                        "characters.")
    if not csrf_ok(session, sent.get(CSRF_FIELD)):
        log.warning("call form: a missing or wrong CSRF token from %s", request.remote_addr)
        abort(403, "This form did not come from this site's page, or its page is too old; open the client's page "
                   "again and send the form from there.")
    client_id = client_of_link(client_id)
    risk, _, _ = listed_client(client_id)
    form = {name: sent.get(name, "") for name in ("when", "outcome", "note", "by")}
    try:
        call = check_call({ID_COLUMN: client_id, **form}, date.today())
    except CallError as exc:
        return render_client(client_id, form, str(exc), 400)
    record_calls(calls_path(risk.config.output_model_folder), [call])
    response = redirect(client_link(client_id) + "#calls", 303)
    response.set_cookie(CALLER_COOKIE, quote(call.by), max_age=CALLER_DAYS * 86400, path="/", httponly=True,
                        samesite="Strict", secure=request.is_secure)
    return response


@site.get("/downloads/risk_scores.csv")
def risk_list_csv() -> Response:
    """The full risk list, as the latest report run wrote it."""
    path = service().config.output_model_folder / RISK_SCORES
    if not path.is_file():
        abort(404, f"No risk list ({RISK_SCORES}) yet; reporting.py writes it with the reports.")
    return send_file(path, mimetype="text/csv", as_attachment=True, download_name=RISK_SCORES)


@site.get("/downloads/call_list.csv")
def shown_list_csv() -> Response:
    """The clients the page shows for its search and filters (every page of them), in risk_scores.csv's columns."""
    risk = service()
    calls = risk.call_list(risk.models.get())
    if not isinstance(calls, CallList):
        abort(503, calls)
    query, band, moved, order = list_filters()
    text = calls.shown_csv(query, band, moved, risk.measurement_group(), order or "risk")
    return Response(text, mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="call_list.csv"'})


@site.get("/downloads/summary_report.pdf")
def report_pdf() -> Response:
    """The PDF report of the latest run."""
    path = latest_report(service().config.output_model_folder)
    if path is None:
        abort(404, f"No PDF report ({SUMMARY_REPORT}) yet; reporting.py writes it.")
    return send_file(path, mimetype="application/pdf", as_attachment=True, download_name=path.name)


# --- Errors, as pages ------------------------------------------------------------------------
@site.errorhandler(HTTPException)
def page_refusal(exc: HTTPException) -> tuple[str, int] | Response:
    if request.endpoint == "pages.static":
        return handle_http_error(exc)  # a missing file is no page: the API's JSON 404
    status = exc.code or 500
    return error_page(status, exc.description if status in (400, 403, 404, 413, 503) else "This page cannot be shown.")


@site.errorhandler(ApiError)
def api_refusal(exc: ApiError) -> tuple[str, int]:
    return error_page(exc.status, exc.message)  # 400: a bad query parameter; 503: no model to serve


@site.errorhandler(Exception)
def page_failure(exc: Exception) -> tuple[str, int]:
    log.exception("unexpected error in %s %s", request.method, request.path)
    return error_page(500, "Internal error; see the server log.")


# --- How numbers read: the PDF report's vocabulary (riskcore.formatting) ---------------------
site.add_app_template_filter(percent, "percent")
site.add_app_template_filter(count, "count")
site.add_app_template_filter(rank_change, "rank_change")
site.add_app_template_filter(score, "score")
site.add_app_template_filter(signed, "signed")
site.add_app_template_filter(fixed, "number")
site.add_app_template_filter(size, "size")
site.add_app_template_filter(money, "money")
site.add_app_template_filter(when, "when")
site.add_app_template_filter(day, "day")
site.add_app_template_test(below_chance, "below_chance")
site.add_app_template_global(BELOW_CHANCE, "below_chance_words")
