"""ingestion.py: merging, deduplication, the record, rejections, idempotence."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

import ingestion
from conftest import HEADER, client_rows, run_script, write_csv
from riskcore import ingest
from riskcore.config import Config
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
from riskcore.files import sha256_file
from riskcore.schema import read_client_csv


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


@pytest.mark.slow
def test_command_exits_1_with_one_sentence_on_a_rejected_file(project: Path, tmp_path_factory):
    (project.parent / "input" / "broken.csv").write_text(HEADER + "\nabcd,1,2\n")
    result = run_script("ingestion.py", "--config", str(project), cwd=tmp_path_factory.mktemp("cwd"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "broken.csv" in result.stderr
    assert (project.parent / "ingested" / FINAL_DATA).is_file()


def test_merge_frames_counts_kept_rows_per_source():
    a = pl.DataFrame({"x": [1, 2, 2], "y": ["p", "q", "q"]})
    b = pl.DataFrame({"x": [2, 3, 1], "y": ["q", "r", "s"]})
    merged, kept = ingest.merge_frames([("a", a), ("b", b)])
    assert merged.rows() == [(1, "p"), (2, "q"), (3, "r"), (1, "s")]  # first kept, order kept
    assert kept == [2, 2]


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
    assert sha256_file(config.final_data_file) == KNOWN_FINAL_DATA[folder]


@pytest.mark.parametrize("ids", [
    ["a", "bb", "ccc"],
    ["ünïcødé", "日本", "trailing ", "in side"],
    ["a,b", "c"],  # the separator: quoted
    ['say "hi"', "c"],  # a quote: quoted, doubled
    ["two\nlines", "c"],  # a line end: quoted
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


def test_final_data_quotes_a_carriage_return_so_it_reads_back(config: Config):
    rows = [f"{HEADER}\n", '"car\rriage",1,2,3,0\n', "plain,4,5,6,1\n"]
    ingest_only(config, {"clients.csv": "".join(rows).encode()})
    # pandas' to_csv leaves a lone carriage return unquoted, and the file then reads back as
    # two broken rows; quoted, it reads back as it was ingested.
    assert config.final_data_file.read_bytes() == "".join(rows).encode()
    assert read_client_csv(config.final_data_file).values.tolist() == [["car\rriage", 1, 2, 3, 0],
                                                                        ["plain", 4, 5, 6, 1]]


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
    assert ingest.first_occurrences(frame).to_list() == first_rows_by_hand(frame)


def test_first_occurrences_is_exact_when_every_hash_collides(monkeypatch):
    frame = random_rows(3)
    monkeypatch.setattr(pl.DataFrame, "hash_rows", lambda self, *args, **kwargs: pl.Series([7] * self.height))
    assert ingest.first_occurrences(frame).to_list() == first_rows_by_hand(frame)
