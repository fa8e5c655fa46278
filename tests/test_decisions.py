"""Issue 19, decisions that hold up: scenario tests on months of the documented generative process (datagen.py).

A project starts as production does: a first model trained on the old market (practice), its test
data of that market, the default drift test ("significance") and the promotion gate. Then months
arrive, one file each, and the automation ticks: a new market, the same market again, a changed
concept; small, all-negative, appended and unlabelled files. Each scenario the issue names runs
fullprocess.py as cron does (its own process, another working directory, a real API, the reports
made; marked slow); the fast ones (a holdout too small, rejected or rewritten files) tick in-process
with the reports left out, which these decisions do not depend on.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

import datagen
from conftest import deploy_pipeline, run_script, write_config
from riskcore.config import Config, load_config
from riskcore.contract import ID_COLUMN, RUN_HISTORY, TARGET
from riskcore.model.drift import Counts, significant_drop
from riskcore.ops.history import read_history, score_history
from riskcore.release.load import deployed_metadata, require_deployment

EVIDENCE = {"drift_test": "significance", "promotion_gate": True}


def month(path: Path, rows: int, market: str, seed: int, labelled: bool = True) -> dict[str, np.ndarray]:
    """Write `rows` clients of a market (datagen's process) as a CSV; unlabelled: without "exited"."""
    columns = datagen.generate_columns(rows, market, seed)
    columns["corporation"] = np.array([f"{market[:2]}{seed}-{i}" for i in range(rows)])  # ids of this month only
    if not labelled:
        columns.pop(TARGET)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(zip(*columns.values(), strict=True))
    return columns


def old_market(root: Path, **automation) -> Config:
    """A first deployment trained on 2,000 clients of the old market, its test data of that market."""
    month(root / "input" / "2026-01.csv", 2000, "practice", 11)
    month(root / "test" / "testdata.csv", 500, "practice", 12)
    return deploy_pipeline(load_config(write_config(root, automation={**EVIDENCE, **automation})))


def stayers_month(path: Path, rows: int, market: str, seed: int) -> None:
    """`rows` clients of a market who all stayed (datagen's process, its leavers left out)."""
    columns = month(path, 3 * rows, market, seed)
    lines = path.read_text().splitlines()
    kept = [i for i, left in enumerate(columns[TARGET]) if left == 0][:rows]
    assert len(kept) == rows
    path.write_text("\n".join([lines[0], *(lines[i + 1] for i in kept)]) + "\n")


def tick(config: Config) -> dict:
    """One tick in this process (no reports); the run it recorded."""
    from riskcore.ops.tick import tick as automation_tick

    assert automation_tick(config, lambda conf, run: None) == 0
    return read_history(config.output_model_folder / RUN_HISTORY)[-1]


def final_ids(config: Config) -> list[str]:
    with open(config.final_data_file, newline="", encoding="utf-8") as handle:
        return [row[ID_COLUMN] for row in csv.DictReader(handle)]


def detected(run: dict) -> bool:
    """The run found model drift: its flag, and its verdict says so ("no model drift" also holds "model drift")."""
    verdict = run["drift_verdict"]
    return run["model_drift"] is True and ": model drift" in verdict and "no model drift" not in verdict


# --- The baseline, said once (issue 19.7; the walk read "held-out rows of its own market (held-out rows of …)") --
CV_SOURCE = ("held-out rows of its training data by 5-fold cross-validation (the newest 2,000 of its 10,000 rows): "
             "the test data, testdata.csv, is of another market (PSI 0.41)")


@pytest.mark.parametrize(("source", "rows", "said"), [
    ("held-out rows of the new market, left out of its training", 2000,
     "F1 0.8429 on held-out rows of its own market (2,000 rows of the new market, left out of its training)"),
    (CV_SOURCE, 2000, "F1 0.8429 on held-out rows of its own market (its training data by 5-fold cross-validation "
                      "(the newest 2,000 of its 10,000 rows)), as the test data, testdata.csv, is of another market "
                      "(PSI 0.41)"),
    ("the test data, testdata.csv", 5, "F1 0.8429 on held-out rows of its own market (5 rows of the test data, "
                                       "testdata.csv)"),
    (None, 40, "F1 0.8429 on held-out rows of its own market (40 rows)"),
])
def test_the_baseline_says_its_rows_once(source, rows, said):
    from riskcore.model.drift_evidence import baseline_rows, baseline_text

    baseline = {"f1": 0.84286, "rows": rows, "source": source}
    assert baseline_text(baseline, why=True) == said
    assert said.count("held-out rows") == 1 and said.count(f"{rows:,}") == 1
    assert baseline_text(baseline) == said.partition(", as ")[0]  # without the why: which rows, not why
    assert "held-out rows" not in baseline_rows(baseline)  # deployment.py --list's column says "its own market"


def test_the_drift_verdict_names_the_baseline_as_the_page_does():
    from riskcore.model.drift_evidence import baseline_where

    baseline = {"f1": 0.85, "rows": 1000, "source": CV_SOURCE.replace("2,000", "1,000")}
    reason = significant_drop(Counts(170, 30, 30, 770), Counts(60, 40, 40, 360), 0.05, 0.05,
                              baseline_where(baseline)).reason
    assert ("against 0.8500 on held-out rows of its own market (its training data by 5-fold cross-validation (the "
            "newest 1,000 of its 10,000 rows)): a drop of") in reason
    assert reason.count("held-out rows") == 1 and "another market" not in reason  # the why stays on the model page


def served(config: Config) -> str:
    return require_deployment(config.prod_deployment_folder).model_version


# --- The test itself -----------------------------------------------------------------------------
def test_the_significance_test_needs_both_a_drop_and_evidence():
    baseline = Counts(tp=170, fp=30, fn=30, tn=770)  # F1 0.85 on 1,000 held-out rows
    assert significant_drop(baseline, Counts(85, 15, 15, 385), 0.05, 0.05).drift is False  # same F1
    big = significant_drop(baseline, Counts(60, 40, 40, 360), 0.05, 0.05)  # F1 0.60 on 500 rows
    assert big.drift and big.p_value < 0.001 and "model drift" in big.reason
    small = significant_drop(baseline, Counts(3, 2, 2, 18), 0.05, 0.05)  # F1 0.60 on 25 rows: could be chance
    assert not small.drift and small.p_value >= 0.05 and "not significant" in small.reason
    slight = significant_drop(baseline, Counts(820, 180, 200, 8800), 0.05, 0.05)  # F1 0.81: significant, too small
    assert not slight.drift and "less than 0.05" in slight.reason
    better = significant_drop(baseline, Counts(90, 10, 10, 390), 0.05, 0.05)  # F1 0.90, above the baseline
    assert not better.drift and better.reason.endswith("(1,000 rows): no drop: no model drift")


def test_the_p_value_is_what_a_permutation_by_hand_gives():
    baseline, window = Counts(40, 10, 10, 140), Counts(20, 15, 15, 50)
    rows = [(1, 1)] * 60 + [(0, 1)] * 25 + [(1, 0)] * 25 + [(0, 0)] * 190  # the pooled (label, prediction) pairs
    rng = np.random.default_rng(5)
    pooled = np.array(rows)
    observed = baseline.f1 - window.f1
    at_least = 0
    for _ in range(4000):
        order = rng.permutation(len(pooled))
        first, second = pooled[order[:200]], pooled[order[200:]]
        f1s = [Counts.of(g[:, 0] == 1, g[:, 1] == 1).f1 or 0.0 for g in (first, second)]
        at_least += f1s[0] - f1s[1] >= observed - 1e-12
    by_hand = at_least / 4000
    assert abs(significant_drop(baseline, window, 0.05, 0.05).p_value - by_hand) < 0.01


# --- Scenarios -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_new_market_retrains_the_same_market_keeps_and_a_changed_concept_is_detected(tmp_path, cron_dir):
    config = old_market(tmp_path)
    first = deployed_metadata(require_deployment(config.prod_deployment_folder))["baseline"]
    assert first["source"].startswith("the test data") and first["rows"] == 500

    def cron(name: str, rows: int, market: str, seed: int) -> dict:
        month(config.input_folder / name, rows, market, seed)
        return cron_tick(config, server, cron_dir)

    server = start_api(config)
    try:
        new_market = cron("2026-02.csv", 3000, "source", 21)
        assert new_market["decision"] == "retrain" and new_market["drift_p_value"] < 0.05
        baseline = deployed_metadata(require_deployment(config.prod_deployment_folder))["baseline"]
        assert baseline["source"].startswith("held-out rows of the new market") and baseline["f1"] > 0.8
        same = cron("2026-03.csv", 1000, "source", 22)
        assert same["decision"] == "keep" and same["baseline"] == pytest.approx(baseline["f1"])
        assert "no model drift" in same["drift_verdict"] and same["model_drift"] is False and same["window_rows"] == 1000
        changed = cron("2026-04.csv", 1000, "changed", 23)
        assert changed["decision"] in ("retrain", "kept_by_gate") and detected(changed)
        assert changed["f1_new_data"] < baseline["f1"] - 0.05 and changed["drift_p_value"] < 0.05
    finally:
        stop_api()


def cron_tick(config: Config, server: str, cron_dir: Path) -> dict:
    """fullprocess.py as cron runs it (its own process, another working directory, the API at `server`); the run it
    recorded."""
    result = run_script("fullprocess.py", "--config", str(config.config_file), "--api-url", server, cwd=cron_dir)
    assert result.returncode == 0, result.stderr
    return read_history(config.output_model_folder / RUN_HISTORY)[-1]


_servers: list = []


def start_api(config: Config) -> str:
    import threading

    from werkzeug.serving import make_server

    import app as app_module

    server = make_server("127.0.0.1", 0, app_module.create_app(str(config.config_file)), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _servers.append((server, thread))
    return f"http://127.0.0.1:{server.server_port}"


def stop_api() -> None:
    while _servers:
        server, thread = _servers.pop()
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def cron_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cron-home")


@pytest.mark.slow
def test_five_rows_wait_and_the_window_carries_them_to_the_next_decision(tmp_path, cron_dir):
    config = old_market(tmp_path)
    before = served(config)
    month(config.input_folder / "2026-02.csv", 5, "changed", 31)
    server = start_api(config)
    try:
        five = cron_tick(config, server, cron_dir)
        assert five["decision"] == "wait" and served(config) == before
        assert {f"ch31-{i}" for i in range(5)} <= set(final_ids(config))  # ingested: scored and listed as usual
        month(config.input_folder / "2026-03.csv", 600, "changed", 32)
        decided = cron_tick(config, server, cron_dir)
    finally:
        stop_api()
    assert five["drift_verdict"].startswith("waiting for more labelled rows: the window has 5 labelled rows of the 200 needed")
    assert five["window_rows"] == 5 and five["rows_new"] == 5
    psi = five["data_drift"]
    assert psi["too_few_rows"] and not psi["drift"]
    assert {f["psi_label"] for f in psi["features"].values()} == {"too few rows"}
    assert decided["window_rows"] == 605 and decided["rows_new"] == 600
    assert detected(decided) and decided["decision"] in ("retrain", "kept_by_gate")


@pytest.mark.slow
def test_twenty_rows_where_nobody_left_do_not_retrain_and_never_enter_the_score_history(tmp_path, cron_dir):
    """The walk: 20 new clients, all exited = 0, all predicted correctly, read "F1 0.0000 < 0.5074: model drift ->
    retrain". With the minimums lowered to 10 rows and 1 leaver, only the missing leaver holds the decision back."""
    from test_reporting import pdf_pages, squeeze

    config = old_market(tmp_path, drift_test="significance", min_rows=10, min_positives=1)
    before = served(config)
    stayers_month(config.input_folder / "2026-02.csv", 20, "practice", 41)
    server = start_api(config)
    try:
        run = cron_tick(config, server, cron_dir)
    finally:
        stop_api()
    assert run["decision"] == "wait" and served(config) == before and run["model_drift"] is None
    assert run["f1_new_data"] is None and run["window_positives"] == 0 and run["rows_new"] == 20
    assert run["drift_verdict"].endswith("0 clients who left of the 1 needed (automation.min_positives); nobody left, "
                                         "so F1 is undefined: no F1 verdict")
    assert score_history(config.output_model_folder / RUN_HISTORY) == []
    [report] = config.output_model_folder.glob("summary_report*.pdf")  # the tick's report: not "no labelled new rows"
    pdf = squeeze(" ".join(pdf_pages(report)))
    assert "has no F1 on the 20 labelled new rows: nobody left among them, so F1 is undefined" in pdf
    history = run_script("fullprocess.py", "--config", str(config.config_file), "--history", "--format", "json",
                         cwd=cron_dir)
    assert json.loads(history.stdout)[-1]["f1_new_data"] is None  # null, never 0


def test_under_the_course_rule_rows_where_nobody_left_still_retrain_with_f1_null_in_the_history(tmp_path):
    """The course's table scores such rows F1 0 (its f1_score) and retrains; the history's f1_new_data stays null, as
    everywhere F1 is undefined, and the verdict says why it read 0."""
    config = old_market(tmp_path, drift_test="raw", promotion_gate=False)
    before = served(config)
    stayers_month(config.input_folder / "2026-02.csv", 20, "practice", 41)
    run = tick(config)
    assert run["decision"] == "retrain" and served(config) != before and run["f1_new_data"] is None
    assert run["drift_verdict"].startswith("nobody left among the 20 labelled rows, so F1 is undefined; the course's "
                                           "rule scores it 0: F1 0.0000 < ")
    assert score_history(config.output_model_folder / RUN_HISTORY) == []


@pytest.mark.parametrize(("automation", "decision"), [
    ({"drift_test": "raw", "promotion_gate": False}, "retrain"),  # the course's rule: no window, no test, no gate
    (EVIDENCE, "wait"),  # the production default: too few rows to decide
])
def test_three_labelled_rows_the_model_gets_wrong_retrain_at_once_under_the_course_rule_only(tmp_path, automation,
                                                                                               decision):
    """The course's table: F1 on the new rows below latestscore.txt retrains, however few the rows; the course's rule
    keeps no evidence window and holds no row out of the retrain."""
    from riskcore.contract import EVIDENCE_WINDOW, FEATURES
    from riskcore.release.load import load_deployed_model

    config = old_market(tmp_path, **automation)
    before = served(config)
    columns = month(config.input_folder / "2026-02.csv", 200, "practice", 51)
    frame = {name: columns[name] for name in (ID_COLUMN, *FEATURES)}
    model = load_deployed_model(require_deployment(config.prod_deployment_folder))
    stays = np.flatnonzero(model.predict(np.column_stack([frame[f] for f in FEATURES]).astype(float)) == 0)[:3]
    lines = (config.input_folder / "2026-02.csv").read_text().splitlines()
    wrong = [",".join([*lines[i + 1].split(",")[:-1], "1"]) for i in stays]  # they left; the model said they stay
    (config.input_folder / "2026-02.csv").write_text("\n".join([lines[0], *wrong]) + "\n")
    run = tick(config)
    assert run["decision"] == decision and run["f1_new_data"] in (0.0, None)
    deployment = require_deployment(config.prod_deployment_folder)
    if decision == "retrain":
        assert run["drift_test"] == "raw" and run["evaluation"]["holdout"] is None
        assert served(config) != before and deployed_metadata(deployment)["training_rows"] == 2003
        assert not (config.prod_deployment_folder / EVIDENCE_WINDOW).exists()
    else:
        assert served(config) == before and (deployment.path(EVIDENCE_WINDOW)).is_file()


def test_drift_found_on_a_window_too_small_to_hold_out_for_the_gate_waits_and_records_model_drift(tmp_path):
    config = old_market(tmp_path, min_rows=100, min_positives=10)
    before = served(config)
    month(config.input_folder / "2026-02.csv", 220, "changed", 101)  # a holdout of 44 rows: fewer than 50
    run = tick(config)
    assert run["decision"] == "wait" and served(config) == before
    assert run["model_drift"] is True and "holdout would hold 44 rows, fewer than 50" in run["drift_verdict"]
    assert run["drift_p_value"] < 0.05


def test_a_run_whose_only_new_file_is_rejected_keeps_no_empty_window_and_the_next_month_is_checked(tmp_path, caplog):
    """A rejected file (an export whose "exited" is empty instead of absent) brings no row: nothing to wait
    for. The walk's tick 'waited' on a window of 0 rows, deployed it as a header-only evidencewindow.csv, and
    every later tick failed its drift check ("evidencewindow.csv has a header but no rows")."""
    config = old_market(tmp_path)
    export = config.input_folder / "2026-02.csv"
    month(export, 30, "practice", 71)
    lines = export.read_text().splitlines()
    export.write_text("\n".join([lines[0], *(line.rsplit(",", 1)[0] + "," for line in lines[1:])]) + "\n")
    from riskcore.ops.tick import tick as automation_tick

    assert automation_tick(config, lambda conf, run: None) == 1  # the rejected file, named
    rejected = read_history(config.output_model_folder / RUN_HISTORY)[-1]
    assert rejected["rows_new"] == 0 and rejected["window_rows"] == 0
    assert rejected["decision"] == "keep" and rejected["drift_verdict"] == "no new rows to check: the model is kept"
    assert "evidencewindow.csv" not in require_deployment(config.prod_deployment_folder).manifest["files"]
    month(export, 30, "practice", 71, labelled=False)  # the export put right: no "exited" column
    assert tick(config)["decision"] == "wait"
    month(config.input_folder / "2026-03.csv", 600, "practice", 72)
    caplog.clear()  # an earlier test may have left the level at INFO: the earlier ticks' lines too
    with caplog.at_level("INFO", logger="fullprocess"):
        after = tick(config)
    assert after["outcome"] == "done" and after["window_rows"] == 630 and after["decision"] == "keep"
    [check] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("drift check on")]
    # F1 on everything ingested is the labelled rows' F1, and says how many they are
    assert f"on everything ingested (2630 rows, 2600 labelled): F1 {after['f1_ingested']:.4f}" in check


def test_a_release_that_carries_a_header_only_window_checks_the_next_month(tmp_path):
    """Productions that the empty-window wait above left with a header-only evidencewindow.csv tick again."""
    import pandas as pd

    from riskcore.ops.evidence_window import write_window
    from riskcore.release.publish import deploy_records

    config = old_market(tmp_path)
    write_window(config, pd.DataFrame(columns=["corporation", "lastmonth_activity", "lastyear_activity",
                                               "number_of_employees", "exited"]))
    deploy_records(config, window=True)
    month(config.input_folder / "2026-02.csv", 600, "practice", 72)
    after = tick(config)
    assert after["outcome"] == "done" and after["window_rows"] == 600 and after["decision"] == "keep"


@pytest.mark.slow
def test_a_rollback_to_a_release_that_waited_does_not_check_its_old_window_again(tmp_path):
    """The walk: rolled back to a 'wait' release, the next tick took that release's window (10,418 rows of an export
    whose labels had arrived and been decided on since) and warned of an estimated drop on it. Those rows were
    processed by the releases rolled back from, as their files are: the window starts again from the new rows."""
    import deployment

    config = old_market(tmp_path)
    month(config.input_folder / "2026-02.csv", 5, "source", 81)
    assert tick(config)["decision"] == "wait"
    month(config.input_folder / "2026-03.csv", 1000, "source", 82)
    assert tick(config)["decision"] == "retrain"
    served_now = deployment.run(config, action="rollback")
    assert "evidencewindow.csv" in served_now.manifest["files"]  # the release that waited, its window with it
    month(config.input_folder / "2026-04.csv", 60, "source", 83)
    after = tick(config)
    assert after["rows_new"] == 60 and after["window_rows"] == 60 and after["version_before"] == served_now.model_version


def test_rows_a_rewritten_file_no_longer_holds_are_said_and_nothing_is_waited_for(tmp_path, caplog):
    """The walk: month05_same.csv cut from 3,000 rows to 2,500 was ingested without a word about the 500 snapshots
    that left finaldata.csv; and a changed file without a new row has nothing to check (a 'wait' on an empty
    window was the stuck production of test_a_run_whose_only_new_file_is_rejected_...)."""
    config = old_market(tmp_path)
    path = config.input_folder / "2026-01.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1501]) + "\n")  # the header and the first 1,500 of its 2,000 rows
    caplog.clear()
    with caplog.at_level("INFO"):
        run = tick(config)
    assert run["rows_new"] == 0 and run["decision"] == "keep"
    assert ("2026-01.csv changed and no longer holds 500 of the 2,000 rows of its ingested version: their "
            "snapshots leave finaldata.csv") in caplog.text


@pytest.mark.slow
def test_four_hundred_bad_rows_appended_to_an_ingested_file_are_the_window_and_are_detected(tmp_path, cron_dir):
    config = old_market(tmp_path)
    before = served(config)
    path = config.input_folder / "2026-01.csv"
    bad = month(tmp_path / "bad.csv", 400, "practice", 51)
    bad_lines = (tmp_path / "bad.csv").read_text().splitlines()[1:]
    flipped = [",".join([*line.split(",")[:-1], str(1 - int(line.split(",")[-1]))]) for line in bad_lines]
    path.write_text(path.read_text() + "\n".join(flipped) + "\n")
    assert len(bad[TARGET]) == 400
    server = start_api(config)
    try:
        run = cron_tick(config, server, cron_dir)
    finally:
        stop_api()
    assert run["rows_new"] == 400 and run["window_rows"] == 400
    assert detected(run) and run["decision"] in ("retrain", "kept_by_gate")
    assert run["version_before"] == before


@pytest.mark.slow
def test_an_unlabelled_export_then_a_small_labelled_file_trains_on_every_labelled_client(tmp_path, cron_dir):
    """The walk: an export of every client without "exited", then a small labelled file; training used "the 10
    labelled rows of finaldata.csv (9988 clients not labelled yet left out)". Cron ticks, training.py by hand, then
    a month that retrains: each learns from every labelled client's latest labelled snapshot."""
    config = old_market(tmp_path)
    old = datagen.generate_columns(2000, "practice", 11)
    export = config.input_folder / "2026-02.csv"
    ids = [f"pr11-{i}" for i in range(2000)]
    with open(export, "w", newline="", encoding="utf-8") as handle:  # every client, this month, no labels yet
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["corporation", "lastmonth_activity", "lastyear_activity", "number_of_employees"])
        writer.writerows(zip(ids, old["lastmonth_activity"] + 1, old["lastyear_activity"],
                             old["number_of_employees"], strict=True))
    month(config.input_folder / "2026-03.csv", 10, "practice", 61)  # ten new clients, labelled
    server = start_api(config)
    try:
        waited = cron_tick(config, server, cron_dir)  # 10 labelled rows: not enough to decide
        by_hand = run_script("training.py", "--config", str(config.config_file), cwd=cron_dir)
        month(config.input_folder / "2026-04.csv", 600, "changed", 62)
        retrained = cron_tick(config, server, cron_dir)
    finally:
        stop_api()
    assert waited["decision"] == "wait" and waited["rows_new"] == 2010 and waited["window_labelled"] == 10
    with open(config.final_data_file, newline="", encoding="utf-8") as handle:
        final = list(csv.DictReader(handle))
    assert len(final) == 2610 and sum(row[TARGET] == "" for row in final) == 2000  # the call list's latest rows
    assert by_hand.returncode == 0, by_hand.stderr
    # every labelled client, not the 10 of the labelled file, and nobody left out
    assert "trained model" in by_hand.stderr and "on 2010 labelled rows (each client's latest labelled snapshot)" \
        in by_hand.stderr and "left out" not in by_hand.stderr
    assert retrained["decision"] == "retrain"
    held_out = retrained["evaluation"]["holdout"]["old"]["rows"]
    record = deployed_metadata(require_deployment(config.prod_deployment_folder))["candidates"]
    every = next(c for c in record["candidates"] if c["name"] == "every labelled row")
    assert every["rows"] == 2610 - held_out  # the 2,000 exported clients' labelled snapshots included


def test_a_small_window_of_a_changed_market_is_learnt_from_its_own_rows():
    """Issue 19.6: 300 rows where who leaves changed, among 3,000 of the old market; the recent rows (the window and
    the newest 2,000) are still mostly the old market's: the holdout picks the model on the window's rows alone."""
    import pandas as pd

    from riskcore.config import MODEL_DEFAULTS
    from riskcore.model.evaluation import score_model
    from riskcore.model.training import choose_candidate, train_model

    def frame(rows: int, market: str, seed: int):
        columns = datagen.generate_columns(rows, market, seed)
        columns["corporation"] = np.array([f"{market[:2]}{seed}-{i}" for i in range(rows)])
        return pd.DataFrame(columns)

    old, window, holdout = frame(3000, "source", 1), frame(300, "changed", 2), frame(300, "changed", 3)
    settings = dict(MODEL_DEFAULTS)  # the course's model
    model, rows, record = choose_candidate(pd.concat([old, window], ignore_index=True), settings, holdout, 2000,
                                           window["corporation"].tolist())
    assert [c["name"] for c in record["candidates"]][-1] == "the window's rows alone"
    assert record["chosen"] == "the window's rows alone" and len(rows) == 300
    fresh = frame(2000, "changed", 4)
    every = train_model(pd.concat([old, window], ignore_index=True), settings)
    assert score_model(model, fresh) > score_model(every, fresh) + 0.1


@pytest.mark.slow
def test_model_page_says_which_rows_a_retrain_learnt_from_and_why(tmp_path):
    """Issue 19.6 'record which and why': the walk found the candidates' figures in modelmetadata.json and the log
    only; /model and the PDF said 'trained on 2,400 clients' without saying they were the recent rows alone."""
    import html
    import re

    import app as app_module
    from riskcore.model.drift_evidence import training_choice_text

    config = old_market(tmp_path)
    month(config.input_folder / "2026-02.csv", 600, "changed", 91)
    assert tick(config)["decision"] == "retrain"
    record = deployed_metadata(require_deployment(config.prod_deployment_folder))["candidates"]
    assert len(record["candidates"]) >= 2
    words = training_choice_text(record)
    assert words.startswith(f"{record['chosen']}, ") and f"on the {record['holdout_rows']:,} held-out rows" in words
    page = app_module.create_app(config.config_file).test_client().get("/model").get_data(as_text=True)
    shown = re.search(r'<p id="training-rows">(.*?)</p>', page)
    assert shown and html.unescape(shown.group(1)) == f"Learnt from {words}."


@pytest.mark.parametrize(("automation", "compared"), [
    ({"promotion_gate": False}, True),  # the default test without the gate: candidates all the same (issue 19.6)
    ({"drift_test": "raw", "promotion_gate": False, "holdout_share": 0.2}, False),  # the course's rule: every row
])
def test_after_model_drift_candidates_are_compared_on_the_holdout_unless_under_the_course_rule(tmp_path, automation,
                                                                                                 compared):
    config = old_market(tmp_path, **automation)
    month(config.input_folder / "2026-02.csv", 600, "changed", 91)
    run = tick(config)
    assert run["decision"] == "retrain" and run["evaluation"]["holdout"]["old"]["rows"] == 120
    metadata = deployed_metadata(require_deployment(config.prod_deployment_folder))
    assert ("candidates" in metadata) is compared
    if compared:
        record = metadata["candidates"]
        assert len(record["candidates"]) >= 2 and record["holdout_rows"] == 120
        chosen = next(c for c in record["candidates"] if c["name"] == record["chosen"])
        assert metadata["training_rows"] == chosen["rows"]
        assert chosen["holdout_f1"] == max(c["holdout_f1"] for c in record["candidates"])
    else:
        assert metadata["training_rows"] == 2000 + 600 - 120  # every ingested labelled row but the held-out ones


def test_the_training_choice_reads_the_chosen_rows_then_the_others():
    from riskcore.model.drift_evidence import training_choice_text

    record = {"chosen": "the recent rows (the window and the newest 2,000)", "holdout_rows": 600,
              "candidates": [{"name": "every labelled row", "rows": 9820, "holdout_f1": 0.718562874251497},
                             {"name": "the recent rows (the window and the newest 2,000)", "rows": 2400,
                              "holdout_f1": 0.8557692307692307}]}
    assert training_choice_text(record) == ("the recent rows (the window and the newest 2,000), 2,400 rows: F1 0.8558 "
                                            "on the 600 held-out rows, against every labelled row (9,820 rows) 0.7186")
    assert training_choice_text({**record, "candidates": record["candidates"][:1]}) is None  # nothing was chosen
    assert training_choice_text(None) is None


# --- Issue 19.1 by hand: a model trained by the scripts one by one takes its baseline from its own market ----------
def new_market_by_hand(root: Path, **automation) -> tuple[Config, str]:
    """The old market's first deployment, then 8,000 clients of the new market run through the scripts one by one."""
    config = old_market(root, **automation)
    month(root / "input" / "2026-02.csv", 8000, "source", 21)
    for script in ("ingestion.py", "training.py", "scoring.py", "deployment.py"):
        done = run_script(script, "--config", str(config.config_file), cwd=root)
        assert done.returncode == 0, done.stderr
        if script == "training.py":
            said = done.stderr
    return config, said


@pytest.mark.slow
def test_a_model_trained_by_hand_on_a_new_market_is_measured_on_held_out_rows_of_its_own_training_data(tmp_path):
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from riskcore.contract import SCORE_FILE
    from riskcore.data.client_csv import read_client_csv
    from riskcore.data.validation import features_of
    from riskcore.model.evaluation import read_test_data, score_model
    from riskcore.model.training import build_model
    from riskcore.release.load import load_deployed_model

    config, said = new_market_by_hand(tmp_path)
    deployment = require_deployment(config.prod_deployment_folder)
    baseline = deployed_metadata(deployment)["baseline"]
    assert baseline["source"].startswith("held-out rows of its training data by 5-fold cross-validation "
                                         "(the newest 2,000 of its 10,000 rows): the test data, testdata.csv, "
                                         "is of another market (")
    assert "drift baseline: F1" in said and "is of another market" in said  # the decision and its reason, logged
    # Out-of-fold predictions of the newest 2,000 rows, with the served model's settings and the calibration's folds.
    rows = read_client_csv(config.final_data_file)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    predicted = cross_val_predict(build_model(config.model), features_of(rows), rows[TARGET], cv=folds)[-2000:]
    counts = Counts.of(rows[TARGET].to_numpy()[-2000:] == 1, predicted == 1)
    assert baseline["counts"] == counts.as_dict() and baseline["rows"] == 2000
    assert baseline["positives"] == counts.positives and baseline["f1"] == pytest.approx(counts.f1)
    # The served model is the one fitted on every row, and latestscore.txt its F1 on the test data, as the course has it.
    model = load_deployed_model(deployment)
    assert (model.predict(features_of(rows)) == build_model(config.model).fit(features_of(rows), rows[TARGET])
            .predict(features_of(rows))).all()
    test_f1 = score_model(model, read_test_data(config))
    assert float(deployment.path(SCORE_FILE).read_text()) == pytest.approx(test_f1)
    assert baseline["f1"] > test_f1 + 0.2  # the walk: 0.84 on its own market, 0.52 on the old market's test data
    listed = run_script("deployment.py", "--config", str(config.config_file), "--list", cwd=tmp_path).stdout
    assert (f"{baseline['f1']:.4f} (its training data by 5-fold cross-validation (the newest 2,000 of its 10,000 "
            "rows))") in listed
    import html

    import app

    page = html.unescape(app.create_app(config.config_file).test_client().get("/model").get_data(as_text=True))
    assert (f"Drift baseline: F1 {baseline['f1']:.4f} on held-out rows of its own market (its training data by "
            "5-fold cross-validation (the newest 2,000 of its 10,000 rows)), as the test data, testdata.csv, is of "
            "another market (") in page
    said = re.search(r'<p id="baseline">(.*?)</p>', page, re.S).group(1)
    assert said.count("held-out rows") == 1  # said once: no "(held-out rows of …" inside it


def test_a_model_trained_on_the_test_datas_market_keeps_the_test_data_as_its_baseline(tmp_path, caplog):
    caplog.set_level("INFO", logger="riskcore.model.own_market")
    config = old_market(tmp_path)
    baseline = deployed_metadata(require_deployment(config.prod_deployment_folder))["baseline"]
    assert baseline["source"] == "the test data, testdata.csv" and baseline["rows"] == 500
    assert "the test data, testdata.csv, is of the model's market (no feature drifted from the training data)" \
        in caplog.text


def test_the_course_rule_keeps_the_test_data_baseline_whatever_the_market(tmp_path):
    from riskcore.contract import SCORE_FILE

    month(tmp_path / "input" / "2026-01.csv", 2000, "source", 21)  # another market than the test data's
    month(tmp_path / "test" / "testdata.csv", 500, "practice", 12)
    config = deploy_pipeline(load_config(write_config(tmp_path)))  # the course's rule: drift_test "raw", no gate
    deployment = require_deployment(config.prod_deployment_folder)
    baseline = deployed_metadata(deployment)["baseline"]
    assert baseline["source"] == "the test data, testdata.csv"
    assert baseline["f1"] == pytest.approx(float(deployment.path(SCORE_FILE).read_text()))


# --- Issue 19.1 for a retrain: held-out rows without a client who left never hand the baseline to the old market -----
@pytest.mark.slow
def test_a_retrain_whose_holdout_holds_nobody_who_left_takes_its_baseline_from_its_own_rows(tmp_path, cron_dir):
    """The gap: data drift alone retrained (gate off) on a new market's window where nobody left; the held-out rows had
    no F1, so the deployed baseline fell back to the old market's test data (F1 0.74 on testdata.csv) and the next
    month's check compared the new model with it. Now it is the retrained model's out-of-fold F1 on its newest rows."""
    from riskcore.contract import SCORE_FILE

    config = old_market(tmp_path, promotion_gate=False, data_drift_triggers_retrain=True)
    stayers_month(config.input_folder / "2026-02.csv", 400, "source", 21)
    server = start_api(config)
    try:
        retrained = cron_tick(config, server, cron_dir)
        deployment = require_deployment(config.prod_deployment_folder)
        baseline = deployed_metadata(deployment)["baseline"]
        month(config.input_folder / "2026-03.csv", 1000, "source", 22)
        checked = cron_tick(config, server, cron_dir)
    finally:
        stop_api()
    assert retrained["decision"] == "retrain" and retrained["window_positives"] == 0
    assert retrained["evaluation"]["holdout"]["old"]["positives"] == 0  # 80 held-out rows, nobody who left
    assert baseline["source"].startswith("held-out rows of its training data by 5-fold cross-validation (the newest ")
    assert baseline["source"].endswith("its 80 held-out rows of the new market hold nobody who left "
                                       "(F1 is undefined there)")
    assert baseline["positives"] >= 20 and baseline["f1"] is not None
    assert baseline["f1"] != pytest.approx(float(deployment.path(SCORE_FILE).read_text()))  # not the test data's F1
    assert checked["baseline"] == pytest.approx(baseline["f1"]) and checked["baseline_source"] == baseline["source"]
    assert "against" in checked["drift_verdict"] and "the test data" not in checked["drift_verdict"]


def test_the_gate_waits_when_its_holdout_would_hold_nobody_who_left(tmp_path):
    """Under the gate, such a holdout cannot judge a retrain (every model scores the same there): wait, said."""
    config = old_market(tmp_path, data_drift_triggers_retrain=True)
    before = served(config)
    stayers_month(config.input_folder / "2026-02.csv", 400, "source", 21)
    run = tick(config)
    assert run["decision"] == "wait" and served(config) == before and run["model_drift"] is None
    assert run["drift_verdict"].endswith("; drift found, but its holdout would hold 80 rows and nobody who left "
                                         "(F1 is undefined there): waiting for more labelled rows")


def test_a_window_with_a_client_who_left_holds_one_out():
    """The holdout is stratified by the label: two leavers among 250 rows put one in the 50 held out (a shuffle left
    both out of it about 64 times in 100)."""
    import pandas as pd

    from riskcore.model.holdout import holdout_clients

    rows = pd.DataFrame({ID_COLUMN: [f"c{i}" for i in range(250)], "lastmonth_activity": 1, "lastyear_activity": 1,
                         "number_of_employees": 1, TARGET: [1 if i in (7, 201) else 0 for i in range(250)]})
    for seed in range(20):
        held = rows[rows[ID_COLUMN].isin(holdout_clients(rows, 0.2, seed=seed))]
        assert len(held) == 50 and held[TARGET].sum() == 1
    many = rows.assign(**{TARGET: np.arange(250) % 5 == 0}).astype({TARGET: int})  # 50 leavers: 10 held out, exactly
    assert many[many[ID_COLUMN].isin(holdout_clients(many, 0.2))][TARGET].sum() == 10


@pytest.mark.parametrize(("target", "newest", "leavers", "measured"), [
    ([1, 0, 1, 0, 0, 0], 3, 1, 4),  # the newest 3 hold nobody who left: widened to the newest leaver
    ([1, 0, 1, 0, 0, 0], 3, 2, 6),
    ([1, 0, 1, 0, 1, 0], 3, 1, 3),  # enough already
    ([1, 0, 1, 0, 0, 0], 3, 5, 6),  # fewer leavers than asked for: every row
    ([0, 0, 0], 2, 1, 2),  # nobody left at all: nothing to widen to
    ([1, 0], 10, 1, 2),
])
def test_the_own_rows_baseline_widens_to_the_newest_rows_that_hold_leavers(target, newest, leavers, measured):
    from riskcore.model.own_market import newest_with_leavers

    assert newest_with_leavers(np.array(target), newest, leavers) == measured


def test_a_model_whose_test_data_is_of_another_market_is_calibrated_on_its_baseline_rows_not_the_test_data(tmp_path):
    """training.py by hand on a new market: the baseline came from out-of-fold predictions of its newest rows, yet the
    calibrator was fitted on the old market's testdata.csv, so its estimates read the old market's odds."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    import ingestion
    import training
    from riskcore.data.client_csv import read_client_csv
    from riskcore.data.validation import features_of
    from riskcore.model.calibration import calibration_figures
    from riskcore.model.training import build_model

    month(tmp_path / "input" / "2026-01.csv", 3000, "source", 21)
    month(tmp_path / "test" / "testdata.csv", 500, "practice", 12)  # the old market's test data
    config = load_config(write_config(tmp_path, automation=EVIDENCE))
    ingestion.run(config)
    metadata = training.run(config)
    baseline, calibration = metadata["baseline"], metadata["calibration"]
    assert "is of another market" in baseline["source"] and baseline["rows"] == 2000
    assert calibration["source"] == ("out-of-fold log-odds of the newest 2,000 of its 3,000 training rows (5 folds), "
                                     "the rows of its drift baseline")
    assert calibration["rows"] == 2000 and calibration["method"] in ("isotonic", "platt", "model")
    # The model's own calibration on exactly those rows, as a hand computation with the same folds gives it.
    rows = read_client_csv(config.final_data_file)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    log_odds = cross_val_predict(build_model(config.model), features_of(rows), rows[TARGET], cv=folds,
                                 method="decision_function")[-2000:]
    own = calibration_figures(1 / (1 + np.exp(-log_odds)), rows[TARGET].to_numpy()[-2000:])
    assert calibration["before"]["ece"] == pytest.approx(own["ece"])
    assert calibration["positives"] == int(rows[TARGET].to_numpy()[-2000:].sum())
