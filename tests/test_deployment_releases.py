"""deployment.py --list, --rollback (to the previous model), --rollback --to, --roll-forward (issue 23)."""

from __future__ import annotations

from pathlib import Path

import pytest

import deployment
import ingestion
import scoring
import training
from conftest import client_rows, one_sentence, run_script, write_csv
from riskcore.config import Config
from riskcore.contract import INGESTED_FILES, MODEL_FILE, RUN_HISTORY, DataError
from riskcore.files import sha256_file
from riskcore.model.drift_evidence import baseline_rows
from riskcore.ops.history import read_history
from riskcore.release import publish
from riskcore.release.listing import release_rows
from riskcore.release.load import (
    current_deployment,
    deployed_metadata,
    first_deployed,
    read_release,
    require_deployment,
)
from riskcore.release.operator_state import read_control


def new_model(config: Config, name: str, seed: int) -> None:
    """New data and a model retrained on it, deployed (the automation's retrain)."""
    write_csv(config.input_folder / name, client_rows(150, seed=seed, flip=True))
    ingestion.run(config)
    training.run(config)
    scoring.run(config)
    deployment.run(config)


def new_records(config: Config, name: str) -> None:
    """A records-only release of the served model (the automation's keep decision)."""
    ingested = config.output_folder / INGESTED_FILES
    ingested.write_text(ingested.read_text() + f"{name}\n")
    publish.deploy_records(config)


@pytest.fixture
def four_releases(deployed: Config) -> Config:
    """Releases 1 model A, 2 records A, 3 model B, 4 records B (current)."""
    new_records(deployed, "kept-a.csv")
    new_model(deployed, "flipped.csv", seed=9)
    new_records(deployed, "kept-b.csv")
    return deployed


def numbered(config: Config) -> dict[int, str]:
    return {row["number"]: row["release"] for row in release_rows(config.prod_deployment_folder)}


def test_rollback_goes_to_the_previous_model_skipping_records_only_releases(four_releases: Config):
    prod = four_releases.prod_deployment_folder
    releases = numbered(four_releases)
    model_b = require_deployment(prod).model_version
    after = deployment.run(four_releases, action="rollback")
    assert after.release == releases[2]  # model A with its newest records, not release 3 (model B again)
    assert after.model_version != model_b
    assert sha256_file(prod / MODEL_FILE) == after.manifest["files"][MODEL_FILE]
    [row] = [r for r in read_history(four_releases.output_model_folder / RUN_HISTORY) if r["decision"] == "rollback"]
    assert row["version_before"] == model_b and row["version_after"] == after.model_version
    assert f"from release {releases[4]} to {releases[2]} by " in row["note"]
    assert row["started_at"] and row["outcome"] == "done"


def test_rollback_to_a_release_and_roll_forward_undo_each_other(four_releases: Config):
    prod = four_releases.prod_deployment_folder
    releases = numbered(four_releases)
    assert deployment.run(four_releases, action="rollback", to="1").release == releases[1]
    assert deployment.run(four_releases, action="rollback", to=releases[3]).release == releases[3]
    # Two rollbacks in force: rolling forward undoes the newest, then the one before.
    assert deployment.run(four_releases, action="roll_forward").release == releases[1]
    assert deployment.run(four_releases, action="roll_forward").release == releases[4]
    with pytest.raises(DataError, match="No rollback"):
        deployment.run(four_releases, action="roll_forward")
    decisions = [(r["decision"], r["note"]) for r in read_history(four_releases.output_model_folder / RUN_HISTORY)
                 if r["decision"] in ("rollback", "roll-forward")]
    assert [d for d, _ in decisions] == ["rollback", "rollback", "roll-forward", "roll-forward"]
    assert f"from release {releases[1]} to {releases[4]}" in decisions[-1][1]
    assert current_deployment(prod).release == releases[4]


def test_a_release_served_again_is_not_listed_as_rolled_back_from(four_releases: Config):
    # --rollback --to 1, then --rollback --to 4: release 4 read "current, ..., rolled back from (... by root)".
    deployment.run(four_releases, action="rollback", to="1")
    deployment.run(four_releases, action="rollback", to="4")
    marks = {row["number"]: row["marks"] for row in release_rows(four_releases.prod_deployment_folder)}
    assert marks[4][0] == "current" and not any(mark.startswith("rolled back from") for mark in marks[4])
    assert any(mark.startswith("rolled back from") for mark in marks[1])


def test_rollback_to_an_unknown_or_the_served_release_is_one_sentence(four_releases: Config):
    with pytest.raises(DataError, match="No release '99' is kept") as unknown:
        deployment.run(four_releases, action="rollback", to="99")
    with pytest.raises(DataError, match="already the one served") as served:
        deployment.run(four_releases, action="rollback", to="4")
    one_sentence(str(unknown.value)), one_sentence(str(served.value))


def test_roll_forward_is_refused_once_another_release_is_served(four_releases: Config):
    deployment.run(four_releases, action="rollback")
    new_records(four_releases, "later.csv")  # the automation kept the rolled-back model on new records
    with pytest.raises(DataError, match="has been served since the rollback"):
        deployment.run(four_releases, action="roll_forward")


def test_a_new_model_ends_the_rollback(four_releases: Config):
    prod = four_releases.prod_deployment_folder
    deployment.run(four_releases, action="rollback")
    assert read_control(prod)["rollbacks"]
    new_model(four_releases, "another.csv", seed=11)
    assert read_control(prod)["rollbacks"] == []


def test_a_model_keeps_the_time_it_was_first_deployed_through_records_releases(four_releases: Config):
    prod = four_releases.prod_deployment_folder
    rows = {row["number"]: row for row in release_rows(prod)}
    assert rows[2]["model_deployed_at"] == rows[1]["deployed_at"]
    assert rows[4]["model_deployed_at"] == rows[3]["deployed_at"]
    assert first_deployed(prod, require_deployment(prod)) == rows[3]["deployed_at"]
    deployment.run(four_releases, action="rollback")
    assert first_deployed(prod, require_deployment(prod)) == rows[1]["deployed_at"]


@pytest.mark.slow
def test_list_rollback_to_and_roll_forward_as_an_operator_runs_them(four_releases: Config, tmp_path: Path):
    def script(*args: str):
        result = run_script("deployment.py", "--config", str(four_releases.config_file), *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    releases = numbered(four_releases)
    listed = script("--list").splitlines()
    assert listed[0].split()[:3] == ["release", "model", "kind"]
    by_number = {line.split()[0]: line for line in listed[1:]}
    assert set(by_number) == {"1", "2", "3", "4"}
    assert "new model" in by_number["1"] and "same model, newer records" in by_number["2"]
    assert listed[0].split()[4:6] == ["test", "F1"] and "drift baseline" in listed[0]
    for number, name in releases.items():  # each release's test F1, then its own-market baseline
        release = read_release(four_releases.prod_deployment_folder, name)
        baseline = deployed_metadata(release)["baseline"]
        line = by_number[str(number)]
        shown = f"{baseline['f1']:.4f} ({baseline_rows(baseline)})"  # the rows said once, as on the page and PDF
        assert f" {release.manifest['score']:.4f} " in line.split(shown)[0] and shown in line
    assert by_number["4"].rstrip().endswith("current")
    assert script("--rollback", "--to", "1").startswith(f"release {releases[1]}:")
    script("--pin")
    listed = {line.split()[0]: line for line in script("--list").splitlines()[1:]}
    assert "current" in listed["1"] and "pinned" in listed["1"] and "served by a rollback from" in listed["1"]
    assert "rolled back from" in listed["4"]
    script("--unpin")
    assert script("--roll-forward").startswith(f"release {releases[4]}:")
    listed = {line.split()[0]: line for line in script("--list").splitlines()[1:]}
    assert "rolled back from" not in listed["4"] and listed["4"].rstrip().endswith("current")
    refused = run_script("deployment.py", "--config", str(four_releases.config_file), "--to", "1", cwd=tmp_path)
    assert refused.returncode == 2 and "--to goes with --rollback" in refused.stderr
    decisions = [r["decision"] for r in read_history(four_releases.output_model_folder / RUN_HISTORY)]
    assert decisions[-4:] == ["rollback", "pin", "unpin", "roll-forward"]


# --- One truth about what is served: /health, the pages and the PDF --------------------------------
def test_health_page_and_pdf_name_the_served_model_its_first_deployment_and_the_rollback(four_releases: Config):
    import html

    from pypdf import PdfReader

    import app as app_module
    from riskcore.formatting import when
    from riskcore.report.writer import write_reports

    prod = four_releases.prod_deployment_folder
    rows = {row["number"]: row for row in release_rows(prod)}
    client = app_module.create_app(str(four_releases.config_file)).test_client()
    assert client.get("/health").get_json()["operator_state"] is None
    assert 'id="operator-banner"' not in client.get("/").get_data(as_text=True)
    served = deployment.run(four_releases, action="rollback")
    health = client.get("/health").get_json()
    assert health["model_version"] == served.model_version == rows[2]["model_version"]
    assert health["release"] == rows[2]["release"]
    assert health["deployed_at"] == rows[1]["deployed_at"]  # the model's first deployment, not release 2's
    assert health["release_deployed_at"] == rows[2]["deployed_at"]
    state = health["operator_state"]
    assert state["state"] == "rolled back" and state["rollback"]["from"] == rows[4]["release"]
    assert f"Rolled back from release {rows[4]['release']}" in state["sentence"] and " by " in state["sentence"]
    page = html.unescape(client.get("/").get_data(as_text=True))
    assert 'id="operator-banner"' in page and state["sentence"] in page
    assert f"first deployed {when(rows[1]['deployed_at'])}" in html.unescape(client.get("/model").get_data(as_text=True))
    write_reports(four_releases, run_number=1)
    [pdf] = four_releases.output_model_folder.glob("summary_report*.pdf")
    text = " ".join(" ".join(PdfReader(pdf).pages[0].extract_text().split()).split())
    assert f"Rolled back from release {rows[4]['release']}" in text  # on the managers' page
    pages = [" ".join(page.extract_text().split()) for page in PdfReader(pdf).pages]
    text = next(page for page in pages if "Headline" in page)  # the evidence's headline, after the managers' page
    assert f"Rolled back from release {rows[4]['release']}" in text
    assert f"Model {served.model_version}" in text and f"first deployed {when(rows[1]['deployed_at'])}" in text
    deployment.run(four_releases, action="roll_forward")
    assert client.get("/health").get_json()["operator_state"] is None
    assert 'id="operator-banner"' not in client.get("/").get_data(as_text=True)


@pytest.mark.slow  # 1-2.6 s: in make test, out of make test-fast's minute
def test_downloads_made_by_another_model_than_the_served_one_say_so(four_releases: Config):
    # After a rollback the page ranks with the served model; the PDF and the CSV are the rolled-back model's
    # until the next tick makes them again, and the page said nothing of it.
    import html

    import app as app_module
    from riskcore.report.writer import write_reports

    client = app_module.create_app(str(four_releases.config_file)).test_client()
    before = require_deployment(four_releases.prod_deployment_folder).model_version
    write_reports(four_releases, run_number=1)
    assert 'id="downloads-stale"' not in client.get("/").get_data(as_text=True)
    served = deployment.run(four_releases, action="rollback")
    assert served.model_version != before
    for path in ("/", "/model"):
        page = html.unescape(client.get(path).get_data(as_text=True))
        assert f"made by model {before}, not the one served now: the next tick makes them again" in page
    write_reports(four_releases, run_number=2)  # what the next tick does
    assert 'id="downloads-stale"' not in client.get("/").get_data(as_text=True)


@pytest.mark.slow  # two ticks with real reports (4 s): in make test, out of make test-fast's minute
def test_the_tick_after_a_rollback_says_why_it_makes_the_reports_once(four_releases: Config, caplog):
    import logging

    from riskcore.ops import tick as tick_module
    from riskcore.report.writer import write_reports

    write_reports(four_releases, run_number=1)
    deployment.run(four_releases, action="rollback")
    made = []

    def reports(config, run):
        made.append(run.run_number)
        write_reports(config, run_number=run.run_number)

    with caplog.at_level(logging.INFO):
        assert tick_module.tick(four_releases, reports) == 0
    said = [record.getMessage() for record in caplog.records]
    assert any("the risk list was made by model" in line for line in said) and len(made) == 1
    assert not any("an earlier run stopped before its reports" in line for line in said), said  # none did
    assert tick_module.tick(four_releases, reports) == 0
    assert len(made) == 1  # once: the next tick finds the served model's reports made


def test_a_rollback_then_a_pin_read_as_two_sentences():
    from riskcore.release.operator_state import serving_state

    control = {"rollbacks": [{"from": "r2", "from_model": "m2", "to": "r1", "to_model": "m1",
                              "at": "2026-12-06T16:19:00Z", "by": "ops"}],
               "pinned": {"release": "r1", "at": "2026-12-06T16:28:00Z", "by": "ops"}}
    said = serving_state(control, "r1", "m1")["sentence"]
    assert said == ("Rolled back from release r2 (model m2) to release r1 on 2026-12-06 16:19 UTC by ops. "
                    "Release r1 pinned on 2026-12-06 16:28 UTC by ops: the automation keeps this model until "
                    "deployment.py --unpin.")  # it read "... by ops; Release r1 pinned ..."


def test_the_banner_says_pinned_with_by_whom(four_releases: Config):
    import app as app_module

    deployment.run(four_releases, action="pin")
    state = app_module.create_app(str(four_releases.config_file)).test_client().get("/health").get_json()[
        "operator_state"]
    assert state["state"] == "pinned" and state["pinned"]["by"] and "deployment.py --unpin" in state["sentence"]


@pytest.mark.parametrize("action", ["--rollback", "--roll-forward", "--pin", "--unpin", "--repair"])
def test_an_action_with_nothing_deployed_is_one_sentence_and_writes_nothing(config: Config, capsys, action: str):
    # --unpin logged "unpinned nothing", then failed, and the folder was claimed in a new control.json all the same.
    assert deployment.main(["--config", str(config.config_file), action]) == 1
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("error: ") and str(config.prod_deployment_folder) in one_sentence(line)
    assert captured.out == "" and not config.prod_deployment_folder.exists()


@pytest.mark.parametrize(("action", "said"), [("pin", "is already pinned (by "),
                                              ("unpin", "was not pinned: nothing to unpin")])
def test_a_pin_or_unpin_repeated_says_so_and_records_nothing(deployed: Config, caplog, action: str, said: str):
    # A second --pin recorded a second pin row, sent a second alert and moved the pin's time and author.
    from riskcore.release.operator_state import CONTROL_FILE

    caplog.set_level("INFO")
    deployment.run(deployed, action="pin")
    if action == "unpin":
        deployment.run(deployed, action="unpin")
    control = (deployed.prod_deployment_folder / CONTROL_FILE).read_bytes()
    runs = len(read_history(deployed.output_model_folder / RUN_HISTORY))
    deployment.run(deployed, action=action)
    assert said in caplog.text
    assert (deployed.prod_deployment_folder / CONTROL_FILE).read_bytes() == control
    assert len(read_history(deployed.output_model_folder / RUN_HISTORY)) == runs
