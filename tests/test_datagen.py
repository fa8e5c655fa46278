"""Tests for datagen.py: reproducibility, schema of the bundled data, duplicates and drift."""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

import datagen

ROOT = Path(datagen.__file__).resolve().parent
BUNDLED = (
    "practicedata/dataset1.csv",
    "practicedata/dataset2.csv",
    "sourcedata/dataset3.csv",
    "sourcedata/dataset4.csv",
    "testdata/testdata.csv",
)
FEATURES = ["lastmonth_activity", "lastyear_activity", "number_of_employees"]
INT_FIELD = re.compile(r"0|[1-9][0-9]*")
NEW_MARKET = ("sourcedata/dataset3.csv", "sourcedata/dataset4.csv")  # the files that carry annual_revenue
# sha256 of the new market's files as they were before annual_revenue was added: the other columns must not move.
BEFORE_REVENUE = {"sourcedata/dataset3.csv": "28bb5624f5f3ea1d8a1e77cd2d19ff355e6df4964f9c6266b38594164c4687a5",
                  "sourcedata/dataset4.csv": "0afcd32351b4ba6cf692ff840a2c6eafbf032b2ab682f1b69d59b9c818a8b2f5"}


def read(relpath: str) -> pd.DataFrame:
    """Read a bundled CSV with the corporation id kept as text."""
    return pd.read_csv(ROOT / relpath, dtype={"corporation": str})


def deduplicated(*relpaths: str) -> pd.DataFrame:
    """Concatenate bundled files and drop exact duplicate rows."""
    return pd.concat([read(p) for p in relpaths], ignore_index=True).drop_duplicates()


def fit(df: pd.DataFrame) -> LogisticRegression:
    """Fit the project's model, turning any warning (e.g. ConvergenceWarning) into an error."""
    model = LogisticRegression(C=1.0, solver="liblinear", max_iter=100, tol=1e-4, random_state=0,
                               fit_intercept=True, intercept_scaling=1, class_weight=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return model.fit(df[FEATURES], df["exited"])


def f1(model: LogisticRegression, df: pd.DataFrame) -> float:
    """F1 of a model's predictions on a frame."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return float(f1_score(df["exited"], model.predict(df[FEATURES])))


@pytest.fixture(scope="module")
def practice() -> pd.DataFrame:
    return deduplicated("practicedata/dataset1.csv", "practicedata/dataset2.csv")


@pytest.fixture(scope="module")
def source() -> pd.DataFrame:
    return deduplicated("sourcedata/dataset3.csv", "sourcedata/dataset4.csv")


@pytest.fixture(scope="module")
def testdata() -> pd.DataFrame:
    return read("testdata/testdata.csv")


def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    assert datagen.main(["--root", str(tmp_path)]) == 0
    for relpath in BUNDLED:
        assert (tmp_path / relpath).read_bytes() == (ROOT / relpath).read_bytes(), relpath
    # Atomic writes leave no temp files behind.
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        Path(p).name for p in BUNDLED)


@pytest.mark.parametrize("relpath", BUNDLED)
def test_bundled_file_schema(relpath: str) -> None:
    data = (ROOT / relpath).read_bytes()
    assert b"\r" not in data and data.endswith(b"\n")
    header, *rows = data.decode("ascii").splitlines()
    revenue = relpath in NEW_MARKET
    assert header == datagen.HEADER + (",annual_revenue" if revenue else "")
    assert rows
    for row in rows:
        corporation, *numbers = row.split(",")
        assert re.fullmatch(r"[a-z]{4}", corporation), row
        if revenue:
            amount = numbers.pop()
            assert amount == "" or INT_FIELD.fullmatch(amount), row
        assert len(numbers) == 4 and all(INT_FIELD.fullmatch(v) for v in numbers), row
        assert numbers[-1] in {"0", "1"}, row


@pytest.mark.parametrize("relpath", NEW_MARKET)
def test_annual_revenue_leaves_every_other_column_as_it_was(relpath: str) -> None:
    frame = pl.read_csv(ROOT / relpath, schema_overrides={"corporation": pl.String})
    others = frame.drop("annual_revenue").write_csv().encode()
    assert hashlib.sha256(others).hexdigest() == BEFORE_REVENUE[relpath]


def test_annual_revenue_follows_its_documented_distribution() -> None:
    frame = pl.concat([pl.read_csv(ROOT / p, schema_overrides={"corporation": pl.String}) for p in NEW_MARKET]
                      ).unique(maintain_order=True)
    unknown = frame["annual_revenue"].null_count() / frame.height
    assert abs(unknown - datagen.REVENUE_UNKNOWN_SHARE) < 0.01
    known = frame.drop_nulls("annual_revenue")
    import numpy as np

    per_employee = np.log(known["annual_revenue"].to_numpy() / np.maximum(known["number_of_employees"].to_numpy(), 1))
    assert abs(np.median(per_employee) - np.log(datagen.REVENUE_PER_EMPLOYEE)) < 0.03
    assert abs(per_employee.std() - datagen.REVENUE_SIGMA) < 0.02
    for relpath in ("practicedata/dataset1.csv", "practicedata/dataset2.csv", "testdata/testdata.csv"):
        assert "annual_revenue" not in (ROOT / relpath).read_text().splitlines()[0]  # the course's data: none


@pytest.mark.parametrize("relpath", BUNDLED)
def test_bundled_features_are_realistic(relpath: str) -> None:
    df = read(relpath)
    assert (df[FEATURES] >= 0).all().all()
    assert (df[FEATURES] == 0).any().any()  # some zeros occur
    assert 0.2 <= df["exited"].mean() <= 0.45
    assert df["lastmonth_activity"].corr(df["lastyear_activity"]) > 0.5


def test_practice_duplicates_span_both_files() -> None:
    d1, d2 = read("practicedata/dataset1.csv"), read("practicedata/dataset2.csv")
    shared = pd.merge(d1, d2)
    total = len(d1) + len(d2)
    assert len(shared) == datagen.N_PRACTICE_SHARED
    assert 0.02 <= len(shared) / total <= 0.03
    assert not d1.duplicated().any() and not d2.duplicated().any()


def test_source_duplicates_span_both_files() -> None:
    d3, d4 = read("sourcedata/dataset3.csv"), read("sourcedata/dataset4.csv")
    shared = pd.merge(d3, d4)
    assert len(shared) == datagen.N_SOURCE_SHARED
    assert 0.01 <= len(shared) / (len(d3) + len(d4)) <= 0.02


def test_sizes_and_distinct_clients(practice: pd.DataFrame, source: pd.DataFrame,
                                    testdata: pd.DataFrame) -> None:
    test = testdata
    assert len(practice) == datagen.N_PRACTICE and practice["corporation"].is_unique
    assert len(source) == datagen.N_SOURCE and source["corporation"].is_unique
    assert len(test) == datagen.N_TEST and test["corporation"].is_unique
    assert not set(test["corporation"]) & set(practice["corporation"])
    # Ids may coincide across regimes by chance, but never whole rows.
    assert pd.merge(pd.concat([practice, test]), source).empty


def test_exit_base_rates(practice: pd.DataFrame, source: pd.DataFrame,
                         testdata: pd.DataFrame) -> None:
    for df in (practice, source, testdata):
        assert 0.25 <= df["exited"].mean() <= 0.40


def test_drift_practice_model_degrades_on_source(practice: pd.DataFrame, source: pd.DataFrame,
                                                 testdata: pd.DataFrame) -> None:
    model = fit(practice)
    f1_test, f1_source = f1(model, testdata), f1(model, source)
    assert f1_test >= 0.62
    assert f1_test - f1_source >= 0.15
    # Clearly drifted, but not absurd: low activity still matters in the source market.
    assert 0.30 <= f1_source <= 0.50


def test_drift_is_partial_retrained_model_still_works_on_practice(
        source: pd.DataFrame, testdata: pd.DataFrame) -> None:
    retrained = fit(source)
    assert f1(retrained, source) >= 0.7
    # The automation uses this as its new baseline on testdata.csv: it must not look broken.
    assert f1(retrained, testdata) >= 0.40


def test_generate_clients_is_seeded_and_well_formed() -> None:
    a = datagen.generate_clients(2000, "source", 5)
    pd.testing.assert_frame_equal(a, datagen.generate_clients(2000, "source", 5))
    assert not a.equals(datagen.generate_clients(2000, "source", 6))
    assert list(a.columns) == list(datagen.COLUMNS)
    assert a["corporation"].is_unique and a["corporation"].str.fullmatch(r"[a-z]{4}").all()
    assert (a[FEATURES] >= 0).all().all() and set(a["exited"]) <= {0, 1}
    assert len(datagen.generate_clients(0, "practice", 1)) == 0
    with pytest.raises(ValueError):
        datagen.generate_clients(10, "future", 1)


def test_write_clients_csv_streams_chunks(tmp_path: Path, monkeypatch) -> None:
    """Chunks of chunk_rows rows, each written before the next is drawn: one chunk in memory at a time."""
    events: list[tuple[str, int]] = []
    draw_rows, write_chunks = datagen.draw_rows, datagen.write_chunks

    def drawing(rng_features, rng_exits, ids, regime):
        events.append(("drawn", len(ids)))
        return draw_rows(rng_features, rng_exits, ids, regime)

    def writing(path, chunks):
        def watched():
            for chunk in chunks:
                yield chunk
                events.append(("written", chunk.count("\n")))  # the writer asks for more once this one is written
        write_chunks(path, watched())

    monkeypatch.setattr(datagen, "draw_rows", drawing)
    monkeypatch.setattr(datagen, "write_chunks", writing)
    path = tmp_path / "big.csv"
    n = datagen.write_clients_csv(path, 2500, "practice", 3, chunk_rows=1000, with_duplicates_share=0.1)
    first = path.read_bytes()
    assert events == [("written", 1), ("drawn", 1000), ("written", 1000), ("drawn", 1000), ("written", 1000),
                      ("drawn", 500), ("written", 500)]
    datagen.write_clients_csv(path, 2500, "practice", 3, chunk_rows=1000, with_duplicates_share=0.1)
    assert path.read_bytes() == first
    df = pd.read_csv(path, dtype={"corporation": str})
    assert n == len(df) == 2500
    assert df.duplicated().sum() == 250
    assert (df["corporation"].str.len() > 0).all() and (df[FEATURES] >= 0).all().all()
    assert [p.name for p in tmp_path.iterdir()] == ["big.csv"]


def month_table(path: Path, labelled: bool) -> pl.DataFrame:
    """A --month file read as ingestion reads a client file: the data contract checked."""
    from riskcore.data.client_csv import read_text_table
    from riskcore.data.validation import validate_client_frame

    return validate_client_frame(read_text_table(path.read_bytes(), path.name, labelled), path.name, labelled)


def test_a_month_unlabelled_then_labelled_with_the_same_seed_brings_the_same_clients_labels(tmp_path: Path,
                                                                                             capsys) -> None:
    export, labels = tmp_path / "2026-12.csv", tmp_path / "2027-01.csv"
    assert datagen.main(["--month", str(export), "--market", "shifted", "--rows", "300", "--seed", "7",
                         "--unlabelled"]) == 0
    assert datagen.main(["--month", str(labels), "--market", "shifted", "--rows", "300", "--seed", "7"]) == 0
    assert "300 shifted clients" in capsys.readouterr().out
    unlabelled, labelled = month_table(export, False), month_table(labels, True)
    assert "exited" not in unlabelled.columns and "exited" in labelled.columns
    assert unlabelled.height == labelled.height == 300 and unlabelled["corporation"].n_unique() == 300
    assert unlabelled["corporation"][0] == "m7-00000"
    assert labelled.drop("exited").equals(unlabelled)  # the same clients, figures and revenue
    assert labelled["annual_revenue"].null_count() > 0  # a new-market month: revenue, some of it unknown
    expected = datagen.generate_columns(300, "shifted", 7)
    assert labelled["exited"].to_list() == expected["exited"].tolist()


def test_a_practice_month_has_no_revenue_and_another_market_other_figures(tmp_path: Path) -> None:
    assert datagen.main(["--month", str(tmp_path / "a.csv"), "--market", "practice", "--rows", "50"]) == 0
    assert datagen.main(["--month", str(tmp_path / "b.csv"), "--market", "changed", "--rows", "50"]) == 0
    practice, changed = month_table(tmp_path / "a.csv", True), month_table(tmp_path / "b.csv", True)
    assert "annual_revenue" not in practice.columns
    assert practice["corporation"].equals(changed["corporation"])  # the same seed: the same ids, new figures
    assert not practice["number_of_employees"].equals(changed["number_of_employees"])


@pytest.mark.parametrize(("argv", "status", "said"), [
    (["--rows", "5"], 2, "--rows, --seed and --unlabelled go with --month PATH"),
    (["--month", "{tmp}/m.csv", "--rows", "0"], 2, "--rows: must be a whole number of at least 1, not '0'"),
    (["--month", "{tmp}/m.csv", "--seed", "-1"], 2, "--seed: must be a whole number of at least 0, not '-1'"),
    (["--sqlite", "{tmp}/x.sqlite", "--market", "changed"], 2, "--sqlite takes practice or source"),
    (["--sqlite", "{tmp}/x.sqlite", "--month", "{tmp}/m.csv"], 2, "give one of them"),
    (["--month", "{tmp}/exists.csv"], 1, "exists already; --month writes a new file only"),
    (["--month", "{tmp}/no/m.csv"], 1, "does not exist"),
])
def test_a_wrong_month_request_is_one_sentence_and_writes_nothing(tmp_path: Path, capsys, argv, status, said) -> None:
    (tmp_path / "exists.csv").write_text("kept\n")
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    try:
        assert datagen.main(argv) == status
    except SystemExit as stop:  # argparse's usage error
        assert stop.code == status
    assert said in capsys.readouterr().err
    assert (tmp_path / "exists.csv").read_text() == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.csv"]
