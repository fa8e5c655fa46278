"""`make cron` quotes every path it writes: a project in a folder named with a space and an & still runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, make_project, system_missing
from riskcore.config import load_config
from riskcore.release.load import current_deployment

pytestmark = pytest.mark.slow

PROJECT_FILES = ("Makefile", "cronjob.txt", "requirements.txt", "fullprocess.py", "ingestion.py", "training.py",
                 "scoring.py", "deployment.py", "diagnostics.py", "reporting.py", "apicalls.py", "app.py", "wsgi.py")


def crontab_lines() -> list[str]:
    listed = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return listed.stdout.splitlines() if listed.returncode == 0 else []


@pytest.fixture
def awkward_project(tmp_path: Path) -> Path:
    """A copy of the project in a folder whose name has a space and an &, with its own data and config."""
    if not shutil.which("crontab"):
        system_missing("the cron package is not installed (make test installs it as root)")
    folder = tmp_path / "risk proj & co"
    folder.mkdir()
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, folder / name)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "riskcore", folder / "riskcore", ignore=ignore)
    shutil.copytree(ROOT / "tools", folder / "tools", ignore=ignore)
    (folder / ".venv").symlink_to(ROOT / ".venv")
    make_project(folder)
    return folder


def test_installed_line_runs_from_a_path_with_a_space_and_an_ampersand(awkward_project: Path):
    config_file = awkward_project / "config.json"
    make = ["make", "-s", "-C", str(awkward_project), "-o", ".venv/.runtime-stamp"]
    try:
        subprocess.run([*make, "cron", "CRON_SCHEDULE=* * * * *"], check=True, capture_output=True, text=True)
        ours = [line for line in crontab_lines() if "risk proj & co" in line]
        assert len(ours) == 1
        assert f"cd '{awkward_project}' &&" in ours[0]
        command = ours[0].split(None, 5)[5]
        # What cron does with the line: hand it to /bin/sh from the home folder.
        ran = subprocess.run(["/bin/sh", "-c", command], cwd=Path.home(), capture_output=True, text=True, timeout=300)
        log = (awkward_project / "logs" / "cron.log").read_text(encoding="utf-8")
        assert "nothing deployed yet" in log, ran.stderr + log
        assert ran.returncode == 1 and "http://127.0.0.1:8000" in log, log  # no API answers the run's API calls here
        assert current_deployment(load_config(config_file).prod_deployment_folder) is not None
    finally:
        subprocess.run([*make, "uncron"], check=True, capture_output=True)
    assert not [line for line in crontab_lines() if "risk proj & co" in line]


def cronjob_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cronjob", ROOT / "tools" / "cronjob.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("processes", "expected"), [({"1": "init", "7": "bash"}, False),
                                                      ({"1": "init", "9": "cron"}, True),
                                                      ({"12": "crond"}, True)])
def test_make_cron_can_tell_whether_a_cron_daemon_runs(tmp_path: Path, processes: dict, expected: bool):
    for pid, name in processes.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "comm").write_text(name + "\n")
    (tmp_path / "self").mkdir()
    assert cronjob_module().cron_daemon_running(tmp_path) is expected
    assert cronjob_module().cron_daemon_running(tmp_path / "missing") is None
