"""Model settings are refused when the config is loaded, not at the first retrain (exit 2, one sentence)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import run_script
from riskcore.config import load_config
from riskcore.contract import EXIT_CONFIG, ConfigError
from riskcore.model.training import check_settings, train

BAD_SETTINGS = [
    ('"C": NaN', "model.C"),
    ('"tol": Infinity', "model.tol"),
    ('"intercept_scaling": 0', "model.intercept_scaling"),
    ('"max_iter": 100000000000000000000', "model.max_iter"),
    ('"random_state": 99999999999', "model.random_state"),
    ('"random_state": -1', "model.random_state"),
    ('"class_weight": {"2": 1}', "model.class_weight"),
    ('"class_weight": {"1": -3}', "model.class_weight.1"),
    ('"class_weight": "heavy"', "model.class_weight"),
]


def with_model(project: Path, settings: str) -> Path:
    """The project's config with a "model" section written as raw JSON text (NaN and big integers kept)."""
    raw = json.loads(project.read_text(encoding="utf-8"))
    text = json.dumps(raw)[:-1] + ', "model": {' + settings + "}}"
    project.write_text(text, encoding="utf-8")
    return project


@pytest.mark.parametrize("settings, key", BAD_SETTINGS)
def test_bad_setting_is_refused_at_load_naming_the_key(project: Path, settings: str, key: str):
    path = with_model(project, settings)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f'"{key}"' in message and str(path) in message
    assert "\n" not in message


@pytest.mark.slow
@pytest.mark.parametrize("settings, key", BAD_SETTINGS[:5])
def test_training_script_exits_2_with_one_sentence(project: Path, settings: str, key: str, tmp_path: Path):
    result = run_script("training.py", "--config", str(with_model(project, settings)), cwd=tmp_path)
    assert result.returncode == EXIT_CONFIG
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and f'"{key}"' in line


def test_class_weight_object_with_json_keys_trains(project: Path):
    import ingestion

    config = load_config(with_model(project, '"class_weight": {"0": 1, "1": 3}'))
    assert config.model["class_weight"] == {0: 1, 1: 3}
    ingestion.run(config)
    metadata = train(config)
    assert metadata["settings"]["class_weight"] == {0: 1, 1: 3}


def test_scikit_learn_rules_apply_before_any_step(project: Path):
    # Valid JSON types that pass the standard-library checks but break scikit-learn's own rules.
    config = load_config(with_model(project, '"solver": "liblinear", "fit_intercept": true'))
    check_settings(config)  # the course's settings pass
    bad = config.replace(model={**config.model, "solver": "newton-cholesky", "class_weight": {0: 1, 1: 2},
                                "max_iter": 100, "C": 1.0, "tol": "0.1"})
    with pytest.raises(ConfigError, match=r'"model.tol"'):
        check_settings(bad)


def test_scikit_learn_rules_check_does_not_spin_on_settings_the_solver_spins_on(project: Path):
    # The check fits in the tick's own process, where no time limit stops C code: with these settings a full
    # fit on its four rows took 94 s (saga), and a tick given 20 s (automation.max_run_seconds) took 78 s.
    config = load_config(with_model(project, '"solver": "saga", "C": 1e6, "intercept_scaling": 1e6, '
                                             '"tol": 1e-300, "max_iter": 2147483647'))
    start = time.monotonic()
    check_settings(config)
    assert time.monotonic() - start < 10
    assert config.model["max_iter"] == 2147483647  # the settings trained on stay the operator's
