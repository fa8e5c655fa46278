"""deployment.py: atomic releases, the course's names, rollback, pruning, tamper refusal."""

from __future__ import annotations

import os

import pytest

import scoring
import training
from conftest import run_script, tree_snapshot
from riskcore.config import Config
from riskcore.contract import (
    INGESTED_FILES,
    INGESTION_RECORD,
    MODEL_FILE,
    RELEASES_DIR,
    SCORE_FILE,
    DataError,
    IntegrityError,
)
from riskcore.files import sha256_file
from riskcore.model import evaluation
from riskcore.release import load, publish
from riskcore.release.load import current_release_name, load_deployed_model, require_deployment


def test_deploy_publishes_the_three_course_files(deployed: Config):
    prod = deployed.prod_deployment_folder
    for name in (MODEL_FILE, SCORE_FILE, INGESTED_FILES):
        assert (prod / name).read_bytes() == _source_of(deployed, name).read_bytes()
    current = require_deployment(prod)
    assert current.manifest["files"][MODEL_FILE] == sha256_file(deployed.model_file)
    assert current.manifest["score"] == evaluation.read_score(prod / SCORE_FILE)


def _source_of(config: Config, name: str):
    if name in (INGESTED_FILES, INGESTION_RECORD):
        return config.output_folder / name
    return config.output_model_folder / name


def test_deployed_model_loads_through_the_hash_check(deployed: Config):
    current = require_deployment(deployed.prod_deployment_folder)
    model = load_deployed_model(current)
    assert model.predict([[1, 2, 3]]).shape == (1,)


@pytest.mark.parametrize("damage", ["truncate", "replace"])
def test_tampered_deployed_model_is_refused_before_unpickling(deployed: Config, damage, monkeypatch):
    current = require_deployment(deployed.prod_deployment_folder)
    path = current.path(MODEL_FILE)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"cos\nsystem\n(S'true'\ntR.")
    unpickled = []
    monkeypatch.setattr(load, "load_model_bytes", lambda b: unpickled.append(b))
    with pytest.raises(IntegrityError, match="does not match its recorded sha256"):
        load_deployed_model(current)
    assert unpickled == []


def test_interrupted_before_the_switch_leaves_the_old_set(deployed: Config, monkeypatch):
    prod = deployed.prod_deployment_folder
    before = tree_snapshot(prod)
    training.run(deployed)  # a new model to deploy
    monkeypatch.setattr(publish, "point_current_at", _crash)
    with pytest.raises(RuntimeError):
        publish.deploy(deployed)
    after = tree_snapshot(prod)
    # The finished release folder may exist, but what readers see through `current` is unchanged.
    assert {k: v for k, v in after.items() if not k.startswith("releases/")} == \
        {k: v for k, v in before.items() if not k.startswith("releases/")}
    assert (prod / MODEL_FILE).read_bytes() == before["releases/" + current_release_name(prod)
                                                               + "/" + MODEL_FILE]


def test_interrupted_mid_copy_leaves_no_release_behind(deployed: Config, monkeypatch):
    prod = deployed.prod_deployment_folder
    before = tree_snapshot(prod)
    calls = []
    real_copy = publish.copy_durably

    def failing_copy(source, target):
        calls.append(source)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_copy(source, target)

    monkeypatch.setattr(publish, "copy_durably", failing_copy)
    with pytest.raises(OSError):
        publish.deploy(deployed)
    assert tree_snapshot(prod) == before
    assert not any(p.name.startswith(".tmp") for p in (prod / RELEASES_DIR).iterdir())


def _crash(*args, **kwargs):
    raise RuntimeError("killed between steps")


def test_stale_temporary_release_of_a_dead_process_is_removed(deployed: Config):
    releases = deployed.prod_deployment_folder / RELEASES_DIR
    stale = releases / f"{publish.TMP_PREFIX}999999999-abc"
    stale.mkdir()
    publish.deploy(deployed)
    assert not stale.exists()


def test_rollback_restores_the_previous_release(deployed: Config):
    prod = deployed.prod_deployment_folder
    first = require_deployment(prod)
    training.run(deployed)
    scoring.run(deployed)
    second = publish.deploy(deployed)
    assert second.release != first.release
    restored = publish.rollback(prod)
    assert restored.release == first.release
    assert current_release_name(prod) == first.release
    assert sha256_file(prod / MODEL_FILE) == first.manifest["files"][MODEL_FILE]


def test_rollback_without_history_is_a_clear_error(deployed: Config):
    with pytest.raises(DataError, match="No earlier deployment"):
        publish.rollback(deployed.prod_deployment_folder)


def test_old_releases_are_pruned_but_current_kept(deployed: Config):
    prod = deployed.prod_deployment_folder
    keep = deployed.automation["keep_releases"]
    for _ in range(keep + 2):
        publish.deploy(deployed)
    names = load.release_names(prod)
    assert len(names) == keep and current_release_name(prod) == names[-1]  # deploying prunes the oldest
    # Roll back twice: the current release is now the third newest, not the newest.
    publish.rollback(prod)
    current = publish.rollback(prod)
    assert current.release == names[-3] != names[-1]
    served = (prod / MODEL_FILE).read_bytes()
    publish.prune_releases(prod, keep=2)
    assert load.release_names(prod) == [names[-3], *names[-2:]]  # the two newest, and the current one
    assert current_release_name(prod) == current.release
    assert (prod / MODEL_FILE).read_bytes() == served
    load_deployed_model(require_deployment(prod))  # still complete: every file matches its manifest
    # Deploying again makes a new current release; pruning then keeps the newest `keep`.
    training.run(deployed)
    scoring.run(deployed)
    newest = publish.deploy(deployed)
    assert current_release_name(prod) == newest.release == load.release_names(prod)[-1]
    assert load.release_names(prod) == [names[-3], *names[-2:], newest.release]


def test_records_only_deployment_keeps_the_model(deployed: Config):
    prod = deployed.prod_deployment_folder
    before = require_deployment(prod)
    (deployed.output_folder / INGESTED_FILES).write_text("dataset1.csv\ndataset2.csv\nnew.csv\n")
    after = publish.deploy_records(deployed)
    assert after.release != before.release
    assert after.model_version == before.model_version
    assert after.manifest["files"][MODEL_FILE] == before.manifest["files"][MODEL_FILE]
    assert (prod / INGESTED_FILES).read_text().endswith("new.csv\n")


def test_tampered_trained_model_is_not_deployed(deployed: Config):
    prod = deployed.prod_deployment_folder
    before = tree_snapshot(prod)
    deployed.model_file.write_bytes(b"not a model")
    with pytest.raises(IntegrityError):
        publish.deploy(deployed)
    assert tree_snapshot(prod) == before


@pytest.mark.slow
def test_pipeline_runs_as_a_user_runs_it(project, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("somewhere-else")
    for script in ("ingestion.py", "training.py", "scoring.py", "deployment.py"):
        result = run_script(script, "--config", str(project), cwd=cwd)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    prod = project.parent / "prod"
    assert os.path.islink(prod / MODEL_FILE)
    assert float((prod / SCORE_FILE).read_text()) > 0.5
    assert list(cwd.iterdir()) == []  # nothing written to the working directory
    rollback = run_script("deployment.py", "--config", str(project), "--rollback", cwd=cwd)
    assert rollback.returncode == 1 and "No earlier deployment" in rollback.stderr
