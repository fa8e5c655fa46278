"""An evidence window that spans ticks counts each client once (riskcore.ops.evidence_window.by_client).

Two monthly exports of the same clients, unlabelled as the README's routine has them, make a window
of twice as many rows: its rows stay (PSI and KS take every snapshot), but the estimate without
labels takes each client's latest snapshot, and F1 each client's latest labelled one, so a label the
window holds is never lost to a later unlabelled snapshot. The history, the page, the PDF and
/metrics say the same counts.
"""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from test_decisions import month, old_market, tick

import datagen
from riskcore.contract import EVIDENCE_WINDOW, ID_COLUMN, TARGET
from riskcore.data.validation import features_of
from riskcore.model.calibration import calibrated_probability, estimate_performance
from riskcore.model.estimate_words import estimate_text
from riskcore.ops.evidence_window import by_client, with_new_rows
from riskcore.release.load import load_deployed_calibrator, load_deployed_model, require_deployment

COLUMNS = [ID_COLUMN, "lastmonth_activity", "lastyear_activity", "number_of_employees", TARGET]


def frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


# --- The rule, on frames -------------------------------------------------------------------------
def test_each_client_counts_once_at_its_latest_snapshot():
    window = with_new_rows(frame([("a", 1, 10, 5, None), ("b", 2, 20, 5, None)]),
                           frame([("a", 3, 30, 5, None), ("b", 4, 40, 5, None)]))
    clients = by_client(window)
    assert len(window) == 4  # every snapshot stays: the data-drift statistics' rows
    assert clients.latest[ID_COLUMN].tolist() == ["a", "b"] and clients.latest["lastmonth_activity"].tolist() == [3, 4]
    assert len(clients.labelled) == 0


def test_a_label_followed_by_an_unlabelled_snapshot_still_counts():
    window = with_new_rows(frame([("a", 1, 10, 5, 1), ("b", 2, 20, 5, 0)]),
                           frame([("a", 3, 30, 5, None), ("c", 4, 40, 5, None)]))
    clients = by_client(window)
    assert clients.latest[ID_COLUMN].tolist() == ["b", "a", "c"]  # a's unlabelled snapshot is its latest
    assert clients.labelled[ID_COLUMN].tolist() == ["a", "b"] and clients.labelled[TARGET].tolist() == [1, 0]


def test_of_two_labelled_snapshots_the_later_label_counts():
    window = with_new_rows(frame([("a", 1, 10, 5, 0)]), frame([("a", 1, 12, 5, 1)]))
    assert by_client(window).labelled[TARGET].tolist() == [1]


def test_a_snapshot_that_returns_is_the_latest_again():
    """a's first values come back after another snapshot: kept once, where it came last."""
    window = with_new_rows(with_new_rows(frame([("a", 1, 10, 5, None)]), frame([("a", 2, 20, 5, None)])),
                           frame([("a", 1, 10, 5, None)]))
    assert len(window) == 2 and by_client(window).latest["lastmonth_activity"].tolist() == [1]


# --- End to end: ticks, the history, the page, the PDF and /metrics --------------------------------
def export(path, ids, columns, labels=None) -> None:
    """A month's snapshot of the given clients; without labels, as this month's export is."""
    header = COLUMNS if labels is not None else COLUMNS[:-1]
    values = [ids, columns["lastmonth_activity"], columns["lastyear_activity"], columns["number_of_employees"]]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(zip(*values, *([labels] if labels is not None else []), strict=True))


def estimate_of(config, path) -> float:
    """The served model's estimated F1 on one file's rows alone."""
    deployment = require_deployment(config.prod_deployment_folder)
    model, calibrator = load_deployed_model(deployment), load_deployed_calibrator(deployment)
    rows = pd.read_csv(path)
    log_odds = model.decision_function(features_of(rows))
    return estimate_performance(calibrated_probability(calibrator, log_odds), model.predict(features_of(rows)),
                                log_odds)["f1"]


def test_two_exports_of_the_same_clients_are_estimated_on_each_client_once(tmp_path):
    from riskcore.api.metrics import run_families
    from riskcore.api.page_health import check_sentence, latest_estimate
    from riskcore.report.pdf_evidence import estimate_lines

    config = old_market(tmp_path)
    ids = [f"pr11-{i}" for i in range(2000)]  # the deployed model's clients, this month and the next
    columns = datagen.generate_columns(2000, "practice", 11)
    export(config.input_folder / "2026-02.csv", ids, columns)
    first = tick(config)
    assert first["decision"] == "wait" and first["estimated_rows"] == first["window_clients"] == 2000
    later = {**columns, "lastmonth_activity": columns["lastmonth_activity"] + 7}
    export(config.input_folder / "2026-03.csv", ids, later)
    run = tick(config)
    assert run["decision"] == "wait" and run["window_rows"] == 4000  # both snapshots stay in the window
    assert run["window_clients"] == run["estimated_rows"] == 2000 and run["window_labelled"] == 0
    # The estimate is the latest snapshots' alone: the older export is superseded, not weighted as much.
    assert run["estimated_f1"] == pytest.approx(estimate_of(config, config.input_folder / "2026-03.csv"))
    said = estimate_text(run)
    assert " on 2,000 unlabelled clients (each client's latest snapshot of the window's 4,000 rows), about " in said
    assert "4,000 unlabelled clients" not in said
    assert latest_estimate(run)["sentence"] == said  # the page
    assert said in " ".join(estimate_lines(run, None))  # the PDF
    assert check_sentence(run).split(": ")[0].endswith("4,000 new rows since the last decision (2,000 in this run), of "
                                                     "2,000 clients")
    found = {sample.name: sample.value for family in run_families([run]) for sample in family.samples}
    assert found["risk_window_rows"] == 4000 and found["risk_window_clients"] == 2000  # /metrics


def test_a_labelled_snapshot_then_an_unlabelled_one_keeps_its_label_for_f1(tmp_path):
    config = old_market(tmp_path, min_rows=300)
    labelled = month(config.input_folder / "2026-02.csv", 250, "practice", 71)
    first = tick(config)
    assert first["decision"] == "wait" and first["window_labelled"] == 250
    ids = labelled[ID_COLUMN].tolist()
    export(config.input_folder / "2026-03.csv", ids, {**labelled, "lastyear_activity": labelled["lastyear_activity"]
                                                      + 50})
    run = tick(config)
    assert run["window_rows"] == 500 and run["window_clients"] == 250 and run["estimated_rows"] == 250
    assert run["window_labelled"] == 250 and run["window_positives"] == int(np.sum(labelled[TARGET]))
    model = load_deployed_model(require_deployment(config.prod_deployment_folder))
    rows = pd.DataFrame(labelled)
    assert run["f1_new_data"] == pytest.approx(f1_score(rows[TARGET], model.predict(features_of(rows))))
    assert run["calibration"]["rows"] == 250
    assert "250 labelled rows of the 300 needed" in run["drift_verdict"]
    # Every client has a label in the window: the labels decide, the estimate never warns over them.
    assert run["estimated_drift"] is False


def test_a_retrain_holds_out_and_scores_each_client_once(tmp_path):
    """150 clients labelled twice (two months) and 300 more: the holdout is a share of the 450 clients, each at its
    latest labelled snapshot, never a client's older snapshot beside its newer one."""
    config = old_market(tmp_path)
    first = month(config.input_folder / "2026-02.csv", 150, "changed", 81)
    assert tick(config)["decision"] == "wait"  # 150 labelled rows: fewer than 200
    again = datagen.generate_columns(150, "changed", 82)
    export(config.input_folder / "2026-03.csv", first[ID_COLUMN], again, again[TARGET])
    month(config.input_folder / "2026-04.csv", 300, "changed", 83)
    run = tick(config)
    assert run["window_rows"] == 600 and run["window_clients"] == run["window_labelled"] == 450
    assert "model drift" in run["drift_verdict"]
    holdout = run["evaluation"]["holdout"]
    assert holdout["old"]["rows"] == holdout["new"]["rows"] == round(0.2 * 450)


def test_a_labelled_file_and_an_unlabelled_export_of_its_clients_in_one_run_keep_the_labels(tmp_path):
    """The same two files as in two runs above, arriving together: the export is each client's latest snapshot (the
    estimate's, the call list's), and the labels still count for F1."""
    config = old_market(tmp_path, min_rows=300)
    labelled = month(config.input_folder / "2026-02.csv", 250, "practice", 71)
    export(config.input_folder / "2026-03.csv", labelled[ID_COLUMN].tolist(),
           {**labelled, "lastyear_activity": labelled["lastyear_activity"] + 50})
    run = tick(config)
    assert run["rows_new"] == 250 and run["window_rows"] == 500 and run["window_clients"] == run["estimated_rows"] == 250
    assert run["window_labelled"] == 250 and run["window_positives"] == int(np.sum(labelled[TARGET]))
    model = load_deployed_model(require_deployment(config.prod_deployment_folder))
    rows = pd.DataFrame(labelled)
    assert run["f1_new_data"] == pytest.approx(f1_score(rows[TARGET], model.predict(features_of(rows))))
    window = pd.read_csv(config.output_folder / EVIDENCE_WINDOW)  # carried to the next run with its labels
    assert len(window) == 500 and window[TARGET].notna().sum() == 250
