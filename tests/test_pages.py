"""Tests for riskcore.api.pages, the client managers' web page, through Flask's test client: the call
list (ranking, paging, search), a client's page, the model's health and the run history, the downloads,
the key form and its cookie, escaping, and the headers a page needs. The browser tests are test_browser.py."""

from __future__ import annotations

import csv
import html
import io
import re
import time
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import app as app_module
from conftest import client_rows, deploy_pipeline, write_config, write_csv
from riskcore import formatting
from riskcore.api import page_access, page_charts, page_data, page_health, pages
from riskcore.config import Config, load_config
from riskcore.contract import FEATURE_LABELS, FEATURES, RISK_SCORES, RUN_HISTORY
from riskcore.model import estimate_words, evaluation
from riskcore.ops.history import read_history, record_run
from riskcore.release import load
from riskcore.release.load import current_deployment, load_deployed_model
from riskcore.report import call_list
from riskcore.report.call_list import risk_scores

HOSTILE = "<script>alert(1)</script>"
SLASHED = "a/b c?d#e&f"
KEY = "s3cret-key-for-tests"


class Tables(HTMLParser):
    """The text of every cell of every <table> of a page, by the table's class; what is hidden from screen
    readers (aria-hidden: the phones' copy of the reasons, the charts) is left out, as a reader hears the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[tuple[str, str]] = []  # (href, text) of every <a>
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._href: str | None = None
        self._text: list[str] = []
        self._hidden: list[str] = []  # open tags from the outermost aria-hidden one in

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if self._hidden or attributes.get("aria-hidden") == "true":
            self._hidden.append(tag)
            return
        if tag == "table":
            self._table = self.tables.setdefault(attributes.get("class") or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "a":
            self._href, self._text = attributes.get("href"), []

    def handle_endtag(self, tag):
        if self._hidden:
            self._hidden.pop()
            return
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None

    def handle_data(self, data):
        if self._hidden:
            return
        if self._cell is not None:
            self._cell.append(data)
        if self._href is not None:
            self._text.append(data)


def parse(response) -> Tables:
    parser = Tables()
    parser.feed(response.get_data(as_text=True))
    return parser


def call_rows(response) -> list[list[str]]:
    """The call list's data rows (rank, client, probability, features) of a page."""
    return parse(response).tables.get("calls", [])[1:]


def text_of(response) -> str:
    """The page's text, roughly as it reads: inline tags dropped, the others a blank, entities decoded, blanks
    collapsed."""
    inline = re.sub(r"</?(?:span|strong|small|em|b|a)\b[^>]*>", "", response.get_data(as_text=True))
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inline)).split())


# --- A deployed project with a history, reports, and ids that need escaping ------------------------
def build_project(root: Path) -> Config:
    write_csv(root / "input" / "dataset1.csv", client_rows(120, seed=1))
    write_csv(root / "input" / "dataset2.csv", client_rows(100, seed=2))
    # A client seen twice (an earlier and a later snapshot), and ids a page must escape and quote.
    # A client who left: listed once, then a snapshot saying it left (row 6 of dataset3.csv).
    write_csv(root / "input" / "dataset3.csv", [f"{HOSTILE},5,60,700,0", f"{SLASHED},1,2,900,0", "twice,300,3000,2,0",
                                                "twice,0,10,400,0", "gone,90,1200,30,0", "gone,3,700,30,1"])
    write_csv(root / "test" / "testdata.csv", client_rows(60, seed=3, prefix="t"))
    config = load_config(write_config(root))
    deploy_pipeline(config)
    risk_scores(config)
    return config


def drift_run(run_id: str, started: str, decision: str = "retrain", **changes) -> dict:
    row = {"run_id": run_id, "started_at": started, "finished_at": started, "run_number": 2,
           "new_files": ["dataset3.csv"], "rows_read": 4, "rows_ingested": 224, "f1_new_data": 0.41,
           "baseline": 0.69, "drift_test": "raw", "drift_verdict": "F1 0.4100 < 0.6900 (baseline): model drift",
           "data_drift": {"drift": True, "features": {
               "lastmonth_activity": {"psi": 1.2496, "psi_label": "drift", "ks_statistic": 0.3, "ks_p_value": 1e-9,
                                      "drift": True},
               "lastyear_activity": {"psi": 0.05, "psi_label": "stable", "ks_statistic": 0.01, "ks_p_value": 0.9,
                                     "drift": False}}},
           "decision": decision, "version_before": "old-model", "version_after": "new-model", "outcome": "done"}
    row.update(changes)
    return row


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Config:
    config = build_project(tmp_path_factory.mktemp("pages"))
    history = config.output_model_folder / RUN_HISTORY
    record_run(history, drift_run("r1", "2026-01-01T06:00:00Z", decision="keep", outcome="done", f1_new_data=0.72,
                                  drift_verdict="F1 0.7200 >= 0.6900 (baseline): no model drift", data_drift=None))
    record_run(history, drift_run("r2", "2026-01-02T06:00:00Z"))
    for name in ("summary_report.pdf", "summary_report2.pdf", "summary_report10.pdf", "summary_report3.pdf"):
        (config.output_model_folder / name).write_bytes(b"%PDF-1.4 " + name.encode())
    return config


@pytest.fixture
def client(shared):
    return app_module.create_app(shared.config_file).test_client()


def risk_rows(config: Config) -> list[dict[str, str]]:
    """risk_scores.csv's rows, in order."""
    with open(config.output_model_folder / RISK_SCORES, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def ranked_ids(config: Config) -> list[str]:
    return [row["corporation"] for row in risk_rows(config)]


# --- The call list ---------------------------------------------------------------------------------
def test_the_call_list_is_the_risk_list_with_probability_reasons_and_features(client, shared):
    first = client.get("/")
    assert first.status_code == 200 and first.mimetype == "text/html"
    headers = parse(first).tables["calls"][0]
    assert headers == ["rank", "client", "probability of leaving", "since last run", "why: the main reason"]
    shown, page = [], 1
    while True:
        rows = call_rows(client.get(f"/?page={page}"))
        shown += rows
        if len(rows) < page_data.PAGE_SIZE:
            break
        page += 1
    assert [row[0] for row in shown] == [f"{n:,}" for n in range(1, len(shown) + 1)]
    expected = risk_rows(shared)
    assert [(row[1], row[2]) for row in shown] == [(r["corporation"], pages.percent(float(r["probability"])))
                                                   for r in expected]
    assert [row[4] for row in shown] == [r["reason_1"] for r in expected]  # the same words
    assert all(re.fullmatch(r"(>99\.9|<0\.1|\d{1,2}\.\d)%", row[2]) for row in shown)


def test_fifty_clients_a_page_with_next_and_previous(client, shared):
    clients = len(ranked_ids(shared))
    last = -(-clients // page_data.PAGE_SIZE)
    first = client.get("/")
    assert [row[0] for row in call_rows(first)] == [str(n) for n in range(1, 51)]
    links = dict((text, href) for href, text in parse(first).links)
    assert links["The rest of the list →"] == "/?page=2" and "← Previous" not in links
    second = client.get("/?page=2")
    assert call_rows(second)[0][0] == "51"
    assert dict((t, h) for h, t in parse(second).links)["← Previous"] == "/?page=1"
    end = client.get(f"/?page={last}")
    assert len(call_rows(end)) == clients - (last - 1) * page_data.PAGE_SIZE
    assert "Next →" not in dict((t, h) for h, t in parse(end).links)
    assert f"Page {last} of {last}" in text_of(end)


@pytest.mark.parametrize("past", [1, 999_999])
def test_a_page_past_the_last_is_a_400_page_naming_the_last_page(client, shared, past):
    """As GET /risk refuses an offset past the end (docs/api.md), the page refuses a page past the last one."""
    clients = len(ranked_ids(shared))
    last = -(-clients // page_data.PAGE_SIZE)
    response = client.get("/", query_string={"page": last + past})
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert (f'Page {last + past} is past the last page, {last}: the query parameter "page" must be a whole number '
            f"from 1 to {last} ({clients:,} clients, {page_data.PAGE_SIZE} a page).") in text_of(response)


def test_a_search_pages_through_its_matches_and_refuses_a_page_past_them(client, shared):
    matches = [c for c in ranked_ids(shared) if "c01" in c]
    last = -(-len(matches) // page_data.PAGE_SIZE)
    assert last < -(-len(ranked_ids(shared)) // page_data.PAGE_SIZE)  # fewer pages than the whole list
    assert client.get(f"/?q=c01&page={last}").status_code == 200
    response = client.get(f"/?q=c01&page={last + 1}")
    assert response.status_code == 400
    assert f"Page {last + 1} is past the last page, {last}: " in text_of(response)
    assert f"({len(matches)} clients match, {page_data.PAGE_SIZE} a page)" in text_of(response)


def test_a_search_that_matches_nobody_keeps_page_1(client):
    response = client.get("/?q=nobody-has-this-id")
    assert response.status_code == 200 and call_rows(response) == []
    assert client.get("/?q=nobody-has-this-id&page=2").status_code == 400


@pytest.mark.parametrize("page", ["0", "abc", "-1", "1.5", "١", "9" * 12])
def test_a_page_number_below_1_or_not_a_whole_number_is_a_400_page(client, shared, page):
    last = -(-len(ranked_ids(shared)) // page_data.PAGE_SIZE)
    response = client.get("/", query_string={"page": page})
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert f'The query parameter "page" must be a whole number from 1 to {last} (' in text_of(response)
    assert "at least 0" not in text_of(response)


def test_search_finds_clients_by_part_of_their_id_whatever_the_case(client, shared):
    expected = [c for c in ranked_ids(shared) if "c010" in c]
    response = client.get("/?q=C010")
    assert [row[1] for row in call_rows(response)] == expected[:page_data.PAGE_SIZE]
    assert f"{len(expected)} of {len(ranked_ids(shared))} clients have an id containing “C010”" in text_of(response)
    ranks = [int(row[0].replace(",", "")) for row in call_rows(response)]
    assert ranks == sorted(ranks) and ranks[0] > 0  # their ranks in the whole list


def test_a_search_without_a_match_says_so(client):
    response = client.get("/?q=nobody-has-this-id")
    assert response.status_code == 200 and call_rows(response) == []
    assert "No client id contains “nobody-has-this-id”." in text_of(response)


# --- A client's page -------------------------------------------------------------------------------
def snapshot_risks(client, rows: list[list[int]]) -> list[str]:
    """The served model's probability of each feature row (POST /prediction), as the page prints it."""
    from riskcore.formatting import percent

    records = [{"corporation": "x", **dict(zip(FEATURES, row, strict=True))} for row in rows]
    return [percent(p["probability"]) for p in client.post("/prediction", json={"records": records}).get_json()[
        "predictions"]]


def test_a_clients_page_shows_its_dated_snapshots_with_their_risk_and_the_chart(client, shared):
    listed = next(row for row in call_rows(client.get("/?q=twice")) if row[1] == "twice")
    response = client.get("/clients/twice")
    assert response.status_code == 200
    text = text_of(response)
    assert "Client twice" in text and listed[2] in text and f"rank {listed[0]} of" in text
    tables = parse(response).tables
    shown = {row[0]: row[1] for row in tables["features"][1:]}
    assert shown == {FEATURE_LABELS[f]: v for f, v in zip(FEATURES, ["0", "10", "400"], strict=True)}
    # Newest first, each dated by the first run that ingested dataset3.csv (r1, 2026-01-01), with its risk
    latest, earlier = snapshot_risks(client, [[0, 10, 400], [300, 3000, 2]])
    assert tables["snapshots"] == [
        ["ingested", "source", "row", *(FEATURE_LABELS[f] for f in FEATURES), "left", "risk"],
        ["1 Jan 2026", "dataset3.csv", "4", "0", "10", "400", "no", latest],
        ["1 Jan 2026", "dataset3.csv", "3", "300", "3,000", "2", "no", earlier]]
    assert latest == listed[2] and latest != earlier  # the latest snapshot's risk is the list's probability
    assert "Dated by when its file was first ingested" in text
    # The risk across the kept runs: reporting ranked the list once (run 1), today
    body = response.get_data(as_text=True)
    today = formatting.day(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), year=True)
    assert 'id="risk-runs"' in body and 'role="img" aria-labelledby="risk-runs-text"' in body
    assert re.search(rf"run 1, {today}: [\d.]+%, rank {listed[0]}\.", text)
    assert '<text class="risk-date"' in body and f">{today}</text>" in body


def test_a_client_with_one_snapshot_is_dated_by_the_ingestion_record(client, shared):
    import json

    record = json.loads((shared.output_folder / "ingestionrecord.json").read_text())
    [read_at] = [f["read_at"] for f in record["files"] if f["name"] == "dataset1.csv"]
    rows = parse(client.get("/clients/c010000")).tables["snapshots"][1:]
    assert len(rows) == 1 and rows[0][:3] == [formatting.day(read_at, year=True), "dataset1.csv", "1"]


def test_a_file_a_run_rejected_is_dated_by_the_run_that_ingested_it():
    """The walk: an export refused for its empty "exited" (run 7), put right and ingested in run 10, read
    "ingested" at run 7's start on the client's page and in GET /risk/<id>."""
    from riskcore.api.client_story import ingestion_dates

    rejected = {"name": "2026-02.csv", "reason": '2026-02.csv has an empty value in column "exited" at row 1.'}
    runs = [{"started_at": "2026-02-01T06:00:00Z", "rows_ingested": 10, "new_files": ["2026-02.csv"],
             "files_rejected": [rejected]},
            {"started_at": "2026-02-03T06:00:00Z", "rows_ingested": 40, "new_files": ["2026-02.csv"],
             "files_rejected": []}]
    assert ingestion_dates(runs, None) == {"2026-02.csv": ("2026-02-03T06:00:00Z", "run history")}


def test_a_client_who_left_says_when_and_keeps_its_story(client, shared):
    response = client.get("/clients/gone")
    assert response.status_code == 200
    text = text_of(response)
    assert "Left: recorded in dataset3.csv (row 6), ingested 1 Jan 2026." in text
    assert "No client" not in text and "Record the call" not in text
    earlier, last = snapshot_risks(client, [[90, 1200, 30], [3, 700, 30]])
    rows = parse(response).tables["snapshots"][1:]
    assert rows == [["1 Jan 2026", "dataset3.csv", "6", "3", "700", "30", "yes (recorded here)", last],
                    ["1 Jan 2026", "dataset3.csv", "5", "90", "1,200", "30", "no", earlier]]
    answer = client.get("/risk/gone")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["status"] == "left" and body["client"] is None and body["corporation"] == "gone"
    assert body["left_recorded"] == {"source": "dataset3.csv", "row": 6, "ingested_at": "2026-01-01T06:00:00Z",
                                     "dated_by": "run history"}
    assert [(s["row"], s["exited"]) for s in body["snapshots"]] == [(5, 0), (6, 1)]
    assert body["runs"] == []  # never on a kept call list
    from test_app import escaped, schema_validator

    document = client.get("/openapi.json").get_json()
    pointer = escaped("paths", "/risk/{client_id}", "get", "responses", "200", "content", "application/json", "schema")
    assert [error.message for error in schema_validator(document, pointer).iter_errors(body)] == []


def test_a_clients_contributions_add_up_to_its_log_odds_against_the_average_client(client, shared):
    [listed] = [c for c in client.get("/risk", query_string={"top": 1000}).get_json()["clients"]
                if c["corporation"] == "twice"]
    about = client.get("/risk?top=1").get_json()
    response = client.get("/clients/twice")
    rows = parse(response).tables["features"][1:]
    shares = listed["contributions"]
    listed_first = sorted(FEATURES, key=lambda f: (shares[f] <= 0, -abs(shares[f]), FEATURES.index(f)))
    assert [row[0] for row in rows] == [FEATURE_LABELS[f] for f in listed_first]  # raising first
    contributions = [float(row[4]) for row in rows]
    assert contributions == [round(shares[f], 2) for f in listed_first]
    assert sum(r["contribution"] for r in listed["reasons"]) == pytest.approx(
        listed["log_odds"] - about["average_log_odds"])
    text = text_of(response)
    assert f"log-odds of leaving at {listed['log_odds']:+.2f}" in text
    assert f"the average client's at {about['average_log_odds']:+.2f}" in text
    assert all(r["text"] in text for r in listed["reasons"])


def test_an_unknown_client_is_a_404_page_and_a_404_json(client):
    response = client.get("/clients/nobody")
    assert response.status_code == 404 and response.mimetype == "text/html"
    sentence = ('No client "nobody" in the ingested data (finaldata.csv): it is neither on the call list nor among '
                "the clients who left.")
    assert sentence in text_of(response)
    answer = client.get("/risk/nobody")
    assert answer.status_code == 404 and answer.mimetype == "application/json"
    assert answer.get_json()["message"] == sentence and answer.get_json()["field"] == "client_id"


def test_ids_from_the_data_are_escaped_and_their_links_lead_to_their_page(client):
    for response, shown in ((client.get("/?q=script"), HOSTILE), (client.get("/?q=a/b"), SLASHED)):
        body = response.get_data(as_text=True)
        assert HOSTILE not in body and "<script" not in body
        assert html.escape(shown, quote=False) in body
    [(href, text)] = [(h, t) for h, t in parse(client.get("/?q=script")).links if t == HOSTILE]
    assert HOSTILE not in href
    page = client.get(href)
    assert page.status_code == 200 and f"Client {HOSTILE}" in text_of(page)
    assert HOSTILE not in page.get_data(as_text=True)
    [(slashed, _)] = [(h, t) for h, t in parse(client.get("/?q=a/b")).links if t == SLASHED]
    assert "?" not in slashed and "#" not in slashed
    assert f"Client {SLASHED}" in text_of(client.get(slashed))


def test_a_search_for_markup_is_shown_as_text(client):
    body = client.get("/", query_string={"q": '"><img src=x onerror=alert(1)>'}).get_data(as_text=True)
    assert "<img" not in body and "&#34;&gt;&lt;img" in body


# --- The model's health and the run history --------------------------------------------------------
def test_the_health_shows_the_deployed_model_its_f1_and_auc_and_the_latest_drift_check(client, shared):
    health = client.get("/health").get_json()
    model = load_deployed_model(current_deployment(shared.prod_deployment_folder))
    scores = evaluation.scores_with_intervals(model, evaluation.read_test_data(shared))
    assert scores["f1"] == client.get("/scoring").get_json()["f1"]
    text = text_of(client.get("/model"))
    assert health["model_version"] in text
    assert f"deployed {health['deployed_at'][:10]} {health['deployed_at'][11:16]} UTC" in text
    (f1_low, f1_high), (auc_low, auc_high) = scores["f1_interval"], scores["auc_interval"]
    assert (f"F1 on the test data {scores['f1']:.4f} [{f1_low:.2f}, {f1_high:.2f}] ROC AUC {scores['auc']:.3f} "
            f"[{auc_low:.2f}, {auc_high:.2f}] · {scores['rows']} test clients") in text
    assert "In brackets: bootstrap 95% intervals." in text
    assert ("Latest drift check F1 0.4100 2026-01-02 06:00 UTC, 224 new rows: F1 0.4100 < 0.6900 (baseline): "
            "model drift; the model was retrained and redeployed.") in text
    assert ("differed from the training data in 1 feature (drift is a PSI at or above 0.25 or a Kolmogorov-Smirnov "
            "(KS) p-value below 0.01): activity last month drift by PSI and KS PSI 1.250 (drift), KS 0.300 (p 1e-09)"
            ) in text
    assert "activity last year drift" not in text  # only what drifted is charted and called drift...
    # ...and the rest have their figures, as the PDF's drift table lists every feature (issue 19.7)
    assert "The other features: activity last year PSI 0.050 (stable), KS 0.010 (p 0.9)." in text


def test_each_drifted_feature_is_charted_against_the_checked_models_training_data(tmp_path):
    config = build_project(tmp_path)
    deployed = current_deployment(config.prod_deployment_folder)
    record_run(config.output_model_folder / RUN_HISTORY,
               drift_run("d", "2026-03-01T06:00:00Z", version_before=deployed.model_version))
    response = app_module.create_app(config.config_file).test_client().get("/model")
    body = response.get_data(as_text=True)
    figures = re.findall(r'<figure class="dist">.*?</figure>', body, re.S)
    assert len(figures) == 1  # lastmonth_activity drifted; lastyear_activity did not
    assert 'aria-label="activity last month: the training data (filled) beside the ingested data (line)"' in figures[0]
    assert len(re.findall(r'<path class="(ref|new)" d="M[-0-9., VHZ]+"/>', figures[0])) == 2
    assert f"the training data of model {deployed.model_version}, the one the check tested" in text_of(response)


def test_a_model_no_longer_kept_gets_its_psi_without_a_chart(client):
    response = client.get("/model")
    assert "activity last month drift by PSI and KS PSI 1.250" in text_of(response)  # "old-model" is in no release
    assert '<figure class="dist">' not in response.get_data(as_text=True)


def test_the_page_and_the_pdf_chart_the_same_bins():
    """Both charts draw riskcore.model.drift_evidence's bins: the PDF's bars hold its shares on its edges, and the
    page's SVG steps are the same shares, scaled to the box."""
    from riskcore.model.drift_evidence import BINS, distribution_bins
    from riskcore.report import charts

    rng = np.random.default_rng(5)
    old, new = (np.quantile(rng.gamma(2.0, scale, 5000), np.linspace(0, 1, 1001)) for scale in (50.0, 80.0))
    bins = distribution_bins(old, new)
    assert len(bins.edges) == BINS + 1
    figure = charts.distribution_chart({FEATURES[0]: old}, {FEATURES[0]: new}, {}, "training", "new")
    drawn = [patch.get_data() for patch in figure.axes[0].patches]
    assert [len(stairs.values) for stairs in drawn] == [BINS, BINS]
    for stairs, shares in zip(drawn, (bins.reference, bins.compared), strict=True):
        assert np.allclose(stairs.edges, bins.edges) and np.allclose(stairs.values, 100 * shares)
    chart = page_charts.distribution_svg(old, new)
    peak = max(bins.reference.max(), bins.compared.max())
    for path, shares in ((chart.reference, bins.reference), (chart.compared, bins.compared)):
        tops = [float(y) for y in re.findall(r"V(-?[\d.]+)H", path)]
        assert len(tops) == BINS
        assert np.allclose(tops, page_charts.HEIGHT - (page_charts.HEIGHT - 2) * shares / peak, atol=0.051)
    assert (chart.low, chart.high) == (bins.edges[0], bins.edges[-1])


def test_a_feature_flagged_by_ks_alone_is_said_to_be_by_ks(tmp_path):
    """A PSI under the threshold with a KS p-value under alpha: the page names KS, not a PSI threshold."""
    config = build_project(tmp_path)
    figures = {"lastmonth_activity": {"psi": 0.196, "psi_label": "some shift", "ks_statistic": 0.3,
                                      "ks_p_value": 1e-9, "drift": True}}
    record_run(config.output_model_folder / RUN_HISTORY,
               drift_run("ks", "2026-03-01T06:00:00Z", data_drift={"drift": True, "features": figures}))
    text = text_of(app_module.create_app(config.config_file).test_client().get("/model"))
    assert ("in 1 feature (drift is a PSI at or above 0.25 or a Kolmogorov-Smirnov (KS) p-value below 0.01): "
            "activity last month drift by KS PSI 0.196 (some shift), KS 0.300 (p 1e-09)") in text
    assert "drift by PSI" not in text


def test_a_check_that_retrained_says_whose_f1_its_big_figure_is(tmp_path):
    """After a retrain, the check's F1 is the replaced model's: the card says so under the figure (issue 22: it read as
    the served model's score); a check of the served model itself carries no such line."""
    config = build_project(tmp_path)
    served = current_deployment(config.prod_deployment_folder).model_version
    history = config.output_model_folder / RUN_HISTORY
    record_run(history, drift_run("retrained", "2026-03-01T06:00:00Z", version_before="old-model",
                                  version_after=served))
    client = app_module.create_app(config.config_file).test_client()
    text = text_of(client.get("/model"))
    assert ("Latest drift check F1 0.4100 The F1 of model old-model on the new rows, the model this check replaced; "
            "the served model's figures are in the cards beside.") in text
    record_run(history, drift_run("kept", "2026-03-02T06:00:00Z", decision="keep", version_before=served,
                                  version_after=served))
    page = app_module.create_app(config.config_file).test_client().get("/model").get_data(as_text=True)
    assert 'id="check-replaced-model"' not in page and "F1 0.4100" in page


def test_the_page_and_the_pdf_describe_the_same_latest_check(tmp_path):
    """A later run that checked nothing (no new rows) is not the latest check, on the page or in the PDF."""
    from riskcore.release.load import deployed_metadata
    from riskcore.report.writer import drift_evidence

    config = build_project(tmp_path)
    history = config.output_model_folder / RUN_HISTORY
    record_run(history, drift_run("checked", "2026-03-01T06:00:00Z"))
    record_run(history, {"run_id": "nothing", "started_at": "2026-03-02T06:00:00Z", "rows_new": 0,
                         "drift_verdict": "no new rows to check: the model is kept", "decision": "keep",
                         "outcome": "done"})
    text = text_of(app_module.create_app(config.config_file).test_client().get("/model"))
    assert "Latest drift check F1 0.4100 2026-03-01 06:00 UTC, 224 new rows" in text
    assert "2026-03-02 06:00 UTC, the new data" not in text
    deployed = current_deployment(config.prod_deployment_folder)
    shown = drift_evidence(config, deployed, deployed_metadata(deployed), read_history(history), None, None)
    assert shown.check["run_id"] == "checked"


def test_the_page_and_the_pdf_count_the_called_clients_the_check_left_out(tmp_path):
    """Issue 24.4: called clients are left out of the drift window and counted separately; the history said how many,
    /model's latest check and the PDF's headline did not."""
    from riskcore.release.load import deployed_metadata
    from riskcore.report.pdf_evidence import drift_check_lines
    from riskcore.report.writer import drift_evidence

    config = build_project(tmp_path)
    history = config.output_model_folder / RUN_HISTORY
    record_run(history, drift_run("checked", "2026-03-01T06:00:00Z", decision="wait", window_called=3))
    said = "3 rows of clients who were called left out of the drift check's window."
    text = text_of(app_module.create_app(config.config_file).test_client().get("/model"))
    assert ("2026-03-01 06:00 UTC, 224 new rows: F1 0.4100 < 0.6900 (baseline): model drift; the model was kept until "
            f"there are enough labelled rows to decide. {said}") in text
    deployed = current_deployment(config.prod_deployment_folder)
    shown = drift_evidence(config, deployed, deployed_metadata(deployed), read_history(history), None, None)
    assert said in drift_check_lines(shown, deployed.model_version)[0]
    record_run(history, drift_run("none called", "2026-03-02T06:00:00Z", decision="wait", window_called=0))
    assert "who were called" not in text_of(app_module.create_app(config.config_file).test_client().get("/model"))


def test_the_charts_of_evenly_spread_data_show_the_shares_known_in_advance():
    """Data spread evenly over 0..400: 40 bins up to its 99th percentile (396) hold 0.99 / 40 each, the last also
    the top 1%; the PDF's bars say so in % of clients, and the page's steps sit at the same edges and heights."""
    from riskcore.report import charts

    uniform = np.linspace(0.0, 400.0, 1001)  # the quantiles of evenly spread data
    expected = np.array([0.99 / 40] * 39 + [0.99 / 40 + 0.01])
    figure = charts.distribution_chart({f: uniform for f in FEATURES}, {f: uniform for f in FEATURES}, {},
                                       "training", "new")
    for stairs in (patch.get_data() for patch in figure.axes[0].patches):
        assert np.allclose(stairs.edges, np.linspace(0.0, 396.0, 41)) and np.allclose(stairs.values, 100 * expected)
    chart = page_charts.distribution_svg(uniform, uniform)
    assert (chart.low, chart.high) == (0.0, pytest.approx(396.0))
    for path in (chart.reference, chart.compared):
        rights = [float(x) for x in re.findall(r"H(-?[\d.]+)", path)]
        tops = [float(y) for y in re.findall(r"V(-?[\d.]+)H", path)]
        assert np.allclose(rights, np.arange(1, 41) * chart.width / 40, atol=0.05)
        assert np.allclose(tops, chart.height - (chart.height - 2) * expected / expected.max(), atol=0.051)


def test_a_chart_stays_inside_its_box_and_its_bars_close():
    rng = np.random.default_rng(6)
    old, new = (np.quantile(rng.gamma(2.0, scale, 3000), np.linspace(0, 1, 1001)) for scale in (40.0, 90.0))
    chart = page_charts.distribution_svg(old, new)
    assert chart.reference.startswith(f"M0,{page_charts.HEIGHT} ") and chart.reference.endswith(" Z")
    for path in (chart.reference, chart.compared):
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path)]
        assert numbers and all(-0.01 <= n <= max(page_charts.WIDTH, page_charts.HEIGHT) + 0.01 for n in numbers)
    assert chart.low == min(old[0], new[0]) and chart.high > chart.low
    assert page_charts.distribution_svg(old, [1.0]) is None


def scores(f1: float, auc: float, rows: int) -> dict:
    return {"rows": rows, "positives": rows // 2, "few_rows": rows < 30, "f1": f1, "f1_interval": [f1 - 0.1, f1 + 0.05],
            "auc": auc, "auc_interval": [auc - 0.1, auc + 0.05], "resamples": 1000, "seed": 0}


@pytest.fixture
def retrained(shared, monkeypatch):
    """The served model as if a retrain had made it: its metadata records the old and new model on a holdout."""
    version = current_deployment(shared.prod_deployment_folder).model_version
    evaluation_record = {"old_model": "old-model", "new_model": version, "new_worse": True, "promoted": True,
                         "holdout": {"share": 0.2, "seed": 0, "old": scores(0.52, 0.61, 12),
                                     "new": scores(0.41, 0.44, 12)},
                         "test_data": {"name": "testdata.csv", "old": scores(0.5, 0.6, 60), "new": scores(0.6, 0.7, 60)}}
    original = load.deployed_metadata
    monkeypatch.setattr(load, "deployed_metadata",
                        lambda deployment: {**original(deployment), "evaluation": evaluation_record})
    return app_module.create_app(shared.config_file).test_client()


def test_after_a_retrain_the_new_data_figures_are_the_holdouts_with_the_old_models(retrained):
    text = text_of(retrained.get("/model"))
    assert ("On the held-out new rows (20% of the new rows, left out of its training): F1 0.4100 [0.31, 0.46] "
            "(12 rows: fewer than 30), ROC AUC 0.440 [0.34, 0.49] below 0.5: worse than chance "
            "(12 rows: fewer than 30) · 12 rows; the model before it (old-model): F1 0.5200 [0.42, 0.57] "
            "(12 rows: fewer than 30).") in text
    assert "The new model does worse than the old one on these rows." in text


def test_a_check_that_kept_the_model_gives_its_f1_on_new_data(tmp_path):
    config = build_project(tmp_path)
    version = current_deployment(config.prod_deployment_folder).model_version
    record_run(config.output_model_folder / RUN_HISTORY,
               drift_run("k", "2026-04-01T06:00:00Z", decision="keep", f1_new_data=0.73, version_before=version,
                         drift_verdict="F1 0.7300 >= 0.6900 (baseline): no model drift"))
    text = text_of(app_module.create_app(config.config_file).test_client().get("/model"))
    assert "On the new rows of 2026-04-01 06:00 UTC: F1 0.7300 · 224 rows." in text


def test_the_f1_on_new_rows_counts_the_labelled_rows_it_was_measured_on(tmp_path):
    """A window of this month's export (11,425 unlabelled) and 10 labelled rows: the F1 is on the 10."""
    config = build_project(tmp_path)
    version = current_deployment(config.prod_deployment_folder).model_version
    record_run(config.output_model_folder / RUN_HISTORY,
               drift_run("k", "2026-04-01T06:00:00Z", decision="wait", f1_new_data=0.0, version_before=version,
                         window_rows=11435, window_labelled=10, window_positives=1))
    text = text_of(app_module.create_app(config.config_file).test_client().get("/model"))
    assert "On the new rows of 2026-04-01 06:00 UTC: F1 0.0000" in text and "· 10 rows" in text
    assert "11,435 rows" not in text.split("On the new rows")[1].split(".")[0]


@pytest.mark.parametrize(("decision", "drift", "sentence", "alert"), [
    ("keep", None, "Model checked {ago}: healthy.", False),
    ("keep", True, "Model checked {ago}: the new data differs from its training data; model kept.", True),
    ("wait", None, "Model checked {ago}: model kept until enough labels arrive.", False),
    ("wait", True, "Model checked {ago}: the new data differs from its training data; model kept until enough labels "
                   "arrive.", True),
    ("kept_by_gate", None, "Model checked {ago}: a retrained model did no better; model kept.", True),
    ("wait", "estimated", "Model checked {ago}: estimated to do worse on the new clients, before their labels arrive; "
                          "model kept until enough labels arrive.", True),
    ("keep", "estimated", "Model checked {ago}: estimated to do worse on the new clients, before their labels arrive; "
                          "model kept.", True),
])
def test_the_health_strip_says_every_kept_model_in_words(tmp_path, decision, drift, sentence, alert):
    """A check that waited for labels or was kept by the gate read "Model checked just now: wait." on the strip; one
    whose estimate without labels warned (estimated_drift) read "healthy" or nothing of it, as /model warned."""
    config = build_project(tmp_path)
    checked = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2 * 3600 - 60))
    changes = {"data_drift": None, "estimated_drift": True} if drift == "estimated" else \
        {} if drift else {"data_drift": None}
    record_run(config.output_model_folder / RUN_HISTORY, drift_run("k", checked, decision=decision, **changes))
    page = app_module.create_app(config.config_file).test_client().get("/").get_data(as_text=True)
    strip = re.search(r'<p class="strip ([a-z]*)" id="health-strip">(.*?)</p>', page)
    assert html.unescape(re.sub(r"<[^>]+>", "", strip.group(2))).split(" · ")[0] == sentence.format(ago="2 hours ago")
    assert (strip.group(1) == "alert") == alert


def test_a_rollback_after_a_failed_tick_leaves_the_failure_on_the_strip(tmp_path):
    """The strip's "last run" is the automation's: a rollback row after a failed tick (outcome done) hid the failure,
    which /metrics' last outcome (ticks only) still reported."""
    config = build_project(tmp_path)
    history = config.output_model_folder / RUN_HISTORY
    record_run(history, drift_run("k", "2026-03-01T06:00:00Z", decision="keep", data_drift=None))
    record_run(history, drift_run("f", "2026-03-01T06:10:00Z", decision=None, outcome="failed", data_drift=None,
                                  error="the database is locked"))
    record_run(history, drift_run("o", "2026-03-01T06:15:00Z", decision="rollback", outcome="done", data_drift=None))
    page = app_module.create_app(config.config_file).test_client().get("/").get_data(as_text=True)
    strip = re.search(r'<p class="strip ([a-z]*)" id="health-strip">(.*?)</p>', page)
    assert "the last run failed" in html.unescape(strip.group(2)) and strip.group(1) == "alert"


@pytest.mark.parametrize(("data_drift", "sentence"), [
    ({"drift": True, "features": {}}, "New market detected, model retrained on 1 Mar."),
    ({"drift": False, "features": {}}, "Who leaves has changed, model retrained on 1 Mar."),
])
def test_the_strip_says_a_new_market_only_where_the_features_drifted(tmp_path, data_drift, sentence):
    """The walk's changed month (who leaves changed, no feature drifted, PSI 0.002) read "New market detected"."""
    config = build_project(tmp_path)
    record_run(config.output_model_folder / RUN_HISTORY, drift_run("r", "2026-03-01T06:00:00Z", data_drift=data_drift))
    page = app_module.create_app(config.config_file).test_client().get("/").get_data(as_text=True)
    strip = re.search(r'<p class="strip ([a-z]*)" id="health-strip">(.*?)</p>', page)
    assert html.unescape(re.sub(r"<[^>]+>", "", strip.group(2))).split(" · ")[0] == sentence


def test_after_a_rollback_the_strip_no_longer_says_the_list_comes_from_the_retrained_model(tmp_path):
    """The walk: a retrain, then `deployment.py --rollback`: the banner said "Rolled back" and the strip beneath it
    still read "New market detected, model retrained on 6 Dec", as if the retrained model made the list."""
    config = build_project(tmp_path)
    served = current_deployment(config.prod_deployment_folder).model_version
    record_run(config.output_model_folder / RUN_HISTORY,
               drift_run("r", "2026-03-01T06:00:00Z", version_before=served, version_after="retrained-model"))
    page = app_module.create_app(config.config_file).test_client().get("/").get_data(as_text=True)
    strip = re.search(r'<p class="strip ([a-z]*)" id="health-strip">(.*?)</p>', page)
    assert html.unescape(re.sub(r"<[^>]+>", "", strip.group(2))).split(" · ")[0] == \
        "The model retrained on 1 Mar was rolled back; the list comes from the model it replaced."
    assert strip.group(1) == "alert"


@pytest.mark.parametrize(("decision", "said"), [
    ("wait", "model drift found; the model is kept until enough labelled rows are held out to judge a retrain"),
    ("keep", "model drift found; the model is kept (the release is pinned)"),
])
def test_model_drift_found_but_not_acted_on_alarms_on_the_strip_and_says_so_on_the_model_page(tmp_path, decision,
                                                                                              said):
    """Issue 19.4: a holdout too small to judge a retrain is `wait`, drift found; it read "Model checked 2 hours ago:
    the model was kept until there are enough labelled rows to decide", calm, as if nothing had been found."""
    config = build_project(tmp_path)
    checked = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2 * 3600 - 60))
    record_run(config.output_model_folder / RUN_HISTORY,
               drift_run("k", checked, decision=decision, model_drift=True, data_drift=None))
    client = app_module.create_app(config.config_file).test_client()
    strip = re.search(r'<p class="strip ([a-z]*)" id="health-strip">(.*?)</p>', client.get("/").get_data(as_text=True))
    assert html.unescape(re.sub(r"<[^>]+>", "", strip.group(2))).split(" · ")[0] == \
        f"Model checked 2 hours ago: {said}."
    assert strip.group(1) == "alert"
    assert f"; {said}." in text_of(client.get("/model"))


def test_the_model_pages_history_does_not_call_a_carried_over_window_new_rows(tmp_path):
    """The walk: a small labelled file (40 rows) after a wait on an export of 10,000: /model's history read "new
    rows 10,040" where `fullprocess.py --history` read "new rows 40" for the same run."""
    config = build_project(tmp_path)
    record_run(config.output_model_folder / RUN_HISTORY,
               drift_run("w", "2026-04-01T06:00:00Z", decision="wait", rows_new=40, window_rows=10040))
    header, row = parse(app_module.create_app(config.config_file).test_client().get("/model")).tables["history"][:2]
    said = dict(zip(header, row, strict=True))
    assert "new rows" not in said and said["rows checked"] == "10,040"
    text = text_of(app_module.create_app(config.config_file).test_client().get("/model"))
    assert '"new rows" (python fullprocess.py --history) are the rows new in that run alone' in text
    assert "10,040 new rows since the last decision (40 in this run)" in text  # the latest check's sentence


def test_a_model_not_checked_on_new_data_says_so(client):
    assert "On new data: not measured yet for this model." in text_of(client.get("/model"))


def test_the_run_history_is_newest_first(client):
    rows = parse(client.get("/model")).tables["history"][1:]
    assert [row[0] for row in rows] == ["2026-01-02 06:00 UTC", "2026-01-01 06:00 UTC"]
    assert rows[0][1:] == ["dataset3.csv", "224", "retrain", "0.4100", "0.6900", "—", "—", "new-model", "done"]
    assert rows[1][3:5] == ["keep", "0.7200"]


def test_the_run_history_shows_the_newest_runs_and_counts_the_others(tmp_path):
    config = build_project(tmp_path)
    history = config.output_model_folder / RUN_HISTORY
    for day in range(1, page_health.HISTORY_ROWS + 4):
        record_run(history, drift_run(f"r{day}", f"2026-02-{day:02d}T06:00:00Z"))
    response = app_module.create_app(config.config_file).test_client().get("/model")
    rows = parse(response).tables["history"][1:]
    assert len(rows) == page_health.HISTORY_ROWS and rows[0][0] == f"2026-02-{page_health.HISTORY_ROWS + 3} 06:00 UTC"
    assert "3 older runs are in runhistory.sqlite" in text_of(response)


def test_without_a_history_or_a_model_the_page_says_what_to_run(project):
    response = app_module.create_app(project).test_client().get("/model")
    assert response.status_code == 200
    text = text_of(response)
    assert "No model is deployed yet; run deployment.py first." in text
    assert "No run recorded yet" in text and "Not checked yet." in text


def test_a_new_run_deployment_or_data_shows_on_the_next_request(tmp_path, monkeypatch):
    """The ranking and the rendered page are cached, and rebuilt as soon as a file they show changes."""
    config = build_project(tmp_path)
    builds = []
    original = call_list.ranking_of
    monkeypatch.setattr(call_list, "ranking_of", lambda path, model: builds.append(path) or original(path, model))
    client = app_module.create_app(config.config_file).test_client()
    first = client.get("/").get_data()
    assert client.get("/").get_data() == first and client.get("/?page=2").status_code == 200
    assert len(builds) == 1
    record_run(config.output_model_folder / RUN_HISTORY, drift_run("new", "2026-03-01T06:00:00Z"))
    assert "2026-03-01 06:00 UTC" in text_of(client.get("/model")) and len(builds) == 1
    assert "model retrained on 1 Mar" in text_of(client.get("/"))
    rows = config.final_data_file.read_text().splitlines()
    config.final_data_file.write_text("\n".join([*rows, "newclient,0,0,5000,0"]) + "\n")
    assert "newclient" in text_of(client.get("/?q=newclient")) and len(builds) == 2


# --- Downloads ---------------------------------------------------------------------------------------
def test_the_downloads_are_the_risk_list_and_the_latest_pdf(client, shared):
    links = dict((t.split()[0] + " " + t.split()[1], h) for h, t in parse(client.get("/")).links
                 if h.startswith("/downloads/"))
    assert links == {"Latest report": "/downloads/summary_report.pdf", "Risk list": "/downloads/risk_scores.csv"}
    csv_file = client.get(links["Risk list"])
    assert csv_file.status_code == 200 and csv_file.mimetype == "text/csv"
    assert csv_file.data == (shared.output_model_folder / RISK_SCORES).read_bytes()
    assert "attachment" in csv_file.headers["Content-Disposition"]
    pdf = client.get(links["Latest report"])
    assert pdf.mimetype == "application/pdf" and pdf.data == b"%PDF-1.4 summary_report10.pdf"
    assert "summary_report10.pdf" in pdf.headers["Content-Disposition"]


def test_a_missing_download_is_a_404_page_and_no_link(project):
    config = deploy_pipeline(load_config(project))
    client = app_module.create_app(config.config_file).test_client()
    assert not [h for h, _ in parse(client.get("/")).links if h.startswith("/downloads/")]
    for path in ("/downloads/risk_scores.csv", "/downloads/summary_report.pdf"):
        response = client.get(path)
        assert response.status_code == 404 and response.mimetype == "text/html"
        assert "yet" in text_of(response)


# --- Headers, markup and size -------------------------------------------------------------------------
PAGE_PATHS = ["/", "/?page=2&q=c", "/clients/twice", "/clients/nobody", "/?page=x", "/downloads/risk_scores.csv"]


@pytest.mark.parametrize("path", PAGE_PATHS)
def test_pages_allow_only_the_apps_own_resources(client, path):
    response = client.get(path)
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "style-src 'self'" in policy and "script-src" not in policy
    assert "frame-ancestors 'none'" in policy and response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    if response.mimetype == "text/html":
        body = response.get_data(as_text=True)
        tags = re.findall(r"<[^>]+>", body)
        assert "<script" not in body and not [t for t in tags if re.search(r"\s(style|on\w+)\s*=", t)]
        urls = re.findall(r'(?:href|src|action)="([^"]+)"', body)
        assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls)


def test_the_json_api_keeps_its_answers(client):
    health = client.get("/health")
    assert health.mimetype == "application/json" and "Content-Security-Policy" not in health.headers
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.mimetype == "application/json"
    assert client.post("/").status_code == 405 and client.post("/").mimetype == "application/json"


def test_the_page_and_what_it_loads_weigh_under_300_kb(client):
    page = client.get("/")
    loaded = [client.get(url) for url in re.findall(r'<link[^>]+href="([^"]+)"', page.get_data(as_text=True))]
    assert all(r.status_code == 200 for r in loaded)
    assert len(page.data) + sum(len(r.data) for r in loaded) < 300_000


# --- The key -------------------------------------------------------------------------------------------
@pytest.fixture
def keyed(shared, monkeypatch):
    monkeypatch.setenv("RISK_API_KEY", KEY)
    return app_module.create_app(shared.config_file).test_client()


def log_in(client, key: str = KEY, next_page: str = "/"):
    return client.post("/login", data={"key": key, "next": next_page})


def sent_to_the_form(response) -> bool:
    """The answer to a page asked for without the key: a redirect to the key form, naming the page."""
    return response.status_code == 303 and response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", ["/", "/?page=2", "/clients/twice", "/downloads/risk_scores.csv",
                                  "/downloads/summary_report.pdf"])
def test_with_a_key_nothing_but_the_form_is_served_without_it(keyed, shared, path):
    assert sent_to_the_form(keyed.get(path))
    response = keyed.get(path, follow_redirects=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert 'name="key"' in body and 'type="password"' in body
    assert f'name="next" value="{html.escape(path)}"' in body  # where to go back to: the one thing of the request
    shown = body.replace(f'value="{html.escape(path)}"', "")
    assert not any(html.escape(client) in shown for client in ranked_ids(shared)[:5])
    assert "%PDF" not in shown and "corporation" not in shown and "F1" not in shown
    assert response.headers["Content-Security-Policy"]


def test_the_form_keeps_the_key_as_a_strict_httponly_cookie_that_is_not_the_key(keyed):
    response = log_in(keyed, next_page="/clients/twice")
    assert response.status_code == 303 and response.headers["Location"] == "/clients/twice"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert KEY not in cookie
    expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", cookie).group(1)).timestamp()
    assert abs(expires - (time.time() + page_access.COOKIE_DAYS * 86400)) < 60  # kept COOKIE_DAYS, not per browser session
    assert keyed.get("/clients/twice").status_code == 200
    assert keyed.get("/downloads/risk_scores.csv").status_code == 200


def test_a_wrong_key_is_refused_with_a_sentence(keyed):
    for key, sentence in (("wrong", "That is not the API key; try again."), ("", "Enter the API key."),
                          (KEY + "x", "That is not the API key; try again."), ("clé", "That is not the API key")):
        response = log_in(keyed, key)
        assert response.status_code == 200 and sentence in text_of(response) and 'name="key"' in response.text
        assert "Set-Cookie" not in response.headers
    assert sent_to_the_form(keyed.get("/"))


def test_the_cookie_does_not_open_the_json_api(keyed):
    log_in(keyed)
    assert keyed.get("/").status_code == 200
    response = keyed.get("/scoring")
    assert response.status_code == 401 and response.mimetype == "application/json"


@pytest.mark.parametrize("token", ["", "x", "123.abc", f"{int(time.time())}.{'0' * 64}", "１２.x", "9" * 40 + ".x",
                                   # {"key_given": true, "_permanent": true} with a made-up signature
                                   "eyJfcGVybWFuZW50Ijp0cnVlLCJrZXlfZ2l2ZW4iOnRydWV9.axUTug.AAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                   "eyJfcGVybWFuZW50Ijp0cnVlLCJrZXlfZ2l2ZW4iOnRydWV9"])
def test_a_forged_cookie_gets_the_form(keyed, token):
    keyed.set_cookie(page_access.COOKIE, token)
    assert sent_to_the_form(keyed.get("/"))


def cookie_of(client, key: str, at: float | None = None) -> str:
    """The cookie the key form gives for `key`, as if filled in at time `at` (now by default)."""
    with pytest.MonkeyPatch.context() as patch:
        if at is not None:
            patch.setattr(time, "time", lambda: at)
        assert log_in(client, key).status_code == 303
    value = client.get_cookie(page_access.COOKIE).value
    client.delete_cookie(page_access.COOKIE)
    return value


def test_an_expired_token_or_one_of_another_key_gets_the_form(keyed, shared, monkeypatch):
    expired = cookie_of(keyed, KEY, at=time.time() - page_access.COOKIE_DAYS * 86400 - 10)
    keyed.set_cookie(page_access.COOKIE, expired)  # the browser would drop it; the server must refuse it anyway
    assert sent_to_the_form(keyed.get("/"))
    monkeypatch.setenv("RISK_API_KEY", "another-key-for-tests")
    other = app_module.create_app(shared.config_file).test_client()
    keyed.set_cookie(page_access.COOKIE, cookie_of(other, "another-key-for-tests"))  # a cookie of the key before a change
    assert sent_to_the_form(keyed.get("/"))
    keyed.set_cookie(page_access.COOKIE, cookie_of(keyed, KEY))
    assert keyed.get("/").status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "evil", "/\nx"])
def test_the_form_only_returns_to_pages_of_this_site(keyed, target):
    assert log_in(keyed, next_page=target).headers["Location"] == "/"


def test_forgetting_the_key_removes_the_cookie(keyed):
    log_in(keyed)
    response = keyed.post("/logout")
    assert response.status_code == 303 and page_access.COOKIE in response.headers["Set-Cookie"]
    assert sent_to_the_form(keyed.get("/"))


def test_the_stylesheet_is_served_without_the_key(keyed):
    assert keyed.get("/static/page.css").status_code == 200


def test_without_a_key_the_form_is_not_needed(client):
    response = client.get("/login?next=/clients/twice")
    assert response.status_code == 303 and response.headers["Location"] == "/clients/twice"
    assert "Forget the key" not in text_of(client.get("/"))


def test_the_csv_download_is_the_file_not_a_copy_in_memory(client, shared):
    """The risk list may be large: it is sent from the file."""
    response = client.get("/downloads/risk_scores.csv")
    assert response.is_streamed or response.direct_passthrough
    assert io.BytesIO(response.data).read(4) == b"rank"


# --- Links a browser can open for every id (issue 21) ------------------------------------------
AWKWARD_IDS = [".", "..", "a/b", "../etc", "x\\y", "~Li4", "plain id", "50%", "q?x#y", "株式会社"]


def test_every_client_link_opens_its_client_after_a_browsers_path_normalisation(deployed):
    from urllib.parse import urljoin, urlsplit

    write_csv(deployed.final_data_file, [f'"{c}",{i},{100 + i},{5 + i},0' for i, c in enumerate(AWKWARD_IDS)])
    client = app_module.create_app(deployed.config_file).test_client()
    page = client.get("/").get_data(as_text=True)
    links = [html.unescape(h) for h in re.findall(r'<td class="client"><a href="([^"]+)"', page)]
    assert len(links) == len(AWKWARD_IDS)
    opened = {}
    for link in links:
        path = urlsplit(urljoin("http://127.0.0.1:8000/", link.replace("\\", "/"))).path  # as a browser resolves it
        assert path.startswith("/clients/") and path == link.replace("\\", "/")  # nothing dropped or merged
        answer = client.get(path)
        assert answer.status_code == 200, link
        title = re.search(r'<h1 id="client-title">Client <span class="mono">(.*?)</span>', answer.get_data(as_text=True))
        opened[link] = html.unescape(title.group(1))
    assert sorted(opened.values()) == sorted(AWKWARD_IDS)
    assert "/clients/plain%20id" in links and "/clients/~fkxpNA" in links  # readable stay readable; ~ is encoded


# --- The estimate without labels, the ledger and calibration (issue 20) ------------------------------
RELIABILITY = [{"predicted": 0.05, "observed": 0.04, "rows": 30}, {"predicted": 0.3, "observed": 0.35, "rows": 30},
               {"predicted": 0.7, "observed": 0.6, "rows": 30}, {"predicted": 0.95, "observed": 0.9, "rows": 30}]


def estimated_run(run_id: str, started_at: str, **changes) -> dict:
    estimate = {"decision": "keep", "f1_new_data": None, "estimated_f1": 0.61, "estimated_f1_interval": [0.55, 0.66],
                "estimated_rows": 3000, "window_labelled": 0, "estimated_baseline": 0.86, "estimated_drift": True}
    return drift_run(run_id, started_at, **{**estimate, **changes})


def test_the_model_page_says_the_estimate_with_its_baseline_and_warns_of_an_estimated_drop(tmp_path):
    config = build_project(tmp_path)
    record_run(config.output_model_folder / RUN_HISTORY, estimated_run("e", "2026-03-01T06:00:00Z"))
    response = app_module.create_app(config.config_file).test_client().get("/model")
    text = text_of(response)
    assert "estimated F1 0.61 [0.55, 0.66] on 3,000 unlabelled clients; own-market baseline 0.86" in text
    assert 'id="estimate-warning"' in response.get_data(as_text=True)
    assert "Warning: the estimated F1 has dropped below the own-market baseline" in text
    assert "Realized F1 not known yet" in text
    assert parse(response).tables["history"][1][6:8] == ["0.6100", "—"]  # estimated, realized


def test_the_model_page_gives_no_warning_for_an_estimate_that_holds(tmp_path):
    config = build_project(tmp_path)
    record_run(config.output_model_folder / RUN_HISTORY,
               estimated_run("e", "2026-03-01T06:00:00Z", estimated_drift=False, realized_f1=0.6, realized_rows=2950))
    response = app_module.create_app(config.config_file).test_client().get("/model")
    assert "own-market baseline 0.86" in text_of(response)
    assert 'id="estimate-warning"' not in response.get_data(as_text=True)
    assert "Realized F1 0.60 on the 2,950 of the window's 3,000 clients whose labels are known" in text_of(response)
    assert parse(response).tables["history"][1][6:8] == ["0.6100", "0.6000"]


def test_the_reliability_diagram_has_one_point_per_bin(tmp_path):
    config = build_project(tmp_path)
    calibration = {"ece": 0.05, "brier": 0.12, "rows": 120, "bins": 10, "reliability": RELIABILITY}
    record_run(config.output_model_folder / RUN_HISTORY, estimated_run("e", "2026-03-01T06:00:00Z",
                                                                       calibration=calibration))
    response = app_module.create_app(config.config_file).test_client().get("/model")
    figure = re.search(r'<figure class="reliability".*?</figure>', response.get_data(as_text=True), re.S).group(0)
    points = re.findall(r'<circle class="bin" cx="([0-9.]+)" cy="([0-9.]+)"', figure)
    assert len(points) == len(RELIABILITY)
    side = page_charts.SIDE
    assert [(float(x), float(y)) for x, y in points] == [
        pytest.approx((side * b["predicted"], side * (1 - b["observed"])), abs=0.1) for b in RELIABILITY]
    assert '<line class="diagonal"' in figure
    assert "Calibration on 120 labelled rows: ECE 0.050, Brier score 0.120" in text_of(response)


def test_asking_for_new_clients_before_a_second_run_says_there_is_nothing_to_compare_with(client):
    """A first run has no earlier list: "new on the list" found no client and only said no client matched."""
    assert client.get("/risk?limit=1").get_json()["compared_with_run"] is None
    text = text_of(client.get("/?moved=new"))
    assert "No client matches these filters: no earlier run's list to compare this one with yet." in text


def test_a_reliability_point_on_the_diagrams_edge_is_drawn_whole(tmp_path):
    """Bins predicted near 0% sit on the frame's left edge: the drawing must leave room for the whole dot (half of
    each was cut off)."""
    config = build_project(tmp_path)
    edges = [{"predicted": 0.0, "observed": 1.0, "rows": 30}, {"predicted": 1.0, "observed": 0.0, "rows": 30}]
    record_run(config.output_model_folder / RUN_HISTORY, estimated_run("e", "2026-03-01T06:00:00Z", calibration={
        "ece": 0.5, "brier": 0.5, "rows": 60, "bins": 2, "reliability": edges}))
    page = app_module.create_app(config.config_file).test_client().get("/model").get_data(as_text=True)
    figure = re.search(r'<figure class="reliability".*?</figure>', page, re.S).group(0)
    left, top, width, height = map(float, re.search(r'<svg viewBox="([-0-9. ]+)"', figure).group(1).split())
    dots = [tuple(map(float, dot)) for dot in re.findall(r'cx="([-0-9.]+)" cy="([-0-9.]+)" r="([0-9.]+)"', figure)]
    assert len(dots) == 2
    assert all(left <= x - r and x + r <= left + width and top <= y - r and y + r <= top + height for x, y, r in dots)


def test_a_clients_risk_chart_shows_its_scale(client):
    """One run is one dot: without 0% and 100% beside the chart the dot gave no reading."""
    page = client.get("/clients/twice").get_data(as_text=True)
    figure = re.search(r'<figure class="risk-runs".*?</figure>', page, re.S).group(0)
    assert re.findall(r'<text class="risk-scale"[^>]*>([^<]*)</text>', figure) == ["100%", "0%"]
    left = float(re.search(r'<svg viewBox="([-0-9.]+) ', figure).group(1))
    assert left <= -page_charts.RiskChart.scale_width < 0  # the labels stand left of the chart, inside the drawing


def test_the_model_page_names_the_served_models_calibration(tmp_path):
    config = build_project(tmp_path)  # 60 test rows: too few to fit a calibrator
    text = text_of(app_module.create_app(config.config_file).test_client().get("/model"))
    assert re.search(r"Calibration of the served model's probabilities: none \(60 held-out rows, .*\); measured on "
                     r"60 rows of the test data \(testdata.csv\): ECE \d\.\d{3}, Brier score \d\.\d{3}\.", text)


def test_a_fitted_calibrator_reads_with_its_ece_before_and_after():
    record = {"method": "isotonic", "rows": 400, "source": "the test data", "before": {"ece": 0.12, "brier": 0.15},
              "after": {"ece": 0.031, "brier": 0.11}}
    assert estimate_words.calibrator_text(record) == ("isotonic, fitted on 400 rows of the test data: ECE 0.120 → "
                                                      "0.031, Brier score 0.150 → 0.110")
    assert estimate_words.calibrator_text(None) is None


def test_a_window_without_bins_draws_no_reliability_diagram():
    assert page_charts.reliability_svg(None) is None
    assert page_charts.reliability_svg({"ece": 0.1, "reliability": []}) is None
    assert len(page_charts.reliability_svg({"reliability": RELIABILITY}).points) == len(RELIABILITY)


def test_a_check_on_too_few_rows_says_so_instead_of_no_drift(tmp_path):
    """Issue 19.3: 5 new rows (PSI 4.9) are too few to tell; 'No feature drifted at the latest check' claimed more."""
    config = build_project(tmp_path)
    few = {name: {"psi": 4.9, "psi_label": "too few rows", "ks_statistic": 0.29, "ks_p_value": 0.72, "rows": 5,
                  "drift": False} for name in ("lastmonth_activity", "lastyear_activity", "number_of_employees")}
    record_run(config.output_model_folder / RUN_HISTORY,
               drift_run("k", "2026-04-01T06:00:00Z", decision="wait", f1_new_data=None, window_rows=5,
                         data_drift={"drift": False, "too_few_rows": True, "rows": 5, "features": few}))
    text = text_of(app_module.create_app(config.config_file).test_client().get("/model"))
    assert "Too few rows to tell whether the data drifted: the check took 5 rows, fewer than 50." in text
    assert "No feature drifted" not in text
    assert "PSI 4.900" not in text  # figures on 5 rows are not set out as if they could tell


def test_a_check_where_nothing_drifted_still_gives_each_features_figures(tmp_path):
    config = build_project(tmp_path)
    steady = {name: {"psi": 0.012, "psi_label": "stable", "ks_statistic": 0.02, "ks_p_value": 0.5, "drift": False}
              for name in ("lastmonth_activity", "number_of_employees")}
    record_run(config.output_model_folder / RUN_HISTORY,
               drift_run("k", "2026-04-01T06:00:00Z", decision="keep", data_drift={"drift": False, "features": steady}))
    text = text_of(app_module.create_app(config.config_file).test_client().get("/model"))
    assert ("No feature drifted at the latest check. Each feature: activity last month PSI 0.012 (stable), KS 0.020 "
            "(p 0.5); employees PSI 0.012 (stable), KS 0.020 (p 0.5).") in text


def test_a_calibrator_fitted_on_held_out_rows_names_them_once():
    record = {"method": "none", "rows": 85, "source": "held-out rows of the new market, left out of its training",
              "reason": "85 held-out rows, 16 of whom left: calibration needs 100 rows and 10 of each class",
              "before": {"ece": 0.16, "brier": 0.186}, "after": {"ece": 0.16, "brier": 0.186}}
    assert estimate_words.calibrator_text(record).endswith(
        "; measured on 85 held-out rows of the new market, left out of its training: ECE 0.160, Brier score 0.186")


def test_the_reliability_diagram_names_the_model_whose_probabilities_it_shows(tmp_path):
    """After a retrain, the newest labelled window was the replaced model's: its diagram sat under the served model."""
    config = build_project(tmp_path)
    calibration = {"ece": 0.27, "brier": 0.28, "rows": 420, "bins": 10, "reliability": RELIABILITY}
    record_run(config.output_model_folder / RUN_HISTORY, estimated_run("e", "2026-03-01T06:00:00Z",
                                                                       calibration=calibration,
                                                                       version_before="replaced-model"))
    text = text_of(app_module.create_app(config.config_file).test_client().get("/model"))
    assert "Reliability of model replaced-model, 2026-03-01 06:00 UTC: predicted share leaving" in text


def test_the_latest_checks_f1_on_too_few_labelled_rows_says_how_few(tmp_path):
    """A wait on a window of 5 labelled rows read "F1 0.0000" in the card's big type, bare (issue 19's five rows)."""
    config = build_project(tmp_path)
    version = current_deployment(config.prod_deployment_folder).model_version
    history = config.output_model_folder / RUN_HISTORY
    record_run(history, drift_run("few", "2026-04-01T06:00:00Z", decision="wait", f1_new_data=0.0,
                                  version_before=version, window_rows=2005, window_labelled=5, window_positives=2))
    text = text_of(app_module.create_app(config.config_file).test_client().get("/model"))
    assert "Latest drift check F1 0.0000 (5 rows: fewer than 30) " in text
    record_run(history, drift_run("many", "2026-04-02T06:00:00Z", decision="keep", f1_new_data=0.73,
                                  version_before=version, window_rows=400, window_labelled=400, window_positives=90))
    text = text_of(app_module.create_app(config.config_file).test_client().get("/model"))
    assert "Latest drift check F1 0.7300 2026-04-02" in text  # enough rows: the figure alone
    record_run(history, drift_run("none", "2026-04-03T06:00:00Z", decision="wait", f1_new_data=None,
                                  version_before=version, window_rows=300, window_labelled=0, window_positives=0))
    text = text_of(app_module.create_app(config.config_file).test_client().get("/model"))
    assert "Latest drift check F1 — 2026-04-03" in text  # no labelled row: no F1, as before
