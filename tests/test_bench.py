"""bench/: the harness runs end to end in its quick mode, and both load clients report what it reads."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

BENCHMARKS = ("cron_tick", "prediction", "get_endpoints", "risk_list", "ingestion", "full_cycle", "drift_test",
              "estimate", "db_tick", "db_ingestion")


def load_harness():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_run_records_every_benchmark_beside_its_floor(tmp_path: Path):
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(out),
         "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["mode"] == "quick"
    assert tuple(results["benchmarks"]) == BENCHMARKS
    for name, bench in results["benchmarks"].items():
        assert bench["figures"], name
        for item in bench["figures"]:
            assert item["value"] >= 0 and item["floor"] > 0, (name, item)
            assert item["ratio"] == pytest.approx(item["value"] / item["floor"], rel=1e-2, abs=1e-3), (name, item)
            # A figure with a target says whether it met it (True or False); one without says nothing (None).
            assert item["met"] is None if item["target"] is None else isinstance(item["met"], bool), (name, item)
        assert any(item["target"] for item in bench["figures"]), name
    assert results["machine"]["cores"] >= 1
    missed = [item for bench in results["benchmarks"].values() for item in bench["figures"] if item["met"] is False]
    assert "benchmark" in done.stdout and f"\n{len(missed)} target(s) missed" in done.stdout
    # Generated data and scratch projects stay under --data-dir.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "results.json"]


class Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def loopback_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("client", ["python", "wrk"])
def test_load_client_stops_at_its_request_cap_and_reports_latencies(client: str, loopback_url: str, tmp_path: Path):
    if client == "wrk" and not shutil.which("wrk"):
        pytest.skip("wrk is not installed")
    body = tmp_path / "body.json"
    body.write_text('{"records": []}', encoding="utf-8")
    summary = load_harness().load(loopback_url, method="POST", body=body, seconds=1, requests=40, connections=2,
                                  client=client)
    assert 0 < summary["requests"] <= 40 + 2  # at most one request in flight per connection past the cap
    assert summary["capped"]
    assert 0 < summary["p50_us"] <= summary["p99_us"] <= summary["max_us"]
    assert summary["rps"] > 0
