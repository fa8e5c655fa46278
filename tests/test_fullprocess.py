"""fullprocess.py: the contract's three decisions, drift tests, lock, history, cheap no-op tick."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fullprocess
from conftest import ROOT, client_rows, free_port, run_script, tree_snapshot, write_csv
from riskcore import drift as drift_module
from riskcore.config import Config
from riskcore.contract import INGESTED_FILES, MODEL_FILE, RUN_HISTORY, SCORE_FILE
from riskcore.faults import KILL_AT_ENV
from riskcore.history import read_history
from riskcore.releases import current_deployment, require_deployment


def tick(config: Config, api_url: str, *extra: str) -> int:
    return fullprocess.main(["--config", str(config.config_file), "--api-url", api_url, *extra])


def deployed_state(config: Config) -> dict:
    current = require_deployment(config.prod_deployment_folder)
    return {"model_sha": current.manifest["files"][MODEL_FILE],
            "baseline": (config.prod_deployment_folder / SCORE_FILE).read_text(),
            "version": current.model_version,
            "ingested": (config.prod_deployment_folder / INGESTED_FILES).read_text()}


def reports(config: Config) -> list[str]:
    return sorted(p.name for p in config.output_model_folder.iterdir()
                  if p.name.startswith(("confusionmatrix", "summary_report", "apireturns")))


# --- The contract's decision table -----------------------------------------------------------
def test_no_new_data_stops_without_changing_anything(deployed: Config, api_url: str):
    before = tree_snapshot(deployed.config_file.parent)
    assert tick(deployed, api_url) == 0
    assert tree_snapshot(deployed.config_file.parent) == before
    assert read_history(deployed.output_model_folder / RUN_HISTORY) == []


def test_new_data_the_model_gets_right_keeps_the_model(deployed: Config, api_url: str):
    before = deployed_state(deployed)
    write_csv(deployed.input_folder / "dataset3.csv", client_rows(80, seed=5, noise=0.0))
    assert tick(deployed, api_url) == 0
    after = deployed_state(deployed)
    assert after["model_sha"] == before["model_sha"]
    assert after["baseline"] == before["baseline"]
    assert after["ingested"] == "dataset1.csv\ndataset2.csv\ndataset3.csv\n"
    assert reports(deployed) == ["apireturns.txt", "confusionmatrix.png", "summary_report.pdf"]
    [row] = read_history(deployed.output_model_folder / RUN_HISTORY)
    assert row["decision"] == "keep" and row["outcome"] == "done"
    assert row["f1_new_data"] >= row["baseline"]
    assert row["version_before"] == row["version_after"] == before["version"]
    # The files are now processed: the next tick is a no-op.
    snapshot = tree_snapshot(deployed.config_file.parent)
    assert tick(deployed, api_url) == 0
    assert tree_snapshot(deployed.config_file.parent) == snapshot


def test_new_data_with_flipped_labels_retrains_and_redeploys(deployed: Config, api_url: str):
    write_csv(deployed.input_folder / "dataset3.csv", client_rows(80, seed=5, noise=0.0))
    assert tick(deployed, api_url) == 0  # keep: reports of run 1
    before = deployed_state(deployed)
    for path in deployed.input_folder.iterdir():
        path.unlink()
    write_csv(deployed.input_folder / "dataset4.csv", client_rows(200, seed=6, flip=True))
    assert tick(deployed, api_url) == 0
    after = deployed_state(deployed)
    assert after["model_sha"] != before["model_sha"]
    assert after["version"] != before["version"]
    assert after["baseline"] == (deployed.output_model_folder / SCORE_FILE).read_text()
    assert after["ingested"] == "dataset4.csv\n"
    assert reports(deployed) == ["apireturns.txt", "apireturns2.txt", "confusionmatrix.png",
                                 "confusionmatrix2.png", "summary_report.pdf", "summary_report2.pdf"]
    rows = read_history(deployed.output_model_folder / RUN_HISTORY)
    assert [r["decision"] for r in rows] == ["keep", "retrain"]
    assert rows[1]["f1_new_data"] < rows[1]["baseline"]
    assert rows[1]["version_after"] == after["version"] != rows[1]["version_before"]
    assert set(rows[1]["step_seconds"]) >= {"ingestion", "drift_check", "training", "scoring",
                                                        "deployment", "diagnostics", "reporting", "apicalls"}
    replies = json.loads((deployed.output_model_folder / "apireturns2.txt").read_text())
    assert after["version"] in json.dumps(replies)


def test_first_run_on_a_fresh_checkout_deploys(config: Config, api_url: str):
    assert current_deployment(config.prod_deployment_folder) is None
    assert tick(config, api_url) == 0
    state = deployed_state(config)
    assert state["ingested"] == "dataset1.csv\ndataset2.csv\n"
    [row] = read_history(config.output_model_folder / RUN_HISTORY)
    assert row["decision"] == "first deployment" and row["version_before"] is None
    assert "confusionmatrix.png" in reports(config)


def test_a_changed_file_counts_as_new(deployed: Config):
    current = require_deployment(deployed.prod_deployment_folder)
    assert fullprocess.detect_new_files(deployed.input_folder, current) == []
    with open(deployed.input_folder / "dataset1.csv", "a") as handle:
        handle.write("zzzz,1,2,3,1\n")
    assert fullprocess.detect_new_files(deployed.input_folder, current) == ["dataset1.csv"]


def test_a_rejected_file_is_not_new_again_until_it_changes(deployed: Config, api_url: str):
    bad = deployed.input_folder / "broken.csv"
    bad.write_text("corporation,exited\nabcd,1\n")
    write_csv(deployed.input_folder / "dataset3.csv", client_rows(80, seed=5, noise=0.0))
    tick(deployed, api_url)
    current = require_deployment(deployed.prod_deployment_folder)
    assert fullprocess.detect_new_files(deployed.input_folder, current) == []
    bad.write_text("corporation,exited\nabcd,0\n")
    assert fullprocess.detect_new_files(deployed.input_folder, current) == ["broken.csv"]


def test_a_failing_step_leaves_production_unchanged_and_exits_1(deployed: Config, api_url: str):
    before = tree_snapshot(deployed.prod_deployment_folder)
    write_csv(deployed.input_folder / "dataset4.csv", client_rows(200, seed=6, flip=True))
    deployed.model_file.unlink()
    deployed.model_file.mkdir()  # training cannot write its model: a real failing write
    assert tick(deployed, api_url) == 1
    assert tree_snapshot(deployed.prod_deployment_folder) == before
    [row] = read_history(deployed.output_model_folder / RUN_HISTORY)
    assert row["outcome"] == "failed" and "step training failed" in row["error"]


def test_unreachable_api_finishes_the_rest_and_exits_1(deployed: Config):
    write_csv(deployed.input_folder / "dataset3.csv", client_rows(80, seed=5, noise=0.0))
    url = f"http://127.0.0.1:{free_port()}"
    assert tick(deployed, url) == 1
    assert reports(deployed) == ["apireturns.txt", "confusionmatrix.png", "summary_report.pdf"]
    [row] = read_history(deployed.output_model_folder / RUN_HISTORY)
    assert row["outcome"] == "failed" and url in row["error"]
    assert deployed_state(deployed)["ingested"].endswith("dataset3.csv\n")


def test_dry_run_prints_the_decision_and_changes_nothing(deployed: Config, capsys):
    write_csv(deployed.input_folder / "dataset4.csv", client_rows(200, seed=6, flip=True))
    before = tree_snapshot(deployed.config_file.parent)
    assert fullprocess.main(["--config", str(deployed.config_file), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would retrain and redeploy") and "dataset4.csv" in out and "(baseline)" in out
    assert tree_snapshot(deployed.config_file.parent) == before


def test_a_tampered_deployment_makes_the_run_fail(deployed: Config, api_url: str):
    write_csv(deployed.input_folder / "dataset3.csv", client_rows(80, seed=5, noise=0.0))
    model = require_deployment(deployed.prod_deployment_folder).path(MODEL_FILE)
    model.write_bytes(model.read_bytes()[:-3])
    assert tick(deployed, api_url) == 1
    [row] = read_history(deployed.output_model_folder / RUN_HISTORY)
    assert "sha256" in row["error"]


# --- Drift tests -----------------------------------------------------------------------------
HISTORY = [0.80, 0.82, 0.78, 0.81, 0.79]  # mean 0.80, stdev 0.01581, Q1 0.79, Q3 0.81


@pytest.mark.parametrize("test, f1, drift, threshold", [
    ("raw", 0.70, True, 0.75), ("raw", 0.75, False, 0.75),
    ("parametric", 0.77, False, 0.80 - 2 * 0.0158114), ("parametric", 0.76, True, 0.80 - 2 * 0.0158114),
    ("nonparametric", 0.76, False, 0.76), ("nonparametric", 0.759, True, 0.76),
])
def test_drift_tests_on_a_known_history(test, f1, drift, threshold):
    verdict = drift_module.drift_verdict(f1, 0.75, HISTORY, test, min_history=5)
    assert verdict.test == test
    assert verdict.drift is drift
    assert verdict.threshold == pytest.approx(threshold, abs=1e-6)


def test_statistical_tests_fall_back_to_raw_with_a_short_history():
    verdict = drift_module.drift_verdict(0.70, 0.75, HISTORY[:3], "parametric", min_history=5)
    assert verdict.test == "raw" and verdict.drift
    assert "needs 5 scores" in verdict.reason


def test_data_drift_statistics():
    import numpy as np

    rng = np.random.default_rng(0)
    reference = np.quantile(rng.normal(100, 10, 5000), np.linspace(0, 1, 1001))
    same = rng.normal(100, 10, 3000)
    shifted = rng.normal(130, 10, 3000)
    assert drift_module.psi(same, reference) < 0.05
    assert drift_module.psi(shifted, reference) > 1.0
    assert drift_module.ks_test(same, reference, 5000)[1] > 0.01
    statistic, p_value = drift_module.ks_test(shifted, reference, 5000)
    assert statistic > 0.8 and p_value < 1e-6


# --- One run at a time, cheap ticks, history -------------------------------------------------
def test_a_run_that_finds_another_in_progress_exits_0_at_once(deployed: Config):
    write_csv(deployed.input_folder / "dataset3.csv", client_rows(80, seed=5))
    before = tree_snapshot(deployed.prod_deployment_folder)
    with fullprocess.exclusive_lock(deployed.prod_deployment_folder) as held:
        assert held
        result = run_script("fullprocess.py", "--config", str(deployed.config_file), cwd=deployed.config_file.parent)
    assert result.returncode == 0
    assert "another fullprocess run is in progress" in result.stderr
    assert tree_snapshot(deployed.prod_deployment_folder) == before


HEAVY = ("pandas", "numpy", "sklearn", "matplotlib", "reportlab", "scipy")


def test_the_no_new_data_path_imports_no_heavy_library(deployed: Config, tmp_path: Path):
    code = (
        "import sys, fullprocess\n"
        f"status = fullprocess.main(['--config', {str(deployed.config_file)!r}])\n"
        f"print(status, sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "0 []", result.stderr
    assert "no new data" in result.stderr


def test_history_prints_a_table(deployed: Config, api_url: str, capsys):
    write_csv(deployed.input_folder / "dataset3.csv", client_rows(80, seed=5, noise=0.0))
    tick(deployed, api_url)
    capsys.readouterr()
    assert fullprocess.main(["--config", str(deployed.config_file), "--history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["id", "started", "new"]
    assert "keep" in lines[1] and "dataset3.csv" in lines[1] and "done" in lines[1]


def test_log_file_is_written(deployed: Config, api_url: str):
    write_csv(deployed.input_folder / "dataset3.csv", client_rows(80, seed=5, noise=0.0))
    tick(deployed, api_url)
    text = (deployed.output_model_folder / fullprocess.LOG_FILE).read_text()
    assert "step ingestion done in" in text and "decision: keep" in text


def test_bad_config_exits_2(tmp_path: Path):
    (tmp_path / "config.json").write_text("{}")
    result = run_script("fullprocess.py", "--config", str(tmp_path / "config.json"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX processes")
def test_killed_before_reports_finishes_them_on_the_next_tick(deployed: Config, api_url: str):
    write_csv(deployed.input_folder / "dataset3.csv", client_rows(80, seed=5, noise=0.0))
    killed = run_script("fullprocess.py", "--config", str(deployed.config_file), "--api-url", api_url,
                        cwd=deployed.config_file.parent, env={KILL_AT_ENV: "before-reporting"})
    assert killed.returncode == -9
    assert reports(deployed) == []
    assert tick(deployed, api_url) == 0
    assert reports(deployed) == ["apireturns.txt", "confusionmatrix.png", "summary_report.pdf"]
