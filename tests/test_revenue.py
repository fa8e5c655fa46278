"""Issue 22.6, revenue at risk: the optional annual_revenue column, from the contract to the call list, /risk and the page.

A file, table or record without the column is as valid as before; where present each value is a number >= 0
or empty (unknown). It is never a feature. Each listed client's revenue at risk is its probability (the
calibrated one, as shown) times its revenue.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sqlite3
from pathlib import Path

import polars as pl
import pytest

import app as app_module
import ingestion
import training
from conftest import HEADER, client_rows, deploy_pipeline, write_config, write_csv
from riskcore.config import load_config
from riskcore.contract import FEATURES, FINAL_DATA, MODEL_METADATA, REVENUE, RISK_RECORD, DataError
from riskcore.data.client_csv import read_client_frame
from riskcore.data.contract_rules import RecordError, check_record
from riskcore.data.db_connection import DatabaseError
from riskcore.data.db_ingest import read_table
from riskcore.data.db_setting import parse_input_database
from riskcore.formatting import money
from riskcore.model.calibration import calibrated_probability
from riskcore.release.load import load_deployed_calibrator, require_deployment
from riskcore.report import call_list

REVENUE_HEADER = f"{HEADER},{REVENUE}"
RECORD = {"corporation": "abcd", "lastmonth_activity": 10, "lastyear_activity": 120, "number_of_employees": 5}


def with_revenue(rows: list[str], seed: int, unknown_every: int = 7) -> list[str]:
    """conftest's rows with a revenue each: a whole or decimal amount, every `unknown_every`-th one empty."""
    out = []
    for i, row in enumerate(rows):
        amount = "" if i % unknown_every == 3 else (f"{(i * 7919 + seed * 104729) % 5_000_000}" if i % 2 else
                                                    f"{(i * 6841 + seed) % 900_000}.25")
        out.append(f"{row},{amount}")
    return out


# --- The contract ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("written", "read"), [
    ("1000", 1000.0), ("12.5", 12.5), ("0", 0.0), (" 7 ", 7.0), ("1e6", 1e6), ("+3", 3.0), (".5", 0.5), ("", None)])
def test_a_revenue_that_is_a_number_of_at_least_0_or_empty_is_accepted(written, read):
    frame = read_client_frame(f"{REVENUE_HEADER}\nabcd,1,2,3,0,{written}\n".encode(), "clients.csv")
    assert frame.columns[-1] == REVENUE and frame[REVENUE].to_list() == [read]


@pytest.mark.parametrize(("written", "sentence"), [
    ("-5", 'clients.csv has a negative value in column "annual_revenue" at row 2.'),
    ("abc", 'clients.csv has "abc" in column "annual_revenue" at row 2; expected a number >= 0 or an empty value.'),
    ("nan", 'clients.csv has "nan" in column "annual_revenue" at row 2; expected a number >= 0 or an empty value.'),
    ("inf", 'clients.csv has "inf" in column "annual_revenue" at row 2; expected a number >= 0 or an empty value.'),
    ('"1,000"', 'clients.csv has "1,000" in column "annual_revenue" at row 2; expected a number >= 0 or an empty '
                "value."),
    ("2e12", 'clients.csv has an implausibly large value in column "annual_revenue" at row 2.'),
])
def test_a_bad_revenue_is_one_sentence_naming_the_row_in_memory_and_streamed(deployed, tmp_path, written, sentence):
    content = f"{REVENUE_HEADER}\nabcd,1,2,3,0,100\nefgh,1,2,3,0,{written}\nijkl,4,5,6,,\n"
    with pytest.raises(DataError) as eager:
        read_client_frame(content.encode(), "clients.csv", require_target="optional")
    assert str(eager.value) == sentence
    path = tmp_path / "clients.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as streamed:  # the call list's streamed check says the same
        call_list.risk_scores(deployed, path)
    assert str(streamed.value) == sentence


def test_a_file_without_revenue_is_as_valid_as_before():
    frame = read_client_frame(f"{HEADER}\nabcd,1,2,3,0\n".encode(), "clients.csv")
    assert frame.columns == ["corporation", *FEATURES, "exited"]


@pytest.mark.parametrize(("value", "kept"), [(5, 5.0), (5.5, 5.5), (0, 0.0), (None, None)])
def test_a_json_record_may_give_a_revenue(value, kept):
    assert check_record({**RECORD, REVENUE: value}, "records[0]")[2] == kept
    assert check_record(RECORD, "records[0]")[2] is None


@pytest.mark.parametrize("value", ["5", -1, True, math.nan, math.inf, 2e12, [5]])
def test_a_bad_revenue_in_a_json_record_names_the_field(value):
    with pytest.raises(RecordError) as caught:
        check_record({**RECORD, REVENUE: value}, "records[0]")
    assert caught.value.field == "records[0].annual_revenue"
    assert str(caught.value).startswith("records[0].annual_revenue must be a number from 0 to ")


def test_prediction_gives_revenue_at_risk_where_a_record_gives_revenue(deployed):
    client = app_module.create_app(deployed.config_file).test_client()
    records = [{**RECORD, REVENUE: 200_000}, {**RECORD, "corporation": "efgh"}]
    answer = client.post("/prediction", json={"records": records}).get_json()
    first, second = answer["predictions"]
    assert first["revenue_at_risk"] == round(first["probability"] * 200_000, 2)
    assert second["revenue_at_risk"] is None
    refused = client.post("/prediction", json={"records": [{**RECORD, REVENUE: -3}]})
    assert refused.status_code == 400 and refused.get_json()["field"] == "records[0].annual_revenue"


# --- Tables --------------------------------------------------------------------------------------------
def sqlite_source(path: Path, columns: str, rows: list[tuple]):
    with sqlite3.connect(path) as connection:
        connection.execute(f"CREATE TABLE clients ({columns})")
        connection.executemany(f"INSERT INTO clients VALUES ({', '.join('?' * len(rows[0]))})", rows)
    connection.close()
    return parse_input_database({"url": f"sqlite:///{path.name}", "table": "clients"}, path.parent, "config.json")


BASE_SQL = "corporation TEXT, lastmonth_activity INTEGER, lastyear_activity INTEGER, number_of_employees INTEGER"


def test_a_table_with_or_without_revenue_is_read(tmp_path):
    without = read_table(sqlite_source(tmp_path / "a.sqlite", BASE_SQL, [("a", 1, 2, 3)]), None)
    assert REVENUE not in without.frame.columns
    source = sqlite_source(tmp_path / "b.sqlite", f"{BASE_SQL}, annual_revenue REAL",
                           [("a", 1, 2, 3, 1500.5), ("b", 4, 5, 6, None), ("c", 7, 8, 9, 12)])
    assert read_table(source, None).frame[REVENUE].to_list() == [1500.5, None, 12.0]


def test_a_bad_revenue_in_a_table_holds_it_back_naming_the_client(tmp_path):
    source = sqlite_source(tmp_path / "c.sqlite", f"{BASE_SQL}, annual_revenue REAL",
                           [("a", 1, 2, 3, 1500.5), ("b", 4, 5, 6, -2.0)])
    with pytest.raises(DatabaseError) as caught:
        read_table(source, None)
    assert 'client "b" has "-2.0" in column "annual_revenue", expected a number >= 0 or an empty value' in str(
        caught.value)


@pytest.mark.slow
def test_a_postgres_table_with_numeric_revenue_is_read(pg_env, pg_database):
    pg_env.psql("CREATE TABLE clients (corporation text, lastmonth_activity int, lastyear_activity int, "
                "number_of_employees int, annual_revenue numeric(14, 2)); INSERT INTO clients VALUES "
                "('a', 1, 2, 3, 1500.50), ('b', 4, 5, 6, NULL);", pg_database)
    source = parse_input_database({"url": pg_env.url(pg_database), "table": "clients"}, Path("/"), "config.json")
    assert read_table(source, None).frame[REVENUE].to_list() == [1500.5, None]
    pg_env.psql("INSERT INTO clients VALUES ('c', 1, 1, 1, -1);", pg_database)
    with pytest.raises(DatabaseError, match='column "annual_revenue"'):
        read_table(source, None)


# --- Ingestion: the column survives the merge -----------------------------------------------------
def test_files_with_and_without_revenue_mix_and_the_latest_snapshot_gives_it(tmp_path):
    write_csv(tmp_path / "input" / "a.csv", ["aaaa,1,2,3,0", "bbbb,4,5,6,1", "cccc,7,8,9,0"])
    write_csv(tmp_path / "input" / "b.csv", ["aaaa,1,2,3,0,900", "dddd,1,1,1,0,"], header=REVENUE_HEADER)
    write_csv(tmp_path / "input" / "c.csv", ["cccc,7,8,9,0,50.5", "dddd,1,1,1,0,70"], header=REVENUE_HEADER)
    write_csv(tmp_path / "test" / "testdata.csv", client_rows(10, seed=3))
    config = load_config(write_config(tmp_path))
    ingestion.run(config)
    final = pl.read_csv(config.output_folder / FINAL_DATA)
    assert final.columns == ["corporation", *FEATURES, "exited", REVENUE]
    assert dict(zip(final["corporation"], final[REVENUE], strict=True)) == {
        "bbbb": None, "aaaa": 900.0, "cccc": 50.5, "dddd": 70.0}


def test_data_without_revenue_ingests_as_before(deployed):
    assert (deployed.output_folder / FINAL_DATA).read_text().splitlines()[0] == HEADER


# --- Never a feature -------------------------------------------------------------------------------
def test_revenue_never_reaches_the_models_features(tmp_path):
    rows = client_rows(200, seed=5)
    write_csv(tmp_path / "plain" / "input" / "clients.csv", rows)
    write_csv(tmp_path / "rich" / "input" / "clients.csv", with_revenue(rows, seed=5), header=REVENUE_HEADER)
    models = []
    for name in ("plain", "rich"):
        write_csv(tmp_path / name / "test" / "testdata.csv", client_rows(20, seed=3))
        config = load_config(write_config(tmp_path / name))
        ingestion.run(config)
        training.run(config)
        metadata = json.loads((config.output_model_folder / MODEL_METADATA).read_text())
        assert metadata["features"] == list(FEATURES)
        assert REVENUE not in json.dumps(metadata.get("training_profile"))
        models.append(metadata)
    assert models[0]["coefficients"] == models[1]["coefficients"]
    assert models[0]["intercept"] == models[1]["intercept"]


# --- The call list ------------------------------------------------------------------------------------
@pytest.fixture
def rich(tmp_path):
    """A deployed project whose input files carry annual_revenue (some unknown), with one file without it."""
    write_csv(tmp_path / "input" / "dataset1.csv", with_revenue(client_rows(120, seed=1), seed=1),
              header=REVENUE_HEADER)
    write_csv(tmp_path / "input" / "dataset2.csv", client_rows(100, seed=2))
    write_csv(tmp_path / "test" / "testdata.csv", client_rows(60, seed=3, prefix="t", noise=0.2))
    return deploy_pipeline(load_config(write_config(tmp_path)))


def test_revenue_at_risk_is_the_shown_probability_times_the_revenue(rich):
    risk = call_list.risk_scores(rich)
    with open(risk.path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    final = pl.read_csv(rich.output_folder / FINAL_DATA, schema_overrides={"corporation": pl.String})
    revenue = dict(zip(final["corporation"], final[REVENUE], strict=True))
    deployment = require_deployment(rich.prod_deployment_folder)
    calibrator = load_deployed_calibrator(deployment)
    assert calibrator is not None  # the calibrated probability, as the list shows it
    known = 0
    for row in rows:
        expected = revenue[row["corporation"]]
        if expected is None:
            assert row[REVENUE] == row["revenue_at_risk"] == ""
            continue
        known += 1
        chance = float(calibrated_probability(calibrator, [float(row["log_odds"])])[0])
        assert float(row["probability"]) == pytest.approx(chance, abs=5e-7)
        assert float(row[REVENUE]) == expected
        assert float(row["revenue_at_risk"]) == round(chance * expected, 2)
    assert 0 < known < len(rows)
    record = json.loads((rich.output_model_folder / RISK_RECORD).read_text())
    assert REVENUE in record["columns"] and "revenue_at_risk" in record["columns"]


def test_without_revenue_the_two_columns_are_empty(deployed):
    risk = call_list.risk_scores(deployed)
    with open(risk.path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {row[REVENUE] for row in rows} == {row["revenue_at_risk"] for row in rows} == {""}
    assert json.loads((deployed.output_model_folder / RISK_RECORD).read_text())["revenue_at_risk"] is None


def test_the_record_totals_the_revenue_at_risk_of_this_cycles_calls(rich):
    risk = call_list.risk_scores(rich, cycle=1)
    with open(risk.path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:rich.reporting["calls_per_cycle"]]
    known = [float(row["revenue_at_risk"]) for row in rows if row["revenue_at_risk"]]
    record = json.loads((rich.output_model_folder / RISK_RECORD).read_text())["revenue_at_risk"]
    assert record == {"total": pytest.approx(sum(known), abs=0.01), "calls": len(rows), "known": len(known)}


# --- /risk and the page --------------------------------------------------------------------------------
def by_revenue(clients: list[dict]) -> list[tuple]:
    """The order ?order=revenue_at_risk promises: the largest first, unknown last, then by rank."""
    return sorted((c["revenue_at_risk"] is None, -(c["revenue_at_risk"] or 0), c["rank"]) for c in clients)


def test_risk_orders_by_revenue_at_risk_when_asked(rich):
    client = app_module.create_app(rich.config_file).test_client()
    ranked = client.get("/risk?limit=1000").get_json()
    assert ranked["order"] == "risk"
    assert [c["rank"] for c in ranked["clients"]] == list(range(1, ranked["total"] + 1))
    ordered = client.get("/risk?limit=1000&order=revenue_at_risk").get_json()
    assert ordered["order"] == "revenue_at_risk" and ordered["count"] == ranked["count"]
    seen = [(c["revenue_at_risk"] is None, -(c["revenue_at_risk"] or 0), c["rank"]) for c in ordered["clients"]]
    assert seen == by_revenue(ranked["clients"])
    assert {c["corporation"]: c for c in ordered["clients"]} == {c["corporation"]: c for c in ranked["clients"]}
    pages, offset = [], 0
    while offset is not None:  # paged, the same order
        page = client.get(f"/risk?limit=9&offset={offset}&order=revenue_at_risk").get_json()
        pages += page["clients"]
        offset = page["next_offset"]
    assert pages == ordered["clients"]
    top = ordered["clients"][0]
    one = client.get(f"/risk/{top['corporation']}").get_json()["client"]
    assert one["revenue_at_risk"] == top["revenue_at_risk"] == round(top["probability"] * top[REVENUE], 2)


@pytest.mark.parametrize("query", ["order=revenue", "order=revenue_at_risk&order=risk", "order=RISK"])
def test_an_unknown_order_is_a_400_naming_it(rich, query):
    response = app_module.create_app(rich.config_file).test_client().get(f"/risk?{query}")
    assert response.status_code == 400 and response.get_json()["field"] == "order"
    value = query.split("=")[1]
    assert '"order"' in response.get_json()["message"]
    if "&" not in query:
        assert f'"{value}"' in response.get_json()["message"]


def page_clients(html: str) -> list[str]:
    return re.findall(r'<td class="client"><a href="[^"]*">([^<]+)</a>', html)


def test_the_page_orders_by_revenue_at_risk_and_its_csv_gives_what_it_shows(rich):
    client = app_module.create_app(rich.config_file).test_client()
    answer = client.get("/risk?limit=1000&order=revenue_at_risk").get_json()
    html = client.get("/?order=revenue_at_risk").get_data(as_text=True)
    size = rich.reporting["calls_per_cycle"]
    assert page_clients(html) == [c["corporation"] for c in answer["clients"][:size]]
    assert 'href="/downloads/call_list.csv?order=revenue_at_risk"' in html
    download = client.get("/downloads/call_list.csv?order=revenue_at_risk").get_data(as_text=True)
    rows = list(csv.DictReader(download.splitlines()))
    assert [row["corporation"] for row in rows] == [c["corporation"] for c in answer["clients"]]
    assert [float(row["revenue_at_risk"]) if row["revenue_at_risk"] else None for row in rows] == [
        c["revenue_at_risk"] for c in answer["clients"]]
    ranked = client.get("/").get_data(as_text=True)
    assert page_clients(ranked) == [c["corporation"] for c in
                                    client.get(f"/risk?limit={size}").get_json()["clients"]]
    assert client.get("/?order=size").status_code == 400


def test_the_health_strip_totals_the_revenue_at_risk_of_this_cycles_calls(rich):
    client = app_module.create_app(rich.config_file).test_client()
    size = rich.reporting["calls_per_cycle"]
    calls = client.get(f"/risk?limit={size}").get_json()["clients"]
    known = [c["revenue_at_risk"] for c in calls if c["revenue_at_risk"] is not None]
    html = client.get("/").get_data(as_text=True)
    strip = re.search(r'<span id="revenue-at-risk">([^<]+)</span>', html).group(1)
    expected = f"{money(sum(known))} revenue at risk in this cycle&#39;s {len(calls)} calls"
    assert strip.startswith(expected)
    assert (f"revenue known for {len(known)}" in strip) == (len(known) < len(calls))


def test_without_revenue_the_strip_says_nothing_of_it(deployed):
    html = app_module.create_app(deployed.config_file).test_client().get("/").get_data(as_text=True)
    assert 'id="revenue-at-risk"' not in html and "revenue" not in html.lower()


@pytest.mark.parametrize(("value", "shown"), [
    (0, "0"), (950.4, "950"), (12_345, "12 k"), (999_499, "999 k"), (1_234_567, "1.2 M"), (2.5e9, "2.5 bn"),
    (None, "\N{EM DASH}")])
def test_money_reads_in_the_units_people_say(value, shown):
    assert money(value) == shown


def test_the_pdfs_first_page_gives_the_revenue_at_risk_of_this_cycles_calls(rich):
    from pypdf import PdfReader

    import reporting

    paths = reporting.run(rich)
    first = " ".join(PdfReader(paths["summary_report"]).pages[0].extract_text().split())
    found = json.loads((rich.output_model_folder / RISK_RECORD).read_text())["revenue_at_risk"]
    assert found is not None
    assert call_list.at_risk_sentence(found) in first.replace("\u2019", "'")


def test_a_revenue_column_with_no_value_known_shows_nothing_of_it(tmp_path):
    write_csv(tmp_path / "input" / "a.csv", [f"{row}," for row in client_rows(150, seed=1)], header=REVENUE_HEADER)
    write_csv(tmp_path / "test" / "testdata.csv", client_rows(40, seed=3))
    config = deploy_pipeline(load_config(write_config(tmp_path)))
    html = app_module.create_app(config.config_file).test_client().get("/").get_data(as_text=True)
    assert 'id="revenue-at-risk"' not in html and 'id="order"' not in html and "revenue at risk" not in html


def test_with_no_earlier_run_kept_the_change_reads_as_a_dash_not_none(rich):
    html = app_module.create_app(rich.config_file).test_client().get("/").get_data(as_text=True)
    changes = re.findall(r'<td class="change [^"]*">([^<]*)</td>', html)
    assert changes and set(changes) == {"\N{EM DASH}"}
