"""Calling a running risk API: the four endpoints the course asks for, recorded in apireturns<n>.txt.

POST /prediction names the test data by its location relative to the config file's folder, as the
API resolves it ({"dataset": "testdata/testdata.csv"}); when the test data folder is not below the
config file's folder, the test CSV is sent as the request body instead. A call that fails
(unreachable, timed out, or answered with a status other than 2xx) is recorded and logged with its
URL; the file is still written, atomically, with what was obtained.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import requests

from riskcore.api.key import api_key as resolve_api_key
from riskcore.config import Config
from riskcore.contract import API_KEY_HEADER, API_RETURNS, TEST_DATA, UserError
from riskcore.files import atomic_write_json, next_report_number, numbered_name, utc_now

log = logging.getLogger(__name__)

TIMEOUT = (5.0, 60.0)  # connect, read: the first request of a worker loads the model
MAX_TEXT = 10_000  # characters of a non-JSON body kept in the record


def dataset_location(config: Config) -> str | None:
    """The test data's location as the API resolves it (relative to the config file's folder), or None."""
    try:
        relative = config.test_data_file.relative_to(config.config_file.parent.resolve())
    except ValueError:
        return None
    return relative.as_posix()


def prediction_request(config: Config) -> dict[str, Any]:
    """POST /prediction of the test data: by location when the API can resolve it, else as CSV.

    A spec with an "error" stands for a call that cannot be made.
    """
    location = dataset_location(config)
    if location is not None:
        return {"method": "POST", "path": "/prediction", "json": {"dataset": location}}
    request = {"method": "POST", "path": "/prediction"}
    try:
        data = config.test_data_file.read_bytes()
    except OSError as exc:
        return {**request, "error": f"Test data {config.test_data_file} cannot be read "
                                    f"({exc.strerror or exc.__class__.__name__}); nothing to send."}
    return {**request, "content_type": "text/csv", "data": data,
            "described_as": f"{TEST_DATA} ({len(data)} bytes)"}


def endpoint_requests(config: Config) -> dict[str, dict[str, Any]]:
    """The four calls the course asks for, by endpoint name."""
    return {
        "prediction": prediction_request(config),
        "scoring": {"method": "GET", "path": "/scoring"},
        "summarystats": {"method": "GET", "path": "/summarystats"},
        "diagnostics": {"method": "GET", "path": "/diagnostics"},
    }


def failure_reason(exc: Exception) -> str:
    """A short reason for a failed call ("connection refused", "timed out", ...)."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    if errno:
        return errno.group(1).strip().lower()
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect"
    return exc.__class__.__name__


def body_of(response: requests.Response) -> tuple[str, Any]:
    """('body', decoded JSON) or ('body_text', the text, cut to MAX_TEXT characters)."""
    try:
        return "body", response.json()
    except ValueError:
        return "body_text", response.text[:MAX_TEXT]


def call(session: requests.Session, base_url: str, spec: dict[str, Any], api_key: str | None) -> dict[str, Any]:
    """Make one call; return its record (request, status, body or error). Never raises for the network."""
    url = base_url + spec["path"]
    shown_request: dict[str, Any] = {"method": spec["method"], "url": url}
    headers = {"Accept": "application/json"}
    if api_key:
        headers[API_KEY_HEADER] = api_key  # sent, never recorded
    kwargs: dict[str, Any] = {"headers": headers, "timeout": TIMEOUT, "allow_redirects": False}
    if "json" in spec:
        kwargs["json"] = spec["json"]
        shown_request["json"] = spec["json"]
    if "data" in spec:
        headers["Content-Type"] = spec["content_type"]
        kwargs["data"] = spec["data"]
        shown_request.update(content_type=spec["content_type"], body=spec["described_as"])
    record: dict[str, Any] = {"request": shown_request, "status": None}
    start = time.perf_counter()
    try:
        response = session.request(spec["method"], url, **kwargs)
    except requests.RequestException as exc:
        record["error"] = f"{spec['method']} {url} failed: {failure_reason(exc)}"
    else:
        record["status"] = response.status_code
        key, body = body_of(response)
        record[key] = body
        if not 200 <= response.status_code < 300:
            message = body.get("message") if isinstance(body, dict) else None
            record["error"] = f"{spec['method']} {url} answered {response.status_code}" + (
                f": {message}" if isinstance(message, str) else "")
            if response.status_code == 401:  # the API has a key: what the run sent, and where its key comes from
                record["error"] += (" (this run sent " + ("a key the API does not take" if api_key else "no key")
                                    + ": set RISK_API_KEY or automation.api_key_file to the API's key)")
        elif key != "body":
            record["error"] = f"{spec['method']} {url} answered {response.status_code} but not with JSON"
    record["elapsed_seconds"] = round(time.perf_counter() - start, 4)
    return record


def check_url(url: str) -> str:
    """The API's base URL without a trailing slash, or a UserError."""
    if not re.match(r"https?://[^/\s]+", url or ""):
        raise UserError(f'The API URL must be an http(s) URL such as http://127.0.0.1:8000, not "{url}".')
    return url.rstrip("/")


def returns_file(config: Config, run_number: int) -> Path:
    """output_model_path/apireturns.txt for run 1, apireturns<n>.txt for run n."""
    return config.output_model_folder / numbered_name(API_RETURNS, run_number)


def call_endpoints(config: Config, url: str, run_number: int | None = None,
                   api_key: str | None = None) -> list[str]:
    """Call the API's four endpoints and write apireturns(<n>).txt; return the failures, one sentence each.

    `run_number` picks the file (default: the first unused number); `api_key` defaults to
    riskcore.api.key's answer ($RISK_API_KEY, or an owner-only key file).
    """
    base_url = check_url(url)
    if api_key is None:
        api_key = resolve_api_key(config)
    if run_number is None:
        run_number = next_report_number(config.output_model_folder, (API_RETURNS,))
    target = returns_file(config, run_number)
    calls: dict[str, Any] = {}
    with requests.Session() as session:
        session.trust_env = False  # a proxy from the environment must not see the loopback API or the key
        for name, spec in endpoint_requests(config).items():
            if "error" in spec:
                calls[name] = record = {"request": {"method": spec["method"], "url": base_url + spec["path"]},
                                        "status": None, "error": spec["error"]}
            else:
                calls[name] = record = call(session, base_url, spec, api_key)
            if "error" in record:
                log.error("%s", record["error"])
            else:
                log.info("%s %s: %s in %.3f s", spec["method"], spec["path"], record["status"],
                         record["elapsed_seconds"])
    failures = [record["error"] for record in calls.values() if "error" in record]
    atomic_write_json(target, {
        "generated_at": utc_now(),
        "api_url": base_url,
        "run": run_number,
        "ok": not failures,
        "failures": failures,
        "endpoints": calls,
    })
    log.info("wrote %s", target)
    return failures
