"""The calls store (riskcore.ops.calls) and its endpoints: GET/POST /calls and GET /calls.csv, for a CRM to sync."""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

import app as app_module
from riskcore.contract import CALLS_STORE
from riskcore.ops import calls

TODAY = date(2026, 3, 10)


def call(**changes) -> dict:
    return {"corporation": "abcd", "when": "2026-03-09", "outcome": "at_risk", "note": "asks for a discount",
            "by": "Ann", **changes}


# --- Checking a call -------------------------------------------------------------------------
def test_a_good_call_is_checked_and_the_date_defaults_to_today():
    checked = calls.check_call({"corporation": " abcd ", "outcome": "stays", "by": "Ann"}, TODAY)
    assert checked == calls.Call(corporation="abcd", when="2026-03-10", outcome="stays", note="", by="Ann")


@pytest.mark.parametrize(("changes", "field", "phrase"), [
    ({"outcome": "maybe"}, "outcome", "one of stays, at_risk, leaving, not_reached"),
    ({"outcome": None}, "outcome", "one of"),
    ({"corporation": ""}, "corporation", "missing"),
    ({"corporation": 12}, "corporation", "must be a string"),
    ({"corporation": "x" * 201}, "corporation", "at most 200"),
    ({"by": "  "}, "by", "missing"),
    ({"by": "Ann\x00"}, "by", "control character"),
    ({"corporation": "two\nlines"}, "corporation", "holds a line break (\\n); a client id is one line of text"),
    ({"corporation": "a\tb"}, "corporation", "holds a tab (\\t)"),  # ingestion's id rule, word for word
    ({"note": "n" * 501}, "note", "501 characters long; at most 500"),
    ({"note": ["a"]}, "note", "must be a string"),
    ({"when": "10/03/2026"}, "when", "YYYY-MM-DD"),
    ({"when": "20260310xx"}, "when", "YYYY-MM-DD"),
    ({"when": "2026-02-30"}, "when", "no date of the calendar"),
    ({"when": "2026-03-12"}, "when", "to today"),
    ({"when": "1999-12-31"}, "when", "from 2000-01-01"),
    ({"when": 20260310}, "when", "YYYY-MM-DD"),
    ({"phone": "123"}, "phone", "no field of a call"),
])
def test_a_bad_call_is_refused_with_one_sentence_naming_the_field(changes, field, phrase):
    with pytest.raises(calls.CallError) as refused:
        calls.check_call(call(**changes), TODAY)
    assert refused.value.field == field
    message = str(refused.value)
    assert phrase in message and message.endswith(".") and message.count(". ") == 0, message


def test_an_emoji_sequence_in_an_id_is_kept_as_ingestion_keeps_it():
    """The zero-width joiner of a family emoji is no control character: ingestion takes the id, so does a call (it was
    refused as "a control character", so such a client's calls could not be recorded)."""
    family = "fam\U0001F468\u200d\U0001F469\u200d\U0001F467"
    assert calls.check_call(call(corporation=family), TODAY).corporation == family
    assert calls.check_call(call(corporation="nbsp\u00a0"), TODAY).corporation == "nbsp\u00a0"  # only blanks stripped


def test_a_note_of_500_characters_with_line_breaks_is_kept():
    note = ("line\r\n" * 100)[:500]
    assert len(calls.check_call(call(note=note), TODAY).note) <= 500


def test_a_list_names_the_call_at_fault_and_a_long_list_is_too_many():
    with pytest.raises(calls.CallError, match=r"^calls\[1\]: \"outcome\""):
        calls.check_calls([call(), call(outcome="x")], TODAY)
    with pytest.raises(calls.CallError) as refused:
        calls.check_calls([call()] * (calls.MAX_CALLS + 1), TODAY)
    assert refused.value.too_many
    with pytest.raises(calls.CallError, match="non-empty list"):
        calls.check_calls([], TODAY)


# --- The store -------------------------------------------------------------------------------
def test_calls_are_stored_once_and_read_newest_first(tmp_path):
    path = tmp_path / "models" / CALLS_STORE
    assert calls.read_calls(path, 10, 0) == (0, []) and not path.exists()  # reading creates nothing
    first = calls.check_calls([call(when="2026-03-01"), call(when="2026-03-05", outcome="stays")], TODAY)
    stored, repeats = calls.record_calls(path, first)
    assert len(stored) == 2 and repeats == 0
    again, repeats = calls.record_calls(path, first[:1] + calls.check_calls([call(corporation="efgh")], TODAY))
    assert [c["corporation"] for c in again] == ["efgh"] and repeats == 1
    total, page = calls.read_calls(path, 2, 0)
    assert total == 3 and [(c["corporation"], c["when"]) for c in page] == [("efgh", "2026-03-09"), ("abcd", "2026-03-05")]
    assert calls.read_calls(path, 10, 0, client="abcd")[0] == 2
    assert calls.last_calls(path)["abcd"]["outcome"] == "stays"
    assert calls.called_clients(path) == {"abcd", "efgh"}


def test_a_failed_transaction_stores_nothing(tmp_path):
    path = tmp_path / CALLS_STORE
    calls.record_calls(path, calls.check_calls([call()], TODAY))

    def failing_half_way():
        yield calls.check_call(call(corporation="new1"), TODAY)  # inserted, then rolled back
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        calls.record_calls(path, failing_half_way())
    assert calls.read_calls(path, 10, 0)[0] == 1


def test_two_writers_at_once_both_land(tmp_path):
    path = tmp_path / CALLS_STORE
    batches = [calls.check_calls([call(corporation=f"w{w}c{i}") for i in range(50)], TODAY) for w in range(4)]
    threads = [threading.Thread(target=calls.record_calls, args=(path, batch)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls.read_calls(path, 1, 0)[0] == 200
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


@pytest.mark.parametrize(("days", "text"), [(0, "called today: at risk"), (1, "called yesterday: at risk"),
                                            (3, "called 3 days ago: at risk")])
def test_the_last_call_in_words(days, text):
    when = (TODAY - timedelta(days=days)).isoformat()
    assert calls.last_call_text({"when": when, "outcome": "at_risk"}, TODAY) == text
    assert calls.last_call_text(None, TODAY) is None


def test_a_cycle_is_assigned_once_and_a_client_keeps_its_first_group(tmp_path):
    path = tmp_path / CALLS_STORE
    members = [{"client": f"c{i:03d}", "rank": i + 1, "probability": 0.5, "snapshot": {"exited": None}}
               for i in range(200)]
    first = calls.record_cycle(path, 4, members, 200, 0.25)
    groups = {m["client"]: m["measurement_group"] for m in first["clients"]}
    assert sum(groups.values()) == 50  # a quarter of 200, drawn exactly
    assert calls.record_cycle(path, 4, members[:10], 10, 0.9) == first  # the same cycle: as it was
    later = calls.record_cycle(path, 5, members[100:] + [{**members[0], "client": "fresh"}], 101, 0.25)
    for member in later["clients"]:
        if member["client"] in groups:
            assert member["measurement_group"] == groups[member["client"]]
    redrawn = calls.assign_groups([m["client"] for m in members], 0.25, calls.cycle_seed(4), {})
    assert redrawn == [groups[m["client"]] for m in members]  # anyone can redraw it from the recorded seed
    assert calls.latest_cycle(path)["cycle"] == 5 and [c["cycle"] for c in calls.read_cycles(path)] == [4, 5]


@pytest.mark.parametrize(("calls_per_cycle", "share", "group"), [(50, 0.2, 10), (50, 0.1, 5), (60, 0.25, 15),
                                                                 (7, 0.1, 1), (3, 0.1, 0)])
def test_a_new_cycles_measurement_group_is_its_share_of_the_calls_drawn_exactly(tmp_path, calls_per_cycle, share,
                                                                                   group):
    members = [{"client": f"c{i}", "rank": i + 1, "probability": 0.5, "snapshot": {}} for i in range(calls_per_cycle)]
    for cycle in (1, 2, 3):  # each cycle its own draw, the same size
        drawn = calls.record_cycle(tmp_path / f"{cycle}-{CALLS_STORE}", cycle, members, calls_per_cycle, share)
        assert sum(m["measurement_group"] for m in drawn["clients"]) == group


def test_a_cycles_share_is_drawn_among_the_clients_not_assigned_before(tmp_path):
    path = tmp_path / CALLS_STORE
    members = [{"client": f"c{i:02d}", "rank": i + 1, "probability": 0.5, "snapshot": {}} for i in range(40)]
    first = {m["client"]: m["measurement_group"] for m in calls.record_cycle(path, 1, members[:20], 20, 0.25)["clients"]}
    later = calls.record_cycle(path, 2, members, 40, 0.25)["clients"]
    assert all(m["measurement_group"] == first[m["client"]] for m in later if m["client"] in first)
    assert sum(m["measurement_group"] for m in later if m["client"] not in first) == 5  # a quarter of the 20 new


def test_no_measurement_group_without_a_control_share(tmp_path):
    members = [{"client": f"c{i}", "rank": i + 1, "probability": 0.5, "snapshot": {}} for i in range(50)]
    cycle = calls.record_cycle(tmp_path / CALLS_STORE, 1, members, 50, 0.0)
    assert not any(m["measurement_group"] for m in cycle["clients"])


# --- The endpoints ---------------------------------------------------------------------------
@pytest.fixture
def api(project: Path):
    return app_module.create_app(project).test_client()


def test_json_calls_round_trip_through_post_and_get(api, project):
    sent = [call(corporation="abcd", when="2026-01-02"), call(corporation="efgh", outcome="not_reached", note="", by="Bo"),
            {"corporation": "ijkl", "outcome": "stays", "by": "Cy"}]
    answer = api.post("/calls", json=sent)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["recorded"] == 3
    got = api.get("/calls?limit=2").get_json()
    assert got["total"] == 3 and got["next_offset"] == 2 and got["count"] == len(got["calls"]) == 2
    rest = api.get("/calls?limit=2&offset=2").get_json()
    assert rest["next_offset"] is None and rest["count"] == 1  # one paging scheme: /risk and /history count too
    back = {c["corporation"]: {k: c[k] for k in calls.CALL_FIELDS} for c in got["calls"] + rest["calls"]}
    expected = {c["corporation"]: {"when": date.today().isoformat(), "note": "", **c} for c in sent}
    assert back == expected
    assert api.post("/calls", json=sent[0]).get_json() == {"recorded": 0, "already_stored": 1, "calls": [],
                                                          "not_in_data": None}  # no call list to check against
    assert (project.parent / "models" / CALLS_STORE).is_file()
    assert not (project.parent / "prod" / CALLS_STORE).exists()


def test_a_call_names_its_client_corporation_as_every_list_and_answer_does(api):
    """One name for a client in the JSON and the CSV (issue 22.5, docs/api.md): /risk and risk_scores.csv say
    corporation, so do /calls, its ?corporation= filter and calls.csv; "client" is no field of a call."""
    assert api.post("/calls", json=call()).status_code == 200
    [stored] = api.get("/calls?corporation=abcd").get_json()["calls"]
    assert stored["corporation"] == "abcd" and "client" not in stored
    assert api.get("/calls.csv").get_data(as_text=True).startswith("id,corporation,when,")
    old = api.post("/calls", json={"client": "abcd", "outcome": "stays", "by": "Ann"})
    assert old.status_code == 400 and old.get_json()["field"] == "client"
    assert "corporation" in old.get_json()["message"]
    assert api.get("/calls?client=abcd").status_code == 400


def test_the_csv_export_round_trips_and_is_safe_in_a_spreadsheet(api):
    sent = [call(note='says "maybe", then, no\nnew line'), call(corporation="x,y", note="=HYPERLINK(\"evil\")")]
    api.post("/calls", json=sent)
    answer = api.get("/calls.csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [row["corporation"] for row in rows] == ["abcd", "x,y"]
    assert {k: rows[0][k] for k in calls.CALL_FIELDS} == sent[0]
    assert {k: rows[1][k] for k in calls.CALL_FIELDS if k != "note"} == {k: v for k, v in sent[1].items() if k != "note"}
    assert rows[1]["note"] == "'=HYPERLINK(\"evil\")"  # shown as text, never run as a formula
    as_json = api.get("/calls").get_json()["calls"]
    assert {c["id"]: c["recorded_at"] for c in as_json} == {int(r["id"]): r["recorded_at"] for r in rows}
    # The CSV says what the JSON says, column for column (the formula's guard apart).
    by_id = {int(r["id"]): r for r in rows}
    for each in as_json:
        row = by_id[each["id"]]
        assert set(row) == set(each)
        assert {k: str(each[k]) for k in row} == {k: v.removeprefix("'") if v.startswith("'=") else v
                                                 for k, v in row.items()}


@pytest.mark.parametrize(("request_args", "status", "field"), [
    ({"json": call(outcome="gone")}, 400, "outcome"),
    ({"json": call(note="n" * 501)}, 400, "note"),
    ({"json": [call(), call(when="tomorrow")]}, 400, "when"),
    ({"json": {"records": []}}, 400, "records"),
    ({"json": "abcd"}, 400, "calls"),
    ({"data": b"{", "content_type": "application/json"}, 400, None),
    ({"data": b"corporation=abcd", "content_type": "application/x-www-form-urlencoded"}, 415, None),
])
def test_a_bad_post_is_a_4xx_json_sentence_naming_the_field(api, request_args, status, field):
    answer = api.post("/calls", **request_args)
    body = answer.get_json()
    assert answer.status_code == status and body["message"].endswith("."), body
    assert body.get("field") == field
    assert api.get("/calls").get_json()["total"] == 0


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "offset=-1", "page=2", "corporation="])
def test_a_bad_query_is_a_400(api, query):
    assert api.get(f"/calls?{query}").status_code == 400


@pytest.mark.parametrize("query", ["corporation=abcd", "limit=5"])
def test_the_csv_export_refuses_a_query_it_would_ignore(api, query):
    """Every call, always: a filter or page size given to the export is a 400 naming it, never quietly dropped."""
    answer = api.get(f"/calls.csv?{query}")
    assert answer.status_code == 400 and answer.get_json()["field"] == query.split("=")[0]


def test_with_a_key_the_calls_need_the_header(project, monkeypatch):
    monkeypatch.setenv("RISK_API_KEY", "s3cret-key-for-tests")
    keyed = app_module.create_app(project).test_client()
    assert keyed.post("/calls", json=call()).status_code == 401
    assert keyed.get("/calls.csv").status_code == 401
    answer = keyed.post("/calls", json=call(), headers={"X-API-Key": "s3cret-key-for-tests"})
    assert answer.status_code == 200 and answer.get_json()["recorded"] == 1


def test_a_call_for_an_id_the_data_does_not_hold_is_stored_and_named(deployed):
    """A CRM's mistyped id: stored as sent (the client may come with the next export), and named in not_in_data, since
    no page, list or measurement will show it; a listed client and one who left are in the data."""
    client = app_module.create_app(deployed.config_file).test_client()
    listed = client.get("/risk?limit=1").get_json()["clients"][0]["corporation"]
    final = pd.read_csv(deployed.final_data_file)
    left = str(final.loc[final["exited"] == 1, "corporation"].iloc[0])
    answer = client.post("/calls", json=[call(corporation=c) for c in (listed, left, "no-such-client", "zz-typo")])
    assert answer.status_code == 200 and answer.get_json()["recorded"] == 4
    assert answer.get_json()["not_in_data"] == ["no-such-client", "zz-typo"]
