"""GET /history (riskcore.api.history_view): the run history as JSON, newest first, paged, as the OpenAPI
document describes it."""

from __future__ import annotations

import pytest

import app as app_module
from riskcore.api import risk_service
from riskcore.contract import API_KEY_ENV, RUN_HISTORY
from riskcore.ops.history import HISTORY_COLUMNS, read_history, record_run
from riskcore.ops.run_record import Run

DRIFT = {"features": {
    "lastmonth_activity": {"psi": 1.2496, "psi_label": "drift", "ks_statistic": 0.3271, "ks_p_value": 1.8e-216,
                           "drift": True},
    "lastyear_activity": {"psi": 0.12, "psi_label": "some shift", "ks_statistic": 0.05, "ks_p_value": 0.02,
                          "drift": False},
    "number_of_employees": {"psi": 0.01, "psi_label": "stable", "ks_statistic": 0.01, "ks_p_value": 0.9,
                            "drift": False}}, "drift": True}


def scores(f1: float, auc: float | None, rows: int) -> dict:
    return {"rows": rows, "positives": rows // 3, "few_rows": rows < 30, "f1": f1, "f1_interval": [f1 - 0.05, f1 + 0.05],
            "auc": auc, "auc_interval": None if auc is None else [auc - 0.1, min(auc + 0.1, 1.0)],
            "resamples": 1000, "seed": 0}


EVALUATION = {"old_model": "v1", "new_model": "v2", "new_worse": False, "promoted": True,
              "holdout": {"share": 0.2, "seed": 0, "old": scores(0.35, 0.61, 2000), "new": scores(0.7, 0.86, 2000)},
              "test_data": {"name": "testdata.csv", "old": scores(0.69, 0.8, 5), "new": scores(0.5, None, 5)}}


def record_runs(config, count: int) -> list[dict]:
    """`count` runs: a retrain with its drift check, then kept models, failed runs and a first deployment."""
    path = config.output_model_folder / RUN_HISTORY
    for number in range(1, count + 1):
        run = Run(started_at=f"2026-01-{number:02d}T00:00:00Z", run_number=number, new_files=[f"d{number}.csv"],
                  rows_read=100, rows_ingested=99, outcome="done", finished_at=f"2026-01-{number:02d}T00:01:00Z",
                  step_seconds={"ingestion": 0.1, "drift_check": 0.05})
        if number == 1:
            run.decision, run.version_after = "first deployment", "v1"
        elif number % 3 == 0:
            run.outcome, run.error = "failed", "step apicalls failed: the API did not answer"
        else:
            run.f1_new_data, run.baseline, run.drift_test = 0.35, 0.69, "raw"
            run.drift_verdict, run.data_drift = "F1 0.3500 < 0.6900 (baseline): model drift", DRIFT
            run.files_rejected = [{"name": "broken.csv", "reason": "bad header"}]
            run.decision, run.version_before, run.version_after = "retrain", "v1", f"v{number}"
        row = run.as_row()
        if run.decision == "retrain":
            row.update(evaluation=EVALUATION, new_rows_quantiles={"lastmonth_activity": [0.0, 12.5, 400.0]})
        record_run(path, row)
    return read_history(path)


@pytest.fixture
def client(config, monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    return app_module.create_app(config.config_file).test_client()


def test_history_is_every_run_newest_first_with_every_column(config, client):
    rows = record_runs(config, 5)
    answer = client.get("/history?quantiles=1")  # every column, the quantile lists included when asked for
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    body = answer.get_json()
    assert (body["total"], body["limit"], body["offset"], body["count"], body["next_offset"]) == (5, 50, 0, 5, None)
    assert body["runs"] == rows[::-1]
    assert set(body["runs"][0]) == {"id", *HISTORY_COLUMNS}
    plain = client.get("/history").get_json()["runs"]
    assert plain == [{k: v for k, v in run.items() if k != "new_rows_quantiles"} for run in rows[::-1]]
    retrain = body["runs"][[run["decision"] for run in body["runs"]].index("retrain")]
    assert retrain["data_drift"] == DRIFT  # PSI and KS per feature, as the drift check recorded them
    assert retrain["evaluation"] == EVALUATION  # both models on the holdout and the test data, with intervals


@pytest.mark.parametrize(("query", "ids"), [
    ("?limit=2", [7, 6]),
    ("?limit=2&offset=2", [5, 4]),
    ("?offset=5", [2, 1]),
    ("?offset=7", []),
    ("?offset=100", []),
    ("?limit=1000&offset=0", [7, 6, 5, 4, 3, 2, 1]),
    ("?limit= 3 ", [7, 6, 5]),
])
def test_history_is_paged_by_limit_and_offset(config, client, query, ids):
    record_runs(config, 7)
    body = client.get(f"/history{query}").get_json()
    assert [run["id"] for run in body["runs"]] == ids and body["total"] == 7


@pytest.mark.parametrize(("query", "field", "phrase"), [
    ("limit=0", "limit", "from 1 to 1000"),
    ("limit=1001", "limit", "from 1 to 1000"),
    ("limit=abc", "limit", "whole number"),
    ("limit=2.5", "limit", "whole number"),
    ("limit=", "limit", "whole number"),
    ("limit=\u0663", "limit", "whole number"),  # an Arabic-Indic three: a digit to str.isdigit, not to us
    ("limit=99999999999999999999", "limit", "whole number"),
    ("offset=-1", "offset", "of at least 0"),
    ("offset=99999999999999999999", "offset", "from 0 to 999999999"),  # it read "of at least 0"
    ("offset=1e3", "offset", "whole number"),
    ("limit=1&limit=2", "limit", "once only"),
    ("top=1", "top", "Unknown query parameter"),  # /risk's older name of limit: silently ignored here, 50 runs came
    ("quantile=1", "quantile", "Unknown query parameter"),
])
def test_bad_paging_is_a_400_naming_the_parameter(config, client, query, field, phrase):
    record_runs(config, 2)
    answer = client.get(f"/history?{query}")
    assert answer.status_code == 400
    body = answer.get_json()
    assert body["field"] == field and phrase in body["message"] and f'"{field}"' in body["message"]


def test_history_before_any_run_is_an_empty_page(client):
    assert client.get("/history").get_json() == {"total": 0, "limit": 50, "offset": 0, "count": 0,
                                                 "next_offset": None, "runs": []}


def test_a_new_run_is_served_on_the_next_request(config, client):
    record_runs(config, 2)
    assert client.get("/history").get_json()["total"] == 2
    record_run(config.output_model_folder / RUN_HISTORY, Run(started_at="2026-02-01T00:00:00Z").as_row())
    body = client.get("/history?limit=1").get_json()
    assert body["total"] == 3 and body["runs"][0]["started_at"] == "2026-02-01T00:00:00Z"


def test_history_and_the_page_share_one_read_of_the_history_per_version(config, client, monkeypatch):
    record_runs(config, 3)
    reads = []
    monkeypatch.setattr(risk_service, "read_history", lambda path: reads.append(path) or read_history(path))
    assert client.get("/history").get_json()["total"] == 3
    assert "2026-01-02 00:00 UTC" in client.get("/model").get_data(as_text=True)
    assert client.get("/history?limit=1").status_code == 200
    assert client.get("/?q=zz").status_code == 200  # another page of GET /, rendered anew
    assert len(reads) == 1
    record_run(config.output_model_folder / RUN_HISTORY, Run(started_at="2026-02-01T00:00:00Z").as_row())
    assert client.get("/history").get_json()["total"] == 4
    assert "2026-02-01 00:00 UTC" in client.get("/model").get_data(as_text=True)
    assert len(reads) == 2


def test_history_needs_the_api_key_when_one_is_set(config, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "s3cret-key-for-tests")
    client = app_module.create_app(config.config_file).test_client()
    assert client.get("/history").status_code == 401
    assert client.get("/history", headers={"X-API-Key": "s3cret-key-for-tests"}).status_code == 200


def validator(document: dict, path: str, status: str):
    """A JSON Schema 2020-12 validator for one documented answer, $refs resolved in the document."""
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    registry = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(document))
    pointer = f"/paths/{path.replace('/', '~1')}/get/responses/{status}/content/application~1json/schema"
    return Draft202012Validator({"$ref": f"urn:openapi#{pointer}"}, registry=registry)


@pytest.mark.parametrize(("query", "status"), [("", 200), ("?limit=3&offset=1", 200), ("?limit=x", 400)])
def test_answers_match_the_openapi_document(config, client, query, status):
    record_runs(config, 6)
    document = client.get("/openapi.json").get_json()
    answer = client.get(f"/history{query}")
    assert answer.status_code == status
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator(document, "/history", str(status)).iter_errors(answer.get_json())]
    assert errors == []


def test_the_documented_run_schema_refuses_what_a_run_never_holds(client):
    """The schema checks something: a run with a PSI that is not a number is refused."""
    document = client.get("/openapi.json").get_json()
    bad = {"total": 1, "limit": 50, "offset": 0, "runs": [{
        "id": 1, "run_id": "x", "started_at": "t", "outcome": "done",
        "data_drift": {"features": {"lastmonth_activity": {"psi": "high", "drift": True}}}}]}
    assert list(validator(document, "/history", "200").iter_errors(bad))


def test_a_window_too_small_and_estimated_matches_the_openapi_document(config, client):
    """A 5-row window as the tick records it: its PSI "too few rows", its estimate's interval, warning and calibration."""
    small = {name: {"psi": 4.9, "psi_label": "too few rows", "ks_statistic": 0.29, "ks_p_value": 0.72, "rows": 5,
                    "drift": False} for name in ("lastmonth_activity", "lastyear_activity", "number_of_employees")}
    run = Run(started_at="2026-01-02T00:00:00Z", run_number=2, new_files=["d2.csv"], rows_read=5, rows_ingested=5,
              outcome="done", decision="wait", data_drift={"drift": False, "features": small}, f1_new_data=0.0,
              window_rows=5, window_labelled=5, window_positives=1, estimated_f1=0.0, estimated_f1_interval=[0.0, 0.0],
              estimated_rows=5, estimated_baseline=0.84, estimated_drift=False, realized_f1=0.0, realized_rows=5,
              calibration={"ece": 0.25, "brier": 0.2, "rows": 5, "bins": 10,
                           "reliability": [{"predicted": 0.01, "observed": 1.0, "rows": 1}]})
    record_run(config.output_model_folder / RUN_HISTORY, run.as_row())
    document = client.get("/openapi.json").get_json()
    answer = client.get("/history")
    assert answer.get_json()["runs"][0]["estimated_f1_interval"] == [0.0, 0.0]
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator(document, "/history", "200").iter_errors(answer.get_json())]
    assert errors == []
