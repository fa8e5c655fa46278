"""GET /metrics (riskcore.api.metrics), the worker warm-up (riskcore.api.warm_up) and gunicorn's access log.

In-process through the Flask test client, and end to end under gunicorn with gunicorn.conf.py and 2 workers
(marked slow): the text parses with prometheus_client's own parser, the counters move with requests, the
figures are the files', the key rule holds, the access log keeps no secret, each worker warmed up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import app as app_module
from conftest import ROOT, free_port, wait_until_up
from riskcore.api import metrics as metrics_module
from riskcore.api.metrics import is_loopback, run_families
from riskcore.api.warm_up import warm_up
from riskcore.config import Config
from riskcore.contract import RUN_HISTORY
from riskcore.ops.alerts import LAST_TICK_FILE, mark_success
from riskcore.ops.history import record_run
from riskcore.ops.run_record import new_run_id
from riskcore.release.load import current_deployment, deployed_metadata

KEY = "m3trics-key-for-tests"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text, by name and sorted labels, parsed with prometheus_client's parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(client, **request) -> dict:
    response = client.get("/metrics", **request)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def with_api_section(config: Config, **api) -> None:
    raw = json.loads(config.config_file.read_text())
    raw["api"] = api
    config.config_file.write_text(json.dumps(raw))


@pytest.fixture
def client(deployed: Config):
    return app_module.create_app(deployed.config_file).test_client()


# --- Requests ----------------------------------------------------------------------------------
def test_metrics_parse_and_the_request_counters_move_with_requests(client):
    before = scrape(client)
    for _ in range(3):
        assert client.get("/health").status_code == 200
    assert client.get("/risk?top=2").status_code == 200
    assert client.get("/risk?top=0").status_code == 400
    assert client.get("/no/such/path").status_code == 404
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("risk_requests_total", endpoint="/health", status="200") == 3
    assert moved("risk_requests_total", endpoint="/risk", status="200") == 1
    assert moved("risk_requests_total", endpoint="/risk", status="400") == 1
    assert moved("risk_requests_total", endpoint="unmatched", status="404") == 1
    assert moved("risk_requests_total", endpoint="/metrics", status="200") == 1  # the first scrape
    assert moved("risk_request_duration_seconds_count", endpoint="/health") == 3
    assert moved("risk_request_duration_seconds_count", endpoint="/risk") == 2
    assert 0 < moved("risk_request_duration_seconds_sum", endpoint="/risk") < 60
    assert moved("risk_request_duration_seconds_bucket", endpoint="/health", le="+Inf") == 3


def test_a_page_route_is_counted_by_its_rule_not_by_the_client_it_names(client):
    client.get("/clients/nobody-1")
    client.get("/clients/nobody-2")
    found = scrape(client)
    assert value(found, "risk_requests_total", endpoint="/clients/<path:client_id>", status="404") == 2
    assert not [key for key in found if "nobody" in str(key)]


# --- Figures from files ------------------------------------------------------------------------
def history_row(**row) -> dict:
    return {"run_id": new_run_id(), "started_at": "2026-03-01T10:00:00Z", "finished_at": "2026-03-01T10:00:05Z",
            **row}


def test_the_served_model_and_its_baseline_are_the_deployed_ones(deployed: Config, client):
    found = scrape(client)
    current = current_deployment(deployed.prod_deployment_folder)
    assert value(found, "risk_model_info", model_version=current.model_version, release=current.release,
                 kind="model") == 1
    baseline = deployed_metadata(current)["baseline"]
    assert value(found, "risk_model_baseline_f1") == pytest.approx(baseline["f1"])
    assert value(found, "risk_model_baseline_rows") == baseline["rows"]
    assert value(found, "risk_model_deployed_timestamp_seconds") == pytest.approx(
        metrics_module.timestamp(current.model_deployed_at))


def test_the_latest_check_the_last_run_and_the_tick_come_from_the_files_when_scraped(deployed: Config, client):
    history = deployed.output_model_folder / RUN_HISTORY
    first = scrape(client)
    assert not [key for key in first if key[0].startswith(("risk_window", "risk_feature_psi", "risk_last_run"))]
    assert ("risk_seconds_since_last_successful_tick", ()) not in first  # no tick yet: left out, not 0

    record_run(history, history_row(run_number=4, f1_new_data=0.61, window_rows=250, version_before="v-old",
                                    version_after="v-old", decision="keep", outcome="done",
                                    data_drift={"features": {"lastmonth_activity": {"psi": 0.31, "drift": True},
                                                             "number_of_employees": {"psi": 0.02}}},
                                    step_seconds={"ingestion": 0.4, "scoring": 1.25}))
    record_run(history, history_row(run_number=5, decision="retrain", outcome="failed", error="disk full",
                                    step_seconds={"ingestion": 0.5}))
    record_run(history, history_row(decision="rollback", outcome="done", note="rolled back"))  # an operator's
    mark_success(deployed)
    ten_minutes_ago = time.time() - 600
    os.utime(deployed.output_model_folder / LAST_TICK_FILE, (ten_minutes_ago, ten_minutes_ago))

    found = scrape(client)
    assert value(found, "risk_window_f1", model_version="v-old") == pytest.approx(0.61)
    assert value(found, "risk_window_rows") == 250
    assert value(found, "risk_feature_psi", feature="lastmonth_activity") == pytest.approx(0.31)
    assert value(found, "risk_feature_psi", feature="number_of_employees") == pytest.approx(0.02)
    assert value(found, "risk_last_run_info", run_number="5", outcome="failed", decision="retrain") == 1
    assert value(found, "risk_last_run_success") == 0
    assert value(found, "risk_last_run_step_seconds", step="ingestion") == pytest.approx(0.5)
    assert ("risk_last_run_step_seconds", (("step", "scoring"),)) not in found  # run 4's, not the last run's
    assert value(found, "risk_last_run_timestamp_seconds") == metrics_module.timestamp("2026-03-01T10:00:05Z")
    assert 600 <= value(found, "risk_seconds_since_last_successful_tick") < 660
    assert value(found, "risk_last_successful_tick_timestamp_seconds") == pytest.approx(ten_minutes_ago, abs=1)

    record_run(history, history_row(run_number=6, decision="keep", outcome="done", step_seconds={"training": 2.0}))
    found = scrape(client)
    assert value(found, "risk_last_run_info", run_number="6", outcome="done", decision="keep") == 1
    assert value(found, "risk_last_run_success") == 1


def test_an_estimated_f1_is_read_when_a_check_recorded_one():
    families = run_families([{"run_number": 1, "version_before": "v1", "estimated_f1": 0.58, "rows_new": 900,
                              "data_drift": {"features": {"lastyear_activity": {"psi": 0.1}}}}])
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value for family in families for s in family.samples}
    assert found[("risk_window_estimated_f1", (("model_version", "v1"),))] == pytest.approx(0.58)
    assert ("risk_window_f1", (("model_version", "v1"),)) not in found
    assert found[("risk_window_rows", ())] == 900


def test_with_nothing_deployed_metrics_answer_without_model_figures(config: Config):
    found = scrape(app_module.create_app(config.config_file).test_client())
    assert not [key for key in found if key[0].startswith("risk_model")]


# --- The key rule ------------------------------------------------------------------------------
@pytest.mark.parametrize(("open_on_loopback", "address", "headers", "status"), [
    (False, "127.0.0.1", {}, 401),
    (False, "127.0.0.1", {"X-API-Key": "wrong"}, 401),
    (False, "127.0.0.1", {"X-API-Key": KEY}, 200),
    (True, "127.0.0.1", {}, 200),
    (True, "::1", {}, 200),
    (True, "10.1.2.3", {}, 401),
    (True, "10.1.2.3", {"X-API-Key": KEY}, 200),
    (True, "127.0.0.1", {"Host": "evil.example"}, 400),  # a page elsewhere, through DNS rebinding: no key, no name
    (True, "127.0.0.1", {"Host": "risk.example.com", "X-API-Key": KEY}, 200),  # behind a proxy: the key decides
])
def test_metrics_follow_the_key_rule_and_open_on_loopback_only_when_configured(
        deployed: Config, monkeypatch, open_on_loopback, address, headers, status):
    monkeypatch.setenv("RISK_API_KEY", KEY)
    with_api_section(deployed, metrics_open_on_loopback=open_on_loopback)
    client = app_module.create_app(deployed.config_file).test_client()
    response = client.get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": address})
    assert response.status_code == status
    if status == 401:
        assert response.get_json()["status"] == 401
    # the loopback opening is for /metrics alone
    assert client.get("/scoring", environ_base={"REMOTE_ADDR": address}).status_code == 401


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("127.9.8.7", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("192.168.1.1", False), ("", False), (None, False),
    ("localhost", False),
])
def test_loopback_is_what_the_address_says(address, loopback):
    assert is_loopback(address) is loopback


# --- The warm-up -------------------------------------------------------------------------------
def listed_clients(config: Config) -> int:
    """The clients in the call list, as a fresh app ranks them."""
    risk = app_module.create_app(config.config_file).extensions["risk"]
    return risk.call_list(risk.models.get()).total


@pytest.mark.parametrize("key", [None, KEY])
def test_the_warm_up_loads_the_model_builds_the_call_list_and_renders_the_page(deployed: Config, monkeypatch, key):
    if key:
        monkeypatch.setenv("RISK_API_KEY", key)
    application = app_module.create_app(deployed.config_file)
    sentence = warm_up(application)
    risk = application.extensions["risk"]
    assert [kind for kind in ("call_list", "page") if kind in risk.files._kinds] == ["call_list", "page"]
    clients = listed_clients(deployed)
    assert clients > 100 and f"call list of {clients} clients, page / answered 200" in sentence, sentence
    client = application.test_client()
    found = scrape(client, headers={"X-API-Key": key} if key else {})
    assert not [k for k in found if k[0] == "risk_requests_total" and dict(k[1])["endpoint"] != "/metrics"]


def test_a_failed_warm_up_is_logged_and_not_fatal(deployed: Config, monkeypatch, caplog):
    application = app_module.create_app(deployed.config_file)

    def broken(served):
        raise RuntimeError("no call list today")

    monkeypatch.setattr(application.extensions["risk"], "call_list", broken)
    assert warm_up(application) == "warm-up failed"
    assert "warm-up failed" in caplog.text and "no call list today" in caplog.text
    assert application.test_client().get("/health").status_code == 200


@pytest.mark.slow  # 1-2.6 s: in make test, out of make test-fast's minute
def test_what_a_warmed_worker_holds_is_set_aside_from_garbage_collection():
    """set_aside (gunicorn.conf.py calls it after the warm-up) freezes what is alive: a full collection then passes
    over the objects made since, not the libraries' (run in a child: a frozen test process would keep its garbage)."""
    code = ("import gc, logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout); "
            "import sklearn.linear_model; from riskcore.api.warm_up import set_aside; "
            "kept = set_aside(); assert gc.get_freeze_count() > 50_000 and kept > 50_000, kept; "
            "assert len(gc.get_objects()) < kept / 10, len(gc.get_objects())")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "objects set aside from garbage collection for the worker's life" in done.stdout


# --- gunicorn, end to end ----------------------------------------------------------------------
def warm_ups(log: Path) -> int:
    """The workers that logged their warm-up."""
    return log.read_text(encoding="utf-8").count("warm-up done in")


@pytest.mark.slow
def test_under_gunicorn_the_workers_counts_add_up_the_access_log_keeps_no_secret_and_each_worker_warmed_up(
        deployed: Config, tmp_path):
    import requests

    counts_folder = tmp_path / "prometheus"
    counts_folder.mkdir()
    (counts_folder / "counter_999999.db").write_bytes(b"left by an earlier run")  # emptied at start
    access_log = tmp_path / "access.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RISK_CONFIG": str(deployed.config_file), "HOST": "127.0.0.1", "PORT": str(port),
           "RISK_API_KEY": KEY, "PROMETHEUS_MULTIPROC_DIR": str(counts_folder)}
    with open(tmp_path / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--access-logfile",
             str(access_log), "--chdir", str(ROOT), "wsgi:app"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    keyed = {"X-API-Key": KEY}
    try:
        wait_until_up(url, server, seconds=60)

        def scraped() -> dict:
            answer = requests.get(url + "/metrics", headers=keyed, timeout=10)
            assert answer.status_code == 200, answer.text
            return samples(answer.text)

        # Counted on /openapi.json, which only this test asks for: a /health of wait_until_up that timed out
        # while the workers warmed up may still be answered (and counted) later.
        before = scraped()
        with requests.Session() as session:
            for _ in range(20):
                assert requests.get(url + "/openapi.json", headers=keyed, timeout=10).status_code == 200
            for _ in range(5):
                assert session.get(url + "/risk?top=2&key=qu3ry-s3cret", headers=keyed,
                                   timeout=10).status_code == 400  # an unknown parameter
            assert requests.get(url + "/scoring?api_key=qu3ry-s3cret", timeout=10).status_code == 401
            assert requests.get(url + "/?token=qu3ry-s3cret", timeout=10,
                                cookies={"risk_page_session": "c00kie-s3cret"}).status_code in (200, 303)
        after = scraped()  # whichever worker answers: the sums of both
        assert value(after, "risk_requests_total", endpoint="/openapi.json", status="200") - value(
            before, "risk_requests_total", endpoint="/openapi.json", status="200") == 20
        assert value(after, "risk_requests_total", endpoint="/risk", status="400") == 5
        assert value(after, "risk_requests_total", endpoint="/scoring", status="401") == 1
        assert value(after, "risk_request_duration_seconds_count", endpoint="/risk") == 5
        current = current_deployment(deployed.prod_deployment_folder)
        assert value(after, "risk_model_info", model_version=current.model_version, release=current.release,
                     kind="model") == 1

        # The workers that counted so far are killed: gunicorn starts others, and a scrape by any of them
        # still adds the dead workers' counts to its own.
        counted = {int(path.stem.split("_")[1]) for path in counts_folder.glob("counter_*.db")}
        assert 999999 not in counted  # the earlier run's file was removed at start
        for pid in counted:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while warm_ups(tmp_path / "gunicorn.log") < 2 + len(counted) and time.monotonic() < deadline:
            time.sleep(0.1)  # the new workers warm up before they take requests
        for _ in range(10):
            assert requests.get(url + "/openapi.json", headers=keyed, timeout=10).status_code == 200
        later = scraped()
        assert value(later, "risk_requests_total", endpoint="/openapi.json", status="200") - value(
            before, "risk_requests_total", endpoint="/openapi.json", status="200") == 30
        assert value(later, "risk_requests_total", endpoint="/risk", status="400") == 5
        assert len(list(counts_folder.glob("counter_*.db"))) > len(counted)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert counts_folder.is_dir()  # a folder the operator named is left in place
    errors = (tmp_path / "gunicorn.log").read_text(encoding="utf-8")
    assert warm_ups(tmp_path / "gunicorn.log") == 2 + len(counted), errors
    assert errors.count("objects set aside from garbage collection") == 2 + len(counted), errors
    assert f"call list of {listed_clients(deployed)} clients, page / answered 200" in errors
    text = access_log.read_text(encoding="utf-8")
    for secret in ("qu3ry-s3cret", KEY, "c00kie-s3cret", "key=", "token="):
        assert secret not in text
    lines = text.splitlines()
    assert any('"GET /risk HTTP/1.1" 400' in line for line in lines), lines[:5]
    assert any('"GET /scoring HTTP/1.1" 401' in line for line in lines)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["good-key-for-the-tests", "two words"])
def test_gunicorn_makes_a_fresh_metrics_folder_per_start_and_removes_it_at_exit(deployed: Config, tmp_path, key):
    temp = tmp_path / "tmp"  # tempfile makes the folder here (TMPDIR), away from other servers' folders
    temp.mkdir()
    port = free_port()
    env = {**os.environ, "RISK_CONFIG": str(deployed.config_file), "HOST": "127.0.0.1", "PORT": str(port),
           "RISK_API_KEY": key, "TMPDIR": str(temp)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(tmp_path / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--access-logfile",
             str(tmp_path / "access.log"), "--chdir", str(ROOT), "wsgi:app"], cwd=tmp_path, env=env, stdout=log,
            stderr=log)
    try:
        if key == "good-key-for-the-tests":
            wait_until_up(f"http://127.0.0.1:{port}", server, seconds=60)
            folders = list(temp.glob("risk-metrics-*"))
            assert len(folders) == 1 and list(folders[0].glob("counter_*.db"))
        else:  # refused at start, with one sentence: no worker, and no folder left behind either
            assert server.wait(timeout=60) == 2
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert list(temp.iterdir()) == []
