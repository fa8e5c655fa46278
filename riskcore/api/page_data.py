"""What the client managers' pages show, gathered from the project's files and kept between requests.

The call list is the API's own (RiskService.call_list, the one GET /risk pages through): the
ingested clients' latest snapshots, those who have not left, ranked by the deployed model's
log-odds (riskcore.report.call_list), built once per release and version of finaldata.csv; the page
shows each row with its reasons (riskcore.model.reasons). The run history is the API's too
(RiskService.history). The model's quality, the drift charts and a rendered page of GET / are kept
in the API's one file cache until a file they show changes; a client's story is riskcore.api.client_story's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from riskcore.api.page_health import chart_drift, model_quality
from riskcore.api.risk_service import RiskService
from riskcore.api.served_model import Served
from riskcore.contract import CALLS_STORE, RISK_RECORD, RISK_SCORES, RUN_HISTORY, DataError
from riskcore.files import read_json
from riskcore.release.operator_state import CONTROL_FILE

PAGE_SIZE = 50  # clients per page of the call list (the page takes reporting.calls_per_cycle)
RENDERED_PAGES = 64  # pages of GET / kept rendered (searches and page numbers), the newest ones
NUMBERED_REPORT = re.compile(r"^summary_report(\d*)\.pdf$")


# --- Kept in the API's one file cache (riskcore.api.file_cache) ------------------------------
def quality(risk: RiskService, served: Served, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """page_health.model_quality, measured again for another release, test data or history."""
    key = (served.release, len(runs), runs[-1].get("finished_at") if runs else None)
    return risk.files.get("quality", (risk.config.test_data_file,), lambda _: model_quality(risk, served, runs),
                          key=key)


def drift_charts(risk: RiskService, served: Served | None, check: dict[str, Any],
                 drifted: list[dict[str, Any]]) -> dict[str, Any]:
    """page_health.chart_drift's charts, drawn again for another check, release or version of the data."""
    key = (check.get("run_id") or check.get("started_at"), served.release if served else None)
    return risk.files.get("drift_charts", (risk.config.final_data_file,),
                          lambda _: chart_drift(risk, served, check, drifted), key=key)


def rendered(risk: RiskService, pointer: str | None, served: Served | None, page: Any,
             render: Callable[[], str]) -> str:
    """A page rendered once for a state of the files it shows; the same text until one of them changes.

    What GET / shows depends on the release served and the files it reads (one stat each). Rendering a
    page of 50 clients with their reasons takes 3-4 ms (measured on the bundled data), over ten times
    what GET /health takes in all; a rendered page is served in about twice that.
    """
    folder = risk.config.output_model_folder
    files = (risk.config.final_data_file, risk.config.test_data_file, folder / RUN_HISTORY, folder / RISK_SCORES,
             folder, risk.config.prod_deployment_folder / CONTROL_FILE,  # the control record: a rollback or pin banner
             folder / CALLS_STORE)  # the calls recorded and the cycle's measurement group
    return risk.files.get("page", files, lambda _: render(), key=(pointer, served.release if served else None, page),
                          keep=RENDERED_PAGES)


# --- The downloads ---------------------------------------------------------------------------
def latest_report(folder: Path) -> Path | None:
    """The PDF report of the highest run number in the folder."""
    try:
        names = [(int(m.group(1) or 1), entry.name) for entry in folder.iterdir()
                 if (m := NUMBERED_REPORT.match(entry.name))]
    except (FileNotFoundError, NotADirectoryError):
        return None
    return folder / max(names)[1] if names else None


def downloads(folder: Path, served: Served | None = None) -> dict[str, Any]:
    """The latest PDF report and the risk list, with their sizes; None for what is not there.

    `made_by`: the model that made them (risk_scores.json) when it is not the one served, else None. After a
    rollback, or a run that deployed a model and failed before its reports, the page ranks with the served
    model while the downloads are the previous model's until the next tick makes them again.
    """
    report, csv = latest_report(folder), folder / RISK_SCORES
    try:
        made_by = read_json(folder / RISK_RECORD, "Risk list record", missing={}).get("model_version")
    except (DataError, AttributeError):
        made_by = None
    stale = served is not None and made_by is not None and made_by != served.model_version
    return {"report": report.name if report else None, "report_size": report.stat().st_size if report else None,
            "csv_size": csv.stat().st_size if csv.is_file() else None, "made_by": made_by if stale else None}
