"""Where a run's outputs are and how to see them: what `make run` ends by saying.

Standard library only (tools/lifecycle.sh prints these lines after a run, and must not wait for
matplotlib or reportlab to import only to name three files).
"""

from __future__ import annotations

from pathlib import Path

from riskcore.config import Config
from riskcore.contract import CONFUSION_MATRIX, DEFAULT_CONFIG, RISK_SCORES, RUN_HISTORY, SUMMARY_REPORT
from riskcore.files import highest_report_number, numbered_name

REPORTS = (CONFUSION_MATRIX, SUMMARY_REPORT)  # numbered per run; the risk list is overwritten
SERVE_HOST, SERVE_PORT = "127.0.0.1", 8000  # what `make serve` binds unless told otherwise


def project_path(path: Path, project: Path) -> str:
    """A file's name as the report gives it: relative to the project (the config file's folder) when inside it."""
    try:
        return str(path.relative_to(project))
    except ValueError:
        return str(path)


def serve_command(config: Config, host: str = SERVE_HOST, port: int = SERVE_PORT) -> str:
    """The `make serve` line that serves this config on host:port (only the settings that differ from its defaults)."""
    settings = []
    if config.config_file.resolve() != DEFAULT_CONFIG.resolve():
        settings.append(f"CONFIG={project_path(config.config_file, DEFAULT_CONFIG.parent)}")
    if host != SERVE_HOST:
        settings.append(f"HOST={host}")
    if port != SERVE_PORT:
        settings.append(f"PORT={port}")
    return " ".join(["make serve", *settings])


def where_to_look(config: Config, host: str = SERVE_HOST, port: int = SERVE_PORT) -> str:
    """Where a run's outputs are, relative to the project, and how to open the web page."""
    folder, project = config.output_model_folder, config.config_file.parent
    newest = highest_report_number(folder, REPORTS)
    reports = (f"{project_path(folder / numbered_name(SUMMARY_REPORT, newest), project)} and "
               f"{numbered_name(CONFUSION_MATRIX, newest)} beside it (run {newest}"
               + ("; earlier runs' reports are numbered beside them)" if newest > 1 else ")")
               if newest else f"none yet in {project_path(folder, project)}")
    config_name = project_path(config.config_file, project)
    return "\n".join([
        f"Reports:   {reports}",
        f"Risk list: {project_path(folder / RISK_SCORES, project)} (the clients to call, riskiest first)",
        f"History:   {project_path(folder / RUN_HISTORY, project)}: python fullprocess.py --config {config_name} "
        "--history [--format json|csv], or GET /history on the API",
        f"Web page:  {serve_command(config, host, port)}, then open http://{host}:{port}/ in a browser "
        "(with an API key set, the page asks for it once)",
    ])
