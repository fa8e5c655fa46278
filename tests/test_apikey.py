"""The API key: from the environment or from an owner-only key file, refused when no header could carry it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from riskcore.api.key import api_key
from riskcore.config import load_config
from riskcore.contract import API_KEY_ENV, API_KEY_FILE_ENV, ConfigError


@pytest.mark.parametrize("key, problem", [("two words", "space"), ("line\nbreak", "line break"),
                                          ("clé", "printable ASCII"), ("x" * 300, "longer than")])
def test_a_key_no_header_can_carry_is_refused(key: str, problem: str):
    with pytest.raises(ConfigError, match=problem) as caught:
        api_key(environ={API_KEY_ENV: key})
    assert "\n" not in str(caught.value) and key not in str(caught.value)


def test_no_key_means_an_open_api():
    assert api_key(environ={}) is None


def test_the_environment_key_comes_first(tmp_path: Path):
    assert api_key(environ={API_KEY_ENV: "s3cret-key", API_KEY_FILE_ENV: str(tmp_path / "none")}) == "s3cret-key"


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path):
    key_file = tmp_path / "api.key"
    key_file.write_text("s3cret-key\n", encoding="ascii")
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        api_key(environ={API_KEY_FILE_ENV: str(key_file)})
    key_file.chmod(0o600)
    assert api_key(environ={API_KEY_FILE_ENV: str(key_file)}) == "s3cret-key"


def test_the_config_can_name_the_key_file(project: Path):
    (project.parent / "api.key").write_text("from-the-file\n", encoding="ascii")
    (project.parent / "api.key").chmod(0o600)
    raw = json.loads(project.read_text())
    raw["automation"] = {"api_key_file": "api.key"}
    project.write_text(json.dumps(raw))
    assert api_key(load_config(project), environ={}) == "from-the-file"
