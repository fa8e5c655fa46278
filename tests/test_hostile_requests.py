"""Hostile requests against the API: each gets a 4xx JSON answer, none a 500, none reads outside, none runs code.

tests/test_app.py already checks the ordinary refusals (dataset locations, malformed JSON, bad values,
the API key matrix) through Flask's test client. This file adds what only a real HTTP server shows
(raw request targets, chunked and lying bodies, unknown methods), the forms of traversal and of
code-carrying bodies test_app.py does not try, and a bounded property-based test. Every response is
checked the same way: JSON, the expected 4xx, no planted secret in it, no server path in it; and
after every test, no file outside the data folders was opened and the pickle marker does not exist.
The tests that start a real server are marked slow; those through the test client are not.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app as app_module
from conftest import HEADER, client_rows, deploy_pipeline, write_config, write_csv
from riskcore.api.request_rows import MAX_CONTENT_LENGTH
from riskcore.config import Config, load_config
from riskcore.contract import API_KEY_ENV, API_KEY_HEADER, COLUMNS, FEATURES, MAX_VALUE

SECRET = "TOPSECRET-7f3a9c"  # planted outside the data folders; must never appear in an answer
API_KEY = "k3y-for-hostile-tests"
CSV_HEADER = ",".join(COLUMNS[:-1])
RECORD = {"corporation": "abcd", "lastmonth_activity": 10, "lastyear_activity": 120, "number_of_employees": 4}
LIMIT = MAX_CONTENT_LENGTH


# --- Watching which files the server opens ---------------------------------------------------
_opened: list[str] | None = None  # paths opened while a test watches; None when nobody watches
_hook_installed = False


def _audit(event: str, args: tuple) -> None:
    if _opened is None or event != "open":
        return
    path = args[0]
    if isinstance(path, (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(path))


def install_audit_hook() -> None:
    """One process-wide hook (audit hooks cannot be removed); it does nothing unless a test watches."""
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)
        _hook_installed = True


# --- The site under attack -------------------------------------------------------------------
class Evil:
    """A pickle that, if ever unpickled, creates the marker file: proof that code ran."""

    marker: Path

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@dataclass
class Target:
    """The project under attack: deployed, with secrets and links planted around its data folders."""

    config: Config
    root: Path
    marker: Path
    forbidden: tuple[Path, ...]  # files a hostile request might try to make the server read

    def pickled(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
        return pickle.dumps(Evil(self.marker), protocol=protocol)


@dataclass
class Site(Target):
    """The project served by a real HTTP server."""

    url: str = ""
    port: int = 0


def build_target(root: Path) -> Target:
    write_csv(root / "input" / "dataset1.csv", client_rows(120, seed=1))
    write_csv(root / "input" / "dataset2.csv", client_rows(100, seed=2))
    write_csv(root / "test" / "testdata.csv", client_rows(60, seed=3, prefix="t"))
    config = load_config(write_config(root))
    deploy_pipeline(config)
    outside = root / "outside"
    secret_csv = write_csv(outside / "secret.csv", [f"{SECRET},1,2,3,0"])
    secret_txt = outside / "secret.txt"
    secret_txt.write_text(f"{SECRET}\n", encoding="utf-8")
    marker = outside / "pwned"
    # Links planted inside the data folders, pointing out of them (directly, through a chain, at
    # system files and at the model), and a pickle named like a CSV file.
    (root / "test" / "to_secret.csv").symlink_to(secret_csv)
    (root / "test" / "to_passwd.csv").symlink_to("/etc/passwd")
    (root / "input" / "hop.csv").symlink_to(secret_csv)
    (root / "test" / "chain.csv").symlink_to(root / "input" / "hop.csv")
    (root / "input" / "to_model.csv").symlink_to(config.model_file)
    (root / "input" / "to_config.csv").symlink_to(config.config_file)
    (root / "ingested" / "outside_dir").symlink_to(outside, target_is_directory=True)
    (root / "input" / "evil.csv").write_bytes(pickle.dumps(Evil(marker), protocol=0))
    (root / "input" / "evil5.csv").write_bytes(pickle.dumps(Evil(marker), protocol=5))
    forbidden = (secret_csv, secret_txt, Path("/etc/passwd"), Path("/etc/shadow"), config.config_file,
                 config.model_file, Path("/proc/self/environ"))
    return Target(config=config, root=root, marker=marker, forbidden=forbidden)


def serve(application):
    """A real HTTP server (werkzeug, threaded) on a free loopback port; returns (server, thread)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Target:
    install_audit_hook()
    return build_target(tmp_path_factory.mktemp("hostile"))


def served(hostile: Target, application):
    """Serve an app of the hostile project on a real HTTP server for the module; yields its Site."""
    server, thread = serve(application)
    try:
        yield Site(config=hostile.config, root=hostile.root, marker=hostile.marker, forbidden=hostile.forbidden,
                   url=f"http://127.0.0.1:{server.server_port}", port=server.server_port)
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def site(hostile):
    yield from served(hostile, app_module.create_app(hostile.config.config_file))


@pytest.fixture(scope="module")
def keyed_site(hostile):
    """The same project served with an API key required."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(API_KEY_ENV, API_KEY)
        application = app_module.create_app(hostile.config.config_file)
    yield from served(hostile, application)


@pytest.fixture(autouse=True)
def nothing_read_outside_and_no_code_run(request):
    """After each test: no forbidden file was opened by anyone in this process, and no code ran."""
    if "hostile" not in request.fixturenames:
        yield
        return
    global _opened
    site = request.getfixturevalue("hostile")
    _opened = []
    try:
        yield
    finally:
        opened, _opened = _opened, None
    forbidden = {os.path.realpath(p) for p in site.forbidden}
    read = sorted({p for p in opened if os.path.realpath(p) in forbidden})
    assert read == [], f"the server opened files outside the data folders: {read}"
    assert not site.marker.exists(), "an unpickled request body ran code"


def test_the_checks_would_see_a_file_read_outside_and_code_run(hostile):
    """The watch is not vacuous: reading the secret is seen, and unpickling the body creates the marker."""
    global _opened
    (hostile.root / "outside" / "secret.txt").read_text()
    assert any(os.path.realpath(p) == os.path.realpath(hostile.root / "outside" / "secret.txt") for p in _opened)
    pickle.loads(hostile.pickled())  # noqa: S301 - deliberately, on our own bytes
    assert hostile.marker.exists()
    hostile.marker.unlink()
    _opened = []


# --- Raw HTTP ----------------------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def http(site: Site, method: str | bytes, target: str | bytes, body: bytes = b"", headers: dict | None = None,
         chunked: bool = False, content_length: int | None = None, timeout: float = 30) -> Answer:
    """Send one request byte for byte (no client-side normalisation) and read the answer it gets."""
    lines = [(method.encode() if isinstance(method, str) else method) + b" "
             + (target.encode() if isinstance(target, str) else target) + b" HTTP/1.1",
             b"Connection: close"]
    if not any(name.lower() == "host" for name in headers or {}):
        lines.append(b"Host: 127.0.0.1")
    for name, value in (headers or {}).items():
        lines.append(name.encode() + b": " + (value.encode("latin-1") if isinstance(value, str) else value))
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
        step = 1 << 20
        payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + step]), body[i:i + step])
                           for i in range(0, len(body), step)) + b"0\r\n\r\n"
    else:
        lines.append(b"Content-Length: %d" % (len(body) if content_length is None else content_length))
        payload = body
    request_bytes = b"\r\n".join(lines) + b"\r\n\r\n" + payload
    with socket.create_connection(("127.0.0.1", site.port), timeout=timeout) as sock:
        sender = threading.Thread(target=_send_quietly, args=(sock, request_bytes), daemon=True)
        sender.start()  # the server may answer (413) before it has read everything we send
        return _read_answer(sock, head_only=method in ("HEAD", b"HEAD"))


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def _read_answer(sock: socket.socket, head_only: bool) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the server closed the connection without an answer: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head_only else int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(status=int(status_line.split()[1]), headers=headers, body=body[:length])


def refused(answer: Answer, status: int, *phrases: str, site: Site | None = None) -> dict:
    """A JSON error with this 4xx status, naming the phrases, leaking neither the secret nor server paths."""
    assert 400 <= status < 500
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers.get("content-type", "").startswith("application/json"), answer.headers
    document = answer.json()
    assert document["status"] == status and document["error"] and document["message"]
    for phrase in phrases:
        assert phrase in document["message"], document["message"]
    text = answer.body.decode("utf-8", "replace")
    assert SECRET not in text and "Traceback" not in text and "root:" not in text
    if site is not None:
        assert str(site.root) not in text
    return document


def post_json(site: Site, document, target: str = "/prediction", **kwargs) -> Answer:
    return http(site, "POST", target, json.dumps(document).encode(), {"Content-Type": "application/json"}, **kwargs)


@pytest.mark.slow
# --- 1. Path traversal, every form -------------------------------------------------------------
@pytest.mark.parametrize(("location", "status", "phrase"), [
    ("test/to_passwd.csv", 403, "inside the input, ingested or test"),  # link to a system file
    ("test/chain.csv", 403, "inside the input, ingested or test"),  # link -> link -> outside
    ("input/to_model.csv", 403, "inside the input, ingested or test"),  # link to the model pickle
    ("input/to_config.csv", 403, "inside the input, ingested or test"),  # link to the config file
    ("ingested/outside_dir/secret.csv", 403, "inside the input, ingested or test"),  # linked folder
    ("/proc/self/environ", 403, "absolute"),
    ("file:///etc/passwd", 403, "inside the input, ingested or test"),
    ("C:/Windows/win.ini", 403, "inside the input, ingested or test"),
    ("\uff0e\uff0e/outside/secret.csv", 403, "inside the input, ingested or test"),  # fullwidth dots
    ("test/..%c0%af..%c0%afoutside/secret.csv", 400, "percent-encoding"),  # overlong UTF-8
    ("%25%32%65%25%32%65/outside/secret.csv", 400, "percent-encoding"),  # double-encoded, spelled out
    ("test/testdata.csv\x00/../../outside/secret.csv", 400, "NUL"),
    ("input/../outside/secret.txt", 403, '".."'),
])
def test_dataset_traversal_in_the_json_body_is_refused(site, location, status, phrase):
    document = refused(post_json(site, {"dataset": location}), status, phrase, site=site)
    assert document["field"] == "dataset"


@pytest.mark.slow
@pytest.mark.parametrize(("query", "status"), [
    (b"dataset=test%2Fto_passwd.csv", 403),  # encoded slash, link to a system file
    (b"dataset=%252e%252e%252foutside%252fsecret.csv", 400),  # double-encoded
    (b"dataset=..%5Coutside%5Csecret.csv", 400),  # encoded backslashes
    (b"dataset=%2Fproc%2Fself%2Fenviron", 403),  # encoded absolute path
    (b"dataset=test/chain.csv", 403),
    (b"dataset=test/testdata.csv&dataset=outside/secret.csv", 400),  # the same parameter twice
])
def test_dataset_traversal_in_the_query_string_is_refused(site, query, status):
    refused(http(site, "POST", b"/prediction?" + query), status, site=site)


@pytest.mark.slow
@pytest.mark.parametrize("target", [
    b"/../../etc/passwd", b"/prediction/../../etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd", b"/%252e%252e/etc/passwd",
    b"/..%2f..%2fetc%2fpasswd", b"//etc/passwd", b"/scoring%00", b"/scoring%00.json", b"/static/../config.json",
    b"/prediction/..%5c..%5cconfig.json", b"/outside/secret.csv", b"/test/testdata.csv",
])
def test_traversal_in_the_request_target_is_404_json(site, target):
    refused(http(site, "GET", target), 404, "No such endpoint", site=site)


@pytest.mark.slow
def test_a_raw_nul_byte_in_the_request_target_never_reaches_a_file(site):
    answer = http(site, "GET", b"/scoring\x00/../../etc/passwd")
    assert 400 <= answer.status < 500  # the server's or the API's refusal, never a file


@pytest.mark.slow
# --- 2. Bodies that carry code -----------------------------------------------------------------
@pytest.mark.parametrize(("content_type", "protocol", "status", "phrase"), [
    ("application/octet-stream", 5, 415, "application/octet-stream"),
    ("application/python-pickle", 0, 415, "application/python-pickle"),
    ("application/x-python-serialize", 2, 415, "application/x-python-serialize"),
    ("application/json", 5, 400, "not valid JSON"),
    ("application/json", 0, 400, "not valid JSON"),
    ("text/csv", 0, 400, "The request body"),
    ("text/csv", 5, 400, "The request body"),
])
def test_a_pickled_object_as_the_body_is_never_unpickled(site, content_type, protocol, status, phrase):
    refused(http(site, "POST", "/prediction", site.pickled(protocol), {"Content-Type": content_type}),
            status, phrase, site=site)


@pytest.mark.slow
def test_a_pickle_uploaded_as_a_file_is_never_unpickled(site):
    boundary = "hostileboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../model.pkl\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + site.pickled() + \
        f"\r\n--{boundary}--\r\n".encode()
    refused(http(site, "POST", "/prediction", body,
                 {"Content-Type": f"multipart/form-data; boundary={boundary}"}), 400, "The uploaded file", site=site)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["input/evil.csv", "input/evil5.csv"])
def test_a_pickle_named_like_a_dataset_is_read_as_text_and_refused(site, name):
    refused(post_json(site, {"dataset": name}), 400, name.split("/")[1], site=site)


@pytest.mark.slow
# --- 3. Content types, malformed and nested JSON -----------------------------------------------
@pytest.mark.parametrize(("content_type", "body", "status", "phrase"), [
    ("application/xml", b"<records><r corporation='a'/></records>", 415, "application/xml"),
    ("application/x-" + "a" * 5000, b"{}", 415, "content type"),
    ("text/csv", json.dumps({"records": [RECORD]}).encode(), 400, "The request body"),
    ("application/json", f"{CSV_HEADER}\nabcd,1,2,3\n".encode(), 400, "not valid JSON"),
    ("application/json; charset=latin-1", '{"records": [{"corporation": "soci\xe9t\xe9"}]}'.encode("latin-1"),
     400, "not valid JSON"),
    ("multipart/form-data", b"--x\r\n\r\n", 400, '"file"'),
    ("multipart/form-data; boundary=other", b"--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\na\r\n--x--",
     400, '"file"'),
    ("application/json", b'{"records": []} trailing', 400, "not valid JSON"),
    ("application/json", b'{"records": [' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"]}", 400,
     "nested too deeply"),
    ("application/json", b'{"records": [{"corporation": "a", "lastmonth_activity": ' + b"[" * 500 + b"]" * 500
     + b', "lastyear_activity": 1, "number_of_employees": 1}]}', 400, "not a list"),
    ("application/json", b'{"records": [{"corporation": "a", "corporation": {"$gt": ""}, "lastmonth_activity": 1,'
     b' "lastyear_activity": 1, "number_of_employees": 1}]}', 400, 'the key "corporation" twice'),
    ("application/json", b'{"records": [{"corporation": {"$gt": ""}, "lastmonth_activity": 1,'
     b' "lastyear_activity": 1, "number_of_employees": 1}]}', 400, "not an object"),
    ("application/json", b'{"__proto__": {"admin": true}, "records": []}', 400, '"__proto__"'),
    ("application/json", b'{"records": [{"corporation": "a\\ud800", "lastmonth_activity": 1, "lastyear_activity": 1,'
     b' "number_of_employees": 1}]}', 400, "lone surrogate"),  # json.loads takes it; no answer can be written with it
    # a key given twice: the last value wins in every reader, so the first "records" lost its rows without a word
    ("application/json", b'{"records": [{"corporation": "a", "lastmonth_activity": 1, "lastyear_activity": 1, '
     b'"number_of_employees": 1}], "records": []}', 400, 'the key "records" twice'),
    ("application/json", b'{"records": [{"corporation": "a", "lastmonth_activity": 1, "lastmonth_activity": 900, '
     b'"lastyear_activity": 1, "number_of_employees": 1}]}', 400, 'the key "lastmonth_activity" twice'),
    ("application/json", b'{"records": [{"corporation": "a", "lastmonth_activity": NaN, "lastyear_activity": 1, '
     b'"number_of_employees": 1}], "records": []}', 400, 'the key "records" twice'),  # read by json.loads
])
def test_wrong_content_types_and_malformed_bodies_are_4xx(site, content_type, body, status, phrase):
    refused(http(site, "POST", "/prediction", body, {"Content-Type": content_type}), status, phrase, site=site)


@pytest.mark.slow
# --- 4. Numbers: huge, strings, lookalikes ---------------------------------------------------------
@pytest.mark.parametrize(("value", "phrase"), [
    ("1e309", "Infinity"), ("-1e309", "-Infinity"), ("9" * 4000, "above"), ("1E12000", "Infinity"),
    ('"1e3"', "a string"), ('"0x1F"', "a string"), ('"\\u0661\\u0662"', "a string"), ("12.000001", "12.000001"),
])
def test_huge_numbers_and_strings_for_numbers_in_json_are_400(site, value, phrase):
    record = '{"corporation": "a", "lastmonth_activity": VALUE, "lastyear_activity": 1, "number_of_employees": 1}'
    body = ('{"records": [' + record.replace("VALUE", value) + "]}").encode()
    refused(http(site, "POST", "/prediction", body, {"Content-Type": "application/json"}), 400,
            "records[0].lastmonth_activity", phrase, site=site)


@pytest.mark.slow
@pytest.mark.parametrize(("value", "phrase"), [
    ("99999999999999999999999999", "implausibly large"), ("1e400", "whole number"), ("0x1F", '"0x1F"'),
    ("\u0661\u0662", "\u0661\u0662"), ("\uff11\uff12", "\uff11\uff12"), ("12abc", '"12abc"'), ("1_000", '"1_000"'),
])
def test_huge_numbers_and_strings_for_numbers_in_csv_are_400(site, value, phrase):
    body = f"{CSV_HEADER}\nabcd,{value},1,1\n".encode()
    refused(http(site, "POST", "/prediction", body, {"Content-Type": "text/csv; charset=utf-8"}), 400,
            "lastmonth_activity", phrase, site=site)


# --- 4b. DNS rebinding: a request addressed to another name -------------------------------------
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "1.2.3.4", "localhost.evil.example", "",
                                  "[bad"])
@pytest.mark.parametrize("target", ["/risk?limit=1", "/calls", "/"])
def test_without_the_key_a_request_to_another_host_name_is_refused(site, host, target):
    """A page elsewhere that points its own name at 127.0.0.1 reaches the API from loopback: without the key only
    requests addressed to this machine are answered, so it can neither read the list nor record a call."""
    answer = http(site, "GET", target, headers={"Host": host})
    assert answer.status == 400 and b'"data"' not in answer.body and b"<table" not in answer.body, answer.body[:300]
    refused(http(site, "POST", "/calls", json.dumps({"corporation": "abcd", "outcome": "stays", "by": "x"}).encode(),
                 {"Host": host, "Content-Type": "application/json"}), 400, "Host", site=site)


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "[::1]:8000", "app.localhost"])
def test_a_request_to_this_machine_by_name_is_answered(site, host):
    assert http(site, "GET", "/risk?limit=1", headers={"Host": host}).status == 200


def test_with_the_key_another_host_name_is_answered(keyed_site):
    """Behind a proxy the Host is the public name: the key, not the name, decides."""
    answer = http(keyed_site, "GET", "/risk?limit=1", headers={"Host": "risk.example.com", API_KEY_HEADER: API_KEY})
    assert answer.status == 200


# --- 5. Size: 100,000 records, oversized and lying bodies ------------------------------------------
def records_body(n: int) -> bytes:
    return json.dumps({"records": [{**RECORD, "corporation": f"c{i}"} for i in range(n)]}).encode()


@pytest.mark.slow
def test_100000_records_are_answered_and_one_more_is_413(site):
    answer = http(site, "POST", "/prediction", records_body(100_000), {"Content-Type": "application/json"})
    assert answer.status == 200 and answer.json()["count"] == 100_000
    refused(http(site, "POST", "/prediction", records_body(100_001), {"Content-Type": "application/json"}),
            413, "100001 records", site=site)
    csv_body = (f"{CSV_HEADER}\n" + "".join(f"c{i},1,2,3\n" for i in range(100_001))).encode()
    refused(http(site, "POST", "/prediction", csv_body, {"Content-Type": "text/csv"}), 413, "100001 rows", site=site)


@pytest.mark.slow
def test_a_content_length_over_the_limit_is_413_before_the_body_is_read(site):
    refused(http(site, "POST", "/prediction", b"{}", {"Content-Type": "application/json"},
                 content_length=LIMIT + 1, timeout=10), 413, "16 MB", site=site)


def truncation_bait(size: int) -> bytes:
    """A CSV body over `size` bytes whose first `size` bytes are themselves a valid CSV with wrong values.

    If a server silently read only the first `size` bytes, the last row's number of employees would
    read 12 instead of 123456: the request would succeed with data the caller never sent.
    """
    head = f"{CSV_HEADER}\n".encode()
    row = b"x" * 200 + b",1,2,123456\n"  # long ids: fewer rows than the per-request row limit
    rows_before = (size - len(head) - len(b"tail,1,2,12")) // len(row)
    body = head + row * rows_before
    body += b"p" * (size - len(body) - len(b",1,2,12")) + b",1,2,123456\n"
    assert body[:size].endswith(b",1,2,12") and len(body) > size
    return body


@pytest.mark.slow
@pytest.mark.parametrize("content_type", ["text/csv", "multipart", "application/json"])
def test_a_chunked_body_over_the_limit_is_413_never_cut_short(site, content_type):
    if content_type == "application/json":
        body, headers = b'{"records": [' + b" " * (LIMIT + 10) + b"]}", {"Content-Type": "application/json"}
    elif content_type == "text/csv":
        body, headers = truncation_bait(LIMIT), {"Content-Type": "text/csv"}
    else:
        boundary = "b0undary"
        start = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n"
                 "Content-Type: text/csv\r\n\r\n").encode()
        body = start + truncation_bait(LIMIT - len(start)) + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    refused(http(site, "POST", "/prediction", body, headers, chunked=True), 413, "16 MB", site=site)


@pytest.mark.slow
def test_a_small_chunked_body_is_read_whole(site):
    answer = http(site, "POST", "/prediction", records_body(3), {"Content-Type": "application/json"}, chunked=True)
    assert answer.status == 200 and answer.json()["count"] == 3


@pytest.mark.slow
# --- 6. Unknown methods and routes ---------------------------------------------------------------
@pytest.mark.parametrize(("method", "target"), [
    ("FOO", "/prediction"), ("PROPFIND", "/"), ("TRACE", "/prediction"), ("PATCH", "/prediction"),
    ("DELETE", "/prediction"), ("OPTIONS", "/prediction"), ("OPTIONS", "/scoring"), ("PUT", "/health"),
])
def test_unknown_methods_are_405_or_404_json(site, method, target):
    answer = http(site, method, target)
    refused(answer, 405, site=site)  # "/" is the web page: GET only
    if answer.status == 405:
        assert "OPTIONS" not in answer.headers["allow"]


@pytest.mark.slow
@pytest.mark.parametrize("target", [
    "/.env", "/admin", "/console", "/PREDICTION", "/prediction/", "/prediction.json", "/openapi.json/../config.json",
    "/?__debugger__=yes&cmd=resource&f=debugger.js", "/scoring?__debugger__=yes&cmd=printpid&s=x",
    "/static//page.css", "/static//../config.json",  # werkzeug's merging of slashes was a 308 with an HTML body
])
def test_unknown_routes_and_debugger_probes_are_404_json(site, target):
    answer = http(site, "GET", target)
    if target.startswith("/scoring"):
        assert answer.status == 200 and "pid" not in answer.json()  # the query is ignored; no debugger
    elif target.startswith("/?"):  # the web page, its query ignored; no debugger
        assert answer.status == 200 and answer.headers["content-type"].startswith("text/html")
        assert b"debugger" not in answer.body and b"<script" not in answer.body
    else:
        refused(answer, 404, site=site)


@pytest.mark.slow
# --- 7. The API key, when one is set -------------------------------------------------------------
@pytest.mark.parametrize(("target", "headers"), [
    (f"/scoring?api_key={API_KEY}", {}),
    (f"/scoring?X-API-Key={API_KEY}", {}),
    ("/scoring", {"Authorization": f"Bearer {API_KEY}"}),
    ("/scoring", {"Cookie": f"X-API-Key={API_KEY}"}),
    ("/scoring", {"X-Api-Key-": API_KEY}),
    ("/scoring", {"X-API-Key": API_KEY[:-1]}),
    ("/scoring", {"X-API-Key": "x" * 8000}),
    ("/scoring", {"X-API-Key": b"\xe9\xffk"}),
    ("/prediction?dataset=outside/secret.csv", {}),
    ("/%2e%2e/etc/passwd", {}),
])
def test_without_the_key_nothing_is_served_or_read(keyed_site, target, headers):
    method = "POST" if target.startswith("/prediction") else "GET"
    answer = http(keyed_site, method, target, headers=headers)
    refused(answer, 401, "X-API-Key", site=keyed_site)
    assert API_KEY not in answer.body.decode("utf-8", "replace")


@pytest.mark.slow
def test_a_keyless_pickle_body_is_refused_before_it_is_read(keyed_site):
    refused(http(keyed_site, "POST", "/prediction", keyed_site.pickled(), {"Content-Type": "application/json"}),
            401, site=keyed_site)


@pytest.mark.slow
def test_with_the_key_the_same_hostile_request_is_still_refused(keyed_site):
    answer = http(keyed_site, "POST", "/prediction?dataset=test/to_passwd.csv", headers={"X-API-Key": API_KEY})
    refused(answer, 403, "inside the input, ingested or test", site=keyed_site)


# --- 8. Property-based: generated records never make a 5xx ---------------------------------------
json_leaf = st.one_of(
    st.none(), st.booleans(), st.text(max_size=12),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, MAX_VALUE, MAX_VALUE + 1, -1, 2**63, 1.0, 1e300]),
)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
field_name = st.sampled_from([*COLUMNS, "risk", "", "Corporation", "__class__"]) | st.text(max_size=8)
good_value = {"corporation": st.text(min_size=1, max_size=10),
              **{name: st.integers(min_value=0, max_value=MAX_VALUE) for name in FEATURES},
              "exited": st.sampled_from([0, 1])}


@st.composite
def records(draw):
    """Lists of mostly well-formed records, with some fields dropped, added or given hostile values."""
    rows = []
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        row = {name: draw(strategy) for name, strategy in good_value.items() if draw(st.integers(0, 9)) > 0}
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            row[draw(field_name)] = draw(json_value)
        rows.append(row if draw(st.integers(0, 19)) else draw(json_value))
    return rows


@pytest.fixture(scope="module")
def client(hostile):
    return app_module.create_app(hostile.config.config_file).test_client()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(rows=records(), form=st.sampled_from(["records", "bare list", "dataset", "extra key"]))
def test_generated_records_never_make_a_server_error(client, rows, form):
    document = {"records": {"records": rows}, "bare list": rows, "dataset": {"dataset": rows[0] if rows else rows},
                "extra key": {"records": rows, "x": 1}}[form]
    response = client.post("/prediction", data=json.dumps(document, allow_nan=True), content_type="application/json")
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    if response.status_code == 200:
        assert body["count"] == len(rows)
        assert all(p["prediction"] in (0, 1) and 0.0 <= p["probability"] <= 1.0 for p in body["predictions"])
    else:
        assert 400 <= response.status_code < 500 and body["message"]
    assert SECRET not in response.get_data(as_text=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
       content_type=st.sampled_from(["application/json", "text/csv", "multipart/form-data; boundary=x",
                                     "application/octet-stream", ""]))
def test_generated_bodies_never_make_a_server_error(client, body, content_type):
    response = client.post("/prediction", data=body, content_type=content_type or None)
    assert 400 <= response.status_code < 500 or response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"


def test_csv_rows_generated_from_the_header_never_make_a_server_error(client):
    """A quick sweep over CSV bodies with hostile cells (not hypothesis: a fixed table, fully listed)."""
    cells = ["", " ", "-0", "+0", "00012", "1e3", "NaN", "inf", "null", "None", "\"1\"", "'1'", "1,2", "\t5",
             str(MAX_VALUE), str(MAX_VALUE + 1), "\x00", "\u202e1", "=cmd|' /C calc'!A0"]
    for cell in cells:
        body = f"{HEADER}\nabcd,{cell},1,1,0\n".encode()
        response = client.post("/prediction", data=body, content_type="text/csv")
        assert response.status_code in (200, 400), (cell, response.get_data(as_text=True))
        assert response.mimetype == "application/json"
