"""GET /metrics: the API and the automation in Prometheus' text format, written by prometheus_client.

Counted per request, in each process (under gunicorn in prometheus_client's multiprocess mode: every
worker writes its counts to the folder PROMETHEUS_MULTIPROC_DIR names, fresh at each start of
gunicorn.conf.py, and a scrape sums them, whichever worker answers it):
  risk_requests_total{endpoint, status}     requests answered, by route (its rule: /clients/<client_id>,
                                            "unmatched" for a path no route takes) and HTTP status
  risk_request_duration_seconds{endpoint}   how long they took, a histogram
Read from the project's files when scraped, through the API's one file cache, never stored per process:
  risk_model_info{model_version, release, kind}       1: the model this process serves
  risk_model_deployed_timestamp_seconds               when that model was first deployed
  risk_model_baseline_f1, risk_model_baseline_rows    its own-market baseline (modelmetadata.json "baseline")
  risk_window_f1{model_version}, risk_window_estimated_f1{model_version}, risk_window_rows, risk_window_clients
                                            the latest drift check's window: its measured F1 (labelled rows),
                                            its estimated F1 (without labels), the rows it took, the clients
                                            they were snapshots of (each once: what the estimate took)
  risk_feature_psi{feature}                 PSI per feature of that check
  risk_last_successful_tick_timestamp_seconds, risk_seconds_since_last_successful_tick
                                            the tick's heartbeat (riskcore.ops.alerts.LAST_TICK_FILE)
  risk_last_run_info{run_number, outcome, decision}, risk_last_run_success, risk_last_run_timestamp_seconds,
  risk_last_run_step_seconds{step}          the automation's last run (operators' actions are not runs)
A figure the files do not hold yet (nothing deployed, no check, no tick) is left out, not shown as 0.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from riskcore.api.file_cache import file_signature
from riskcore.api.risk_service import RiskService, service
from riskcore.api.served_model import Served
from riskcore.contract import MODEL_METADATA, RUN_HISTORY, UserError
from riskcore.files import parse_utc
from riskcore.model.drift_evidence import checked_clients, checked_rows, latest_check, recorded_figures
from riskcore.ops.alerts import LAST_TICK_FILE
from riskcore.ops.history import OPERATOR_DECISIONS
from riskcore.release.load import deployed_metadata

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own name for the folder
WARM_UP = "risk.warm_up"  # a WSGI environ key: the worker's own warm-up requests (riskcore.api.warm_up) are not counted
UNMATCHED = "unmatched"  # the endpoint label of a request no route took (404, 405)

metrics = Blueprint("metrics", __name__)


# --- Requests: counted in each process ---------------------------------------------------------
class RequestMetrics:
    """The request counter and the latency histogram of one app, in a registry of its own (the tests build many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("risk_requests", "HTTP requests answered, by endpoint (the route) and status",
                                ("endpoint", "status"), registry=self.registry)
        self.duration = Histogram("risk_request_duration_seconds", "Time to answer an HTTP request, by endpoint",
                                  ("endpoint",), registry=self.registry)

    def observe(self, endpoint: str, status: int, seconds: float | None) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        if seconds is not None:
            self.duration.labels(endpoint).observe(seconds)


def start_timer() -> None:
    """Before every request (before the key check, so a refused request is timed too)."""
    g.metrics_started = time.perf_counter()


def count_request(response: Response) -> Response:
    """After every request, answered or refused: count it and its time, by route and status."""
    if not request.environ.get(WARM_UP):
        started = g.get("metrics_started")
        endpoint = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        current_app.extensions["risk_metrics"].observe(
            endpoint, response.status_code, None if started is None else time.perf_counter() - started)
    return response


# --- Figures from files: computed when scraped --------------------------------------------------
def gauge(name: str, documentation: str, value: float | None, labels: dict[str, str] | None = None
          ) -> Iterator[Metric]:
    """A one-sample gauge, or nothing when the value is unknown (None, NaN)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return
    family = GaugeMetricFamily(name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), float(value))
    yield family


def timestamp(text: Any) -> float | None:
    """Seconds since the epoch of a recorded ISO time ("2026-01-01T00:00:00Z"), or None."""
    moment = parse_utc(text) if isinstance(text, str) else None
    return None if moment is None else moment.timestamp()


def model_families(served: Served, metadata: dict[str, Any] | None) -> list[Metric]:
    """The served model: which, since when, and its own-market baseline."""
    info = InfoMetricFamily("risk_model", "The model this process serves",
                            labels=["model_version", "release", "kind"])
    info.add_metric([served.model_version, served.release, served.deployment.kind], {})
    baseline = (metadata or {}).get("baseline") or {}
    return [info,
            *gauge("risk_model_deployed_timestamp_seconds", "When the served model was first deployed",
                   timestamp(served.deployment.model_deployed_at)),
            *gauge("risk_model_baseline_f1", "The served model's F1 on held-out rows of its own market (the drift "
                   "baseline)", baseline.get("f1")),
            *gauge("risk_model_baseline_rows", "The rows the baseline F1 was measured on", baseline.get("rows"))]


def run_families(runs: list[dict[str, Any]]) -> list[Metric]:
    """The latest drift check's window and PSI, and the last run's outcome and step times; runs oldest first."""
    found: list[Metric] = []
    check = latest_check(runs)
    if check is not None:
        checked = {"model_version": str(check.get("version_before") or "")}
        found += gauge("risk_window_f1", "F1 of the checked model on the labelled rows of the latest drift check's "
                       "window", check.get("f1_new_data"), checked)
        found += gauge("risk_window_estimated_f1", "F1 of the checked model estimated without labels on the latest "
                       "drift check's window", check.get("estimated_f1"), checked)
        found += gauge("risk_window_rows", "Rows the latest drift check took", checked_rows(check))
        found += gauge("risk_window_clients", "Clients the latest drift check's rows were snapshots of, each once "
                       "(what its estimate took)", checked_clients(check))
        psi = GaugeMetricFamily("risk_feature_psi", "Population stability index of each feature in the latest drift "
                                "check (new rows against the checked model's training data)", labels=["feature"])
        for feature, figures in recorded_figures(check).items():
            value = figures.get("psi") if isinstance(figures, dict) else None
            if isinstance(value, (int, float)) and math.isfinite(value):
                psi.add_metric([feature], float(value))
        if psi.samples:
            found.append(psi)
    runs = [row for row in runs if row.get("decision") not in OPERATOR_DECISIONS]
    if runs:
        last = runs[-1]
        info = InfoMetricFamily("risk_last_run", "The automation's last run: its number, outcome and decision",
                                labels=["run_number", "outcome", "decision"])
        info.add_metric([str(last.get("run_number") or ""), str(last.get("outcome") or ""),
                         str(last.get("decision") or "")], {})
        found.append(info)
        found += gauge("risk_last_run_success", "1 when the last run finished without an error, else 0",
                       int(last.get("outcome") == "done" and not last.get("error")))
        found += gauge("risk_last_run_timestamp_seconds", "When the last run finished (or started, if it did not)",
                       timestamp(last.get("finished_at") or last.get("started_at")))
        steps = GaugeMetricFamily("risk_last_run_step_seconds", "Seconds each step of the last run took",
                                  labels=["step"])
        for step, seconds in (last.get("step_seconds") or {}).items():
            if isinstance(seconds, (int, float)) and math.isfinite(seconds):
                steps.add_metric([step], float(seconds))
        if steps.samples:
            found.append(steps)
    return found


def tick_families(modified_ns: int | None, now: float) -> list[Metric]:
    """The heartbeat's age: its file's modification time is when a tick last finished well."""
    if modified_ns is None:
        return []
    return [*gauge("risk_last_successful_tick_timestamp_seconds", "When a cron tick last finished well",
                   modified_ns / 1e9),
            *gauge("risk_seconds_since_last_successful_tick", "Seconds since a cron tick last finished well",
                   max(0.0, now - modified_ns / 1e9))]


class FileMetrics:
    """A collector of the figures kept in files, read when scraped through the API's one file cache."""

    def __init__(self, risk: RiskService) -> None:
        self.risk = risk

    def collect(self) -> Iterable[Metric]:
        risk = self.risk
        _, served = risk.models.serve()
        if served is not None:
            yield from risk.files.get("metrics_model", (served.deployment.path(MODEL_METADATA),),
                                      lambda _: model_families(served, self._metadata(served)), key=served.release)
        history = risk.config.output_model_folder / RUN_HISTORY
        yield from risk.files.get("metrics_runs", (history,), lambda _: run_families(risk.history().runs))
        signature = file_signature(risk.config.output_model_folder / LAST_TICK_FILE)
        yield from tick_families(None if signature is None else signature[3], time.time())

    @staticmethod
    def _metadata(served: Served) -> dict[str, Any] | None:
        try:
            return deployed_metadata(served.deployment)
        except (UserError, OSError, ValueError) as exc:
            log.warning("metrics: the metadata of model %s cannot be read: %s", served.model_version, exc)
            return None


class Scrape:
    """What one scrape collects: the request counts (this process's, or every worker's files) and the files' figures."""

    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def exposition(app: Flask) -> bytes:
    """The Prometheus text of everything above, as this process (or, under gunicorn, every worker) counted it."""
    requests = app.extensions["risk_metrics"]
    if os.environ.get(MULTIPROCESS_ENV):
        from prometheus_client.multiprocess import MultiProcessCollector

        counted: Any = MultiProcessCollector(None)  # reads the folder, registers nowhere
    else:
        counted = requests.registry
    return generate_latest(Scrape(counted, FileMetrics(service())))


# --- The key rule ------------------------------------------------------------------------------
def is_loopback(address: str | None) -> bool:
    """A client on this machine: 127.0.0.0/8, ::1, or ::ffff:127.x.y.z."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def open_to_this_request(app: Flask) -> bool:
    """GET /metrics without the key: only when api.metrics_open_on_loopback is on and the client is on loopback."""
    return (request.path == METRICS_PATH and app.config["RISK_METRICS_OPEN_ON_LOOPBACK"]
            and is_loopback(request.remote_addr))


def install(app: Flask) -> None:
    """Count every request of the app and serve GET /metrics."""
    app.extensions["risk_metrics"] = RequestMetrics()
    app.before_request(start_timer)
    app.after_request(count_request)
    app.register_blueprint(metrics)


@metrics.get(METRICS_PATH)
def metrics_text() -> Response:
    """The Prometheus text format (prometheus_client), for a scraper."""
    return Response(exposition(current_app), content_type=CONTENT_TYPE_LATEST)
