"""Tests of diagnostics.py and its modules (riskcore.report.diagnostics, dependencies, timing): exact
statistics on known data, timings that touch nothing, a bounded dependency check, the record the
API serves, and the command as a user runs it."""

from __future__ import annotations

import json
import os
import socket
import statistics
import time

import pandas as pd
import pytest

import app as app_module
import diagnostics
from conftest import one_sentence, run_script, tree_snapshot
from riskcore.config import load_config
from riskcore.contract import (
    API_KEY_ENV,
    COLUMNS,
    DIAGNOSTICS_RECORD,
    EXIT_CONFIG,
    EXIT_FAILED,
    FEATURES,
    MODEL_FILE,
    ConfigError,
    DataError,
    IntegrityError,
    UserError,
)
from riskcore.data.client_csv import read_client_csv
from riskcore.data.validation import features_of
from riskcore.files import utc_now
from riskcore.release.load import load_deployed_model, require_deployment
from riskcore.report import dependencies, timing
from riskcore.report import diagnostics as record_module
from riskcore.report.statistics import STATISTICS

KNOWN = pd.DataFrame({
    "corporation": ["a", "b", "c", "d"],
    "lastmonth_activity": [1, 2, 3, 4],
    "lastyear_activity": [10, 20, 30, 100],
    "number_of_employees": [5, 5, 5, 5],
    "exited": [0, 1, 0, 1],
})


def unreachable_registry(monkeypatch, index_url: str = "http://127.0.0.1:9/simple") -> None:
    """Point pip at a registry nobody answers on, with no config file or local wheels to fall back on."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", index_url)
    monkeypatch.setenv("PIP_RETRIES", "0")
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)


# --- Summary statistics ----------------------------------------------------------------------
@pytest.mark.parametrize(("column", "statistic", "expected"), [
    ("lastmonth_activity", "mean", 2.5),
    ("lastmonth_activity", "median", 2.5),
    ("lastmonth_activity", "std", statistics.stdev([1, 2, 3, 4])),
    ("lastmonth_activity", "count", 4),
    ("lastmonth_activity", "min", 1),
    ("lastmonth_activity", "max", 4),
    ("lastyear_activity", "mean", 40.0),
    ("lastyear_activity", "median", 25.0),
    ("lastyear_activity", "std", statistics.stdev([10, 20, 30, 100])),
    ("number_of_employees", "std", 0.0),
    ("number_of_employees", "max", 5),
])
def test_summary_has_exact_values(config, column, statistic, expected):
    summary = diagnostics.dataframe_summary(config, KNOWN)
    values = {(s["column"], s["statistic"]): s["value"] for s in summary}
    assert values[(column, statistic)] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_summary_names_every_feature_and_statistic_once(config):
    summary = diagnostics.dataframe_summary(config, KNOWN)
    assert [(s["column"], s["statistic"]) for s in summary] == [
        (column, statistic) for column in FEATURES for statistic in STATISTICS]
    json.dumps(summary, allow_nan=False)  # JSON-ready as it is


def test_summary_leaves_missing_values_out(config):
    frame = KNOWN.astype({"lastmonth_activity": "float64"})
    frame.loc[1, "lastmonth_activity"] = float("nan")
    values = {(s["column"], s["statistic"]): s["value"] for s in diagnostics.dataframe_summary(config, frame)}
    assert values[("lastmonth_activity", "mean")] == pytest.approx((1 + 3 + 4) / 3)
    assert values[("lastmonth_activity", "count")] == 3


def test_summary_defaults_to_the_ingested_data(deployed):
    final = pd.read_csv(deployed.final_data_file)
    values = {(s["column"], s["statistic"]): s["value"] for s in diagnostics.dataframe_summary(deployed)}
    for column in FEATURES:
        assert values[(column, "mean")] == pytest.approx(final[column].mean())
        assert values[(column, "median")] == pytest.approx(final[column].median())
        assert values[(column, "std")] == pytest.approx(final[column].std())
        assert values[(column, "count")] == len(final) == 220


def test_summary_without_ingested_data_is_a_user_error(config):
    with pytest.raises(DataError, match="run ingestion.py first"):
        diagnostics.dataframe_summary(config)


# --- Missing data ----------------------------------------------------------------------------
def test_missing_data_reports_the_known_share_of_every_column(config):
    # 8 rows: 2 without last month's activity (25%), 1 without an id (12.5%), 4 without a label (50%).
    rows = ["a,1,10,5,0", "b,,20,5,1", "c,3,30,5,", "d,,40,5,", ",5,50,5,1", "f,6,60,5,", "g,7,70,5,0",
            "h,8,80,5,"]
    config.output_folder.mkdir(parents=True)
    config.final_data_file.write_text(",".join(COLUMNS) + "\n" + "\n".join(rows) + "\n")
    missing = diagnostics.missing_data(config)
    assert [(m["column"], m["missing_percent"], m["missing_count"]) for m in missing] == [
        ("corporation", 12.5, 1),
        ("lastmonth_activity", 25.0, 2),
        ("lastyear_activity", 0.0, 0),
        ("number_of_employees", 0.0, 0),
        ("exited", 50.0, 4),
    ]


def test_missing_data_of_a_complete_frame_is_zero_everywhere(config):
    assert {m["missing_percent"] for m in diagnostics.missing_data(config, KNOWN)} == {0.0}


# --- Predictions -----------------------------------------------------------------------------
def test_model_predictions_are_the_deployed_models(deployed):
    deployment = require_deployment(deployed.prod_deployment_folder)
    model = load_deployed_model(deployment)
    test = read_client_csv(deployed.test_data_file)
    predictions = diagnostics.model_predictions(deployed, test)
    assert predictions == model.predict(features_of(test)).tolist()
    assert len(predictions) == 60 and set(predictions) <= {0, 1}
    assert all(type(p) is int for p in predictions)


def test_model_predictions_refuse_a_tampered_model(deployed):
    deployment = require_deployment(deployed.prod_deployment_folder)
    model_file = deployment.path(MODEL_FILE)
    model_file.write_bytes(model_file.read_bytes() + b"tampered")
    with pytest.raises(IntegrityError):
        diagnostics.model_predictions(deployed, KNOWN)


def test_model_predictions_name_a_missing_column(deployed):
    with pytest.raises(DataError, match='"number_of_employees"'):
        diagnostics.model_predictions(deployed, KNOWN.drop(columns="number_of_employees"))


def test_model_predictions_need_a_deployed_model(config):
    with pytest.raises(DataError, match="No model is deployed"):
        diagnostics.model_predictions(config, KNOWN)


# --- Timings ---------------------------------------------------------------------------------
def test_execution_time_leaves_production_and_outputs_byte_identical(deployed, tmp_path):
    folders = (deployed.prod_deployment_folder, deployed.output_folder, deployed.output_model_folder,
               deployed.input_folder, deployed.test_data_folder)
    before = {folder: tree_snapshot(folder) for folder in folders}
    timings = diagnostics.execution_time(deployed, repeat=2)
    assert list(timings) == ["ingestion", "training", "scoring"]
    assert all(isinstance(s, float) and 0 < s < 60 for s in timings.values())
    assert {folder: tree_snapshot(folder) for folder in folders} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "ingested", "input", "models",
                                                          "prod", "test"]


def test_execution_time_needs_at_least_one_run(config):
    with pytest.raises(UserError):
        diagnostics.execution_time(config, repeat=0)


# --- Dependencies ----------------------------------------------------------------------------
@pytest.mark.parametrize(("line", "expected"), [
    ("pandas==3.1.1", [("pandas", "3.1.1")]),
    ("flask >= 3.0", [("flask", ">=3.0")]),
    ("requests", [("requests", "unpinned")]),
    ("uvicorn[standard]==0.30.0 ; python_version >= '3.9'  # the server", [("uvicorn", "0.30.0")]),
    ("# a comment", []),
    ("--index-url https://example.org/simple", []),
    ("numpy>=1.26,<3", [("numpy", "<3,>=1.26")]),
    ("Scikit_Learn == 1.9.1", [("Scikit_Learn", "1.9.1")]),
    ("colorama==0.4.6 ; python_version < '3'", []),  # a marker that excludes this environment
    ("pandas==3.*", [("pandas", "==3.*")]),
    ("./local/package", []),
])
def test_parse_requirements(tmp_path, line, expected):
    path = tmp_path / "requirements.txt"
    path.write_text(line + "\n\n")
    assert dependencies.parse_requirements(path) == expected


def test_parse_requirements_follows_includes_once(tmp_path):
    (tmp_path / "base.txt").write_text("numpy==2.4.6\n-r dev.txt\n")
    (tmp_path / "dev.txt").write_text("-r base.txt\npytest==9.2.0\n")
    assert dependencies.parse_requirements(tmp_path / "dev.txt") == [("numpy", "2.4.6"), ("pytest", "9.2.0")]


@pytest.mark.parametrize(("spelled", "stdout", "latest"), [
    ("scikit-learn", "scikit-learn (1.9.1)\nAvailable versions: 1.9.1, 1.9.0\n", "1.9.1"),
    ("scikit_learn", "scikit-learn (1.9.1)\n", "1.9.1"),  # pip answers with the normalized name
    ("Flask", "flask (3.1.3)\n", "3.1.3"),
    ("numpy", "numpy (1.26.4)\nnumpy (2.4.6)\n", "2.4.6"),  # the last answer: pip's, after any debug output
])
def test_read_latest_matches_the_name_however_pip_spells_it(spelled, stdout, latest):
    import subprocess

    answer = subprocess.CompletedProcess(["pip"], 0, stdout, "")
    assert dependencies.read_latest(spelled, answer) == (latest, None)


@pytest.mark.parametrize(("installed", "latest", "status"), [
    ("2.4.6", "2.4.6", "up to date"),
    ("2.4.6", "2.10.0", "outdated"),
    ("2.10.0", "2.9.1", "up to date"),
    ("1.0rc1", "1.0", "outdated"),
    ("2.4.6", "unknown", "unknown"),
    ("not installed", "1.0", "not installed"),
])
def test_version_status(installed, latest, status):
    assert dependencies.version_status(installed, latest) == status


@pytest.mark.slow
def test_dependency_check_without_a_registry_returns_within_its_bound(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy==2.4.6\npandas==3.1.1\n")
    unreachable_registry(monkeypatch)
    start = time.monotonic()
    rows = diagnostics.outdated_packages_list(requirements, timeout=8)
    assert time.monotonic() - start < 8
    assert [(r["package"], r["pinned"], r["latest"], r["status"]) for r in rows] == [
        ("numpy", "2.4.6", "unknown", "unknown"), ("pandas", "3.1.1", "unknown", "unknown")]
    assert [r["installed"] for r in rows] == [__import__("numpy").__version__, pd.__version__]
    assert all("127.0.0.1:9 unreachable" in r["reason"] for r in rows)


@pytest.mark.slow
def test_dependency_check_gives_up_on_a_registry_that_never_answers(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy==2.4.6\n")
    with socket.socket() as silent:  # accepts connections (backlog) but never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        unreachable_registry(monkeypatch, f"http://127.0.0.1:{silent.getsockname()[1]}/simple")
        start = time.monotonic()
        rows = diagnostics.outdated_packages_list(requirements, timeout=2)
        elapsed = time.monotonic() - start
    assert elapsed < 4
    assert rows[0]["latest"] == "unknown"
    assert rows[0]["reason"] and ("no answer" in rows[0]["reason"] or "timed out" in rows[0]["reason"])


def fake_pip(answers: dict[str, tuple[int, str, str]], asked: list):
    """ask_pip answering from a table of (returncode, stdout, stderr) per package, noting each call."""
    import subprocess

    def ask(name: str, deadline: float, verbose: bool = False):
        asked.append((name, verbose))
        code, out, err = answers[name]
        return subprocess.CompletedProcess(["pip"], code, out, err)

    return ask


REFUSED = (1, "", "WARNING: Could not fetch URL http://127.0.0.1:9/simple/numpy/: connection error: "
                  "[Errno 111] Connection refused - skipping\nERROR: No matching distribution found for numpy\n")


def test_unreachable_index_is_asked_about_one_package_only(monkeypatch):
    asked: list = []
    names = ["numpy", "pandas", "flask", "gunicorn"]
    monkeypatch.setattr(dependencies, "ask_pip", fake_pip(dict.fromkeys(names, REFUSED), asked))
    latest = dependencies.latest_versions(names, time.monotonic() + 5)
    assert asked == [("numpy", True)]  # once, verbosely: pip gives the reason only in its debug output
    assert latest == [("unknown", "package index 127.0.0.1:9 unreachable (Connection refused)")] * 4


def test_reachable_index_is_asked_about_every_package(monkeypatch):
    asked: list = []
    answers = {"numpy": (0, "numpy (2.4.6)\nAvailable versions: 2.4.6\n", ""),
               "pandas": (0, "pandas (3.1.1)\n", ""),
               "nosuch": (1, "", "ERROR: No matching distribution found for nosuch\n")}
    monkeypatch.setattr(dependencies, "ask_pip", fake_pip(answers, asked))
    latest = dependencies.latest_versions(list(answers), time.monotonic() + 5)
    assert sorted(asked) == [("nosuch", False), ("numpy", True), ("pandas", False)]
    assert latest == [("2.4.6", None), ("3.1.1", None), ("unknown", "pip: No matching distribution found for nosuch")]


def test_packages_the_deadline_cut_short_share_one_reason(monkeypatch):
    """The walk's PDF listed nine notes for one fact, "no answer from the package index within 0.0 s", "... 0.2 s",
    up to "4.9 s": each package's reason carried the seconds left when its pip started."""
    def hang(command, timeout, **_):
        raise dependencies.subprocess.TimeoutExpired(command, timeout)

    monkeypatch.setattr(dependencies.subprocess, "run", hang)
    now = time.monotonic()  # pips started later in the check have less of it left
    reasons = {dependencies.ask_pip(name, now + left) for name, left in (("numpy", 4.9), ("pandas", 2.7), ("scipy", 0.2))}
    assert reasons == {"no answer from the package index before the check's time ran out"}


# --- The record ------------------------------------------------------------------------------
@pytest.fixture
def offline_dependencies(monkeypatch):
    """A dependency check that needs no network: what the record holds is tested above."""
    rows = [{"package": "numpy", "pinned": "2.4.6", "installed": "2.4.6", "latest": "unknown",
             "status": "unknown", "reason": "package index example unreachable (test)"}]
    monkeypatch.setattr(diagnostics, "outdated_packages_list", lambda requirements=None, timeout=0: rows)
    return rows


def test_run_writes_the_record_the_api_serves(deployed, offline_dependencies, monkeypatch):
    record = diagnostics.run(deployed)
    stored = json.loads((deployed.output_model_folder / DIAGNOSTICS_RECORD).read_text())
    assert stored == record
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    served = app_module.create_app(deployed.config_file).test_client().get("/diagnostics")
    assert served.status_code == 200
    assert served.get_json() == record  # no value of this record is a server path, so none is shortened
    deployment = require_deployment(deployed.prod_deployment_folder)
    assert record["model_version"] == deployment.model_version
    assert utc_now()[:10] == record["generated_at"][:10] and record["generated_at"].endswith("Z")
    assert record["dependencies"] == offline_dependencies
    assert list(record["timings"]) == ["ingestion", "training", "scoring"]
    assert record["summary"] == diagnostics.dataframe_summary(deployed)
    assert record["missing"] == diagnostics.missing_data(deployed)
    test = read_client_csv(deployed.test_data_file)
    assert record["predictions"] == diagnostics.model_predictions(deployed, test)


def test_render_prints_every_part(deployed, offline_dependencies):
    text = record_module.render(diagnostics.run(deployed))
    for part in ("Summary statistics", "Missing data", "Step timings", "Dependencies",
                 "Predictions on the test data: 60 rows", "package index example unreachable (test)"):
        assert part in text


# --- The dependency check's last answer, and timing runs that say so ----------------------------
@pytest.fixture
def counted_check(tmp_path, monkeypatch):
    """requirements.txt of two packages, and a dependency check that counts how often it is asked.

    The record's step timings are left empty: these tests check when the package index is asked,
    and timing the pipeline again on each of their write_diagnostics calls was most of their time (0.14 s each);
    the timings have tests of their own."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy==2.4.6\npandas==3.1.1\n")
    monkeypatch.setattr(dependencies, "REQUIREMENTS", requirements)
    monkeypatch.setattr(record_module, "execution_time", lambda config, repeat=1: {})
    asked: list[float] = []

    def check(requirements=None, timeout=0.0):
        asked.append(timeout)
        return [
            dependencies.dependency_row("numpy", "2.4.6", "9.0.0", None),
            dependencies.dependency_row("pandas", "3.1.1", "unknown", "package index example unreachable (test)")]

    return requirements, check, asked


def set_checked_at(config, moment: str) -> None:
    path = config.output_model_folder / DIAGNOSTICS_RECORD
    record = json.loads(path.read_text())
    record["dependencies_checked_at"] = moment
    path.write_text(json.dumps(record))


def test_the_package_index_is_asked_at_most_once_a_day(deployed, counted_check, caplog):
    requirements, check, asked = counted_check
    caplog.set_level("INFO")
    first = record_module.write_diagnostics(deployed, check_dependencies=check)
    assert len(asked) == 1 and "asking the package index for the latest versions (never asked before" in caplog.text
    caplog.clear()
    second = record_module.write_diagnostics(deployed, check_dependencies=check)
    assert len(asked) == 1, "asked again within the day"
    assert second["dependencies"] == first["dependencies"]
    assert second["dependencies_checked_at"] == first["dependencies_checked_at"]
    assert f"latest versions as the package index gave them at {first['dependencies_checked_at']}" in caplog.text
    set_checked_at(deployed, "2000-01-01T00:00:00Z")  # more than a day ago
    third = record_module.write_diagnostics(deployed, check_dependencies=check)
    assert len(asked) == 2 and third["dependencies_checked_at"] != "2000-01-01T00:00:00Z"


def test_a_kept_answer_is_read_with_todays_pins_and_installed_versions(deployed, counted_check):
    requirements, check, asked = counted_check
    record_module.write_diagnostics(deployed, check_dependencies=check)
    requirements.write_text("numpy==2.4.7\npandas==3.1.1\n")  # a new pin, same packages: no need to ask
    rows = record_module.write_diagnostics(deployed, check_dependencies=check)["dependencies"]
    assert len(asked) == 1
    assert [(r["package"], r["pinned"], r["latest"]) for r in rows] == [("numpy", "2.4.7", "9.0.0"),
                                                                         ("pandas", "3.1.1", "unknown")]
    assert rows[0]["installed"] == __import__("numpy").__version__ and rows[0]["status"] == "outdated"
    requirements.write_text("numpy==2.4.6\npandas==3.1.1\nscipy==1.17.1\n")  # a package the answer lacks
    record_module.write_diagnostics(deployed, check_dependencies=check)
    assert len(asked) == 2


@pytest.mark.parametrize(("hours", "moment", "asks"), [
    (0, None, True),  # 0: ask on every run
    (24, "2999-01-01T00:00:00Z", True),  # a time in the future (a clock set back) is no answer to keep
    (24, "not a time", True),
    (1000, "2000-01-01T00:00:00Z", True),
    (10**6, "2000-01-01T00:00:00Z", False),
])
def test_how_long_an_answer_is_kept_is_configurable(deployed, counted_check, hours, moment, asks):
    from conftest import write_config

    # dependency_check_hours changes nothing the pipeline made: the deployed project, its config rewritten
    config = load_config(write_config(deployed.config_file.parent, automation={"dependency_check_hours": hours}))
    _, check, asked = counted_check
    record_module.write_diagnostics(config, check_dependencies=check)
    if moment is not None:
        set_checked_at(config, moment)
    record_module.write_diagnostics(config, check_dependencies=check)
    assert len(asked) == (2 if asks else 1)


@pytest.mark.parametrize("value", [-1, "24", float("inf"), None, True])
def test_a_bad_dependency_check_period_is_refused_naming_the_key(project, value):
    from conftest import write_config

    with pytest.raises(ConfigError, match='"automation.dependency_check_hours"'):
        load_config(write_config(project.parent, automation={"dependency_check_hours": value}))


def test_timing_runs_are_logged_as_timing_runs_not_as_training(deployed, caplog):
    import logging

    caplog.set_level(logging.INFO)
    diagnostics.execution_time(deployed, repeat=2)
    lines = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert not [line for line in lines if line[0] != "riskcore.report.timing" and line[1] <= logging.INFO]
    own = [message for name, _, message in lines if name == "riskcore.report.timing"]
    assert [m.split(":")[0] for m in own] == ["timing run 1 of 2", "timing run 2 of 2"]
    assert all("trained a throw-away model on 220 rows, never deployed" in m for m in own)


def test_timing_runs_show_the_steps_own_lines_marked_when_verbose(deployed, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    diagnostics.execution_time(deployed)
    steps = [r.getMessage() for r in caplog.records if r.name in ("riskcore.model.training", "riskcore.model.evaluation")]
    assert steps and all(m.startswith("timing run: ") for m in steps)
    assert logging.getLogger("riskcore.model.training").filters == [] and all(
        not isinstance(f, timing.TimingRunLines) for h in logging.getLogger().handlers for f in h.filters)


# --- As a user runs it -----------------------------------------------------------------------
@pytest.mark.slow
def test_command_runs_from_another_directory(deployed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0",
           "PIP_FIND_LINKS": ""}
    done = run_script("diagnostics.py", "--config", str(deployed.config_file), "--timeout", "10",
                      cwd=elsewhere, env=env)
    assert done.returncode == 0, done.stderr
    assert "Step timings" in done.stdout and "Dependencies" in done.stdout
    record = json.loads((deployed.output_model_folder / DIAGNOSTICS_RECORD).read_text())
    assert record["predictions"] and record["dependencies"]
    assert list(elsewhere.iterdir()) == []


@pytest.mark.slow
def test_command_turns_a_user_error_into_one_sentence(tmp_path):
    done = run_script("diagnostics.py", "--config", str(tmp_path / "nope.json"), cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG
    assert one_sentence(done.stderr).startswith("error: Config file") and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_main_refuses_a_bad_repeat(config, capsys, isolated_logging):
    assert diagnostics.main(["--config", str(config.config_file), "--repeat", "0"]) == EXIT_FAILED
    assert "--repeat must be at least 1" in capsys.readouterr().err

