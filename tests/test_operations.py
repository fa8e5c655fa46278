"""Operations cannot corrupt the state: consistent releases, one owner per production folder, repair, pins."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import deployment
import ingestion
import scoring
import training
from conftest import client_rows, run_script, write_config, write_csv
from riskcore.config import Config, load_config
from riskcore.contract import CURRENT_LINK, EXIT_CONFIG, RELEASES_DIR, ConfigError, DataError
from riskcore.control import read_control
from riskcore.releases import current_deployment, release_names


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
    assert "belongs to the setup of" in line and "--take-over" in line


def test_a_missing_current_link_is_repaired_not_redeployed(deployed: Config):
    prod = deployed.prod_deployment_folder
    first = current_deployment(prod)
    os.unlink(prod / CURRENT_LINK)
    repaired = deployment.run(deployed, action="repair")
    assert repaired.release == first.release
    assert current_deployment(prod).release == first.release
    with pytest.raises(DataError, match="nothing to repair"):
        deployment.run(deployed, action="repair")


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


def test_rollback_counts_the_rolled_back_files_as_processed(deployed: Config):
    prod = deployed.prod_deployment_folder
    write_csv(deployed.input_folder / "flipped.csv", client_rows(200, seed=9, flip=True))
    deploy_all(deployed)
    deployment.run(deployed, action="rollback")
    acknowledged = read_control(prod)["acknowledged"]
    assert "flipped.csv" in acknowledged


def test_a_bad_control_record_is_one_sentence(deployed: Config):
    (deployed.prod_deployment_folder / "control.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="Control record .* cannot be read"):
        deployment.run(deployed)
