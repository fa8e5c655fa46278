"""What the client managers' pages show, gathered from the project's files and kept between requests.

The call list is ranked once per deployed release and version of finaldata.csv by riskcore.risklist
(each client's latest snapshot, those who have not left, by the model's log-odds), and a page of it
is a slice. The run history is read once per version of runhistory.sqlite, and a
rendered page of GET / is kept until one of the files it shows changes (page_state).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riskcore.api.serving import RiskService, Served, file_signature
from riskcore.config import Config
from riskcore.contract import FEATURE_LABELS, FEATURES, ID_COLUMN, RISK_SCORES, RUN_HISTORY, TARGET, UserError
from riskcore.history import read_history
from riskcore.inputs import list_input_files

log = logging.getLogger(__name__)

PAGE_SIZE = 50  # clients per page of the call list
HISTORY_ROWS = 20  # newest runs shown in the run history table
RENDERED_PAGES = 64  # pages of GET / kept rendered, for one state of the files they show
SNAPSHOT_LOOKUPS = 32  # clients whose snapshots in the input files are kept
CHECK_COLUMNS = ("f1_new_data", "drift_verdict", "data_drift")  # a run that holds any of them made a drift check
NUMBERED_REPORT = re.compile(r"^summary_report(\d*)\.pdf$")
DECISIONS = {
    "retrain": "the model was retrained and redeployed",
    "keep": "the model was kept",
    "first deployment": "a first model was deployed",
}


# --- The call list ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CallList:
    """Every client's latest snapshot, riskiest first, as the deployed model ranks them."""

    release: str
    model_version: str
    ranking: Any  # polars DataFrame: rank, id, log-odds, features, probability, id in lower case (for search)
    left: int  # clients left out because their latest snapshot says they left

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
        return rows.slice((number - 1) * PAGE_SIZE, PAGE_SIZE).to_dicts(), number, pages, rows.height

    def client(self, client_id: str) -> dict[str, Any] | None:
        """A client's ranked row (its latest snapshot), or None."""
        import polars as pl

        found = self.ranking.filter(pl.col(ID_COLUMN) == client_id)
        return found.row(0, named=True) if found.height else None


def rank_clients(served: Served, path: Path) -> CallList:
    """The clients of a CSV ranked by the served model: riskcore.risklist's ranking, the one risk_scores.csv has."""
    import polars as pl

    from riskcore.risklist import KEY, probability, ranking_of

    ranking = ranking_of(path, served.model)
    frame = ranking.frame.with_row_index("rank", offset=1).with_columns(
        probability=probability(ranking.frame[KEY]), search=pl.col(ID_COLUMN).str.to_lowercase())
    return CallList(release=served.release, model_version=served.model_version, ranking=frame, left=ranking.left)


def input_snapshots(config: Config, client_id: str) -> list[dict[str, Any]] | None:
    """Every row of a client in the input files, oldest first (files in name order, as ingestion reads them).

    None when the clients come from a database table. A file that breaks the data contract is left
    out, as ingestion leaves it out.
    """
    import polars as pl

    from riskcore.schema import read_client_frame

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
        self._calls: tuple[Any, CallList | str] | None = None
        self._history: tuple[Any, list[dict[str, Any]]] | None = None
        self._rendered: dict[Any, str] = {}
        self._rendered_state: Any = None
        self._snapshots: dict[Any, list[dict[str, Any]] | None] = {}
        self._charts: tuple[Any, dict[str, Any]] | None = None

    def call_list(self, risk: RiskService, served: Served) -> CallList | str:
        """The ranked call list, or the one sentence saying why there is none."""
        key = (served.release, file_signature(risk.config.final_data_file))
        entry = self._calls
        if entry is not None and entry[0] == key:
            return entry[1]
        with self._lock:  # one thread ranks; the others wait for its answer
            entry = self._calls
            if entry is not None and entry[0] == key:
                return entry[1]
            built: CallList | str
            if key[1] is None:
                built = "No ingested data (finaldata.csv) yet; run ingestion.py first."
            else:
                try:
                    built = rank_clients(served, risk.config.final_data_file)
                except UserError as exc:
                    log.error("the call list cannot be built: %s", exc)
                    built = f"The call list cannot be built: {exc}"
            self._calls = (key, built)
            return built

    def history(self, risk: RiskService) -> list[dict[str, Any]]:
        """The automation's runs, oldest first (riskcore.history), read again only when the file changed."""
        path = risk.config.output_model_folder / RUN_HISTORY
        key = file_signature(path)
        entry = self._history
        if entry is None or entry[0] != key:
            entry = (key, read_history(path))
            self._history = entry
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

    def drift_charts(self, risk: RiskService, served: Served | None, check: dict[str, Any],
                     drifted: list[dict[str, Any]]) -> dict[str, Any]:
        """chart_drift's charts, drawn again only for another check, release or version of the ingested data."""
        key = (check.get("run_id") or check.get("started_at"), served.release if served else None,
               file_signature(risk.config.final_data_file))
        entry = self._charts
        if entry is None or entry[0] != key:
            entry = (key, chart_drift(risk, served, check, drifted))
            self._charts = entry
        return entry[1]

    def rendered(self, state: Any, key: Any, render: Callable[[], str]) -> str:
        """A page rendered once for a state of the files it shows (page_state); the same text until it changes.

        Rendering 50 rows with Jinja takes about 1 ms in this process: three times GET /health in all.
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
            file_signature(folder / RISK_SCORES), file_signature(folder))


# --- The model's health, the run history, the downloads --------------------------------------
def model_health(risk: RiskService, served: Served | None, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The deployed model, its F1 on the test data, the latest drift check, and the newest runs."""
    health: dict[str, Any] = {"served": served, "threshold": float(risk.config.automation["psi_threshold"]),
                              "scoring": None, "scoring_note": None}
    if served is not None:
        status, body = risk.scoring(served)  # GET /scoring's cached answer
        scoring = json.loads(body)
        health["scoring" if status == 200 else "scoring_note"] = scoring if status == 200 else scoring["message"]
    checks = [run for run in runs if any(run.get(key) is not None for key in CHECK_COLUMNS)]
    health["check"] = checks[-1] if checks else None
    health["sentence"] = check_sentence(checks[-1]) if checks else None
    health["drifted"] = drifted_features(health["check"])
    health["runs"] = runs[::-1][:HISTORY_ROWS]
    health["older_runs"] = max(0, len(runs) - HISTORY_ROWS)
    return health


def when(stamp: Any) -> str:
    """An ISO UTC time stamp as "2026-11-26 07:02 UTC"."""
    text = str(stamp or "")
    return f"{text[:10]} {text[11:16]} UTC" if len(text) >= 16 and text[10] == "T" else text or "\N{EM DASH}"


def new_rows(run: dict[str, Any]) -> int | None:
    """The rows a run checked: its new rows (rows_new), or for runs recorded before that column, all it ingested."""
    return run["rows_new"] if run.get("rows_new") is not None else run.get("rows_ingested")


def check_sentence(check: dict[str, Any]) -> str:
    """A drift check in one sentence: when, on what, the recorded verdict, and what was done."""
    rows = f"{new_rows(check):,} new rows" if new_rows(check) else "the new data"
    verdict = check.get("drift_verdict") or (f"F1 {check['f1_new_data']:.4f} on the new data"
                                             if check.get("f1_new_data") is not None else "data drift measured")
    done = DECISIONS.get(check.get("decision") or "", f"decision: {check.get('decision') or 'not recorded'}")
    return f"{when(check.get('started_at'))}, {rows}: {verdict}; {done}."


def drifted_features(check: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The features the check found drifted, as it recorded them (PSI, its label, KS)."""
    features = ((check or {}).get("data_drift") or {}).get("features") or {}
    return [{"feature": name, "label": FEATURE_LABELS.get(name, name), **values}
            for name, values in features.items() if isinstance(values, dict) and values.get("drift")]


def training_quantiles(prod: Path, served: Served | None, version: str) -> dict[str, list[float]]:
    """The training-data quantiles of model `version`: the served model's, or those of a release still kept."""
    from riskcore.releases import deployed_metadata, deployment_history, read_release

    try:
        if served is not None and version == served.model_version:
            metadata = deployed_metadata(served.deployment)
        else:
            found = [item["release"] for item in deployment_history(prod) if item["model_version"] == version]
            if not found:
                log.info("model %s is in no release kept: its training data is not charted", version)
                return {}
            metadata = deployed_metadata(read_release(prod, found[-1]))
    except (UserError, ValueError, KeyError) as exc:
        log.warning("the training data of model %s cannot be charted: %s", version, exc)
        return {}
    return (metadata.get("training_profile") or {}).get("quantiles") or {}


def ingested_quantiles(path: Path, points: int) -> dict[str, list[float]]:
    """Each feature's quantiles in the ingested data, as many as a training profile holds."""
    import numpy as np

    from riskcore.schema import read_client_frame

    try:
        frame = read_client_frame(path, require_target=False)
    except UserError as exc:
        log.warning("the ingested data cannot be charted: %s", exc)
        return {}
    return {f: np.quantile(frame[f].drop_nulls().to_numpy().astype("float64"), np.linspace(0, 1, points)).tolist()
            for f in FEATURES if frame[f].drop_nulls().len()}


def chart_drift(risk: RiskService, served: Served | None, check: dict[str, Any],
                drifted: list[dict[str, Any]]) -> dict[str, Any]:
    """A chart per drifted feature (riskcore.api.pagecharts): the training data of the model the check
    tested (after a retrain, the old model) beside the ingested data."""
    from riskcore.api.pagecharts import distribution_chart

    version = check.get("version_before") or (served.model_version if served else None)
    reference = training_quantiles(risk.config.prod_deployment_folder, served, version) if version else {}
    compared = ingested_quantiles(risk.config.final_data_file, len(next(iter(reference.values()))))\
        if reference and risk.config.final_data_file.is_file() else {}
    charts = {f["feature"]: distribution_chart(reference.get(f["feature"]), compared.get(f["feature"]))
              for f in drifted}
    return {"model_version": version, "charts": charts}


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
