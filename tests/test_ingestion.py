"""ingestion.py: merging, deduplication, the record, rejections, idempotence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ingestion
from conftest import HEADER, client_rows, run_script, write_csv
from riskcore import ingest
from riskcore.config import Config
from riskcore.contract import COLUMNS, FINAL_DATA, ID_COLUMN, INGESTED_FILES, INGESTION_RECORD, DataError
from riskcore.files import sha256_file
from riskcore.schema import validate_frame


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
    "label.csv": ((HEADER + "\nabcd,1,2,3,7\n").encode(), 'other than 0 or 1 in column "exited"'),
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


def test_fixed_file_is_picked_up_again(config: Config):
    bad = config.input_folder / "dataset3.csv"
    bad.write_text(HEADER + "\nabcd,x,1,1,0\n")
    assert "dataset3.csv" not in {f.name for f in ingestion.run(config).files}
    write_csv(bad, client_rows(5, seed=9))
    assert "dataset3.csv" in {f.name for f in ingestion.run(config).files}


def test_command_exits_1_with_one_sentence_on_a_rejected_file(project: Path, tmp_path_factory):
    (project.parent / "input" / "broken.csv").write_text(HEADER + "\nabcd,1,2\n")
    result = run_script("ingestion.py", "--config", str(project), cwd=tmp_path_factory.mktemp("cwd"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "broken.csv" in result.stderr
    assert (project.parent / "ingested" / FINAL_DATA).is_file()


def test_merge_frames_counts_kept_rows_per_source():
    import pandas as pd

    a = pd.DataFrame({"x": [1, 2, 2]})
    b = pd.DataFrame({"x": [2, 3]})
    merged, kept = ingest.merge_frames([("a", a), ("b", b)])
    assert merged["x"].tolist() == [1, 2, 3]
    assert kept == [2, 1]


# --- Writing finaldata.csv: numpy-formatted lines, byte for byte what to_csv writes -----------
def validated(ids: list[str], rows: list[tuple[int, int, int, int]]):
    import pandas as pd

    columns = {ID_COLUMN: ids, **{name: [row[i] for row in rows]
                                           for i, name in enumerate(COLUMNS[1:])}}
    return validate_frame(pd.DataFrame(columns), "test.csv")


@pytest.mark.parametrize(("ids", "fast"), [
    (["a", "bb", "ccc"], True),
    (["ünïcødé", "日本", "trailing ", "in side"], True),
    (["a,b", "c"], False),  # needs quoting: to_csv writes it
    (['say "hi"', "c"], False),
    (["two\nlines", "c"], False),
    (["carriage\rreturn", "c"], False),
])
def test_final_data_is_written_as_to_csv_writes_it(tmp_path: Path, ids: list[str], fast: bool):
    rows = [(0, 9, 10, 0), (99, 100, 10**12, 1), (123456789, 0, 7, 1), (1, 2, 3, 0)][:len(ids)]
    frame = validated(ids, rows)
    expected, written = tmp_path / "expected.csv", tmp_path / "written.csv"
    frame.to_csv(expected, index=False, lineterminator="\n")
    sha = ingest.write_final_data(frame, written)
    assert written.read_bytes() == expected.read_bytes()
    assert sha == sha256_file(expected)
    assert (ingest.csv_lines(frame) is not None) == fast


def test_final_data_written_in_chunks_is_the_same_file(tmp_path: Path, monkeypatch):
    import numpy as np

    rng = np.random.default_rng(7)
    counts = rng.integers(0, 10 ** rng.integers(1, 13, size=(500, 3)))  # 1 to 12 digits
    rows = [(*map(int, row), int(exited)) for row, exited in zip(counts, rng.integers(0, 2, 500), strict=True)]
    frame = validated([f"c{i:05d}" for i in range(500)], rows)
    monkeypatch.setattr(ingestion, "WRITE_ROWS", 7)
    expected, written = tmp_path / "expected.csv", tmp_path / "written.csv"
    frame.to_csv(expected, index=False, lineterminator="\n")
    ingest.write_final_data(frame, written)
    assert written.read_bytes() == expected.read_bytes()
