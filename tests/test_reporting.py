"""Tests of reporting.py and what it writes through riskcore: the ranked risk list (riskcore.risklist),
the confusion matrix image (riskcore.charts), the PDF report and its numbering (riskcore.pdf,
riskcore.reports), and the command as a user runs it."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

import diagnostics
import reporting
import scoring
from conftest import HEADER, client_rows, deploy_pipeline, run_script, write_config, write_csv
from riskcore import pdf, publish, risklist
from riskcore.charts import model_deployments
from riskcore.config import Config, load_config
from riskcore.contract import EXIT_FAILED, FEATURES, MANIFEST, RISK_SCORES, RUN_HISTORY, DataError
from riskcore.drift import data_drift, psi
from riskcore.releases import deployed_metadata, deployment_history, load_deployed_model, require_deployment
from riskcore.reports import drift_view
from riskcore.schema import features_of, read_client_csv
from riskcore.summary import read_ingested

CLIENT_HEADER = "corporation,lastmonth_activity,lastyear_activity,number_of_employees"


def read_risk_list(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"corporation": str}, keep_default_na=False)


def deployed_model(config: Config):
    current = require_deployment(config.prod_deployment_folder)
    return current, load_deployed_model(current)


# --- A project reported on once for the whole module -----------------------------------------
@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """A deployed project with a diagnostics record, a run history and a report written once."""
    root = tmp_path_factory.mktemp("reported")
    first = client_rows(120, seed=1)
    write_csv(root / "input" / "dataset1.csv", first)
    write_csv(root / "input" / "dataset2.csv", client_rows(100, seed=2) + first[:10])
    (root / "input" / "broken.csv").write_text("corporation;lastmonth_activity\nx;1\n")
    write_csv(root / "test" / "testdata.csv", client_rows(60, seed=3, prefix="t"))
    config = load_config(write_config(root))
    deploy_pipeline(config)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(diagnostics, "outdated_packages_list", lambda requirements=None, timeout=0: [
            {"package": "numpy", "pinned": "2.4.6", "installed": "2.4.6", "latest": "unknown",
             "status": "unknown", "reason": "package index example unreachable (test)"}])
        diagnostics.run(config)
    with sqlite3.connect(config.output_model_folder / RUN_HISTORY) as db:
        db.execute("CREATE TABLE runs (started_at TEXT, f1_new_data REAL, baseline REAL, decision TEXT, "
                   "version_before TEXT, version_after TEXT)")
        db.execute("INSERT INTO runs VALUES ('2026-01-02T03:00:00Z', 0.81, 0.75, 'no drift: model kept', 'a', 'a')")
    paths = reporting.run(config)
    return config, paths


def test_run_writes_the_three_outputs_with_the_plain_names(reported):
    config, paths = reported
    folder = config.output_model_folder
    assert paths == {"confusion_matrix": folder / "confusionmatrix.png",
                     "summary_report": folder / "summary_report.pdf",
                     "risk_scores": folder / "risk_scores.csv"}
    assert all(path.is_file() for path in paths.values())


def test_confusion_matrix_is_a_real_image_of_sensible_size(reported):
    from PIL import Image

    _, paths = reported
    with Image.open(paths["confusion_matrix"]) as picture:
        assert picture.format == "PNG"
        width, height = picture.size
        assert 500 <= width <= 2000 and 500 <= height <= 2000
        colours = picture.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # drawn, not blank


def pdf_pages(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() for page in PdfReader(path).pages]


def squeeze(text: str) -> str:
    return " ".join(text.split())


def test_pdf_has_four_pages_with_every_section_where_expected(reported):
    _, paths = reported
    pages = [squeeze(text) for text in pdf_pages(paths["summary_report"])]
    assert len(pages) == 4
    expected = {"headline": 0, "trend": 0, "matrix": 1, "clients": 1, "summary": 2, "distributions": 2,
                "missing": 3, "timings": 3, "dependencies": 3, "ingestion": 3}
    assert set(expected) == set(pdf.SECTIONS)
    for key, page in expected.items():
        assert pdf.SECTIONS[key] in pages[page], key
    assert all(f"page {n} of 4" in text for n, text in enumerate(pages, start=1))


def test_pdf_states_f1_model_version_and_the_riskiest_clients(reported):
    config, paths = reported
    current, model = deployed_model(config)
    test = read_client_csv(config.test_data_file)
    f1 = scoring.score_model(model, test)
    text = squeeze(" ".join(pdf_pages(paths["summary_report"])))
    assert f"{f1:.4f}" in text
    assert current.model_version in text
    top = read_risk_list(paths["risk_scores"]).head(20)
    assert all(client in text for client in top["corporation"])
    assert "broken.csv" in text  # the rejected file of the ingestion record
    assert "package index example unreachable (test)" in text  # from the diagnostics record
    assert "no drift: model kept" in text  # from the run history


def test_report_psi_is_the_drift_checks_psi_on_the_same_data(reported):
    """One PSI: the report's figure per feature is riskcore.drift.psi, the number the automation records."""
    config, paths = reported
    current, _ = deployed_model(config)
    metadata = deployed_metadata(current)
    profile = metadata["training_profile"]
    newest = read_ingested(config)
    _, _, shown = drift_view(metadata, newest, float(config.automation["psi_threshold"]))
    automation = data_drift(newest, profile, float(config.automation["psi_threshold"]), ks_alpha=0.05)
    text = squeeze(" ".join(pdf_pages(paths["summary_report"])))
    for feature in FEATURES:
        expected = psi(newest[feature].to_numpy(dtype="float64"), profile["quantiles"][feature])
        assert shown[feature][0] == expected
        assert round(shown[feature][0], 4) == automation["features"][feature]["psi"]
        assert shown[feature][1] == automation["features"][feature]["psi_label"]
        assert f"{expected:.3f} ({shown[feature][1]})" in text


def test_risk_list_is_complete_sorted_and_in_range(reported):
    config, paths = reported
    current, model = deployed_model(config)
    final = pd.read_csv(config.final_data_file, dtype={"corporation": str})
    risk = read_risk_list(paths["risk_scores"])
    assert list(risk.columns) == ["rank", "corporation", "attrition_probability", "model_version"]
    assert len(risk) == len(final) == 220
    assert sorted(risk["corporation"]) == sorted(final["corporation"])
    assert risk["rank"].tolist() == list(range(1, 221))
    assert risk["attrition_probability"].between(0, 1).all()
    assert (np.diff(risk["attrition_probability"].to_numpy()) <= 0).all()
    assert set(risk["model_version"]) == {current.model_version}
    expected = dict(zip(final["corporation"], model.predict_proba(features_of(final))[:, 1],
                        strict=True))
    assert risk["attrition_probability"].to_numpy() == pytest.approx(
        [expected[c] for c in risk["corporation"]], abs=5e-7)


# --- The risk list on its own ----------------------------------------------------------------
def test_risk_list_is_a_stable_ranking_by_the_models_log_odds(deployed):
    """Row for row what a stable descending argsort of decision_function gives, probabilities 6 decimals."""
    _, model = deployed_model(deployed)
    final = pd.read_csv(deployed.final_data_file, dtype={"corporation": str})
    keys = model.decision_function(features_of(final))
    order = np.argsort(-keys, kind="stable")
    probabilities = model.predict_proba(features_of(final))[:, 1]
    result = risklist.risk_scores(deployed)
    lines = result.path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "rank,corporation,attrition_probability,model_version"
    assert lines[1:] == [f"{rank},{final['corporation'][row]},{probabilities[row]:.6f},{result.model_version}"
                         for rank, row in enumerate(order, start=1)]


def test_probability_is_scikit_learns_predict_proba(deployed):
    _, model = deployed_model(deployed)
    features = features_of(read_client_csv(deployed.final_data_file))
    key = pl.Series(model.decision_function(features))
    assert risklist.probability(key).to_numpy() == pytest.approx(model.predict_proba(features)[:, 1],
                                                                 rel=1e-12, abs=1e-15)


def rank_in_memory(model, ids: list[str], rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    """The pure core on an in-memory frame: score, rank, tabulate."""
    clients = pl.LazyFrame({"corporation": ids, **{f: [r[i] for r in rows] for i, f in enumerate(FEATURES)}},
                           schema={"corporation": pl.String, **dict.fromkeys(FEATURES, pl.Int64)})
    scored = clients.with_columns(risklist.risk_key(risklist.RiskScorer(model)))
    return risklist.risk_table(risklist.ranked(scored), "v1").collect()


def test_saturated_probabilities_still_rank_by_log_odds():
    """Clients whose probability rounds to 1.0 keep the order of their log-odds, not of the file."""
    model = LogisticRegression().fit(np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], dtype=float),
                                     np.array([0, 0, 1, 1]))
    rows = [(10_000, 0, 0), (30_000, 0, 0), (20_000, 0, 0), (0, 0, 0)]
    table = rank_in_memory(model, ["low", "top", "mid", "none"], rows)
    assert table["corporation"].to_list() == ["top", "mid", "low", "none"]
    assert table["attrition_probability"].to_list()[:3] == [1.0, 1.0, 1.0]
    assert table["rank"].to_list() == [1, 2, 3, 4]


ids_strategy = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
                       min_size=1, max_size=10).filter(lambda text: text.strip(" ") == text and text.strip())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(ids_strategy, st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
                min_size=1, max_size=60))
def test_ranking_is_stable_and_the_csv_round_trips(tmp_path_factory, clients):
    """Many ties (few distinct features), awkward ids: file order on ties, ids read back as written."""
    model = LogisticRegression().fit(np.array([[0, 0, 0], [3, 3, 3], [0, 3, 0], [3, 0, 3]], dtype=float),
                                     np.array([1, 0, 1, 0]))
    ids = [c[0] for c in clients]
    rows = [c[1:] for c in clients]
    table = rank_in_memory(model, ids, rows)
    order = np.argsort(-model.decision_function(np.array(rows, dtype=float)), kind="stable")
    assert table["corporation"].to_list() == [ids[i] for i in order]
    path = tmp_path_factory.mktemp("csv") / "risk.csv"
    table.write_csv(path, float_precision=risklist.DECIMALS, float_scientific=False)
    with open(path, newline="", encoding="utf-8") as handle:
        parsed = list(csv.reader(handle))[1:]
    assert [line[1] for line in parsed] == [ids[i] for i in order]


def test_scorer_finds_the_top_clients_across_batches_and_ties():
    """The riskiest rows kept batch by batch hold the head of the whole ranking, ties included."""
    model = LogisticRegression().fit(np.array([[0, 0, 0], [3, 3, 3], [0, 3, 0], [3, 0, 3]], dtype=float),
                                     np.array([1, 0, 1, 0]))
    rng = np.random.default_rng(7)
    rows = rng.integers(0, 3, size=(300, 3))  # 27 distinct rows: every key is shared by many clients
    ids = [f"id{i:03d}" for i in range(300)]
    scorer = risklist.RiskScorer(model)
    keys = np.empty(300)
    for begin in (200, 0, 100):  # batches out of file order, as streaming may hand them over
        batch = [pl.Series(ids[begin:begin + 100]), *(pl.Series(rows[begin:begin + 100, j]) for j in range(3))]
        keys[begin:begin + 100] = scorer(batch).to_numpy()
    assert keys.tolist() == pytest.approx(model.decision_function(rows.astype(float)).tolist(), rel=1e-12)
    order = np.argsort(-keys, kind="stable")[:risklist.TOP_CLIENTS]
    head = pl.DataFrame({"corporation": [ids[i] for i in order], risklist.KEY: keys[order]})
    top = scorer.top(head)
    assert [c["corporation"] for c in top] == [ids[i] for i in order]
    assert [[c[f] for f in FEATURES] for c in top] == rows[order].tolist()
    assert [c["rank"] for c in top] == list(range(1, risklist.TOP_CLIENTS + 1))


def test_equal_clients_keep_file_order_across_many_batches(deployed, tmp_path):
    """300,000 clients of equal risk (several streaming batches): the list and its top are the file's order."""
    clients = tmp_path / "clients.csv"
    clients.write_text(CLIENT_HEADER + "\n" + "".join(f"c{i},5,60,7\n" for i in range(300_000)), encoding="utf-8")
    result = risklist.risk_scores(deployed, clients)
    ranked_ids = pl.read_csv(result.path, schema_overrides={"corporation": pl.String})["corporation"]
    assert ranked_ids.to_list() == [f"c{i}" for i in range(300_000)]
    assert [c["corporation"] for c in result.top] == [f"c{i}" for i in range(risklist.TOP_CLIENTS)]
    assert all([c[f] for f in FEATURES] == [5, 60, 7] for c in result.top)


def test_top_clients_are_the_head_of_the_risk_list(deployed):
    result = risklist.risk_scores(deployed)
    head = read_risk_list(result.path).head(risklist.TOP_CLIENTS)
    assert [c["corporation"] for c in result.top] == head["corporation"].tolist()
    assert [c["rank"] for c in result.top] == head["rank"].tolist()
    assert [round(c["probability"], 6) for c in result.top] == head["attrition_probability"].tolist()
    final = pd.read_csv(deployed.final_data_file, dtype={"corporation": str}).set_index("corporation")
    for client in result.top:
        assert [client[f] for f in FEATURES] == final.loc[client["corporation"]].tolist()[:3]


def test_clients_file_without_label_and_with_awkward_ids(deployed, tmp_path):
    clients = tmp_path / "clients.csv"
    clients.write_text('corporation,lastmonth_activity,lastyear_activity,number_of_employees\n'
                       '"Acme, Inc.",0,5000,300\nplain,400,4800,10\n"say ""hi""",50,900,40\nÖl AG,10,100,2\n'
                       '"two\nlines",7,70,7\n',
                       encoding="utf-8")
    result = risklist.risk_scores(deployed, clients)
    risk = read_risk_list(result.path)
    assert sorted(risk["corporation"]) == sorted(["Acme, Inc.", "plain", 'say "hi"', "Öl AG", "two\nlines"])
    assert result.rows == 5 and result.source == clients


@pytest.mark.parametrize(("content", "values"), [
    (f"{CLIENT_HEADER}\n  spaced ,  12 ,+130, 4\n", ("spaced ", 12, 130, 4)),
    (f'{CLIENT_HEADER}\n"quoted","12","130","4"\n', ("quoted", 12, 130, 4)),
    (f"\ufeff{CLIENT_HEADER}\r\nbom,12,130,4\r\n\r\n", ("bom", 12, 130, 4)),
    (f"{HEADER}\nlabelled,12,130,4,1\n", ("labelled", 12, 130, 4)),
])
def test_harmless_variants_are_read_as_the_plain_row(deployed, tmp_path, content, values):
    clients = tmp_path / "clients.csv"
    clients.write_bytes(content.encode("utf-8"))
    result = risklist.risk_scores(deployed, clients)
    assert result.rows == 1
    assert [result.top[0][key] for key in ("corporation", *FEATURES)] == list(values)


@pytest.mark.parametrize(("bad", "message"), [
    ("bad,12,abc,3", 'has "abc" in column "lastyear_activity" at row 137; expected a whole number >= 0'),
    ("bad,12,,3", 'has an empty value in column "lastyear_activity" at row 137'),
    ("bad,-12,130,3", 'has a negative value in column "lastmonth_activity" at row 137'),
    ("bad,12,130,3000000000000", 'has an implausibly large value in column "number_of_employees" at row 137'),
    (",12,130,3", 'has an empty "corporation" at row 137'),
    (CLIENT_HEADER, "repeats its header line at row 137"),
])
def test_bad_row_is_named_by_its_row_in_the_file_and_nothing_changes(deployed, tmp_path, bad, message):
    before = risklist.risk_scores(deployed).path.read_bytes()
    rows = [",".join(r.split(",")[:4]) for r in client_rows(150, seed=4)]
    rows[136] = bad
    rows.insert(60, "")  # a blank line is not a row: the numbering skips it
    clients = write_csv(tmp_path / "clients.csv", rows, header=CLIENT_HEADER)
    with pytest.raises(DataError, match=f"^clients.csv {message}"):
        risklist.risk_scores(deployed, clients)
    assert (deployed.output_model_folder / RISK_SCORES).read_bytes() == before
    assert not list(deployed.output_model_folder.glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (f"{CLIENT_HEADER}\n".encode(), "header but no rows"),
    (b"corporation,lastmonth_activity,lastyear_activity\nx,1,2\n", 'missing the column "number_of_employees"'),
    (f"{CLIENT_HEADER},region\nx,1,2,3,north\n".encode(), 'unexpected column "region"'),
    (f"{CLIENT_HEADER},corporation\nx,1,2,3,y\n".encode(), "repeats a column name"),
    (b"corporation;lastmonth_activity\nx;1\n", "separator"),
    (f"{CLIENT_HEADER}\nx,1,2,3,4,5\n".encode(), "not a well-formed CSV file"),
    (f"{CLIENT_HEADER}\nsoci\xe9t\xe9,1,2,3\n".encode("latin-1"), "is not UTF-8 text"),
    (b"\x1f\x8b\x08\x00rest", "gzip-compressed"),
])
def test_unusable_clients_file_is_one_sentence(deployed, tmp_path, content, message):
    clients = tmp_path / "clients.csv"
    clients.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        risklist.risk_scores(deployed, clients)
    assert str(caught.value).startswith("clients.csv ") and "\n" not in str(caught.value)


# --- Numbering and history -------------------------------------------------------------------
def test_later_runs_are_numbered_and_never_overwrite(deployed):
    first = reporting.run(deployed)
    first_bytes = {key: path.read_bytes() for key, path in first.items() if key != "risk_scores"}
    second = reporting.run(deployed)
    assert second["confusion_matrix"].name == "confusionmatrix2.png"
    assert second["summary_report"].name == "summary_report2.pdf"
    assert {key: first[key].read_bytes() for key in first_bytes} == first_bytes
    chosen = reporting.run(deployed, run_number=7)
    assert (chosen["confusion_matrix"].name, chosen["summary_report"].name) == (
        "confusionmatrix7.png", "summary_report7.pdf")
    assert sorted(p.name for p in deployed.output_model_folder.glob("summary_report*")) == [
        "summary_report.pdf", "summary_report2.pdf", "summary_report7.pdf"]
    assert not list(deployed.output_model_folder.glob(".*"))  # no temporary file left behind


def test_report_without_diagnostics_or_history_says_so(deployed):
    text = squeeze(" ".join(pdf_pages(reporting.run(deployed)["summary_report"])))
    assert "Not measured yet" in text and "Not checked yet" in text
    assert "Only one deployment and no drift check so far" in text


def test_trend_counts_each_model_once_across_records_only_releases(deployed):
    publish.deploy_records(deployed)
    history = deployment_history(deployed.prod_deployment_folder)
    assert [item["kind"] for item in history] == ["model", "records"]
    assert model_deployments(history) == history[:1]
    manifest = json.loads((deployed.prod_deployment_folder / MANIFEST).read_text())
    assert history[-1]["deployed_at"] == manifest["deployed_at"]


# --- As a user runs it -----------------------------------------------------------------------
@pytest.mark.slow
def test_command_runs_from_another_directory(deployed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_script("reporting.py", "--config", str(deployed.config_file), "--run-label", "3", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    folder = deployed.output_model_folder
    assert done.stdout.splitlines() == [str(folder / "confusionmatrix3.png"), str(folder / "summary_report3.pdf"),
                                        str(folder / "risk_scores.csv")]
    assert list(elsewhere.iterdir()) == []


@pytest.mark.slow
def test_command_turns_a_missing_clients_file_into_one_sentence(deployed, tmp_path):
    done = run_script("reporting.py", "--config", str(deployed.config_file), "--clients", "nope.csv", cwd=tmp_path)
    assert done.returncode == EXIT_FAILED
    assert done.stderr.strip().splitlines()[-1].startswith("error: Client file")
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.slow
def test_command_turns_a_bad_clients_file_into_one_sentence(deployed, tmp_path):
    clients = write_csv(tmp_path / "clients.csv", ["ok,1,2,3", "bad,1,x,3"], header=CLIENT_HEADER)
    done = run_script("reporting.py", "--config", str(deployed.config_file), "--clients", str(clients), cwd=tmp_path)
    assert done.returncode == EXIT_FAILED
    assert done.stderr.strip().splitlines()[-1] == (
        'error: clients.csv has "x" in column "lastyear_activity" at row 2; expected a whole number >= 0.')
    assert "Traceback" not in done.stderr and done.stdout == ""
