"""Operations cannot corrupt the state: consistent releases, one owner per production folder, repair, pins."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import deployment
import ingestion
import scoring
import training
from conftest import client_rows, one_sentence, run_script, write_config, write_csv
from riskcore.config import Config, load_config
from riskcore.contract import (
    CURRENT_LINK,
    EXIT_CONFIG,
    EXIT_FAILED,
    RELEASES_DIR,
    RUN_HISTORY,
    SCORE_FILE,
    ConfigError,
    DataError,
)
from riskcore.model import evaluation
from riskcore.ops.history import read_history
from riskcore.release.load import current_deployment, release_names
from riskcore.release.operator_state import read_control


def test_a_model_is_not_deployed_with_another_models_score(deployed: Config):
    baseline = current_deployment(deployed.prod_deployment_folder)
    write_csv(deployed.input_folder / "flipped.csv", client_rows(200, seed=9, flip=True))
    ingestion.run(deployed)
    training.run(deployed)  # a new model; latestscore.txt still holds the old model's score
    with pytest.raises(DataError, match="run scoring.py first"):
        deployment.run(deployed)
    assert current_deployment(deployed.prod_deployment_folder).release == baseline.release
    scoring.run(deployed)
    assert deployment.run(deployed).model_version != baseline.model_version


def test_records_of_data_the_model_never_saw_are_not_deployed(deployed: Config):
    write_csv(deployed.input_folder / "more.csv", client_rows(50, seed=8))
    ingestion.run(deployed)  # finaldata.csv now holds rows the trained model never saw
    with pytest.raises(DataError, match="run training.py and scoring.py first"):
        deployment.run(deployed)
    assert len(release_names(deployed.prod_deployment_folder)) == 1


def second_setup(config: Config, name: str) -> Config:
    """Another config deploying to the same production folder, with its own input and model folders."""
    root = config.config_file.parent
    write_csv(root / f"{name}-input" / "clients.csv", client_rows(150, seed=11))
    (root / name).mkdir()
    return load_config(write_config(root / name, input_folder_path=f"../{name}-input",
                                    output_folder_path="../ingested", test_data_path="../test",
                                    output_model_path=f"../{name}-models", prod_deployment_path="../prod"))


def deploy_all(config: Config, take_over: bool = False) -> None:
    ingestion.run(config)
    training.run(config)
    scoring.run(config)
    deployment.run(config, take_over=take_over)


def test_the_course_handover_happens_once_then_other_setups_are_refused(deployed: Config):
    prod = deployed.prod_deployment_folder
    practice = deployed  # deployed first
    production = second_setup(deployed, "production")
    deploy_all(production)  # the course's one handover: recorded, not refused
    control = read_control(prod)
    assert [entry["how"] for entry in control["owners"]] == ["first owner", "taken over (the course's one handover)"]
    assert control["owner"]["config_file"] == str(production.config_file)
    count = len(release_names(prod))
    with pytest.raises(ConfigError, match="run with --take-over"):
        deployment.run(practice)
    assert len(release_names(prod)) == count
    # Asked for explicitly, the switch back is made and recorded.
    deploy_all(practice, take_over=True)
    assert read_control(prod)["owners"][-1]["how"] == "taken over (asked)"


@pytest.mark.slow
def test_the_refused_setup_gets_one_sentence_and_exit_2(deployed: Config, tmp_path: Path):
    production = second_setup(deployed, "production")
    deploy_all(production)
    result = run_script("deployment.py", "--config", str(deployed.config_file), cwd=tmp_path)
    assert result.returncode == EXIT_CONFIG
    [line] = result.stderr.strip().splitlines()
    assert "belongs to the setup of" in line and "--take-over" in one_sentence(line)


def test_a_missing_current_link_is_repaired_not_redeployed(deployed: Config):
    prod = deployed.prod_deployment_folder
    first = current_deployment(prod)
    os.unlink(prod / CURRENT_LINK)
    repaired = deployment.run(deployed, action="repair")
    assert repaired.release == first.release
    assert current_deployment(prod).release == first.release
    with pytest.raises(DataError, match="nothing to repair"):
        deployment.run(deployed, action="repair")


def test_a_repair_serves_the_model_a_rollback_keeps(deployed: Config, caplog):
    # The walk: rolled back from a bad model, then `current` lost; --repair served the newest release, the bad
    # model again, and the banner and the operator's rollback were gone without a word.
    prod = deployed.prod_deployment_folder
    first = current_deployment(prod)
    write_csv(deployed.input_folder / "more.csv", client_rows(80, seed=8))
    deploy_all(deployed)
    assert current_deployment(prod).model_version != first.model_version
    deployment.run(deployed, action="rollback")
    os.unlink(prod / CURRENT_LINK)
    with caplog.at_level("INFO"):
        repaired = deployment.run(deployed, action="repair")
    assert repaired.model_version == first.model_version == current_deployment(prod).model_version
    assert "the rollback of" in caplog.text


def test_a_deployment_by_hand_while_pinned_is_refused_with_one_sentence(deployed: Config, tmp_path: Path):
    # The walk: deployment.py by hand while pinned served the new model; the pin, the banner and the PDF named
    # the pinned release as kept.
    prod = deployed.prod_deployment_folder
    deployment.run(deployed, action="pin")
    pinned = current_deployment(prod)
    write_csv(deployed.input_folder / "more.csv", client_rows(80, seed=8))
    for step in (ingestion, training, scoring):
        step.run(deployed)
    done = run_script("deployment.py", "--config", str(deployed.config_file), cwd=tmp_path)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: Release {pinned.release} is pinned") and "--unpin first" in line
    assert current_deployment(prod).release == pinned.release


def test_unknown_folders_in_releases_are_ignored(deployed: Config, caplog):
    releases = deployed.prod_deployment_folder / RELEASES_DIR
    (releases / "notes").mkdir()
    (releases / "README.txt").write_text("hand-made", encoding="utf-8")
    with caplog.at_level("INFO"):
        names = release_names(deployed.prod_deployment_folder)
    assert len(names) == 1
    assert "ignoring 'notes'" in caplog.text
    training.run(deployed)
    scoring.run(deployed)
    assert deployment.run(deployed).release.startswith("000002-")


def test_pin_and_unpin_are_recorded(deployed: Config):
    prod = deployed.prod_deployment_folder
    current = deployment.run(deployed, action="pin")
    pinned = read_control(prod)["pinned"]
    assert pinned["release"] == current.release and pinned["by"]
    deployment.run(deployed, action="unpin")
    assert read_control(prod)["pinned"] is None


@pytest.mark.parametrize("rebuilt", [False, True])  # True: control.json and its journal then removed by hand
def test_rollback_counts_the_rolled_back_files_as_processed(deployed: Config, rebuilt: bool):
    from riskcore.release.operator_state import CONTROL_FILE, JOURNAL_FILE

    prod = deployed.prod_deployment_folder
    write_csv(deployed.input_folder / "flipped.csv", client_rows(200, seed=9, flip=True))
    deploy_all(deployed)
    deployment.run(deployed, action="rollback")
    acknowledged = read_control(prod)["acknowledged"]
    assert "flipped.csv" in acknowledged
    if rebuilt:  # rebuilt from the release manifests and the run history, as it was
        (prod / JOURNAL_FILE).unlink()
        (prod / CONTROL_FILE).unlink()
        control = read_control(prod)
        assert control["rebuilt"] and control["acknowledged"] == acknowledged


def test_a_bad_control_record_is_kept_aside_and_rebuilt_not_an_error(deployed: Config):
    prod = deployed.prod_deployment_folder
    (prod / "control.json").write_text("{not json", encoding="utf-8")
    deployment.run(deployed)  # issue 21: the operator's state is restored, never "remove it by hand"
    assert read_control(prod)["owner"]["config_file"] == str(deployed.config_file)
    [aside] = prod.glob("control.json.unreadable-*")
    assert aside.read_text(encoding="utf-8") == "{not json"


# --- End to end, as an operator mixes the scripts with the automation ---------------------------
def script(name: str, config: Config, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_script(name, "--config", str(config.config_file), *args, cwd=cwd)


@pytest.mark.slow
def test_scripts_run_by_hand_cannot_pair_a_model_with_another_models_score(deployed: Config, tmp_path: Path):
    prod = deployed.prod_deployment_folder
    count = len(release_names(prod))
    write_csv(deployed.input_folder / "flipped.csv", client_rows(300, seed=9, flip=True))
    for name in ("ingestion.py", "training.py"):
        assert script(name, deployed, cwd=tmp_path).returncode == 0
    refused = script("deployment.py", deployed, cwd=tmp_path)  # scoring.py was skipped
    assert refused.returncode == EXIT_FAILED and "run scoring.py first" in refused.stderr
    assert len(release_names(prod)) == count
    assert script("scoring.py", deployed, cwd=tmp_path).returncode == 0
    assert script("deployment.py", deployed, cwd=tmp_path).returncode == 0
    current = current_deployment(prod)
    assert current.manifest["score"] == evaluation.read_score(deployed.output_model_folder / SCORE_FILE)


@pytest.mark.slow
def test_ingestion_then_deployment_does_not_publish_rows_the_model_never_saw(deployed: Config, tmp_path: Path):
    write_csv(deployed.input_folder / "more.csv", client_rows(500, seed=8))
    assert script("ingestion.py", deployed, cwd=tmp_path).returncode == 0
    refused = script("deployment.py", deployed, cwd=tmp_path)
    assert refused.returncode == EXIT_FAILED and "run training.py and scoring.py first" in refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: ")


@pytest.mark.slow
def test_a_rollback_holds_at_the_next_tick_and_is_in_the_history(deployed: Config, tmp_path: Path):
    prod = deployed.prod_deployment_folder
    first = current_deployment(prod)
    write_csv(deployed.input_folder / "flipped.csv", client_rows(300, seed=9, flip=True))
    closed = "http://127.0.0.1:9"  # no API: the reports' API calls fail, the decision stands
    script("fullprocess.py", deployed, "--api-url", closed, cwd=tmp_path)
    retrained = current_deployment(prod)
    assert retrained.model_version != first.model_version
    rolled = script("deployment.py", deployed, "--rollback", cwd=tmp_path)
    assert rolled.returncode == 0, rolled.stderr
    assert current_deployment(prod).model_version == first.model_version
    after = script("fullprocess.py", deployed, "--api-url", closed, cwd=tmp_path)
    assert "new data:" not in after.stderr and "retrain" not in after.stderr  # the rolled-back files stay processed
    assert current_deployment(prod).model_version == first.model_version
    # The risk list follows the model served again (made by this tick; the API calls fail here).
    assert json.loads((deployed.output_model_folder / "risk_scores.json").read_text())["model_version"] == \
        first.model_version
    quiet = script("fullprocess.py", deployed, "--api-url", closed, cwd=tmp_path)
    assert quiet.returncode == 0 and "nothing to do" in quiet.stderr
    [rollback] = [row for row in read_history(deployed.output_model_folder / RUN_HISTORY)
                  if row["decision"] == "rollback"]
    assert rollback["version_before"] == retrained.model_version
    assert rollback["version_after"] == first.model_version
    assert f"to {first.release}" in rollback["note"] and " by " in rollback["note"]


@pytest.mark.slow
def test_another_setup_ticking_on_the_folder_is_refused_and_makes_no_release(deployed: Config, tmp_path: Path):
    production = second_setup(deployed, "production")
    closed = "http://127.0.0.1:9"
    script("fullprocess.py", production, "--api-url", closed, cwd=tmp_path)  # the course's one handover
    prod = deployed.prod_deployment_folder
    count = len(release_names(prod))
    write_csv(deployed.input_folder / "later.csv", client_rows(60, seed=12))
    for _ in range(2):
        refused = script("fullprocess.py", deployed, "--api-url", closed, cwd=tmp_path)
        assert refused.returncode == EXIT_CONFIG
        assert "belongs to the setup of" in refused.stderr and "Traceback" not in refused.stderr
    assert len(release_names(prod)) == count
    switched = script("fullprocess.py", deployed, "--api-url", closed, "--take-over", cwd=tmp_path)
    # The taken-over run ingests later.csv and reports; its API calls find no API on the closed port: exit 1.
    assert switched.returncode == EXIT_FAILED and "takes over" in switched.stderr
    assert "Traceback" not in switched.stderr and "http://127.0.0.1:9" in switched.stderr
    assert read_control(prod)["owner"]["config_file"] == str(deployed.config_file)


@pytest.mark.slow
def test_deployment_waits_for_no_one_and_refuses_while_a_run_holds_the_lock(deployed: Config, tmp_path: Path):
    from riskcore.ops.lock import exclusive_lock

    with exclusive_lock(deployed.prod_deployment_folder) as held:
        assert held
        refused = script("deployment.py", deployed, "--rollback", cwd=tmp_path)
    assert refused.returncode == EXIT_FAILED and "Another run" in refused.stderr


@pytest.mark.slow
def test_a_pinned_release_is_kept_by_a_tick_that_would_retrain_and_the_log_says_why(deployed: Config, tmp_path: Path):
    prod = deployed.prod_deployment_folder
    pinned = deployment.run(deployed, action="pin")
    write_csv(deployed.input_folder / "flipped.csv", client_rows(300, seed=9, flip=True))
    tick = script("fullprocess.py", deployed, "--api-url", "http://127.0.0.1:9", cwd=tmp_path)
    assert f"release {pinned.release} is pinned" in tick.stderr
    assert current_deployment(prod).model_version == pinned.model_version
    # The tick's row (the pin is a row of its own, an operator's action).
    [row] = [r for r in read_history(deployed.output_model_folder / RUN_HISTORY) if r["decision"] not in (None, "pin")]
    assert row["decision"] == "keep" and "model drift" in row["drift_verdict"] and "is pinned" in row["drift_verdict"]
    deployment.run(deployed, action="unpin")
    write_csv(deployed.input_folder / "flipped2.csv", client_rows(300, seed=19, flip=True))
    script("fullprocess.py", deployed, "--api-url", "http://127.0.0.1:9", cwd=tmp_path)
    assert current_deployment(prod).model_version != pinned.model_version


@pytest.mark.slow
def test_any_file_name_is_ingested_and_recorded_on_one_line_without_a_crash(deployed: Config, tmp_path: Path):
    latin1 = os.fsdecode(b"soci\xe9t\xe9.csv")  # a name that is not UTF-8
    forged = "new\n2026-01-01 00:00:00 INFO fullprocess: forged.csv"  # a newline that would forge a log line
    write_csv(deployed.input_folder / latin1, client_rows(40, seed=31))
    write_csv(deployed.input_folder / f"{forged}.csv", client_rows(40, seed=32))
    tick = script("fullprocess.py", deployed, "--api-url", "http://127.0.0.1:9", cwd=tmp_path)
    assert "Traceback" not in tick.stderr and "Logging error" not in tick.stderr
    assert tick.returncode == EXIT_FAILED and "http://127.0.0.1:9" in tick.stderr  # no API answers the report's calls
    names = (deployed.output_folder / "ingestedfiles.txt").read_text(encoding="utf-8").splitlines()
    assert "soci\\xe9t\\xe9.csv" in names and f"{forged.replace(chr(10), chr(92) + 'n')}.csv" in names
    assert len(names) == len(list(deployed.input_folder.iterdir()))
    assert not [line for line in tick.stderr.splitlines() if line.startswith("2026-01-01")]
    again = script("fullprocess.py", deployed, "--api-url", "http://127.0.0.1:9", cwd=tmp_path)
    assert again.returncode == 0 and "no new data" in again.stderr  # the exact names are recognised again


@pytest.mark.slow
def test_a_risk_list_left_stale_by_a_failed_report_is_rebuilt_by_the_next_tick(deployed: Config, tmp_path: Path):
    closed = "http://127.0.0.1:9"
    assert script("reporting.py", deployed, cwd=tmp_path).returncode == 0  # the first model's risk list
    first = current_deployment(deployed.prod_deployment_folder)
    record = deployed.output_model_folder / "risk_scores.json"
    assert json.loads(record.read_text())["model_version"] == first.model_version
    blocked = deployed.output_model_folder / "risk_scores.csv"
    blocked.unlink()
    blocked.mkdir()  # the risk list cannot be written: the reporting step fails, as on a full disk
    write_csv(deployed.input_folder / "flipped.csv", client_rows(300, seed=9, flip=True))
    failed = script("fullprocess.py", deployed, "--api-url", closed, cwd=tmp_path)
    assert failed.returncode == EXIT_FAILED and "step reporting failed" in failed.stderr
    retrained = current_deployment(deployed.prod_deployment_folder)
    assert retrained.model_version != first.model_version
    assert json.loads(record.read_text())["model_version"] == first.model_version  # stale
    blocked.rmdir()  # space is freed
    rebuilt = script("fullprocess.py", deployed, "--api-url", closed, cwd=tmp_path)
    assert "the risk list was made by model" in rebuilt.stderr and "nothing to do" not in rebuilt.stderr
    assert json.loads(record.read_text())["model_version"] == retrained.model_version
    quiet = script("fullprocess.py", deployed, "--api-url", closed, cwd=tmp_path)
    assert quiet.returncode == 0 and "no new data" in quiet.stderr
