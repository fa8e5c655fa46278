"""Config loading and validation (load_config) and the scripts' bad-config answers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import COURSE_RULE, ROOT, run_script, write_config
from riskcore.config import AUTOMATION_DEFAULTS, MODEL_DEFAULTS, REPORTING_DEFAULTS, load_config
from riskcore.contract import ConfigError


def test_relative_paths_resolve_against_the_config_folder(project: Path, monkeypatch, tmp_path_factory):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    config = load_config(project)
    assert config.input_folder == project.parent / "input"
    assert config.prod_deployment_folder == project.parent / "prod"
    assert config.model == MODEL_DEFAULTS
    assert config.automation == {**AUTOMATION_DEFAULTS, **COURSE_RULE, "holdout_share": 0.0}  # the course's rule
    assert config.reporting == REPORTING_DEFAULTS and config.reporting["calls_per_cycle"] == 50


def test_bundled_configs_are_valid():
    for name in ("config.json", "config.practice.json"):
        config = load_config(ROOT / name)
        assert config.model == MODEL_DEFAULTS


def test_the_default_decides_on_evidence_and_the_course_configuration_keeps_the_course_rule():
    assert AUTOMATION_DEFAULTS["drift_test"] == "significance" and AUTOMATION_DEFAULTS["promotion_gate"] is True
    production = load_config(ROOT / "config.json").automation
    assert (production["drift_test"], production["promotion_gate"]) == ("significance", True)
    course = load_config(ROOT / "config.practice.json").automation
    assert (course["drift_test"], course["promotion_gate"]) == ("raw", False)


@pytest.mark.parametrize(("key", "value", "words"), [
    ("min_rows", 0, "at least 1"), ("min_positives", -3, "at least 1"), ("min_holdout_rows", 0, "at least 1"),
    ("recent_rows", 0, "at least 1"), ("min_drop", 1.5, "from 0 to below 1"), ("alpha", 0, "above 0 and below 1"),
    ("min_rows", 2.5, "an integer"), ("drift_test", "bootstrap", "one of significance"),
])
def test_evidence_settings_are_checked_at_load(project: Path, key, value, words):
    path = write_config(project.parent, automation={key: value})
    with pytest.raises(ConfigError, match=f'"automation.{key}"') as caught:
        load_config(path)
    assert words in str(caught.value)


def _config_with(project: Path, mutate) -> Path:
    raw = json.loads(project.read_text())
    mutate(raw)
    project.write_text(json.dumps(raw))
    return project


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c.pop("output_model_path"), '"output_model_path" is missing'),
        (lambda c: c.update(colour="blue"), 'Unknown config key "colour"'),
        (lambda c: c.update(input_folder_path=3), '"input_folder_path"'),
        (lambda c: c.update(input_folder_path="nowhere"), 'does not exist'),
        (lambda c: c.update(model={"C": "big"}), '"model.C"'),
        (lambda c: c.update(model={"max_iter": True}), '"model.max_iter"'),
        (lambda c: c.update(model={"solvr": "lbfgs"}), '"model.solvr"'),
        (lambda c: c.update(model={"solver": "magic"}), '"model.solver"'),
        (lambda c: c.update(automation={"drift_test": "vibes"}), '"automation.drift_test"'),
        (lambda c: c.update(automation=[]), '"automation"'),
        (lambda c: c.update(max_id_length=0), '"max_id_length"'),
        (lambda c: c.update(max_id_length=1001), '"max_id_length"'),
        (lambda c: c.update(max_id_length=True), '"max_id_length"'),
        (lambda c: c.update(max_id_length="200"), '"max_id_length"'),
        (lambda c: c.update(max_id_length=20.5), '"max_id_length"'),
        (lambda c: c.update(reporting={"calls_per_cycle": 0}), '"reporting.calls_per_cycle"'),
        (lambda c: c.update(reporting={"calls_per_cycle": "fifty"}), '"reporting.calls_per_cycle"'),
        (lambda c: c.update(reporting={"calls_per_cycle": 50.0}), '"reporting.calls_per_cycle"'),
        (lambda c: c.update(reporting={"calls_per_week": 50}), '"reporting.calls_per_week"'),
        (lambda c: c.update(reporting={"keep_rankings": 1}), '"reporting.keep_rankings"'),
        (lambda c: c.update(reporting=[]), '"reporting"'),
        (lambda c: c.update(api={"metrics_open_on_loopback": "yes"}), '"api.metrics_open_on_loopback"'),
        (lambda c: c.update(api={"metrics_open": True}), 'Unknown config key "api.metrics_open"'),
        (lambda c: c.update(api=True), '"api"'),
        (lambda c: c.update(output_model_path="models\x00/../x"), '"output_model_path" in'),  # no traceback
    ],
)
def test_bad_config_is_one_sentence_naming_key_and_file(project: Path, mutate, expected):
    path = _config_with(project, mutate)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert expected in message
    assert str(path) in message
    assert "\n" not in message


def test_the_calls_per_cycle_are_configurable(project: Path):
    config = load_config(_config_with(project, lambda c: c.update(reporting={"calls_per_cycle": 12})))
    assert config.reporting == {**REPORTING_DEFAULTS, "calls_per_cycle": 12}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", ""])
def test_malformed_config_file_is_refused(tmp_path: Path, content: str):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)


@pytest.mark.parametrize(("content", "words"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),  # json.loads' RecursionError was a traceback
    ('{"model": {"C": 1.0}, "model": {"C": 0.5}}', 'the key "model" twice'),  # the last one won, silently
    ('{"model": {"C": 1.0, "C": 0.5}}', 'the key "C" twice'),
])
def test_a_config_json_cannot_read_as_intended_is_one_sentence(tmp_path: Path, content: str, words: str):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert words in str(caught.value) and str(path) in str(caught.value)


def test_a_config_that_is_a_pipe_is_refused_without_waiting(tmp_path: Path):
    path = tmp_path / "config.json"
    os.mkfifo(path)  # reading it would block until a writer came
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(path)


@pytest.mark.slow
@pytest.mark.parametrize("script", ["ingestion.py", "training.py", "scoring.py", "deployment.py"])
def test_scripts_answer_a_bad_config_with_exit_2_and_no_traceback(tmp_path: Path, script: str):
    bad = write_config(tmp_path, input_folder_path="missing-folder")
    result = run_script(script, "--config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert '"input_folder_path"' in result.stderr and str(bad) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_missing_config_file_exit_2(tmp_path: Path):
    result = run_script("training.py", "--config", str(tmp_path / "nope.json"), cwd=tmp_path)
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_max_id_length_defaults_to_200_and_can_be_set(project: Path):
    assert load_config(project).max_id_length == 200
    assert load_config(_config_with(project, lambda c: c.update(max_id_length=12))).max_id_length == 12


@pytest.mark.parametrize(("value", "words"), [
    (-0.1, "from 0 (no measurement group) to 0.5"), (0.6, "to 0.5"), (float("nan"), "to 0.5"),
    ("10%", "an integer or a number"), (True, "an integer or a number"),
])
def test_the_control_share_is_checked_at_load(project: Path, value, words):
    path = _config_with(project, lambda c: c.update(reporting={"control_share": value}))
    with pytest.raises(ConfigError, match='"reporting.control_share"') as caught:
        load_config(path)
    assert words in str(caught.value) and str(path) in str(caught.value)


def test_the_control_share_is_off_by_default_and_configurable(project: Path):
    assert load_config(project).reporting["control_share"] == 0
    config = load_config(_config_with(project, lambda c: c.update(reporting={"control_share": 0.1})))
    assert config.reporting["control_share"] == 0.1 and config.reporting["calls_per_cycle"] == 50
