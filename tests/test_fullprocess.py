"""fullprocess.py: the contract's three decisions, the lock, pending runs, history, the cheap no-op tick.

The fast tests run the tick in this process with a stand-in for the reports (diagnostics, report
and API calls), so they check the decisions alone; the slow ones run the real reports against a
real API, or the script in its own process, as cron does.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fullprocess
from conftest import HEADER, ROOT, client_rows, free_port, run_script, tree_snapshot, write_csv
from riskcore.config import Config
from riskcore.contract import (
    FEATURES,
    INGESTED_FILES,
    INGESTION_RECORD,
    MODEL_FILE,
    MODEL_METADATA,
    RISK_RECORD,
    RUN_HISTORY,
    SCORE_FILE,
)
from riskcore.faults import KILL_AT_ENV
from riskcore.files import atomic_write_json
from riskcore.ops import tick as tick_module
from riskcore.ops.history import read_history
from riskcore.ops.lock import exclusive_lock
from riskcore.ops.new_data import detect_new_files
from riskcore.ops.run_record import PENDING_FILE, Run, step, write_pending
from riskcore.release.load import current_deployment, require_deployment


def tick(config: Config, api_url: str, *extra: str) -> int:
    return fullprocess.main(["--config", str(config.config_file), "--api-url", api_url, *extra])


class Reports:
    """Stands in for the reports a run ends with: notes each call (run number, decision)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int | None, str | None]] = []

    def __call__(self, config: Config, run: Run) -> None:
        self.calls.append((run.run_number, run.decision))
        # As the real reports do: the risk list's record names the model that made it.
        current = require_deployment(config.prod_deployment_folder)
        atomic_write_json(config.output_model_folder / RISK_RECORD, {"model_version": current.model_version})


def history(config: Config) -> list[dict]:
    return read_history(config.output_model_folder / RUN_HISTORY)


def deployed_state(config: Config) -> dict:
    current = require_deployment(config.prod_deployment_folder)
    return {"model_sha": current.manifest["files"][MODEL_FILE],
            "baseline": (config.prod_deployment_folder / SCORE_FILE).read_text(),
            "version": current.model_version,
            "ingested": (config.prod_deployment_folder / INGESTED_FILES).read_text()}


def reports(config: Config) -> list[str]:
    return sorted(p.name for p in config.output_model_folder.iterdir()
                  if p.name.startswith(("confusionmatrix", "summary_report", "apireturns")))


def add_good_data(config: Config) -> None:
    """New data of the same market, labelled without noise: the deployed model does well on it."""
    write_csv(config.input_folder / "dataset3.csv", client_rows(80, seed=5, noise=0.0))


def add_flipped_data(config: Config) -> None:
    """New data whose labels are flipped: the deployed model fails on it."""
    write_csv(config.input_folder / "dataset4.csv", client_rows(200, seed=6, flip=True))


# --- The contract's decision table, in process ----------------------------------------------
def test_no_new_data_stops_without_changing_anything(deployed: Config):
    from riskcore.ops.alerts import LAST_TICK_FILE, last_successful_tick

    before = tree_snapshot(deployed.config_file.parent)
    assert fullprocess.main(["--config", str(deployed.config_file), "--api-url", "http://127.0.0.1:9"]) == 0
    # Only the heartbeat is new (its modification time says when a tick last finished well; issue 23).
    after = tree_snapshot(deployed.config_file.parent)
    assert after.pop(f"models/{LAST_TICK_FILE}") and after == before
    assert last_successful_tick(deployed) is not None
    assert history(deployed) == []


def test_new_data_the_model_gets_right_keeps_the_model(deployed: Config):
    before = deployed_state(deployed)
    add_good_data(deployed)
    done = Reports()
    assert tick_module.tick(deployed, done) == 0
    after = deployed_state(deployed)
    assert (after["model_sha"], after["baseline"], after["version"]) == \
        (before["model_sha"], before["baseline"], before["version"])
    assert after["ingested"] == "dataset1.csv\ndataset2.csv\ndataset3.csv\n"
    assert done.calls == [(1, "keep")]
    [row] = history(deployed)
    assert (row["decision"], row["outcome"], row["run_number"]) == ("keep", "done", 1)
    assert row["f1_new_data"] >= row["baseline"]
    assert row["version_before"] == row["version_after"] == before["version"]
    assert set(row["step_seconds"]) == {"ingestion", "drift_check", "record_files"}
    # The files are now processed: the next tick does nothing.
    snapshot = tree_snapshot(deployed.config_file.parent)
    assert tick_module.tick(deployed, done) == 0
    assert tree_snapshot(deployed.config_file.parent) == snapshot and len(done.calls) == 1


def test_new_data_with_flipped_labels_retrains_and_redeploys(deployed: Config):
    before = deployed_state(deployed)
    add_flipped_data(deployed)  # beside the files already processed, as they accumulate
    done = Reports()
    assert tick_module.tick(deployed, done) == 0
    after = deployed_state(deployed)
    assert after["model_sha"] != before["model_sha"] and after["version"] != before["version"]
    assert after["baseline"] == (deployed.output_model_folder / SCORE_FILE).read_text()
    assert after["ingested"] == "dataset1.csv\ndataset2.csv\ndataset4.csv\n"
    assert done.calls == [(1, "retrain")]
    [row] = history(deployed)
    assert row["f1_new_data"] < row["baseline"] and "model drift" in row["drift_verdict"]
    # F1 is taken on the new file's rows alone; everything ingested is recorded beside it.
    assert (row["rows_new"], row["rows_ingested"]) == (200, 420)
    assert row["f1_ingested"] > row["f1_new_data"]
    assert (row["version_before"], row["version_after"]) == (before["version"], after["version"])
    assert set(row["step_seconds"]) == {"ingestion", "drift_check", "training", "scoring", "evaluation", "deployment"}


def test_first_tick_with_nothing_deployed_deploys(config: Config):
    assert current_deployment(config.prod_deployment_folder) is None
    done = Reports()
    assert tick_module.tick(config, done) == 0
    assert deployed_state(config)["ingested"] == "dataset1.csv\ndataset2.csv\n"
    assert done.calls == [(1, "first deployment")]
    [row] = history(config)
    assert row["decision"] == "first deployment" and row["version_before"] is None
    assert row["version_after"] == require_deployment(config.prod_deployment_folder).model_version


def test_the_psi_the_automation_records_is_the_shared_psi_of_the_new_rows(deployed: Config):
    """riskcore.model.drift.psi of the new file's rows against the deployed training profile: the number
    the automation records is the shared function's, on the new data alone."""
    from riskcore.data.client_csv import read_client_csv
    from riskcore.model.drift import psi, psi_drifted

    add_good_data(deployed)
    profile = json.loads(require_deployment(deployed.prod_deployment_folder).path(MODEL_METADATA).read_text())
    assert tick_module.tick(deployed, Reports()) == 0
    [row] = history(deployed)
    new = read_client_csv(deployed.input_folder / "dataset3.csv")
    threshold = deployed.automation["psi_threshold"]
    for column, recorded in row["data_drift"]["features"].items():
        expected = psi(new[column].to_numpy(dtype="float64"), profile["training_profile"]["quantiles"][column])
        assert recorded["psi"] == round(expected, 4), column
        assert recorded["drift"] is (psi_drifted(expected, threshold) or recorded["ks_p_value"] < deployed.automation["ks_alpha"])


def test_a_changed_file_counts_as_new(deployed: Config):
    current = require_deployment(deployed.prod_deployment_folder)
    assert detect_new_files(deployed.input_folder, current) == []
    with open(deployed.input_folder / "dataset1.csv", "a") as handle:
        handle.write("zzzz,1,2,3,1\n")
    assert detect_new_files(deployed.input_folder, current) == ["dataset1.csv"]


def test_a_rejected_file_exits_1_naming_it_and_is_not_new_again_until_it_changes(deployed: Config, caplog):
    bad = deployed.input_folder / "broken.csv"
    bad.write_text("corporation,exited\nabcd,1\n")
    add_good_data(deployed)
    done = Reports()
    with caplog.at_level(logging.ERROR):
        assert tick_module.tick(deployed, done) == 1  # cron mails the sentence
    [said] = [r.getMessage() for r in caplog.records if "the deployed model is" in r.getMessage()]
    assert "changes); the deployed model is " in said and ".;" not in said
    assert done.calls == [(1, "keep")]  # the good file went ahead
    [row] = history(deployed)
    assert [r["name"] for r in row["files_rejected"]] == ["broken.csv"]
    assert row["outcome"] == "done" and row["error"].startswith("rejected input: broken.csv is missing the column")
    current = require_deployment(deployed.prod_deployment_folder)
    assert detect_new_files(deployed.input_folder, current) == []
    bad.write_text("corporation,exited\nabcd,0\n")
    assert detect_new_files(deployed.input_folder, current) == ["broken.csv"]


def test_new_data_without_labels_keeps_the_model_and_is_recorded_as_processed(deployed: Config):
    before = deployed_state(deployed)
    write_csv(deployed.input_folder / "clients.csv", [r.rsplit(",", 1)[0] for r in client_rows(40, seed=7)],
              header=HEADER.removesuffix(",exited"))
    done = Reports()
    assert tick_module.tick(deployed, done) == 0
    assert done.calls == [(1, "keep")]
    [row] = history(deployed)
    assert row["drift_verdict"].startswith("no labels yet") and row["f1_new_data"] is None
    assert row["rows_new"] == 40 and set(row["data_drift"]["features"]) == set(FEATURES)  # PSI and KS still run
    after = deployed_state(deployed)
    assert (after["model_sha"], after["baseline"]) == (before["model_sha"], before["baseline"])
    assert after["ingested"] == "clients.csv\ndataset1.csv\ndataset2.csv\n"
    assert detect_new_files(deployed.input_folder, require_deployment(deployed.prod_deployment_folder)) == []


def test_a_broken_reexport_of_an_ingested_file_holds_back_and_exits_1(deployed: Config):
    before = tree_snapshot(deployed.prod_deployment_folder)
    final = deployed.final_data_file.read_bytes()
    with open(deployed.input_folder / "dataset1.csv", "a") as handle:
        handle.write('zzzz,10,"1,200",5,0\n')
    done = Reports()
    assert tick_module.tick(deployed, done) == 1
    assert done.calls == []
    assert tree_snapshot(deployed.prod_deployment_folder) == before and deployed.final_data_file.read_bytes() == final
    [row] = history(deployed)
    assert [r["name"] for r in row["files_rejected"]] == ["dataset1.csv"]
    assert row["outcome"] == "failed" and "dataset1.csv was ingested before" in row["error"]
    # Still new, so every tick says so until a good version arrives.
    assert tick_module.tick(deployed, done) == 1 and len(history(deployed)) == 2


def test_a_removed_file_is_dropped_only_when_the_operator_asks(deployed: Config):
    (deployed.input_folder / "dataset2.csv").unlink()
    done = Reports()
    assert tick_module.tick(deployed, done) == 0 and done.calls == []  # nothing new, nothing lost
    add_good_data(deployed)
    assert tick_module.tick(deployed, done) == 1  # new data, but it would lose dataset2.csv's rows
    assert "--allow-removed" in history(deployed)[-1]["error"]
    assert deployed_state(deployed)["ingested"] == "dataset1.csv\ndataset2.csv\n"
    assert tick_module.tick(deployed, done, allow_removed=True) == 0
    assert deployed_state(deployed)["ingested"] == "dataset1.csv\ndataset3.csv\n"
    record = json.loads((deployed.prod_deployment_folder / INGESTION_RECORD).read_text())
    assert [entry["name"] for entry in record["removed"]] == ["dataset2.csv"]


def test_allow_removed_alone_is_work(deployed: Config):
    (deployed.input_folder / "dataset2.csv").unlink()
    done = Reports()
    assert tick_module.tick(deployed, done, allow_removed=True) == 0
    assert done.calls == [(1, "keep")]
    assert history(deployed)[-1]["drift_verdict"] == "no new rows to check: the model is kept"
    assert deployed_state(deployed)["ingested"] == "dataset1.csv\n"


def test_dry_run_with_allow_removed_shows_the_drop(deployed: Config, capsys):
    (deployed.input_folder / "dataset2.csv").unlink()
    assert fullprocess.main(["--config", str(deployed.config_file), "--dry-run"]) == 0
    assert capsys.readouterr().out == "would do nothing: no new data\n"  # a deletion alone is no work
    assert fullprocess.main(["--config", str(deployed.config_file), "--dry-run", "--allow-removed"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would keep model") and "dropping dataset2.csv" in out


def test_acknowledged_files_count_as_processed(deployed: Config):
    from riskcore.files import sha256_file
    from riskcore.release.operator_state import acknowledge

    add_good_data(deployed)
    current = require_deployment(deployed.prod_deployment_folder)
    assert detect_new_files(deployed.input_folder, current) == ["dataset3.csv"]
    record = {"files": [{"name": "dataset3.csv", "sha256": sha256_file(deployed.input_folder / "dataset3.csv")}]}
    acknowledge(deployed.prod_deployment_folder, "000009-20260101T000000Z", record)
    assert detect_new_files(deployed.input_folder, current) == []


def test_dry_run_of_a_held_back_ingestion_says_why(deployed: Config, capsys):
    (deployed.input_folder / "dataset1.csv").write_text(f"{HEADER}\nabcd,x,1,1,0\n")
    assert fullprocess.main(["--config", str(deployed.config_file), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would fail: Nothing was ingested: dataset1.csv has") and "ingested before" in out


def test_a_failing_step_leaves_production_unchanged_and_exits_1(deployed: Config):
    before = tree_snapshot(deployed.prod_deployment_folder)
    add_flipped_data(deployed)
    deployed.model_file.unlink()
    deployed.model_file.mkdir()  # training cannot write its model: a real failing write
    done = Reports()
    assert tick_module.tick(deployed, done) == 1
    assert tree_snapshot(deployed.prod_deployment_folder) == before
    assert done.calls == []
    [row] = history(deployed)
    assert row["outcome"] == "failed" and "step training failed" in row["error"]
    assert not (deployed.output_model_folder / PENDING_FILE).exists()


def test_a_tampered_deployment_makes_the_run_fail(deployed: Config):
    add_good_data(deployed)
    model = require_deployment(deployed.prod_deployment_folder).path(MODEL_FILE)
    model.write_bytes(model.read_bytes()[:-3])
    assert tick_module.tick(deployed, Reports()) == 1
    [row] = history(deployed)
    assert "step drift_check failed" in row["error"] and "sha256" in row["error"]


def test_dry_run_prints_the_decision_and_changes_nothing(deployed: Config, capsys):
    add_flipped_data(deployed)
    before = tree_snapshot(deployed.config_file.parent)
    assert fullprocess.main(["--config", str(deployed.config_file), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would retrain and redeploy") and "dataset4.csv" in out and "(baseline)" in out
    assert out.endswith("\n") and out.count("\n") == 1  # one line, ended as a line
    assert tree_snapshot(deployed.config_file.parent) == before


def test_dry_run_of_a_pinned_release_says_the_keep_the_tick_would_record(deployed: Config, capsys):
    """A pinned release asked to retrain is kept ("keep" in the history); the dry run said "would keep model X and
    wait for more labelled rows", the decision of a window too small, with the pin's reason after it."""
    import deployment

    pinned = deployment.run(deployed, action="pin")
    add_flipped_data(deployed)
    assert fullprocess.main(["--config", str(deployed.config_file), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"would keep model {pinned.model_version}: new files dataset4.csv;")
    assert "is pinned" in out and "wait" not in out


def test_dry_run_with_nothing_new_says_so(deployed: Config, capsys):
    assert fullprocess.main(["--config", str(deployed.config_file), "--dry-run"]) == 0
    assert capsys.readouterr().out == "would do nothing: no new data\n"


# --- Reports are always made, under numbers never used before (issue 21) ----------------------
class PdfReports:
    """The real risk list and PDF report in the run's reporting step; `crashes` first calls crash in the layout."""

    def __init__(self, crashes: int = 0) -> None:
        self.crashes, self.numbers = crashes, []

    def __call__(self, config: Config, run: Run) -> None:
        from reportlab.platypus.doctemplate import LayoutError

        from riskcore.report import writer

        self.numbers.append(run.run_number)
        with step(run, "reporting"):
            if self.crashes:
                self.crashes -= 1
                real = writer.build_pdf

                def crash(data):  # the risk list is written by then, as in the crash issue 21 found
                    raise LayoutError("Flowable <Table> too large on page 2")

                writer.build_pdf = crash
                try:
                    writer.write_reports(config, run_number=run.run_number)
                finally:
                    writer.build_pdf = real
            else:
                writer.write_reports(config, run_number=run.run_number)


def pdf_reports(config: Config) -> list[str]:
    return sorted(p.name for p in config.output_model_folder.glob("summary_report*.pdf"))


@pytest.mark.slow  # several whole ticks in a row, with their reports
def test_a_report_that_crashed_after_a_retrain_is_made_by_the_next_tick(deployed: Config, caplog):
    add_flipped_data(deployed)
    done = PdfReports(crashes=1)
    with pytest.raises(Exception, match="too large on page"):
        tick_module.tick(deployed, done)
    retrained = require_deployment(deployed.prod_deployment_folder).model_version
    record = json.loads((deployed.output_model_folder / RISK_RECORD).read_text())
    assert record["model_version"] == retrained  # the risk list follows the new model: the PDF does not
    assert pdf_reports(deployed) == [] and history(deployed)[-1]["outcome"] == "crashed"
    caplog.set_level("INFO", logger="fullprocess")
    assert tick_module.tick(deployed, done) == 0  # no new data, but the report is owed
    assert "the run started " in caplog.text and " crashed before the report of model" in caplog.text
    # The first report made keeps the plain name: the crashed run made none, so it kept no number.
    assert pdf_reports(deployed) == ["summary_report.pdf"] and done.numbers == [1, 1]
    assert [(r["run_number"], r["decision"], r["outcome"]) for r in history(deployed)] == [
        (None, "retrain", "crashed"), (1, "finish reports", "done")]
    assert tick_module.tick(deployed, done) == 0 and done.numbers == [1, 1]  # the model has its report now
    assert len(history(deployed)) == 2


@pytest.mark.slow  # several whole ticks in a row, with their reports
def test_a_cycle_listed_before_a_crash_is_not_given_to_the_next_models_reports(deployed: Config):
    """The crashed run's risk list already recorded its cycle of calls under number 1, with the model it deployed.
    Reports owed to that model take 1 (the test above); reports of another model deployed meanwhile take the next
    number, or they would get the earlier model's recorded cycle back (record_cycle keeps a cycle as recorded)."""
    from riskcore.contract import RISK_RECORD

    add_flipped_data(deployed)
    with pytest.raises(Exception, match="too large on page"):
        tick_module.tick(deployed, PdfReports(crashes=1))
    crashed = json.loads((deployed.output_model_folder / RISK_RECORD).read_text())
    assert (crashed["run_number"], crashed["cycle"]) == (1, 1)
    write_csv(deployed.input_folder / "flipped_back.csv", client_rows(200, seed=16))  # drift again: a new model
    done = PdfReports()
    assert tick_module.tick(deployed, done) == 0
    newest = require_deployment(deployed.prod_deployment_folder).model_version
    record = json.loads((deployed.output_model_folder / RISK_RECORD).read_text())
    assert newest != crashed["model_version"] and done.numbers == [2]
    assert (record["model_version"], record["run_number"], record["cycle"]) == (newest, 2, 2)
    assert pdf_reports(deployed) == ["summary_report2.pdf"]


@pytest.mark.slow  # several whole ticks in a row, with their reports
def test_a_report_that_keeps_failing_is_tried_again_on_every_tick(deployed: Config):
    add_flipped_data(deployed)
    with pytest.raises(Exception, match="too large on page"):
        tick_module.tick(deployed, PdfReports(crashes=1))
    with pytest.raises(Exception, match="too large on page"):
        tick_module.tick(deployed, PdfReports(crashes=1))
    assert [(r["run_number"], r["outcome"]) for r in history(deployed)] == [(None, "crashed"), (None, "crashed")]
    assert tick_module.tick(deployed, PdfReports()) == 0
    assert pdf_reports(deployed) == ["summary_report.pdf"]  # numbered after the reports made, not the runs


@pytest.mark.slow  # several whole ticks in a row, with their reports
def test_report_numbers_are_never_reused_after_the_reports_are_deleted(deployed: Config):
    add_good_data(deployed)
    done = PdfReports()
    assert tick_module.tick(deployed, done) == 0
    assert pdf_reports(deployed) == ["summary_report.pdf"]
    for path in deployed.output_model_folder.glob("*"):
        if path.name.startswith(("summary_report", "confusionmatrix", "apireturns")):
            path.unlink()  # the operator tidies the folder by hand
    write_csv(deployed.input_folder / "dataset5.csv", client_rows(60, seed=15, noise=0.0))
    assert tick_module.tick(deployed, done) == 0
    assert done.numbers == [1, 2] and pdf_reports(deployed) == ["summary_report2.pdf"]
    assert [r["run_number"] for r in history(deployed)] == [1, 2]
    (deployed.output_model_folder / "summary_report2.pdf").unlink()
    from riskcore.report.writer import write_reports

    assert write_reports(deployed)["summary_report"].name == "summary_report3.pdf"  # reporting.py by hand too


@pytest.mark.slow  # several whole ticks in a row, with their reports
def test_a_run_that_fails_before_its_reports_takes_no_report_number(deployed: Config):
    add_good_data(deployed)
    done = PdfReports()
    assert tick_module.tick(deployed, done) == 0
    ingested = deployed.input_folder / "dataset3.csv"
    kept = ingested.read_bytes()
    ingested.unlink()  # a file production ingested is gone: the run is held back before its reports
    write_csv(deployed.input_folder / "dataset5.csv", client_rows(60, seed=15, noise=0.0))
    assert tick_module.tick(deployed, done) == 1
    ingested.write_bytes(kept)
    assert tick_module.tick(deployed, done) == 0
    assert pdf_reports(deployed) == ["summary_report.pdf", "summary_report2.pdf"] and done.numbers == [1, 2]
    assert [(r["run_number"], r["outcome"]) for r in history(deployed)] == [(1, "done"), (None, "failed"), (2, "done")]


@pytest.mark.parametrize(("present", "recorded", "expected"), [
    ([], 0, 1),
    (["summary_report.pdf"], 0, 2),
    (["summary_report.pdf", "confusionmatrix7.png"], 0, 8),  # after the highest, not in the first gap
    (["summary_report2.pdf"], 5, 6),  # the history remembers deleted reports
    (["summary_report02.pdf", "summary_reportx.pdf", ".summary_report9.pdf.tmp"], 0, 1),  # not report names
])
def test_next_report_number_follows_the_highest_ever_used(tmp_path: Path, present, recorded, expected):
    from riskcore.files import next_report_number

    for name in present:
        (tmp_path / name).write_bytes(b"")
    assert next_report_number(tmp_path, recorded=recorded) == expected


# --- Pending runs: what a killed run leaves, the next tick finishes ----------------------------
def test_a_pending_run_that_had_decided_gets_its_reports_on_the_next_tick(deployed: Config):
    started = "2026-01-01T00:00:00Z"
    version = require_deployment(deployed.prod_deployment_folder).model_version
    write_pending(deployed, Run(started_at=started, run_number=4, decision="keep", version_before=version))
    done = Reports()
    assert tick_module.tick(deployed, done) == 0
    assert done.calls == [(4, "keep")]  # under its own number and decision
    [row] = history(deployed)
    assert (row["started_at"], row["decision"], row["outcome"], row["run_number"]) == (started, "keep", "done", 4)
    assert not (deployed.output_model_folder / PENDING_FILE).exists()


def test_a_pending_run_that_is_already_recorded_is_only_cleared(deployed: Config):
    add_good_data(deployed)
    assert tick_module.tick(deployed, Reports()) == 0
    [row] = history(deployed)
    write_pending(deployed, Run(run_id=row["run_id"], started_at=row["started_at"], run_number=1,
                                decision="keep"))  # killed after recording
    done = Reports()
    assert tick_module.tick(deployed, done) == 0
    assert done.calls == [] and len(history(deployed)) == 1
    assert not (deployed.output_model_folder / PENDING_FILE).exists()


# --- One run at a time, history, log file -----------------------------------------------------
def test_a_tick_that_finds_the_lock_held_exits_0_and_does_nothing(deployed: Config, caplog):
    add_good_data(deployed)
    before = tree_snapshot(deployed.config_file.parent)
    with exclusive_lock(deployed.prod_deployment_folder) as held:
        assert held
        # flock conflicts between two opens of the folder, even within one process.
        assert tick(deployed, "http://127.0.0.1:9") == 0
    assert "another fullprocess run is in progress" in caplog.text
    assert tree_snapshot(deployed.config_file.parent) == before


def test_history_prints_a_table(deployed: Config, capsys):
    add_good_data(deployed)
    tick_module.tick(deployed, Reports())
    capsys.readouterr()
    assert fullprocess.main(["--config", str(deployed.config_file), "--history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["id", "run", "started", "new"]
    assert "keep" in lines[1] and "dataset3.csv" in lines[1] and "done" in lines[1]


def test_log_file_is_written(deployed: Config):
    add_good_data(deployed)
    tick_module.tick(deployed, Reports())
    text = (deployed.output_model_folder / tick_module.LOG_FILE).read_text()
    assert "step ingestion done in" in text and "decision: keep" in text


# --- The cron rule: a tick with nothing to do pays for no heavy library ------------------------
HEAVY = ("pandas", "numpy", "sklearn", "scipy", "polars", "matplotlib", "reportlab")
# Every module a tick with nothing new imports: the script and the stdlib-only part of riskcore.
NO_OP_PATH = ("fullprocess", "riskcore", "riskcore.api.key", "riskcore.ops.tick", "riskcore.cli", "riskcore.config",
              "riskcore.contract", "riskcore.release.operator_state", "riskcore.faults", "riskcore.files", "riskcore.ops.history", "riskcore.data.input_files",
              "riskcore.ops.lock", "riskcore.ops.new_data", "riskcore.release.load", "riskcore.ops.run_record",
              "riskcore.ops.deadline",
              "riskcore.data.db_changes", "riskcore.data.db_connection", "riskcore.data.db_setting",  # a table's tick
              "riskcore.model.drift_evidence",  # the history's drift words
              "riskcore.model.estimate_words",  # the history's estimate words
              "riskcore.ops.alerts",  # the heartbeat, the silence alert and alerts still owed
              "riskcore.formatting")  # the history's numbers


def module_level_imports(tree: ast.AST) -> list[str]:
    """Modules a file imports when it is imported: everything outside function bodies."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append(node.module)
        found += module_level_imports(node)
    return found


@pytest.mark.parametrize("module", NO_OP_PATH)
def test_the_no_op_path_imports_only_the_standard_library_at_module_level(module: str):
    path = ROOT / (module.replace(".", "/") + ("/__init__.py" if module == "riskcore" else ".py"))
    imports = module_level_imports(ast.parse(path.read_text(encoding="utf-8")))
    outside = [name for name in imports if name not in NO_OP_PATH and name.split(".")[0] not in sys.stdlib_module_names]
    assert outside == []


@pytest.mark.slow
def test_a_real_no_op_tick_imports_no_heavy_library(deployed: Config, tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "fullprocess.py"), "--config", str(deployed.config_file)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "no new data" in result.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:") and "imported package" not in line}
    assert {"riskcore.ops.tick", "riskcore.ops.new_data", "riskcore.release.load"} <= imported  # the tick's path was seen
    assert sorted({name.split(".")[0] for name in imported} & set(HEAVY)) == []


# --- As cron runs it: the script, the real reports, a real API ---------------------------------
@pytest.mark.slow
def test_keep_then_retrain_end_to_end_with_numbered_reports(deployed: Config, api_url: str):
    add_good_data(deployed)
    assert tick(deployed, api_url) == 0
    assert reports(deployed) == ["apireturns.txt", "confusionmatrix.png", "summary_report.pdf"]
    before = deployed_state(deployed)
    add_flipped_data(deployed)
    assert tick(deployed, api_url) == 0
    after = deployed_state(deployed)
    assert after["version"] != before["version"]
    assert reports(deployed) == ["apireturns.txt", "apireturns2.txt", "confusionmatrix.png",
                                 "confusionmatrix2.png", "summary_report.pdf", "summary_report2.pdf"]
    rows = history(deployed)
    assert [(r["decision"], r["outcome"], r["run_number"]) for r in rows] == [("keep", "done", 1), ("retrain", "done", 2)]
    assert set(rows[1]["step_seconds"]) >= {"ingestion", "drift_check", "training", "scoring",
                                            "deployment", "diagnostics", "reporting", "apicalls"}
    replies = json.loads((deployed.output_model_folder / "apireturns2.txt").read_text())
    assert after["version"] in json.dumps(replies)


@pytest.mark.slow
def test_first_run_on_a_fresh_checkout_deploys_and_reports(config: Config, api_url: str):
    assert tick(config, api_url) == 0
    [row] = history(config)
    assert (row["decision"], row["outcome"]) == ("first deployment", "done")
    assert reports(config) == ["apireturns.txt", "confusionmatrix.png", "summary_report.pdf"]


@pytest.mark.slow
def test_unreachable_api_finishes_the_rest_and_exits_1(deployed: Config):
    add_good_data(deployed)
    url = f"http://127.0.0.1:{free_port()}"
    assert tick(deployed, url) == 1
    assert reports(deployed) == ["apireturns.txt", "confusionmatrix.png", "summary_report.pdf"]
    [row] = history(deployed)
    assert row["outcome"] == "failed" and url in row["error"]
    assert deployed_state(deployed)["ingested"].endswith("dataset3.csv\n")


@pytest.mark.slow
def test_a_run_that_finds_another_in_progress_exits_0_at_once(deployed: Config):
    add_good_data(deployed)
    before = tree_snapshot(deployed.prod_deployment_folder)
    with exclusive_lock(deployed.prod_deployment_folder) as held:
        assert held
        result = run_script("fullprocess.py", "--config", str(deployed.config_file), cwd=deployed.config_file.parent)
    assert result.returncode == 0
    assert "another fullprocess run is in progress" in result.stderr
    assert tree_snapshot(deployed.prod_deployment_folder) == before


@pytest.mark.slow
def test_bad_config_exits_2(tmp_path: Path):
    (tmp_path / "config.json").write_text("{}")
    result = run_script("fullprocess.py", "--config", str(tmp_path / "config.json"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX processes")
def test_killed_before_reports_finishes_them_on_the_next_tick(deployed: Config, api_url: str):
    add_good_data(deployed)
    killed = run_script("fullprocess.py", "--config", str(deployed.config_file), "--api-url", api_url,
                        cwd=deployed.config_file.parent, env={KILL_AT_ENV: "before-reporting"})
    assert killed.returncode == -9
    assert reports(deployed) == []
    assert tick(deployed, api_url) == 0
    assert reports(deployed) == ["apireturns.txt", "confusionmatrix.png", "summary_report.pdf"]
