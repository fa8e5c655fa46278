"""The real cron daemon runs fullprocess.py from the installed cronjob.txt line."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from conftest import ROOT, system_missing
from riskcore.config import Config, load_config
from riskcore.contract import RUN_HISTORY
from riskcore.ops.history import read_history
from riskcore.release.load import current_deployment

pytestmark = pytest.mark.slow

WAIT_SECONDS = 150  # an every-minute job fires within 60 s; the run itself takes a few seconds


def cron_running() -> bool:
    return subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode == 0


def crontab_lines() -> list[str]:
    result = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return result.stdout.splitlines() if result.returncode == 0 else []


@pytest.fixture
def cron_project(config: Config, api_url: str):
    """The temporary project, its API up, with an every-minute cron line installed for it."""
    if not (shutil.which("crontab") and shutil.which("cron")):
        system_missing("the cron package is not installed (make test installs it as root)")
    if not cron_running():
        system_missing("the cron daemon is not running (make test starts it as root)")
    raw = json.loads(config.config_file.read_text())
    raw["automation"] = {"api_url": api_url}
    config.config_file.write_text(json.dumps(raw))
    log = config.config_file.parent / "cron.log"
    variables = [f"CRON_CONFIG={config.config_file}", f"CRON_LOG={log}"]
    subprocess.run(["make", "-s", "-C", str(ROOT), "cron", "CRON_SCHEDULE=* * * * *", *variables],
                   check=True, capture_output=True)
    try:
        yield load_config(config.config_file), log
    finally:
        subprocess.run(["make", "-s", "-C", str(ROOT), "uncron", *variables], check=True, capture_output=True)


def test_make_cron_is_idempotent_and_uncron_removes_the_line(cron_project):
    config, _ = cron_project
    variables = [f"CRON_CONFIG={config.config_file}", f"CRON_LOG={config.config_file.parent / 'cron.log'}"]
    subprocess.run(["make", "-s", "-C", str(ROOT), "cron", "CRON_SCHEDULE=* * * * *", *variables],
                   check=True, capture_output=True)
    ours = [line for line in crontab_lines() if str(config.config_file) in line]
    assert len(ours) == 1
    assert ours[0].startswith("* * * * * cd ") and "fullprocess.py" in ours[0] and ".venv/bin/python" in ours[0]


def test_cron_runs_fullprocess_for_real(cron_project):
    config, log = cron_project
    history = config.output_model_folder / RUN_HISTORY
    deadline = time.monotonic() + WAIT_SECONDS
    rows = []
    while time.monotonic() < deadline:
        rows = read_history(history) if history.exists() else []
        if rows and rows[0]["finished_at"]:
            break
        time.sleep(2)
    assert rows, f"cron did not run fullprocess.py within {WAIT_SECONDS} s; log: {log.read_text() if log.exists() else ''}"
    assert rows[0]["decision"] == "first deployment"
    assert rows[0]["outcome"] == "done", rows[0]["error"]
    assert current_deployment(config.prod_deployment_folder) is not None
    assert "step ingestion done" in log.read_text()


def test_cronjob_txt_runs_every_ten_minutes():
    line = (ROOT / "cronjob.txt").read_text().strip()
    assert line.startswith("*/10 * * * * cd @PROJECT_DIR@ && .venv/bin/python fullprocess.py")
    assert ">> @LOG@ 2>&1" in line
