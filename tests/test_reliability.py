"""Reliability: killed runs, failing writes, overlapping runs, deploys under load, tampered models.

Each test tries to break a promise docs/security.md makes:
- a run killed at any named point leaves a complete, consistent deployment, and the next run ends
  where an uninterrupted run would have;
- a write that fails (file-size limit, no space) leaves production as it was, with one sentence;
- overlapping cron runs: one does the work, the others exit 0 at once;
- deploys while gunicorn answers a load of predictions: no request fails, every answer comes from
  a model that was fully deployed;
- a tampered model is refused before unpickling; the API keeps the last good one; the automation
  exits 1 saying why.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import resource
import select
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import app as app_module
import deployment
import fullprocess
import ingestion
import scoring
import training
from conftest import (
    ROOT,
    client_rows,
    deploy_pipeline,
    free_port,
    run_script,
    tree_snapshot,
    wait_until_up,
    write_config,
    write_csv,
)
from riskcore.config import Config, load_config
from riskcore.contract import (
    API_RETURNS,
    CURRENT_LINK,
    DEPLOYED_FILES,
    DIAGNOSTICS_RECORD,
    INGESTED_FILES,
    INGESTION_RECORD,
    MANIFEST,
    MODEL_FILE,
    MODEL_METADATA,
    RELEASES_DIR,
    RUN_HISTORY,
    SCORE_FILE,
)
from riskcore.faults import KILL_AT_ENV
from riskcore.files import read_json, sha256_file
from riskcore.ops.history import read_history
from riskcore.release import load, publish
from riskcore.release.load import Deployment, require_deployment

RECORDS = {"records": [{"corporation": f"c{i}", "lastmonth_activity": 10 * i, "lastyear_activity": 100 * i,
                        "number_of_employees": 3 + i} for i in range(5)]}


# --- Helpers -----------------------------------------------------------------------------------
def build_deployed(root: Path) -> Config:
    """A project with a deployed model (the conftest project, built here so fixtures can share it)."""
    first = client_rows(120, seed=1)
    write_csv(root / "input" / "dataset1.csv", first)
    write_csv(root / "input" / "dataset2.csv", client_rows(100, seed=2) + first[:10])
    write_csv(root / "test" / "testdata.csv", client_rows(60, seed=3, prefix="t"))
    config = load_config(write_config(root))
    deploy_pipeline(config)
    return config


def add_drift(config: Config, rows: int = 200, seed: int = 6) -> None:
    """New data whose labels are flipped: the deployed model does badly on it and a run retrains."""
    write_csv(config.input_folder / f"flipped{seed}.csv", client_rows(rows, seed=seed, flip=True, prefix="f"))


def copy_project(template: Path, target: Path) -> Config:
    """A copy of a prepared project; links (the deployment pointer) are copied as links."""
    shutil.copytree(template, target, symlinks=True)
    return load_config(target / "config.json")


def serve_thread(config: Config):
    """The API for `config` on a free loopback port, in a thread; returns (url, stop)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app_module.create_app(config.config_file), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=10)

    return f"http://127.0.0.1:{server.server_port}", stop


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def error_lines(stderr: str) -> list[str]:
    """The lines that report an error: `error: ...` from a script, ERROR records from the log."""
    return [line for line in stderr.splitlines() if line.startswith("error:") or " ERROR " in line]


def prod_state(config: Config) -> dict:
    """What production serves: the pointer, the manifest, and every file's bytes."""
    return tree_snapshot(config.prod_deployment_folder)


def limit_file_size(limit: int):
    """preexec_fn for a subprocess whose writes past `limit` bytes fail (EFBIG), as on a full disk."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


# --- Running fullprocess quickly ----------------------------------------------------------------
@pytest.fixture(scope="module")
def offline_pip(tmp_path_factory) -> dict[str, str]:
    """Environment for fullprocess runs: pip answers at once that there is no package index.

    diagnostics.py asks pip for the latest version of each dependency; against a real index that
    takes seconds per run. The stub keeps the dependency check real but answers like an offline
    machine, in milliseconds.
    """
    stub = tmp_path_factory.mktemp("pipstub")
    (stub / "pip").mkdir()
    (stub / "pip" / "__init__.py").write_text("")
    (stub / "pip" / "__main__.py").write_text(
        "import sys\nsys.stderr.write('ERROR: no package index in the reliability tests\\n')\nsys.exit(1)\n")
    return {"PYTHONPATH": str(stub)}


class Runner:
    """fullprocess runs, each a child process forked by tests/prefork_runner.py (libraries imported once)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "prefork_runner.py")],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self._buffer = b""
        assert self._answer(60) == {"ready": True}

    def _answer(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(remaining, 0))
            if not ready:
                raise AssertionError(f"fullprocess did not finish within {timeout} s")
            chunk = os.read(self.process.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError("the prefork runner died")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def run(self, config: Config, api_url: str, stderr: Path, env: dict[str, str],
            timeout: float = 120) -> int:
        """Run one fullprocess tick for `config`; its exit status (-9 when it was SIGKILLed)."""
        job = {"argv": ["--config", str(config.config_file), "--api-url", api_url], "cwd": str(stderr.parent),
               "env": env, "stderr": str(stderr)}
        self.process.stdin.write(json.dumps(job).encode() + b"\n")
        return self._answer(timeout)["status"]

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


# --- 1. Killed mid-run -------------------------------------------------------------------------
# Every named point of a retraining run, in the order the run reaches them. A point whose state is
# the same as the one before it (before-X right after after-W) is left out: it would test nothing new.
KILL_POINTS = [
    "before-ingestion", "ingestion-wrote-data", "ingestion-wrote-names", "after-ingestion",
    "after-drift_check", "training-wrote-model", "after-training", "after-scoring",
    *(f"deploy-copied-{name}" for name in DEPLOYED_FILES),
    "deploy-release-built", "deploy-switched", "after-deployment", "after-diagnostics", "after-reporting",
    "after-apicalls", "run-recorded",
]
SWITCHED = KILL_POINTS[KILL_POINTS.index("deploy-switched"):]  # the new model is served from here on
REPORTS = ("confusionmatrix", "summary_report", "apireturns")


def check_consistent(config: Config) -> Deployment:
    """The deployed set is complete and consistent, and the API loads and serves it."""
    prod = config.prod_deployment_folder
    current = require_deployment(prod)
    publish.verify_release(current)  # every file matches the sha256 in the manifest
    assert set(current.manifest["files"]) == set(DEPLOYED_FILES)
    assert float((prod / SCORE_FILE).read_text()) == current.manifest["score"]
    record = read_json(prod / INGESTION_RECORD, "Ingestion record")
    assert (prod / INGESTED_FILES).read_text().splitlines() == [f["name"] for f in record["files"]]
    for name in DEPLOYED_FILES:  # the course's names lead to the same release
        assert (prod / name).read_bytes() == current.path(name).read_bytes(), name
    client = app_module.create_app(config.config_file).test_client()
    answer = client.post("/prediction", json=RECORDS)
    assert answer.status_code == 200 and answer.get_json()["model_version"] == current.model_version
    assert "warning" not in client.get("/health").get_json()
    return current


def end_state(config: Config, template_version: str) -> dict:
    """Everything an uninterrupted run leaves behind that a recovered run must reproduce."""
    current = check_consistent(config)
    prod = config.prod_deployment_folder
    previous = read_json(prod / RELEASES_DIR / current.manifest["previous"] / MANIFEST,
                                  "Deployment manifest")
    record = read_json(prod / INGESTION_RECORD, "Ingestion record")
    models = config.output_model_folder
    returns = json.loads((models / API_RETURNS).read_text())
    diagnosed = json.loads((models / DIAGNOSTICS_RECORD).read_text())
    history = read_history(config.output_model_folder / RUN_HISTORY)
    return {
        "deployed model sha256": current.manifest["files"][MODEL_FILE],
        "deployed score": (prod / SCORE_FILE).read_text(),
        "deployment kind": current.manifest["kind"],
        "replaced the model before the run": previous["model_version"] == template_version,
        "ingested files": (prod / INGESTED_FILES).read_text(),
        "ingestion record": [(f["name"], f["sha256"], f["rows_kept"]) for f in record["files"]],
        "final data": sha256_file(config.final_data_file),
        "reports": sorted(p.name for p in models.iterdir() if p.name.startswith(REPORTS)),
        "files in models": sorted(p.name for p in models.iterdir()),
        "files in ingested": sorted(p.name for p in config.output_folder.iterdir()),
        "temporaries in prod": sorted(p.name for p in prod.rglob(".*")),
        "reports describe the deployed model": (returns["endpoints"]["prediction"]["body"]["model_version"],
                                                diagnosed["model_version"]) == (current.model_version,) * 2,
        "history": [(r["decision"], r["outcome"], r["error"], r["run_number"], r["version_before"] == template_version,
                     r["version_after"] == current.model_version) for r in history],
    }


@pytest.fixture(scope="module")
def drift_template(tmp_path_factory) -> tuple[Path, str]:
    """A deployed project with new, label-flipped data waiting: the next run must retrain."""
    config = build_deployed(tmp_path_factory.mktemp("template") / "project")
    add_drift(config)
    version = require_deployment(config.prod_deployment_folder).model_version
    return config.config_file.parent, version


def kill_scenario(runner: Runner, template: Path, template_version: str, work: Path, env: dict,
                  point: str | None) -> dict:
    """Copy the template, run fullprocess killed at `point` (None: not killed), check, run again."""
    config = copy_project(template, work / "project")
    url, stop = serve_thread(config)
    try:
        outcome: dict = {"point": point}
        if point is not None:
            outcome["killed status"] = runner.run(config, url, work / "killed.log", {**env, KILL_AT_ENV: point})
            current = check_consistent(config)
            outcome["served after kill"] = current.manifest["files"][MODEL_FILE]
            outcome["version after kill"] = current.model_version
        outcome["status"] = runner.run(config, url, work / "run.log", env)
        outcome["log"] = (work / "run.log").read_text()
        outcome["end"] = end_state(config, template_version)
        return outcome
    finally:
        stop()


@pytest.fixture(scope="module")
def kill_outcomes(drift_template, offline_pip, tmp_path_factory) -> dict:
    """Every kill scenario and one uninterrupted run, two at a time (one forking runner each)."""
    template, version = drift_template
    root = tmp_path_factory.mktemp("kills")
    runners: list[Runner] = []
    lock = threading.Lock()
    local = threading.local()

    def scenario(point: str | None) -> dict:
        if not hasattr(local, "runner"):
            local.runner = Runner()
            with lock:
                runners.append(local.runner)
        work = root / (point or "uninterrupted")
        work.mkdir()
        try:
            return kill_scenario(local.runner, template, version, work, offline_pip, point)
        except Exception as exc:  # reported by the test of that point
            return {"point": point, "error": exc}

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(scenario, [None, *KILL_POINTS]))
    finally:
        for runner in runners:
            runner.close()
    return {"template version": version, **{r["point"]: r for r in results}}


@pytest.mark.slow
def test_an_uninterrupted_run_retrains_and_deploys(kill_outcomes):
    baseline = kill_outcomes[None]
    if "error" in baseline:
        raise baseline["error"]
    assert baseline["status"] == 0, baseline["log"]
    end = baseline["end"]
    assert end["deployment kind"] == "model" and end["replaced the model before the run"]
    assert end["reports"] == ["apireturns.txt", "confusionmatrix.png", "summary_report.pdf"]
    assert end["history"] == [("retrain", "done", None, 1, True, True)]
    assert end["ingested files"] == "dataset1.csv\ndataset2.csv\nflipped6.csv\n"
    assert end["reports describe the deployed model"] and end["temporaries in prod"] == []


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_run_killed_at_a_named_point_is_finished_by_the_next_run(kill_outcomes, point):
    outcome, baseline = kill_outcomes[point], kill_outcomes[None]
    if "error" in outcome:
        raise outcome["error"]
    assert outcome["killed status"] == -9, "the run was not killed: the point was never reached"
    # Right after the kill: all or nothing, the old model or the new one, never a mix.
    if point in SWITCHED:
        assert outcome["served after kill"] == baseline["end"]["deployed model sha256"]
    else:
        assert outcome["version after kill"] == kill_outcomes["template version"]
    # The next run completes and ends where an uninterrupted run ends.
    assert outcome["status"] == 0, outcome["log"]
    assert "Traceback" not in outcome["log"] and error_lines(outcome["log"]) == []
    assert outcome["end"] == baseline["end"]


# --- 2. Disk full / failing writes -------------------------------------------------------------
@pytest.fixture
def retrained(deployed: Config) -> Config:
    """A deployed project with a newly trained and scored model waiting to be deployed."""
    add_drift(deployed)
    ingestion.run(deployed)
    training.run(deployed)
    scoring.run(deployed)
    return deployed


@pytest.mark.slow
def test_deployment_that_hits_the_file_size_limit_leaves_production_unchanged(retrained):
    before = prod_state(retrained)
    metadata_size = (retrained.output_model_folder / MODEL_METADATA).stat().st_size
    limit = metadata_size // 2  # the model and the score fit; copying the metadata fails half-way
    result = subprocess.run([sys.executable, str(ROOT / "deployment.py"), "--config", str(retrained.config_file)],
                            cwd=retrained.config_file.parent, capture_output=True, text=True, timeout=60,
                            preexec_fn=limit_file_size(limit))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "File too large" in line and MODEL_METADATA in line
    assert prod_state(retrained) == before
    releases = retrained.prod_deployment_folder / RELEASES_DIR
    assert [p.name for p in releases.iterdir() if p.name.startswith(".")] == []


def test_deployment_whose_switch_fails_leaves_production_unchanged(retrained, monkeypatch, capsys):
    prod = retrained.prod_deployment_folder
    before = prod_state(retrained)
    real_replace = os.replace

    def replace(source, target, *args, **kwargs):
        if Path(target) == prod / CURRENT_LINK:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    assert deployment.main(["--config", str(retrained.config_file)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = error_lines(err)
    assert "No space left on device" in line
    assert prod_state(retrained) == before  # no orphan release, no stray link left behind


@pytest.mark.slow
def test_fullprocess_that_hits_the_file_size_limit_exits_1_and_leaves_production_unchanged(deployed):
    add_drift(deployed)
    before = prod_state(deployed)
    limit = 32 * 1024  # the ingested data, logs and history fit; the model metadata does not
    result = subprocess.run(
        [sys.executable, str(ROOT / "fullprocess.py"), "--config", str(deployed.config_file),
         "--api-url", f"http://127.0.0.1:{free_port()}"],
        cwd=deployed.config_file.parent, capture_output=True, text=True, timeout=120,
        preexec_fn=limit_file_size(limit))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "step training failed: File too large" in line and MODEL_METADATA in line
    assert prod_state(deployed) == before
    [row] = read_history(deployed.output_model_folder / RUN_HISTORY)
    assert row["outcome"] == "failed" and "File too large" in row["error"]


def test_fullprocess_whose_deployment_runs_out_of_space_exits_1_and_leaves_production_unchanged(
        deployed, monkeypatch, capsys):
    add_drift(deployed)
    before = prod_state(deployed)
    real_copy = publish.copy_durably

    def copy_durably(source, target):
        if Path(source).name == INGESTION_RECORD:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        return real_copy(source, target)

    monkeypatch.setattr(publish, "copy_durably", copy_durably)
    status = fullprocess.main(["--config", str(deployed.config_file), "--api-url", f"http://127.0.0.1:{free_port()}"])
    assert status == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = error_lines(err)
    assert "step deployment failed: No space left on device" in line
    assert prod_state(deployed) == before


# --- 3. Overlapping runs ------------------------------------------------------------------------
@pytest.mark.slow
def test_five_runs_started_together_do_the_work_once(deployed, offline_pip, tmp_path):
    add_drift(deployed)
    version_before = require_deployment(deployed.prod_deployment_folder).model_version
    url, stop = serve_thread(deployed)
    env = {**os.environ, **offline_pip}
    env.pop(KILL_AT_ENV, None)
    logs = [tmp_path / f"run{i}.log" for i in range(5)]
    processes, ended = [], {}
    try:
        for log in logs:
            with open(log, "wb") as handle:
                processes.append(subprocess.Popen(
                    [sys.executable, str(ROOT / "fullprocess.py"), "--config", str(deployed.config_file),
                     "--api-url", url], cwd=tmp_path, env=env, stdout=handle, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 120
        while len(ended) < len(processes) and time.monotonic() < deadline:
            for i, process in enumerate(processes):
                if i not in ended and process.poll() is not None:
                    ended[i] = time.monotonic()
            time.sleep(0.01)
    finally:
        for process in processes:
            stop_process(process)
        stop()
    assert len(ended) == 5, "a run did not finish within 120 s"
    assert [p.returncode for p in processes] == [0] * 5
    texts = [log.read_text() for log in logs]
    waited = [i for i, text in enumerate(texts) if "another fullprocess run is in progress" in text]
    [worker] = [i for i in range(5) if i not in waited]
    assert len(waited) == 4
    for i in waited:  # they exited at once: each before the one doing the work was done, having done nothing
        assert ended[i] < ended[worker]
        assert "new data" not in texts[i] and "Traceback" not in texts[i]
    assert "decision: retrain" in texts[worker]
    # The artifacts are those of one run.
    [row] = read_history(deployed.output_model_folder / RUN_HISTORY)
    assert (row["decision"], row["outcome"], row["run_number"]) == ("retrain", "done", 1)
    assert row["version_before"] == version_before != row["version_after"]
    assert sorted(p.name for p in deployed.output_model_folder.iterdir() if p.name.startswith(REPORTS)) == \
        ["apireturns.txt", "confusionmatrix.png", "summary_report.pdf"]
    assert len(load.release_names(deployed.prod_deployment_folder)) == 2
    current = check_consistent(deployed)
    assert current.model_version == row["version_after"]


# --- Entries in the input folder that are not files: the cron tick must neither hang nor loop -----
def make_entry(kind: str, folder: Path, outside: Path) -> str:
    name = f"{kind}.csv"
    path = folder / name
    if kind == "fifo":
        os.mkfifo(path)  # reading it would wait forever for a writer
    elif kind == "link-to-dev-zero":
        path.symlink_to("/dev/zero")  # reading it would never end
    elif kind == "directory":
        path.mkdir()
    elif kind == "link-outside":
        path.symlink_to(write_csv(outside / "elsewhere.csv", client_rows(20, seed=8)))
    elif kind == "dangling-link":
        path.symlink_to(outside / "missing.csv")
    return name


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "link-to-dev-zero", "directory", "link-outside", "dangling-link"])
def test_an_input_entry_that_is_not_a_file_neither_blocks_the_tick_nor_reruns_it(deployed, tmp_path, kind):
    name = make_entry(kind, deployed.input_folder, tmp_path)
    # The tick notices the entry without reading it: a tick stuck on a pipe would hold the run lock
    # forever, and every later tick would exit "in progress".
    code = ("import sys\nfrom riskcore.config import load_config\nfrom riskcore.ops.new_data import detect_new_files\n"
            "from riskcore.release.load import current_deployment\nc = load_config(sys.argv[1])\n"
            "print(detect_new_files(c.input_folder, current_deployment(c.prod_deployment_folder)))")
    found = subprocess.run([sys.executable, "-c", code, str(deployed.config_file)], cwd=ROOT, capture_output=True,
                           text=True, timeout=30)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == repr([name])
    # The run that follows rejects it with a sentence and records it with the files it processed ...
    result = ingestion.run(deployed)
    [rejected] = result.rejected
    assert rejected.name == name and "\n" not in rejected.reason
    publish.deploy_records(deployed)
    # ... so it is not new again until it changes: the next tick has nothing to do.
    tick = run_script("fullprocess.py", "--config", str(deployed.config_file), cwd=tmp_path, timeout=30)
    assert tick.returncode == 0 and "no new data" in tick.stderr, tick.stderr


# --- 4. Deploying under load -------------------------------------------------------------------
LOAD_THREADS = 4
LOAD_SECONDS = 30  # hard bound; the load stops as soon as the last deploy has been seen
LOAD_MAX_REQUESTS = 1500  # per thread


@pytest.mark.slow
def test_deploys_under_load_fail_no_request_and_serve_only_fully_deployed_models(deployed, tmp_path):
    import requests

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RISK_CONFIG": str(deployed.config_file)}
    env.pop("RISK_API_KEY", None)
    with open(tmp_path / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
             "--no-control-socket", "--chdir", str(ROOT), "wsgi:app"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    deployed_versions = {require_deployment(deployed.prod_deployment_folder).model_version}
    answers: list[tuple[float, int, str | None]] = []
    failures: list[str] = []
    stop = threading.Event()
    deadline = time.monotonic() + LOAD_SECONDS

    def load() -> None:
        with requests.Session() as session:
            for _ in range(LOAD_MAX_REQUESTS):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    response = session.post(url + "/prediction", json=RECORDS, timeout=30)
                    version = response.json().get("model_version")
                except (requests.RequestException, ValueError) as exc:
                    failures.append(repr(exc))
                    continue
                answers.append((time.monotonic(), response.status_code, version))

    try:
        wait_until_up(url, server)
        threads = [threading.Thread(target=load) for _ in range(LOAD_THREADS)]
        for thread in threads:
            thread.start()
        deploy_times = []
        for seed in (21, 22, 23, 24, 25, 26):  # more deploys than releases kept: pruning runs too
            write_csv(deployed.input_folder / f"more{seed}.csv",
                      client_rows(60, seed=seed, flip=seed % 2 == 0, prefix="m"))
            ingestion.run(deployed)
            training.run(deployed)
            scoring.run(deployed)
            deployed_versions.add(publish.deploy(deployed).model_version)
            deploy_times.append(time.monotonic())
            time.sleep(0.2)
        last = require_deployment(deployed.prod_deployment_folder).model_version
        while time.monotonic() < deadline and sum(1 for _, _, v in answers[-20:] if v == last) < 10:
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=LOAD_SECONDS)
        stop_process(server)
    assert failures == []
    assert answers and all(status == 200 for _, status, _ in answers), {s for _, s, _ in answers}
    served = {version for _, _, version in answers}
    assert served <= deployed_versions
    assert last in served and len(served) >= 3  # the switches were seen while the load ran
    during = [t for t, _, _ in answers if deploy_times[0] - 1 < t < deploy_times[-1]]
    assert len(during) >= 20


# --- 7. Tampered model, end to end ---------------------------------------------------------------
class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["replace", "truncate"])
def test_a_tampered_model_is_refused_by_the_api_process_and_by_fullprocess(deployed, tmp_path, damage):
    import requests

    marker = tmp_path / "pwned"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "api.log", "wb") as log:
        api = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--config", str(deployed.config_file),
                                "--port", str(port)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                               env={k: v for k, v in os.environ.items() if k != "RISK_API_KEY"})
    try:
        wait_until_up(url, api)
        good = requests.post(url + "/prediction", json=RECORDS, timeout=30).json()["model_version"]
        # A new release is deployed, then its model file is tampered with.
        add_drift(deployed)
        ingestion.run(deployed)
        training.run(deployed)
        scoring.run(deployed)
        new = publish.deploy(deployed)
        model = new.path(MODEL_FILE)
        data = model.read_bytes()
        model.write_bytes(pickle.dumps(Evil(marker)) if damage == "replace" else data[: len(data) // 2])
        before = prod_state(deployed)

        answer = requests.post(url + "/prediction", json=RECORDS, timeout=30)
        assert answer.status_code == 200 and answer.json()["model_version"] == good
        health = requests.get(url + "/health", timeout=30).json()
        assert health["model_version"] == good and new.release in health["warning"]

        add_drift(deployed, rows=80, seed=7)
        result = run_script("fullprocess.py", "--config", str(deployed.config_file), "--api-url", url,
                            cwd=tmp_path, timeout=120)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        [line] = error_lines(result.stderr)
        assert "step drift_check failed" in line and "does not match its recorded sha256" in line
        assert prod_state(deployed) == before
        assert requests.post(url + "/prediction", json=RECORDS, timeout=30).json()["model_version"] == good
    finally:
        stop_process(api)
    assert not marker.exists()
    assert "does not match its recorded sha256" in (tmp_path / "api.log").read_text()
    # A freshly started API has no good model to fall back on: 503, and still no code ran.
    fresh = app_module.create_app(deployed.config_file).test_client()
    answer = fresh.post("/prediction", json=RECORDS)
    assert answer.status_code == 503 and answer.get_json()["status"] == 503
    assert fresh.get("/health").get_json()["status"] == "no_model"
    assert not marker.exists()


@pytest.mark.parametrize("name", [SCORE_FILE, MODEL_METADATA, INGESTION_RECORD])
def test_a_tampered_record_beside_the_model_makes_fullprocess_exit_1(deployed, name, capsys):
    """The baseline score and the training profile decide drift too: they are checked like the model."""
    add_drift(deployed)
    path = require_deployment(deployed.prod_deployment_folder).path(name)
    text = path.read_text()
    path.write_text("0.0" if name == SCORE_FILE else text.replace("1", "2", 1))  # drift would never show
    before = prod_state(deployed)
    assert fullprocess.main(["--config", str(deployed.config_file), "--api-url", f"http://127.0.0.1:{free_port()}"]) == 1
    [line] = error_lines(capsys.readouterr().err)
    assert name in line and "does not match its recorded sha256" in line
    assert prod_state(deployed) == before


def test_a_tampered_ingestion_record_cannot_hide_new_data(deployed, capsys):
    """Listing the new file in the deployed record by hand would make every tick skip it, silently."""
    add_drift(deployed)
    path = require_deployment(deployed.prod_deployment_folder).path(INGESTION_RECORD)
    record = json.loads(path.read_text())
    new = deployed.input_folder / "flipped6.csv"
    record["files"].append({"name": new.name, "sha256": sha256_file(new)})
    path.write_text(json.dumps(record))
    before = prod_state(deployed)
    assert fullprocess.main(["--config", str(deployed.config_file), "--api-url", f"http://127.0.0.1:{free_port()}"]) == 1
    [line] = error_lines(capsys.readouterr().err)
    assert INGESTION_RECORD in line and "does not match its recorded sha256" in line
    assert prod_state(deployed) == before
