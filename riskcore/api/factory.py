"""The risk-assessment HTTP API: create_app(), the factory app.py and wsgi.py serve.

errors        ApiError, the JSON error document and the handlers that make every error JSON
request_rows  the rows a prediction request supplies (records, CSV body, upload, confined dataset path)
query         the query parameters (?top=, ?offset=, ?limit=, ?page=), read one way
served_model  the deployed model, loaded once per release (hash-checked), ready to predict
risk_service  what one process keeps between requests: the model, the run history, the GET answers
paged_call_list  the call list GET /risk and the page page through, search and filter
file_cache    the one cache of everything built from files, kept until one of them changes
metrics       GET /metrics (Prometheus): requests and latency, and the model and automation figures from files
warm_up       what each gunicorn worker does before it takes requests: the model, the call list and the page
views         the endpoints                              openapi   the OpenAPI 3.1 description
history_view  GET /history: the automation's run history, newest first, paged
calls_view    GET, POST /calls and GET /calls.csv: the calls managers recorded (riskcore.ops.calls)
pages         the client managers' web page (HTML: GET /, /model, /clients/<id>, downloads)
page_access   who may use the pages: the key form, its signed session, the forms' rate limits

The factory loads the config once, checks the API key before every request (RISK_API_KEY, or the
owner-only file RISK_API_KEY_FILE or automation.api_key_file names: riskcore.api.key; sent as
X-API-Key; /health needs none; the pages ask for it with their own form; /metrics none from loopback
when api.metrics_open_on_loopback is on), counts and times every request (riskcore.api.metrics) and
adds the security headers to every answer. Wrong keys in the header share the key form's limit per
address (riskcore.api.form_guard): past it, every key from that address is a 429 for the rest of the minute.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request

from riskcore.api.calls_view import calls
from riskcore.api.errors import AnswerJSONProvider, ApiError, json_bytes, register_error_handlers
from riskcore.api.form_guard import RateLimit
from riskcore.api.history_view import history
from riskcore.api.key import KeyWatch
from riskcore.api.metrics import install as install_metrics
from riskcore.api.metrics import is_loopback, open_to_this_request
from riskcore.api.openapi import openapi_document
from riskcore.api.page_access import current_key
from riskcore.api.pages import site
from riskcore.api.request_rows import MAX_CONTENT_LENGTH
from riskcore.api.risk_service import RiskService
from riskcore.api.views import api
from riskcore.config import load_config
from riskcore.contract import API_KEY_HEADER, CONFIG_ENV

__all__ = ["create_app"]

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health"})  # answered without the API key


def check_api_key() -> None:
    """Before every request: the X-API-Key header must match the API key when one is set; a request answered
    without the key must be addressed to this machine by name (check_host)."""
    if request.path in OPEN_PATHS:
        return
    expected = current_key()
    if expected and request.blueprint == site.name:
        return  # the pages check the key themselves: a form and its cookie (riskcore.api.pages)
    given = request.headers.get(API_KEY_HEADER, "")
    if expected and given:
        refuse_key_guesses(key_tries().blocked_for(request.remote_addr or "unknown"))
    if expected and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        return
    if not expected or open_to_this_request(current_app):
        check_host()
        return
    if given:
        address = request.remote_addr or "unknown"
        if not key_tries().allow(address):
            log.warning("X-API-Key: too many wrong keys from %s", address)
            refuse_key_guesses(key_tries().blocked_for(address) or key_tries().retry_after(address))
    raise ApiError(401, f"This endpoint needs the {API_KEY_HEADER} header with the API key."
                   if not given else f"The {API_KEY_HEADER} header does not hold the API key.")


def key_tries() -> RateLimit:
    """The limit on tries of the key from one address, the key form's (riskcore.api.page_access): one budget for
    the form and the header, so that neither doubles the guesses the other allows."""
    return current_app.extensions["risk_page_limits"]["login"]


def refuse_key_guesses(wait: int) -> None:
    """A 429 while the address has used up its tries of the key (`wait`: whole seconds left; 0: go on)."""
    if wait:
        limit = key_tries()
        raise ApiError(429, f"Too many wrong API keys from this address: at most {limit.attempts} tries of the key "
                            f"a minute; try again in {wait} seconds.", field=API_KEY_HEADER,
                       headers={"Retry-After": str(wait)})


def check_host() -> None:
    """Without the key, answer only a request whose Host is this machine (127.0.0.1, [::1], localhost): a web page
    elsewhere that points its own name at 127.0.0.1 (DNS rebinding) would otherwise read and write through the
    browser of whoever opens it, from loopback."""
    try:
        name = urlsplit(f"//{request.host}").hostname or ""
    except ValueError:  # "[bad": an unclosed IPv6 bracket
        name = ""
    if name == "localhost" or name.endswith(".localhost") or is_loopback(name):
        return
    raise ApiError(400, f"The Host header {json.dumps(request.host[:100])} does not name this machine: without an API "
                        "key only requests to 127.0.0.1, [::1] or localhost are answered; set RISK_API_KEY to serve "
                        "under another name.", field="Host")


def add_headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


def create_app(config_path: str | os.PathLike | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Build the API for a config file (default: $RISK_CONFIG, else config.json beside the scripts)."""
    config = load_config(config_path if config_path is not None else os.environ.get(CONFIG_ENV) or None)
    app = Flask(__name__, static_folder=None)
    app.url_map.merge_slashes = False  # "/static//page.css" is a 404 in JSON, not a 308 with an HTML body
    app.json = AnswerJSONProvider(app)  # every JSON answer encoded one way (riskcore.api.errors.json_bytes)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        DEBUG=False,
        PROPAGATE_EXCEPTIONS=False,
        PROVIDE_AUTOMATIC_OPTIONS=False,  # OPTIONS would answer 200 with an empty HTML body; it is a 405 here
        RISK_METRICS_OPEN_ON_LOOPBACK=config.api["metrics_open_on_loopback"],
    )
    watch = KeyWatch.of(config)  # a key no header could carry is refused here, at start-up
    app.config["RISK_API_KEY"] = watch.current()
    if test_config:
        app.config.update(test_config)
        if "RISK_API_KEY" in test_config:
            watch = KeyWatch(test_config["RISK_API_KEY"])
    app.extensions["risk_key"] = watch
    app.config["RISK_OPENAPI"] = json_bytes(openapi_document(bool(app.config["RISK_API_KEY"])))
    app.extensions["risk"] = RiskService(config)
    install_metrics(app)  # first: its timer starts before the key is checked
    app.before_request(check_api_key)
    app.after_request(add_headers)
    register_error_handlers(app)
    app.register_blueprint(api)
    app.register_blueprint(history)
    app.register_blueprint(calls)
    app.register_blueprint(site)
    return app
