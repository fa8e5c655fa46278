"""What the client managers' pages show, gathered from the project's files and kept between requests.

The call list is the API's own (RiskService.call_list, the one GET /risk pages through): the
ingested clients' latest snapshots, those who have not left, ranked by the deployed model's
log-odds (riskcore.report.call_list), built once per release and version of finaldata.csv. The page adds a
rank, the probability and a lower-cased id for the search, once per list, and each shown row's
reasons (riskcore.model.reasons). The run history, the model's quality and the drift charts are kept
until their files change, and a rendered page of GET / until one of the files it shows changes.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riskcore.api import serving
from riskcore.api.page_health import chart_drift, model_quality
from riskcore.api.serving import RiskService, Served, file_signature
from riskcore.config import Config
from riskcore.contract import FEATURES, ID_COLUMN, RISK_SCORES, RUN_HISTORY, TARGET, UserError
from riskcore.data.input_files import list_input_files
from riskcore.ops.history import read_history
from riskcore.release.operator_state import CONTROL_FILE

PAGE_SIZE = 50  # clients per page of the call list
RENDERED_PAGES = 64  # pages of GET / kept rendered, for one state of the files they show
SNAPSHOT_LOOKUPS = 32  # clients whose rows in the input files are kept
NUMBERED_REPORT = re.compile(r"^summary_report(\d*)\.pdf$")


# --- The call list ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CallList:
    """The clients to call, riskiest first, as the page pages and searches them."""

    release: str
    model_version: str
    ranking: Any  # polars DataFrame: id, log-odds, the features; rank, probability, id in lower case
    left: int  # clients left out because their latest snapshot says they left
    explainer: Any  # riskcore.model.reasons.Explainer, or None for a model whose metadata predates the reasons
    average_log_odds: float | None

    @property
    def clients(self) -> int:
        return self.ranking.height

    def page(self, number: int, query: str = "") -> tuple[list[dict[str, Any]], int, int, int]:
        """(the rows of a page, the page number shown, the number of pages, the rows in all) of the list or a search.

        A search keeps the clients whose id contains the query, whatever the case; a page past the
        last one shows the last one.
        """
        import polars as pl

        rows = self.ranking
        if query:
            rows = rows.filter(pl.col("search").str.contains(query.lower(), literal=True))
        pages = max(1, -(-rows.height // PAGE_SIZE))
        number = min(max(number, 1), pages)
        shown = rows.slice((number - 1) * PAGE_SIZE, PAGE_SIZE).to_dicts()
        return [self.with_reasons(row) for row in shown], number, pages, rows.height

    def client(self, client_id: str) -> dict[str, Any] | None:
        """A client's ranked row (its latest snapshot) with its reasons, or None."""
        import polars as pl

        found = self.ranking.filter(pl.col(ID_COLUMN) == client_id)
        return self.with_reasons(found.row(0, named=True)) if found.height else None

    def with_reasons(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row with its reasons, in the order riskcore.model.reasons lists them (none without an explainer)."""
        values = [row[feature] for feature in FEATURES]
        return {**row, "reasons": self.explainer.reasons(values) if self.explainer is not None else []}


def page_list(built: serving.CallList) -> CallList:
    """The page's view of the API's call list: each client's rank, probability and searchable id."""
    import polars as pl

    from riskcore.report.call_list import KEY, probability

    frame = built.frame.with_row_index("rank", offset=1).with_columns(
        probability=probability(built.frame[KEY]), search=pl.col(ID_COLUMN).str.to_lowercase())
    return CallList(release=built.served.release, model_version=built.served.model_version, ranking=frame,
                    left=built.about["left_out"]["left"], explainer=built.served.explainer,
                    average_log_odds=built.about["average_log_odds"])


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


# --- The caches ------------------------------------------------------------------------------
class PageCache:
    """What the pages keep between requests, each part rebuilt only when its files change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: tuple[Any, CallList] | None = None
        self._history: tuple[Any, list[dict[str, Any]]] | None = None
        self._quality: tuple[Any, dict[str, Any]] | None = None
        self._charts: tuple[Any, dict[str, Any]] | None = None
        self._snapshots: dict[Any, list[dict[str, Any]] | None] = {}
        self._rendered: dict[Any, str] = {}
        self._rendered_state: Any = None

    def call_list(self, risk: RiskService, served: Served) -> CallList | str:
        """The call list, or the one sentence saying why there is none."""
        built = risk.call_list(served)
        if not isinstance(built, serving.CallList):
            return json.loads(built[1])["message"]  # the 503 GET /risk answers
        entry = self._calls
        if entry is None or entry[0] is not built:
            entry = (built, page_list(built))
            self._calls = entry
        return entry[1]

    def history(self, risk: RiskService) -> list[dict[str, Any]]:
        """The automation's runs, oldest first (riskcore.ops.history), read again only when the file changed."""
        path = risk.config.output_model_folder / RUN_HISTORY
        return self._kept("_history", file_signature(path), lambda: read_history(path))

    def quality(self, risk: RiskService, served: Served, runs: list[dict[str, Any]]) -> dict[str, Any]:
        """page_health.model_quality, measured again for another release, test data or history."""
        key = (served.release, file_signature(risk.config.test_data_file), len(runs),
               runs[-1].get("finished_at") if runs else None)
        return self._kept("_quality", key, lambda: model_quality(risk, served, runs))

    def drift_charts(self, risk: RiskService, served: Served | None, check: dict[str, Any],
                     drifted: list[dict[str, Any]]) -> dict[str, Any]:
        """page_health.chart_drift's charts, drawn again for another check, release or version of the data."""
        key = (check.get("run_id") or check.get("started_at"), served.release if served else None,
               file_signature(risk.config.final_data_file))
        return self._kept("_charts", key, lambda: chart_drift(risk, served, check, drifted))

    def _kept(self, name: str, key: Any, build: Callable[[], Any]) -> Any:
        entry = getattr(self, name)
        if entry is None or entry[0] != key:
            entry = (key, build())
            setattr(self, name, entry)
        return entry[1]

    def snapshots(self, config: Config, client_id: str) -> list[dict[str, Any]] | None:
        """input_snapshots, kept for the last SNAPSHOT_LOOKUPS clients while the input files stay the same."""
        folder = config.input_folder
        files = () if folder is None or not folder.is_dir() else tuple(
            (path.name, file_signature(path)) for path in list_input_files(folder)[0])
        key = (client_id, files)
        if key not in self._snapshots:
            found = input_snapshots(config, client_id)
            with self._lock:
                if len(self._snapshots) >= SNAPSHOT_LOOKUPS:
                    self._snapshots.pop(next(iter(self._snapshots)))
                self._snapshots[key] = found
        return self._snapshots[key]

    def rendered(self, state: Any, key: Any, render: Callable[[], str]) -> str:
        """A page rendered once for a state of the files it shows (page_state); the same text until it changes.

        Rendering a page of 50 clients with their reasons takes 3-4 ms (measured on the bundled data), over
        ten times what GET /health takes in all; a rendered page is served in about twice that.
        """
        with self._lock:
            if state != self._rendered_state:
                self._rendered, self._rendered_state = {}, state
            page = self._rendered.get(key)
        if page is None:
            page = render()
            with self._lock:
                if state == self._rendered_state:
                    if len(self._rendered) >= RENDERED_PAGES:
                        self._rendered.pop(next(iter(self._rendered)))
                    self._rendered[key] = page
        return page


def page_state(risk: RiskService, pointer: str | None, served: Served | None) -> tuple:
    """What GET / shows depends on: the release served and the files the page reads (one stat each)."""
    folder = risk.config.output_model_folder
    return (pointer, served.release if served else None, file_signature(risk.config.final_data_file),
            file_signature(risk.config.test_data_file), file_signature(folder / RUN_HISTORY),
            file_signature(folder / RISK_SCORES), file_signature(folder),
            file_signature(risk.config.prod_deployment_folder / CONTROL_FILE))  # a rollback or pin: the banner


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
