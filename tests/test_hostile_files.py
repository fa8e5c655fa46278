"""Hostile input files for ingestion: each gets one sentence naming it; the good files still go in."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import threading
import time
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

import ingestion
from conftest import HEADER, client_rows, run_script
from riskcore.config import Config
from riskcore.contract import COLUMNS, FEATURES, FINAL_DATA, INGESTED_FILES, INGESTION_RECORD, TARGET, DataError
from riskcore.data.client_csv import parse_csv_bytes, read_client_frame, read_text_table, validate_frame
from riskcore.data.contract_rules import HIGHEST, LABELS_OPTIONAL, RecordError, check_record
from riskcore.data.db_ingest import bad_value_masks
from riskcore.data.validation import CLIENT_SCHEMA, validate_client_frame

GOOD = ["dataset1.csv", "dataset2.csv"]
ROW = "abcd,10,120,5,1"
# How a course user's pandas read of a client CSV sees the file as read_client_frame does: ids stay
# text, blanks before a value are skipped, only an empty field is missing ("NA" is a valid id).
CSV_READ_OPTIONS = {"encoding": "utf-8-sig", "dtype": {"corporation": str}, "skipinitialspace": True,
                    "keep_default_na": False, "na_values": [""]}

REJECTED = {
    "empty.csv": (b"", "is empty"),
    "blank.csv": (b"\n\n  \n", "is empty"),
    "headeronly.csv": (f"{HEADER}\n".encode(), "has a header but no rows"),
    "missingcol.csv": (b"corporation,lastmonth_activity,lastyear_activity,exited\nabcd,1,2,0\n",
                       'is missing the column "number_of_employees"'),
    "extracol.csv": (f"{HEADER},region\n{ROW},north\n".encode(), 'has an unexpected column "region"'),
    # "exited" may be missing (clients not labelled yet), so the column it became is the problem.
    "renamedcol.csv": (f"{HEADER.replace('exited', 'churned')}\n{ROW}\n".encode(), 'unexpected column "churned"'),
    "wrongtype.csv": (f"{HEADER}\nabcd,ten,120,5,1\n".encode(), '"ten" in column "lastmonth_activity" at row 1'),
    "fraction.csv": (f"{HEADER}\nabcd,10.5,120,5,1\n".encode(), '"10.5" in column "lastmonth_activity"'),
    "negative.csv": (f"{HEADER}\n{ROW}\nefgh,-3,120,5,0\n".encode(), 'negative value in column "lastmonth_activity" at row 2'),
    "huge.csv": (f"{HEADER}\nabcd,10,99999999999999999999999,5,1\n".encode(), 'implausibly large value in column "lastyear_activity"'),
    "nan.csv": (f"{HEADER}\nabcd,NaN,120,5,1\n".encode(), '"NaN" in column "lastmonth_activity"'),
    "inf.csv": (f"{HEADER}\nabcd,10,inf,5,1\n".encode(), '"inf" in column "lastyear_activity"'),
    "emptycell.csv": (f"{HEADER}\nabcd,10,,5,1\n".encode(), 'an empty value in column "lastyear_activity"'),
    "label.csv": (f"{HEADER}\nabcd,10,120,5,2\n".encode(), 'has "2" in column "exited" at row 1; expected 0 or 1.'),
    "twoheaders.csv": (f"{HEADER}\n{ROW}\n{HEADER}\n{ROW}\n".encode(), "repeats its header line at row 2"),
    "latin1.csv": (f"{HEADER}\nsoci\xe9t\xe9,10,120,5,1\n".encode("latin-1"), "is not UTF-8 text"),
    "semicolon.csv": (f"{HEADER.replace(',', ';')}\n{ROW.replace(',', ';')}\n".encode(), "uses ';' as its separator"),
    "junk.csv": (bytes(range(256)) * 40, "is binary, not a CSV text file"),
    "gzipped.csv": (gzip.compress(f"{HEADER}\n{ROW}\n".encode()), "is gzip-compressed"),
    "ragged.csv": (f"{HEADER}\n{ROW},7,8\n".encode(), "is not a well-formed CSV file"),
    "noid.csv": (f"{HEADER}\n,10,120,5,1\n".encode(), 'an empty "corporation" at row 1'),
    "blankid.csv": (f"{HEADER}\n{ROW}\n   ,10,120,5,1\n".encode(), 'an empty "corporation" at row 2'),
    # Blank lines are not rows: the row numbers in messages count data rows only.
    "blanklines.csv": (f"{HEADER}\n\n{ROW}\n  \n,10,120,5,1\n".encode(), 'an empty "corporation" at row 2'),
    "repeatedcol.csv": (f"{HEADER},exited\n{ROW},1\n".encode(), "repeats a column name in its header"),
    "exponent.csv": (f"{HEADER}\nabcd,1e3,120,5,1\n".encode(), '"1e3" in column "lastmonth_activity" at row 1'),
    "int64max.csv": (f"{HEADER}\nabcd,10,120,9223372036854775807,1\n".encode(),
                     'implausibly large value in column "number_of_employees" at row 1'),
    "labelneg.csv": (f"{HEADER}\n{ROW}\nefgh,10,120,5,-1\n".encode(), '"-1" in column "exited" at row 2; expected 0 or 1.'),
    "unterminated.csv": (f'{HEADER}\n"abcd,10,120,5,1\n'.encode(), "is not a well-formed CSV file"),
    "twoextra.csv": (f"{HEADER}\n{ROW},,\n".encode(), "is not a well-formed CSV file (a row has more fields"),
}


def ingest_with(config: Config, name: str, content: bytes) -> ingestion.IngestionResult:
    (config.input_folder / name).write_bytes(content)
    return ingestion.run(config)


def assert_rejected_alone(result: ingestion.IngestionResult, name: str, expected: str) -> None:
    assert [f.name for f in result.files] == GOOD
    assert len(result.rejected) == 1
    reason = result.rejected[0].reason
    assert reason.startswith(name) and expected in reason, reason
    assert "\n" not in reason and "Traceback" not in reason


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_hostile_file_is_rejected_with_one_sentence(config: Config, name: str):
    content, expected = REJECTED[name]
    assert_rejected_alone(ingest_with(config, name, content), name, expected)


@pytest.mark.parametrize("name, content", [
    ("bom.csv", ("\ufeff" + f"{HEADER}\n{ROW}\n").encode()),
    ("quoted.csv", f'{HEADER}\n"abcd","10","120","5","1"\n'.encode()),
    ("crlf.csv", f"{HEADER}\r\n{ROW}\r\n".encode()),
    ("reordered.csv", b"exited,corporation,number_of_employees,lastyear_activity,lastmonth_activity\n1,abcd,5,120,10\n"),
    ("blanklines.csv", f"\n  \n{HEADER}\n\n{ROW}\n \t \n\n".encode()),
    ("trailingseparator.csv", f"{HEADER}\n{ROW},\n".encode()),
    ("oldmac.csv", f"{HEADER}\r{ROW}\r".encode()),
    ("blanks.csv", f"{HEADER.replace(',', ', ')}\n abcd, 10 ,\t120,+5,1\n".encode()),
    ("quoteinside.csv", f'{HEADER}\nO"Brien,1,2,3,0\n{ROW}\n'.encode()),
    ("leadingzeros.csv", f"{HEADER}\nabcd,010,0120,005,01\n".encode()),
])
def test_harmless_variants_are_ingested_as_the_plain_row(config: Config, name: str, content: bytes):
    result = ingest_with(config, name, content)
    assert result.rejected == []
    rows = config.final_data_file.read_text().splitlines()
    assert ROW in rows


def test_symlink_pointing_outside_is_rejected(config: Config, tmp_path_factory):
    secret = tmp_path_factory.mktemp("outside") / "secret.csv"
    secret.write_text(f"{HEADER}\n{ROW}\n")
    (config.input_folder / "link.csv").symlink_to(secret)
    result = ingestion.run(config)
    assert_rejected_alone(result, "link.csv", "is a link pointing outside the input folder")


def test_directory_named_csv_is_rejected(config: Config):
    (config.input_folder / "x.csv").mkdir()
    assert_rejected_alone(ingestion.run(config), "x.csv", "is not a regular file")


def test_zero_byte_icon_file_is_ignored(config: Config):
    (config.input_folder / "Icon\r").write_bytes(b"")
    result = ingestion.run(config)
    assert result.rejected == [] and "Icon\r" in result.ignored


def test_200_mb_file_is_refused_without_loading_or_parsing_it(config: Config, monkeypatch):
    """Refused by its size: never read whole into memory nor parsed (its sha256, which identifies it between runs,
    is taken in 1 MiB blocks), within seconds."""
    from riskcore.data import folder_ingest

    big = config.input_folder / "big.csv"
    with open(big, "wb") as handle:
        handle.write(f"{HEADER}\n".encode())
        handle.truncate(200 * 1024 * 1024)  # sparse: 200 MiB on paper, no time to write
    loaded, parsed = [], []
    read_bytes, parse = Path.read_bytes, folder_ingest.read_client_frame
    monkeypatch.setattr(Path, "read_bytes", lambda path: loaded.append(path.name) or read_bytes(path))
    monkeypatch.setattr(folder_ingest, "read_client_frame",
                        lambda data, name, **options: parsed.append(name) or parse(data, name, **options))
    start = time.perf_counter()
    result = ingestion.run(config)
    assert time.perf_counter() - start < 5
    assert_rejected_alone(result, "big.csv", "200 MiB, above the 128 MiB limit")
    assert "big.csv" not in loaded and "big.csv" not in parsed
    assert {"dataset1.csv", "dataset2.csv"} <= set(loaded) & set(parsed)  # the watch sees the others loaded and parsed


def test_file_being_written_is_ingested_as_one_consistent_snapshot(config: Config):
    path = config.input_folder / "growing.csv"
    states: dict[str, int] = {}  # sha256 of every state the file passes through -> complete rows
    done = threading.Event()

    def writer() -> None:
        content = f"{HEADER}\n".encode()
        path.write_bytes(content)
        rows = client_rows(3000, seed=11)
        for start in range(0, len(rows), 50):
            chunk = "".join(r + "\n" for r in rows[start:start + 50]).encode()
            for piece in (chunk[:7], chunk[7:]):  # every other state ends mid-line
                with open(path, "ab") as handle:
                    handle.write(piece)
                content += piece
                states[hashlib.sha256(content).hexdigest()] = content.count(b"\n") - 1
            time.sleep(0.001)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while not path.exists():
            time.sleep(0.001)
        results = [ingestion.run(config) for _ in range(5)]
    finally:
        thread.join(timeout=30)
    for result in results:
        assert [f.name for f in result.files][:2] == GOOD
        for entry in result.files:
            if entry.name == "growing.csv":
                assert entry.sha256 in states
                assert entry.rows_read in (states[entry.sha256], states[entry.sha256] + 1)
        for rejection in result.rejected:
            assert rejection.reason.startswith("growing.csv") and "\n" not in rejection.reason


def test_nothing_earlier_is_lost_when_every_file_is_bad(config: Config, tmp_path: Path):
    ingestion.run(config)
    before = {name: (config.output_folder / name).read_bytes()
              for name in (FINAL_DATA, INGESTED_FILES, INGESTION_RECORD)}
    for path in list(config.input_folder.iterdir()):
        path.unlink()
    for name, (content, _) in list(REJECTED.items())[:5]:
        (config.input_folder / name).write_bytes(content)
    with pytest.raises(DataError, match="Nothing ingested"):
        ingestion.run(config)
    for name, data in before.items():
        assert (config.output_folder / name).read_bytes() == data


@pytest.mark.slow
def test_command_line_gives_a_sentence_per_bad_file_and_no_traceback(project: Path, tmp_path: Path):
    for name in ("gzipped.csv", "latin1.csv", "junk.csv"):
        (project.parent / "input" / name).write_bytes(REJECTED[name][0])
    result = run_script("ingestion.py", "--config", str(project), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    for name in ("gzipped.csv", "latin1.csv", "junk.csv"):
        assert sum(name in line for line in result.stderr.splitlines()) == 1
    record = json.loads((project.parent / "ingested" / INGESTION_RECORD).read_text())
    assert sorted(r["name"] for r in record["rejected"]) == ["gzipped.csv", "junk.csv", "latin1.csv"]
    assert os.path.exists(project.parent / "ingested" / FINAL_DATA)


# --- The same checks at the library's two edges: polars for bulk work, pandas for the course ---
def test_read_client_frame_gives_polars_in_contract_order():
    content = b"exited,corporation,number_of_employees,lastyear_activity,lastmonth_activity\n1,abcd,5,120,10\n"
    frame = read_client_frame(content, "x.csv")
    assert isinstance(frame, pl.DataFrame) and frame.schema == pl.Schema(CLIENT_SCHEMA)
    assert frame.rows() == [("abcd", 10, 120, 5, 1)]
    unlabelled = read_client_frame(f"{HEADER.removesuffix(',exited')}\nabcd,10,120,5\n".encode(), "x.csv",
                                   require_target=False)
    assert unlabelled.columns == list(COLUMNS[:-1])


def test_parse_csv_bytes_gives_pandas_as_before():
    frame = parse_csv_bytes(f"{HEADER}\n{ROW}\nNA,0,0,0,0\n".encode(), "x.csv")
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(COLUMNS)
    assert [str(dtype) for dtype in frame.dtypes] == ["str", "int64", "int64", "int64", "int64"]
    assert frame.values.tolist() == [["abcd", 10, 120, 5, 1], ["NA", 0, 0, 0, 0]]


@pytest.mark.parametrize("variant", [
    f"{HEADER}\n\n{ROW}\nefgh,0,0,0,0\n\n",  # blank lines
    f"{HEADER}\n{ROW} \nefgh,0 ,0,0,0\n",  # blanks after numbers
    f"{HEADER}\r{ROW}\refgh,0,0,0,0\r",  # old Mac line ends
    f"{HEADER}\n{ROW},\nefgh,0,0,0,0\n",  # a trailing separator
])
def test_the_text_reading_agrees_with_the_typed_one(variant: str):
    # Nearly every file is read with typed numbers; these variants take the text reading instead.
    plain = read_client_frame(f"{HEADER}\n{ROW}\nefgh,0,0,0,0\n".encode(), "x.csv")
    assert read_client_frame(variant.encode(), "x.csv").equals(plain)


@pytest.mark.parametrize("name", ["wrongtype.csv", "fraction.csv", "negative.csv", "huge.csv", "int64max.csv",
                                  "nan.csv", "inf.csv", "emptycell.csv", "label.csv", "labelneg.csv",
                                  "twoheaders.csv", "noid.csv", "blankid.csv", "extracol.csv", "missingcol.csv"])
def test_validate_frame_gives_a_pandas_table_the_same_sentence(name: str):
    content, expected = REJECTED[name]
    table = pd.read_csv(io.BytesIO(content), **CSV_READ_OPTIONS)
    with pytest.raises(DataError) as caught:
        validate_frame(table, name)
    assert str(caught.value).startswith(name) and expected in str(caught.value)
    with pytest.raises(DataError) as direct:
        parse_csv_bytes(content, name)
    assert str(direct.value) == str(caught.value)


def test_validate_frame_returns_the_typed_table():
    table = pd.read_csv(io.BytesIO(f"{HEADER}\n{ROW}\n efgh, 1,+2,3 ,0\n".encode()), **CSV_READ_OPTIONS)
    frame = validate_frame(table, "x.csv")
    assert [str(dtype) for dtype in frame.dtypes] == ["str", "int64", "int64", "int64", "int64"]
    assert frame.values.tolist() == [["abcd", 10, 120, 5, 1], ["efgh", 1, 2, 3, 0]]


# --- One contract: the file read whole, the file streamed, the table and the JSON records agree --
ONE_BAD_ROW = {
    "ten": "abcd,ten,120,5,1", "fraction": "abcd,10.5,120,5,1", "negative": "abcd,-3,120,5,0",
    "huge": "abcd,10,99999999999999999999999,5,1", "int64max": "abcd,10,120,9223372036854775807,1",
    "emptycell": "abcd,10,,5,1", "exponent": "abcd,1e3,120,5,1", "noid": ",10,120,5,1", "blankid": "   ,10,120,5,1",
    "label2": "abcd,10,120,5,2", "labelneg": "abcd,10,120,5,-1", "labelword": "abcd,10,120,5,yes",
    "labelfraction": "abcd,10,120,5,0.5", "header": HEADER,
}


def streamed_problem(path: Path) -> str:
    """The sentence the risk list gives for a client file (streamed, not loaded)."""
    from sklearn.linear_model import LogisticRegression

    from riskcore.report.call_list import ranking_of

    model = LogisticRegression().fit([[0, 0, 0], [1, 2, 3], [5, 5, 5], [9, 1, 0]], [0, 1, 0, 1])
    with pytest.raises(DataError) as caught:
        ranking_of(path, model)
    return str(caught.value)


@pytest.mark.parametrize("bad", sorted(ONE_BAD_ROW))
def test_the_streamed_risk_list_says_what_ingestion_says(tmp_path: Path, bad: str):
    content = f"{HEADER}\n{ROW}\nefgh,1,2,3,\n{ONE_BAD_ROW[bad]}\nijkl,4,5,6,0\n"
    path = tmp_path / "clients.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_client_frame(content.encode(), "clients.csv", require_target=LABELS_OPTIONAL)
    assert "at row 3" in str(caught.value)
    assert streamed_problem(path) == str(caught.value)


@pytest.mark.parametrize("bad", sorted(set(ONE_BAD_ROW) - {"header"}))
def test_the_tables_bad_rows_are_the_rows_a_file_is_refused_for(bad: str):
    lines = [ROW, "efgh,1,2,3,", ONE_BAD_ROW[bad], "ijkl,4,5,6,0"]
    table = read_text_table(f"{HEADER}\n{chr(10).join(lines)}\n".encode(), "t", LABELS_OPTIONAL)
    masks = bad_value_masks(table)
    flagged = [row for row in range(len(lines)) if any(mask[row] for mask in masks.values())]
    assert flagged == [2]
    with pytest.raises(DataError, match="at row 3"):
        validate_client_frame(table, "t", LABELS_OPTIONAL)


@pytest.mark.parametrize("column", [*FEATURES, TARGET])
def test_json_records_and_csv_rows_share_each_columns_range(column: str):
    record = {"corporation": "abcd", "lastmonth_activity": 10, "lastyear_activity": 120, "number_of_employees": 5,
              "exited": 1}

    def csv_of(value: int) -> bytes:
        return f"{HEADER}\n" + ",".join(str(value if c == column else record[c]) for c in COLUMNS) + "\n"

    assert check_record({**record, column: HIGHEST[column]}, "records[0]")[0] == "abcd"
    read_client_frame(csv_of(HIGHEST[column]).encode(), "x.csv")
    with pytest.raises(RecordError) as caught:
        check_record({**record, column: HIGHEST[column] + 1}, "records[0]")
    assert caught.value.field == f"records[0].{column}"
    with pytest.raises(DataError, match=f'column "{column}" at row 1'):
        read_client_frame(csv_of(HIGHEST[column] + 1).encode(), "x.csv")
