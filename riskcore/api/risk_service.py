"""What one API process keeps between requests: the served model, and the answers built from files.

The model is riskcore.api.served_model's, loaded once per deployed release. Everything built from
the project's files (the answers of GET /scoring, /summarystats and /diagnostics, the call list, the
run history, the page's parts) is kept in one cache (riskcore.api.file_cache) by the release and
the signatures of those files: GET /risk pages through the call list (riskcore.api.paged_call_list)
of the ingested data, ranked once per release and version of finaldata.csv, each row rendered once;
the page pages and searches the same list.

numpy, pandas and scikit-learn are imported with the first request that needs them, so that
creating the app (a gunicorn worker booting, `python app.py --help`) stays cheap.
"""

from __future__ import annotations

import logging
import math
from functools import cached_property
from pathlib import PurePosixPath
from typing import Any

from flask import current_app

from riskcore.api.errors import Answer, error_document, json_bytes
from riskcore.api.file_cache import FileCache, Signature
from riskcore.api.paged_call_list import CallList
from riskcore.api.served_model import ModelCache, Served
from riskcore.config import Config
from riskcore.contract import (
    DIAGNOSTICS_RECORD,
    FINAL_DATA,
    RUN_HISTORY,
    TEST_DATA,
    DataError,
    UserError,
)
from riskcore.files import read_json, utc_at
from riskcore.ops.calls import calls_path, group_of, latest_cycle
from riskcore.ops.history import read_history

log = logging.getLogger(__name__)


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

    def risk(self, served: Served, limit: int, offset: int, query: str = "", order: str = "risk", band: str = "",
             moved: str = "") -> Answer:
        """GET /risk's answer: a page of the call list (or of the clients the page's search and filters keep: an
        id containing `query`, a size `band`, new or `moved` up), in `order`."""
        built = self.call_list(served)
        if not isinstance(built, CallList):
            return unavailable(built)
        return built.answer(limit, offset, self.measurement_group(), query, order, band, moved)

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
        from riskcore.data.client_csv import read_client_csv
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
