"""Tests of reporting.py and what it writes through riskcore: the ranked risk list (riskcore.report.call_list),
the confusion matrix image (riskcore.report.charts), the PDF report and its numbering (riskcore.report.pdf,
riskcore.report.writer), and the command as a user runs it."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
import subprocess
import sys
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
from conftest import HEADER, ROOT, client_rows, deploy_pipeline, run_script, system_missing, write_config, write_csv
from riskcore.config import Config, load_config
from riskcore.contract import EXIT_FAILED, FEATURE_LABELS, FEATURES, MANIFEST, RISK_SCORES, RUN_HISTORY, DataError
from riskcore.data.client_csv import read_client_csv
from riskcore.data.validation import features_of
from riskcore.formatting import psi_figure
from riskcore.model.drift import data_drift, psi
from riskcore.model.reasons import REASON_COLUMNS
from riskcore.ops.history import history_json, read_history, record_run
from riskcore.release import publish
from riskcore.release.load import deployed_metadata, deployment_history, load_deployed_model, require_deployment
from riskcore.report import call_list, pdf
from riskcore.report.charts import model_deployments, png_bytes, reliability_chart, trend_chart
from riskcore.report.outputs import serve_command, where_to_look
from riskcore.report.statistics import read_ingested
from riskcore.report.writer import drift_evidence

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


def test_pdf_opens_with_the_managers_pages_then_the_evidence_with_every_section_where_expected(reported):
    config, paths = reported
    pages = [squeeze(text) for text in pdf_pages(paths["summary_report"])]
    managers = next(n for n, page in enumerate(pages) if pdf.SECTIONS["headline"] in page)  # the evidence's first
    # The evidence flows from section to section, in this order, with no page left mostly empty by a page break:
    # with a break before each group the bundled data's evidence took 6 pages (now 4), this project's 4 (still 4).
    order = ["headline", "trend", "matrix", "summary", "distributions", "calls", "missing", "timings", "dependencies",
             "ingestion"]
    # The estimates' section is drawn only for a history that estimated a window (test_the_pdf_gives_the_estimate...)
    assert set(order) | {"clients", "estimates"} == set(pdf.SECTIONS)
    assert pdf.SECTIONS["estimates"] not in " ".join(pages)
    assert pdf.SECTIONS["clients"] in pages[0]
    first_page = [next(n for n, page in enumerate(pages) if pdf.SECTIONS[key] in page) for key in order]
    assert first_page == sorted(first_page) and first_page[0] == managers
    assert managers >= 1 and len(pages) <= managers + 4
    calls = " ".join(pages[:managers])  # the managers' pages: this cycle's calls, and no model evidence
    assert "F1" not in calls and "KS" not in calls
    listed = read_risk_list(paths["risk_scores"])["corporation"]
    assert all(f" {client} " in calls for client in listed.head(config.reporting["calls_per_cycle"]))
    assert all(f"page {n} of {len(pages)}" in text for n, text in enumerate(pages, start=1))


def drawn_edges(path: Path) -> list[tuple[int, float, float]]:
    """Each page's leftmost and rightmost point of what it fills: table cells and boxes (re), charts (images, Do)."""
    from pypdf import PdfReader

    edges = []
    for number, page in enumerate(PdfReader(path).pages, start=1):
        xs: list[float] = []

        def visit(operator, operands, cm, tm, xs=xs):
            if operator == b"re":
                x, y, w, _ = (float(v) for v in operands)
                xs.extend(cm[0] * v + cm[2] * y + cm[4] for v in (x, x + w))
            elif operator == b"Do":  # an image fills the unit square the matrix maps
                xs.extend((cm[4], cm[4] + cm[0]))

        page.extract_text(visitor_operand_before=visit)
        edges.append((number, min(xs), max(xs)))
    return edges


def test_every_table_box_and_chart_stays_within_the_pages_margins(reported):
    """The text runs 18 mm from each edge, as the footer does; full-width tables and charts ran 6 pt past the right
    margin, 12 pt past the text (ReportLab's frame pads its content by 6 pt: the widths ignored it)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm

    _, paths = reported
    edges = drawn_edges(paths["summary_report"])
    assert edges and all(18 * mm - 0.5 <= left and right <= A4[0] - 18 * mm + 0.5 for _, left, right in edges), edges
    assert max(right for _, _, right in edges) > A4[0] - 18 * mm - 1  # the widest table reaches the margin


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


def test_without_a_recorded_check_the_report_computes_the_automations_figures(reported):
    """One PSI: with no PSI or KS in the history, the report's figures are riskcore.model.drift.data_drift's, the
    automation's own function and threshold, on the deployed model's training data and the ingested data."""
    config, paths = reported
    current, _ = deployed_model(config)
    metadata = deployed_metadata(current)
    profile = metadata["training_profile"]
    newest = read_ingested(config)
    runs = read_history(config.output_model_folder / RUN_HISTORY)
    shown = drift_evidence(config, current, metadata, runs, None, newest)
    automation = data_drift(newest, profile, float(config.automation["psi_threshold"]),
                            float(config.automation["ks_alpha"]))
    assert not shown.recorded and shown.check["decision"] == "no drift: model kept"
    assert shown.model_version == current.model_version and shown.reference == profile["quantiles"]
    assert shown.figures == automation["features"]
    text = squeeze(" ".join(pdf_pages(paths["summary_report"])))
    assert "No PSI or KS is recorded" in text
    for feature in FEATURES:
        figures = automation["features"][feature]
        expected = psi(np.asarray(newest[feature].to_numpy(), dtype="float64"), profile["quantiles"][feature])
        assert figures["psi"] == round(expected, 4)
        # The PSI as every output writes it (formatting.psi_figure: under a 'stable' or 'some shift' reading never
        # rounded up to the threshold it is below)
        assert f"{FEATURE_LABELS[feature]} {psi_figure(figures['psi'], figures['psi_label'])} {figures['psi_label']}" \
            in text


def test_risk_list_holds_every_client_who_has_not_left_sorted_and_in_range(reported):
    config, paths = reported
    _, model = deployed_model(config)
    final = pd.read_csv(config.final_data_file, dtype={"corporation": str})
    stayed = final[final["exited"] == 0]
    risk = read_risk_list(paths["risk_scores"])
    assert list(risk.columns) == list(call_list.COLUMNS)
    assert len(final) == 220 and 0 < len(risk) == len(stayed) < len(final)
    assert sorted(risk["corporation"]) == sorted(stayed["corporation"])
    assert risk["rank"].tolist() == list(range(1, len(risk) + 1))
    assert risk["probability"].between(0, 1).all()
    assert (np.diff(risk["probability"].to_numpy()) <= 0).all()
    expected = dict(zip(stayed["corporation"], model.predict_proba(features_of(stayed))[:, 1], strict=True))
    assert risk["probability"].to_numpy() == pytest.approx(
        [expected[c] for c in risk["corporation"]], abs=5e-7)


# --- The risk list on its own ----------------------------------------------------------------
def test_risk_list_is_a_stable_ranking_by_the_models_log_odds(deployed):
    """Row for row what a stable descending argsort of decision_function gives over the clients who have not
    left, with its log-odds (scored in batches: equal to the last bit or two) and probabilities to 6 decimals."""
    _, model = deployed_model(deployed)
    final = pd.read_csv(deployed.final_data_file, dtype={"corporation": str})
    stayed = final[final["exited"] == 0].reset_index(drop=True)
    keys = model.decision_function(features_of(stayed))
    order = np.argsort(-keys, kind="stable")
    probabilities = model.predict_proba(features_of(stayed))[:, 1]
    result = call_list.risk_scores(deployed)
    with open(result.path, newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == list(call_list.COLUMNS)
    assert [line[:2] for line in lines[1:]] == [[str(rank), stayed["corporation"][row]]
                                                for rank, row in enumerate(order, start=1)]
    assert [float(line[3]) for line in lines[1:]] == pytest.approx(keys[order].tolist(), rel=1e-12, abs=1e-12)
    assert [float(line[2]) for line in lines[1:]] == pytest.approx(probabilities[order].tolist(), abs=5e-7)


def test_probability_is_scikit_learns_predict_proba(deployed):
    _, model = deployed_model(deployed)
    features = features_of(read_client_csv(deployed.final_data_file))
    key = pl.Series(model.decision_function(features))
    assert call_list.probability(key).to_numpy() == pytest.approx(model.predict_proba(features)[:, 1],
                                                                 rel=1e-12, abs=1e-15)


def rank_in_memory(model, ids: list[str], rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    """The pure core on an in-memory frame: score, keep each client's last row, rank, tabulate."""
    clients = pl.LazyFrame({"corporation": ids, **{f: [r[i] for r in rows] for i, f in enumerate(FEATURES)},
                            "exited": [None] * len(ids)},
                           schema={"corporation": pl.String, **dict.fromkeys(FEATURES, pl.Int64), "exited": pl.Int64})
    return call_list.risk_table(call_list.rank_clients(clients, model, "clients").frame, None).collect()


def test_saturated_probabilities_still_rank_by_log_odds():
    """Clients whose probability rounds to 1.0 keep the order of their log-odds, not of the file."""
    model = LogisticRegression().fit(np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], dtype=float),
                                     np.array([0, 0, 1, 1]))
    rows = [(10_000, 0, 0), (30_000, 0, 0), (20_000, 0, 0), (0, 0, 0)]
    table = rank_in_memory(model, ["low", "top", "mid", "none"], rows)
    assert table["corporation"].to_list() == ["top", "mid", "low", "none"]
    assert table["probability"].to_list()[:3] == [1.0, 1.0, 1.0]
    assert table["log_odds"].to_list() == sorted(table["log_odds"].to_list(), reverse=True)
    assert table["log_odds"].n_unique() == 4
    assert table["rank"].to_list() == [1, 2, 3, 4]


ids_strategy = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
                       min_size=1, max_size=10).filter(lambda text: text.strip(" ") == text and text.strip())


@pytest.fixture(scope="module")
def tie_model() -> LogisticRegression:
    """A model of few distinct scores, fitted once: every generated example is ranked by it."""
    return LogisticRegression().fit(np.array([[0, 0, 0], [3, 3, 3], [0, 3, 0], [3, 0, 3]], dtype=float),
                                    np.array([1, 0, 1, 0]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(ids_strategy, st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
                min_size=1, max_size=60))
def test_ranking_is_stable_and_the_csv_round_trips(tmp_path_factory, tie_model, clients):
    """Many ties (few distinct features), repeated and awkward ids: each client once, on its last row; file
    order on ties; ids read back as written."""
    model = tie_model
    ids = [c[0] for c in clients]
    rows = [c[1:] for c in clients]
    table = rank_in_memory(model, ids, rows)
    last = [i for i, client in enumerate(ids) if client not in ids[i + 1:]]
    # Each client's log-odds is scikit-learn's (to the last bits: a matrix product's rounding depends
    # on the batch), and the list is ordered by the log-odds it shows, equal ones in file order.
    shown = dict(zip(table["corporation"].to_list(), table["log_odds"].to_list(), strict=True))
    expected = model.decision_function(np.array([rows[i] for i in last], dtype=float))
    assert [shown[ids[i]] for i in last] == pytest.approx(expected.tolist(), rel=1e-12, abs=1e-12)
    order = sorted(last, key=lambda i: (-shown[ids[i]], i))
    assert table["corporation"].to_list() == [ids[i] for i in order]
    assert table.select(FEATURES).rows() == [tuple(rows[i]) for i in order]
    path = tmp_path_factory.mktemp("csv") / "risk.csv"
    table.write_csv(path, float_scientific=False)
    with open(path, newline="", encoding="utf-8") as handle:
        parsed = list(csv.reader(handle))[1:]
    assert [line[1] for line in parsed] == [ids[i] for i in order]


def test_the_top_clients_are_the_riskiest_who_have_not_left(deployed, tmp_path):
    """The clients the model finds riskiest have left: the top and the list hold the riskiest of the others."""
    gone = [f"gone{i},0,0,1,1" for i in range(50)]
    stay = [f"stay{i},{100 + i},1200,50,0" for i in range(100)]
    clients = write_csv(tmp_path / "clients.csv", gone[:25] + stay + gone[25:], header=HEADER)
    result = call_list.risk_scores(deployed, clients)
    assert [c["corporation"] for c in result.top] == [f"stay{i}" for i in range(deployed.reporting["calls_per_cycle"])]
    listed = read_risk_list(result.path)["corporation"].tolist()
    assert listed == [f"stay{i}" for i in range(100)]
    assert (result.rows, result.left) == (100, 50)


def test_the_report_lists_this_cycles_calls_up_to_its_most(deployed, tmp_path):
    """A cycle of 250 calls: the report's table holds the first REPORT_CALLS (200) of them and says so."""
    import dataclasses

    clients = write_csv(tmp_path / "clients.csv", [f"c{i},{i % 90},{600 + i},{5 + i % 40},0" for i in range(300)],
                        header=HEADER)
    config = dataclasses.replace(deployed, reporting={**deployed.reporting, "calls_per_cycle": 250})
    result = call_list.risk_scores(config, clients)
    assert (len(result.top), result.calls, call_list.REPORT_CALLS) == (200, 250, 200)
    assert [c["corporation"] for c in result.top] == read_risk_list(result.path)["corporation"].head(200).to_list()


def test_equal_clients_keep_file_order_across_many_batches(deployed, tmp_path):
    """300,000 clients of equal risk (several streaming batches): the list and its top are the file's order."""
    clients = tmp_path / "clients.csv"
    clients.write_text(CLIENT_HEADER + "\n" + "".join(f"c{i},5,60,7\n" for i in range(300_000)), encoding="utf-8")
    result = call_list.risk_scores(deployed, clients)
    ranked_ids = pl.read_csv(result.path, schema_overrides={"corporation": pl.String})["corporation"]
    assert ranked_ids.to_list() == [f"c{i}" for i in range(300_000)]
    assert [c["corporation"] for c in result.top] == [f"c{i}" for i in range(deployed.reporting["calls_per_cycle"])]
    assert all([c[f] for f in FEATURES] == [5, 60, 7] for c in result.top)


def test_top_clients_are_the_head_of_the_risk_list(deployed):
    result = call_list.risk_scores(deployed)
    head = read_risk_list(result.path).head(deployed.reporting["calls_per_cycle"])
    assert [c["corporation"] for c in result.top] == head["corporation"].tolist()
    assert [c["rank"] for c in result.top] == head["rank"].tolist()
    assert [round(c["probability"], 6) for c in result.top] == head["probability"].tolist()
    assert [c["log_odds"] for c in result.top] == head["log_odds"].tolist()
    written = head[list(REASON_COLUMNS)].fillna("").values.tolist()
    assert [[r["text"] for r in c["reasons"]] for c in result.top] == [[w for w in row if w] for row in written]
    final = pd.read_csv(deployed.final_data_file, dtype={"corporation": str}).set_index("corporation")
    for client in result.top:
        assert [client[f] for f in FEATURES] == final.loc[client["corporation"]].tolist()[:3]


def test_clients_file_without_label_and_with_awkward_ids(deployed, tmp_path):
    clients = tmp_path / "clients.csv"
    clients.write_text('corporation,lastmonth_activity,lastyear_activity,number_of_employees\n'
                       '"Acme, Inc.",0,5000,300\nplain,400,4800,10\n"say ""hi""",50,900,40\nÖl AG,10,100,2\n'
                       '"two\nlines",7,70,7\n',
                       encoding="utf-8")
    result = call_list.risk_scores(deployed, clients)
    risk = read_risk_list(result.path)
    assert sorted(risk["corporation"]) == sorted(["Acme, Inc.", "plain", 'say "hi"', "Öl AG", "two\nlines"])
    assert result.rows == 5 and result.source == clients


@pytest.mark.parametrize(("content", "values"), [
    (f"{CLIENT_HEADER}\n  spaced ,  12 ,+130, 4\n", ("spaced", 12, 130, 4)),  # the one id rule: blanks stripped
    (f'{CLIENT_HEADER}\n"quoted","12","130","4"\n', ("quoted", 12, 130, 4)),
    (f"\ufeff{CLIENT_HEADER}\r\nbom,12,130,4\r\n\r\n", ("bom", 12, 130, 4)),
    (f"{HEADER}\nlabelled,12,130,4,0\n", ("labelled", 12, 130, 4)),
    (f"{HEADER}\nlabel to come,12,130,4,\n", ("label to come", 12, 130, 4)),
    (f"{HEADER}\nspaced label,12,130,4, 0 \n", ("spaced label", 12, 130, 4)),
])
def test_harmless_variants_are_read_as_the_plain_row(deployed, tmp_path, content, values):
    clients = tmp_path / "clients.csv"
    clients.write_bytes(content.encode("utf-8"))
    result = call_list.risk_scores(deployed, clients)
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
    before = call_list.risk_scores(deployed).path.read_bytes()
    rows = [",".join(r.split(",")[:4]) for r in client_rows(150, seed=4)]
    rows[136] = bad
    rows.insert(60, "")  # a blank line is not a row: the numbering skips it
    clients = write_csv(tmp_path / "clients.csv", rows, header=CLIENT_HEADER)
    with pytest.raises(DataError, match=f"^clients.csv {message}"):
        call_list.risk_scores(deployed, clients)
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
        call_list.risk_scores(deployed, clients)
    assert str(caught.value).startswith("clients.csv ") and "\n" not in str(caught.value)


# --- Numbering and history -------------------------------------------------------------------
@pytest.fixture(scope="module")
def reported_twice(tmp_path_factory) -> dict:
    """A deployed project without diagnostics or history, reported on twice; what each step left, kept as it was."""
    from conftest import make_project

    config = deploy_pipeline(load_config(make_project(tmp_path_factory.mktemp("twice"))))
    before = where_to_look(config)
    first = reporting.run(config)
    first_bytes = {key: path.read_bytes() for key, path in first.items() if key != "risk_scores"}
    first_text = squeeze(" ".join(pdf_pages(first["summary_report"])))
    second = reporting.run(config)
    return {"config": config, "before": before, "after": where_to_look(config), "first": first,
            "first_bytes": first_bytes, "first_text": first_text, "second": second}


def test_later_runs_are_numbered_and_never_overwrite(reported_twice):
    config, first, first_bytes, second = (reported_twice[k] for k in ("config", "first", "first_bytes", "second"))
    assert second["confusion_matrix"].name == "confusionmatrix2.png"
    assert second["summary_report"].name == "summary_report2.pdf"
    assert {key: first[key].read_bytes() for key in first_bytes} == first_bytes
    chosen = reporting.run(config, run_number=7)
    assert (chosen["confusion_matrix"].name, chosen["summary_report"].name) == (
        "confusionmatrix7.png", "summary_report7.pdf")
    assert {key: first[key].read_bytes() for key in first_bytes} == first_bytes
    assert sorted(p.name for p in config.output_model_folder.glob("summary_report*")) == [
        "summary_report.pdf", "summary_report2.pdf", "summary_report7.pdf"]
    assert not list(config.output_model_folder.glob(".*"))  # no temporary file left behind


def test_report_without_diagnostics_or_history_says_so(reported_twice):
    text = reported_twice["first_text"]
    assert "Not measured yet" in text and "Not checked yet" in text
    assert "Only one deployment and no drift check so far" in text


def test_trend_counts_each_model_once_across_records_only_releases(deployed):
    publish.deploy_records(deployed)
    history = deployment_history(deployed.prod_deployment_folder)
    assert [item["kind"] for item in history] == ["model", "records"]
    assert model_deployments(history) == history[:1]
    manifest = json.loads((deployed.prod_deployment_folder / MANIFEST).read_text())
    assert history[-1]["deployed_at"] == manifest["deployed_at"]


# --- The evidence: the drift check behind a report, figures on few rows, the trend's dates -----
def drifted_rows(n: int, seed: int) -> list[str]:
    """A market that moved: far more activity and staff than the training data, labels the model gets wrong."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        month = int(rng.integers(500, 1500))
        rows.append(f"n{seed:02d}{i:04d},{month},{int(month * 12 * rng.uniform(0.8, 1.2))},"
                    f"{int(rng.integers(2000, 6000))},{int(rng.random() < 0.6)}")
    return rows


def run_automation(config: Config) -> int:
    """One tick of the automation in this process, its reports written as the real run writes them."""
    from riskcore.ops.tick import tick
    from riskcore.report.writer import write_reports

    return tick(config, lambda conf, run: write_reports(conf, run_number=run.run_number))


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """A deployed project whose next delivery has drifted: the automation retrains, holding 20% of it out, and
    reports."""
    from conftest import make_project, write_config

    root = tmp_path_factory.mktemp("retrained")
    make_project(root)  # the course's rule, asked to hold rows out (it holds none by default)
    config = deploy_pipeline(load_config(write_config(root, automation={"holdout_share": 0.2})))
    before = require_deployment(config.prod_deployment_folder).model_version
    write_csv(config.input_folder / "dataset3.csv", drifted_rows(300, seed=7))
    assert run_automation(config) == 0
    [run] = read_history(config.output_model_folder / RUN_HISTORY)
    assert run["decision"] == "retrain" and run["version_before"] == before != run["version_after"]
    return config, run


def test_report_after_a_retrain_shows_the_drift_that_caused_it(retrained):
    """The distributions page compares the old model's training data with the new rows, as the drift check
    did: the drifted features show their PSI above the threshold, not the new model against itself."""
    config, run = retrained
    text = squeeze(" ".join(pdf_pages(config.output_model_folder / "summary_report.pdf")))
    threshold = config.automation["psi_threshold"]
    figures = run["data_drift"]["features"]
    drifted = [feature for feature, f in figures.items() if f["psi"] >= threshold]
    assert drifted, "the delivery was meant to drift"
    for feature in drifted:
        assert f"{FEATURE_LABELS[feature]} {figures[feature]['psi']:.3f} drift" in text
    assert f"Drift check that led to this report (run {run['run_number']}, {run['started_at']})" in text
    # the verdict gives the F1 and the baseline, said once: "model m on the 10,000 labelled new rows: F1 0.3464 on..."
    assert squeeze(f"model {run['version_before']} on the {run['window_rows']:,} labelled new rows: "
                   f"{run['drift_verdict']}; decision: retrain") in text
    assert text.count(f"F1 {run['f1_new_data']:.4f}") == 1
    assert f"the training data of model {run['version_before']} against the new rows" in text
    assert f"replaced by {run['version_after']}" in text


def test_the_headline_points_to_sections_that_come_after_it_by_their_titles(retrained):
    """The walk: the headline said "Data drift ... (page 3)" and "Old and new model ... (page 3)" on page 4 of a run
    whose drift table was on page 6 and retrain table on page 7; the evidence flows, so no page number holds."""
    drift_section, retrain_section = pdf.SECTIONS["distributions"], "The retrain: old and new model on the same data"
    config, _ = retrained
    pages = [squeeze(text) for text in pdf_pages(config.output_model_folder / "summary_report.pdf")]
    headline = next(n for n, page in enumerate(pages) if pdf.SECTIONS["headline"] in page)
    said = pages[headline].split(pdf.SECTIONS["headline"], 1)[1]
    for number in re.findall(r"\(page (\d+)\)", said):  # a page number, if any, must be where the section is
        assert any(title in pages[int(number) - 1] for title in (drift_section, retrain_section)), number
    for title in (drift_section, retrain_section):
        assert f"(see “{title.split(':')[0]}” below)" in said
        assert title in " ".join([said, *pages[headline + 1:]])  # the section itself, after the headline


def test_the_trend_note_counts_one_run_in_the_singular(retrained):
    """The walk's first report read "from the run history (runhistory.sqlite, 1 runs)"."""
    config, _ = retrained
    text = squeeze(" ".join(pdf_pages(config.output_model_folder / "summary_report.pdf")))
    assert f"({RUN_HISTORY}, 1 run)." in text and "1 runs" not in text


def test_report_after_a_retrain_compares_old_and_new_model_on_the_same_data(retrained):
    config, run = retrained
    text = squeeze(" ".join(pdf_pages(config.output_model_folder / "summary_report.pdf")))
    held, test = run["evaluation"]["holdout"], run["evaluation"]["test_data"]
    for name, figures in (("held-out new rows", held), ("testdata.csv", test)):
        old, new = figures["old"], figures["new"]
        low, high = old["f1_interval"]
        assert f"{name} {old['rows']} {old['f1']:.3f} [{low:.2f}, {high:.2f}] {new['f1']:.3f}" in text
    assert f"F1 {held['old']['f1']:.4f} before the retrain, {held['new']['f1']:.4f} after it" in text
    assert "bootstrap 95% intervals (1,000 resamples, seeded)" in text


def test_the_history_in_json_has_both_models_holdout_figures_with_intervals(retrained):
    config, run = retrained
    [stored] = json.loads(history_json(read_history(config.output_model_folder / RUN_HISTORY)))
    held = stored["evaluation"]["holdout"]
    assert held["share"] == 0.2 and held["old"]["rows"] == held["new"]["rows"] == 60  # 20% of 300 new rows
    for model in ("old", "new"):
        for metric in ("f1", "auc"):
            low, high = held[model][f"{metric}_interval"]
            assert low <= held[model][metric] <= high
    assert stored["evaluation"]["old_model"] == run["version_before"]
    assert stored["evaluation"]["new_model"] == run["version_after"]
    # The release carries the same figures in its metadata.
    current = require_deployment(config.prod_deployment_folder)
    assert deployed_metadata(current)["evaluation"] == stored["evaluation"]
    assert deployed_metadata(current)["training_rows"] == 220 + 300 - 60  # the held-out rows were not trained on


def test_after_a_retrain_the_chart_compares_the_old_models_training_data(retrained):
    config, run = retrained
    current = require_deployment(config.prod_deployment_folder)
    metadata = deployed_metadata(current)
    history = deployment_history(config.prod_deployment_folder)
    evidence = drift_evidence(config, current, metadata, read_history(config.output_model_folder / RUN_HISTORY),
                              run["run_number"], read_ingested(config))
    old_release = next(item["release"] for item in history if item["model_version"] == run["version_before"])
    from riskcore.release.load import read_release

    old = deployed_metadata(read_release(config.prod_deployment_folder, old_release))
    assert evidence.recorded and evidence.model_version == run["version_before"]
    assert evidence.reference == old["training_profile"]["quantiles"] != metadata["training_profile"]["quantiles"]
    assert evidence.figures == run["data_drift"]["features"]


@pytest.mark.slow  # 1-2.6 s: in make test, out of make test-fast's minute
def test_a_keep_run_names_its_drift_check_the_same_way(deployed):
    write_csv(deployed.input_folder / "dataset3.csv", client_rows(80, seed=5, noise=0.0))
    assert run_automation(deployed) == 0
    [run] = read_history(deployed.output_model_folder / RUN_HISTORY)
    assert run["decision"] == "keep"
    text = squeeze(" ".join(pdf_pages(deployed.output_model_folder / "summary_report.pdf")))
    assert f"model {run['version_before']} on the " in text and squeeze(f": {run['drift_verdict']}; decision: keep") in text
    assert f"F1 {run['f1_new_data']:.4f}" in run["drift_verdict"]  # the F1 said once, in the verdict
    for feature, figures in run["data_drift"]["features"].items():
        # The PSI as every output writes it (formatting.psi_figure: under a 'stable' or 'some shift' reading never
        # rounded up to the threshold it is below)
        assert f"{FEATURE_LABELS[feature]} {psi_figure(figures['psi'], figures['psi_label'])} {figures['psi_label']}" \
            in text


def test_a_test_set_under_30_rows_is_marked_and_an_auc_below_half_called_out(deployed):
    """Five test clients the model ranks backwards: the figures are marked as few, the AUC as worse than chance."""
    rows = ["t1,0,0,400,0", "t2,10,50,450,0", "t3,390,4600,1,1", "t4,350,4000,3,1", "t5,380,4400,2,0"]
    write_csv(deployed.test_data_file, rows)
    text = squeeze(" ".join(pdf_pages(reporting.run(deployed)["summary_report"])))
    assert "F1 on the test data (5 rows: fewer than 30)" in text
    assert "Measured on 5 rows, fewer than 30" in text
    assert "below 0.5" in text and "worse than chance" in text


def test_a_test_set_of_30_rows_or_more_is_not_marked(reported_twice):
    text = reported_twice["first_text"]  # testdata.csv: 60 rows
    assert "fewer than 30" not in text and "worse than chance" not in text


@pytest.mark.parametrize(("times", "label", "pattern"), [
    (["2026-11-26T07:06:11Z", "2026-11-26T07:06:24Z", "2026-11-26T07:06:29Z"],
     "time (UTC) on 26 Nov 2026", r"^07:(0[1-9]|1[01])$"),  # seconds apart: the ten minutes around them
    (["2026-11-26T07:00:00Z", "2026-11-26T07:40:00Z"], "time (UTC) on 26 Nov 2026", r"^\d\d:\d\d$"),
    (["2026-11-26T01:00:00Z", "2026-11-27T13:00:00Z"], "date (UTC)", r"^\d\d [A-Z][a-z]{2} \d\d:\d\d$"),
    (["2026-11-01T00:00:00Z", "2026-11-20T00:00:00Z"], "date (UTC)", r"^\d\d [A-Z][a-z]{2}$"),
    (["2025-01-01T00:00:00Z", "2026-06-01T00:00:00Z"], "date (UTC)", r"^[A-Z][a-z]{2} \d{4}$"),
])
def test_trend_chart_dates_are_readable(times, label, pattern):
    import re

    deployments = [{"deployed_at": t, "model_version": f"v{i}", "score": 0.6, "kind": "model"}
                   for i, t in enumerate(times[:-1])]
    runs = [{"started_at": times[-1], "f1_new_data": 0.4, "baseline": 0.6}]
    figure = trend_chart(deployments, runs, times[-1])
    figure.canvas.draw()
    [axes] = figure.axes
    ticks = [tick.get_text() for tick in axes.get_xticklabels() if tick.get_text()]
    assert len(ticks) >= 2 and all(re.match(pattern, tick) for tick in ticks), ticks
    assert axes.get_xlabel() == label and axes.xaxis.get_offset_text().get_text() == ""


def test_trend_chart_labels_the_data_each_point_was_measured_on():
    """A correct retrain reads as one: the test data's F1 and the held-out new rows' F1 are labelled apart."""
    figures = {"rows": 60, "f1": 0.5, "f1_interval": [0.55, 0.7], "auc": 0.7}  # an interval beside its point
    deployments = [{"deployed_at": "2026-01-01T00:00:00Z", "model_version": "v1", "score": 0.69, "kind": "model"},
                   {"deployed_at": "2026-02-01T00:00:00Z", "model_version": "v2", "score": 0.51, "kind": "model"}]
    runs = [{"started_at": "2026-02-01T00:00:00Z", "f1_new_data": 0.35, "baseline": 0.69,
             "evaluation": {"holdout": {"old": {**figures, "f1": 0.35}, "new": figures}}}]
    figure = trend_chart(deployments, runs, "2026-02-02T00:00:00Z", test_rows=5)
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert labels == ["each model deployed: its F1 on the test data, testdata.csv (5 rows: fewer than 30)",
                      "drift check: the deployed model's F1 on the new rows", "baseline the check compared against",
                      "retrain: old model's F1 on the held-out new rows",
                      "retrain: new model's F1 on the held-out new rows"]


def test_trend_chart_follows_the_served_model_through_a_rollback_and_a_roll_forward():
    # The line kept the rolled-back model's F1 (issue 23): it steps to the model served again.
    deployments = [{"deployed_at": "2026-01-01T00:00:00Z", "model_version": "v1", "score": 0.69, "kind": "model"},
                   {"deployed_at": "2026-02-01T00:00:00Z", "model_version": "v2", "score": 0.45, "kind": "model"},
                   {"deployed_at": "2026-02-03T00:00:00Z", "model_version": "v2", "score": 0.45, "kind": "records"}]
    runs = [{"started_at": "2026-02-05T00:00:00Z", "finished_at": "2026-02-05T00:00:01Z", "decision": "rollback",
             "version_before": "v2", "version_after": "v1"},
            {"started_at": "2026-02-07T00:00:00Z", "finished_at": "2026-02-07T00:00:01Z", "decision": "roll-forward",
             "version_before": "v1", "version_after": "v2"},
            {"started_at": "2026-02-09T00:00:00Z", "finished_at": "2026-02-09T00:00:01Z", "decision": "rollback",
             "version_before": "v2", "version_after": "v1"}]
    figure = trend_chart(deployments, runs, "2026-02-10T00:00:00Z")
    [served, *_] = figure.axes[0].get_lines()
    assert list(served.get_ydata()) == [0.69, 0.45, 0.69, 0.45, 0.69, 0.69]  # served now: v1, rolled back to
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert "rollback or roll forward: the model served again" in labels


def test_where_to_look_names_the_newest_report_the_risk_list_and_the_history(reported_twice):
    deployed = reported_twice["config"]
    assert "none yet" in reported_twice["before"]
    lines = reported_twice["after"].splitlines()
    assert lines[0].startswith("Reports:   models/summary_report2.pdf and confusionmatrix2.png beside it (run 2")
    assert lines[1].startswith("Risk list: models/risk_scores.csv")
    assert lines[2].startswith("History:   models/runhistory.sqlite: python fullprocess.py --config config.json "
                               "--history")
    assert lines[3].startswith(f"Web page:  make serve CONFIG={deployed.config_file}, then open http://127.0.0.1:8000/")


def test_serve_command_gives_only_the_settings_make_serve_does_not_default_to():
    bundled, practice = load_config(ROOT / "config.json"), load_config(ROOT / "config.practice.json")
    assert serve_command(bundled) == "make serve"
    assert serve_command(bundled, "127.0.0.1", 8001) == "make serve PORT=8001"
    assert serve_command(practice, "127.0.0.2", 8000) == "make serve CONFIG=config.practice.json HOST=127.0.0.2"


HEAVY = ("pandas", "numpy", "sklearn", "scipy", "polars", "matplotlib", "reportlab")


@pytest.mark.slow
def test_make_run_ends_with_the_outputs_and_the_page_without_importing_heavy_libraries(deployed):
    """tools/lifecycle.sh's last step, run as the script runs it (python -X importtime -c, from the project)."""
    script = (ROOT / "tools" / "lifecycle.sh").read_text(encoding="utf-8")
    step = re.search(r"""^"\$PY" -c '([^']*)' "\$CONFIG" "\$HOST" "\$PORT"$""", script, re.M)
    assert step, "tools/lifecycle.sh has no where-to-look step"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", step.group(1), str(deployed.config_file),
                           "127.0.0.1", "8123"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith(
        f"Web page:  make serve CONFIG={deployed.config_file} PORT=8123, then open http://127.0.0.1:8123/")
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in done.stderr.splitlines()
                if line.startswith("import time:") and "imported package" not in line}
    assert "riskcore" in imported
    assert sorted(imported & set(HEAVY)) == []


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


# --- Ids of any length and any script (issue 21) ----------------------------------------------
LONG_ID = "L" + "0123456789" * 120  # 1,201 characters: ReportLab's LayoutError before it was shortened
JAPANESE_ID = "株式会社テスト"
HEBREW_ID = "עברית בע״מ"  # drawn as it came, left to right, before visual_order: 'מ״עב תירבע'
KOREAN_ID = "한국어회사"  # Droid Sans Fallback draws 3 of the 11,172 Hangul syllables: boxes before fonts-nanum
REPORT_FONTS = {"ReportSans", "ReportHangul", "ReportCJK", "ReportSymbols"}
EMOJI_ID = "Rocket 🚀 Corp 😀"


def pdf_text(path: Path) -> str:
    """The PDF's text as poppler reads it back (pdftotext), as a reader's copy and paste would give it.

    pdftotext runs as a subprocess: the tests that call this are marked slow.
    """
    import shutil
    import subprocess

    if shutil.which("pdftotext") is None:
        system_missing("pdftotext (poppler-utils) is not installed: make system-test-deps")
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True,
                          check=True, timeout=60).stdout


@pytest.mark.slow
def test_ids_of_any_length_and_script_are_in_the_pdf_and_in_full_in_the_risk_list(deployed, tmp_path):
    from riskcore.report.pdf_layout import register_fonts

    if set(register_fonts().coverage) != REPORT_FONTS:
        system_missing("the fallback fonts are not installed: make system-deps")
    clients = tmp_path / "clients.csv"
    clients.write_text(f"{CLIENT_HEADER}\n{LONG_ID},0,5000,300\n{JAPANESE_ID},0,4000,200\n"
                       f'"{EMOJI_ID}",0,3000,100\n{KOREAN_ID},0,3500,150\n{HEBREW_ID},0,3200,120\n'
                       "plain,400,4800,10\n", encoding="utf-8")
    paths = reporting.run(deployed, clients=clients)
    text = pdf_text(paths["summary_report"])
    assert JAPANESE_ID in text and KOREAN_ID in text
    assert HEBREW_ID in text  # drawn right to left, which pdftotext reads back in the order it is written
    assert "🚀" in text and "😀" in text
    assert LONG_ID not in squeeze(text).replace(" ", "")  # shortened, not wrapped over a page
    assert "L0123456789012345678901234" in squeeze(text).replace(" ", "")  # its start, as printed
    assert "shortened here" in squeeze(text) and "cannot be drawn" not in text
    assert set(read_risk_list(paths["risk_scores"])["corporation"]) == {LONG_ID, JAPANESE_ID, EMOJI_ID, KOREAN_ID,
                                                                        HEBREW_ID, "plain"}


@pytest.mark.slow
def test_characters_no_font_draws_are_named_in_a_sentence(deployed, tmp_path, monkeypatch):
    from riskcore.report import pdf_layout

    fonts = pdf_layout.register_fonts()
    without_fallbacks = pdf_layout.Fonts(fonts.regular, fonts.bold, {k: v for k, v in fonts.coverage.items()
                                                                     if k == "ReportSans"})
    monkeypatch.setattr(pdf_layout, "register_fonts", lambda: without_fallbacks)
    clients = tmp_path / "clients.csv"
    clients.write_text(f"{CLIENT_HEADER}\n{JAPANESE_ID},0,4000,200\n", encoding="utf-8")
    text = squeeze(pdf_text(reporting.run(deployed, clients=clients)["summary_report"]))
    assert "7 characters of these ids cannot be drawn with the fonts installed" in text
    assert "installing fonts-nanum, fonts-droid-fallback, fonts-symbola (make system-deps) may draw them" in text


FAMILY_ID = "Family \U0001F468\u200d\U0001F469\u200d\U0001F467 Ltd"
FLAG_ID = "Flag \U0001F1EB\U0001F1F7 SA"
SCOTLAND_ID = "Scot \U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F plc"


@pytest.mark.slow
def test_emoji_sequences_print_as_their_parts_and_the_pdf_says_which(deployed, tmp_path):
    """A family, a flag and a region's flag: ReportLab draws one glyph per character and Symbola joins none of them,
    so the PDF prints their parts (the tags of Scotland's flag, which no font has, as nothing, not as boxes) and its
    note names each sequence by code point; the risk list keeps the ids whole."""
    from riskcore.report.pdf_layout import register_fonts

    if set(register_fonts().coverage) != REPORT_FONTS:
        system_missing("the fallback fonts are not installed: make system-deps")
    clients = tmp_path / "clients.csv"
    clients.write_text(f"{CLIENT_HEADER}\n{FAMILY_ID},0,5000,300\n{FLAG_ID},0,4000,200\n{SCOTLAND_ID},0,3000,100\n",
                       encoding="utf-8")
    paths = reporting.run(deployed, clients=clients)
    text = squeeze(pdf_text(paths["summary_report"]))
    assert ("3 emoji sequences of these ids print as separate symbols (U+1F468 U+200D U+1F469 U+200D U+1F467; "
            "U+1F1EB U+1F1F7; U+1F3F4 U+E0067 U+E0062 U+E0073 U+E0063 U+E0074 U+E007F): the PDF draws one symbol per "
            "character and its emoji font joins none") in text
    assert "print as boxes" not in text and "\U000E0067" not in text  # the tags are left out, not boxes
    assert "\U0001F468" in text and "\U0001F1EB" in text  # the parts are drawn
    assert set(read_risk_list(paths["risk_scores"])["corporation"]) == {FAMILY_ID, FLAG_ID, SCOTLAND_ID}


def test_characters_no_font_draws_are_named_by_code_point():
    from riskcore.report.pdf_layout import register_fonts

    if set(register_fonts().coverage) != REPORT_FONTS:
        system_missing("the fallback fonts are not installed: make system-deps")
    note = pdf.id_note([{"corporation": "บริษัท"}])
    assert "6 characters of these ids cannot be drawn with the fonts installed and print as boxes (U+0E17, U+0E1A, " \
           "U+0E23, U+0E29, U+0E31, U+0E34);" in note  # in code point order


@pytest.mark.parametrize(("logical", "drawn"), [
    ("עברית", "תירבע"),  # Hebrew: right to left
    ("Corp עברית", "Corp תירבע"),  # a right-to-left word in a left-to-right id
    ("سعد", "\ufeaa\ufecc\ufeb3"),  # Arabic: right to left, in the letters' final, medial and initial forms
    ("Zürich 東京", "Zürich 東京"),  # no right-to-left letter: as it is
])
def test_right_to_left_ids_are_drawn_in_their_visual_order(logical, drawn):
    from riskcore.report.pdf_layout import visual_order

    assert visual_order(logical) == drawn


def test_characters_no_report_font_has_are_not_promised_to_an_install():
    """With every font installed, installing them again draws nothing: the note says no font has them (Thai)."""
    from riskcore.report.pdf_layout import register_fonts

    if set(register_fonts().coverage) != REPORT_FONTS:
        system_missing("the fallback fonts are not installed: make system-deps")
    note = pdf.id_note([{"corporation": "บริษัท"}, {"corporation": KOREAN_ID}])
    assert "6 characters of these ids cannot be drawn" in note and "none of the report's fonts has them" in note
    assert "installing" not in note


def test_the_pdf_names_the_test_that_found_a_features_drift():
    """A PSI under the threshold with a KS p-value under alpha: the headline says KS found it."""
    from riskcore.report.pdf_evidence import DriftEvidence, drift_check_lines

    figures = {"lastmonth_activity": {"psi": 0.196, "psi_label": "some shift", "ks_statistic": 0.3,
                                      "ks_p_value": 1e-9, "drift": True},
               "lastyear_activity": {"psi": 0.05, "psi_label": "stable", "ks_statistic": 0.01, "ks_p_value": 0.9,
                                     "drift": False}}
    check = {"run_number": 2, "started_at": "2026-03-01T06:00:00Z", "rows_new": 224, "f1_new_data": 0.41,
             "baseline": 0.69, "decision": "keep", "data_drift": {"drift": True, "features": figures}}
    evidence = DriftEvidence(check=check, recorded=True, model_version="m1", figures=figures, reference={},
                             compared={}, compared_name="the new rows", psi_threshold=0.25, ks_alpha=0.01)
    lines = drift_check_lines(evidence, "m1")
    assert ("<b>Data drift</b> of the new rows from the training data of the checked model: activity last month "
            "PSI 0.196 (some shift), KS 0.300 (p 1e-09): drift by KS (see “Drift check” below).") in lines
    assert "model m1 scored F1 0.4100 on the 224 new rows" in lines[0]


# --- The estimate without labels, the ledger and calibration (issue 20) ------------------------------
RELIABILITY = [{"predicted": 0.1, "observed": 0.08, "rows": 40}, {"predicted": 0.5, "observed": 0.55, "rows": 40},
               {"predicted": 0.9, "observed": 0.85, "rows": 40}]


def test_the_pdf_gives_the_estimate_in_the_evidence_with_estimated_against_realized_and_a_reliability_diagram(
        deployed):
    history = deployed.output_model_folder / RUN_HISTORY
    record_run(history, {"run_id": "settled", "started_at": "2026-02-01T06:00:00Z", "decision": "keep",
                         "outcome": "done", "estimated_f1": 0.7, "estimated_f1_interval": [0.64, 0.75],
                         "estimated_rows": 1200, "window_labelled": 1200, "estimated_baseline": 0.72,
                         "estimated_drift": False, "realized_f1": 0.52, "realized_rows": 1150,
                         "calibration": {"ece": 0.04, "brier": 0.11, "rows": 120, "bins": 10,
                                         "reliability": RELIABILITY}})
    record_run(history, {"run_id": "open", "started_at": "2026-03-01T06:00:00Z", "decision": "keep",
                         "outcome": "done", "estimated_f1": 0.61, "estimated_f1_interval": [0.55, 0.66],
                         "estimated_rows": 3000, "window_labelled": 0, "estimated_baseline": 0.86,
                         "estimated_drift": True})
    pages = [squeeze(text) for text in pdf_pages(reporting.run(deployed)["summary_report"])]
    sentence = "estimated F1 0.61 [0.55, 0.66] on 3,000 unlabelled clients; own-market baseline 0.86"
    assert sentence not in pages[0]  # not the managers' page
    headline = next(text for text in pages if pdf.SECTIONS["headline"] in text)
    assert sentence in headline and "Warning: estimated drift." in headline
    assert "Calibration of the served model's probabilities:" in headline
    text = " ".join(pages)
    assert pdf.SECTIONS["estimates"] in text
    assert "2026-03-01 06:00 UTC 3,000 0.61 [0.55, 0.66] 0.86 yes" in text  # newest first, not realized yet
    assert "2026-02-01 06:00 UTC 1,200 0.70 [0.64, 0.75] 0.72 no 0.52 1,150" in text
    assert "Calibration on 120 labelled rows: ECE 0.040, Brier score 0.110, window of 2026-02-01 06:00 UTC" in text


def test_the_reliability_diagram_draws_one_point_per_bin():
    figure = reliability_chart({"ece": 0.04, "reliability": RELIABILITY}, "2026-02-01")
    [_, curve] = figure.axes[0].get_lines()  # the diagonal, then the bins
    assert list(curve.get_xdata()) == [b["predicted"] for b in RELIABILITY]
    assert list(curve.get_ydata()) == [b["observed"] for b in RELIABILITY]
    assert png_bytes(figure).startswith(b"\x89PNG")


@pytest.mark.slow
def test_the_pdfs_calls_say_what_changed_since_the_last_run(deployed, tmp_path):
    clients = tmp_path / "clients.csv"
    clients.write_text(f"{CLIENT_HEADER}\na,0,0,10\nb,100,1200,10\n", encoding="utf-8")
    first = squeeze(pdf_text(reporting.run(deployed, clients=clients)["summary_report"]))
    assert "no earlier run's ranking is kept yet" in first
    clients.write_text(f"{CLIENT_HEADER}\nb,0,0,10\na,100,1200,10\nc,200,2400,10\n", encoding="utf-8")
    paths = reporting.run(deployed, clients=clients)
    second = squeeze(pdf_text(paths["summary_report"]))
    assert "since last run" in second and "against run 1's" in second
    assert "up 1" in second and "down 1" in second and " new " in f" {second} "


@pytest.mark.slow  # a fresh interpreter of its own: the fonts registered in this process would hide the order
def test_a_fallback_font_is_read_only_when_a_text_needs_it():
    """DejaVu draws the usual report: the CJK and emoji fallbacks (0.15 s to read) are registered at the first
    character DejaVu lacks, in time for the paragraph that shows it."""
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "from reportlab.pdfbase import pdfmetrics\n"
            "from riskcore.report.pdf_layout import escape, register_fonts\n"
            f"if set(register_fonts().coverage) != {REPORT_FONTS!r}: print('skip'); exit()\n"
            "escape('Zürich AG, Ελλάδα'); print(sorted(pdfmetrics.getRegisteredFontNames()))\n"
            "print(escape('東京'), sorted(pdfmetrics.getRegisteredFontNames()))\n")
    lines = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True,
                           timeout=60).stdout.splitlines()
    if lines == ["skip"]:
        system_missing("the fallback fonts are not installed: make system-deps")
    assert "ReportCJK" not in lines[0] and "ReportSymbols" not in lines[0] and "ReportHangul" not in lines[0]
    assert lines[1].startswith('<font name="ReportCJK">東京</font>') and "ReportCJK" in lines[1]
    assert "ReportHangul" not in lines[1]  # Korean's font serves Hangul only: Chinese characters never read it


def test_the_estimates_table_keeps_each_cell_on_one_line(deployed):
    """A month of 10,000 clients and the column headers stay whole: the table's columns fit what they hold."""
    record_run(deployed.output_model_folder / RUN_HISTORY,
               {"run_id": "big", "started_at": "2026-03-01T06:00:00Z", "decision": "keep", "outcome": "done",
                "estimated_f1": 0.59, "estimated_f1_interval": [0.58, 0.61], "estimated_rows": 10000,
                "window_labelled": 10000, "estimated_baseline": 0.69, "estimated_drift": False, "realized_f1": 0.35,
                "realized_rows": 10000})
    text = " ".join(squeeze(page) for page in pdf_pages(reporting.run(deployed)["summary_report"]))
    assert "window clients estimated F1 baseline warning realized F1 labelled" in text
    assert "2026-03-01 06:00 UTC 10,000 0.59 [0.58, 0.61] 0.69 no 0.35 10,000" in text


def test_the_ingestion_record_counts_every_row_read_new_kept_duplicated_or_superseded(deployed):
    """Rows read = kept + duplicates + superseded: a page that said '23,000 read, 11,425 kept after dropping exact
    duplicates' (150 of them) left 11,425 rows unaccounted for; and a grown file's new rows are shown."""
    import ingestion

    ingestion.run(deployed)
    with open(deployed.final_data_file, newline="", encoding="utf-8") as handle:
        client = next(csv.DictReader(handle))["corporation"]  # a client ingested before: its snapshot is superseded
    write_csv(deployed.input_folder / "zz-later.csv", [f"{client},5,60,3,0"] * 2)
    ingestion.run(deployed)
    record = json.loads((deployed.output_folder / "ingestionrecord.json").read_text())
    assert record["superseded"] >= 1 and record["duplicates_dropped"] >= 1
    text = " ".join(squeeze(page) for page in pdf_pages(reporting.run(deployed)["summary_report"]))
    assert (f"{record['rows_kept']:,} kept, one per client ({record['duplicates_dropped']:,} exact duplicates "
            f"dropped, {record['superseded']:,} earlier snapshots superseded by a later one)") in text
    assert "file rows read new rows rows kept duplicates superseded" in text
    assert "zz-later.csv 2 2 1 1 0" in text


def test_the_trend_table_gives_each_model_its_own_market_baseline_beside_the_test_data_f1(deployed):
    """Issue 19: a model retrained for a new market scores less on the old market's test data; beside its own-market
    baseline the table does not read as a decline."""
    metadata = deployed_metadata(require_deployment(deployed.prod_deployment_folder))
    text = " ".join(squeeze(page) for page in pdf_pages(reporting.run(deployed)["summary_report"]))
    assert "model version F1 on the test data F1 on held-out rows of its own market" in text
    deployment = require_deployment(deployed.prod_deployment_folder)
    assert f"{metadata['model_version']} {deployment.manifest['score']:.4f} {metadata['baseline']['f1']:.4f}" in text


def test_the_pdf_says_the_baseline_as_the_page_does(deployed):
    """One sentence for the baseline (riskcore.model.drift_evidence.baseline_text), its rows said once."""
    from riskcore.model.drift_evidence import baseline_text

    baseline = deployed_metadata(require_deployment(deployed.prod_deployment_folder))["baseline"]
    text = " ".join(squeeze(page) for page in pdf_pages(reporting.run(deployed)["summary_report"]))
    said = squeeze(f"Drift baseline: {baseline_text(baseline, why=True)}; drift checks compare")
    assert said in text and said.count("held-out rows") == 1


@pytest.mark.parametrize(("rows", "said"), [(1, "(1 rows, fewer than 30)"), (2000, "(2,000 rows)")])
def test_the_headline_says_the_holdouts_rows_once(rows, said):
    from riskcore.report.pdf_evidence import retrain_line

    held = {"rows": rows, "f1": 0.5}
    [line] = retrain_line({"holdout": {"old": held, "new": {**held, "f1": 0.6}}})
    assert f"held-out new rows</b> {said}: F1 0.5000 before the retrain, 0.6000 after it" in line


@pytest.mark.parametrize(("served", "said"), [
    ("new", None),
    ("old", " The model served now, old, is not the retrained one (new), but the one before it."),
    ("other", " The model served now, other, is not the retrained one (new)."),
])
def test_the_headlines_retrain_says_when_the_served_model_is_not_the_retrained_one(served, said):
    """After a rollback the PDF's headline read "F1 0.2358 before the retrain, 0.3709 after it" of the model rolled
    back from, without a word that the served model is the one before it."""
    from riskcore.report.pdf_evidence import retrain_line

    held = {"rows": 600, "f1": 0.2358}
    [line] = retrain_line({"old_model": "old", "new_model": "new",
                           "holdout": {"old": held, "new": {**held, "f1": 0.3709}}}, served)
    assert "F1 0.2358 before the retrain, 0.3709 after it" in line
    assert (said is None and "served now" not in line) or line.endswith(said)


def test_the_pdf_says_a_check_on_too_few_rows_cannot_tell_data_drift(deployed):
    few = {name: {"psi": 4.9, "psi_label": "too few rows", "ks_statistic": 0.29, "ks_p_value": 0.72, "rows": 5,
                  "drift": False} for name in FEATURES}
    record_run(deployed.output_model_folder / RUN_HISTORY,
               {"run_id": "few", "started_at": "2026-03-01T06:00:00Z", "decision": "wait", "outcome": "done",
                "window_rows": 5, "data_drift": {"drift": False, "too_few_rows": True, "rows": 5, "features": few}})
    text = " ".join(squeeze(page) for page in pdf_pages(reporting.run(deployed)["summary_report"]))
    assert "Too few rows to tell whether the data drifted: the check took 5 rows, fewer than 50." in text
    assert "No data drift: every feature" not in text


def test_the_pdf_counts_the_labelled_rows_a_checks_f1_was_measured_on(deployed):
    """A window of this month's export (11,425 unlabelled) and 10 labelled rows: the F1 is on the 10."""
    record_run(deployed.output_model_folder / RUN_HISTORY,
               {"run_id": "w", "started_at": "2026-03-01T06:00:00Z", "decision": "wait", "outcome": "done",
                "f1_new_data": 0.0, "baseline": 0.31, "window_rows": 11435, "window_labelled": 10,
                "window_positives": 1, "version_before": "m"})
    text = " ".join(squeeze(page) for page in pdf_pages(reporting.run(deployed)["summary_report"]))
    assert "model m scored F1 0.0000 on the 10 labelled new rows (10 rows: fewer than 30) against its baseline" in text
