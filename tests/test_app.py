"""Tests for app.py, wsgi.py and riskcore.api: every endpoint, every refusal, hot reload, the OpenAPI
document against real answers, and gunicorn end to end."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from http import HTTPStatus
from pathlib import Path

import flask
import pytest

import app as app_module
import ingestion
import scoring
import training
from conftest import (
    ROOT,
    client_rows,
    deploy_pipeline,
    free_port,
    one_sentence,
    run_script,
    wait_until_up,
    write_config,
    write_csv,
)
from riskcore.api import errors, request_rows, risk_service, served_model
from riskcore.api.file_cache import FileCache
from riskcore.api.page_access import LOGIN_ATTEMPTS_PER_MINUTE
from riskcore.config import Config, load_config
from riskcore.contract import (
    API_RETURNS,
    CURRENT_LINK,
    DIAGNOSTICS_RECORD,
    EXIT_CONFIG,
    FEATURES,
    MAX_VALUE,
    MODEL_FILE,
    RELEASES_DIR,
    SCORE_FILE,
    ConfigError,
)
from riskcore.data import client_csv, validation
from riskcore.data.validation import features_of
from riskcore.files import atomic_write_json
from riskcore.model import calibration, evaluation
from riskcore.model.calibration import PLAIN_ROWS, calibrated_probability, linear_log_odds
from riskcore.release import publish
from riskcore.release.load import Deployment, current_deployment, load_deployed_calibrator, load_deployed_model
from riskcore.report import statistics

RECORD = {"corporation": "abcd", "lastmonth_activity": 10, "lastyear_activity": 120, "number_of_employees": 4}


# --- Fixtures --------------------------------------------------------------------------------
def build_project(root: Path) -> Config:
    """A deployed project, plus a valid CSV outside the data folders and links pointing at it."""
    write_csv(root / "input" / "dataset1.csv", client_rows(120, seed=1))
    write_csv(root / "input" / "dataset2.csv", client_rows(100, seed=2))
    write_csv(root / "test" / "testdata.csv", client_rows(60, seed=3, prefix="t"))
    config = load_config(write_config(root))
    deploy_pipeline(config)
    secret = write_csv(root / "outside" / "secret.csv", client_rows(5, seed=9, prefix="s"))
    (root / "test" / "link.csv").symlink_to(secret)
    (root / "input" / "linkdir").symlink_to(secret.parent, target_is_directory=True)
    (root / "test" / "loop.csv").symlink_to(root / "test" / "loop.csv")
    return config


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Config:
    """One deployed project for the tests that only read it."""
    return build_project(tmp_path_factory.mktemp("api"))


@pytest.fixture
def client(shared):
    return app_module.create_app(shared.config_file).test_client()


@pytest.fixture
def summaries(monkeypatch) -> list[int]:
    """Counts the calls of riskcore.report.statistics.summarize, which GET /summarystats serves."""
    calls: list[int] = []
    original = statistics.summarize

    def counting(frame):
        calls.append(len(frame))
        return original(frame)

    monkeypatch.setattr(statistics, "summarize", counting)
    return calls


def post_json(client, document, **kwargs):
    return client.post("/prediction", data=json.dumps(document), content_type="application/json", **kwargs)


def records(n: int, **changes) -> dict:
    return {"records": [{**RECORD, "corporation": f"c{i:04d}", **changes} for i in range(n)]}


def assert_json_error(response, status: int, *phrases: str, server_paths: tuple[Path, ...] = ()) -> dict:
    """The response is a JSON error with this status, its message holds the phrases, no server path leaks."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["status"] == status and body["error"] and body["message"]
    for phrase in phrases:
        assert phrase in body["message"], body["message"]
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "<html" not in text.lower()
    for path in server_paths:
        assert str(path) not in text
    return body


def deploy_new_model(config: Config, seed: int) -> Deployment:
    """Add a file of new data, retrain, score and deploy: a new model version."""
    write_csv(config.input_folder / f"more{seed}.csv", client_rows(150, seed=seed, flip=True, prefix="n"))
    ingestion.run(config)
    training.run(config)
    scoring.run(config)
    return publish.deploy(config)


# --- Import time and entry points ------------------------------------------------------------
@pytest.mark.slow
def test_importing_app_and_creating_it_loads_nothing_heavy(project):
    """A worker boots without the data libraries: they load with the first request that needs them."""
    code = ("import sys, app; a = app.create_app(sys.argv[1]); "
            "print(sorted(m for m in ('pandas', 'sklearn', 'numpy', 'scipy', 'polars') if m in sys.modules), a.debug)")
    result = subprocess.run([sys.executable, "-c", code, str(project)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "False"]


@pytest.mark.slow
def test_wsgi_reads_the_config_named_by_risk_config(deployed, tmp_path):
    code = "import wsgi; print(wsgi.app.extensions['risk'].config.config_file)"
    env = {**os.environ, "RISK_CONFIG": str(deployed.config_file)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(deployed.config_file)


def test_create_app_with_a_bad_config_fails_with_one_sentence(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as caught:
        app_module.create_app(tmp_path / "missing.json")
    one_sentence(str(caught.value))


def test_main_runs_the_development_server_on_loopback_without_debugger(project, monkeypatch):
    seen = {}
    monkeypatch.setattr(flask.Flask, "run", lambda self, **kwargs: seen.update(kwargs))
    assert app_module.main(["--config", str(project)]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000
    assert seen["debug"] is False and seen["use_reloader"] is False


def test_main_with_a_bad_config_exits_2_without_traceback(tmp_path, capsys):
    assert app_module.main(["--config", str(tmp_path / "nope.json")]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


# --- Endpoints -------------------------------------------------------------------------------
def test_health_names_the_deployed_model(client, shared):
    current = current_deployment(shared.prod_deployment_folder)
    body = client.get("/health").get_json()
    # One release: the model was first deployed when that release was published.
    assert body == {"status": "ok", "model_version": current.model_version,
                    "deployed_at": current.deployed_at, "release": current.release,
                    "release_deployed_at": current.deployed_at, "operator_state": None}


def test_prediction_of_records_returns_one_row_per_record_with_model_version(client, shared):
    response = post_json(client, records(3))
    assert response.status_code == 200
    body = response.get_json()
    current = current_deployment(shared.prod_deployment_folder)
    assert body["model_version"] == current.model_version and body["count"] == 3
    assert [row["corporation"] for row in body["predictions"]] == ["c0000", "c0001", "c0002"]
    for row in body["predictions"]:
        assert row["prediction"] in (0, 1) and 0.0 <= row["probability"] <= 1.0
        assert row["prediction"] == int(row["probability"] > 0.5)
        named = [feature for reason in row["reasons"] for feature in reason["values"]]
        assert sorted(named) == sorted(FEATURES)  # every feature, in one reason each
        assert all(value == RECORD[feature] for reason in row["reasons"] for feature, value in reason["values"].items())


def test_json_answers_are_compact_utf8_in_the_order_built_with_numpy_numbers_and_nan_as_null():
    import numpy as np

    document = {"z": "Zürich", "a": [np.float64(0.1), np.int64(3), np.float32(0.5), 2.5e-05], 1: True,
                "undefined": float("nan")}
    assert errors.json_bytes(document) == '{"z":"Zürich","a":[0.1,3,0.5,0.000025],"1":true,"undefined":null}'.encode()


def test_a_prediction_answer_carries_ids_as_utf8_text_without_a_trailing_newline(client):
    response = post_json(client, {"records": [{**RECORD, "corporation": "Zürich—東京"}]})
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert '"corporation":"Zürich—東京"'.encode() in response.data and response.data.endswith(b"}")


def test_flasks_own_json_is_encoded_as_the_answers_are(client):
    document = {"b": [1.5, None], "a": "é"}
    with client.application.test_request_context():
        assert flask.jsonify(document).data == errors.json_bytes(document) == '{"b":[1.5,null],"a":"é"}'.encode()
        assert client.application.json.dumps(document) == '{"b":[1.5,null],"a":"é"}'


def test_prediction_matches_the_deployed_model_on_the_test_data(client, shared):
    body = post_json(client, {"dataset": "test/testdata.csv"}).get_json()
    frame = evaluation.read_test_data(shared)
    model = load_deployed_model(current_deployment(shared.prod_deployment_folder))
    assert [r["corporation"] for r in body["predictions"]] == frame["corporation"].tolist()
    assert [r["prediction"] for r in body["predictions"]] == evaluation.predict(model, frame).tolist()
    # Exactly equal, not approximately: the API answers with the deployed calibrator on the model's log-odds.
    calibrator = load_deployed_calibrator(current_deployment(shared.prod_deployment_folder))
    expected = calibrated_probability(calibrator, model.decision_function(features_of(frame))).tolist()
    assert [r["probability"] for r in body["predictions"]] == expected


def test_predictions_are_the_served_calibrators_probability_of_the_models_log_odds(deployed, monkeypatch):
    from riskcore.model.calibration import Calibrator

    seen = []
    original = Calibrator.probability

    def spying(self, log_odds):
        answer = original(self, log_odds)
        seen.append((list(log_odds), answer.tolist()))
        return answer

    monkeypatch.setattr(Calibrator, "probability", spying)
    client = app_module.create_app(deployed.config_file).test_client()
    body = post_json(client, records(3, lastmonth_activity=7)).get_json()
    log_odds, attrition = seen[-1]
    model = load_deployed_model(current_deployment(deployed.prod_deployment_folder))
    assert log_odds == model.decision_function([[7.0, 120.0, 4.0]] * 3).tolist()
    assert [row["probability"] for row in body["predictions"]] == attrition
    assert [row["prediction"] for row in body["predictions"]] == model.predict([[7.0, 120.0, 4.0]] * 3).tolist()


def test_a_few_rows_are_scored_by_the_librarys_own_arithmetic_bit_for_bit(shared):
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = load_deployed_model(current_deployment(shared.prod_deployment_folder))
    rng = np.random.default_rng(0)
    rows = np.vstack([rng.integers(0, 10**k, size=(300, 3)) for k in (1, 3, 6, 12)]).astype("float64")
    log_odds = model.decision_function(rows)
    platt = calibration._fit("platt", log_odds, (log_odds + rng.normal(0, 2, len(rows)) > 0).astype(int))
    assert served_model.scored_plainly(model)
    # predict_proba's class-1 column, held within the calibrator's bounds (riskcore.model.calibration) as on every path.
    library = np.clip(platt.estimator.predict_proba(log_odds.reshape(-1, 1))[:, 1], *platt.bounds)
    assert np.array_equal(calibrated_probability(platt, log_odds), library)
    for start in range(0, len(rows), 7):
        few = rows[start:start + rng.integers(1, PLAIN_ROWS)]
        assert np.array_equal(linear_log_odds(model, few), model.decision_function(few))
        mine = calibrated_probability(platt, log_odds[start:start + len(few)])
        assert np.array_equal(mine, library[start:start + len(few)])
    # A model whose decision_function is not the linear formula of the features keeps scikit-learn's own.
    other = make_pipeline(StandardScaler(), LogisticRegression()).fit(rows[:100], (rows[:100, 0] > 4).astype(int))
    assert not served_model.scored_plainly(other)


def test_whole_floats_and_the_largest_value_are_accepted(client):
    document = {"records": [{**RECORD, "lastmonth_activity": 5.0, "number_of_employees": MAX_VALUE}]}
    assert post_json(client, document).status_code == 200


def test_an_exited_field_is_accepted_and_ignored(client):
    with_label = post_json(client, {"records": [{**RECORD, "exited": 1}]}).get_json()
    without = post_json(client, {"records": [RECORD]}).get_json()
    assert with_label["predictions"] == without["predictions"]


def no_dataframes(monkeypatch) -> None:
    """Make building a pandas or polars frame (eager or lazy), by any of their constructors, an AssertionError."""
    import pandas as pd
    import polars as pl

    def no_frames(*args, **kwargs):
        raise AssertionError("the JSON records path must not build a DataFrame")

    for owner, names in ((pd.DataFrame, ("__init__", "_from_mgr")), (pl.DataFrame, ("__init__", "_from_pydf")),
                         (pl.LazyFrame, ("__init__", "_from_pyldf"))):
        for name in names:
            monkeypatch.setattr(owner, name, no_frames)
    for module, name in ((client_csv, "parse_csv_bytes"), (client_csv, "validate_frame"), (validation, "features_of")):
        monkeypatch.setattr(module, name, no_frames)


def test_the_dataframe_block_stops_every_way_of_building_one(monkeypatch):
    import io

    import numpy as np
    import pandas as pd
    import polars as pl

    no_dataframes(monkeypatch)
    for build in (lambda: pd.DataFrame({"a": [1]}), lambda: pd.read_csv(io.StringIO("a\n1\n")),
                  lambda: pd.Series([1]).to_frame(), lambda: pl.DataFrame({"a": [1]}),
                  lambda: pl.read_csv(io.BytesIO(b"a\n1\n")), lambda: pl.from_dicts([{"a": 1}]),
                  lambda: pl.from_numpy(np.zeros((2, 2))), lambda: pl.LazyFrame({"a": [1]}),
                  lambda: pl.scan_csv(io.BytesIO(b"a\n1\n")).collect()):
        with pytest.raises(AssertionError, match="must not build a DataFrame"):
            build()


def test_json_records_are_predicted_without_building_a_dataframe(client, monkeypatch):
    client.get("/health")  # the model is loaded before the block: only the request's own rows are at stake
    no_dataframes(monkeypatch)
    response = post_json(client, records(50))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["count"] == 50


@pytest.mark.parametrize("location", ["test/testdata.csv", "./test/testdata.csv", "ingested/finaldata.csv",
                                      "input/dataset1.csv", "test//testdata.csv"])
def test_prediction_of_a_dataset_inside_the_data_folders(client, shared, location):
    import csv

    response = post_json(client, {"dataset": location})
    assert response.status_code == 200, response.get_json()
    with open(shared.config_file.parent / location, newline="", encoding="utf-8") as handle:
        ids = [row["corporation"] for row in csv.DictReader(handle)]
    assert response.get_json()["count"] == len(ids)  # one prediction per row of that file, in its order
    assert [row["corporation"] for row in response.get_json()["predictions"]] == ids


def test_prediction_of_a_dataset_named_in_the_query_string(client):
    response = client.post("/prediction?dataset=test/testdata.csv")
    assert response.status_code == 200 and response.get_json()["count"] == 60


def test_prediction_of_a_csv_body_and_of_a_multipart_upload(client, shared):
    data = shared.test_data_file.read_bytes()
    as_body = client.post("/prediction", data=data, content_type="text/csv; charset=utf-8")
    import io

    upload = client.post("/prediction", data={"file": (io.BytesIO(data), "any.csv")},
                         content_type="multipart/form-data")
    by_location = post_json(client, {"dataset": "test/testdata.csv"})
    assert as_body.status_code == upload.status_code == 200
    assert as_body.get_json() == upload.get_json() == by_location.get_json()


def test_csv_body_without_the_label_column_is_accepted(client):
    data = "corporation,lastmonth_activity,lastyear_activity,number_of_employees\nabcd,1,2,3\n"
    response = client.post("/prediction", data=data, content_type="text/csv")
    assert response.status_code == 200 and response.get_json()["predictions"][0]["corporation"] == "abcd"


def test_scoring_reports_the_deployed_f1_on_the_test_data(client, shared):
    body = client.get("/scoring").get_json()
    current = current_deployment(shared.prod_deployment_folder)
    assert body["f1"] == pytest.approx(evaluation.read_score(current.path(SCORE_FILE)))
    assert body["model_version"] == current.model_version and body["rows"] == 60


def test_scoring_is_computed_once_per_release_and_writes_nothing(deployed, monkeypatch):
    from conftest import tree_snapshot

    calls = []
    original = evaluation.score_model

    def counting(*args, **kwargs):  # the app's calls never pass a score_path; scoring.run's do
        if len(args) == 2 and not kwargs:
            calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluation, "score_model", counting)
    client = app_module.create_app(deployed.config_file).test_client()
    root = deployed.config_file.parent
    before = tree_snapshot(root)
    first = [client.get("/scoring").get_json() for _ in range(3)]
    assert len(calls) == 1 and first[0] == first[2]
    assert tree_snapshot(root) == before
    new = deploy_new_model(deployed, seed=7)
    assert client.get("/scoring").get_json()["model_version"] == new.model_version
    assert len(calls) == 2


def test_summarystats_is_cached_until_finaldata_changes(deployed, summaries):
    client = app_module.create_app(deployed.config_file).test_client()
    first = client.get("/summarystats")
    assert first.status_code == 200
    body = first.get_json()
    assert body["data"] == "finaldata.csv"
    assert {(row["column"], row["statistic"]) for row in body["summary"]} == {
        (c, s) for c in FEATURES for s in statistics.STATISTICS}
    assert client.get("/summarystats").get_json() == body
    assert len(summaries) == 1
    write_csv(deployed.input_folder / "extra.csv", client_rows(40, seed=11, prefix="x"))
    ingestion.run(deployed)
    changed = client.get("/summarystats").get_json()
    assert len(summaries) == 2 and changed["summary"] != body["summary"]


def test_the_file_cache_rebuilds_an_entry_when_a_file_changes_and_keeps_the_newest_keys(tmp_path):
    cache, path, builds = FileCache(), tmp_path / "record.json", []

    def build(found):
        builds.append(found)
        return path.read_text() if found[0] is not None else None

    path.write_text("1")
    assert cache.get("record", (path,), build) == "1" and cache.get("record", (path,), build) == "1"
    assert len(builds) == 1
    newer = tmp_path / "newer.json"
    newer.write_text("2")  # the same size, and maybe the same mtime: replaced by a rename, it is another file
    os.replace(newer, path)
    assert cache.get("record", (path,), build) == "2" and len(builds) == 2
    path.unlink()
    assert cache.get("record", (path,), build) is None and builds[-1] == (None,)
    made = []
    for key in ("a", "b", "c", "c", "b"):
        cache.get("per client", (), lambda _, key=key: made.append(key) or key.upper(), key=key, keep=2)
    assert made == ["a", "b", "c"]  # "c" and "b" kept
    assert cache.get("per client", (), lambda _: made.append("a") or "A", key="a", keep=2) == "A"
    assert made == ["a", "b", "c", "a"]  # "a" was dropped when "c" came: the two newest keys are kept


def test_summarystats_serves_what_diagnostics_computes(shared):
    """Both against figures computed here with the standard library from finaldata.csv itself."""
    import csv
    import statistics as stdlib_statistics

    import diagnostics

    with shared.final_data_file.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = []
    for column in FEATURES:
        values = [int(row[column]) for row in rows]
        figures = {"mean": stdlib_statistics.fmean(values), "median": stdlib_statistics.median(values),
                   "std": stdlib_statistics.stdev(values), "count": len(values), "min": min(values),
                   "max": max(values)}
        expected.extend({"column": column, "statistic": name, "value": value} for name, value in figures.items())
    assert len(rows) == 220

    def approx(summary):
        return [{**item, "value": pytest.approx(item["value"], rel=1e-12)} for item in summary]

    served = app_module.create_app(shared.config_file).test_client().get("/summarystats").get_json()["summary"]
    assert served == approx(expected)
    assert diagnostics.dataframe_summary(shared) == approx(expected)


def test_summarystats_without_ingested_data_is_503(project):
    client = app_module.create_app(project).test_client()
    assert_json_error(client.get("/summarystats"), 503, "ingestion.py")


def test_summarystats_of_unreadable_data_is_503_without_paths(deployed):
    deployed.final_data_file.write_text("not,a,valid\nfile\n", encoding="utf-8")
    client = app_module.create_app(deployed.config_file).test_client()
    assert_json_error(client.get("/summarystats"), 503, "finaldata.csv", server_paths=(deployed.output_folder,))


def test_diagnostics_serves_the_latest_record_and_notices_a_new_one(deployed):
    client = app_module.create_app(deployed.config_file).test_client()
    assert_json_error(client.get("/diagnostics"), 503, "diagnostics.py")
    record = {"generated_at": "2026-01-01T00:00:00Z", "model_version": "v1", "summary": [],
              "missing": {"lastmonth_activity": 0.0}, "timings": {"ingestion": 0.5},
              "dependencies": [{"name": "pandas", "installed": "3.1.1"}]}
    path = deployed.output_model_folder / DIAGNOSTICS_RECORD
    atomic_write_json(path, record)
    assert client.get("/diagnostics").get_json() == record
    atomic_write_json(path, {**record, "generated_at": "2026-01-02T00:00:00Z"})
    assert client.get("/diagnostics").get_json()["generated_at"] == "2026-01-02T00:00:00Z"
    atomic_write_json(path, {**record, "test_data": str(deployed.test_data_file)})
    assert client.get("/diagnostics").get_json()["test_data"] == "testdata.csv"
    path.write_text("{broken", encoding="utf-8")
    assert_json_error(client.get("/diagnostics"), 503, "unreadable", server_paths=(path.parent,))


def test_nothing_deployed_gives_503_and_health_stays_up(project):
    client = app_module.create_app(project).test_client()
    assert_json_error(post_json(client, records(1)), 503, "No model is deployed")
    assert_json_error(client.get("/scoring"), 503, "No model is deployed")
    health = client.get("/health")
    assert health.status_code == 200 and health.get_json()["status"] == "no_model"


def test_scoring_without_test_data_is_503(deployed):
    deployed.test_data_file.unlink()
    client = app_module.create_app(deployed.config_file).test_client()
    assert_json_error(client.get("/scoring"), 503, "testdata.csv", server_paths=(deployed.test_data_folder,))


# --- The deployed model: loaded once, hot reload, tampering ----------------------------------
def test_the_model_is_loaded_once_per_release(deployed, monkeypatch):
    loads = []
    original = load_deployed_model
    monkeypatch.setattr(served_model, "load_deployed_model", lambda d: loads.append(d.release) or original(d))
    client = app_module.create_app(deployed.config_file).test_client()
    for _ in range(5):
        assert post_json(client, records(2)).status_code == 200
        assert client.get("/health").status_code == 200
    assert len(loads) == 1
    new = deploy_new_model(deployed, seed=7)
    for _ in range(5):
        assert post_json(client, records(2)).status_code == 200
        assert client.get("/health").status_code == 200
    assert loads == [loads[0], new.release] and loads[0] != new.release


def test_a_new_deployment_is_served_on_the_next_request_without_restart(deployed):
    client = app_module.create_app(deployed.config_file).test_client()
    first = post_json(client, records(1)).get_json()["model_version"]
    new = deploy_new_model(deployed, seed=5)
    assert new.model_version != first
    assert post_json(client, records(1)).get_json()["model_version"] == new.model_version
    assert client.get("/health").get_json()["release"] == new.release
    back = publish.rollback(deployed.prod_deployment_folder)
    assert back.model_version == first
    assert post_json(client, records(1)).get_json()["model_version"] == first


def test_a_tampered_deployment_never_replaces_the_served_model(deployed, tmp_path, caplog):
    client = app_module.create_app(deployed.config_file).test_client()
    served = post_json(client, records(1)).get_json()["model_version"]
    new = deploy_new_model(deployed, seed=5)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    new.path(MODEL_FILE).write_bytes(pickle.dumps(Evil()))
    assert post_json(client, records(1)).get_json()["model_version"] == served
    assert not marker.exists()
    assert "does not match its recorded sha256" in caplog.text
    health = client.get("/health").get_json()
    assert health["model_version"] == served and new.release in health["warning"]
    good = deploy_new_model(deployed, seed=6)
    assert post_json(client, records(1)).get_json()["model_version"] == good.model_version
    assert "warning" not in client.get("/health").get_json()


def test_a_partial_release_or_a_broken_pointer_keeps_the_served_model(deployed):
    client = app_module.create_app(deployed.config_file).test_client()
    served = post_json(client, records(1)).get_json()["model_version"]
    prod = deployed.prod_deployment_folder
    partial = prod / RELEASES_DIR / "000099-partial"
    partial.mkdir()
    shutil.copy(current_deployment(prod).path(MODEL_FILE), partial)
    publish.point_current_at(prod, partial)
    assert post_json(client, records(1)).get_json()["model_version"] == served
    (prod / CURRENT_LINK).unlink()
    (prod / CURRENT_LINK).mkdir()
    assert post_json(client, records(1)).get_json()["model_version"] == served


def test_a_failed_first_load_is_503_without_paths(deployed):
    current = current_deployment(deployed.prod_deployment_folder)
    current.path(MODEL_FILE).write_bytes(b"not a pickle")
    client = app_module.create_app(deployed.config_file).test_client()
    assert_json_error(post_json(client, records(1)), 503, "could not be loaded",
                      server_paths=(deployed.prod_deployment_folder,))
    assert client.get("/health").get_json()["status"] == "no_model"


def test_a_failed_release_is_retried_after_the_backoff(deployed, monkeypatch):
    client = app_module.create_app(deployed.config_file).test_client()
    served = post_json(client, records(1)).get_json()["model_version"]
    new = deploy_new_model(deployed, seed=5)
    model_bytes = new.path(MODEL_FILE).read_bytes()
    new.path(MODEL_FILE).write_bytes(b"partial")
    assert post_json(client, records(1)).get_json()["model_version"] == served
    new.path(MODEL_FILE).write_bytes(model_bytes)
    assert post_json(client, records(1)).get_json()["model_version"] == served  # within the backoff
    monkeypatch.setattr(served_model, "RETRY_FAILED_RELEASE_SECONDS", 0.0)
    assert post_json(client, records(1)).get_json()["model_version"] == new.model_version


# --- Refusals --------------------------------------------------------------------------------
@pytest.mark.parametrize(("location", "status", "phrase"), [
    ("../input/dataset1.csv", 403, '".."'),
    ("test/../../outside/secret.csv", 403, '".."'),
    ("test/../test/testdata.csv", 403, '".."'),
    ("/etc/passwd", 403, "absolute"),
    ("//etc/passwd", 403, "absolute"),
    ("~/secret.csv", 403, "absolute"),
    ("%2e%2e/outside/secret.csv", 400, "percent-encoding"),
    ("test/%2e%2e/%2e%2e/outside/secret.csv", 400, "percent-encoding"),
    ("%252e%252e/outside/secret.csv", 400, "percent-encoding"),
    ("test/..%2f..%2foutside/secret.csv", 400, "percent-encoding"),
    ("..\\outside\\secret.csv", 400, "backslashes"),
    ("test/testdata.csv\x00.txt", 400, "NUL"),
    ("outside/secret.csv", 403, "inside the input, ingested or test"),
    ("config.json", 403, "inside the input, ingested or test"),
    ("models/trainedmodel.pkl", 403, "inside the input, ingested or test"),
    ("prod/trainedmodel.pkl", 403, "inside the input, ingested or test"),
    ("test/link.csv", 403, "inside the input, ingested or test"),
    ("input/linkdir/secret.csv", 403, "inside the input, ingested or test"),
    ("nowhere/missing.csv", 403, "inside the input, ingested or test"),
    ("test/loop.csv", 403, "inside the input, ingested or test"),
    ("test/missing.csv", 404, "No dataset file"),
    ("test", 404, "No dataset file"),
    ("", 400, "empty"),
    ("x" * 2000, 400, "longer than"),
])
def test_dataset_locations_outside_the_data_folders_are_refused(client, shared, location, status, phrase):
    body = assert_json_error(post_json(client, {"dataset": location}), status, phrase,
                             server_paths=(shared.config_file.parent,))
    assert body["field"] == "dataset"


def test_an_absolute_path_is_refused_even_inside_the_data_folders(client, shared):
    assert_json_error(post_json(client, {"dataset": str(shared.test_data_file)}), 403, "absolute",
                      server_paths=(shared.config_file.parent,))


@pytest.mark.parametrize(("query", "status"), [
    ("dataset=..%2Foutside%2Fsecret.csv", 403),
    ("dataset=%2e%2e/%2e%2e/etc/passwd", 403),
    ("dataset=%252e%252e%252fetc%252fpasswd", 400),
    ("dataset=%2Fetc%2Fpasswd", 403),
    ("dataset=test%2Ftestdata.csv%00", 400),
    ("dataset=test/link.csv", 403),
])
def test_encoded_dataset_locations_in_the_query_string_are_refused(client, shared, query, status):
    assert_json_error(client.post(f"/prediction?{query}"), status, server_paths=(shared.config_file.parent,))


def test_a_dataset_that_breaks_the_contract_is_400_naming_the_file(client, shared):
    write_csv(shared.input_folder / "bad.csv", ["abcd,1,x,3,0"])
    try:
        assert_json_error(post_json(client, {"dataset": "input/bad.csv"}), 400, "bad.csv", "lastyear_activity")
    finally:
        (shared.input_folder / "bad.csv").unlink()


@pytest.mark.parametrize(("body", "phrase"), [
    (b"", "empty"),
    (b"   ", "empty"),
    (b'{"records": [', "not valid JSON"),
    (b"{'records': []}", "not valid JSON"),
    (b"\xff\xfe\xfa", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    (b'{"records": [{"lastmonth_activity": 1' + b"1" * 5000 + b"}]}", "not valid JSON"),
    (b"null", "must be an object"),
    (b"[]", "must be an object"),
    (b'"records"', "must be an object"),
    (b"{}", "exactly one of"),
    (b'{"rows": []}', 'Unknown field "rows"'),
    (b'{"records": {}}', '"records" must be a list'),
    (b'{"dataset": 5}', '"dataset" must be a string, not 5'),
    (b'{"dataset": ["test/testdata.csv"]}', '"dataset" must be a string, not a list'),
    (b'{"dataset": null}', '"dataset" must be a string, not null'),
    (b'{"records": "abc"}', '"records" must be a list'),
    (b'{"records": []}', '"records" is empty'),
    (b'{"records": [1]}', "records[0] must be an object"),
    (b'{"records": [null]}', "records[0] must be an object"),
])
def test_malformed_json_bodies_are_400(client, body, phrase):
    assert_json_error(client.post("/prediction", data=body, content_type="application/json"), 400, phrase)


@pytest.mark.parametrize("encode", [lambda text: b"\xef\xbb\xbf" + text.encode(), lambda text: text.encode("utf-16")])
def test_bodies_only_the_standard_librarys_json_reads_are_read_as_before(client, encode):
    """orjson reads the bodies first; what it refuses (here a BOM, UTF-16) json.loads reads as before."""
    plain = post_json(client, {"records": [RECORD]})
    answer = client.post("/prediction", data=encode(json.dumps({"records": [RECORD]})),
                         content_type="application/json")
    assert answer.status_code == 200 and answer.get_json() == plain.get_json()


def test_a_nan_orjson_refuses_is_still_named_by_the_record_checks(client):
    body = json.dumps({"records": [RECORD]}).replace('"abcd"', '"abcd", "annual_revenue": NaN').encode()
    answer = client.post("/prediction", data=body, content_type="application/json")
    assert_json_error(answer, 400, "records[0].annual_revenue", "not NaN")


def test_both_records_and_dataset_is_400(client):
    body = {"records": [RECORD], "dataset": "test/testdata.csv"}
    assert_json_error(post_json(client, body), 400, "exactly one of")


@pytest.mark.parametrize(("value", "shown"), [
    ("true", "not true"), ("false", "not false"), ('"12"', "not a string"), ("null", "not null"),
    ("[1]", "not a list"), ('{"a": 1}', "not an object"), ("5.5", "not 5.5"), ("-1", "not -1"),
    ("-0.5", "not -0.5"), ("NaN", "not NaN"), ("Infinity", "not Infinity"), ("-Infinity", "not -Infinity"),
    ("1e300", "above"), (str(MAX_VALUE + 1), "above"), ("1" * 40, "above"),
])
def test_bad_feature_values_are_400_naming_the_record_and_field(client, value, shown):
    good = json.dumps(RECORD)
    bad = good.replace('"lastyear_activity": 120', f'"lastyear_activity": {value}')
    body = f'{{"records": [{good}, {bad}]}}'.encode()
    error = assert_json_error(client.post("/prediction", data=body, content_type="application/json"), 400,
                              "records[1].lastyear_activity", shown)
    assert error["field"] == "records[1].lastyear_activity"


@pytest.mark.parametrize(("change", "field", "phrase"), [
    ({"corporation": 1234}, "records[0].corporation", "non-empty string"),
    ({"corporation": ""}, "records[0].corporation", "non-empty string"),
    ({"corporation": "   "}, "records[0].corporation", "blank"),
    ({"corporation": None}, "records[0].corporation", "not null"),
    ({"exited": 2}, "records[0].exited", "0 or 1"),
    ({"exited": "yes"}, "records[0].exited", "not a string"),
    ({"risk": 1}, "records[0].risk", 'unknown field "risk"'),
    ({"Lastmonth_Activity": 1}, "records[0].Lastmonth_Activity", "unknown field"),
])
def test_bad_record_fields_are_400_naming_the_field(client, change, field, phrase):
    error = assert_json_error(post_json(client, {"records": [{**RECORD, **change}]}), 400, phrase)
    assert error["field"] == field


@pytest.mark.parametrize("missing", ["corporation", "lastmonth_activity", "lastyear_activity",
                                     "number_of_employees"])
def test_a_missing_field_is_400_naming_it(client, missing):
    record = {k: v for k, v in RECORD.items() if k != missing}
    body = {"records": [RECORD, RECORD, record]}
    error = assert_json_error(post_json(client, body), 400, f'records[2] is missing the field "{missing}"')
    assert error["field"] == f"records[2].{missing}"


@pytest.mark.parametrize(("data", "phrase"), [
    (b"", "empty"),
    (b"corporation,lastmonth_activity\nabcd,1\n", 'missing the column "lastyear_activity"'),
    (b"corporation;lastmonth_activity;lastyear_activity;number_of_employees\n", "';'"),
    (b"corporation,lastmonth_activity,lastyear_activity,number_of_employees\nabcd,1,NaN,3\n",
     "lastyear_activity"),
    (b"corporation,lastmonth_activity,lastyear_activity,number_of_employees\nabcd,1,-2,3\n", "negative"),
    (b"corporation,lastmonth_activity,lastyear_activity,number_of_employees\n", "no rows"),
    (b"\x1f\x8b\x08\x00", "gzip"),
])
def test_bad_csv_bodies_are_400(client, data, phrase):
    assert_json_error(client.post("/prediction", data=data, content_type="text/csv"), 400, phrase)


@pytest.mark.parametrize("names", [("file", "file"), ("file", "other")])
def test_a_multipart_request_with_two_files_is_400_not_half_read(client, names):
    """Reading the first file alone would lose the second's rows without a word."""
    import io

    header = "corporation,lastmonth_activity,lastyear_activity,number_of_employees"
    files = [(io.BytesIO(f"{header}\nc{n},1,2,3\n".encode()), f"part{n}.csv") for n in range(2)]
    data = {"file": files} if names == ("file", "file") else dict(zip(names, files, strict=True))
    response = client.post("/prediction", data=data, content_type="multipart/form-data")
    assert response.status_code == 400 and "carries 2" in response.get_json()["message"]


def test_a_multipart_request_without_a_file_is_400(client):
    response = client.post("/prediction", data={"note": "hello"}, content_type="multipart/form-data")
    assert_json_error(response, 400, '"file"')


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_other_content_types_are_415(client, content_type):
    response = client.post("/prediction", data=b"records", content_type=content_type)
    assert_json_error(response, 415, "application/json")


def test_an_unknown_query_parameter_is_400(client):
    assert_json_error(post_json(client, records(1), query_string={"filename": "x"}), 400, '"filename"')


def test_an_oversized_body_is_413(client):
    body = b'{"records": [' + b" " * (request_rows.MAX_CONTENT_LENGTH + 1) + b"]}"
    assert_json_error(client.post("/prediction", data=body, content_type="application/json"), 413, "16 MB")


def test_too_many_records_is_413_whatever_the_form(client, shared, monkeypatch):
    monkeypatch.setattr(request_rows, "MAX_RECORDS", 10)
    assert_json_error(post_json(client, records(11)), 413, "11 records", "10")
    assert post_json(client, records(10)).status_code == 200
    assert_json_error(post_json(client, {"dataset": "test/testdata.csv"}), 413, "60 rows")


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/prediction"), ("post", "/scoring"), ("delete", "/summarystats"), ("put", "/diagnostics"),
    ("post", "/health"), ("post", "/openapi.json"),
])
def test_a_wrong_method_is_405_json_with_allow(client, method, path):
    response = getattr(client, method)(path)
    assert_json_error(response, 405)
    assert response.headers["Allow"]


@pytest.mark.parametrize("path", ["/nope", "/prediction/extra", "/static/x.css", "/%2e%2e/etc/passwd"])
def test_an_unknown_path_is_404_json(client, path):
    assert_json_error(client.get(path), 404)


def test_an_unexpected_error_is_a_500_json_without_trace(client, monkeypatch):
    def boom(self):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(risk_service.RiskService, "diagnostics", boom)
    body = assert_json_error(client.get("/diagnostics"), 500)
    assert "secret detail" not in body["message"]


# --- API key ---------------------------------------------------------------------------------
@pytest.fixture
def keyed_client(shared, monkeypatch):
    monkeypatch.setenv("RISK_API_KEY", "s3cret-key-for-tests")
    return app_module.create_app(shared.config_file).test_client()


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/prediction"), ("get", "/scoring"), ("get", "/summarystats"), ("get", "/diagnostics"),
    ("get", "/openapi.json"), ("get", "/metrics"), ("get", "/nope"),
])
@pytest.mark.parametrize("key", [None, "wrong", "s3cret-key-for-testsX", "", "S3CRET-KEY-FOR-TESTS", "sécret"])
def test_without_the_right_key_every_endpoint_but_health_is_401(keyed_client, method, path, key):
    headers = {} if key is None else {"X-API-Key": key}
    response = getattr(keyed_client, method)(path, headers=headers)
    assert_json_error(response, 401, "X-API-Key")
    assert "s3cret" not in response.get_data(as_text=True)
    assert response.headers["WWW-Authenticate"]


def test_with_the_right_key_endpoints_answer_and_health_needs_none(keyed_client):
    headers = {"X-API-Key": "s3cret-key-for-tests"}
    assert post_json(keyed_client, records(1), headers=headers).status_code == 200
    assert keyed_client.get("/scoring", headers=headers).status_code == 200
    assert keyed_client.get("/health").status_code == 200
    assert keyed_client.get("/openapi.json", headers=headers).get_json()["security"] == [{"ApiKey": []}]


def test_wrong_keys_in_the_header_are_limited_per_address_as_the_key_form_is(keyed_client):
    """Past LOGIN_ATTEMPTS_PER_MINUTE wrong keys from one address in a minute, every key from it, the right one too,
    is a 429 in JSON with Retry-After until the minute is over; a request without a key is no try, and another
    address is not limited."""
    from riskcore.api.page_access import LOGIN_ATTEMPTS_PER_MINUTE

    limit = keyed_client.application.extensions["risk_page_limits"]["login"]
    now = [1000.0]
    limit.clock = lambda: now[0]
    right = {"X-API-Key": "s3cret-key-for-tests"}
    for _ in range(LOGIN_ATTEMPTS_PER_MINUTE + 2):
        assert keyed_client.get("/scoring").status_code == 401  # no key sent: nothing guessed
    for n in range(LOGIN_ATTEMPTS_PER_MINUTE):
        assert keyed_client.get("/scoring", headers={"X-API-Key": f"wrong-{n}"}).status_code == 401
        now[0] += 1
    for headers in ({"X-API-Key": "wrong-again"}, right):
        refused = keyed_client.get("/scoring", headers=headers)
        body = assert_json_error(refused, 429, "Too many wrong API keys", f"at most {LOGIN_ATTEMPTS_PER_MINUTE}")
        assert body["field"] == "X-API-Key" and 1 <= int(refused.headers["Retry-After"]) <= 60
        assert str(int(refused.headers["Retry-After"])) in body["message"]
    assert keyed_client.get("/scoring", headers=right, environ_base={"REMOTE_ADDR": "127.0.0.2"}).status_code == 200
    assert keyed_client.get("/health").status_code == 200
    now[0] += 60 - LOGIN_ATTEMPTS_PER_MINUTE + 1  # the first wrong key is a minute old
    assert keyed_client.get("/scoring", headers=right).status_code == 200


def test_under_gunicorn_the_header_and_the_key_form_share_one_limit_across_the_workers(shared, tmp_path,
                                                                                       monkeypatch):
    """Two apps given one attempts file, as gunicorn.conf.py gives every worker: wrong keys in the header sent to
    either count once in all, and the key form's tries count with them."""
    from riskcore.api import form_guard
    from riskcore.api.page_access import LOGIN_ATTEMPTS_PER_MINUTE

    monkeypatch.setenv(form_guard.ATTEMPTS_ENV, str(tmp_path / "attempts.sqlite"))
    monkeypatch.setenv("RISK_API_KEY", "s3cret-key-for-tests")
    workers = [app_module.create_app(shared.config_file).test_client() for _ in range(2)]
    assert workers[0].post("/login", data={"key": "wrong"}).status_code == 200  # one try by the form
    answers = [workers[n % 2].get("/scoring", headers={"X-API-Key": f"wrong-{n}"}).status_code
               for n in range(LOGIN_ATTEMPTS_PER_MINUTE)]
    assert answers == [401] * (LOGIN_ATTEMPTS_PER_MINUTE - 1) + [429]
    for worker in workers:
        assert worker.get("/scoring", headers={"X-API-Key": "s3cret-key-for-tests"}).status_code == 429


def test_openapi_says_every_endpoint_that_takes_the_key_may_answer_429(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    keyed = [(path, method) for path, item in paths.items() for method, operation in item.items()
             if "401" in operation["responses"]]
    assert len(keyed) >= 10 and ("/health", "get") not in keyed
    for path, method in keyed:
        assert "429" in paths[path][method]["responses"], (path, method)


def test_an_empty_risk_api_key_means_no_key(shared, monkeypatch):
    monkeypatch.setenv("RISK_API_KEY", "")
    client = app_module.create_app(shared.config_file).test_client()
    assert client.get("/scoring").status_code == 200


# --- OpenAPI ---------------------------------------------------------------------------------
def test_openapi_describes_exactly_the_routes_and_methods(client):
    application = client.application
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    routes: dict[str, set[str]] = {}
    for rule in application.url_map.iter_rules():
        if rule.endpoint.startswith("pages."):
            continue  # the HTML pages (riskcore.api.pages) are not part of the JSON API
        template = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)  # /risk/<path:client_id> -> /risk/{client_id}
        routes.setdefault(template, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    described = {path: set(operations) for path, operations in document["paths"].items()}
    assert described == routes
    for path, operations in document["paths"].items():
        for operation in operations.values():
            assert "200" in operation["responses"], path
    assert "security" not in document


# Real answers of every endpoint, each documented status at least once: (site, method, path, request, status).
# "open" is a deployed project with a diagnostics record, "keyed" the same with an API key required,
# "empty" a project where nothing has been ingested or deployed yet. A method or path the document does
# not list (405, 404) is answered with its Error schema. GUESSER: the right key, from an address that sent
# too many wrong ones (the `answers` fixture sends them).
GUESSER = {"headers": {"X-API-Key": "s3cret-key-for-tests"}, "environ_base": {"REMOTE_ADDR": "192.0.2.9"}}
CSV_BODY = b"corporation,lastmonth_activity,lastyear_activity,number_of_employees\nabcd,1,2,3\n"
EXCHANGES = [
    ("open", "POST", "/prediction", {"json": {"records": [RECORD, {**RECORD, "exited": 1}]}}, 200),
    ("open", "POST", "/prediction", {"json": {"dataset": "test/testdata.csv"}}, 200),
    ("open", "POST", "/prediction?dataset=test/testdata.csv", {}, 200),
    ("open", "POST", "/prediction", {"data": CSV_BODY, "content_type": "text/csv"}, 200),
    ("open", "POST", "/prediction", {"json": {"records": []}}, 400),
    ("open", "POST", "/prediction", {"json": {"records": [{**RECORD, "lastyear_activity": -1}]}}, 400),
    ("open", "POST", "/prediction", {"json": {"dataset": "../outside/secret.csv"}}, 403),
    ("open", "POST", "/prediction", {"json": {"dataset": "test/missing.csv"}}, 404),
    ("open", "GET", "/prediction", {}, 405),
    ("open", "POST", "/prediction", {"data": b" " * (request_rows.MAX_CONTENT_LENGTH + 1),
                                     "content_type": "application/json"}, 413),
    ("open", "POST", "/prediction", {"data": b"records", "content_type": "text/plain"}, 415),
    ("open", "GET", "/risk", {}, 200),
    ("open", "GET", "/risk?top=5&offset=3", {}, 200),
    ("open", "GET", "/risk?limit=5&offset=3", {}, 200),
    ("open", "GET", "/risk?q=c0&limit=3", {}, 200),
    ("open", "GET", "/risk/c010000", {}, 200),
    ("open", "GET", "/risk/no-such-client", {}, 404),
    ("open", "GET", "/risk?limit=2&top=2", {}, 400),
    ("open", "GET", "/risk?top=-1", {}, 400),
    ("open", "GET", "/risk?top=abc", {}, 400),
    ("open", "GET", "/risk?offset=99999999999999999999", {}, 400),
    ("open", "GET", "/risk?offset=100000", {}, 400),
    ("open", "POST", "/risk", {}, 405),
    ("open", "GET", "/scoring", {}, 200),
    ("open", "POST", "/scoring", {}, 405),
    ("open", "GET", "/summarystats", {}, 200),
    ("open", "DELETE", "/summarystats", {}, 405),
    ("open", "GET", "/diagnostics", {}, 200),
    ("open", "PUT", "/diagnostics", {}, 405),
    ("open", "GET", "/history", {}, 200),
    ("open", "GET", "/history?limit=2&offset=1", {}, 200),
    ("open", "GET", "/history?quantiles=1", {}, 200),
    ("open", "GET", "/history?quantiles=2", {}, 400),
    ("open", "GET", "/history?top=5", {}, 400),
    ("open", "GET", "/history?limit=0", {}, 400),
    ("open", "GET", "/history?offset=-1", {}, 400),
    ("open", "POST", "/history", {}, 405),
    ("open", "GET", "/calls", {}, 200),
    ("open", "POST", "/calls", {"json": {"corporation": "abcd", "outcome": "at_risk", "by": "Ann"}}, 200),
    ("open", "POST", "/calls", {"json": [{"corporation": "abcd", "when": "2026-01-05", "outcome": "stays",
                                          "note": "renewing", "by": "Ann"}]}, 200),
    ("open", "GET", "/calls?limit=1&offset=1", {}, 200),
    ("open", "GET", "/calls?corporation=abcd", {}, 200),
    ("open", "GET", "/calls?limit=0", {}, 400),
    ("open", "POST", "/calls", {"json": {"corporation": "abcd", "outcome": "maybe", "by": "Ann"}}, 400),
    ("open", "POST", "/calls", {"json": [RECORD] * 1001}, 413),
    ("open", "POST", "/calls", {"data": b"corporation=abcd", "content_type": "text/plain"}, 415),
    ("open", "GET", "/calls.csv", {}, 200),
    ("open", "GET", "/calls.csv?corporation=abcd", {}, 400),
    ("open", "PUT", "/calls", {}, 405),
    ("keyed", "GET", "/calls", {}, 401),
    ("keyed", "POST", "/calls", {"json": {"corporation": "abcd", "outcome": "stays", "by": "Ann"}}, 401),
    ("keyed", "GET", "/calls.csv", {}, 401),
    ("open", "GET", "/health", {}, 200),
    ("open", "POST", "/health", {}, 405),
    ("open", "GET", "/openapi.json", {}, 200),
    ("open", "POST", "/openapi.json", {}, 405),
    ("open", "GET", "/metrics", {}, 200),
    ("open", "POST", "/metrics", {}, 405),
    ("open", "GET", "/nope", {}, 404),
    ("keyed", "GET", "/metrics", {}, 401),
    ("keyed", "POST", "/prediction", {"json": {"records": [RECORD]}}, 401),
    ("keyed", "GET", "/scoring", {"headers": {"X-API-Key": "wrong"}}, 401),
    ("keyed", "GET", "/summarystats", {}, 401),
    ("keyed", "GET", "/risk?top=3", {}, 401),
    ("keyed", "GET", "/risk/c010000", {}, 401),
    ("keyed", "GET", "/diagnostics", {}, 401),
    ("keyed", "GET", "/history", {}, 401),
    ("keyed", "GET", "/openapi.json", {}, 401),
    ("keyed", "GET", "/openapi.json", {"headers": {"X-API-Key": "s3cret-key-for-tests"}}, 200),
    ("keyed", "GET", "/health", {}, 200),
    *[("keyed", method, path, {**request, **GUESSER}, 429) for method, path, request in (
        ("POST", "/prediction", {"json": {"records": [RECORD]}}), ("GET", "/scoring", {}), ("GET", "/summarystats", {}),
        ("GET", "/risk", {}), ("GET", "/risk/c010000", {}), ("GET", "/diagnostics", {}), ("GET", "/history", {}),
        ("GET", "/calls", {}), ("POST", "/calls", {"json": {"corporation": "abcd", "outcome": "stays", "by": "Ann"}}),
        ("GET", "/calls.csv", {}), ("GET", "/metrics", {}), ("GET", "/openapi.json", {}))],
    ("keyed", "GET", "/health", GUESSER, 200),
    ("empty", "POST", "/prediction", {"json": {"records": [RECORD]}}, 503),
    ("empty", "GET", "/scoring", {}, 503),
    ("empty", "GET", "/summarystats", {}, 503),
    ("empty", "GET", "/risk", {}, 503),
    ("empty", "GET", "/risk/c010000", {}, 503),
    ("empty", "GET", "/diagnostics", {}, 503),
    ("empty", "GET", "/history", {}, 200),
    ("empty", "GET", "/health", {}, 200),
]


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> list[tuple[tuple, dict, flask.Response]]:
    """Each exchange's answer, with the OpenAPI document the same app serves."""
    import diagnostics

    config = build_project(tmp_path_factory.mktemp("openapi"))
    diagnostics.run(config, timeout=0)  # no time for pip: the latest versions are recorded as unknown
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RISK_API_KEY", "s3cret-key-for-tests")
        keyed = app_module.create_app(config.config_file).test_client()
    for n in range(LOGIN_ATTEMPTS_PER_MINUTE):  # the guesser's address has used up its tries: its keys are a 429
        assert keyed.get("/scoring", headers={"X-API-Key": f"guess-{n}"},
                         environ_base=GUESSER["environ_base"]).status_code == 401
    empty = load_config(make_empty_project(tmp_path_factory.mktemp("openapi-empty")))
    clients = {"open": app_module.create_app(config.config_file).test_client(), "keyed": keyed,
               "empty": app_module.create_app(empty.config_file).test_client()}
    found = []
    for exchange in EXCHANGES:
        site, method, path, request, _ = exchange
        client = clients[site]
        document = client.get("/openapi.json", headers={"X-API-Key": "s3cret-key-for-tests"}).get_json()
        found.append((exchange, document, client.open(path, method=method, **request)))
    return found


def make_empty_project(root: Path) -> Path:
    write_csv(root / "input" / "dataset1.csv", client_rows(20, seed=1))
    return write_config(root)


def documented_path(document: dict, path: str) -> str:
    """The document's path (a template such as /risk/{client_id}) a request's path matches; itself when none."""
    plain = path.partition("?")[0]
    if plain in document["paths"]:
        return plain
    for template in document["paths"]:
        if "{" in template and re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)), plain):
            return template
    return plain


def operation_of(document: dict, path: str, method: str) -> dict | None:
    """The documented operation a request reaches, or None for a path or method the document does not list."""
    return document["paths"].get(documented_path(document, path), {}).get(method.lower())


def closed(schema):
    """The schema with every object that lists its properties closed to others (additionalProperties false where it
    says nothing): an answer carrying a field the document does not describe then fails, as a client generated from
    the document would not know it."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    shut = {key: closed(value) for key, value in schema.items()}
    if "properties" in shut and "additionalProperties" not in shut and "patternProperties" not in shut:
        shut["additionalProperties"] = False
    return shut


def schema_validator(document: dict, pointer: str):
    """A JSON Schema 2020-12 validator for the schema at `pointer` in the OpenAPI document, $refs resolved, its
    objects closed (closed)."""
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    registry = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(closed(document)))
    return Draft202012Validator({"$ref": f"urn:openapi#{pointer}"}, registry=registry)


def escaped(*parts: str) -> str:
    """A JSON pointer to the given keys."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def test_every_exchange_gets_the_status_it_is_listed_with(answers):
    for (site, method, path, _, status), _, response in answers:
        assert response.status_code == status, (site, method, path, response.get_data(as_text=True)[:300])


def test_every_documented_status_is_answered_and_every_answer_is_documented(answers):
    document = answers[0][1]
    promised = {(path, method.upper(), code) for path, operations in document["paths"].items()
                for method, operation in operations.items() for code in operation["responses"]}
    seen = {(documented_path(document, path), method, str(response.status_code))
            for (_, method, path, _, _), document, response in answers if operation_of(document, path, method)}
    assert seen - promised == set(), "answers the OpenAPI document does not describe"
    assert promised - seen == set(), "documented answers no exchange here produced"
    undocumented = {response.status_code for (_, method, path, _, _), document, response in answers
                    if operation_of(document, path, method) is None}
    assert undocumented == {404, 405}


def test_real_answers_match_the_openapi_response_schemas(answers):
    for (site, method, path, _, status), document, response in answers:
        if operation_of(document, path, method) is None:
            assert response.mimetype == "application/json"
            pointer = escaped("components", "schemas", "Error")
        else:
            content = operation_of(document, path, method)["responses"][str(status)]["content"]
            assert set(content) == {response.mimetype}, (method, path, status)
            pointer = escaped("paths", documented_path(document, path), method.lower(), "responses", str(status),
                              "content", response.mimetype, "schema")
        body = response.get_json() if response.is_json else response.get_data(as_text=True)  # /metrics: text
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in schema_validator(document, pointer).iter_errors(body)]
        assert errors == [], (site, method, path, status, errors[:5])


def test_every_documented_error_status_is_json(answers):
    """Every error answer, documented or not: JSON, the same status in the body, its phrase, a message."""
    checked = set()
    for (_, method, path, _, status), _, response in answers:
        if status < 400:
            continue
        assert response.mimetype == "application/json", (method, path, status)
        body = response.get_json()
        assert body["status"] == status and body["error"] == HTTPStatus(status).phrase, body
        assert isinstance(body["message"], str) and body["message"].endswith("."), body
        assert "Traceback" not in response.get_data(as_text=True)
        checked.add(status)
    assert checked == {400, 401, 403, 404, 405, 413, 415, 429, 503}


def test_accepted_json_request_bodies_match_the_documented_request_schema(answers):
    accepted = [(document, path, request["json"]) for (_, method, path, request, status), document, _ in answers
                if "json" in request and status == 200]
    assert accepted
    for document, path, body in accepted:
        pointer = escaped("paths", path, "post", "requestBody", "content", "application/json", "schema")
        assert list(schema_validator(document, pointer).iter_errors(body)) == []


def test_the_openapi_schemas_are_json_schema_2020_12(client):
    from jsonschema import Draft202012Validator

    document = client.get("/openapi.json").get_json()
    schemas = list(document["components"]["schemas"].values())
    for operations in document["paths"].values():
        for operation in operations.values():
            for answer in operation["responses"].values():
                schemas += [media["schema"] for media in answer["content"].values()]
            schemas += [media["schema"] for media in operation.get("requestBody", {}).get("content", {}).values()]
    for each in schemas:
        Draft202012Validator.check_schema(each)


# --- gunicorn, end to end --------------------------------------------------------------------
@pytest.mark.slow
def test_gunicorn_serves_wsgi_and_apicalls_records_all_four_endpoints(deployed, tmp_path):
    import requests

    atomic_write_json(deployed.output_model_folder / DIAGNOSTICS_RECORD, {
        "generated_at": "2026-01-01T00:00:00Z", "model_version": "x", "summary": [], "missing": {},
        "timings": {}, "dependencies": []})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RISK_CONFIG": str(deployed.config_file), "RISK_API_KEY": "e2e-key-for-the-tests"}
    log_file = tmp_path / "gunicorn.log"
    with open(log_file, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
             "--no-control-socket", "--chdir", str(ROOT), "wsgi:app"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(url, server)
        assert requests.get(url + "/scoring", timeout=10).status_code == 401
        result = run_script("apicalls.py", "--config", str(deployed.config_file), "--url", url,
                            cwd=tmp_path, env={"RISK_API_KEY": "e2e-key-for-the-tests"}, timeout=60)
        assert result.returncode == 0, result.stderr + log_file.read_text()
    finally:
        server.terminate()
        server.wait(timeout=15)
    text = (deployed.output_model_folder / API_RETURNS).read_text(encoding="utf-8")
    returns = json.loads(text)
    assert "e2e-key-for-the-tests" not in text
    assert set(returns["endpoints"]) == {"prediction", "scoring", "summarystats", "diagnostics"}
    assert {name: call["status"] for name, call in returns["endpoints"].items()} == dict.fromkeys(
        returns["endpoints"], 200)
    current = current_deployment(deployed.prod_deployment_folder)
    assert returns["endpoints"]["prediction"]["body"]["model_version"] == current.model_version
    assert returns["endpoints"]["prediction"]["body"]["count"] == 60
    assert returns["endpoints"]["prediction"]["request"]["json"] == {"dataset": "test/testdata.csv"}


# --- /risk past the end (issue 21) --------------------------------------------------------------
def test_risk_offset_at_the_end_of_the_list_is_a_400_naming_offset(client):
    total = client.get("/risk?top=1").get_json()["total"]
    last = client.get(f"/risk?top=5&offset={total - 1}")
    assert last.status_code == 200 and last.get_json()["count"] == 1
    body = assert_json_error(client.get(f"/risk?offset={total}"), 400, '"offset"', f"from 0 to {total - 1}")
    assert body["field"] == "offset"


def test_risk_offset_0_on_an_empty_call_list_is_an_empty_page(deployed):
    rows = [",".join([*row.split(",")[:4], "1"]) for row in client_rows(30, seed=12)]  # every client has left
    write_csv(deployed.final_data_file, rows)
    client = app_module.create_app(deployed.config_file).test_client()
    page = client.get("/risk")
    assert page.status_code == 200
    assert (page.get_json()["total"], page.get_json()["clients"], page.get_json()["next_offset"]) == (0, [], None)
    assert_json_error(client.get("/risk?offset=1"), 400, '"offset"')



def test_an_id_holding_quotes_is_not_taken_for_a_key_given_twice(client):
    """The repeated-key check counts quotes: ids with quotes, escaped as \\" or as \\u0022, are read in full."""
    features = '"lastmonth_activity": 1, "lastyear_activity": 2, "number_of_employees": 3'
    body = ('{"records": [{"corporation": "say \\"hi\\"", ' + features + '}, '
            '{"corporation": "a\\u0022b", ' + features + '}]}')
    answer = client.post("/prediction", data=body, content_type="application/json")
    assert answer.status_code == 200, answer.get_json()
    assert [p["corporation"] for p in answer.get_json()["predictions"]] == ['say "hi"', 'a"b']
