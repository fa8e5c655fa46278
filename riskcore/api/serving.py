"""What one API process keeps between requests: the deployed model, per release, and answers built from files.

The model is loaded once per deployed release, after its sha256 check, with the explainer of its
reasons (riskcore.model.reasons, from its metadata); a new release is noticed on the next request (one
readlink), and a release that fails to load never replaces the model being served. Everything built
from the project's files (the answers of GET /scoring, /summarystats and /diagnostics, the call list,
the run history, the page's parts) is kept in one cache (riskcore.api.file_cache) by the release and
the signatures of those files: GET /risk pages through the call list (riskcore.report.call_list) of
the ingested data, ranked once per release and version of finaldata.csv, each row rendered once; the
page pages and searches the same list.

numpy, pandas and scikit-learn are imported with the first request that needs them, so that
creating the app (a gunicorn worker booting, `python app.py --help`) stays cheap.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from flask import current_app

from riskcore.api.errors import ApiError, error_document, json_bytes
from riskcore.api.file_cache import FileCache, Signature
from riskcore.config import Config
from riskcore.contract import (
    DIAGNOSTICS_RECORD,
    FEATURES,
    FINAL_DATA,
    ID_COLUMN,
    REVENUE,
    RUN_HISTORY,
    TEST_DATA,
    DataError,
    IntegrityError,
    UserError,
)
from riskcore.files import read_json, utc_at
from riskcore.model.reasons import Explainer, explainer_for
from riskcore.ops.calls import calls_path, group_of, latest_cycle
from riskcore.ops.history import read_history
from riskcore.release.load import (
    Deployment,
    current_deployment,
    current_release_name,
    deployed_metadata,
    load_deployed_calibrator,
    load_deployed_model,
)

log = logging.getLogger(__name__)

LOAD_ATTEMPTS = 3  # a release replaced while it loads: the newer one is tried, this many times at most
RETRY_FAILED_RELEASE_SECONDS = 30.0  # a release that failed to load is not retried on every request
BROKEN_POINTER = "current"  # stands for a deployment pointer that is not a link

Answer = tuple[int, bytes]  # an HTTP status and a JSON body, ready to send


# --- The served model ------------------------------------------------------------------------
@dataclass(frozen=True)
class Served:
    """A deployed model, loaded and checked, ready to predict."""

    deployment: Deployment
    model: Any
    positive: int  # column of predict_proba holding the attrition (class 1) probability
    explainer: Explainer | None  # None: a model trained before its metadata recorded the average client
    calibrator: Any = None  # riskcore.model.calibration.Calibrator; None: a release made before calibration

    @property
    def release(self) -> str:
        return self.deployment.release

    @property
    def model_version(self) -> str:
        return self.deployment.model_version

    def predict(self, features) -> tuple[list[int], list[float]]:
        """Class labels and attrition probabilities of feature rows.

        The label is the model's own (its decision_function's sign: what predict gives); the probability
        is the calibrated one (riskcore.model.calibration), the call list's. One decision_function call
        gives both, so scikit-learn checks the input once.
        """
        from riskcore.model.calibration import calibrated_probability

        log_odds = self.model.decision_function(features)
        labels = self.model.classes_[(log_odds > 0).astype(int)]
        return labels.tolist(), calibrated_probability(self.calibrator, log_odds).tolist()

    def revenue_at_risk(self, probabilities: list[float], revenues: list[float | None] | None) -> list[float | None]:
        """Each row's revenue at risk (riskcore.report.call_list.revenue_at_risk); None where its revenue is unknown."""
        if revenues is None:
            return [None] * len(probabilities)
        import polars as pl

        from riskcore.report.call_list import revenue_at_risk

        return revenue_at_risk(pl.Series(probabilities, dtype=pl.Float64),
                               pl.Series(revenues, dtype=pl.Float64)).to_list()

    def reasons(self, features) -> list[list[dict[str, Any]]]:
        """Each row's reasons (riskcore.model.reasons); none for a model whose metadata predates them."""
        if self.explainer is None:
            return [[] for _ in range(len(features))]
        return self.explainer.reasons_of(features)


def prepare_model(deployment: Deployment) -> Served:
    """Load a deployment's model (hash-checked) and check it can answer predictions."""
    import numpy as np

    model = load_deployed_model(deployment)
    calibrator = load_deployed_calibrator(deployment)
    positive = [i for i, label in enumerate(np.asarray(model.classes_).tolist()) if label == 1]
    if not positive:
        raise DataError("the deployed model has no class 1 (attrition) to give a probability for")
    if not isinstance(deployment.manifest.get("model_version"), str):
        raise DataError("the deployment manifest has no model_version")
    model.predict_proba(np.zeros((1, len(FEATURES))))  # fail here, not in a request
    explainer = explainer_for(model, deployed_metadata(deployment), deployment.model_version)
    if explainer is None:
        log.warning("model %s was trained before its metadata recorded the average client: its answers carry "
                    "no reasons", deployment.model_version)
    return Served(deployment=deployment, model=model, positive=positive[0], explainer=explainer,
                  calibrator=calibrator)


class ModelCache:
    """The model to serve, loaded once per deployed release; a release that fails to load is skipped."""

    def __init__(self, prod: Path) -> None:
        self.prod = prod
        self._served: Served | None = None
        self._failed: dict[str, float] = {}  # release -> monotonic time its load failed
        self._lock = threading.Lock()

    def pointer(self) -> str | None:
        """The release the deployment pointer names now (a readlink); None when nothing is deployed."""
        try:
            return current_release_name(self.prod)
        except IntegrityError as exc:
            self._note_failure(BROKEN_POINTER, exc)
            return BROKEN_POINTER

    def serve(self) -> tuple[str | None, Served | None]:
        """(the release the pointer names, the model to serve), switching when the pointer moved."""
        name = self.pointer()
        if name is None:
            return None, None
        served = self._served
        if served is None or served.release != name:
            served = self._switch(name)
        return name, served

    def get(self) -> Served:
        """The model to serve now, or ApiError 503 when there is none."""
        name, served = self.serve()
        if served is None:
            raise ApiError(503, "No model is deployed yet; run deployment.py first." if name is None else
                           "The deployed model could not be loaded (see the server log) and no earlier "
                           "model is available to serve.")
        return served

    def _switch(self, name: str) -> Served | None:
        with self._lock:
            served = self._served
            if served is not None and served.release == name:
                return served
            failed_at = self._failed.get(name)
            if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_RELEASE_SECONDS:
                return served
            new = self._load(name)
            if new is None:
                return served
            self._failed.clear()  # earlier failures are moot; a release named again is tried again
            self._served = new
            log.info("serving release %s (model %s)", new.release, new.model_version)
            return new

    def _load(self, name: str) -> Served | None:
        """The model of the release the pointer names, or None (the failure noted).

        A release pruned by later deployments while it loads is no failure of its own: the pointer
        has moved on meanwhile, and the release it names now is loaded instead (a few times at most).
        """
        for _ in range(LOAD_ATTEMPTS):
            try:
                deployment = current_deployment(self.prod)
                if deployment is None:
                    raise DataError("the deployment pointer vanished while loading")
                name = deployment.release
                return prepare_model(deployment)
            except Exception as exc:  # whatever is wrong with a deployment must not take the API down
                moved_on = self.pointer() not in (name, None, BROKEN_POINTER)
                if not moved_on:
                    self._note_failure(name, exc)
                    return None
        self._note_failure(name, RuntimeError("the deployment kept moving while it was loaded"))
        return None

    def _note_failure(self, name: str, exc: BaseException) -> None:
        if name not in self._failed:
            now = self._served
            log.error("deployment %s cannot be served (%s: %s); still serving %s", name,
                      exc.__class__.__name__, exc, f"release {now.release}" if now else "nothing")
        self._failed[name] = time.monotonic()


# --- Answers derived from files, kept in the one file cache ----------------------------------
def unavailable(message: str) -> Answer:
    return 503, json_bytes(error_document(503, message))


def without_server_paths(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its top-level absolute paths reduced to file names: callers need no server layout."""
    return {key: PurePosixPath(value).name if isinstance(value, str) and value.startswith("/") else value
            for key, value in record.items()}


def utc_time(ns: int) -> str:
    return utc_at(ns / 1e9)


def finite(value: Any) -> Any:
    """A decoded history value with any NaN or infinity (which JSON cannot carry) as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [finite(inner) for inner in value]
    return value


class RunHistory:
    """The automation's runs as riskcore.ops.history reads them, oldest first (the page), and as GET /history
    sends them, newest first with NaN as null (made once, when first asked for)."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.runs = runs

    @cached_property
    def newest_first(self) -> list[dict[str, Any]]:
        return [finite(run) for run in self.runs[::-1]]


# The size bands the page filters by, in employees (the EU's enterprise sizes): (lowest, highest or None).
SIZE_BANDS = {"micro": (0, 9), "small": (10, 49), "medium": (50, 249), "large": (250, None)}
MOVES = ("new", "up")  # the page's "what changed" filter: new on the list, moved up since the previous run
BY_REVENUE = "revenue_at_risk"  # an order of /risk and the page (?order=): the largest revenue at risk first


class CallList:
    """The ingested clients ranked by a served model (riskcore.report.call_list): GET /risk pages through it
    as JSON, the web page by page number and search.

    Each row is rendered to JSON once, when an answer first holds it; an answer is then a join of
    ready bytes. The page's columns (rank, probability, revenue at risk, the id in lower case for the
    search) are added once, when the page first asks; so is the order by revenue at risk.
    """

    def __init__(self, served: Served, ranking, modified_at: str, previous: tuple[int, Any] | None = None) -> None:
        from riskcore.report.rankings import with_changes

        self.served = served
        ranked = ranking.frame.lazy().with_row_index("rank", offset=1)  # with previous_rank and change
        self.frame = with_changes(ranked, previous[1] if previous is not None else None).collect()
        self.total = ranking.frame.height
        self.left = ranking.left  # clients left out because their latest snapshot says they left
        self.rows: dict[int, bytes] = {}
        self.explainer: Explainer | None = served.explainer  # None: a model whose metadata predates the reasons
        explainer = self.explainer
        self.group: frozenset[str] = frozenset()  # the measurement group the rendered rows were marked with
        self.about = {"model_version": served.model_version, "release": served.release, "data": FINAL_DATA,
                      "modified_at": modified_at, "total": self.total, "rows_read": ranking.rows_read,
                      "left_out": {"earlier_snapshots": ranking.earlier_snapshots, "left": ranking.left},
                      "average_log_odds": explainer.average_log_odds if explainer is not None else None,
                      "compared_with_run": previous[0] if previous is not None else None}

    @property
    def release(self) -> str:
        return self.served.release

    @property
    def model_version(self) -> str:
        return self.served.model_version

    @property
    def average_log_odds(self) -> float | None:
        return self.about["average_log_odds"]

    @property
    def clients(self) -> int:
        return self.total

    # --- GET /risk ---
    def answer(self, limit: int, offset: int, group: frozenset[str] = frozenset(), query: str = "",
               order: str = "risk") -> Answer:
        """`limit` clients from rank offset + 1 (of those whose id contains `query`, whatever the case, as the
        page searches; in `order`: riskiest first, or BY_REVENUE), or ApiError 400 for an offset past the end; each
        marked whether it is in this cycle's measurement group (`group`)."""
        self._mark(group)
        places = self.matching(query, order) if query or order == BY_REVENUE else None
        total = self.total if places is None else len(places)
        if offset >= total and offset > 0:  # 0 on an empty list is its one (empty) page
            held = f"{total} client ids match" if query else f"the call list holds {total} clients"
            raise ApiError(400, f'The query parameter "offset" must be a whole number from 0 to '
                                f"{max(total - 1, 0)} ({held}).", field="offset")
        end = min(offset + limit, total)
        shown = list(range(offset, end)) if places is None else places[offset:end]
        missing = [index for index in shown if index not in self.rows]
        if missing and places is None:
            self._render(min(missing), max(missing) + 1)
        elif missing:
            self._render_each(missing)
        matches = None if not query else total
        head = json_bytes({**self.about, "q": query or None, "order": order, "matches": matches,
                           "offset": offset, "limit": limit, "top": limit, "count": end - offset,
                           "next_offset": end if end < total else None})
        return 200, head[:-1] + b',"clients":[' + b",".join(self.rows[i] for i in shown) + b"]}"

    def one(self, client_id: str, group: frozenset[str] = frozenset(), story: dict[str, Any] | None = None) -> Answer:
        """GET /risk/<id>: the list's figures, the client's `story` (riskcore.api.client_story) and its row as /risk
        gives it (null for a client not on the list: one who left)."""
        self._mark(group)
        index = self.place(client_id)
        if index is not None and index not in self.rows:
            self._render(index, index + 1)
        head = json_bytes({**self.about, ID_COLUMN: client_id, **(story or {})})
        return 200, head[:-1] + b',"client":' + (self.rows[index] if index is not None else b"null") + b"}"

    def place(self, client_id: str) -> int | None:
        """The client's place in the list (0 first), or None when it is not listed."""
        import polars as pl

        found = self.ranking.filter(pl.col(ID_COLUMN) == client_id)
        return found.item(0, "rank") - 1 if found.height else None

    def matching(self, query: str, order: str = "risk") -> list[int]:
        """The places in the list (0 first) of the clients whose id contains `query` (every client without one),
        whatever the case, in `order`."""
        import polars as pl

        found = self.in_order(order)
        if query:
            found = found.filter(pl.col("search").str.contains(query.lower(), literal=True))
        return [rank - 1 for rank in found.get_column("rank").to_list()]

    def in_order(self, order: str):
        """The page's list in `order`: by rank, or BY_REVENUE (by_revenue)."""
        return self.by_revenue if order == BY_REVENUE else self.ranking

    @cached_property
    def by_revenue(self):
        """The list with the largest revenue at risk first, clients whose revenue is unknown last, ties by rank."""
        from riskcore.report.call_list import REVENUE_AT_RISK

        return self.ranking.sort([REVENUE_AT_RISK, "rank"], descending=[True, False], nulls_last=True,
                                 maintain_order=True)

    def _mark(self, group: frozenset[str]) -> None:
        if group != self.group:  # a new cycle: the rows are marked again
            self.rows, self.group = {}, group

    def _render(self, start: int, end: int) -> None:
        from riskcore.report.call_list import entries

        rows = entries(self.frame.slice(start, end - start), start + 1, self.explainer, self.group,
                       self.served.calibrator)
        self.rows.update((index, json_bytes(row)) for index, row in enumerate(rows, start=start))

    def _render_each(self, places: list[int]) -> None:
        from riskcore.report.call_list import entries

        for index in places:
            [row] = entries(self.frame.slice(index, 1), index + 1, self.explainer, self.group, self.served.calibrator)
            self.rows[index] = json_bytes(row)

    # --- The web page ---
    @cached_property
    def ranking(self):
        """The list as the page shows and searches it: each client's rank, probability, revenue and revenue at risk
        (empty without revenue), and id in lower case."""
        import polars as pl

        from riskcore.report.call_list import KEY, REVENUE_AT_RISK, probability, revenue_at_risk

        chance = probability(self.frame[KEY], self.served.calibrator)
        revenue = self.frame[REVENUE] if REVENUE in self.frame.columns else pl.Series([None] * self.frame.height,
                                                                                       dtype=pl.Float64)
        return self.frame.with_columns(probability=chance, search=pl.col(ID_COLUMN).str.to_lowercase(),
                                       **{REVENUE: revenue, REVENUE_AT_RISK: revenue_at_risk(chance, revenue)})

    @cached_property
    def has_revenue(self) -> bool:
        """Whether some listed client's annual_revenue is known (the page then shows revenue at risk and its order)."""
        return REVENUE in self.frame.columns and self.frame[REVENUE].null_count() < self.frame.height

    def shown(self, query: str = "", band: str = "", moved: str = "", order: str = "risk"):
        """The clients the page shows for a search and filters, in `order` (rank, or BY_REVENUE): ids containing
        `query` (whatever the case), of a size band (SIZE_BANDS), new on the list or moved up since the previous
        run (`moved`)."""
        import polars as pl

        rows = self.in_order(order)
        if query:
            rows = rows.filter(pl.col("search").str.contains(query.lower(), literal=True))
        if band:
            low, high = SIZE_BANDS[band]
            employees = pl.col("number_of_employees")
            rows = rows.filter((employees >= low) if high is None else employees.is_between(low, high))
        if moved == "new":
            rows = rows.filter(pl.col("change") == "new")
        elif moved == "up":
            rows = rows.filter(pl.col("change").str.starts_with("up "))
        return rows

    def shown_csv(self, query: str, band: str, moved: str, group: frozenset[str] = frozenset(),
                  order: str = "risk") -> str:
        """What the page shows for a search, filters and order, in risk_scores.csv's columns, every page of it."""

        from riskcore.report.call_list import risk_table

        rows = self.shown(query, band, moved, order)
        revenue = [REVENUE] if self.has_revenue else []
        table = risk_table(rows.select(ID_COLUMN, "log_odds", *FEATURES, *revenue), self.explainer, group,
                           calibrator=self.served.calibrator).collect()
        table = table.with_columns(rank=rows["rank"], previous_rank=rows["previous_rank"], change=rows["change"])
        return table.write_csv(float_scientific=False)

    def page(self, number: int, query: str, size: int, band: str = "", moved: str = "",
             order: str = "risk") -> tuple[list[dict[str, Any]], int, int, int]:
        """(the rows of a page, the page number shown, the number of pages, the rows in all) of the list, or of what a
        search and the filters keep (shown), in `order`.

        A page past the last one shows the last one, a page before the first the first.
        """
        rows = self.shown(query, band, moved, order)
        pages = max(1, -(-rows.height // size))
        number = min(max(number, 1), pages)
        shown = rows.slice((number - 1) * size, size).to_dicts()
        return [self.with_reasons(row) for row in shown], number, pages, rows.height

    def client(self, client_id: str) -> dict[str, Any] | None:
        """A client's ranked row (its latest snapshot) with its reasons, or None."""
        import polars as pl

        found = self.ranking.filter(pl.col(ID_COLUMN) == client_id)
        return self.with_reasons(found.row(0, named=True)) if found.height else None

    def with_reasons(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row with its reasons, in the order riskcore.model.reasons lists them (none without an explainer)."""
        values = [row[feature] for feature in FEATURES]
        moved = row.get("change")
        row = {**row, "change_class": moved.split()[0] if moved else ""}  # new, up, down or same: the page's colour
        if self.explainer is None:
            return {**row, "reasons": [], "detail": []}
        return {**row, "reasons": self.explainer.reasons(values), "detail": self.explainer.detail(values)}


class RiskService:
    """Everything one process keeps between requests: the served model, and the file cache of all the
    answers, pages and records the API builds from the project's files."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.models = ModelCache(config.prod_deployment_folder)
        self.files = FileCache()

    def scoring(self, served: Served) -> Answer:
        """GET /scoring's answer, per release and version of the test data."""
        return self.files.get("scoring", (self.config.test_data_file,),
                              lambda found: self._build_scoring(served, found[0]), key=served.release)

    def summary(self) -> Answer:
        """GET /summarystats' answer, per version of finaldata.csv."""
        return self.files.get("summary", (self.config.final_data_file,), lambda found: self._build_summary(found[0]))

    def diagnostics(self) -> Answer:
        """GET /diagnostics' answer, per version of the diagnostics record."""
        return self.files.get("diagnostics", (self.config.output_model_folder / DIAGNOSTICS_RECORD,),
                              lambda found: self._build_diagnostics(found[0]))

    def history(self) -> RunHistory:
        """The automation's run history (riskcore.ops.history), read once per version of the file."""
        path = self.config.output_model_folder / RUN_HISTORY
        return self.files.get("history", (path,), lambda _: RunHistory(read_history(path)))

    def risk(self, served: Served, limit: int, offset: int, query: str = "", order: str = "risk") -> Answer:
        """GET /risk's answer: a page of the call list (or of the clients whose id contains `query`), in `order`."""
        built = self.call_list(served)
        if not isinstance(built, CallList):
            return unavailable(built)
        return built.answer(limit, offset, self.measurement_group(), query, order)

    def measurement_group(self) -> frozenset[str]:
        """The newest cycle's measurement group (riskcore.ops.calls), read once per version of the calls store."""
        path = calls_path(self.config.output_model_folder)
        return self.files.get("measurement_group", (path,), lambda _: group_of(latest_cycle(path)))

    def call_list(self, served: Served) -> CallList | str:
        """The call list of the ingested data, ranked once per release and version of finaldata.csv, or the
        sentence saying why there is none (GET /risk's 503)."""
        return self.files.get("call_list", (self.config.final_data_file,),
                              lambda found: self._build_call_list(served, found[0]), key=served.release)

    def _build_call_list(self, served: Served, signature: Signature) -> CallList | str:
        from riskcore.report.call_list import ranking_of
        from riskcore.report.rankings import list_identity, previous_ranking

        if signature is None:
            return f"No ingested data ({FINAL_DATA}) yet; run ingestion.py first."
        try:
            ranking = ranking_of(self.config.final_data_file, served.model)
        except UserError as exc:
            log.error("the call list of %s cannot be built: %s", FINAL_DATA, exc)
            return f"The ingested data ({FINAL_DATA}) cannot be ranked; see the server log."
        log.info("release %s: call list of %d clients of %s", served.release, ranking.frame.height, FINAL_DATA)
        try:  # the ranking the last run kept of this very list says nothing new: compare with the one before
            identity = list_identity(served.model_version, self.config.final_data_file)
            previous = previous_ranking(self.config.output_model_folder, identity)
        except FileNotFoundError:  # finaldata.csv replaced meanwhile: the next request ranks the new one
            previous = None
        return CallList(served, ranking, utc_time(signature[3]), previous)

    def _build_scoring(self, served: Served, signature: Signature) -> Answer:
        from riskcore.data.validation import read_client_csv
        from riskcore.model.evaluation import score_model

        if signature is None:
            return unavailable(f"The test data ({TEST_DATA}) does not exist yet.")
        try:
            frame = read_client_csv(self.config.test_data_file)
        except DataError as exc:  # its messages name the file, not the folder
            return unavailable(f"The test data cannot be scored: {exc}")
        f1 = score_model(served.model, frame)
        log.info("release %s: F1 %.4f on %s", served.release, f1, TEST_DATA)
        return 200, json_bytes({"f1": f1, "data": TEST_DATA, "rows": int(len(frame)),
                                "model_version": served.model_version, "release": served.release,
                                "deployed_score": served.deployment.manifest.get("score")})

    def _build_summary(self, signature: Signature) -> Answer:
        from riskcore.report.statistics import read_ingested, summarize

        if signature is None:
            return unavailable(f"No ingested data ({FINAL_DATA}) yet; run ingestion.py first.")
        try:
            summary = summarize(read_ingested(self.config))
        except UserError as exc:
            log.error("summary statistics of %s failed: %s", FINAL_DATA, exc)
            return unavailable(f"The ingested data ({FINAL_DATA}) cannot be summarised; see the server log.")
        return 200, json_bytes({"data": FINAL_DATA, "modified_at": utc_time(signature[3]), "summary": summary})

    def _build_diagnostics(self, signature: Signature) -> Answer:
        if signature is None:
            return unavailable(f"No diagnostics record ({DIAGNOSTICS_RECORD}) yet; run diagnostics.py first.")
        path = self.config.output_model_folder / DIAGNOSTICS_RECORD
        try:
            record = read_json(path, "Diagnostics record")
            if not isinstance(record, dict):
                raise DataError(f"Diagnostics record {path} is not a JSON object.")
            return 200, json_bytes(without_server_paths(record))
        except (DataError, ValueError) as exc:  # ValueError: NaN, which JSON cannot carry
            log.error("%s", exc)
            return unavailable(f"The diagnostics record ({DIAGNOSTICS_RECORD}) is unreadable; "
                               "run diagnostics.py again.")


def service() -> RiskService:
    """This app's RiskService (create_app puts it in app.extensions)."""
    return current_app.extensions["risk"]
