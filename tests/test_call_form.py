"""Tests for a client's call form (POST /clients/<id>/calls) and the pages' form guards (riskcore.api.form_guard),
through Flask's test client: the CSRF token, the key cookie, the rate limits, the size limit, escaping, the
page secret, and the last call on the call list and the client's page. The browser test is in test_browser.py."""

from __future__ import annotations

import os
import re
import stat
import threading
from datetime import date, timedelta
from pathlib import Path

import pytest
from test_pages import HOSTILE, KEY, build_project, call_rows, log_in, text_of

import app as app_module
from riskcore.api import form_guard, page_access, pages
from riskcore.api.form_guard import PAGE_SECRET, RateLimit, page_secret
from riskcore.contract import ConfigError
from riskcore.ops.calls import calls_path, read_calls, record_cycle


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return build_project(tmp_path_factory.mktemp("call-form"))


@pytest.fixture
def config(project):
    """The module's project with no call recorded yet."""
    calls_path(project.output_model_folder).unlink(missing_ok=True)
    return project


@pytest.fixture
def client(config):
    return app_module.create_app(config.config_file, test_config={"RISK_API_KEY": None}).test_client()


@pytest.fixture
def keyed(config):
    return app_module.create_app(config.config_file, test_config={"RISK_API_KEY": KEY}).test_client()


def token_of(response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    assert found, "no CSRF token in the page"
    return found.group(1)


def stored(config) -> list[dict]:
    return read_calls(calls_path(config.output_model_folder), 1000, 0)[1]


def send(client, client_id: str = "twice", token: str | None = "from-page", **fields):
    """POST the form of a client's page; token 'from-page' takes the token its page holds."""
    if token == "from-page":
        token = token_of(client.get(f"/clients/{client_id}"))
    form = {"when": date.today().isoformat(), "outcome": "at_risk", "note": "", "by": "Ana"} | fields
    if token is not None:
        form["csrf_token"] = token
    return client.post(f"/clients/{client_id}/calls", data=form)


# --- Recording a call ------------------------------------------------------------------------
def test_a_call_sent_from_the_page_is_stored_and_the_browser_goes_back_to_the_page(client, config):
    three_days_ago = (date.today() - timedelta(days=3)).isoformat()
    response = send(client, when=three_days_ago, outcome="at_risk", note="wants a discount", by="Ana Lima")
    assert response.status_code == 303 and response.headers["Location"] == "/clients/twice#calls"
    assert [(c["corporation"], c["when"], c["outcome"], c["note"], c["by"]) for c in stored(config)] == [
        ("twice", three_days_ago, "at_risk", "wants a discount", "Ana Lima")]
    page = client.get("/clients/twice")
    shown = text_of(page)
    assert "called 3 days ago: at risk" in shown and "wants a discount" in shown and "reached, at risk" in shown


def test_the_form_offers_the_four_outcomes_in_words_today_and_the_last_name(client):
    send(client, by="Zoë O'Neil")
    page = client.get("/clients/twice").get_data(as_text=True)
    assert re.findall(r'name="outcome" value="(\w+)"', page) == ["stays", "at_risk", "leaving", "not_reached"]
    for words in ("reached, says they stay", "reached, at risk", "reached, leaving", "not reached"):
        assert words in page
    assert f'name="when" type="date" value="{date.today().isoformat()}"' in page
    assert 'name="by" type="text" value="Zoë O&#39;Neil"' in page
    assert 'maxlength="500"' in page


def test_the_caller_cookie_is_httponly_and_strict(client):
    response = send(client, by="Ana")
    cookie = next(v for v in response.headers.getlist("Set-Cookie") if v.startswith(pages.CALLER_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and cookie.startswith("risk_caller=Ana;")


def test_the_call_list_shows_the_last_call_as_soon_as_it_is_recorded(client, config):
    assert call_rows(client.get("/?q=twice"))[0][1] == "twice"  # rendered, and kept, before any call
    send(client, "twice", when=(date.today() - timedelta(days=1)).isoformat(), outcome="stays")
    assert call_rows(client.get("/?q=twice"))[0][1].endswith("called yesterday: says they stay")
    send(client, "twice", when=date.today().isoformat(), outcome="leaving")
    rows = call_rows(client.get("/?q=twice"))
    assert len(rows) == 1 and rows[0][1].endswith("called today: leaving")


@pytest.mark.parametrize("token", [None, "", "not-the-token"])
def test_a_form_without_the_sessions_token_is_refused_and_stores_nothing(client, config, token):
    client.get("/clients/twice")  # the session holds a token, but not the one sent
    response = send(client, token=token)
    assert response.status_code == 403 and "did not come from this site" in text_of(response)
    assert stored(config) == []


def test_the_token_is_compared_in_constant_time(client, config, monkeypatch):
    """The sent token meets the session's only in hmac.compare_digest, right or wrong (a == would return at the first
    differing character, and its time would tell an attacker how much of a guess was right)."""
    import hmac

    compared, original = [], hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or original(a, b))
    token = token_of(client.get("/clients/twice"))
    guess = token[:-1] + ("A" if token[-1] != "A" else "B")  # right but for the last character
    assert send(client, token=guess).status_code == 403
    assert send(client, token=token).status_code == 303
    # The session cookie's signature is checked by the same function: only the token's comparisons are kept here.
    assert [sent for sent, expected in compared if expected == token.encode()] == [guess.encode(), token.encode()]


def test_a_token_of_another_session_is_refused(config):
    first = app_module.create_app(config.config_file, test_config={"RISK_API_KEY": None}).test_client()
    second = app_module.create_app(config.config_file, test_config={"RISK_API_KEY": None}).test_client()
    second.get("/clients/twice")
    assert send(second, token=token_of(first.get("/clients/twice"))).status_code == 403
    assert stored(config) == []


def test_the_form_is_post_only(client, config):
    # A GET is the page of a client whose id is "twice/calls" (ids may hold a slash): there is none.
    got = client.get("/clients/twice/calls")
    assert got.status_code == 404 and "twice/calls" in text_of(got)
    assert client.put("/clients/twice/calls").status_code == 405
    assert client.delete("/clients/twice/calls").status_code == 405
    assert stored(config) == []


@pytest.mark.parametrize(("fields", "named"), [
    ({"outcome": "maybe"}, '"outcome"'), ({"outcome": ""}, '"outcome"'), ({"when": "2026-13-01"}, '"when"'),
    ({"when": "tomorrow"}, '"when"'), ({"note": "x" * 501}, '"note"'), ({"by": ""}, '"by"'),
    ({"by": "a\x00b"}, '"by"'),
])
def test_a_bad_field_gets_the_page_again_with_a_sentence_naming_it(client, config, fields, named):
    response = send(client, **fields)
    assert response.status_code == 400
    [problem] = re.findall(r'<p class="warn" role="alert" id="call-problem">([^<]*)</p>',
                           response.get_data(as_text=True))
    assert named.replace('"', "&#34;") in problem or named in problem
    assert stored(config) == []


def test_a_call_of_an_unknown_client_is_a_404(client, config):
    token = token_of(client.get("/clients/twice"))
    assert send(client, "nobody", token=token).status_code == 404 and stored(config) == []


def test_a_body_over_the_limit_is_refused(client, config):
    token = token_of(client.get("/clients/twice"))
    response = client.post("/clients/twice/calls", data={"csrf_token": token, "outcome": "stays", "by": "Ana",
                                                         "note": "x" * (page_access.MAX_FORM_BYTES + 1)})
    assert response.status_code == 413 and stored(config) == []


@pytest.mark.parametrize("form", [{"key": "x" * (page_access.MAX_FORM_BYTES + 1)},
                                  {f"field{n}": "v" for n in range(page_access.MAX_FORM_BYTES // 8)}])
def test_a_key_form_over_the_limit_is_refused_before_it_is_parsed(keyed, form):
    """The key form takes a key of at most 256 characters: a 15 MB body or 300,000 fields took 1.4 s each to
    parse with no key needed (10 a minute from each address)."""
    response = keyed.post("/login", data=form)
    assert response.status_code == 413 and "The key form is larger than" in text_of(response)
    assert "Set-Cookie" not in response.headers


def test_a_note_with_markup_is_shown_as_text(client, config):
    assert send(client, note=HOSTILE, by="<b>Ana</b>").status_code == 303
    page = client.get("/clients/twice").get_data(as_text=True)
    assert HOSTILE not in page and "<b>Ana</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert stored(config)[0]["note"] == HOSTILE


def test_a_client_whose_id_is_markup_gets_its_call(client, config):
    with app_module.create_app(config.config_file).test_request_context():
        link = pages.client_link(HOSTILE)
    token = token_of(client.get(link))
    response = client.post(link + "/calls", data={"csrf_token": token, "outcome": "stays", "by": "Ana"})
    assert response.status_code == 303 and response.headers["Location"] == link + "#calls"
    assert [c["corporation"] for c in stored(config)] == [HOSTILE]


def test_a_measurement_group_client_is_marked_on_the_list_and_its_page(client, config):
    record_cycle(calls_path(config.output_model_folder), 1,
                 [{"client": "twice", "rank": 1, "probability": 0.5, "snapshot": {}}], 50, 1.0)
    assert "measurement group: not to be called this cycle" in text_of(client.get("/clients/twice"))
    assert "measurement group: not to be called this cycle" in call_rows(client.get("/?q=twice"))[0][1]


# --- With an API key -------------------------------------------------------------------------
def test_with_a_key_a_form_without_the_key_cookie_is_refused(keyed, client, config):
    token = token_of(client.get("/clients/twice"))  # a token of another session, without the key
    response = keyed.post("/clients/twice/calls", data={"csrf_token": token, "outcome": "stays", "by": "Ana"})
    assert response.status_code == 403 and "needs the API key" in text_of(response)
    assert stored(config) == []


def test_with_a_key_and_its_cookie_the_form_records_the_call(keyed, config):
    log_in(keyed)
    assert send(keyed).status_code == 303
    assert len(stored(config)) == 1


# --- The rate limits -------------------------------------------------------------------------
def test_the_key_form_answers_429_after_its_limit(keyed, monkeypatch):
    for _ in range(page_access.LOGIN_ATTEMPTS_PER_MINUTE):
        assert keyed.post("/login", data={"key": "wrong"}).status_code == 200
    response = keyed.post("/login", data={"key": KEY})
    assert response.status_code == 429 and "Too many attempts" in text_of(response)
    assert int(response.headers["Retry-After"]) >= 1
    other = keyed.post("/login", data={"key": KEY}, environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert other.status_code == 303  # another address is not limited


def test_the_call_form_answers_429_after_its_limit(client, config):
    token = token_of(client.get("/clients/twice"))
    for number in range(page_access.CALL_FORMS_PER_MINUTE):
        assert send(client, token=token, note=f"call {number}").status_code == 303
    response = send(client, token=token, note="one too many")
    assert response.status_code == 429 and "Too many attempts" in text_of(response)
    assert len(stored(config)) == page_access.CALL_FORMS_PER_MINUTE
    form = {"when": date.today().isoformat(), "outcome": "stays", "note": "from elsewhere", "by": "Bo",
            "csrf_token": token}
    other = client.post("/clients/twice/calls", data=form, environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert other.status_code == 303  # the limit is per client address: another one is not limited
    assert len(stored(config)) == page_access.CALL_FORMS_PER_MINUTE + 1


def test_under_gunicorn_the_limits_hold_across_the_workers(config, tmp_path, monkeypatch):
    """Two apps (two workers) given one attempts file, as gunicorn.conf.py gives every worker of a start: the
    address gets the limit once in all, not once per worker (the walk saw 18 key-form tries pass a limit of 10)."""
    monkeypatch.setenv(form_guard.ATTEMPTS_ENV, str(tmp_path / "attempts.sqlite"))
    workers = [app_module.create_app(config.config_file, test_config={"RISK_API_KEY": KEY}).test_client()
               for _ in range(2)]
    answers = [workers[n % 2].post("/login", data={"key": "wrong"}).status_code
               for n in range(page_access.LOGIN_ATTEMPTS_PER_MINUTE + 2)]
    assert answers == [200] * page_access.LOGIN_ATTEMPTS_PER_MINUTE + [429, 429]
    other = workers[0].post("/login", data={"key": KEY}, environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert other.status_code == 303  # another address is not limited
    assert workers[1].post("/login", data={"key": KEY}, environ_base={"REMOTE_ADDR": "127.0.0.3"}).status_code == 303
    assert send(workers[1]).status_code == 303  # the call form has its own window, apart from the key form's


def test_gunicorn_names_the_attempts_file_by_the_name_the_pages_read():
    assert f'ATTEMPTS_ENV = "{form_guard.ATTEMPTS_ENV}"' in (Path(app_module.__file__).parent
                                                            / "gunicorn.conf.py").read_text(encoding="utf-8")


def test_a_shared_window_forgets_attempts_ahead_of_the_clock(tmp_path):
    """The monotonic clock starts again at a reboot: attempts it seems to have made later are not counted."""
    now = [1000.0]
    limit = RateLimit(1, 60, clock=lambda: now[0], shared=tmp_path / "attempts.sqlite", form="login")
    assert limit.allow("a") and not limit.allow("a")
    now[0] = 5.0
    assert limit.allow("a")


def test_the_window_slides():
    now = [0.0]
    limit = RateLimit(2, 60, clock=lambda: now[0])
    assert limit.allow("a") and limit.allow("a") and not limit.allow("a") and limit.allow("b")
    now[0] = 59.9
    assert not limit.allow("a")
    now[0] = 60.1
    assert limit.allow("a")


# --- The page secret -------------------------------------------------------------------------
def test_the_page_secret_is_made_once_owner_only_and_shared(tmp_path):
    found: list[bytes] = []
    threads = [threading.Thread(target=lambda: found.append(page_secret(tmp_path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 1 and len(found[0]) == form_guard.SECRET_BYTES
    assert stat.S_IMODE((tmp_path / PAGE_SECRET).stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [PAGE_SECRET]  # no temporary file left
    assert page_secret(tmp_path) == found[0]


def test_a_page_secret_others_can_read_is_refused(tmp_path):
    page_secret(tmp_path)
    os.chmod(tmp_path / PAGE_SECRET, 0o644)
    with pytest.raises(ConfigError, match="can be read by others"):
        page_secret(tmp_path)


def test_without_a_key_the_session_is_signed_under_the_page_secret(client, config):
    client.get("/clients/twice")
    assert (Path(config.output_model_folder) / PAGE_SECRET).is_file()
    cookie = client.get_cookie(page_access.COOKIE)
    assert cookie is not None and cookie.http_only and cookie.same_site == "Strict"
