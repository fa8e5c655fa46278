"""Who may use the client managers' pages: the key form, the signed session that remembers it, the forms' rate limits.

With an API key (riskcore.api.key), the pages ask for it once and remember it in Flask's signed
session: an HttpOnly, SameSite=Strict cookie that says the key was given and when (never the key
itself), signed under a secret derived from the key, so a new key turns every earlier cookie away.
The JSON API still takes only the X-API-Key header. Without an API key the session is signed under
the page secret beside the models (form_guard.page_secret), made the first time a call form is shown.

The two forms, the key form and a client's call form, are rate-limited per client address
(riskcore.api.form_guard). riskcore.api.pages registers these functions on its blueprint.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from datetime import timedelta
from pathlib import Path

from flask import Flask, Response, abort, current_app, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from itsdangerous import URLSafeTimedSerializer
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from riskcore.api.errors import ApiError
from riskcore.api.form_guard import ATTEMPTS_ENV, RateLimit, page_secret
from riskcore.api.key import MAX_KEY_LENGTH
from riskcore.api.risk_service import service
from riskcore.contract import ConfigError

log = logging.getLogger(__name__)

COOKIE = "risk_page_session"
COOKIE_DAYS = 30  # the form asks again after this long, or as soon as the key changes
# The rate limits per client address and minute, in each worker process (riskcore.api.form_guard).
LOGIN_ATTEMPTS_PER_MINUTE = 10  # tries of the key: the key form's, and wrong X-API-Key headers (riskcore.api.factory)
CALL_FORMS_PER_MINUTE = 30
KEY_GIVEN = "key_given"  # the session's one entry
MAX_FORM_BYTES = 16 * 1024  # a form's body: a call's 500 characters of note take at most 6,000 bytes encoded


def current_key() -> str | None:
    """The API key now, for the endpoints and the pages (riskcore.api.key.KeyWatch: a changed key file is
    noticed within seconds, and the sessions signed under the old key stop working with it)."""
    try:
        return current_app.extensions["risk_key"].current()
    except ConfigError as exc:
        raise ApiError(503, f"The API key cannot be checked: {exc}") from None


class PageSession(SecureCookieSessionInterface):
    """Flask's signed cookie session, signed under the current key, marked Secure when asked for over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure

    def open_session(self, app: Flask, request) -> SessionMixin | None:
        """Without a key and without a cookie, an empty session that needs no secret until it is written."""
        if request.cookies.get(self.get_cookie_name(app)) is None and self._key() is None:
            return self.session_class()
        return super().open_session(app, request)

    @staticmethod
    def _key() -> str | None:
        try:
            return current_key()
        except ApiError:  # require_key answers it with its sentence; a session opens before error handlers run
            return ""

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        """Flask's serializer, under a secret derived from the key of this moment (not app.secret_key), or
        under the page secret beside the models when no key is set."""
        key = self._key()
        if key == "":
            return None
        if key is None:
            try:
                secret = page_secret(service().config.output_model_folder)
            except (ConfigError, OSError) as exc:
                log.error("no session for the pages' forms: %s", exc)
                return None
        else:
            secret = session_secret(key)
        return URLSafeTimedSerializer(secret, salt=self.salt, serializer=self.serializer,
                                      signer_kwargs={"key_derivation": self.key_derivation,
                                                     "digest_method": self.digest_method})


def session_secret(key: str) -> bytes:
    """The session's signing secret: derived from the API key (never the key itself), so it changes with it."""
    return hmac.new(key.encode("ascii"), b"risk pages session", hashlib.sha256).digest()


def keep_the_key_in_a_session(state) -> None:
    """The app that registers the pages signs their session under its key, in a cookie of COOKIE_DAYS."""
    app = state.app
    app.config.update(SESSION_COOKIE_NAME=COOKIE, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_PATH="/", PERMANENT_SESSION_LIFETIME=timedelta(days=COOKIE_DAYS),
                      SESSION_REFRESH_EACH_REQUEST=False)  # the form asks again COOKIE_DAYS after it was filled
    app.session_interface = PageSession()  # signed under the key of the moment: a new key ends every session
    shared = Path(os.environ[ATTEMPTS_ENV]) if os.environ.get(ATTEMPTS_ENV) else None  # one for every worker
    app.extensions["risk_page_limits"] = {"login": RateLimit(LOGIN_ATTEMPTS_PER_MINUTE, shared=shared, form="login"),
                                          "calls": RateLimit(CALL_FORMS_PER_MINUTE, shared=shared, form="calls")}


def too_many(form: str) -> tuple[str, int, dict[str, str]] | None:
    """The 429 page when this address sent the form too often in the last minute (counting this attempt)."""
    limit: RateLimit = current_app.extensions["risk_page_limits"][form]
    address = request.remote_addr or "unknown"
    if limit.allow(address):
        return None
    log.warning("%s form: too many attempts from %s", form, address)
    page, status = error_page(429, f"Too many attempts from this address: at most {limit.attempts} a minute; "
                                   "wait a minute and try again.")
    return page, status, {"Retry-After": str(limit.retry_after(address))}


def limited_form(message: str) -> ImmutableMultiDict:
    """The request's form, or 413 with `message` when its body is larger than MAX_FORM_BYTES (a chunked one too):
    werkzeug would parse a form of any size up to the API's 16 MB, field by field."""
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        abort(413, message)
    request.max_content_length = MAX_FORM_BYTES  # a chunked body is cut off at the same size
    try:
        return request.form
    except RequestEntityTooLarge:
        abort(413, message)


def local_target(target: str | None) -> str:
    """Where to go after the key form: a path of this site, never another site."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or not target.isprintable():
        return url_for("pages.index")
    return target


def key_form(next_page: str, message: str | None = None) -> str:
    return render_template("login.html", next_page=next_page, message=message, days=COOKIE_DAYS)


def require_key() -> Response | None:
    """With an API key, every page but the key form (and its stylesheet) leads to the form without the cookie.

    A redirect to a form served with 200, as a browser expects a sign-in: a 401 would be a failed
    load in the browser's console.
    """
    if request.endpoint in ("pages.login", "pages.static") or not current_key():
        return None
    if session.get(KEY_GIVEN) is True:  # Flask checked the signature and the age
        return None
    if request.endpoint == "pages.record_call":  # a form sent without the cookie is refused, not redirected
        abort(403, "Recording a call needs the API key: open the client's page, enter the key, and send the form "
                   "again.")
    return redirect(url_for("pages.login", next=request.full_path.rstrip("?")), 303)


def login() -> Response | str:
    """The key form; the right key sets the cookie and goes back to the page that asked for it."""
    key = current_key()
    target = local_target(request.values.get("next"))
    if not key:
        return redirect(target, 303)
    if request.method == "GET":
        return key_form(target)
    refused = too_many("login")
    if refused:
        return refused
    given = limited_form(f"The key form is larger than {MAX_FORM_BYTES:,} bytes; a key holds at most "
                         f"{MAX_KEY_LENGTH} characters.").get("key", "").strip()
    if not hmac.compare_digest(given.encode("utf-8"), key.encode("ascii")):
        log.warning("key form: a wrong key from %s", request.remote_addr)
        return key_form(target, "That is not the API key; try again." if given else "Enter the API key.")
    session.permanent = True  # kept COOKIE_DAYS, not only until the browser closes
    session[KEY_GIVEN] = True
    return redirect(target, 303)


def logout() -> Response:
    if current_key():  # without a key there is no session (nor a secret to sign one)
        session.clear()  # Flask then deletes the cookie
    return redirect(url_for("pages.index"), 303)


def error_page(status: int, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, message=message), status
