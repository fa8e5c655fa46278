"""What the client managers' pages show, gathered from the project's files and kept between requests.

The call list is the API's own (RiskService.call_list, the one GET /risk pages through): the
ingested clients' latest snapshots, those who have not left, ranked by the deployed model's
log-odds (riskcore.report.call_list), built once per release and version of finaldata.csv; the page
shows each row with its reasons (riskcore.model.reasons). The run history is the API's too
(RiskService.history). The model's quality, the drift charts, a client's earlier snapshots and a
rendered page of GET / are kept in the API's one file cache until a file they show changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from riskcore.api.page_health import chart_drift, model_quality
from riskcore.api.serving import RiskService, Served
from riskcore.config import Config
from riskcore.contract import CALLS_STORE, ID_COLUMN, RISK_SCORES, RUN_HISTORY, TARGET, UserError
from riskcore.data.input_files import list_input_files
from riskcore.release.operator_state import CONTROL_FILE

PAGE_SIZE = 50  # clients per page of the call list (the page takes reporting.calls_per_cycle)
RENDERED_PAGES = 64  # pages of GET / kept rendered (searches and page numbers), the newest ones
SNAPSHOT_LOOKUPS = 32  # clients whose rows in the input files are kept
NUMBERED_REPORT = re.compile(r"^summary_report(\d*)\.pdf$")


def input_snapshots(config: Config, client_id: str) -> list[dict[str, Any]] | None:
    """Every row of a client in the input files, oldest first (files in name order, as ingestion reads them).

    None when the clients come from a database table. A file that breaks the data contract is left
    out, as ingestion leaves it out.
    """
    import polars as pl

    from riskcore.data.validation import read_client_frame

    if config.input_folder is None or not config.input_folder.is_dir():
        return None
    found = []
    for path in list_input_files(config.input_folder)[0]:
        try:
            frame = read_client_frame(path, require_target=False)
        except UserError:
            continue
        rows = frame.with_row_index("row", offset=1).filter(pl.col(ID_COLUMN) == client_id)
        found += [{"file": path.name, **row, "exited": row.get(TARGET)} for row in rows.iter_rows(named=True)]
    return found


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


def runs_of_client(risk: RiskService, client_id: str) -> list[dict[str, Any]]:
    """The client in each kept ranking (riskcore.report.rankings), kept until a ranking is added or dropped."""
    from riskcore.report.rankings import RANKINGS, client_across_runs

    folder = risk.config.output_model_folder
    return risk.files.get("client_runs", (folder / RANKINGS,), lambda _: client_across_runs(folder, client_id),
                          key=client_id, keep=SNAPSHOT_LOOKUPS)


def snapshots(risk: RiskService, client_id: str) -> list[dict[str, Any]] | None:
    """input_snapshots, kept for the last SNAPSHOT_LOOKUPS clients while the input files stay the same."""
    folder = risk.config.input_folder
    files = [] if folder is None or not folder.is_dir() else list_input_files(folder)[0]
    return risk.files.get("snapshots", files, lambda _: input_snapshots(risk.config, client_id),
                          key=(client_id, tuple(path.name for path in files)), keep=SNAPSHOT_LOOKUPS)


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


def downloads(folder: Path) -> dict[str, Any]:
    """The latest PDF report and the risk list, with their sizes; None for what is not there."""
    report, csv = latest_report(folder), folder / RISK_SCORES
    return {"report": report.name if report else None, "report_size": report.stat().st_size if report else None,
            "csv_size": csv.stat().st_size if csv.is_file() else None}
