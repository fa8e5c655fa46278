"""Does calling help: the measurement group of a cycle (risk_scores.csv, /risk) and the measured effect
(riskcore.report.call_effect) against hand computations on the same numbers; the drift check leaves called
clients out."""

from __future__ import annotations

import csv
import html
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

import app as app_module
import ingestion
from conftest import HEADER, write_csv
from riskcore import formatting
from riskcore.config import load_config
from riskcore.contract import CALLS_STORE, FEATURES, ID_COLUMN, RISK_RECORD, RISK_SCORES
from riskcore.ops import calls
from riskcore.ops.drift_check import without_called
from riskcore.report import call_effect, call_list, pdf

Z = 1.959963984540054  # the normal quantile of 0.975
Z_POWER = 0.8416212335729143  # of 0.8


def hand_wilson(left: int, rows: int) -> tuple[float, float]:
    """The Wilson score interval, written out from Wilson (1927)."""
    p = left / rows
    centre = (p + Z * Z / (2 * rows)) / (1 + Z * Z / rows)
    half = Z / (1 + Z * Z / rows) * math.sqrt(p * (1 - p) / rows + Z * Z / (4 * rows * rows))
    return centre - half, centre + half


def hand_newcombe(left1: int, rows1: int, left2: int, rows2: int) -> tuple[float, float, float]:
    p1, p2 = left1 / rows1, left2 / rows2
    (l1, u1), (l2, u2) = hand_wilson(left1, rows1), hand_wilson(left2, rows2)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def hand_power(p1: float, p2: float, n1: int, n2: int) -> float:
    from scipy.stats import norm

    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    spread0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    spread1 = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return float(norm.cdf((abs(p1 - p2) - Z * spread0) / spread1))


# --- The statistics against hand computations ------------------------------------------------
@pytest.mark.parametrize("counts", [(40, 300, 9, 31), (0, 20, 3, 10), (12, 12, 0, 5), (150, 1000, 30, 100)])
def test_the_interval_is_newcombes_from_wilson_intervals(counts):
    assert call_effect.newcombe(*counts) == pytest.approx(hand_newcombe(*counts), abs=1e-9)


def test_the_newcombe_interval_matches_his_published_example():
    # Newcombe (1998), Statistics in Medicine 17, table II, example (a): 56/70 against 48/80,
    # method 10 gives 0.0524 to 0.3339.
    difference, low, high = call_effect.newcombe(56, 70, 48, 80)
    assert (round(difference, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)


def test_the_needed_group_size_is_the_issues_example():
    assert call_effect.needed_per_group(0.3, 0.25) == 1251
    root = Z * math.sqrt(2 * 0.275 * 0.725) + Z_POWER * math.sqrt(0.3 * 0.7 + 0.25 * 0.75)
    assert call_effect.needed_per_group(0.3, 0.25) == math.ceil(root ** 2 / 0.05 ** 2)


def test_the_smallest_drop_has_80_percent_power_and_no_smaller_one_does():
    drop = call_effect.smallest_drop(0.3, 312, 31)
    assert hand_power(0.3, 0.3 - drop, 31, 312) == pytest.approx(0.8, abs=1e-6)
    assert hand_power(0.3, 0.3 - drop * 0.95, 31, 312) < 0.8
    assert call_effect.smallest_drop(0.3, 3, 2) is None  # even a drop to 0 is not seen with 5 clients


def test_before_any_label_the_sentence_says_what_is_missing():
    called = call_effect.Arm(listed=312, probability_sum=312 * 0.3)
    group = call_effect.Arm(listed=31, probability_sum=31 * 0.3)
    measured = call_effect.measured_effect(called, group, [3], with_call=0)
    assert measured["sentence"].startswith("312 called (0 reached, as recorded), 31 in the measurement group, labels "
                                           "for 0: about 1,250 per group are needed to see 30% → 25%; these group "
                                           "sizes can detect a drop from 30% to ")
    assert measured["difference"] is None and measured["interval"] is None
    assert measured["baseline_source"] == "the model's mean probability for the measurement group"


def test_without_a_measurement_group_the_sentence_says_how_to_get_one():
    measured = call_effect.measured_effect(call_effect.Arm(listed=50), call_effect.Arm(), [], 0)
    assert "reporting.control_share" in measured["sentence"] and measured["difference"] is None


@pytest.mark.parametrize(("listed", "latest", "expected"), [
    ({"a": 1}, None, None),
    ({"a": 1}, {"a": 1, "exited": None}, None),  # not labelled yet
    ({"a": 1}, {"a": 1, "exited": 0}, None),  # the snapshot it was listed with, labelled: nothing new
    ({"a": 1}, {"a": 2, "exited": 0}, 0),  # a later snapshot: stayed
    ({"a": 1}, {"a": 1, "exited": 1}, 1),  # left (it had not when listed)
])
def test_an_outcome_is_a_later_labelled_snapshot(listed, latest, expected, monkeypatch):
    monkeypatch.setattr(call_effect, "FEATURES", ("a",))
    assert call_effect.outcome(listed, latest) == expected


# --- The scripted sequence: a cycle with a measurement group, then labels arrive ---------------
@pytest.fixture
def measured_project(deployed):
    raw = json.loads(deployed.config_file.read_text())
    raw["reporting"] = {"calls_per_cycle": 60, "control_share": 0.25}
    deployed.config_file.write_text(json.dumps(raw))
    return load_config(deployed.config_file)


def test_a_cycle_marks_its_measurement_group_in_the_csv_the_record_and_risk(measured_project):
    config = measured_project
    result = call_list.risk_scores(config, cycle=7)
    store = config.output_model_folder / CALLS_STORE
    cycle = calls.latest_cycle(store)
    group = calls.group_of(cycle)
    assert cycle["cycle"] == 7 and len(cycle["clients"]) == 60 and len(group) == 15  # a quarter of 60
    rows = list(csv.DictReader((config.output_model_folder / RISK_SCORES).open(encoding="utf-8")))
    assert {r[ID_COLUMN] for r in rows if r["measurement_group"] == "true"} == group
    assert [r[ID_COLUMN] for r in rows[:60]] == [m["client"] for m in cycle["clients"]]
    record = json.loads((config.output_model_folder / RISK_RECORD).read_text())
    assert record["cycle"] == 7 and record["measurement_group"] == len(group)
    assert all(c["measurement_group"] == (c[ID_COLUMN] in group) for c in result.top)
    again = call_list.risk_scores(config, cycle=7)  # the same cycle reported again: the same group
    assert calls.group_of(again.cycle) == group
    answer = app_module.create_app(config.config_file).test_client().get("/risk?top=100").get_json()
    assert {c[ID_COLUMN] for c in answer["clients"] if c["measurement_group"]} == group


def labels_arrive(config, to_call: list[dict], group: list[dict]) -> None:
    """Labels arrive in a later file: of the clients to call, 8 left and 30 stayed (10 of them were called and
    reached); of the group, 6 left and the rest stayed; the other clients to call have no new snapshot yet."""
    store = config.output_model_folder / CALLS_STORE
    calls.record_calls(store, calls.check_calls([{ID_COLUMN: m["client"], "outcome": "stays", "by": "Ann"}
                                                 for m in to_call[:10]], calls.date.today()))
    left_called, stayed_called, left_group = to_call[:8], to_call[8:38], group[:6]

    def row(member: dict, exited: int) -> str:
        values = [member["snapshot"][f] + (0 if exited else 1) for f in FEATURES]
        return ",".join([member["client"], *map(str, values), str(exited)])

    rows = ([row(m, 1) for m in left_called + left_group] + [row(m, 0) for m in stayed_called]
            + [row(m, 0) for m in group[6:]])
    write_csv(config.input_folder / "dataset9.csv", rows, HEADER)
    ingestion.run(config)


def test_labels_arriving_give_the_difference_and_interval_of_a_hand_computation(measured_project):
    config = measured_project
    call_list.risk_scores(config, cycle=1)
    store = config.output_model_folder / CALLS_STORE
    members = calls.latest_cycle(store)["clients"]
    to_call = [m for m in members if not m["measurement_group"]]
    group = [m for m in members if m["measurement_group"]]
    before = call_effect.measure_calls(store, config.final_data_file)
    assert before["called"]["labelled"] == 0 and before["measurement_group"]["listed"] == len(group)
    assert f"{len(to_call)} called (0 reached, as recorded), {len(group)} in the measurement group, labels for 0" in \
        before["sentence"]
    labels_arrive(config, to_call, group)
    measured = call_effect.measure_calls(store, config.final_data_file)
    assert measured["called"] | {"share_left": None} == {"listed": len(to_call), "labelled": 38, "left": 8,
                                                         "share_left": None}
    assert (measured["measurement_group"]["labelled"], measured["measurement_group"]["left"]) == (len(group), 6)
    difference, low, high = hand_newcombe(8, 38, 6, len(group))
    assert measured["difference"] == pytest.approx(difference, abs=1e-12)
    assert measured["interval"] == pytest.approx([low, high], abs=1e-9)
    assert measured["called_and_reached"] == 10
    assert f"difference {difference * 100:+.1f} points (95% interval {low * 100:+.1f} to {high * 100:+.1f}" in \
        measured["sentence"]


# --- The drift check leaves out the clients who were called ----------------------------------
def test_the_drift_window_leaves_out_called_clients_and_counts_them(config, tmp_path):
    window = pd.DataFrame({ID_COLUMN: ["a", "b", "c", "a"], **{f: [1, 2, 3, 4] for f in FEATURES},
                           "exited": [1, 0, 1, 0]})
    store = config.output_model_folder / CALLS_STORE
    assert without_called(config, window)[1] == 0  # no calls yet
    calls.record_calls(store, calls.check_calls([{ID_COLUMN: "a", "outcome": "at_risk", "by": "Ann"},
                                                 {ID_COLUMN: "b", "outcome": "not_reached", "by": "Ann"}],
                                                calls.date.today()))
    kept, left_out = without_called(config, window)
    assert left_out == 2 and kept[ID_COLUMN].tolist() == ["b", "c"]  # a call that did not reach b leaves b in
    keep_all = config.replace(automation={**config.automation, "leave_out_called": False})
    assert without_called(keep_all, window)[1] == 0


@pytest.mark.slow
@pytest.mark.parametrize("leave_out", [True, False])
def test_a_tick_checks_drift_without_the_clients_a_call_reached_and_counts_them(tmp_path, leave_out):
    """Managers reached 40 clients of a month and 20 more were called but not reached; the month's labels arrive.
    By default (automation.leave_out_called) the drift check's window and its F1 leave the 40 out and the run
    counts them (window_called); turned off, every row counts."""
    from sklearn.metrics import f1_score
    from test_decisions import month, old_market, tick

    from riskcore.data.validation import features_of
    from riskcore.release.load import current_deployment, load_deployed_model

    config = old_market(tmp_path, leave_out_called=leave_out)
    month(config.input_folder / "2026-02.csv", 3000, "source", 21)
    assert tick(config)["decision"] == "retrain"
    columns = month(config.input_folder / "2026-03.csv", 1000, "source", 22)
    ids = columns[ID_COLUMN].tolist()
    store = config.output_model_folder / CALLS_STORE
    calls.record_calls(store, calls.check_calls(
        [{ID_COLUMN: i, "outcome": "stays", "by": "Ann"} for i in ids[:40]]
        + [{ID_COLUMN: i, "outcome": "not_reached", "by": "Ann"} for i in ids[40:60]], calls.date.today()))
    model = load_deployed_model(current_deployment(config.prod_deployment_folder))
    row = tick(config)
    kept = slice(40, None) if leave_out else slice(None)
    frame = pd.DataFrame({c: columns[c][kept] for c in (*FEATURES, "exited")})
    assert row["window_called"] == (40 if leave_out else 0)
    assert row["window_rows"] == row["window_labelled"] == len(frame)
    assert row["f1_new_data"] == pytest.approx(f1_score(frame["exited"], model.predict(features_of(frame))), abs=1e-9)
    assert row["estimated_rows"] == len(frame)  # the estimate leaves them out too


def test_the_run_history_carries_the_measurement_and_the_left_out_rows(tmp_path: Path):
    from riskcore.ops.history import format_history, read_history, record_run

    path = tmp_path / "runhistory.sqlite"
    effect = {"cycles": [1], "called": {}, "measurement_group": {}, "difference": None, "interval": None,
              "sentence": "40 called (3 reached, as recorded), 9 in the measurement group, labels for 0: ..."}
    record_run(path, {"run_id": "r1", "started_at": "2026-01-01T00:00:00Z", "outcome": "done", "window_called": 12,
                      "call_effect": effect})
    run = read_history(path)[0]
    assert run["call_effect"] == effect and run["window_called"] == 12
    text = format_history([run], 0.01)
    assert "12 rows of clients who were called left out" in text and "9 in the measurement group" in text


def model_page_effect(config) -> tuple[str, str]:
    """The call effect's sentence and table on /model, as text."""
    page = app_module.create_app(config.config_file).test_client().get("/model")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    sentence = re.search(r'<p id="call-effect-sentence">(.*?)</p>', body, re.S)
    table = re.search(r'<table class="call-effect">(.*?)</table>', body, re.S)
    assert sentence, "no call effect on /model"
    return html.unescape(sentence.group(1)), html.unescape(re.sub(r"<[^>]+>", " ", table.group(1))) if table else ""


def test_model_page_says_what_is_missing_before_labels_arrive(measured_project):
    config = measured_project
    call_list.risk_scores(config, cycle=1)
    members = calls.latest_cycle(config.output_model_folder / CALLS_STORE)["clients"]
    group = sum(m["measurement_group"] for m in members)
    sentence, table = model_page_effect(config)
    assert sentence == call_effect.measure_calls(config.output_model_folder / CALLS_STORE,
                                                 config.final_data_file)["sentence"]
    assert sentence.startswith(f"{len(members) - group} called (0 reached, as recorded), {group} in the measurement "
                               "group, labels for 0: about ")
    assert "per group are needed to see" in sentence
    assert " ".join(table.split()) .startswith("group listed labelled since left share who left to call "
                                               f"{len(members) - group} 0 0 — measurement group {group} 0 0 —")


def test_the_pdfs_calls_mark_each_measurement_group_client_in_whole_words(measured_project):
    """The managers' pages say of each group client, in its row, that it is not to be called; in the client's narrow
    column the mark broke into "(measure ment group: ...)"."""
    from test_reporting import pdf_pages, squeeze

    import reporting

    paths = reporting.run(measured_project)
    group = calls.group_of(calls.latest_cycle(measured_project.output_model_folder / CALLS_STORE))
    pages = [squeeze(text) for text in pdf_pages(paths["summary_report"])]
    managers = " ".join(pages[:next(n for n, page in enumerate(pages) if pdf.SECTIONS["headline"] in page)])
    assert group and managers.count(calls.GROUP_MARK) == len(group)


def test_model_page_gives_the_pdfs_measurement_once_labels_arrive(measured_project):
    from test_reporting import pdf_pages, squeeze

    import reporting

    config = measured_project
    call_list.risk_scores(config, cycle=1)
    members = calls.latest_cycle(config.output_model_folder / CALLS_STORE)["clients"]
    to_call = [m for m in members if not m["measurement_group"]]
    group = [m for m in members if m["measurement_group"]]
    labels_arrive(config, to_call, group)
    paths = reporting.run(config)
    sentence, table = model_page_effect(config)
    difference, low, high = hand_newcombe(8, 38, 6, len(group))
    assert f"difference {difference * 100:+.1f} points (95% interval {low * 100:+.1f} to {high * 100:+.1f}" in sentence
    pdf_text = squeeze(" ".join(pdf_pages(paths["summary_report"])))
    assert squeeze(sentence) in pdf_text  # the same words, from the one definition
    listed = call_effect.measure_calls(config.output_model_folder / CALLS_STORE, config.final_data_file)
    called_row = f"to call {listed['called']['listed']} 38 8 {8 / 38:.1%}"
    group_row = f"measurement group {listed['measurement_group']['listed']} {len(group)} 6 {6 / len(group):.1%}"
    assert called_row in squeeze(table) and group_row in squeeze(table)
    assert called_row in pdf_text and group_row in pdf_text


@pytest.mark.parametrize(("share", "words"), [(0.9999, ">99%"), (1.0, "100%"), (0.3, "30%"), (0.254, "25%"),
                                              (0.001, "<1%"), (0.0, "0%")])
def test_the_effects_shares_never_round_to_all_or_none(share, words):
    assert formatting.whole_percent(share) == words


def test_the_groups_table_gives_a_counted_share_as_the_sentence_does_all_and_none_included():
    """The walk's /model: '100.0% of the 43 labelled called clients left' above a table reading '>99.9%' for the same
    43 of 43 (a probability's format: a counted share can be all, or none)."""
    measured = {"cycles": [1], "called": {"listed": 86, "labelled": 43, "left": 43, "share_left": 1.0},
                "measurement_group": {"listed": 14, "labelled": 7, "left": 0, "share_left": 0.0}}
    assert call_effect.group_rows(measured) == [["to call", "86", "43", "43", "100.0%"],
                                                ["measurement group", "14", "7", "0", "0.0%"]]


@pytest.mark.parametrize(("called", "words"), [(1, "1 row of a client who was called"),
                                               (1200, "1,200 rows of clients who were called")])
def test_the_rows_of_called_clients_left_out_are_counted_in_words(called, words):
    """The walk's /model read '1 rows of clients who were called left out of the drift check's window'."""
    from riskcore.model.drift_evidence import called_text

    assert called_text({"window_called": called}) == f"{words} left out of the drift check's window"
