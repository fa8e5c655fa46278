"""Shared fixtures: a temporary project (config and small CSVs of our own) under tmp_path."""

from __future__ import annotations

import functools
import gc
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The throwaway PostgreSQL server's fixtures (tests/pg.py).
from pg import own_postgres_server, pg_database, pg_env, postgres_server  # noqa: E402, F401

from riskcore.config import Config, load_config  # noqa: E402
from riskcore.contract import COLUMNS  # noqa: E402
from riskcore.release import publish  # noqa: E402

HEADER = ",".join(COLUMNS)

MEMORY_TEMP = Path("/dev/shm")  # a RAM file system on Linux
MEMORY_TEMP_NEEDED = 2 << 30  # free bytes it must have: a fast run leaves about 170 MB, and pytest keeps three runs


def pytest_configure(config) -> None:
    """tmp_path and tmp_path_factory in RAM (/dev/shm) when it has room, unless a folder was chosen (--basetemp,
    TMPDIR, or PYTEST_DEBUG_TEMPROOT, which pytest reads for its base folder).

    The tests make thousands of projects, renames, links and folders: on the test machine's disk a rename took
    0.7 ms, and the fast tests spent 6 to 10 s of system time, 4 to 6 s with this. Nothing a test
    checks depends on the file system: rename, links and locks behave the same; fsync is off already (no_fsync).
    """
    if config.option.basetemp or os.environ.get("PYTEST_DEBUG_TEMPROOT") or os.environ.get("TMPDIR") \
            or not MEMORY_TEMP.is_dir():
        return
    try:
        room = os.statvfs(MEMORY_TEMP)
    except OSError:
        return
    if os.access(MEMORY_TEMP, os.W_OK | os.X_OK) and room.f_bavail * room.f_frsize >= MEMORY_TEMP_NEEDED:
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(MEMORY_TEMP)


def pytest_collection_finish(session) -> None:
    """Leave what the imports and collection made out of the garbage collector's full passes (gc.freeze): the
    heap of scikit-learn, polars, matplotlib and the collected tests is about 300,000 objects, and scanning it
    again in each full collection was about 3 s of the fast tests' CPU. Objects made by the tests are collected
    as before."""
    gc.collect()
    gc.freeze()


# `make test` installs and starts what the slow tests need (make system-test-deps, as root) and then says so with
# RISK_TESTS_NEED_SYSTEM=1: a test that finds one of them missing then fails instead of skipping, since a skip
# there would pass off an install that did not happen as a suite that passed. Elsewhere (a run as another user,
# pytest by hand) the missing package is a skip that names it.
NEED_SYSTEM = "RISK_TESTS_NEED_SYSTEM"


def system_missing(reason: str) -> None:
    """A system package or service the test needs is missing: fail under `make test`, skip elsewhere."""
    if os.environ.get(NEED_SYSTEM) == "1":
        pytest.fail(f"{reason}; make test ran system-test-deps as root ({NEED_SYSTEM}=1): a failure, not a skip",
                    pytrace=False)
    pytest.skip(reason)


def client_rows(n: int, seed: int, flip: bool = False, prefix: str = "c", noise: float = 0.1) -> list[str]:
    """Deterministic client rows: low recent activity means the client is likely to leave.

    A share `noise` of the labels is inverted; `flip` inverts the relation itself. Each distinct set of
    arguments is generated once a session (about 1,600 calls took 2.2 s of a profiled run of the fast tests);
    every call gets its own list.
    """
    return list(_client_rows(n, seed, flip, prefix, noise))


@functools.cache
def _client_rows(n: int, seed: int, flip: bool, prefix: str, noise: float) -> tuple[str, ...]:
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        month = int(rng.integers(0, 400))
        year = int(month * 12 * rng.uniform(0.5, 1.5))
        staff = int(rng.integers(1, 500))
        exited = int(month < 150) if rng.random() >= noise else int(month >= 150)
        if flip:
            exited = 1 - exited
        rows.append(f"{prefix}{seed:02d}{i:04d},{month},{year},{staff},{exited}")
    return tuple(rows)


def one_sentence(text: str) -> str:
    """The text, checked to be what the house style promises a user: one sentence (one line, a full stop at its end,
    no second sentence started after one). The tests named "... one sentence" call it on the message they check."""
    said = text.strip()
    assert "\n" not in said and said.endswith(".") and not re.search(r"[.!?] [A-Z]", said), said
    return said


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


# The course's decision rule, which most tests check on a few hundred rows; the scenario tests of
# the default (riskcore.model.drift.significant_drop, the promotion gate) ask for it with
# automation={"drift_test": "significance", "promotion_gate": True} or write their own section.
COURSE_RULE = {"drift_test": "raw", "promotion_gate": False}


def write_config(root: Path, **overrides) -> Path:
    config = {
        "input_folder_path": "input",
        "output_folder_path": "ingested",
        "test_data_path": "test",
        "output_model_path": "models",
        "prod_deployment_path": "prod",
    }
    automation = {**COURSE_RULE, **overrides.pop("automation", {})}
    config.update(overrides, automation=automation)
    path = root / "config.json"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def _connect_without_sync(*args, **kwargs) -> sqlite3.Connection:
    connection = _SQLITE_CONNECT(*args, **kwargs)
    connection.execute("PRAGMA synchronous=OFF")
    return connection


_SQLITE_CONNECT = sqlite3.connect


@pytest.fixture(autouse=True, scope="session")
def no_fsync():
    """fsync off in the test process, as for the test PostgreSQL server (tests/pg.py): no test needs its files to
    survive a power loss, and the atomic writes' thousands of fsyncs were most of the fast suite's waiting (6,542
    calls, 19 s of a 170 s run on a loaded machine). Files are still written to a temporary name and renamed into
    place; tests that make a write fail patch os.fsync or the writes themselves, after this.

    For the whole session, so that module-scoped fixtures are covered too (they made 491 fsyncs, 2.4 s of a
    profiled run); the same for SQLite's own syncs on commit (PRAGMA synchronous=OFF on each connection this
    process opens: the run history's and the ledger's 330 commits waited 5.5 s of that run). Locking and
    transactions are unchanged; subprocesses sync as in production."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", lambda fd: None)
        patch.setattr(sqlite3, "connect", _connect_without_sync)
        yield


@pytest.fixture(autouse=True, scope="session")
def templates_compiled_once(tmp_path_factory):
    """Jinja compiles each page's templates once a session, not once per app: every test's create_app has a fresh
    template environment, and compiling the same templates again took 298 compiles, about 4 s of the fast suite.
    The cache is keyed by each template's name and source checksum, so an edited template is compiled again;
    what a template renders is unchanged."""
    import flask
    from jinja2 import FileSystemBytecodeCache

    cache = FileSystemBytecodeCache(str(tmp_path_factory.mktemp("jinja")))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flask.Flask, "jinja_options", {**flask.Flask.jinja_options, "bytecode_cache": cache})
        yield


@pytest.fixture(autouse=True)
def fits_in_this_process(request, monkeypatch):
    """The fast tests fit the model in the test process, not in a forked training process: forking the test
    process (600 MB by then) and faulting its pages back in cost about 100 ms a fit on the test machine, 128 fits
    and 12 s of the fast suite, and no fast test checks the training process. The job is the one run_within runs
    (the fit, or a retrain's out-of-fold fits; one BLAS thread); its time limit needs the process, so the tests
    marked slow keep it: they include the tests of the limit and of a training process outliving its run, and run
    the pipeline in production's processes."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    from threadpoolctl import threadpool_limits

    from riskcore.model import training

    def run_here(seconds, stopped, job, *args):
        with threadpool_limits(limits=1):
            return job(*args)

    monkeypatch.setattr(training, "run_within", run_here)
    yield


@pytest.fixture(autouse=True)
def no_package_index(monkeypatch):
    """Point pip at a closed loopback port: the dependency check must not wait on the network."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    for name in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)


def make_project(root: Path) -> Path:
    """A project folder with two input files (sharing duplicate rows), test data and a config.

    Returns the config file's path.
    """
    first = client_rows(120, seed=1)
    second = client_rows(100, seed=2) + first[:10]  # ten exact duplicates across files
    write_csv(root / "input" / "dataset1.csv", first)
    write_csv(root / "input" / "dataset2.csv", second)
    # Noisier than the training data, so new data of the same market scores at or above it.
    write_csv(root / "test" / "testdata.csv", client_rows(60, seed=3, prefix="t", noise=0.2))
    return write_config(root)


def deploy_pipeline(config: Config) -> Config:
    """Run ingestion, training, scoring and deployment, as the scripts do one after another."""
    import ingestion
    import scoring
    import training

    ingestion.run(config)
    training.run(config)
    scoring.run(config)
    publish.deploy(config)
    return config


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path)


@pytest.fixture
def config(project: Path) -> Config:
    return load_config(project)


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> tuple[dict[str, bytes | str], Path]:
    """make_project's files, and a project of them after ingestion, training and scoring: run once a session."""
    import ingestion
    import scoring
    import training

    root = tmp_path_factory.mktemp("pipeline")
    config = load_config(make_project(root))
    made = tree_snapshot(root)
    ingestion.run(config)
    training.run(config)
    scoring.run(config)
    return made, root


@pytest.fixture
def deployed(config: Config, pipeline_run) -> Config:
    """The project after ingestion, training, scoring and deployment.

    Ingestion, training and scoring are deterministic and record no folder of their project, so a project
    still exactly as make_project wrote it gets their outputs copied from the session's one run of them
    (that saved about 40 ms of CPU and a training process, 211 times in the fast tests); deployment runs
    here, as it records this project's folders. Any other project runs the whole pipeline.
    """
    made, ran = pipeline_run
    root = config.config_file.parent
    if tree_snapshot(root) != made:
        return deploy_pipeline(config)
    for path in sorted(ran.rglob("*")):
        key = str(path.relative_to(ran))
        if key not in made:
            if path.is_dir():
                (root / key).mkdir(exist_ok=True)
            else:
                shutil.copy2(path, root / key)
    publish.deploy(config)
    return config


def run_script(script: str, *args: str, cwd: Path, env: dict | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a top-level script as a user would: its own process, another working directory."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def tree_snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every file's bytes (and every link's target) below a folder, for before/after checks."""
    snapshot: dict[str, bytes | str] = {}
    if not folder.exists():
        return snapshot
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            snapshot[key] = "->" + os.readlink(path)
        elif path.is_file():
            snapshot[key] = path.read_bytes()
    return snapshot


@pytest.fixture
def api_url(config: Config):
    """A real HTTP server (werkzeug, in a thread) serving the app for the temporary project."""
    import threading

    from werkzeug.serving import make_server

    import app as app_module

    server = make_server("127.0.0.1", 0, app_module.create_app(str(config.config_file)), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 30) -> None:
    """Wait (bounded) until a server process answers GET /health."""
    import time

    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with status {process.returncode}")
        try:
            if requests.get(url + "/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not come up within {seconds} s")


@pytest.fixture
def isolated_logging():
    """main() configures the root logger for its process; undo that for the tests that follow."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
