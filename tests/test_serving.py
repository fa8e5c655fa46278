"""The served API (gunicorn with gunicorn.conf.py) keeps answering while clients hold connections open."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import requests

from conftest import ROOT, client_rows, free_port, wait_until_up, write_csv
from riskcore.config import Config

pytestmark = pytest.mark.slow


def serve(config: Config, port: int, log_path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "RISK_CONFIG": str(config.config_file), "HOST": "127.0.0.1", "PORT": str(port)}
    env.pop("RISK_API_KEY", None)
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), *extra,
                                 "--chdir", str(ROOT), "wsgi:app"], cwd=ROOT, env=env, stdout=log, stderr=log)


def half_open(port: int) -> socket.socket:
    """A client that starts a request and never finishes its headers."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return sock


def test_health_answers_within_a_second_while_two_clients_stall(deployed: Config, tmp_path):
    port = free_port()
    server = serve(deployed, port, tmp_path / "gunicorn.log")
    stalled: list[socket.socket] = []
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server)
        stalled = [half_open(port), half_open(port)]
        time.sleep(0.3)  # let the server take both connections in
        for _ in range(5):
            started = time.monotonic()
            answer = requests.get(f"http://127.0.0.1:{port}/health", timeout=1.0)
            assert answer.status_code == 200 and answer.json()["status"] == "ok"
            assert time.monotonic() - started < 1.0
    finally:
        for sock in stalled:
            sock.close()
        server.terminate()
        server.wait(timeout=30)


def test_a_bad_api_key_stops_gunicorn_at_start_with_one_sentence(deployed: Config, tmp_path):
    env = {**os.environ, "RISK_CONFIG": str(deployed.config_file), "PORT": str(free_port()),
           "RISK_API_KEY": "two words"}
    result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
                             "--chdir", str(ROOT), "wsgi:app"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "error: The API key from $RISK_API_KEY holds a space" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_automation_calls_a_key_protected_api_with_a_key_file_no_crontab_shows(deployed: Config, tmp_path):
    key_file = deployed.config_file.parent / "api.key"
    key_file.write_text("k3y-from-a-key-file\n", encoding="ascii")
    key_file.chmod(0o600)
    raw = json.loads(deployed.config_file.read_text())
    port = free_port()
    raw["automation"] = {"api_key_file": "api.key", "api_url": f"http://127.0.0.1:{port}"}
    deployed.config_file.write_text(json.dumps(raw))
    env = {**os.environ, "RISK_CONFIG": str(deployed.config_file), "HOST": "127.0.0.1", "PORT": str(port)}
    env.pop("RISK_API_KEY", None)
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
                               "--chdir", str(ROOT), "wsgi:app"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server)
        assert requests.get(f"http://127.0.0.1:{port}/scoring", timeout=5).status_code == 401
        write_csv(deployed.input_folder / "more.csv", client_rows(60, seed=21))
        tick = subprocess.run([sys.executable, str(ROOT / "fullprocess.py"), "--config", str(deployed.config_file)],
                              cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "RISK_API_KEY"},
                              capture_output=True, text=True, timeout=300)
        assert tick.returncode == 0, tick.stderr
        returns = json.loads((deployed.output_model_folder / "apireturns.txt").read_text())
        assert "k3y-from-a-key-file" not in json.dumps(returns) and "k3y-from-a-key-file" not in tick.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
