"""ingestion.py: one row per client, labels that come later, the record, rejections, holding back, idempotence."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pytest

import ingestion
from conftest import HEADER, client_rows, one_sentence, run_script, write_csv
from riskcore.config import Config, load_config
from riskcore.contract import (
    COLUMNS,
    FEATURES,
    FINAL_DATA,
    ID_COLUMN,
    INGESTED_FILES,
    INGESTION_RECORD,
    TARGET,
    DataError,
)
from riskcore.data import snapshots
from riskcore.data.client_csv import read_client_csv
from riskcore.data.snapshots import HeldBack
from riskcore.data.validation import CLIENT_SCHEMA, LABELS_OPTIONAL, labelled
from riskcore.files import sha256_file


def test_merges_and_drops_exact_duplicates(config: Config):
    result = ingestion.run(config)
    assert len(result.frame) == 120 + 100  # 230 rows read, 10 duplicates across files
    assert [f.name for f in result.files] == ["dataset1.csv", "dataset2.csv"]
    assert [(f.rows_read, f.rows_kept, f.duplicates_dropped) for f in result.files] == [
        (120, 120, 0), (110, 100, 10)]
    final = config.final_data_file.read_text().splitlines()
    assert final[0] == HEADER and len(final) == 221
    assert (config.output_folder / INGESTED_FILES).read_text() == "dataset1.csv\ndataset2.csv\n"


def test_record_lists_hashes_and_counts(config: Config):
    ingestion.run(config)
    record = json.loads((config.output_folder / INGESTION_RECORD).read_text())
    assert record["rows_read"] == 230 and record["rows_kept"] == 220
    first = record["files"][0]
    assert first["sha256"] == sha256_file(config.input_folder / "dataset1.csv")
    assert record["final_data_sha256"] == sha256_file(config.final_data_file)
    assert record["rejected"] == []


def test_ingesting_twice_gives_identical_finaldata(config: Config):
    ingestion.run(config)
    first = config.final_data_file.read_bytes()
    ingestion.run(config)
    assert config.final_data_file.read_bytes() == first


def test_non_csv_files_are_ignored(config: Config):
    (config.input_folder / ".gitkeep").write_text("")
    (config.input_folder / "Icon\r").write_bytes(b"")
    (config.input_folder / "notes.txt").write_text("hello")
    result = ingestion.run(config)
    assert sorted(result.ignored) == sorted([".gitkeep", "Icon\r", "notes.txt"])
    assert result.rejected == []


BAD_FILES = {
    "empty.csv": (b"", "is empty"),
    "headeronly.csv": (HEADER.encode() + b"\n", "header but no rows"),
    "missingcol.csv": (b"corporation,lastmonth_activity,lastyear_activity,exited\nabcd,1,2,0\n",
                       'missing the column "number_of_employees"'),
    "extracol.csv": ((HEADER + ",colour\nabcd,1,2,3,0,red\n").encode(), 'unexpected column "colour"'),
    "text.csv": ((HEADER + "\nabcd,many,2,3,0\n").encode(), '"many" in column "lastmonth_activity" at row 1'),
    "negative.csv": ((HEADER + "\nabcd,1,-2,3,0\n").encode(), 'negative value in column "lastyear_activity"'),
    "label.csv": ((HEADER + "\nabcd,1,2,3,7\n").encode(), '"7" in column "exited" at row 1; expected 0 or 1.'),
    "binary.csv": (b"\x00\x01\x02\xff" * 50, "binary"),
    "latin1.csv": ((HEADER + "\nsoci\xe9t\xe9,1,2,3,0\n").encode("latin-1"), "not UTF-8"),
    "semicolon.csv": (HEADER.replace(",", ";").encode() + b"\nabcd;1;2;3;0\n", "';' as its separator"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_is_rejected_and_good_files_still_ingested(config: Config, name: str):
    content, expected = BAD_FILES[name]
    (config.input_folder / name).write_bytes(content)
    result = ingestion.run(config)
    assert [r.name for r in result.rejected] == [name]
    assert expected in result.rejected[0].reason and name in result.rejected[0].reason
    assert [f.name for f in result.files] == ["dataset1.csv", "dataset2.csv"]
    assert name not in (config.output_folder / INGESTED_FILES).read_text()
    record = json.loads((config.output_folder / INGESTION_RECORD).read_text())
    assert record["rejected"][0]["name"] == name


def test_all_files_bad_keeps_earlier_outputs(config: Config):
    ingestion.run(config)
    before = config.final_data_file.read_bytes()
    for path in config.input_folder.iterdir():
        path.write_text("garbage\n")
    with pytest.raises(DataError, match="Nothing ingested"):
        ingestion.run(config)
    assert config.final_data_file.read_bytes() == before


def test_nothing_ingested_names_each_rejected_file_in_a_sentence_of_its_own(config: Config):
    for path in sorted(config.input_folder.iterdir()):
        path.write_text(HEADER + "\nabcd,x,1,1,0\n")
    with pytest.raises(DataError) as failed:
        ingestion.run(config)
    message = str(failed.value)
    assert message.startswith(f"Nothing ingested from {config.input_folder}: dataset1.csv has ")
    assert ". dataset2.csv has " in message and ".;" not in message and message.endswith(".")
    for path in config.input_folder.iterdir():
        path.unlink()
    with pytest.raises(DataError, match=r": it holds no CSV file\.$"):
        ingestion.run(config)


def test_fixed_file_is_picked_up_again(config: Config):
    bad = config.input_folder / "dataset3.csv"
    bad.write_text(HEADER + "\nabcd,x,1,1,0\n")
    assert "dataset3.csv" not in {f.name for f in ingestion.run(config).files}
    write_csv(bad, client_rows(5, seed=9))
    assert "dataset3.csv" in {f.name for f in ingestion.run(config).files}


@pytest.mark.slow
def test_command_exits_1_with_one_sentence_on_a_rejected_file(project: Path, tmp_path_factory):
    (project.parent / "input" / "broken.csv").write_text(HEADER + "\nabcd,1,2\n")
    result = run_script("ingestion.py", "--config", str(project), cwd=tmp_path_factory.mktemp("cwd"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "broken.csv" in line]
    said = one_sentence(line.split("riskcore.data.folder_ingest: rejected ", 1)[1])  # the log line's message
    assert said.startswith('broken.csv has an empty value in column "number_of_employees" at row 1')
    assert (project.parent / "ingested" / FINAL_DATA).is_file()


# --- Nothing production ingested is lost to a broken or missing copy ----------------------------
def outputs(config: Config) -> dict[str, bytes]:
    return {name: (config.output_folder / name).read_bytes() for name in (FINAL_DATA, INGESTED_FILES, INGESTION_RECORD)}


def test_a_broken_copy_of_an_ingested_file_holds_the_whole_ingestion_back(deployed: Config):
    before = outputs(deployed)
    with open(deployed.input_folder / "dataset1.csv", "a") as handle:
        handle.write('zzzz,10,"1,200",5,0\n')
    write_csv(deployed.input_folder / "dataset3.csv", client_rows(5, seed=9))  # new data waits too
    with pytest.raises(HeldBack) as caught:
        ingestion.run(deployed)
    message = str(caught.value)
    assert message.startswith("Nothing was ingested: dataset1.csv has") and "at row 121" in message
    assert "dataset1.csv was ingested before, so the earlier rows stay in use" in message and "\n" not in message
    assert [r.name for r in caught.value.result.rejected] == ["dataset1.csv"]
    assert outputs(deployed) == before


def test_a_file_gone_from_the_folder_holds_everything_back_until_the_operator_drops_it(deployed: Config):
    before = outputs(deployed)
    gone = deployed.input_folder / "dataset2.csv"
    sha = sha256_file(gone)
    gone.unlink()
    with pytest.raises(HeldBack, match=r"dataset2\.csv was ingested before and is no longer in .*; to drop them, "
                                       r"run python fullprocess\.py --allow-removed"):
        ingestion.run(deployed)
    assert outputs(deployed) == before
    result = ingestion.run(deployed, allow_removed=True)
    assert [f.name for f in result.files] == ["dataset1.csv"]
    [removed] = json.loads((deployed.output_folder / INGESTION_RECORD).read_text())["removed"]
    assert (removed["name"], removed["sha256"]) == ("dataset2.csv", sha) and removed["by"]


def test_a_new_file_that_fails_is_rejected_alone(deployed: Config):
    (deployed.input_folder / "dataset3.csv").write_text(f"{HEADER}\nabcd,x,1,1,0\n")
    result = ingestion.run(deployed)
    assert [r.name for r in result.rejected] == ["dataset3.csv"]
    assert [f.name for f in result.files] == ["dataset1.csv", "dataset2.csv"]


def test_another_input_folders_files_are_not_missing(deployed: Config):
    """The course's handover: the practice setup deployed, the production setup reads another folder."""
    root = deployed.config_file.parent
    write_csv(root / "source" / "dataset9.csv", client_rows(30, seed=8))
    raw = json.loads(deployed.config_file.read_text())
    (root / "production.json").write_text(json.dumps({**raw, "input_folder_path": "source"}))
    result = ingestion.run(load_config(root / "production.json"))
    assert [f.name for f in result.files] == ["dataset9.csv"] and result.removed == []


def test_new_data_is_the_rows_of_the_new_or_changed_files_alone(deployed: Config):
    write_csv(deployed.input_folder / "dataset3.csv", client_rows(5, seed=9) + client_rows(120, seed=1)[:2])
    result = ingestion.run(deployed)
    assert [f.new for f in result.files] == [False, False, True]
    assert result.new_data.height == 7  # its two rows repeating dataset1.csv are new data too
    assert result.data.height == 225
    unchanged = ingestion.ingest_folder(deployed.input_folder)  # nothing known: every file is new
    assert unchanged.new_data is unchanged.data


@pytest.mark.slow
def test_command_holds_back_with_one_sentence_then_drops_on_request(deployed: Config, tmp_path_factory):
    (deployed.input_folder / "dataset2.csv").unlink()
    cwd = tmp_path_factory.mktemp("cwd")
    held = run_script("ingestion.py", "--config", str(deployed.config_file), cwd=cwd)
    assert held.returncode == 1 and "Traceback" not in held.stderr
    [line] = [line for line in held.stderr.splitlines() if line.startswith("error:")]
    assert "dataset2.csv was ingested before" in line and "--allow-removed" in line
    dropped = run_script("ingestion.py", "--config", str(deployed.config_file), "--allow-removed", cwd=cwd)
    assert dropped.returncode == 0, dropped.stderr
    assert (deployed.output_folder / INGESTED_FILES).read_text() == "dataset1.csv\n"


def clients(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=CLIENT_SCHEMA, orient="row")


def test_merge_frames_counts_kept_rows_per_source():
    a = clients(("p", 1, 1, 1, 0), ("q", 2, 2, 2, 1), ("q", 2, 2, 2, 1))
    b = clients(("q", 2, 2, 2, 1), ("r", 3, 3, 3, 0), ("s", 1, 1, 1, 0))
    merged = snapshots.merge_frames([a, b])
    assert merged.data.rows() == [("p", 1, 1, 1, 0), ("q", 2, 2, 2, 1), ("r", 3, 3, 3, 0), ("s", 1, 1, 1, 0)]
    assert (merged.kept, merged.duplicates, merged.superseded) == ([2, 2], [1, 1], [0, 0])


def test_merge_frames_keeps_each_clients_last_snapshot_where_its_values_first_appear():
    a = clients(("p", 1, 1, 1, 0), ("q", 2, 2, 2, 1), ("p", 5, 5, 5, 0))  # p's second row supersedes its first
    b = clients(("q", 9, 9, 9, None), ("r", 3, 3, 3, 0), ("p", 1, 1, 1, 0))  # p goes back to its first values
    merged = snapshots.merge_frames([a, b])
    assert merged.data.rows() == [("p", 1, 1, 1, 0), ("q", 9, 9, 9, None), ("r", 3, 3, 3, 0)]
    assert (merged.kept, merged.duplicates, merged.superseded) == ([1, 2], [0, 1], [2, 0])
    assert merged.conflicting == 0  # q's later snapshot has no label: nothing disagrees


def test_merge_frames_counts_clients_whose_labelled_snapshots_disagree():
    # p stayed, then left: how a client leaves, counted apart. s left, then a later snapshot says it stayed: a conflict.
    merged = snapshots.merge_frames([clients(("p", 1, 1, 1, 0), ("q", 1, 1, 1, 0), ("s", 1, 1, 1, 1)),
                                     clients(("p", 1, 1, 1, 1), ("q", 2, 2, 2, 0), ("r", 1, 1, 1, 1),
                                             ("s", 1, 1, 1, 0))])
    assert (merged.conflicting, merged.conflict_examples, merged.left_after_staying) == (1, ["s"], 1)
    assert merged.data.rows() == [("p", 1, 1, 1, 1), ("q", 2, 2, 2, 0), ("r", 1, 1, 1, 1), ("s", 1, 1, 1, 0)]


@pytest.mark.parametrize(("labels", "conflicting", "left_after_staying"), [
    ([0, 0, 1, 1], 0, 1),  # stayed, then left: the normal story
    ([0, None, 1], 0, 1),  # an unlabelled export between two labelled snapshots
    ([1, 0], 1, 0),  # left, then stayed: one of the two is wrong
    ([0, 1, 0, 1], 1, 0),  # left and came back at some point: a conflict, whatever the latest says
    ([1, None, 1], 0, 0),
    ([0, 0], 0, 0),
])
def test_only_a_snapshot_saying_stayed_after_one_saying_left_is_a_conflict(labels, conflicting, left_after_staying):
    """Order decides, across files as within one (a database table holds a client's history row after row)."""
    rows = [("p", i, 1, 1, label) for i, label in enumerate(labels)]
    for frames in ([clients(*rows)], [clients(row) for row in rows]):
        merged = snapshots.merge_frames([*frames, clients(("q", 1, 1, 1, 0))])
        assert (merged.conflicting, merged.left_after_staying) == (conflicting, left_after_staying)
        assert merged.conflict_examples == (["p"] if conflicting else [])


def snapshots_by_hand(frame: pl.DataFrame) -> list[bool]:
    """Per row: is it the first row holding the values of its client's last row?"""
    rows = frame.rows()
    last = {row[0]: row for row in rows}
    return [row == last[row[0]] and row not in rows[:i] for i, row in enumerate(rows)]


def random_snapshots(seed: int) -> pl.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    labels = rng.choice([0, 1, None], n).tolist()
    return pl.DataFrame({ID_COLUMN: rng.choice(["a", "b", "c", "d e"], n).tolist(),
                         FEATURES[0]: rng.integers(0, 3, n), FEATURES[1]: [0] * n, FEATURES[2]: [0] * n,
                         TARGET: labels}, schema=CLIENT_SCHEMA)


@pytest.mark.parametrize("seed", range(20))
def test_merge_frames_keeps_exactly_the_snapshots_a_hand_count_keeps(seed: int):
    frame = random_snapshots(seed)
    merged = snapshots.merge_frames([frame])
    kept = snapshots_by_hand(frame)
    assert merged.data.rows() == [row for row, keep in zip(frame.rows(), kept, strict=True) if keep]
    assert merged.kept == [sum(kept)]


def test_merge_frames_is_exact_when_every_hash_collides(monkeypatch):
    frame = random_snapshots(5)
    expected = snapshots.merge_frames([frame]).data.rows()
    monkeypatch.setattr(pl.DataFrame, "hash_rows", lambda self, *args, **kwargs: pl.Series([7] * self.height))
    assert snapshots.merge_frames([frame]).data.rows() == expected


# --- Clients before labels, ids, one row per client, in finaldata.csv ----------------------------
def test_a_file_without_labels_is_ingested_with_empty_labels(config: Config):
    write_csv(config.input_folder / "dataset3.csv", ["newc,10,120,5", "othr,0,0,1"],
              header=HEADER.removesuffix(",exited"))
    result = ingestion.run(config)
    assert result.rejected == []
    assert [f.labelled for f in result.files] == [True, True, False]
    final = config.final_data_file.read_text().splitlines()
    assert final[-2:] == ["newc,10,120,5,", "othr,0,0,1,"]
    record = json.loads((config.output_folder / INGESTION_RECORD).read_text())
    assert record["unlabelled_rows"] == 2
    # finaldata.csv reads back with its empty labels as such.
    frame = read_client_csv(config.final_data_file, require_target=LABELS_OPTIONAL)
    assert frame[TARGET].isna().sum() == 2 and len(labelled(frame)) == 220


def test_a_labelled_file_still_needs_every_label(config: Config):
    (config.input_folder / "dataset3.csv").write_text(f"{HEADER}\nabcd,1,2,3,\n")
    result = ingestion.run(config)
    assert [r.name for r in result.rejected] == ["dataset3.csv"]
    assert 'an empty value in column "exited" at row 1' in result.rejected[0].reason


@pytest.mark.parametrize("padded", [" abcd", "abcd ", "abcd\t", '" abcd "'])
def test_ids_are_compared_without_surrounding_blanks(config: Config, padded: str):
    write_csv(config.input_folder / "dataset3.csv", ["abcd,1,2,3,0", f"{padded},7,8,9,1"])
    result = ingestion.run(config)
    assert result.rejected == []
    rows = [line for line in config.final_data_file.read_text().splitlines() if "abcd" in line]
    assert rows == ["abcd,7,8,9,1"]  # one client, its later snapshot
    assert result.files[-1].superseded == 1


def test_an_id_of_blanks_only_is_refused(config: Config):
    (config.input_folder / "dataset3.csv").write_text(f"{HEADER}\n \t,1,2,3,0\n")
    [rejection] = ingestion.run(config).rejected
    assert 'has an empty "corporation" at row 1' in rejection.reason


def test_an_id_over_the_configured_length_rejects_its_file_in_one_sentence(config: Config):
    long_id = "x" * 201
    write_csv(config.input_folder / "dataset3.csv", ["fine,1,2,3,0", f"{long_id},1,2,3,0"])
    result = ingestion.run(config)
    [rejection] = result.rejected
    assert rejection.reason == ('dataset3.csv has a "corporation" of 201 characters at row 2, longer than the 200 '
                                "allowed (config key max_id_length).")
    assert long_id not in config.final_data_file.read_text()


@pytest.mark.parametrize(("client_id", "named"), [
    ("two\nlines", "a line break (\\n)"),
    ("cr\rinside", "a line break (\\r)"),
    ("crlf\r\ninside", "a line break (\\r)"),
    ("tab\tinside", "a tab (\\t)"),
    ("sep\u2028arator", "a line break (U+2028)"),
    ("bell\x07", "a control character (U+0007)"),
])
def test_an_id_that_is_not_one_line_of_text_rejects_its_file_in_one_sentence(config: Config, client_id, named):
    """A quoted field may hold a line break: such an id was ingested, listed, and reached by no link, page or call
    form (werkzeug's path converter stops at a newline; the call store refuses control characters)."""
    write_csv(config.input_folder / "dataset3.csv", ["fine,1,2,3,0", f'"{client_id}",1,2,3,0'])
    [rejection] = ingestion.run(config).rejected
    assert rejection.reason == (f'dataset3.csv has {named} in "corporation" at row 2; a client id is one line of text '
                                "without control characters.")
    assert "fine" not in config.final_data_file.read_text()  # the whole file waits, as for any bad row


def test_an_emoji_sequence_or_a_right_to_left_mark_in_an_id_is_ingested(config: Config):
    ids = ["fam\U0001F468\u200d\U0001F469\u200d\U0001F467", "flag\U0001F1EB\U0001F1F7", "rtl\u200fmark"]
    write_csv(config.input_folder / "dataset3.csv", [f"{i},1,2,3,0" for i in ids])
    assert ingestion.run(config).rejected == []
    assert set(ids) <= set(read_client_csv(config.final_data_file)["corporation"])


def test_an_id_at_the_configured_length_is_ingested(config: Config):
    config = config.replace(max_id_length=12)
    write_csv(config.input_folder / "dataset3.csv", ["twelve-chars,1,2,3,0"])
    assert ingestion.run(config).rejected == []
    write_csv(config.input_folder / "dataset4.csv", ["thirteen-char,1,2,3,0"])
    [rejection] = ingestion.run(config).rejected
    assert "of 13 characters at row 1, longer than the 12 allowed" in rejection.reason


def test_a_repeated_client_is_one_row_with_its_latest_values(config: Config):
    write_csv(config.input_folder / "dataset0.csv", ["jggz,1,1,1,0"])  # before dataset1.csv by name
    write_csv(config.input_folder / "dataset3.csv", ["jggz,5,40,900,0", "jggz,6,41,901,1"])
    result = ingestion.run(config)
    assert [line for line in config.final_data_file.read_text().splitlines() if line.startswith("jggz")] == \
        ["jggz,6,41,901,1"]
    assert [(f.name, f.rows_kept, f.superseded) for f in result.files if f.name in ("dataset0.csv", "dataset3.csv")] \
        == [("dataset0.csv", 0, 1), ("dataset3.csv", 1, 1)]
    record = json.loads((config.output_folder / INGESTION_RECORD).read_text())
    # jggz stayed (0, 0), then left (1): the normal story of leaving, not a conflict
    assert (record["superseded"], record["conflicting_labels"], record["conflicting_label_clients"]) == (2, 0, [])
    assert record["left_after_staying"] == 1
    assert record["rows_kept"] == len(config.final_data_file.read_text().splitlines()) - 1


def test_clients_who_left_since_a_month_they_stayed_are_told_not_warned_and_a_conflict_warns(config: Config, caplog):
    """The walk: every labelled month warned "624 clients have labelled snapshots that disagree" for clients who
    stayed in an earlier month and left in this one. Only a snapshot saying stayed after one saying left warns."""
    import logging

    write_csv(config.input_folder / "dataset3.csv", ["aaaa,1,1,1,0", "bbbb,2,2,2,0", "cccc,3,3,3,1"])
    write_csv(config.input_folder / "dataset4.csv", ["aaaa,1,1,1,1", "bbbb,2,2,2,1", "cccc,3,3,3,1"])
    with caplog.at_level(logging.INFO, logger="riskcore.data.folder_ingest"):
        ingestion.run(config)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "2 clients left since an earlier labelled snapshot, where they had stayed" in caplog.text
    record = json.loads((config.output_folder / INGESTION_RECORD).read_text())
    assert (record["conflicting_labels"], record["conflicting_label_clients"], record["left_after_staying"]) == \
        (0, [], 2)
    caplog.clear()
    write_csv(config.input_folder / "dataset5.csv", ["cccc,3,3,3,0"])  # left in both months, stayed now
    with caplog.at_level(logging.INFO, logger="riskcore.data.folder_ingest"):
        ingestion.run(config)
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.getMessage() == ("1 client has a labelled snapshot saying they stayed after one saying they left "
                                    "(the latest is kept), e.g. 'cccc'")
    record = json.loads((config.output_folder / INGESTION_RECORD).read_text())
    assert (record["conflicting_labels"], record["conflicting_label_clients"], record["left_after_staying"]) == \
        (1, ["cccc"], 2)


def test_result_frame_is_the_merged_rows_as_pandas(config: Config):
    result = ingestion.run(config)
    frame = result.frame
    assert list(frame.columns) == list(COLUMNS)
    assert [str(dtype) for dtype in frame.dtypes] == ["str", "int64", "int64", "int64", "int64"]
    assert frame.values.tolist() == [list(row) for row in result.data.rows()]
    assert result.frame is frame  # made once


# --- Writing finaldata.csv: polars' write_csv, byte for byte what pandas' to_csv writes ---------
# sha256 of finaldata.csv from the bundled folders, as the numpy writer this replaced wrote them.
KNOWN_FINAL_DATA = {
    "practicedata": "6873dd87d08ff5ba5c3b7d6b2e96931cbe6066366a675288e624ac361399502d",
    "sourcedata": "8be5bb8c6183ea93741cda8ee1ec8d21434aec0beb47e7bf6e66ad3f584988f8",
}


def ingest_only(config: Config, files: dict[str, bytes]) -> ingestion.IngestionResult:
    """Ingest exactly `files` (name -> content) from the config's input folder."""
    for path in config.input_folder.iterdir():
        path.unlink()
    for name, content in files.items():
        (config.input_folder / name).write_bytes(content)
    return ingestion.run(config)


@pytest.mark.parametrize("folder", sorted(KNOWN_FINAL_DATA))
def test_bundled_data_gives_the_known_final_data(config: Config, folder: str):
    bundled = Path(ingestion.__file__).resolve().parent / folder
    ingest_only(config, {path.name: path.read_bytes() for path in sorted(bundled.glob("*.csv"))})
    final = pl.read_csv(config.final_data_file, infer_schema=False)
    if "annual_revenue" in final.columns:  # the new market's revenue (issue 22.6) leaves every other column as it was
        assert folder == "sourcedata" and final.columns[-1] == "annual_revenue"
        final = final.drop("annual_revenue")
    assert hashlib.sha256(final.write_csv().encode()).hexdigest() == KNOWN_FINAL_DATA[folder]


@pytest.mark.parametrize("ids", [
    ["a", "bb", "ccc"],
    ["ünïcødé", "日本", "fam\U0001F468\u200d\U0001F469", "in side"],
    ["a,b", "c"],  # the separator: quoted
    ['say "hi"', "c"],  # a quote: quoted, doubled (a line end is no part of an id: one line of text)
    ["NA", "null", "0012"],  # text, not missing, not numbers
])
def test_final_data_is_what_pandas_to_csv_writes(config: Config, ids: list[str]):
    import pandas as pd

    rows = [(0, 9, 10, 0), (99, 100, 10**12, 1), (123456789, 0, 7, 1), (1, 2, 3, 0)][:len(ids)]
    frame = pd.DataFrame({ID_COLUMN: ids, **{name: [row[i] for row in rows] for i, name in enumerate(COLUMNS[1:])}})
    expected = frame.to_csv(index=False, lineterminator="\n").encode()
    ingest_only(config, {"clients.csv": expected})
    assert config.final_data_file.read_bytes() == expected


def test_final_data_of_many_numbers_is_what_pandas_to_csv_writes(config: Config):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    counts = rng.integers(0, 10 ** rng.integers(1, 13, size=(5000, 3)))  # 1 to 12 digits
    frame = pd.DataFrame({ID_COLUMN: [f"c{i:05d}" for i in range(5000)],
                          **{name: counts[:, i] for i, name in enumerate(FEATURES)},
                          TARGET: rng.integers(0, 2, 5000)})
    frame.loc[0, list(FEATURES)] = [0, 10**12, 9]  # the bounds
    expected = frame.to_csv(index=False, lineterminator="\n").encode()
    ingest_only(config, {"a.csv": expected, "b.csv": expected})  # b's rows are all duplicates
    assert config.final_data_file.read_bytes() == expected


def random_rows(seed: int) -> pl.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 80))
    return pl.DataFrame({ID_COLUMN: rng.choice(["a", "b", "a,b", ""], n).tolist(),
                         FEATURES[0]: rng.integers(0, 3, n), TARGET: rng.integers(0, 2, n)})


def first_rows_by_hand(frame: pl.DataFrame) -> list[bool]:
    seen, first = set(), []
    for row in frame.rows():
        first.append(row not in seen)
        seen.add(row)
    return first


@pytest.mark.parametrize("seed", range(20))
def test_first_occurrences_marks_the_first_of_each_distinct_row(seed: int):
    frame = random_rows(seed)
    assert snapshots.first_occurrences(frame).to_list() == first_rows_by_hand(frame)


def test_first_occurrences_is_exact_when_every_hash_collides(monkeypatch):
    frame = random_rows(3)
    monkeypatch.setattr(pl.DataFrame, "hash_rows", lambda self, *args, **kwargs: pl.Series([7] * self.height))
    assert snapshots.first_occurrences(frame).to_list() == first_rows_by_hand(frame)
