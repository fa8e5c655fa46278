"""The served API (gunicorn with gunicorn.conf.py) keeps answering while clients hold connections open."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import requests

from conftest import ROOT, free_port, wait_until_up
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
