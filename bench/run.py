"""Benchmarks of speed, memory and scale, each measured beside its floor in the same run.

Reads:  the project's scripts; nothing bundled: every client file is generated (datagen.py) under
        --data-dir (default bench/data/, git-ignored), large files cached by rows and seed
Writes: --out (default bench/results.json): the machine, every figure with its floor and ratio,
        and whether its target is met; the same table on stdout

Absolute times drift on a shared machine, so each figure is compared with a floor measured in
the same run, runs of the two interleaved:

  cron_tick       python fullprocess.py with nothing new   vs  python -c pass
  prediction      POST /prediction, 1 and 1,000 records    vs  GET /health, same gunicorn (2 workers)
  get_endpoints   GET /scoring, /summarystats, /diagnostics, vs  GET /health
                  /risk?limit=50, the page GET / and a client's page
  risk_list       riskcore.report.call_list, 1M and 10M rows   vs  pandas.read_csv of the same file;
                  (change columns from an earlier ranking)     writing as many bytes, fsynced;
                  its reasons                              vs  the same list without them
  ingestion       ingestion.run, 10 files x 1M rows        vs  pandas.read_csv of the same files
  full_cycle      fullprocess.py with drift, 10,000 rows   vs  the sum of its steps' own timings
  db_tick         fullprocess.py with nothing new, a table  vs  python -c pass (SQLite); 0.3 s (PostgreSQL)
  db_ingestion    ingestion.run, a 1M-row PostgreSQL table  vs  psql's \\copy of the same query to /dev/null

This process imports only the standard library; the work runs in child processes (bench/tasks.py,
the scripts, gunicorn) whose peak memory is taken by /usr/bin/time from a process of its own, since
a child forked from a big process inherits that process's high-water mark. Load comes from wrk in
a second process (bench/wrk.lua), or bench/loadgen.py where wrk is missing; servers bind
127.0.0.1 only and every load run is bounded in requests and in time. pip is pointed at an
unreachable loopback index (diagnostics asks it for the latest versions), so the figures measure
this project's code, not the network.
Examples: python bench/run.py
          python bench/run.py --quick --out /tmp/results.json --data-dir /tmp/bench-data
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TASKS = BENCH / "tasks.py"
PYTHON = sys.executable
TIME = "/usr/bin/time"
BENCHMARKS = ("cron_tick", "prediction", "get_endpoints", "risk_list", "ingestion", "full_cycle", "drift_test",
              "estimate", "db_tick", "db_ingestion")
SEED = 20240601
# diagnostics.py asks pip for the latest versions; an index that refuses at once keeps the
# network out of the figures (and no configured mirror or find-links answers instead).
PIP_ENV = {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0",
           "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
# Cron's environment has none of these: bytecode is cached (as cron would find it; Python
# compiles the script it runs, fullprocess.py, every time all the same), no API key, no config.
DROPPED_ENV = ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "RISK_API_KEY", "RISK_CONFIG", "RISK_KILL_AT",
               "PYTHONDONTWRITEBYTECODE")


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does; --quick only checks that the harness works."""

    clients: int  # new-market clients arriving for the full cycle (sourcedata)
    practice: int  # old-market clients the deployed model was trained on (practicedata)
    tick_runs: int
    tick_memory_runs: int
    load_seconds: int  # per load run (wrk counts whole seconds)
    load_requests: int  # per load run, at most
    warmup_requests: int
    connections: int
    risk_rows: tuple[int, ...]
    risk_runs: tuple[int, ...]
    ingest_files: int
    ingest_rows: int
    ingest_runs: int
    cycle_runs: int
    db_tick_rows: int = 10_000  # clients in the table a no-op tick asks about
    db_ingest_rows: int = 1_000_000
    db_ingest_runs: int = 3


FULL = Sizes(clients=10_000, practice=3_000, tick_runs=15, tick_memory_runs=3, load_seconds=3, load_requests=200_000,
             warmup_requests=200, connections=2, risk_rows=(1_000_000, 10_000_000), risk_runs=(3, 1),
             ingest_files=10, ingest_rows=1_000_000, ingest_runs=1, cycle_runs=3)
QUICK = Sizes(clients=600, practice=400, tick_runs=3, tick_memory_runs=1, load_seconds=1, load_requests=150,
              warmup_requests=10, connections=2, risk_rows=(3_000,), risk_runs=(1,), ingest_files=2,
              ingest_rows=2_000, ingest_runs=1, cycle_runs=1, db_tick_rows=500, db_ingest_rows=5_000,
              db_ingest_runs=1)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env.update(PIP_ENV)
    env.update(extra)
    return env


# --- Measuring a child process ---------------------------------------------------------------
@dataclass
class Measured:
    seconds: float  # wall time seen from here
    cpu_seconds: float  # user + system time of the child and of what it waited for
    peak_mb: float | None  # the child's maximum resident set size
    stdout: str
    stderr: str

    def result(self) -> dict[str, Any]:
        """The last line of a task's output, decoded."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        if not lines:
            raise RuntimeError(f"a task printed nothing; its stderr:\n{self.stderr[-2000:]}")
        return json.loads(lines[-1])


def run_child(command: list[str], *, env: dict[str, str], cwd: Path, timeout: float,
              memory: bool = True) -> Measured:
    """Run a command to completion: wall time, CPU time (wait4) and peak memory (/usr/bin/time)."""
    with tempfile.TemporaryDirectory(prefix="bench-child-") as tmp:
        rss, out, err = (Path(tmp) / name for name in ("rss", "out", "err"))
        if memory and os.access(TIME, os.X_OK):
            command = [TIME, "-f", "%M", "-o", str(rss), *command]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            start = time.perf_counter()
            process = subprocess.Popen(command, env=env, cwd=cwd, stdout=stdout, stderr=stderr,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
            timer = threading.Timer(timeout, os.killpg, (process.pid, signal.SIGKILL))
            timer.start()
            try:
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                timer.cancel()
            seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        peak = None
        if command[0] == TIME and rss.is_file():
            text = rss.read_text().strip().splitlines()
            peak = int(text[-1]) / 1024 if text and text[-1].isdigit() else None
        measured = Measured(seconds, usage.ru_utime + usage.ru_stime, peak, out.read_text(errors="replace"),
                            err.read_text(errors="replace"))
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[-6:])} exited {process.returncode}"
                           f"{' (killed after ' + str(timeout) + ' s)' if seconds >= timeout else ''}:\n"
                           f"{measured.stderr[-3000:]}")
    return measured


def task(name: str, *args: str, timeout: float = 600, memory: bool = True, **env: str) -> Measured:
    return run_child([PYTHON, str(TASKS), name, *args], env=child_env(**env), cwd=ROOT, timeout=timeout,
                     memory=memory)


# --- Figures and targets ---------------------------------------------------------------------
def figure(measure: str, value: float, unit: str, floor_name: str, floor: float, *, target: str | None = None,
           met: bool | None = None, better: str = "lower", **extra: Any) -> dict[str, Any]:
    """One measured figure beside its floor; ratio = value / floor."""
    return {"measure": measure, "value": round(value, 6), "unit": unit, "floor_name": floor_name,
            "floor": round(floor, 6), "ratio": round(value / floor, 3) if floor else None, "better": better,
            "target": target, "met": met, **extra}


def median(values: list[float]) -> float:
    return statistics.median(values)


def cpu_figure(measure: str, runs: list[Measured], floor_name: str, floor_runs: list[Measured]) -> dict[str, Any]:
    """CPU time of the timed work beside its floor's: steadier than wall time on a busy machine."""
    return figure(measure, median([m.result()["cpu_seconds"] for m in runs]), "s", floor_name,
                  median([m.result()["cpu_seconds"] for m in floor_runs]))


# --- Generated data --------------------------------------------------------------------------
def datagen_tag() -> str:
    """Cached files are also keyed by the generator's source: a changed generator regenerates."""
    return hashlib.sha256((ROOT / "datagen.py").read_bytes()).hexdigest()[:8]


def cached_clients(folder: Path, rows: int, seeds: list[int], duplicates: float = 0.0) -> list[Path]:
    """Generated client CSVs of `rows` rows in `folder`, one per seed, each made once per
    (rows, seed, duplicate share); the missing ones are made by one process."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, missing = [], []
    for seed in seeds:
        stem = f"clients-n{rows}-s{seed}-d{round(duplicates * 100)}"
        path = folder / f"{stem}-{datagen_tag()}.csv"
        paths.append(path)
        if not path.is_file():
            for stale in folder.glob(f"{stem}-*.csv"):
                stale.unlink()
            missing.append(f"{seed}={path}")
    if missing:
        log(f"generating {len(missing)} file(s) of {rows:,} clients in {folder.name}/")
        task("clients", "--rows", str(rows), "--duplicates", str(duplicates), *missing, memory=False)
    return paths


# --- HTTP servers and load -------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn with 2 workers on 127.0.0.1, serving the API of one config; stopped on exit."""

    def __init__(self, config: Path, log_file: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [str(Path(PYTHON).parent / "gunicorn"), "--workers", "2", "--bind", f"127.0.0.1:{self.port}",
             "--no-control-socket", "--chdir", str(ROOT), "wsgi:app"],
            env=child_env(RISK_CONFIG=str(config)), cwd=ROOT, stdout=log_file.open("ab"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)

    def wait_ready(self, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with status {self.process.returncode}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer at {self.url} within {seconds:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def load(url: str, *, method: str = "GET", body: Path | None = None, seconds: int, requests: int,
         connections: int, client: str) -> dict[str, Any]:
    """One load run from a second process, bounded in requests and seconds; its summary.

    Latencies are in microseconds. wrk runs for the whole duration even when its threads stop at
    the request cap, so req/s is only exact when the cap was not reached ("capped" says so).
    """
    if client == "wrk":
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency",
                   "-s", str(BENCH / "wrk.lua"), url]
        env = {**os.environ, "BENCH_METHOD": method, "BENCH_BODY": str(body or ""),
               "BENCH_MAX_REQUESTS_PER_THREAD": str(requests)}
    else:
        command = [PYTHON, str(BENCH / "loadgen.py"), "--url", url, "--method", method, "--requests", str(requests),
                   "--duration", str(seconds), "--connections", str(connections)]
        command += ["--body", str(body)] if body else []
        env = dict(os.environ)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr[-1000:]}{done.stdout[-1000:]}")
    summary = json.loads(line[len("BENCH_JSON "):])
    if summary["requests"] == 0 or any(summary["errors"].values()):
        raise RuntimeError(f"{method} {url}: {summary['requests']} answers, errors {summary['errors']}")
    summary["rps"] = summary["requests"] / (summary["duration_us"] / 1e6)
    summary["capped"] = summary["requests"] >= requests
    return summary


# --- The project the benchmarks share --------------------------------------------------------
@dataclass(frozen=True)
class Project:
    folder: Path
    config: Path  # config.json: sourcedata, the API's config and the full cycle's
    practice_config: Path  # config.practice.json: deployed, nothing new
    risk_config: Path  # config.risk.json: writes risk lists beside nothing else
    pristine: Path  # a copy of the folder as built, to start each full cycle from


def build_project(sizes: Sizes, scratch: Path) -> Project:
    folder = scratch / "project"
    log(f"building the project: {sizes.practice:,} old-market clients deployed, {sizes.clients:,} new ones waiting")
    result = task("project", "--dir", str(folder), "--clients", str(sizes.clients), "--practice", str(sizes.practice),
                  "--seed", str(SEED), memory=False).result()
    pristine = scratch / "project-pristine"
    shutil.copytree(folder, pristine, symlinks=True)
    return Project(folder, Path(result["config"]), Path(result["practice_config"]), folder / "config.risk.json",
                   pristine)


# --- 1. cron tick with nothing new -----------------------------------------------------------
def bench_cron_tick(sizes: Sizes, project: Project, scratch: Path) -> dict[str, Any]:
    tick = [PYTHON, str(ROOT / "fullprocess.py"), "--config", str(project.practice_config)]
    floor = [PYTHON, "-c", "pass"]
    env = child_env()
    times: dict[str, list[float]] = {"tick": [], "floor": []}
    cpu: dict[str, list[float]] = {"tick": [], "floor": []}
    peaks: dict[str, list[float]] = {"tick": [], "floor": []}
    for number in range(sizes.tick_runs + 1):  # the first pair warms the file cache
        for name, command in (("floor", floor), ("tick", tick)):
            measured = run_child(command, env=env, cwd=scratch, timeout=60, memory=False)
            if number:
                times[name].append(measured.seconds)
                cpu[name].append(measured.cpu_seconds)
            if name == "tick" and "nothing to do" not in measured.stderr:
                raise RuntimeError(f"the tick found work to do:\n{measured.stderr[-2000:]}")
    for _ in range(sizes.tick_memory_runs):
        for name, command in (("floor", floor), ("tick", tick)):
            measured = run_child(command, env=env, cwd=scratch, timeout=60)
            if measured.peak_mb is not None:
                peaks[name].append(measured.peak_mb)
    wall, wall_floor = median(times["tick"]), median(times["floor"])
    log(f"tick: {wall * 1000:.0f} ms vs python -c pass {wall_floor * 1000:.0f} ms")
    figures = [figure("wall time (median)", wall, "s", "python -c pass", wall_floor, target="<= 10x floor",
                      met=wall <= 10 * wall_floor, runs=sizes.tick_runs),
               figure("CPU time (median)", median(cpu["tick"]), "s", "python -c pass", median(cpu["floor"]))]
    if peaks["tick"]:
        peak, peak_floor = max(peaks["tick"]), max(peaks["floor"])
        figures.append(figure("peak memory", peak, "MB", "python -c pass", peak_floor, target="<= 40 MB",
                              met=peak <= 40, runs=sizes.tick_memory_runs))
    return {"title": "cron tick with nothing new: python fullprocess.py --config <deployed project>",
            "figures": figures}


# --- 2 and 3. the API through gunicorn -------------------------------------------------------
def request_bodies(project: Project, folder: Path) -> dict[int, Path]:
    """JSON bodies of 1 and 1,000 records taken from the project's generated new-market clients."""
    lines = (project.folder / "sourcedata" / "source1.csv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    records = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:1001]]
    records = [{k: (v if k == "corporation" else int(v)) for k, v in r.items() if k != "exited"} for r in records]
    bodies = {}
    for count in (1, 1000):
        path = folder / f"prediction-{count}.json"
        path.write_text(json.dumps({"records": (records * 1000)[:count]}), encoding="utf-8")
        bodies[count] = path
    return bodies


def measure_load(server: Server, name: str, method: str, body: Path | None, sizes: Sizes,
                 client: str) -> dict[str, Any]:
    url = server.url + ("/prediction" if method == "POST" else name)
    summary = load(url, method=method, body=body, seconds=sizes.load_seconds, requests=sizes.load_requests,
                   connections=sizes.connections, client=client)
    log(f"{name}: {summary['rps']:.0f} req/s, p50 {summary['p50_us'] / 1000:.2f} ms, "
        f"p99 {summary['p99_us'] / 1000:.2f} ms ({summary['requests']} requests)")
    return summary


def bench_api(sizes: Sizes, project: Project, server: Server, scratch: Path,
              client: str) -> tuple[dict[str, Any], dict[str, Any]]:
    bodies = request_bodies(project, scratch)
    kinds = {"/health": ("GET", None), "POST /prediction, 1 record": ("POST", bodies[1]),
             "POST /prediction, 1,000 records": ("POST", bodies[1000]), "/scoring": ("GET", None),
             "/summarystats": ("GET", None), "/diagnostics": ("GET", None), "/risk?limit=50": ("GET", None)}

    def url(name: str) -> str:
        return server.url + ("/prediction" if name.startswith("POST") else name)

    for name, (method, body) in kinds.items():  # every worker loads the model and fills its caches
        load(url(name), method=method, body=body, seconds=10, requests=sizes.warmup_requests,
             connections=sizes.connections, client="python")
    # /health runs before and after each endpoint, and each endpoint's floor is the mean of its two
    # neighbours: the loopback fills with closed connections (gunicorn's sync workers close each
    # one), and the same run of /health drifts by up to a third over a minute.
    results: dict[str, dict[str, Any]] = {}
    floors: dict[str, dict[str, float]] = {}
    health = [measure_load(server, "/health", "GET", None, sizes, client)]
    for name, (method, body) in kinds.items():
        if name == "/health":
            continue
        results[name] = measure_load(server, name, method, body, sizes, client)
        health.append(measure_load(server, "/health", "GET", None, sizes, client))
        floors[name] = {key: statistics.fmean(h[key] for h in health[-2:]) for key in ("rps", "p50_us", "p99_us")}
    one, many = results["POST /prediction, 1 record"], results["POST /prediction, 1,000 records"]
    setup = {"server": "gunicorn --workers 2 --no-control-socket, 127.0.0.1", "load_client": client,
             "connections": sizes.connections, "seconds_per_run": sizes.load_seconds,
             "max_requests_per_run": sizes.load_requests,
             "health_runs_rps": [round(h["rps"], 1) for h in health],
             "capped": any(r["capped"] for r in [*health, *results.values()])}

    def versus(name: str, key: str, label: str, unit: str, **kwargs: Any) -> dict[str, Any]:
        scale = 1 / 1000 if key.endswith("_us") else 1
        summary = results[name]
        floor_name = "GET /health " + {"rps": "req/s", "p50_us": "p50", "p99_us": "p99"}[key]
        return figure(label, summary[key] * scale, unit, floor_name,
                      floors[name][key] * scale, requests=summary["requests"], **kwargs)

    one_p = "POST /prediction, 1 record"
    many_p = "POST /prediction, 1,000 records"
    prediction = {"title": "POST /prediction through gunicorn (2 workers)", "setup": setup, "figures": [
        versus(one_p, "rps", "1 record: requests/s", "req/s", better="higher", target=">= 0.5x floor",
               met=one["rps"] >= 0.5 * floors[one_p]["rps"]),
        versus(one_p, "p50_us", "1 record: p50", "ms"),
        versus(one_p, "p99_us", "1 record: p99", "ms"),
        versus(many_p, "rps", "1,000 records: requests/s", "req/s", better="higher"),
        versus(many_p, "p50_us", "1,000 records: p50", "ms", target="<= 20 ms", met=many["p50_us"] / 1000 <= 20),
        versus(many_p, "p99_us", "1,000 records: p99", "ms"),
    ]}
    endpoints = {"title": "GET /scoring, /summarystats, /diagnostics, /risk (nothing recomputed per request)",
                 "setup": setup, "figures": []}
    for name in ("/scoring", "/summarystats", "/diagnostics", "/risk?limit=50"):
        endpoints["figures"] += [
            versus(name, "p50_us", f"GET {name}: p50", "ms", target="<= 2x floor",
                   met=results[name]["p50_us"] <= 2 * floors[name]["p50_us"]),
            versus(name, "p99_us", f"GET {name}: p99", "ms"),
            versus(name, "rps", f"GET {name}: requests/s", "req/s", better="higher")]
    endpoints["title"] = ("GET /scoring, /summarystats, /diagnostics, /risk and the web page / (nothing recomputed "
                          "per request)")
    endpoints["figures"] += bench_page(sizes, project, scratch, client)
    return prediction, endpoints


def page_config(project: Project) -> Path:
    """config.page.json: config.json with every new-market client (sourcedata) as the ingested data."""
    folder = project.folder / "pageview"
    folder.mkdir(exist_ok=True)
    parts = [(project.folder / "sourcedata" / name).read_text(encoding="utf-8").splitlines()
             for name in ("source1.csv", "source2.csv")]
    (folder / "finaldata.csv").write_text("\n".join(parts[0] + parts[1][1:]) + "\n", encoding="utf-8")
    path = project.folder / "config.page.json"
    raw = json.loads(project.config.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**raw, "output_folder_path": "pageview"}), encoding="utf-8")
    return path


def warm_every_worker(url: str, rounds: int = 10, probes: int = 40, slow_seconds: float = 0.1) -> None:
    """Ask until `probes` answers in a row are fast: a worker's first page (ranking, evaluation, charts) takes
    a second, and wrk's latency correction turns one such stall in a timed run into a p99 of hundreds of ms."""
    for _ in range(rounds):
        slowest = 0.0
        for _ in range(probes):
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=30) as answer:
                answer.read()
            slowest = max(slowest, time.perf_counter() - started)
        if slowest < slow_seconds:
            return
    log(f"{url}: still slow answers after {rounds} rounds of warming up")


def bench_page(sizes: Sizes, project: Project, scratch: Path, client: str) -> list[dict[str, Any]]:
    """GET /, the web page, with all the new-market clients ingested, beside GET /health of the same server."""
    with Server(page_config(project), scratch / "gunicorn-page.log") as server:
        load(server.url + "/", seconds=30, requests=sizes.warmup_requests, connections=sizes.connections,
             client="python")  # each worker ranks the clients once
        warm_every_worker(server.url + "/")
        weight = 0
        for path in ("/", "/static/page.css", "/static/icon.svg"):
            with urllib.request.urlopen(server.url + path, timeout=10) as answer:
                weight += len(answer.read())
        with urllib.request.urlopen(server.url + "/risk?limit=1", timeout=30) as answer:
            story_path = "/clients/" + urllib.parse.quote(json.loads(answer.read())["clients"][0]["corporation"])
        warm_every_worker(server.url + story_path)  # each worker indexes the input files' snapshots once
        health = [measure_load(server, "/health", "GET", None, sizes, client)]
        page = measure_load(server, "/", "GET", None, sizes, client)
        story = measure_load(server, story_path, "GET", None, sizes, client)
        health.append(measure_load(server, "/health", "GET", None, sizes, client))
    floor = {key: statistics.fmean(h[key] for h in health) for key in ("rps", "p50_us", "p99_us")}
    label = f"GET / ({sizes.clients:,} clients)"
    return [
        figure(f"GET /clients/<id> ({sizes.clients:,} clients, dated snapshots scored, runs charted): p50",
               story["p50_us"] / 1000, "ms", "GET /health p50", floor["p50_us"] / 1000, requests=story["requests"]),
        figure(f"{label}: p50", page["p50_us"] / 1000, "ms", "GET /health p50", floor["p50_us"] / 1000,
               target="<= 3x floor", met=page["p50_us"] <= 3 * floor["p50_us"], requests=page["requests"]),
        figure(f"{label}: p99", page["p99_us"] / 1000, "ms", "GET /health p99", floor["p99_us"] / 1000,
               requests=page["requests"]),
        figure(f"{label}: requests/s", page["rps"], "req/s", "GET /health req/s", floor["rps"], better="higher",
               requests=page["requests"]),
        figure("GET /: the page, its stylesheet and icon", weight / 1024, "KB", "the limit", 300.0,
               target="< 300 KB", met=weight < 300 * 1024),
    ]


# --- 4. the risk list ------------------------------------------------------------------------
def bench_risk_list(sizes: Sizes, project: Project, data: Path) -> dict[str, Any]:
    figures = []
    # Each list compares with an earlier run's ranking (tasks.py earlier-ranking), so its change columns are filled.
    earlier = project.folder / "risk-out" / "rankings" / "1.parquet"
    for rows, runs in zip(sizes.risk_rows, sizes.risk_runs, strict=True):
        [clients] = cached_clients(data / "clients", rows, [SEED])
        task("earlier-ranking", "--config", str(project.risk_config), "--clients", str(clients), "--seed", str(SEED),
             memory=False).result()
        got: dict[str, list[Measured]] = {"risk": [], "floor": [], "plain": [], "write": []}
        for _ in range(runs):
            got["floor"].append(task("read-csv", str(clients)))
            got["risk"].append(task("risk-list", "--config", str(project.risk_config), "--clients", str(clients)))
            got["plain"].append(task("risk-list", "--config", str(project.risk_config), "--clients", str(clients),
                                     "--no-reasons"))
            got["write"].append(task("write-bytes", "--path", str(earlier.parent.parent / "write-floor.bin"),
                                     "--bytes", str(got["risk"][-1].result()["bytes"])))
        earlier.unlink()
        seconds = median([m.result()["seconds"] for m in got["risk"]])
        floor = median([m.result()["seconds"] for m in got["floor"]])
        plain = median([m.result()["seconds"] for m in got["plain"]])
        written = median([m.result()["seconds"] for m in got["write"]])
        label = f"{rows:,} clients"
        log(f"risk list of {label}: {seconds:.2f} s vs read_csv {floor:.2f} s; without reasons {plain:.2f} s; "
            f"writing its bytes alone {written:.2f} s")
        largest = rows == max(sizes.risk_rows)  # the targets are for the largest file (10M rows)
        figures.append(figure(f"{label}: time", seconds, "s", "pandas.read_csv", floor,
                              target="<= 0.75x floor" if largest else None,
                              met=seconds <= 0.75 * floor if largest else None, runs=runs,
                              process_wall_s=round(median([m.seconds for m in got["risk"]]), 3),
                              floor_process_wall_s=round(median([m.seconds for m in got["floor"]]), 3)))
        if largest:  # issue 22's own target for the call list with reasons and change columns
            figures.append(figure(f"{label}, reasons and change columns: time (issue 22)", seconds, "s",
                                  "pandas.read_csv", floor, target="<= 1.25x floor", met=seconds <= 1.25 * floor,
                                  runs=runs))
        figures.append(figure(f"{label}: time with reasons", seconds, "s", "the same list without reasons", plain,
                              target="<= 1.25x floor" if largest else None,
                              met=seconds <= 1.25 * plain if largest else None, runs=runs,
                              clients_listed=got["risk"][-1].result()["rows"]))
        figures.append(figure(f"{label}: time", seconds, "s", "writing its bytes alone, fsynced", written, runs=runs,
                              bytes_written=got["risk"][-1].result()["bytes"]))
        figures.append(cpu_figure(f"{label}: CPU time", got["risk"], "pandas.read_csv", got["floor"]))
        figures.append(cpu_figure(f"{label}: CPU time with reasons", got["risk"], "the same list without reasons",
                                  got["plain"]))
        peaks = [m.peak_mb for m in got["risk"] if m.peak_mb is not None]
        floor_peaks = [m.peak_mb for m in got["floor"] if m.peak_mb is not None]
        if peaks and floor_peaks:
            figures.append(figure(f"{label}: peak memory", max(peaks), "MB", "pandas.read_csv", max(floor_peaks),
                                  target="<= 1000 MB" if largest else None,
                                  met=max(peaks) <= 1000 if largest else None))
            if largest:
                figures.append(figure(f"{label}, reasons and change columns: peak memory (issue 22)", max(peaks), "MB",
                                      "pandas.read_csv", max(floor_peaks), target="<= 1200 MB",
                                      met=max(peaks) <= 1200))
    return {"title": "risk list (riskcore.report.call_list.risk_scores) of generated clients, compared with an "
                     "earlier run's ranking", "figures": figures,
            "note": "time inside each process, its libraries imported before the clock starts; "
                    "peak memory of the whole process"}


# --- 5. ingestion ----------------------------------------------------------------------------
def bench_ingestion(sizes: Sizes, data: Path, scratch: Path) -> dict[str, Any]:
    # The input folder holds these files only (ingestion refuses links leading out of it).
    inputs = data / f"ingest-{sizes.ingest_files}x{sizes.ingest_rows}"
    files = cached_clients(inputs, sizes.ingest_rows, [SEED + number for number in range(sizes.ingest_files)],
                           duplicates=0.1)
    folder = scratch / "ingestion"
    (folder / "test").mkdir(parents=True, exist_ok=True)
    config = folder / "config.json"
    config.write_text(json.dumps({"input_folder_path": str(inputs), "output_folder_path": "ingested",
                                  "test_data_path": "test", "output_model_path": "models",
                                  "prod_deployment_path": "prod"}), encoding="utf-8")
    got: dict[str, list[Measured]] = {"ingest": [], "floor": []}
    for _ in range(sizes.ingest_runs):
        got["floor"].append(task("read-csv", *map(str, files)))
        got["ingest"].append(task("ingest", "--config", str(config)))
        shutil.rmtree(folder / "ingested", ignore_errors=True)
    result = got["ingest"][-1].result()
    seconds = median([m.result()["seconds"] for m in got["ingest"]])
    floor = median([m.result()["seconds"] for m in got["floor"]])
    log(f"ingestion: {seconds:.2f} s vs read_csv {floor:.2f} s")
    label = f"{sizes.ingest_files} files x {sizes.ingest_rows:,} rows, 10% duplicates"
    figures = [figure(f"{label}: time", seconds, "s", "pandas.read_csv of the same files", floor,
                      target="<= 1.5x floor", met=seconds <= 1.5 * floor, runs=sizes.ingest_runs,
                      rows_read=result["rows_read"], rows_kept=result["rows_kept"]),
               cpu_figure(f"{label}: CPU time", got["ingest"], "pandas.read_csv of the same files", got["floor"])]
    peaks = [m.peak_mb for m in got["ingest"] if m.peak_mb is not None]
    floor_peaks = [m.peak_mb for m in got["floor"] if m.peak_mb is not None]
    if peaks and floor_peaks:
        figures.append(figure(f"{label}: peak memory", max(peaks), "MB", "pandas.read_csv of the same files",
                              max(floor_peaks)))
    return {"title": "ingestion (ingestion.run) of generated files", "figures": figures,
            "note": "time inside each process, its data library imported before the clock starts"}


# --- 6. a full cycle with drift --------------------------------------------------------------
def last_run(models: Path) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(models / "runhistory.sqlite")) as connection:
        connection.row_factory = sqlite3.Row
        row = connection.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    return dict(row)


def bench_full_cycle(sizes: Sizes, project: Project, server: Server, scratch: Path) -> dict[str, Any]:
    walls, cpus, peaks, steps = [], [], [], []
    for number in range(sizes.cycle_runs):
        if number:  # start again from the project as built; the server notices the redeployment
            shutil.rmtree(project.folder)
            shutil.copytree(project.pristine, project.folder, symlinks=True)
        measured = run_child([PYTHON, str(ROOT / "fullprocess.py"), "--config", str(project.config), "--api-url",
                              server.url], env=child_env(), cwd=scratch, timeout=300)
        row = last_run(project.folder / "models")
        if row["outcome"] != "done" or row["decision"] != "retrain":
            raise RuntimeError(f"the full cycle did not retrain: {row['decision']}, {row['outcome']}: {row['error']}")
        walls.append(measured.seconds)
        cpus.append(measured.cpu_seconds)
        if measured.peak_mb is not None:
            peaks.append(measured.peak_mb)
        steps.append(json.loads(row["step_seconds"]))
        log(f"full cycle {number + 1}: {measured.seconds:.2f} s; steps {steps[-1]}")
    per_step = {name: median([s[name] for s in steps]) for name in steps[0]}
    total = sum(per_step.values())
    wall = median(walls)
    figures = [figure("whole run: wall time", wall, "s", "sum of its steps", total, target="<= 4 s", met=wall <= 4,
                      runs=sizes.cycle_runs, cpu_s=round(median(cpus), 3),
                      peak_memory_mb=max(peaks) if peaks else None)]
    figures += [figure(f"step {name}", seconds, "s", "sum of its steps", total) for name, seconds in per_step.items()]
    return {"title": f"full cycle with drift on {sizes.clients:,} new clients: python fullprocess.py "
                     "(ingest, drift check, retrain, score, deploy, diagnostics, reports, API calls)",
            "figures": figures,
            "note": "pip is pointed at an unreachable loopback index (PIP_INDEX_URL=http://127.0.0.1:9/simple, "
                    "PIP_RETRIES=0, no pip config file), so diagnostics' dependency check measures this code, "
                    "not the network"}


def bench_drift_test(sizes: Sizes) -> dict[str, Any]:
    """The default model-drift test (riskcore.model.drift.significant_drop) on a window of `sizes.clients` rows,
    beside its floor: scikit-learn's f1_score on the same rows, what the course's raw test costs."""
    result = task("drift-test", "--rows", str(sizes.clients), memory=False).result()
    value = result["seconds"]
    return {"title": f"the significance test on a window of {sizes.clients:,} rows (10,000 permutations)",
            "figures": [figure("time (median of 5)", value, "s", "f1_score on the same rows", result["floor"],
                               target="<= 0.2 s", met=value <= 0.2)]}


def bench_estimate(sizes: Sizes) -> dict[str, Any]:
    """Issue 20: estimating a window from calibrated probabilities, and fitting the calibrator at training."""
    result = task("estimate", "--rows", str(sizes.clients), memory=False).result()
    share = result["calibration"] / result["training"]
    return {"title": f"performance estimated on a window of {sizes.clients:,} unlabelled clients, and the "
                     "calibrator fitted by training.py on 2,000 held-out rows",
            "figures": [figure("estimate: time (median of 5)", result["seconds"], "s", "f1_score on the same rows",
                               result["floor"], target="<= 0.2 s", met=result["seconds"] <= 0.2),
                        figure("estimate in a tick, ledger included (median of 5)", result["tick"], "s",
                               "f1_score on the same rows", result["floor"], target="<= 0.2 s",
                               met=result["tick"] <= 0.2),
                        figure("calibration in training.py (median of 3)", result["calibration"], "s",
                               "the rest of training.py", result["training"], target="<= 0.1x floor",
                               met=share <= 0.1)]}


# --- 7 and 8. the database source (input_database) --------------------------------------------
@contextlib.contextmanager
def postgres():
    """A throwaway PostgreSQL server (tests/pg.py, on a free loopback port) for the database benchmarks."""
    server = task("postgres", "start", memory=False).result()
    try:
        yield server
    finally:
        task("postgres", "stop", "--folder", server["folder"], "--port", str(server["port"]),
             "--run-as", server["run_as"] or "", memory=False)


def pg_env(server: dict[str, Any]) -> dict[str, str]:
    """libpq's password variable, and no password or service file of the machine's."""
    return {"PGPASSWORD": server["password"], "PGPASSFILE": os.devnull, "PGSERVICEFILE": os.devnull}


DB_TICK_LABELS = {"sqlite": "SQLite, watermark column", "sqlite-checksum": "SQLite, count and checksum",
                  "sqlite-bulk": "SQLite, watermark column, one bulk load",
                  "postgresql": "PostgreSQL, watermark column", "postgresql-checksum": "PostgreSQL, count and checksum",
                  "postgresql-bulk": "PostgreSQL, watermark column, one bulk load"}


def bench_db_tick(sizes: Sizes, server: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """The no-op tick against each table; with a watermark it re-reads the rows within the look-back (a row every
    6 s: the newest 100; a bulk load: all of them) and must recognise every one as ingested ("nothing to do")."""
    made = task("db-project", "--dir", str(scratch / "db-project"), "--url", server["url"], "--rows",
                str(sizes.db_tick_rows), "--seed", str(SEED), memory=False, **pg_env(server)).result()
    configs, lookback = made["configs"], made["lookback_rows"]
    for key, count in lookback.items():
        if "checksum" not in key and not count:
            raise RuntimeError(f"the {key} record holds no row within the look-back: the tick would re-read none")
    env = child_env(**pg_env(server))
    commands = {"floor": [PYTHON, "-c", "pass"]}
    commands.update({key: [PYTHON, str(ROOT / "fullprocess.py"), "--config", path] for key, path in configs.items()})
    times: dict[str, list[float]] = {name: [] for name in commands}
    for number in range(sizes.tick_runs + 1):  # the first round warms the file cache and the server
        for name, command in commands.items():
            measured = run_child(command, env=env, cwd=scratch, timeout=60, memory=False)
            if number:
                times[name].append(measured.seconds)
            if name != "floor" and "nothing to do" not in measured.stderr:
                raise RuntimeError(f"the {name} tick found work to do:\n{measured.stderr[-2000:]}")
    floor = median(times["floor"])
    figures = []
    for key in configs:
        wall = median(times[key])
        log(f"tick, {DB_TICK_LABELS[key]}: {wall * 1000:.0f} ms vs python -c pass {floor * 1000:.0f} ms")
        sqlite = key.startswith("sqlite")
        figures.append(figure(f"{DB_TICK_LABELS[key]}: wall time (median)", wall, "s", "python -c pass", floor,
                              target="<= 10x floor" if sqlite else "<= 0.3 s",
                              met=wall <= 10 * floor if sqlite else wall <= 0.3, runs=sizes.tick_runs,
                              lookback_rows=None if "checksum" in key else lookback[key]))
    return {"title": f"cron tick with nothing new: python fullprocess.py, input_database a table of "
                     f"{sizes.db_tick_rows:,} clients (deployed from it)", "figures": figures,
            "note": "with a watermark the tick re-reads the rows within the 600 s look-back of the recorded "
                    "watermark (lookback_rows: a row written every 6 s, the newest 100; one bulk load, all of "
                    "them) and recognises each as ingested by its hash"}


def bench_db_ingestion(sizes: Sizes, server: dict[str, Any], data: Path, scratch: Path) -> dict[str, Any]:
    [clients] = cached_clients(data / "clients", sizes.db_ingest_rows, [SEED])
    log(f"loading {sizes.db_ingest_rows:,} clients into PostgreSQL")
    task("db-table", "--url", server["url"], "--table", "clients_large", "--clients", str(clients), memory=False,
         **pg_env(server))
    folder = scratch / "db-ingestion"
    (folder / "test").mkdir(parents=True, exist_ok=True)
    env = child_env(**pg_env(server))
    figures = []
    for watermark in ("updated_at", None):
        config = folder / f"config-{watermark or 'checksum'}.json"
        config.write_text(json.dumps({
            "input_database": {"url": server["url"], "table": "clients_large", "watermark_column": watermark},
            "output_folder_path": "ingested", "test_data_path": "test", "output_model_path": "models",
            "prod_deployment_path": "prod"}), encoding="utf-8")
        sql = task("db-select", "--config", str(config), memory=False).result()["sql"]
        copy = [server["psql"], "-X", "-q", "-d", server["url"], "-c", f"\\copy ({sql}) TO '/dev/null' CSV"]
        got: dict[str, list[Measured]] = {"ingest": [], "floor": []}
        for _ in range(sizes.db_ingest_runs):
            got["floor"].append(run_child(copy, env=env, cwd=folder, timeout=300))
            got["ingest"].append(task("ingest", "--config", str(config), **pg_env(server)))
            shutil.rmtree(folder / "ingested", ignore_errors=True)
        result = got["ingest"][-1].result()
        seconds = median([m.result()["seconds"] for m in got["ingest"]])
        floor = median([m.seconds for m in got["floor"]])
        order = "in watermark order" if watermark else "in table order, count and checksum"
        log(f"ingestion from PostgreSQL ({order}): {seconds:.2f} s vs psql \\copy {floor:.2f} s")
        label = f"{sizes.db_ingest_rows:,} rows {order}"
        figures.append(figure(f"{label}: time", seconds, "s", "psql \\copy of the same query to /dev/null", floor,
                              target="<= 2x floor", met=seconds <= 2 * floor, runs=sizes.db_ingest_runs,
                              rows_read=result["rows_read"], rows_kept=result["rows_kept"],
                              process_wall_s=round(median([m.seconds for m in got["ingest"]]), 3)))
        peaks = [m.peak_mb for m in got["ingest"] if m.peak_mb is not None]
        floor_peaks = [m.peak_mb for m in got["floor"] if m.peak_mb is not None]
        if peaks and floor_peaks:
            figures.append(figure(f"{label}: peak memory", max(peaks), "MB", "psql \\copy", max(floor_peaks)))
    return {"title": "ingestion (ingestion.run) of a PostgreSQL table: read, validate, one row per client, "
                     "finaldata.csv and the record",
            "figures": figures,
            "note": "ingestion's time is taken inside its process, polars imported before the clock starts (as in "
                    "the ingestion benchmark); psql's is its whole process, connection included"}


# --- The machine, the table, the record ------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory_gb = round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1)
    versions = {}
    for name in ("numpy", "pandas", "scikit-learn", "flask", "gunicorn"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    wrk = None
    if shutil.which("wrk"):
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0].split(" [")[0]
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": memory_gb,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "libraries": versions, "wrk": wrk, "peak_memory_by": TIME if os.access(TIME, os.X_OK) else None}


def format_number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"


def table(benchmarks: dict[str, dict[str, Any]]) -> str:
    """The results as one plain-text table."""
    rows = [("benchmark", "measure", "value", "floor", "floor value", "ratio", "target", "met")]
    for key, bench in benchmarks.items():
        for item in bench["figures"]:
            met = "-" if item["met"] is None else ("yes" if item["met"] else "NO")
            rows.append((key, item["measure"], f"{format_number(item['value'])} {item['unit']}", item["floor_name"],
                         f"{format_number(item['floor'])} {item['unit']}",
                         "-" if item["ratio"] is None else f"{item['ratio']:.2f}x", item["target"] or "-", met))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=2)
        out.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def load_average() -> float | None:
    with contextlib.suppress(OSError):
        return round(os.getloadavg()[0], 2)
    return None


def run(sizes: Sizes, data: Path, only: tuple[str, ...], client: str) -> dict[str, dict[str, Any]]:
    data.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}

    def record(*names: str, work, **arguments) -> None:
        """Run one benchmark; note how busy the machine was (1-minute load average) before and after.

        The gigabytes the previous benchmark wrote (the 10M-row call list, the ingestion's files) are flushed
        first: left to the kernel's writeback, they landed in the API's latencies that follow (GET / p50
        1.44 ms beside /health's 0.51 ms in a whole run, 0.62 ms when get_endpoints ran alone).
        """
        os.sync()
        before = load_average()
        found = work(**arguments)
        for name, result in zip(names, found if len(names) > 1 else [found], strict=True):
            result["load_average"] = {"before": before, "after": load_average()}
            results[name] = result

    with tempfile.TemporaryDirectory(prefix="risk-bench-", dir=data) as tmp:
        scratch = Path(tmp)
        project = build_project(sizes, scratch)
        if "cron_tick" in only:
            log("cron tick with nothing new")
            record("cron_tick", work=bench_cron_tick, sizes=sizes, project=project, scratch=scratch)
        if "risk_list" in only:
            record("risk_list", work=bench_risk_list, sizes=sizes, project=project, data=data)
        if "ingestion" in only:
            record("ingestion", work=bench_ingestion, sizes=sizes, data=data, scratch=scratch)
        if {"prediction", "get_endpoints", "full_cycle"} & set(only):
            with Server(project.config, scratch / "gunicorn.log") as server:
                if {"prediction", "get_endpoints"} & set(only):
                    log(f"the API through gunicorn, load from {client}")
                    record("prediction", "get_endpoints", work=bench_api, sizes=sizes, project=project,
                           server=server, scratch=scratch, client=client)
                if "full_cycle" in only:
                    log("full cycle with drift")
                    record("full_cycle", work=bench_full_cycle, sizes=sizes, project=project, server=server,
                           scratch=scratch)
        if "drift_test" in only:
            log("the significance test")
            record("drift_test", work=bench_drift_test, sizes=sizes)
        if "estimate" in only:
            log("the window estimate and the calibrator")
            record("estimate", work=bench_estimate, sizes=sizes)
        if {"db_tick", "db_ingestion"} & set(only):
            with postgres() as pg_server:
                if "db_tick" in only:
                    log("cron tick with nothing new, a database table as the source")
                    record("db_tick", work=bench_db_tick, sizes=sizes, server=pg_server, scratch=scratch)
                if "db_ingestion" in only:
                    record("db_ingestion", work=bench_db_ingestion, sizes=sizes, server=pg_server, data=data,
                           scratch=scratch)
    return {key: results[key] for key in BENCHMARKS if key in results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few requests: checks the harness")
    parser.add_argument("--out", default=str(BENCH / "results.json"), help="where to write the results")
    parser.add_argument("--data-dir", default=str(BENCH / "data"), help="generated data and scratch projects")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated benchmarks to run (default: all of {','.join(BENCHMARKS)})")
    parser.add_argument("--load-client", choices=("auto", "wrk", "python"), default="auto",
                        help="the load generator (default: wrk when installed, else bench/loadgen.py; "
                             "--quick: bench/loadgen.py)")
    args = parser.parse_args(argv)
    only = tuple(name.strip() for name in args.only.split(",") if name.strip())
    unknown = [name for name in only if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    if args.load_client == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed; use --load-client python")
    # wrk runs for whole seconds; the quick check keeps to the Python client unless told otherwise.
    client = args.load_client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") and not args.quick else "python"
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    benchmarks = run(sizes, Path(args.data_dir).resolve(), only, client)
    document = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "mode": "quick" if args.quick else "full", "seconds": round(time.perf_counter() - started, 1),
                "command": "python bench/run.py" + (" --quick" if args.quick else ""),
                "machine": machine(), "sizes": dataclasses.asdict(sizes), "benchmarks": benchmarks}
    write_json(Path(args.out), document)
    print(table(benchmarks))
    missed = [f"{key}: {item['measure']}" for key, bench in benchmarks.items() for item in bench["figures"]
              if item["met"] is False]
    print(f"\n{len(missed)} target(s) missed" + (": " + "; ".join(missed) if missed else "")
          + f"; {document['seconds']:.0f} s in all; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
