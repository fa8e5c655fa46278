"""Issue 11, deciding on the right rows: each case as cron meets it, on an input folder that accumulates files.

Every test runs fullprocess.py in its own process from another working directory, as cron does, with
the real reports against a real API (or none, where the API is down on purpose):
1. the drift check takes the new file's rows alone, so flipped labels are not diluted by the old rows;
2. a broken re-export of an ingested file holds the run back (exit 1) and loses no client;
3. a file without labels brings clients to the risk list, and the model is kept ("no labels yet");
4. a client delivered twice is one row, with its latest values; padded ids are the same client;
5. the statistical drift test counts every earlier drift check, even when the API step failed.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import HEADER, client_rows, free_port, run_script, write_config, write_csv
from riskcore.config import Config, load_config
from riskcore.contract import FEATURES, ID_COLUMN, RISK_SCORES, RUN_HISTORY, TARGET
from riskcore.model.calibration import calibrated_probability
from riskcore.ops.history import read_history
from riskcore.release.load import load_deployed_calibrator, load_deployed_model, require_deployment

UNLABELLED_HEADER = HEADER.removesuffix(f",{TARGET}")


def cron_tick(config: Config, api_url: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_script("fullprocess.py", "--config", str(config.config_file), "--api-url", api_url, *extra, cwd=cwd)


def history(config: Config) -> list[dict]:
    return read_history(config.output_model_folder / RUN_HISTORY)


def staying(rows: list[str]) -> list[str]:
    """The ids of the rows whose client has not left: the clients a risk list lists."""
    return [row.split(",", 1)[0] for row in rows if row.endswith(",0")]


def risk_list(config: Config) -> list[dict[str, str]]:
    with open(config.output_model_folder / RISK_SCORES, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def final_rows(config: Config) -> dict[str, list[str]]:
    """finaldata.csv by client id (and a check that each client is there once)."""
    with open(config.final_data_file, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    by_id = {row[ID_COLUMN]: [row[c] for c in (*FEATURES, TARGET)] for row in rows}
    assert len(by_id) == len(rows), "a client appears twice in finaldata.csv"
    return by_id


@pytest.fixture
def cron_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cron-home")


# --- 1. New data is the new file's rows --------------------------------------------------------
@pytest.mark.slow
def test_flipped_labels_in_one_new_file_retrain_even_among_many_good_rows(deployed: Config, api_url: str,
                                                                          cron_dir: Path):
    write_csv(deployed.input_folder / "dataset3.csv", client_rows(1000, seed=5, noise=0.0, prefix="g"))
    first = cron_tick(deployed, api_url, cron_dir)
    assert first.returncode == 0, first.stderr
    before = require_deployment(deployed.prod_deployment_folder).model_version
    write_csv(deployed.input_folder / "dataset4.csv", client_rows(100, seed=6, flip=True, prefix="f"))
    second = cron_tick(deployed, api_url, cron_dir)
    assert second.returncode == 0, second.stderr
    keep, retrain = history(deployed)
    assert keep["decision"] == "keep" and retrain["decision"] == "retrain"
    assert retrain["rows_new"] == 100 and retrain["f1_new_data"] < retrain["baseline"]
    # Scored on everything ingested, the same model would have passed: the old rows dilute the new.
    assert retrain["f1_ingested"] >= retrain["baseline"]
    assert require_deployment(deployed.prod_deployment_folder).model_version != before
    log_line = next(line for line in second.stderr.splitlines() if "drift check on the new data" in line)
    assert "(100 rows, 100 labelled)" in log_line and f"F1 {retrain['f1_ingested']:.4f}" in log_line


# --- 2. No ingested row is lost to a broken copy -------------------------------------------------
@pytest.mark.slow
def test_a_broken_reexport_exits_1_and_keeps_every_earlier_client(deployed: Config, api_url: str, cron_dir: Path):
    write_csv(deployed.input_folder / "dataset3.csv", client_rows(80, seed=5, noise=0.0))
    assert cron_tick(deployed, api_url, cron_dir).returncode == 0
    listed = {row[ID_COLUMN] for row in risk_list(deployed)}
    final = deployed.final_data_file.read_bytes()
    assert set(staying(client_rows(120, seed=1))) <= listed  # the clients of dataset1.csv
    source = deployed.input_folder / "dataset1.csv"
    good = source.read_text()
    source.write_text(good + 'zzzz,10,"1,200",5,0\n')
    broken = cron_tick(deployed, api_url, cron_dir)
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    [sentence] = [line for line in broken.stderr.splitlines() if "Nothing was ingested" in line]
    assert "dataset1.csv has" in sentence and "at row 121" in sentence and "earlier rows stay in use" in sentence
    assert deployed.final_data_file.read_bytes() == final
    assert {row[ID_COLUMN] for row in risk_list(deployed)} == listed
    row = history(deployed)[-1]
    assert row["outcome"] == "failed" and [r["name"] for r in row["files_rejected"]] == ["dataset1.csv"]
    # A good version replaces it: the new client joins, nobody is lost.
    source.write_text(good + "zzzz,10,1200,5,0\n")  # the client has not left: it is listed
    fixed = cron_tick(deployed, api_url, cron_dir)
    assert fixed.returncode == 0, fixed.stderr
    assert {row[ID_COLUMN] for row in risk_list(deployed)} == listed | {"zzzz"}  # nobody lost, nobody added


@pytest.mark.slow
def test_a_rejected_new_file_exits_1_naming_it_while_the_others_go_ahead(deployed: Config, api_url: str,
                                                                         cron_dir: Path):
    (deployed.input_folder / "broken.csv").write_text(f"{HEADER}\nabcd,10,many,5,0\n")
    delivered = client_rows(80, seed=5, noise=0.0)
    write_csv(deployed.input_folder / "dataset3.csv", delivered)
    done = cron_tick(deployed, api_url, cron_dir)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert any('broken.csv has "many" in column "lastyear_activity" at row 1' in line
               for line in done.stderr.splitlines() if "ERROR" in line)
    assert set(staying(delivered)) <= {row[ID_COLUMN] for row in risk_list(deployed)}  # the good file went ahead
    assert [r["name"] for r in history(deployed)[-1]["files_rejected"]] == ["broken.csv"]


# --- 3. Clients before labels --------------------------------------------------------------------
@pytest.mark.slow
def test_an_unlabelled_files_clients_reach_the_risk_list_and_the_model_is_kept(deployed: Config, api_url: str,
                                                                               cron_dir: Path):
    before = require_deployment(deployed.prod_deployment_folder).model_version
    clients = [row.rsplit(",", 1)[0] for row in client_rows(50, seed=7, prefix="u")]
    write_csv(deployed.input_folder / "clients-2026-11.csv", clients, header=UNLABELLED_HEADER)
    done = cron_tick(deployed, api_url, cron_dir)
    assert done.returncode == 0, done.stderr
    [row] = history(deployed)
    assert row["decision"] == "keep" and row["drift_verdict"].startswith("no labels yet")
    assert row["data_drift"]["features"].keys() == set(FEATURES)  # PSI and KS ran on them
    assert require_deployment(deployed.prod_deployment_folder).model_version == before
    assert {line.split(",", 1)[0] for line in clients} <= {r[ID_COLUMN] for r in risk_list(deployed)}
    assert final_rows(deployed)["u070000"][-1] == ""  # no label yet, in finaldata.csv
    # Their labels arrive later: new data like any other, and the clients are labelled now.
    labelled = client_rows(50, seed=7, prefix="u")
    write_csv(deployed.input_folder / "labels-2026-12.csv", labelled)
    assert cron_tick(deployed, api_url, cron_dir).returncode == 0
    later = history(deployed)[-1]
    assert later["f1_new_data"] is not None and later["rows_new"] == 50
    assert final_rows(deployed)["u070000"][-1] == labelled[0].rsplit(",", 1)[1]


# --- 4. A client is one row ----------------------------------------------------------------------
@pytest.mark.slow
def test_a_repeated_client_appears_once_with_its_latest_values(deployed: Config, api_url: str, cron_dir: Path):
    write_csv(deployed.input_folder / "dataset3.csv",
              ["c010003,5,40,900,0", "  c010004 ,7,70,700,0", "c010004,8,80,800,0"])
    done = cron_tick(deployed, api_url, cron_dir)
    assert done.returncode == 0, done.stderr
    final = final_rows(deployed)
    assert final["c010003"] == ["5", "40", "900", "0"] and final["c010004"] == ["8", "80", "800", "0"]
    listed = [row for row in risk_list(deployed) if row[ID_COLUMN] in ("c010003", "c010004")]
    assert sorted(row[ID_COLUMN] for row in listed) == ["c010003", "c010004"]  # once each
    deployment = require_deployment(deployed.prod_deployment_folder)
    model, calibrator = load_deployed_model(deployment), load_deployed_calibrator(deployment)
    for row in listed:  # the probability of the latest values, as the list shows it (calibrated where it can be)
        values = np.array([[float(v) for v in final[row[ID_COLUMN]][:3]]])
        expected = calibrated_probability(calibrator, model.decision_function(values))[0]
        assert float(row["probability"]) == pytest.approx(expected, abs=1e-6)
    record = json.loads((deployed.output_folder / "ingestionrecord.json").read_text())
    assert record["superseded"] == 3  # c010003's and c010004's earlier snapshots, and the padded c010004


# The id rule is the same in the API: padded ids are the client, blanks alone are no id.
@pytest.mark.parametrize("body, content_type", [
    (json.dumps({"records": [{ID_COLUMN: "  c010004 ", "lastmonth_activity": 1, "lastyear_activity": 2,
                              "number_of_employees": 3}]}), "application/json"),
    (f"{UNLABELLED_HEADER}\n  c010004 ,1,2,3\n", "text/csv"),
])
def test_the_api_strips_padded_ids_as_ingestion_does(deployed: Config, body: str, content_type: str):
    import app

    answer = app.create_app(str(deployed.config_file)).test_client().post("/prediction", data=body,
                                                                          content_type=content_type)
    assert answer.status_code == 200, answer.get_json()
    assert [row[ID_COLUMN] for row in answer.get_json()["predictions"]] == ["c010004"]


def test_the_api_refuses_an_id_of_blanks(deployed: Config):
    import app

    record = {ID_COLUMN: " \t ", "lastmonth_activity": 1, "lastyear_activity": 2, "number_of_employees": 3}
    answer = app.create_app(str(deployed.config_file)).test_client().post("/prediction", json={"records": [record]})
    assert answer.status_code == 400 and "non-empty string" in answer.get_json()["message"]


# --- 5. History counts drift checks -------------------------------------------------------------
@pytest.mark.slow
def test_the_parametric_test_starts_after_min_history_drift_checks_with_the_api_down(tmp_path: Path, cron_dir: Path):
    from conftest import deploy_pipeline, make_project

    make_project(tmp_path)
    write_config(tmp_path, automation={"drift_test": "parametric", "min_history": 2})
    config = deploy_pipeline(load_config(tmp_path / "config.json"))
    down = f"http://127.0.0.1:{free_port()}"
    for number in range(3):
        write_csv(config.input_folder / f"delivery{number}.csv", client_rows(60, seed=20 + number, noise=0.0))
        done = cron_tick(config, down, cron_dir)
        assert done.returncode == 1 and "step apicalls failed" in done.stderr
    rows = history(config)
    assert [row["outcome"] for row in rows] == ["failed"] * 3
    assert [row["drift_test"] for row in rows] == ["raw", "raw", "parametric"]
    assert "history has 0" in rows[0]["drift_verdict"] and "history has 1" in rows[1]["drift_verdict"]
    assert "mean - 2*std of history" in rows[2]["drift_verdict"]
