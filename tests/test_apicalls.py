"""Tests for apicalls.py and riskcore.ops.api_client: the record of the four calls, numbering, API key, failures
and the command line. The tests that start a server or a subprocess are marked slow."""

from __future__ import annotations

import json
import socket
import threading

import pytest

import apicalls
import app as app_module
from conftest import client_rows, deploy_pipeline, one_sentence, run_script, write_config, write_csv
from riskcore.config import Config, load_config
from riskcore.contract import API_RETURNS, DIAGNOSTICS_RECORD, EXIT_FAILED, EXIT_OK
from riskcore.files import atomic_write_json
from riskcore.ops.api_client import dataset_location
from riskcore.release.load import current_deployment

ENDPOINTS = {"prediction", "scoring", "summarystats", "diagnostics"}
RECORD = {"generated_at": "2026-01-01T00:00:00Z", "model_version": "v", "release": "000001-x", "summary": [],
          "missing": [], "timings": {}, "dependencies": []}


@pytest.fixture
def serve():
    """Start the API for a config in a thread on a free loopback port; yields a starter returning its URL."""
    from werkzeug.serving import make_server

    servers = []

    def start(config: Config) -> str:
        server = make_server("127.0.0.1", 0, app_module.create_app(config.config_file), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def api(deployed, serve) -> str:
    atomic_write_json(deployed.output_model_folder / DIAGNOSTICS_RECORD, RECORD)
    return serve(deployed)


def unused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def read_returns(config: Config, name: str = API_RETURNS) -> dict:
    return json.loads((config.output_model_folder / name).read_text(encoding="utf-8"))


@pytest.mark.slow
def test_run_records_all_four_endpoints_in_one_json_document(deployed, api):
    assert apicalls.run(deployed, api) == EXIT_OK
    returns = read_returns(deployed)
    assert returns["ok"] is True and returns["failures"] == [] and returns["api_url"] == api
    assert set(returns["endpoints"]) == ENDPOINTS
    for name, call in returns["endpoints"].items():
        assert call["status"] == 200, name
        assert call["request"]["url"] == f"{api}/{name}"
        assert isinstance(call["body"], (dict, list))
    prediction = returns["endpoints"]["prediction"]
    assert prediction["request"] == {"method": "POST", "url": f"{api}/prediction",
                                     "json": {"dataset": "test/testdata.csv"}}
    assert prediction["body"]["count"] == 60
    current = current_deployment(deployed.prod_deployment_folder)
    assert prediction["body"]["model_version"] == current.model_version
    assert returns["endpoints"]["diagnostics"]["body"] == RECORD


@pytest.mark.slow
def test_later_runs_are_numbered_and_an_explicit_number_is_kept(deployed, api):
    for _ in range(3):
        apicalls.run(deployed, api + "/")
    assert apicalls.run(deployed, api, run_number=7) == 0
    names = sorted(p.name for p in deployed.output_model_folder.glob("apireturns*.txt"))
    assert names == ["apireturns.txt", "apireturns2.txt", "apireturns3.txt", "apireturns7.txt"]
    assert read_returns(deployed, "apireturns7.txt")["run"] == 7


def test_an_unreachable_api_still_writes_the_file_names_the_url_and_fails(deployed, caplog):
    url = unused_url()
    assert apicalls.run(deployed, url) == EXIT_FAILED
    returns = read_returns(deployed)
    assert returns["ok"] is False and set(returns["endpoints"]) == ENDPOINTS
    assert len(returns["failures"]) == 4
    for name, call in returns["endpoints"].items():
        assert call["status"] is None and f"{url}/{name}" in call["error"]
    assert f"{url}/scoring" in caplog.text and "refused" in caplog.text


@pytest.mark.slow  # the diagnostics and the PDF report before the calls: 1.5 s
def test_a_runs_failed_api_calls_say_why_in_its_error(deployed):
    # The walk's alert read "did not answer every call (see apireturns2.txt)": the why was in a file on the server.
    from riskcore.ops.run import produce_reports
    from riskcore.ops.run_record import Run, StepFailed

    url = unused_url()
    with pytest.raises(StepFailed) as failed:
        produce_reports(deployed, Run(started_at="2026-01-01T00:00:00Z", run_number=2), url)
    assert str(failed.value) == (f"step apicalls failed: the API at {url} did not answer every call (POST "
                                 f"{url}/prediction failed: connection refused and 3 more; see apireturns2.txt)")


@pytest.mark.slow
def test_a_failing_endpoint_is_recorded_with_status_and_message(project, serve):
    url = serve(load_config(project))  # nothing deployed, no data: 503 everywhere
    assert apicalls.run(load_config(project), url) == EXIT_FAILED
    returns = read_returns(load_config(project))
    assert {name: call["status"] for name, call in returns["endpoints"].items()} == dict.fromkeys(ENDPOINTS, 503)
    assert "No model is deployed" in returns["endpoints"]["prediction"]["error"]
    assert returns["endpoints"]["prediction"]["body"]["status"] == 503


@pytest.mark.slow
def test_the_api_key_comes_from_the_environment_and_is_never_recorded(deployed, serve, monkeypatch):
    atomic_write_json(deployed.output_model_folder / DIAGNOSTICS_RECORD, RECORD)
    monkeypatch.setenv("RISK_API_KEY", "k3y-value-for-tests")
    url = serve(deployed)
    assert apicalls.run(deployed, url) == EXIT_OK
    assert apicalls.run(deployed, url, api_key="wrong") == EXIT_FAILED
    monkeypatch.delenv("RISK_API_KEY")
    assert apicalls.run(deployed, url) == EXIT_FAILED
    assert read_returns(deployed, "apireturns3.txt")["endpoints"]["scoring"]["status"] == 401
    # What to do, in the sentence the run's failure and its alert quote (the walk's cron tick said only 401).
    assert "(this run sent a key the API does not take: set RISK_API_KEY or automation.api_key_file" in \
        read_returns(deployed, "apireturns2.txt")["endpoints"]["scoring"]["error"]
    assert "(this run sent no key: set RISK_API_KEY or automation.api_key_file to the API's key)" in \
        read_returns(deployed, "apireturns3.txt")["endpoints"]["scoring"]["error"]
    for path in deployed.output_model_folder.glob("apireturns*.txt"):
        assert "k3y-value-for-tests" not in path.read_text(encoding="utf-8")


@pytest.mark.slow
def test_test_data_outside_the_config_folder_is_sent_as_csv(tmp_path, serve):
    root = tmp_path / "project"
    write_csv(root / "input" / "dataset1.csv", client_rows(120, seed=1))
    write_csv(tmp_path / "elsewhere" / "testdata.csv", client_rows(20, seed=3, prefix="t"))
    config = load_config(write_config(root, test_data_path="../elsewhere"))

    deploy_pipeline(config)
    url = serve(config)
    apicalls.run(config, url)
    prediction = read_returns(config)["endpoints"]["prediction"]
    assert prediction["status"] == 200 and prediction["body"]["count"] == 20
    assert prediction["request"]["content_type"] == "text/csv"
    assert str(tmp_path) not in prediction["request"]["body"]


@pytest.mark.slow
def test_unreadable_test_data_outside_the_config_folder_is_a_recorded_failure(tmp_path, serve):
    root = tmp_path / "project"
    write_csv(root / "input" / "dataset1.csv", client_rows(20, seed=1))
    config = load_config(write_config(root, test_data_path="../missing"))
    url = serve(config)
    assert apicalls.run(config, url) == EXIT_FAILED
    prediction = read_returns(config)["endpoints"]["prediction"]
    assert prediction["status"] is None and "cannot be read" in prediction["error"]


@pytest.mark.slow
def test_a_server_that_does_not_answer_json_is_a_failure(deployed):
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Response

    server = make_server("127.0.0.1", 0, Response("<html>hello</html>", mimetype="text/html"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert apicalls.run(deployed, f"http://127.0.0.1:{server.server_port}") == EXIT_FAILED
    finally:
        server.shutdown()
    scoring = read_returns(deployed)["endpoints"]["scoring"]
    assert scoring["status"] == 200 and scoring["body_text"] == "<html>hello</html>"
    assert "not with JSON" in scoring["error"]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:8000", "127.0.0.1:8000", "", "http://"])
def test_a_url_that_is_not_http_is_one_sentence(project, url, capsys):
    assert apicalls.main(["--config", str(project), "--url", url]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "http(s) URL" in one_sentence(err) and "Traceback" not in err


@pytest.mark.parametrize("label", ["0", "-1", "x"])
def test_a_bad_run_label_is_a_usage_error(project, label, capsys):
    with pytest.raises(SystemExit) as exit_info:
        apicalls.main(["--config", str(project), "--run-label", label])
    assert exit_info.value.code == 2
    assert "--run-label" in capsys.readouterr().err


@pytest.mark.slow
def test_main_writes_the_labelled_file_and_prints_its_path(deployed, api, capsys):
    assert apicalls.main(["--config", str(deployed.config_file), "--url", api, "--run-label", "4"]) == 0
    target = deployed.output_model_folder / "apireturns4.txt"
    assert capsys.readouterr().out.strip() == str(target)
    assert set(json.loads(target.read_text(encoding="utf-8"))["endpoints"]) == ENDPOINTS


@pytest.mark.slow
def test_command_line_against_an_unreachable_url_from_another_folder(project, tmp_path):
    url = unused_url()
    result = run_script("apicalls.py", "--config", str(project), "--url", url, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert f"{url}/prediction" in result.stderr and "Traceback" not in result.stderr
    written = json.loads((project.parent / "models" / API_RETURNS).read_text(encoding="utf-8"))
    assert written["ok"] is False and set(written["endpoints"]) == ENDPOINTS


def test_dataset_location_is_relative_to_the_config_folder(config):
    assert dataset_location(config) == "test/testdata.csv"
