"""The calls store (calls.sqlite, beside the run history): the calls managers recorded, and each cycle's list.

A call: the client (`corporation`, the one name the CSV and the JSON give a client), when (a date), the
outcome (OUTCOMES), a note of at most MAX_NOTE characters, who made it (by) and when it was recorded. The
page's form and POST /calls write them; GET /calls, the CSV export, the page's "called 3 days ago: at
risk", the drift check (clients who were called are left out of its window) and the measured effect read them.

A cycle is one report run that wrote a new call list (risk_scores.csv), numbered as its reports
are (run N writes summary_reportN.pdf and cycle N). Its calls are the top reporting.calls_per_cycle
clients; with reporting.control_share above 0 a seeded random share of them is the measurement
group, "not to be called this cycle". A client keeps the group of the first cycle that assigned
one until the effect is measured (riskcore.report.call_effect), so a client is never counted in
both groups. The cycle keeps each client's snapshot as it was listed, so a later labelled snapshot
can be told from the one it was listed with.

Every write is one SQLite transaction (rollback journal, so each commit changes the file itself,
which is what the API's file cache watches). The store is never in the production folder: config
refuses an output_model_path that is the prod_deployment_path.
Standard library only: the cron tick's drift check and the API read it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import random
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from riskcore.contract import CALLS_STORE, ID_COLUMN, ID_ONE_LINE, UserError, id_break, normalise_id
from riskcore.files import utc_now

log = logging.getLogger(__name__)

# The outcome as stored and sent, and as the form offers it.
OUTCOMES = {
    "stays": "reached, says they stay",
    "at_risk": "reached, at risk",
    "leaving": "reached, leaving",
    "not_reached": "not reached",
}
OUTCOME_SHORT = {"stays": "says they stay", "at_risk": "at risk", "leaving": "leaving", "not_reached": "not reached"}
REACHED = ("stays", "at_risk", "leaving")  # a call that could change what the client does
GROUP_MARK = "measurement group: not to be called this cycle"  # on the list, the client's page and the PDF
CALL_FIELDS = (ID_COLUMN, "when", "outcome", "note", "by")  # the client is corporation, as in /risk
MAX_NOTE = 500
MAX_BY = 100
MAX_CLIENT = 200
MAX_CALLS = 1000  # calls in one POST /calls
EARLIEST = date(2000, 1, 1)
CSV_COLUMNS = ("id", *CALL_FIELDS, "recorded_at")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run such a cell as a formula


class CallError(UserError):
    """A call the store refuses: one sentence naming the field."""

    def __init__(self, message: str, field: str, too_many: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.too_many = too_many  # more calls than one request may hold (the API's 413)


@dataclass(frozen=True)
class Call:
    """A checked call, ready to store."""

    corporation: str  # the client
    when: str  # YYYY-MM-DD
    outcome: str
    note: str
    by: str


def calls_path(output_model_folder: Path) -> Path:
    return output_model_folder / CALLS_STORE


# --- Checking a call -------------------------------------------------------------------------
def _text(raw: dict[str, Any], name: str, where: str, limit: int, required: bool) -> str:
    value = raw.get(name, "")
    if value is None and not required:
        value = ""
    if not isinstance(value, str):
        raise CallError(f'{where}"{name}" must be a string.', name)
    value = normalise_id(value) if name == ID_COLUMN else value.replace("\r\n", "\n").strip()
    if required and not value:
        raise CallError(f'{where}"{name}" is missing; name {"the client" if name == ID_COLUMN else "who called"}.',
                        name)
    if len(value) > limit:
        raise CallError(f'{where}"{name}" is {len(value):,} characters long; at most {limit:,} are kept.', name)
    if name == ID_COLUMN:  # the id rule ingestion applies: an emoji's zero-width joiner is part of an id
        problem = id_break(value)
        if problem:
            raise CallError(f'{where}"{name}" holds {problem}; {ID_ONE_LINE}.', name)
        return value
    allowed = "\n\t" if name == "note" else ""
    if any(not ch.isprintable() and ch not in allowed for ch in value):
        raise CallError(f'{where}"{name}" holds a control character.', name)
    return value


def check_date(value: Any, today: date, where: str = "") -> str:
    """A call's date: YYYY-MM-DD, from 2000-01-01 to tomorrow (a manager a time zone ahead); empty means today."""
    if value is None or value == "":
        return today.isoformat()
    if not isinstance(value, str) or len(value) != 10 or value[4] != "-" or value[7] != "-":
        raise CallError(f'{where}"when" must be a date written YYYY-MM-DD.', "when")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise CallError(f'{where}"when" is no date of the calendar: {value}.', "when") from None
    if not EARLIEST <= day <= today + timedelta(days=1):
        raise CallError(f'{where}"when" must be a date from {EARLIEST.isoformat()} to today, not {value}.', "when")
    return value


def check_call(raw: Any, today: date, where: str = "") -> Call:
    """One call as a caller sends it ({corporation, when, outcome, note, by}), checked; CallError names the field."""
    if not isinstance(raw, dict):
        raise CallError(f"{where}A call must be a JSON object with the fields {', '.join(CALL_FIELDS)}.", "calls")
    unknown = [key for key in raw if key not in CALL_FIELDS]
    if unknown:
        name = str(unknown[0])[:60]
        raise CallError(f'{where}"{name}" is no field of a call; a call has {", ".join(CALL_FIELDS)}.', name)
    outcome = raw.get("outcome")
    if outcome not in OUTCOMES:
        raise CallError(f'{where}"outcome" must be one of {", ".join(OUTCOMES)}.', "outcome")
    client = _text(raw, ID_COLUMN, where, MAX_CLIENT, required=True)
    return Call(corporation=client, when=check_date(raw.get("when"), today, where), outcome=outcome,
                note=_text(raw, "note", where, MAX_NOTE, required=False),
                by=_text(raw, "by", where, MAX_BY, required=True))


def check_calls(document: Any, today: date) -> list[Call]:
    """A POST /calls body: one call or a list of calls (at most MAX_CALLS), each checked."""
    if isinstance(document, dict):
        return [check_call(document, today)]
    if not isinstance(document, list) or not document:
        raise CallError("The body must be a call (a JSON object) or a non-empty list of calls.", "calls")
    if len(document) > MAX_CALLS:
        raise CallError(f"{len(document):,} calls is more than the {MAX_CALLS:,} one request may hold.", "calls",
                        too_many=True)
    return [check_call(raw, today, f"calls[{index}]: ") for index, raw in enumerate(document)]


# --- The store -------------------------------------------------------------------------------
SCHEMA = (
    # "when" and "by" are SQL words: stored as called_on and called_by, sent as when and by.
    "CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY AUTOINCREMENT, client TEXT NOT NULL, "
    "called_on TEXT NOT NULL, outcome TEXT NOT NULL, note TEXT NOT NULL, called_by TEXT NOT NULL, "
    "recorded_at TEXT NOT NULL, UNIQUE (client, called_on, outcome, note, called_by))",
    "CREATE INDEX IF NOT EXISTS calls_by_client ON calls (client, called_on)",
    "CREATE TABLE IF NOT EXISTS cycles (cycle INTEGER PRIMARY KEY, assigned_at TEXT NOT NULL, "
    "model_version TEXT, release TEXT, calls_per_cycle INTEGER NOT NULL, control_share REAL NOT NULL, "
    "seed TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cycle_clients (cycle INTEGER NOT NULL REFERENCES cycles (cycle), "
    "client TEXT NOT NULL, rank INTEGER NOT NULL, probability REAL, measurement_group INTEGER NOT NULL, "
    "snapshot TEXT NOT NULL, PRIMARY KEY (cycle, client))",
)


@contextlib.contextmanager
def writing(path: Path) -> Iterator[sqlite3.Connection]:
    """One write transaction on the store (created on first use): committed whole, or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path, timeout=10, isolation_level=None)) as connection:
        connection.execute("PRAGMA journal_mode=DELETE")
        connection.execute("BEGIN IMMEDIATE")  # one writer at a time, waiting up to the timeout
        try:
            for statement in SCHEMA:
                connection.execute(statement)
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


@contextlib.contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection | None]:
    """The store opened read-only (None when there is none yet): reading never creates it."""
    if not path.is_file():
        yield None
        return
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10)) as connection:
        connection.row_factory = sqlite3.Row
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        yield connection if {"calls", "cycles", "cycle_clients"} <= tables else None


def record_calls(path: Path, calls: Iterable[Call], recorded_at: str | None = None) -> tuple[list[dict], int]:
    """Store calls in one transaction; (the calls as stored, with their ids; how many were already stored).

    A call already stored (same client, date, outcome, note and caller) is not stored twice, so a
    CRM may send the same calls again.
    """
    recorded_at = recorded_at or utc_now()
    stored, repeats = [], 0
    with writing(path) as connection:
        for call in calls:
            cursor = connection.execute(
                "INSERT OR IGNORE INTO calls (client, called_on, outcome, note, called_by, recorded_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (call.corporation, call.when, call.outcome, call.note, call.by, recorded_at))
            if cursor.rowcount:
                stored.append({"id": cursor.lastrowid, **asdict(call), "recorded_at": recorded_at})
            else:
                repeats += 1
    if stored:
        log.info("recorded %d call(s) (%d already stored)", len(stored), repeats)
    return stored, repeats


CALL_COLUMNS = f"id, client AS {ID_COLUMN}, called_on AS \"when\", outcome, note, called_by AS \"by\", recorded_at"


def read_calls(path: Path, limit: int, offset: int, client: str | None = None) -> tuple[int, list[dict[str, Any]]]:
    """(calls in all, a page of them): newest call first (by date, then as recorded), of one client or all."""
    where, args = ("WHERE client = ?", [client]) if client is not None else ("", [])
    with reading(path) as connection:
        if connection is None:
            return 0, []
        total = connection.execute(f"SELECT count(*) FROM calls {where}", args).fetchone()[0]  # noqa: S608
        rows = connection.execute(f"SELECT {CALL_COLUMNS} FROM calls {where} "  # noqa: S608
                                  "ORDER BY called_on DESC, id DESC LIMIT ? OFFSET ?", [*args, limit, offset])
        return total, [dict(row) for row in rows]


def all_calls(path: Path) -> list[dict[str, Any]]:
    """Every call, in the order recorded (the CSV export)."""
    with reading(path) as connection:
        if connection is None:
            return []
        return [dict(row) for row in connection.execute(f"SELECT {CALL_COLUMNS} FROM calls ORDER BY id")]  # noqa: S608


def last_calls(path: Path, clients: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Each client's latest call (by date, then as recorded), of the clients named or of all."""
    wanted = None if clients is None else set(clients)
    found: dict[str, dict[str, Any]] = {}
    with reading(path) as connection:
        if connection is None:
            return {}
        for row in connection.execute(f"SELECT {CALL_COLUMNS} FROM calls ORDER BY called_on, id"):  # noqa: S608
            if wanted is None or row[ID_COLUMN] in wanted:
                found[row[ID_COLUMN]] = dict(row)
    return found


def called_clients(path: Path, reached_only: bool = True) -> set[str]:
    """The clients with a call recorded (by default: a call that reached them)."""
    outcomes = REACHED if reached_only else tuple(OUTCOMES)
    with reading(path) as connection:
        if connection is None:
            return set()
        marks = ", ".join("?" for _ in outcomes)
        return {row[0] for row in connection.execute(
            f"SELECT DISTINCT client FROM calls WHERE outcome IN ({marks})", outcomes)}  # noqa: S608


def safe_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: one that would start a formula gets a leading apostrophe (OWASP)."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def calls_csv(calls: list[dict[str, Any]]) -> str:
    """The calls as CSV (CSV_COLUMNS), every text cell quoted where it must be and safe to open in a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for call in calls:
        writer.writerow([safe_cell(call[column]) for column in CSV_COLUMNS])
    return buffer.getvalue()


def last_call_text(call: dict[str, Any] | None, today: date) -> str | None:
    """ "called 3 days ago: at risk" (or today, yesterday, in N days for a date ahead); None without a call."""
    if call is None:
        return None
    days = (today - date.fromisoformat(call["when"])).days
    ago = {0: "today", 1: "yesterday", -1: "tomorrow"}.get(days, f"{days} days ago" if days > 0 else f"in {-days} days")
    return f"called {ago}: {OUTCOME_SHORT[call['outcome']]}"


# --- Cycles and the measurement group --------------------------------------------------------
def cycle_seed(cycle: int) -> str:
    """The seed of a cycle's draw: written down with the cycle, so anyone can redraw it."""
    return f"measurement group, cycle {cycle}"


def assign_groups(clients: list[str], share: float, seed: str, earlier: dict[str, bool]) -> list[bool]:
    """Whether each client is in the measurement group: a client assigned in an earlier cycle keeps that
    group; of the others, `share` of them (rounded to the nearest client) are drawn by a generator seeded
    with `seed`.

    The share is drawn exactly, not each client with probability `share`: a cycle of 50 calls at 0.2 drew
    5 clients one time and 12 the next, and a group half its size detects only much larger effects.
    """
    draw = random.Random(seed)  # noqa: S311 (an assignment, not a secret)
    new = [client for client in clients if client not in earlier]
    drawn = set(draw.sample(new, int(share * len(new) + 0.5)))
    return [earlier[client] if client in earlier else client in drawn for client in clients]


def read_cycle(connection: sqlite3.Connection, cycle: int) -> dict[str, Any] | None:
    row = connection.execute("SELECT * FROM cycles WHERE cycle = ?", (cycle,)).fetchone()
    if row is None:
        return None
    members = [dict(member) | {"snapshot": json.loads(member["snapshot"]),
                               "measurement_group": bool(member["measurement_group"])}
               for member in connection.execute("SELECT client, rank, probability, measurement_group, snapshot "
                                                "FROM cycle_clients WHERE cycle = ? ORDER BY rank", (cycle,))]
    return {**dict(row), "clients": members}


def record_cycle(path: Path, cycle: int, members: list[dict[str, Any]], calls_per_cycle: int, share: float,
                 model_version: str | None = None, release: str | None = None) -> dict[str, Any]:
    """The cycle's calls and measurement group, assigned once: a cycle already recorded (a report run again
    under its number) is returned as it was, so the group is stable for the cycle.

    `members` are the top clients, riskiest first: {client, rank, probability, snapshot}.
    """
    with writing(path) as connection:
        connection.row_factory = sqlite3.Row
        known = read_cycle(connection, cycle)
        if known is not None:
            return known
        earlier: dict[str, bool] = {}
        if share > 0:
            for row in connection.execute("SELECT client, measurement_group FROM cycle_clients JOIN cycles USING "
                                          "(cycle) WHERE control_share > 0 ORDER BY cycle DESC"):
                earlier[row["client"]] = bool(row["measurement_group"])  # the oldest assignment wins
        seed = cycle_seed(cycle)
        clients = [member["client"] for member in members]
        groups = assign_groups(clients, share, seed, earlier) if share > 0 else [False] * len(clients)
        connection.execute("INSERT INTO cycles (cycle, assigned_at, model_version, release, calls_per_cycle, "
                           "control_share, seed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (cycle, utc_now(), model_version, release, calls_per_cycle, share, seed))
        connection.executemany(
            "INSERT INTO cycle_clients (cycle, client, rank, probability, measurement_group, snapshot) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(cycle, m["client"], m["rank"], m.get("probability"), int(group), json.dumps(m["snapshot"]))
             for m, group in zip(members, groups, strict=True)])
        recorded = read_cycle(connection, cycle)
    log.info("cycle %d: %d clients to call, %d of them in the measurement group (reporting.control_share %s)",
             cycle, len(members), sum(groups), share)
    return recorded


def group_of(cycle: dict[str, Any] | None) -> frozenset[str]:
    """The clients of a cycle's measurement group."""
    return frozenset(m["client"] for m in (cycle or {}).get("clients", []) if m["measurement_group"])


def read_cycles(path: Path) -> list[dict[str, Any]]:
    """Every recorded cycle with its clients, oldest first."""
    with reading(path) as connection:
        if connection is None:
            return []
        numbers = [row[0] for row in connection.execute("SELECT cycle FROM cycles ORDER BY cycle")]
        return [read_cycle(connection, number) for number in numbers]


def latest_cycle(path: Path) -> dict[str, Any] | None:
    """The newest cycle with its clients; None before the first."""
    with reading(path) as connection:
        if connection is None:
            return None
        row = connection.execute("SELECT max(cycle) FROM cycles").fetchone()
        return read_cycle(connection, row[0]) if row[0] is not None else None
