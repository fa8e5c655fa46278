"""Tests of reporting.py: the ranked risk list, the ranking and CSV writing underneath it, the
confusion matrix image, the PDF report and its numbering, and the command as a user runs it."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import diagnostics
import reporting
import scoring
from conftest import client_rows, deploy_pipeline, run_script, write_config, write_csv
from riskcore import publish
from riskcore.config import Config, load_config
from riskcore.contract import EXIT_FAILED, FEATURES, MANIFEST, RISK_SCORES, RUN_HISTORY, DataError
from riskcore.releases import load_deployed_model, require_deployment
from riskcore.schema import features_of, read_client_csv


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
    assert set(expected) == set(reporting.SECTIONS)
    for key, page in expected.items():
        assert reporting.SECTIONS[key] in pages[page], key
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
def test_chunk_size_does_not_change_the_risk_list(deployed):
    small = reporting.risk_scores(deployed, chunk_rows=7).path.read_bytes()
    large = reporting.risk_scores(deployed, chunk_rows=100_000).path.read_bytes()
    assert small == large


def test_top_clients_are_the_head_of_the_risk_list(deployed):
    result = reporting.risk_scores(deployed, chunk_rows=16)
    head = read_risk_list(result.path).head(reporting.TOP_CLIENTS)
    assert [c["corporation"] for c in result.top] == head["corporation"].tolist()
    assert [c["rank"] for c in result.top] == head["rank"].tolist()
    final = pd.read_csv(deployed.final_data_file, dtype={"corporation": str}).set_index("corporation")
    for client in result.top:
        assert [client[f] for f in FEATURES] == final.loc[client["corporation"]].tolist()[:3]


def test_clients_file_without_label_and_with_awkward_ids(deployed, tmp_path):
    clients = tmp_path / "clients.csv"
    clients.write_text('corporation,lastmonth_activity,lastyear_activity,number_of_employees\n'
                       '"Acme, Inc.",0,5000,300\nplain,400,4800,10\n"say ""hi""",50,900,40\nÖl AG,10,100,2\n',
                       encoding="utf-8")
    result = reporting.risk_scores(deployed, clients)
    risk = read_risk_list(result.path)
    assert sorted(risk["corporation"]) == sorted(["Acme, Inc.", "plain", 'say "hi"', "Öl AG"])
    assert result.rows == 4 and result.source == clients


def test_bad_row_in_a_later_chunk_is_named_by_its_row_in_the_file(deployed, tmp_path):
    rows = client_rows(150, seed=4)
    rows[136] = "bad,12,abc,3,0"
    clients = write_csv(tmp_path / "clients.csv", rows)
    with pytest.raises(DataError, match=r'clients.csv has "abc" in column "lastyear_activity" at row 137'):
        reporting.risk_scores(deployed, clients, chunk_rows=50)
    assert not (deployed.output_model_folder / RISK_SCORES).exists()


@pytest.mark.parametrize(("content", "message"), [
    ("", "is empty"),
    ("corporation,lastmonth_activity,lastyear_activity,number_of_employees\n", "header but no rows"),
    ("corporation,lastmonth_activity,lastyear_activity\nx,1,2\n", 'missing the column "number_of_employees"'),
    ("corporation;lastmonth_activity\nx;1\n", "separator"),
])
def test_unusable_clients_file_is_one_sentence(deployed, tmp_path, content, message):
    clients = tmp_path / "clients.csv"
    clients.write_text(content)
    with pytest.raises(DataError, match=message):
        reporting.risk_scores(deployed, clients)


def test_progress_shows_only_on_a_terminal(deployed, capsys, monkeypatch):
    reporting.risk_scores(deployed, chunk_rows=50)
    assert "scoring" not in capsys.readouterr().err
    monkeypatch.setattr(reporting.sys.stderr, "isatty", lambda: True)
    reporting.risk_scores(deployed, chunk_rows=50)
    assert "\rscoring finaldata.csv: 200 rows" in capsys.readouterr().err


def test_scorer_matches_predict_proba(deployed):
    _, model = deployed_model(deployed)
    features = features_of(read_client_csv(deployed.final_data_file))
    scorer = reporting.Scorer(model)
    assert scorer.linear
    assert scorer.probability(scorer.key(features)) == pytest.approx(model.predict_proba(features)[:, 1],
                                                                     rel=1e-12, abs=1e-15)


# --- Ranking and writing, property-based -----------------------------------------------------
keys_strategy = st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                                   st.sampled_from([0.0, -0.0, 1.5, -2.0, 1e-300])), max_size=300)


@settings(max_examples=200, deadline=None)
@given(keys_strategy)
def test_rank_order_is_a_stable_descending_argsort(keys):
    keys = np.array(keys, dtype=np.float64)
    assert reporting.rank_order(keys).tolist() == np.argsort(-keys, kind="stable").tolist()


def test_rank_order_settles_keys_closer_than_its_cut():
    keys = 1.0 + np.array([0, 3, 1, 2, 0, 3]) * 1e-15  # equal in their leading bits, not equal
    assert reporting.rank_order(keys).tolist() == np.argsort(-keys, kind="stable").tolist()


ids_strategy = st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12),
                        min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(ids_strategy, st.integers(min_value=1, max_value=10**7), st.data())
def test_render_rows_writes_what_a_csv_writer_would(tmp_path_factory, ids, first_rank, data):
    probabilities = data.draw(st.lists(st.floats(min_value=0, max_value=1), min_size=len(ids),
                                       max_size=len(ids)))
    scored = reporting.ScoredRows(tmp_path_factory.getbasetemp())
    try:
        scored.add(ids[: len(ids) // 2], np.zeros(len(ids) // 2))
        scored.add(ids[len(ids) // 2:], np.zeros(len(ids) - len(ids) // 2))
        blob, ends = scored.read_ids()
    finally:
        scored.close()
    rows = np.arange(len(ids))
    starts = ends[rows] + 1
    micros = np.rint(np.array(probabilities) * 10**reporting.DECIMALS).astype(np.uint32)
    text = bytes(reporting.render_rows(first_rank, blob, starts, ends[rows + 1] - starts, micros,
                                       b",v1\n")).decode("utf-8")
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed == [[str(first_rank + i), ids[i], f"{m / 10**reporting.DECIMALS:.6f}", "v1"]
                      for i, m in enumerate(micros.tolist())]


# --- Numbering, history and drift helpers ----------------------------------------------------
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


@pytest.mark.parametrize("setup", ["missing", "no table", "other columns", "not sqlite"])
def test_run_history_is_read_defensively(tmp_path, setup):
    path = tmp_path / RUN_HISTORY
    if setup == "no table":
        sqlite3.connect(path).close()
    elif setup == "other columns":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE runs (started_at TEXT, f1_new_data REAL)")
            db.execute("INSERT INTO runs VALUES ('2026-01-01T00:00:00Z', 0.5)")
    elif setup == "not sqlite":
        path.write_text("this is not a database")
    history = reporting.run_history(tmp_path)
    if setup == "other columns":
        assert history == [{"started_at": "2026-01-01T00:00:00Z", "f1_new_data": 0.5, "baseline": None,
                            "decision": None, "drift_verdict": None, "version_before": None,
                            "version_after": None}]
    else:
        assert history == []


def test_deployment_history_lists_each_release_oldest_first(deployed):
    publish.deploy_records(deployed)
    history = reporting.deployment_history(deployed.prod_deployment_folder)
    assert [item["kind"] for item in history] == ["model", "records"]
    assert len(reporting.model_deployments(history)) == 1
    manifest = json.loads((deployed.prod_deployment_folder / MANIFEST).read_text())
    assert history[-1]["deployed_at"] == manifest["deployed_at"]


def test_population_stability_sees_a_shift_and_nothing_else():
    rng = np.random.default_rng(0)
    reference = rng.lognormal(4, 1, 5000)
    assert reporting.population_stability(reference, rng.lognormal(4, 1, 5000)) < 0.02
    assert reporting.population_stability(reference, rng.lognormal(5, 1, 5000)) > 0.25


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
