"""The API key: from the environment or from an owner-only key file, refused when no header could carry it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from riskcore.api.key import api_key
from riskcore.config import load_config
from riskcore.contract import API_KEY_ENV, API_KEY_FILE_ENV, ConfigError


@pytest.mark.parametrize("key, problem", [("two words", "space"), ("line\nbreak", "line break"),
                                          ("clé", "printable ASCII"), ("x" * 300, "longer than"),
                                          ("s3cret", "is 6 characters long; use at least 16"),
                                          ("y" * 15, "is 15 characters long; use at least 16")])
def test_a_key_no_header_can_carry_is_refused(key: str, problem: str):
    with pytest.raises(ConfigError, match=problem) as caught:
        api_key(environ={API_KEY_ENV: key})
    assert "\n" not in str(caught.value) and key not in str(caught.value)


def test_a_key_of_the_minimum_length_is_taken():
    assert api_key(environ={API_KEY_ENV: "k" * 16}) == "k" * 16


def test_no_key_means_an_open_api():
    assert api_key(environ={}) is None


def test_the_environment_key_comes_first(tmp_path: Path):
    assert api_key(environ={API_KEY_ENV: "s3cret-key-for-tests", API_KEY_FILE_ENV: str(tmp_path / "none")}) == "s3cret-key-for-tests"


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path):
    key_file = tmp_path / "api.key"
    key_file.write_text("s3cret-key-for-tests\n", encoding="ascii")
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        api_key(environ={API_KEY_FILE_ENV: str(key_file)})
    key_file.chmod(0o600)
    assert api_key(environ={API_KEY_FILE_ENV: str(key_file)}) == "s3cret-key-for-tests"


def test_the_config_can_name_the_key_file(project: Path):
    (project.parent / "api.key").write_text("from-the-key-file\n", encoding="ascii")
    (project.parent / "api.key").chmod(0o600)
    raw = json.loads(project.read_text())
    raw["automation"] = {"api_key_file": "api.key"}
    project.write_text(json.dumps(raw))
    assert api_key(load_config(project), environ={}) == "from-the-key-file"


# --- A running server notices a changed key (issue 21) -----------------------------------------
def write_key(path: Path, key: str) -> None:
    """Replace the key file as an operator's editor or `install -m 600` would: a new file renamed into place."""
    fresh = path.with_suffix(".new")
    fresh.write_text(f"{key}\n", encoding="ascii")
    fresh.chmod(0o600)
    fresh.replace(path)


@pytest.fixture
def keyed_app(deployed, tmp_path: Path, monkeypatch):
    import app as app_module
    from riskcore.api import key as key_module

    monkeypatch.setattr(key_module, "KEY_CHECK_SECONDS", 0.05)
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    key_file = tmp_path / "api.key"
    write_key(key_file, "old-key-of-the-tests")
    monkeypatch.setenv(API_KEY_FILE_ENV, str(key_file))
    return app_module.create_app(deployed.config_file), key_file


def test_a_changed_key_file_replaces_the_key_within_seconds(keyed_app):
    import time

    app, key_file = keyed_app
    client = app.test_client()
    assert client.get("/scoring", headers={"X-API-Key": "old-key-of-the-tests"}).status_code == 200
    write_key(key_file, "new-key-of-the-tests")
    time.sleep(0.1)
    assert client.get("/scoring", headers={"X-API-Key": "old-key-of-the-tests"}).status_code == 401
    assert client.get("/scoring", headers={"X-API-Key": "new-key-of-the-tests"}).status_code == 200


def test_a_changed_key_ends_the_pages_cookie(keyed_app):
    import time

    app, key_file = keyed_app
    client = app.test_client()
    signed_in = client.post("/login", data={"key": "old-key-of-the-tests", "next": "/"})
    assert signed_in.status_code == 303
    assert client.get("/").status_code == 200
    write_key(key_file, "new-key-of-the-tests")
    time.sleep(0.1)
    assert client.get("/").status_code == 303  # back to the key form
    assert client.post("/login", data={"key": "old-key-of-the-tests", "next": "/"}).status_code == 200  # refused: the form again
    assert client.post("/login", data={"key": "new-key-of-the-tests", "next": "/"}).status_code == 303
    assert client.get("/").status_code == 200


def test_a_key_file_made_unsafe_refuses_requests_until_fixed(keyed_app):
    import time

    app, key_file = keyed_app
    client = app.test_client()
    key_file.chmod(0o644)
    time.sleep(0.1)
    refused = client.get("/scoring", headers={"X-API-Key": "old-key-of-the-tests"})
    assert refused.status_code == 503 and "chmod 600" in refused.get_json()["message"]
    assert "old-key-of-the-tests" not in refused.get_data(as_text=True)
    assert client.get("/health").status_code == 200  # liveness needs no key
    key_file.chmod(0o600)
    time.sleep(0.1)
    assert client.get("/scoring", headers={"X-API-Key": "old-key-of-the-tests"}).status_code == 200


def test_the_key_file_is_not_read_again_while_it_is_unchanged(keyed_app, monkeypatch):
    import time

    from riskcore.api import key as key_module

    app, _ = keyed_app
    reads = []
    real = key_module.read_key_file
    monkeypatch.setattr(key_module, "read_key_file", lambda path: reads.append(path) or real(path))
    client = app.test_client()
    for _ in range(3):
        time.sleep(0.06)
        assert client.get("/scoring", headers={"X-API-Key": "old-key-of-the-tests"}).status_code == 200
    assert reads == []
