"""deployment.py: atomic releases, the course's names, rollback, pruning, tamper refusal."""

from __future__ import annotations

import os

import pytest

import deployment
import riskcore
import scoring
import training
from conftest import run_script, tree_snapshot


def test_deploy_publishes_the_three_course_files(deployed: riskcore.Config):
    prod = deployed.prod_deployment_folder
    for name in (riskcore.MODEL_FILE, riskcore.SCORE_FILE, riskcore.INGESTED_FILES):
        assert (prod / name).read_bytes() == _source_of(deployed, name).read_bytes()
    current = riskcore.require_deployment(prod)
    assert current.manifest["files"][riskcore.MODEL_FILE] == riskcore.sha256_file(deployed.model_file)
    assert current.manifest["score"] == scoring.read_score(prod / riskcore.SCORE_FILE)


def _source_of(config: riskcore.Config, name: str):
    if name in (riskcore.INGESTED_FILES, riskcore.INGESTION_RECORD):
        return config.output_folder / name
    return config.output_model_folder / name


def test_deployed_model_loads_through_the_hash_check(deployed: riskcore.Config):
    current = riskcore.require_deployment(deployed.prod_deployment_folder)
    model = riskcore.load_deployed_model(current)
    assert model.predict([[1, 2, 3]]).shape == (1,)


@pytest.mark.parametrize("damage", ["truncate", "replace"])
def test_tampered_deployed_model_is_refused_before_unpickling(deployed: riskcore.Config, damage, monkeypatch):
    current = riskcore.require_deployment(deployed.prod_deployment_folder)
    path = current.path(riskcore.MODEL_FILE)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"cos\nsystem\n(S'true'\ntR.")
    unpickled = []
    monkeypatch.setattr(riskcore, "load_model_bytes", lambda b: unpickled.append(b))
    with pytest.raises(riskcore.IntegrityError, match="does not match its recorded sha256"):
        riskcore.load_deployed_model(current)
    assert unpickled == []


def test_interrupted_before_the_switch_leaves_the_old_set(deployed: riskcore.Config, monkeypatch):
    prod = deployed.prod_deployment_folder
    before = tree_snapshot(prod)
    training.run(deployed)  # a new model to deploy
    monkeypatch.setattr(deployment, "point_current_at", _crash)
    with pytest.raises(RuntimeError):
        deployment.deploy(deployed)
    after = tree_snapshot(prod)
    # The finished release folder may exist, but what readers see through `current` is unchanged.
    assert {k: v for k, v in after.items() if not k.startswith("releases/")} == \
        {k: v for k, v in before.items() if not k.startswith("releases/")}
    assert (prod / riskcore.MODEL_FILE).read_bytes() == before["releases/" + riskcore.current_release_name(prod)
                                                               + "/" + riskcore.MODEL_FILE]


def test_interrupted_mid_copy_leaves_no_release_behind(deployed: riskcore.Config, monkeypatch):
    prod = deployed.prod_deployment_folder
    before = tree_snapshot(prod)
    calls = []
    real_copy = deployment.copy_durably

    def failing_copy(source, target):
        calls.append(source)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_copy(source, target)

    monkeypatch.setattr(deployment, "copy_durably", failing_copy)
    with pytest.raises(OSError):
        deployment.deploy(deployed)
    assert tree_snapshot(prod) == before
    assert not any(p.name.startswith(".tmp") for p in (prod / riskcore.RELEASES_DIR).iterdir())


def _crash(*args, **kwargs):
    raise RuntimeError("killed between steps")


def test_stale_temporary_release_of_a_dead_process_is_removed(deployed: riskcore.Config):
    releases = deployed.prod_deployment_folder / riskcore.RELEASES_DIR
    stale = releases / f"{deployment.TMP_PREFIX}999999999-abc"
    stale.mkdir()
    deployment.deploy(deployed)
    assert not stale.exists()


def test_rollback_restores_the_previous_release(deployed: riskcore.Config):
    prod = deployed.prod_deployment_folder
    first = riskcore.require_deployment(prod)
    training.run(deployed)
    scoring.run(deployed)
    second = deployment.deploy(deployed)
    assert second.release != first.release
    restored = deployment.rollback(prod)
    assert restored.release == first.release
    assert riskcore.current_release_name(prod) == first.release
    assert riskcore.sha256_file(prod / riskcore.MODEL_FILE) == first.manifest["files"][riskcore.MODEL_FILE]


def test_rollback_without_history_is_a_clear_error(deployed: riskcore.Config):
    with pytest.raises(riskcore.DataError, match="No earlier deployment"):
        deployment.rollback(deployed.prod_deployment_folder)


def test_old_releases_are_pruned_but_current_kept(deployed: riskcore.Config):
    for _ in range(7):
        deployment.deploy(deployed)
    names = deployment.release_names(deployed.prod_deployment_folder)
    assert len(names) == deployed.automation["keep_releases"]
    assert riskcore.current_release_name(deployed.prod_deployment_folder) == names[-1]


def test_records_only_deployment_keeps_the_model(deployed: riskcore.Config):
    prod = deployed.prod_deployment_folder
    before = riskcore.require_deployment(prod)
    (deployed.output_folder / riskcore.INGESTED_FILES).write_text("dataset1.csv\ndataset2.csv\nnew.csv\n")
    after = deployment.deploy_records(deployed)
    assert after.release != before.release
    assert after.model_version == before.model_version
    assert after.manifest["files"][riskcore.MODEL_FILE] == before.manifest["files"][riskcore.MODEL_FILE]
    assert (prod / riskcore.INGESTED_FILES).read_text().endswith("new.csv\n")


def test_tampered_trained_model_is_not_deployed(deployed: riskcore.Config):
    prod = deployed.prod_deployment_folder
    before = tree_snapshot(prod)
    deployed.model_file.write_bytes(b"not a model")
    with pytest.raises(riskcore.IntegrityError):
        deployment.deploy(deployed)
    assert tree_snapshot(prod) == before


def test_pipeline_runs_as_a_user_runs_it(project, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("somewhere-else")
    for script in ("ingestion.py", "training.py", "scoring.py", "deployment.py"):
        result = run_script(script, "--config", str(project), cwd=cwd)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    prod = project.parent / "prod"
    assert os.path.islink(prod / riskcore.MODEL_FILE)
    assert float((prod / riskcore.SCORE_FILE).read_text()) > 0.5
    assert list(cwd.iterdir()) == []  # nothing written to the working directory
    rollback = run_script("deployment.py", "--config", str(project), "--rollback", cwd=cwd)
    assert rollback.returncode == 1 and "No earlier deployment" in rollback.stderr
