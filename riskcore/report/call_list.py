"""The call list: the clients to call, riskiest first, ranked by the deployed model, with the reasons.

One row per client, its latest snapshot: when an id repeats, its last row wins (ingestion's rule:
files in name order, the last one wins). Only clients who have not left: "exited" 0 or empty, or
no "exited" column at all (clients whose labels come later).

polars reads, deduplicates, ranks and writes it; scikit-learn scores it. The rank key is the
model's log-odds (`decision_function`): it orders exactly like the probability but does not
saturate at 1, and it is written in full beside the probability (6 decimals), so every difference
in rank shows in the file. The sort is stable: clients of equal risk keep the order of the file.
The probability is the calibrated one (riskcore.model.calibration: the deployed calibrator applied
to the log-odds; a release without a calibrator gives expit of the log-odds, scikit-learn's own
predict_proba for a logistic regression). Calibration is monotone, so it never changes the order,
but clients with different log-odds may share a calibrated probability: `log_odds` tells them apart.

Columns: rank, corporation (the client id, as the data contract names it), probability, log_odds,
previous_rank and change (what changed since the last run: riskcore.report.rankings), the three
features, annual_revenue and revenue_at_risk (the probability times the revenue, to the cent; both
empty where the revenue is unknown or the data has no annual_revenue column), reason_1 to reason_3 in the
manager's words and contribution_<feature>, each
feature's exact contribution to the log-odds (riskcore.model.reasons), and measurement_group: true
for the clients of this cycle's calls drawn into the measurement group, "not to be called this
cycle" (riskcore.ops.calls). The model version is written once, in the record beside the list
(risk_scores.json: model, release, when, from which file, how many clients were listed and why
the others were left out, the cycle), not on every row.

The file is checked against the data contract while it is scored, and a problem is one sentence
naming the file, row and column, as for every client CSV.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from riskcore.config import Config
from riskcore.contract import FEATURES, ID_COLUMN, REVENUE, RISK_RECORD, RISK_SCORES, TARGET, DataError
from riskcore.data.client_scan import is_parse_failure, open_clients, text_clients
from riskcore.data.contract_rules import LABELS_OPTIONAL
from riskcore.data.validation import CLIENT_SCHEMA, breach, meets_contract, read_failure
from riskcore.files import atomic_path, atomic_write_json, utc_now, written_back
from riskcore.formatting import money
from riskcore.model.calibration import Calibrator, calibrated_probability
from riskcore.model.reasons import (
    CONTRIBUTION_COLUMNS,
    REASON_COLUMNS,
    Explainer,
    explainer_for,
    positions,
    worded_units,
)
from riskcore.ops.calls import FORMULA_STARTS, calls_path, group_of, latest_cycle, record_cycle
from riskcore.release.load import (
    Deployment,
    deployed_metadata,
    load_deployed_calibrator,
    load_deployed_model,
    require_deployment,
)
from riskcore.report.rankings import (
    CHANGE,
    CHANGE_COLUMNS,
    KEY,
    PREVIOUS_RANK,
    PROBABILITY,
    keep_ranking,
    list_identity,
    next_ranking_number,
    previous_ranking,
    ranks_of,
    with_changes,
)

log = logging.getLogger(__name__)

DECIMALS = 6  # attrition probability in risk_scores.csv; the log-odds are written in full
ORDER = "_order"  # a row's place in the file, which breaks ties in the ranking
GROUP = "measurement_group"
# Rows per streaming batch while risk_scores.csv is written: polars sizes its batches by the schema, too large for
# rows carrying three reasons in words (about 350 bytes a row). At 10M clients the writing kept 1,130 MB at the
# default, 770 MB at 25,000 rows and 960 MB at 50,000, for the same CPU time (5.1-5.3 s); 10,000 rows took 15% more.
SINK_ROWS = 25_000
REVENUE_AT_RISK = "revenue_at_risk"
MONEY_DECIMALS = 2  # revenue at risk, to the cent of the files' currency
COLUMNS = ("rank", ID_COLUMN, PROBABILITY, KEY, *CHANGE_COLUMNS, *FEATURES, REVENUE, REVENUE_AT_RISK, *REASON_COLUMNS,
           *CONTRIBUTION_COLUMNS, GROUP)
FEATURE_COLUMNS = tuple(pl.col(f) for f in FEATURES)


@dataclass
class Ranking:
    """The clients to call, riskiest first (id, log-odds, features), and what was left out."""

    frame: pl.DataFrame
    rows_read: int
    earlier_snapshots: int  # rows replaced by a later row of the same client
    left: int  # clients whose latest snapshot says they left (exited = 1)


REPORT_CALLS = 200  # of this cycle's calls, the most the report lists (the risk list has every client)


@dataclass
class RiskList:
    """What risk_scores wrote, and the riskiest clients for the report."""

    path: Path
    record: Path
    source: Path
    rows: int  # clients listed
    model_version: str
    rows_read: int = 0
    earlier_snapshots: int = 0
    left: int = 0
    top: list[dict[str, Any]] = field(default_factory=list)  # this cycle's calls, the first REPORT_CALLS of them
    calls: int = 0  # this cycle's calls: reporting.calls_per_cycle (or fewer clients)
    seconds: float = 0.0
    cycle: dict[str, Any] | None = None  # this cycle's calls and measurement group (riskcore.ops.calls)
    at_risk: dict[str, Any] | None = None  # calls_at_risk: the revenue at risk in this cycle's calls, when known
    run_number: int | None = None  # the run whose ranking was kept (riskcore.report.rankings)
    compared_with: int | None = None  # the run whose ranking says what changed (None: none was kept)


# --- Reading and checking a client file -----------------------------------------------------
# riskcore.data.validation checks a whole file in memory (ingestion, the API); a risk list may be larger
# than memory, so these are the same rules and messages as lazy polars queries over the file.
def log_odds(model) -> pl.Expr:
    """The model's log-odds that a client leaves (scikit-learn's decision_function), batch by batch.

    scikit-learn refuses an empty value: it is scored as 0 here, and risk_key sets such a row apart.
    """
    linear = linear_terms(model)

    def score(columns: list[pl.Series]) -> pl.Series:
        if len(columns[0]) == 0:
            return pl.Series(KEY, [], dtype=pl.Float64)
        if linear is not None:
            # decision_function's own formula, column by column: a row's value then never depends on the
            # batch it arrives in (a matrix product's kernels differ in the last bit with the batch's
            # shape, which would break ties between identical clients at random).
            coef, intercept = linear
            key = np.full(len(columns[0]), intercept)
            for column, weight in zip(columns, coef, strict=True):
                key += column.to_numpy().astype(np.float64) * weight
            return pl.Series(KEY, key, dtype=pl.Float64)
        matrix = np.column_stack([column.to_numpy() for column in columns]).astype(np.float64)
        return pl.Series(KEY, model.decision_function(matrix), dtype=pl.Float64)

    return pl.map_batches([pl.col(f).fill_null(0) for f in FEATURES], score, return_dtype=pl.Float64,
                          is_elementwise=True)


def linear_terms(model) -> tuple[list[float], float] | None:
    """A binary linear model's coefficients and intercept, if its decision_function is exactly X @ coef + b."""
    coef, intercept = getattr(model, "coef_", None), getattr(model, "intercept_", None)
    if not (isinstance(coef, np.ndarray) and coef.shape == (1, len(FEATURES)) and
            isinstance(intercept, np.ndarray) and intercept.shape == (1,)):
        return None
    probe = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [10.0, 1000.0, 7.0]])
    mine = intercept[0] + probe @ coef[0]
    return (coef[0].tolist(), float(intercept[0])) if np.allclose(mine, model.decision_function(probe)) else None


def risk_key(model, schema=CLIENT_SCHEMA) -> pl.Expr:
    """The rank key: the log-odds, or NaN for a row that breaks the contract (of a frame of `schema`).

    polars sorts NaN above every number, so such a row heads the ranking: the head of the ranking,
    which the report needs anyway, also tells whether the whole file is valid, at no extra pass.
    """
    return pl.when(meets_contract(schema)).then(log_odds(model)).otherwise(float("nan")).alias(KEY)


def probability(key: pl.Series, calibrator: Calibrator | None = None) -> pl.Series:
    """Log-odds to the probability shown: calibrated (riskcore.model.calibration.calibrated_probability)."""
    return pl.Series(calibrated_probability(calibrator, key.to_numpy()), dtype=pl.Float64)


def revenue_at_risk(chance, revenue):
    """A client's revenue at risk: its probability (the calibrated one, as shown) times its annual revenue, to the
    cent; null where the revenue is unknown. Polars expressions or Series alike."""
    return (chance * revenue).round(MONEY_DECIMALS)


def at_risk_sentence(found: dict[str, Any] | None) -> str | None:
    """calls_at_risk in the managers' words (the page's health strip, the PDF's first page); None when not known."""
    if not found:
        return None
    known = f" (revenue known for {found['known']:,})" if found["known"] < found["calls"] else ""
    return f"{money(found['total'])} revenue at risk in this cycle's {found['calls']:,} calls{known}"


def calls_at_risk(ranking: pl.DataFrame, calls: int, calibrator: Calibrator | None = None) -> dict[str, Any] | None:
    """The revenue at risk in this cycle's calls (the top `calls` clients of a ranking): its total, the calls, and
    how many of them have a known revenue; None when none has."""
    head = ranking.head(calls)
    if REVENUE not in head.columns or head[REVENUE].null_count() == head.height:
        return None
    amounts = revenue_at_risk(probability(head[KEY], calibrator), head[REVENUE])
    return {"total": round(float(amounts.sum()), MONEY_DECIMALS), "calls": head.height, "known": amounts.count()}


def ranking_queries(clients: pl.LazyFrame, model, exact: bool) -> list[pl.LazyFrame]:
    """The clients to call (in the file's order, numbered by ORDER: riskiest_first sorts them), one row
    counting what was read and what was left out, and (first pass) a hash of every row's id.

    A row that breaks the contract is kept whatever its id or label, so that it heads the ranking.
    The first pass (`exact` False) takes every row as its client's latest and keeps the features
    as UInt32; whether a hash repeats and the largest value tell whether the exact pass is needed:
    each client's last row, the features as read.
    """
    schema = clients.collect_schema()
    scored = clients.with_row_index(ORDER).with_columns(risk_key(model, schema))
    revenue = [REVENUE] if REVENUE in schema else []
    latest = pl.col(ID_COLUMN).is_last_distinct() if exact else pl.lit(True)
    left = pl.col(TARGET).fill_null(0) == 1
    features = FEATURES if exact else [pl.col(f).cast(pl.UInt32, strict=False) for f in FEATURES]
    queries = [
        scored.filter(pl.col(KEY).is_nan() | (latest & ~left)).select(ORDER, ID_COLUMN, KEY, *features, *revenue),
        scored.select(pl.len().alias("rows_read"), (~latest).sum().alias("earlier_snapshots"),
                      (latest & left).sum().alias("left"), pl.max_horizontal(pl.col(FEATURES).max()).alias("largest")),
    ]
    return queries if exact else [*queries, scored.select(pl.col(ID_COLUMN).hash())]


def riskiest_first(listed: pl.DataFrame) -> pl.DataFrame:
    """The listed clients by log-odds, highest first; equal ones in the order of the file (ORDER).

    Sorted in memory, after the streaming pass: polars' streaming sort kept 1.8 GB at 10M rows, the
    in-memory sort adds the sorted copy (260 MB). The file's order breaks ties explicitly, since a streaming engine
    need not keep rows in order; when it did (ORDER ascending, one check), a stable sort on the log-odds
    alone gives the same order for less.
    """
    if listed.get_column(ORDER).is_sorted():
        return listed.drop(ORDER).sort(KEY, descending=True, maintain_order=True)
    return listed.sort([KEY, ORDER], descending=[True, False]).drop(ORDER)


def rank_clients(clients: pl.LazyFrame, model, name: str) -> Ranking:
    """Score, check and rank a scanned client file: one pass, and an exact one when an id repeats (or a
    value does not fit 32 bits).

    Most files hold each client once. At 10M rows the exact pass (is_last_distinct) took 1.5 s
    more. Whether an id repeats is counted on the ids' hashes after the pass (0.3 s): counted during
    it (n_unique in the stream), the pass kept 1,420 MB instead of 930 MB (polars 2.1). UInt32
    features keep 250 MB fewer.
    """
    ranking, counts, hashes = pl.collect_all(ranking_queries(clients, model, exact=False), engine="streaming")
    found = counts.row(0, named=True)
    if found["rows_read"] == 0:
        raise DataError(f"{name} has a header but no rows.")
    repeats = hashes.to_series().n_unique() < found["rows_read"]
    del hashes
    if repeats or (found["largest"] or 0) > np.iinfo(np.uint32).max:
        log.info("%s names some clients more than once (or has values above 32 bits): each client is ranked on "
                 "its last row", name)
        ranking, counts = pl.collect_all(ranking_queries(clients, model, exact=True), engine="streaming")
        found = counts.row(0, named=True)
    if ranking.height and ranking.get_column(KEY).is_nan().any():
        problem = breach(clients, name, LABELS_OPTIONAL)
        if problem is None:
            raise AssertionError(f"{name}: risk_key and first_problem disagree")
        raise problem
    return Ranking(frame=riskiest_first(ranking), rows_read=int(found["rows_read"]),
                   earlier_snapshots=int(found["earlier_snapshots"]), left=int(found["left"]))


def ranking_of(source: Path, model) -> Ranking:
    """The call list of a client CSV, checked against the data contract."""
    clients, labelled = open_clients(source)
    try:
        return rank_clients(clients, model, source.name)
    except pl.exceptions.PolarsError as exc:
        if not is_parse_failure(exc):
            raise read_failure(exc, source.name) from None
    try:
        return rank_clients(text_clients(source, source.name, labelled), model, source.name)
    except pl.exceptions.PolarsError as again:
        raise read_failure(again, source.name) from None


def entries(frame: pl.DataFrame, first_rank: int, explainer: Explainer | None,
            group: frozenset[str] = frozenset(), calibrator: Calibrator | None = None) -> list[dict[str, Any]]:
    """Rows of a ranking as the report and the API show them: rank, client, probability, log-odds, what changed,
    features, revenue and revenue at risk, reasons, and whether the client is in this cycle's measurement group
    (`group`). Without previous_rank and change columns in `frame`, both are null; without revenue, its two."""
    chances = probability(frame.get_column(KEY), calibrator)
    empty = [None] * frame.height
    before, change = (frame.get_column(name).to_list() if name in frame.columns else empty for name in CHANGE_COLUMNS)
    revenue = frame.get_column(REVENUE) if REVENUE in frame.columns else pl.Series(empty, dtype=pl.Float64)
    at_risk = revenue_at_risk(chances, revenue).to_list()
    rows = frame.select(ID_COLUMN, KEY, *FEATURES).iter_rows()
    return [{"rank": rank, ID_COLUMN: client, "probability": chance, KEY: key, PREVIOUS_RANK: was, CHANGE: moved,
             **dict(zip(FEATURES, values, strict=True)), REVENUE: amount, REVENUE_AT_RISK: lost,
             "reasons": explainer.reasons(values) if explainer is not None else [],
             "contributions": explainer.contributions(values) if explainer is not None else None,
             GROUP: client in group}
            for rank, (client, key, *values), chance, was, moved, amount, lost in zip(
                range(first_rank, first_rank + frame.height), rows, chances.to_list(), before, change,
                revenue.to_list(), at_risk, strict=True)]


# --- Writing risk_scores.csv -----------------------------------------------------------------
def reason_columns(frame: pl.DataFrame, explainer: Explainer | None) -> tuple[pl.LazyFrame, list[pl.Expr]]:
    """Each row's reasons in words, listed as riskcore.model.reasons orders them: (the frame, lazy, with the
    words of its values, the reason columns)."""
    if explainer is None:
        return frame.lazy(), [pl.lit(None, dtype=pl.String).alias(name) for name in REASON_COLUMNS]
    rows, texts = worded_units(explainer, frame)
    places = positions([explainer.unit_contribution(unit, FEATURE_COLUMNS) for unit in explainer.units])
    columns = []
    for place, name in enumerate(REASON_COLUMNS):
        chosen = pl.when(places[0] == place).then(texts[0])
        for k in range(1, len(texts)):
            chosen = chosen.when(places[k] == place).then(texts[k])
        columns.append(chosen.otherwise(None).alias(name))
    return rows, columns


def contribution_columns(explainer: Explainer | None) -> list[pl.Expr]:
    """Each feature's exact contribution to the log-odds (the data scientist's figures), or empty columns."""
    if explainer is None:
        return [pl.lit(None, dtype=pl.Float64).alias(name) for name in CONTRIBUTION_COLUMNS]
    return [explainer.contribution(j, pl.col(f)).alias(name)
            for j, (f, name) in enumerate(zip(FEATURES, CONTRIBUTION_COLUMNS, strict=True))]


def risk_table(frame: pl.DataFrame, explainer: Explainer | None, group: frozenset[str] = frozenset(),
               previous: pl.DataFrame | None = None, calibrator: Calibrator | None = None) -> pl.LazyFrame:
    """risk_scores.csv's columns (COLUMNS) for a ranking; `group`: the clients of the measurement group;
    `previous`: the previous run's ranks (riskcore.report.rankings; None: none kept); `calibrator`: the
    probability's (riskcore.model.calibration)."""
    rows, reasons = reason_columns(frame, explainer)
    chance = pl.col(KEY).map_batches(lambda key: probability(key, calibrator), return_dtype=pl.Float64,
                                     is_elementwise=True)
    in_group = pl.col(ID_COLUMN).is_in(pl.Series(sorted(group), dtype=pl.String).implode()) if group else pl.lit(False)
    ranked = with_changes(rows.with_row_index("rank", offset=1), previous)
    if REVENUE in frame.columns:  # the probability once, for its column and the revenue at risk
        ranked, chance = ranked.with_columns(chance.alias(PROBABILITY)), pl.col(PROBABILITY)
        revenue = [pl.col(REVENUE), revenue_at_risk(chance, pl.col(REVENUE)).alias(REVENUE_AT_RISK)]
    else:
        revenue = [pl.lit(None, dtype=pl.Float64).alias(name) for name in (REVENUE, REVENUE_AT_RISK)]
    return (ranked
            .select("rank", ID_COLUMN, chance.round(DECIMALS).alias(PROBABILITY), KEY, *CHANGE_COLUMNS, *FEATURES,
                    *revenue, *reasons, *contribution_columns(explainer), in_group.alias(GROUP)))


def spreadsheet_safe(column: str) -> pl.Expr:
    """A text column of a CSV file as riskcore.ops.calls.safe_cell writes a cell: one that would start a spreadsheet
    formula (a client id such as =HYPERLINK(...) from a CRM export) gets a leading apostrophe."""
    text = pl.col(column)
    return pl.when(text.str.slice(0, 1).is_in(FORMULA_STARTS)).then(pl.lit("'") + text).otherwise(text).alias(column)


# --- This cycle's calls and its measurement group ---------------------------------------------
def cycle_members(frame: pl.DataFrame, calls_per_cycle: int,
                  calibrator: Calibrator | None = None) -> list[dict[str, Any]]:
    """The top clients of a ranking as a cycle records them: client, rank, probability and the snapshot listed."""
    head = frame.head(calls_per_cycle)
    chances = calibrated_probability(calibrator, head.get_column(KEY).to_numpy()).tolist()
    return [{"client": client, "rank": rank, "probability": chance,
             "snapshot": dict(zip(FEATURES, values, strict=True))}
            for rank, ((client, _, *values), chance) in enumerate(
                zip(head.select(ID_COLUMN, KEY, *FEATURES).iter_rows(), chances, strict=True), 1)]


def this_cycle(config: Config, ranking: Ranking, cycle: int | None, deployment: Deployment,
               calibrator: Calibrator | None = None) -> dict[str, Any] | None:
    """Cycle `cycle`'s calls, assigned once (riskcore.ops.calls.record_cycle); without a number, the newest cycle."""
    store = calls_path(config.output_model_folder)
    if cycle is None:
        return latest_cycle(store)
    reporting = config.reporting
    return record_cycle(store, cycle, cycle_members(ranking.frame, reporting["calls_per_cycle"], calibrator),
                        reporting["calls_per_cycle"], float(reporting["control_share"]),
                        deployment.model_version, deployment.release)


def risk_record(risk: RiskList, deployment: Deployment, explainer: Explainer | None) -> dict[str, Any]:
    """risk_scores.json: what the risk list beside it is, once per file."""
    return {
        "risk_list": risk.path.name, "model_version": deployment.model_version, "release": deployment.release,
        "generated_at": utc_now(), "source": risk.source.name, "clients": risk.rows, "rows_read": risk.rows_read,
        "left_out": {"earlier_snapshots": risk.earlier_snapshots, "left": risk.left},
        "ranked_by": f"{KEY}: the model's log-odds, highest first; equal ones in the order of the file",
        "average_log_odds": explainer.average_log_odds if explainer is not None else None,
        "cycle": risk.cycle["cycle"] if risk.cycle else None, "measurement_group": len(group_of(risk.cycle)),
        "run_number": risk.run_number,
        "revenue_at_risk": risk.at_risk,  # in this cycle's calls (calls_at_risk); None: no revenue known
        "compared_with_run": risk.compared_with,  # previous_rank's run; None: no earlier ranking, the columns empty
        "columns": list(COLUMNS),
    }


def risk_scores(config: Config, clients_path: Path | None = None, model=None,
                deployment: Deployment | None = None, reasons: bool = True, cycle: int | None = None) -> RiskList:
    """Rank the clients of a CSV (default: the ingested data), write the call list and its record, and keep the
    ranking to say next time what changed (riskcore.report.rankings).

    `cycle`: the report run this list is the call list of: its top reporting.calls_per_cycle clients
    and measurement group are recorded (once per cycle), and its ranking kept under that run number;
    without it the newest cycle's group is marked, and the ranking kept as the run after the newest kept.
    `reasons=False` leaves the reason columns empty: the benchmark measures what they cost.
    """
    started = time.perf_counter()
    source = Path(clients_path) if clients_path is not None else config.final_data_file
    if not source.is_file():
        hint = "; run ingestion.py first" if clients_path is None else ""
        raise DataError(f"Client file {source} does not exist{hint}.")
    if deployment is None:
        deployment = require_deployment(config.prod_deployment_folder)
    if model is None:
        model = load_deployed_model(deployment)
    calibrator = load_deployed_calibrator(deployment)
    explainer = None
    if reasons:
        explainer = explainer_for(model, deployed_metadata(deployment), deployment.model_version)
        if explainer is None:
            log.warning("model %s was trained before its metadata recorded the average client: the risk list "
                        "has no reasons until the next training", deployment.model_version)
    ranking = ranking_of(source, model)
    called = this_cycle(config, ranking, cycle, deployment, calibrator)
    group = group_of(called)
    folder = config.output_model_folder
    number = cycle if cycle is not None else next_ranking_number(folder)
    identity = list_identity(deployment.model_version, source)
    found = previous_ranking(folder, identity, skip=number)
    previous = found[1] if found is not None else None
    target = folder / RISK_SCORES
    with atomic_path(target) as tmp, written_back(tmp), pl.Config(streaming_chunk_size=SINK_ROWS):
        # Numbers as polars writes them by default: the shortest decimal that reads back as the same float, in
        # scientific notation below 1e-5 ("2.4e-6"), a zero as "0.0". Plain decimals (float_scientific=False) took 3x
        # the CPU per column: 1.4 s more at 10M rows for the five float columns, the same values read back.
        (risk_table(ranking.frame, explainer, group, previous, calibrator).with_columns(spreadsheet_safe(ID_COLUMN))
         .sink_csv(tmp, engine="streaming"))
    keep_ranking(folder, number, ranking.frame, identity, config.reporting["keep_rankings"],
                 probability(ranking.frame.get_column(KEY), calibrator))
    calls = min(config.reporting["calls_per_cycle"], ranking.frame.height)
    head = ranking.frame.head(min(calls, REPORT_CALLS))  # this cycle's calls, for the report
    head = with_changes(head.lazy().with_row_index("rank", offset=1), ranks_of(previous, head)).collect()
    risk = RiskList(path=target, record=folder / RISK_RECORD, source=source,
                    rows=ranking.frame.height,
                    model_version=deployment.model_version, rows_read=ranking.rows_read,
                    earlier_snapshots=ranking.earlier_snapshots, left=ranking.left,
                    top=entries(head, 1, explainer, group, calibrator), calls=calls, cycle=called, run_number=number,
                    compared_with=found[0] if found is not None else None,
                    at_risk=calls_at_risk(ranking.frame, config.reporting["calls_per_cycle"], calibrator))
    atomic_write_json(risk.record, risk_record(risk, deployment, explainer))
    risk.seconds = time.perf_counter() - started
    log.info("wrote %s: %d clients of %s ranked by model %s (%d rows read; left out: %d earlier snapshots, "
             "%d clients who left) in %.2f s", target, risk.rows, source.name, deployment.model_version,
             risk.rows_read, risk.earlier_snapshots, risk.left, risk.seconds)
    return risk
