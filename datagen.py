"""Seeded generator of the project's bundled client data (and of large benchmark files).

Reads:   nothing (with --sqlite: the bundled CSV files of --market under --root)
Writes:  under --root, practicedata/dataset1.csv and dataset2.csv, sourcedata/dataset3.csv and
         dataset4.csv, testdata/testdata.csv; with --sqlite PATH, those rows into the table "clients";
         with --month PATH, one more month of --rows clients of --market (a new file only)
Example: python datagen.py            (no --config: it writes fixed files and reads no setting)
         python datagen.py --month sourcedata/dataset5.csv --market shifted --seed 5 --unlabelled

Every file has the header ``corporation,lastmonth_activity,lastyear_activity,
number_of_employees,exited``, the bundled new market's (``sourcedata/``) followed by
``annual_revenue``; numbers are written as plain non-negative integers (an unknown
revenue as an empty field), lines end with LF, and files are written atomically
(``riskcore.files.atomic_path``).

Generative process (one client = one row)
-----------------------------------------
Each regime (``"practice"`` = the old market, ``"source"`` = the new market) is a
:class:`Regime` of parameters; a client is drawn as follows, with ``z_size`` and
``z_act`` independent standard normals and ``round`` meaning ``numpy.rint``
(half to even):

* ``number_of_employees = min(round(emp_median * exp(emp_sigma * z_size)), emp_cap)``
  (lognormal, heavy-tailed); then a share ``no_staff_share`` is set to 0.
* Monthly activity level ``L = min(act_median * exp(act_sigma * z), act_cap)`` with
  ``z = rho * z_size + sqrt(1 - rho**2) * z_act`` (bigger clients are somewhat busier).
* ``lastmonth_activity = round(L)``.
* ``lastyear_activity = round(12 * L * R)`` with ``R = exp(Normal(trend_mu, trend_sigma))``:
  ``R > 1`` means last month fell below the client's average month of the last year.
* A share ``dormant_share`` gets ``lastmonth_activity = 0`` (stopped using the
  service last month); independently a share ``inactive_share`` gets both activity
  columns set to 0.
* ``exited ~ Bernoulli(sigmoid(b0 + b_month * lastmonth + b_year * lastyear + b_emp * employees))``.

Parameters (``PRACTICE`` / ``SOURCE``):

===================  ===================================  ==================================
parameter            practice                             source
===================  ===================================  ==================================
emp_median/sigma/cap 40 / 1.0 / 5000                      100 / 1.1 / 8000
act_median/sigma/cap 60 / 0.8 / 3000                      100 / 0.4 / 3000
rho                  0.3                                  0.3
trend_mu/sigma       0.0 / 0.25                           -0.15 / 0.25
dormant/inactive     4% / 1%                              10% / 1%
no_staff_share       1%                                   1%
exit logit           3.0 - 0.05*month - 0.002*year        0.75 + 0.02*employees
                     - 0.004*employees                    + 0.007*(year - 12*month)
                                                          - 0.05*month
===================  ===================================  ==================================

Drift: in the practice market low activity drives attrition (and size protects a
little); base rate about 30%. The source market changed partly. Its clients are
bigger (``emp_median`` 100 rather than 40) and busier (``act_median`` 100 rather
than 60, with less spread between clients); the market is growing (median ``R``
is ``exp(-0.15)``, about 0.86, so only about 28% of the clients active last month
were below their yearly average, against about 50% in practice); and 10% rather
than 4% were dormant last month. Attrition there is driven mainly by size and by
the *fall* of activity (``year - 12*month``, i.e. the shortfall of last month
against the yearly average, in activity units): large clients and clients whose
activity is falling leave. Low activity still matters (``-0.05*month``), but much
less than before. Splitting each logit into a size, a fall and a level term
(``b_emp*employees``, ``b_year*(year - 12*month)``, ``(b_month + 12*b_year)*month``):
dropping one term from the source logit lowers its AUC on source clients from
0.965 to 0.80 (size), 0.90 (fall) or 0.92 (level), whereas dropping the level
term from the practice logit lowers its AUC on practice clients from 0.92 to 0.55.
Base rate about 34%. Both logits are linear in the raw features, so the project's
LogisticRegression can learn either market.
On the bundled files (deduplicated), a model trained on practice data scores F1
0.69 on ``testdata.csv`` and 0.35 on source data (clearly drifted: it flags the
dormant and quiet clients, nearly all of whom do leave, but misses the large or
falling ones, so its recall there is about 0.2); a model retrained on source data
scores 0.85 on source data and still 0.51 on ``testdata.csv``.

Annual revenue (the bundled new market only)
--------------------------------------------
``annual_revenue`` is no feature and plays no part in who leaves; it gives the call list
its revenue at risk. Per client, with ``z_rev`` a standard normal of its own stream:

* ``annual_revenue = round(REVENUE_PER_EMPLOYEE * max(number_of_employees, 1) * exp(REVENUE_SIGMA * z_rev))``
  (log-normal around 150,000 a year per employee, sigma 0.5: half the clients within
  about x0.7 to x1.4 of that; a client with no staff counts as one person);
* then a share ``REVENUE_UNKNOWN_SHARE`` (5%) is unknown: an empty field.

The draws come from a fourth stream of the regime's seed sequence
(``SeedSequence([SOURCE_SEED, 2]).spawn(4)[3]``), so the other columns are exactly the
files' without revenue, byte for byte; a copied row (the files' shared rows) keeps its
revenue. The practice market, the test data and large benchmark files carry no revenue,
as the course's data does not.

Bundled files (``main``)
------------------------
* ``generate_clients(3430, "practice", PRACTICE_SEED)``: the first 500 rows are
  ``testdata/testdata.csv``; the other 2,930 are split in halves into
  ``practicedata/dataset1.csv`` (1,465 rows) and ``practicedata/dataset2.csv``
  (1,465 rows plus exact copies of 75 random dataset1 rows, shuffled in; 2.5% of
  all practice rows are duplicates). Test clients are distinct from each other
  and from practice clients.
* ``generate_clients(10000, "source", SOURCE_SEED)`` with its annual revenue, split in
  halves into ``sourcedata/dataset3.csv`` (5,000) and ``sourcedata/dataset4.csv`` (5,000
  plus exact copies of 150 random dataset3 rows, 1.5% of all source rows).
* Ids are unique random 4-lowercase-letter strings within a regime. The two
  regimes draw ids independently, so some ids (about 75 expected; 98 in the
  bundled files, test ids included) occur in both markets by chance: they denote
  unrelated clients, and no exact row is shared between the regimes.

Seeds: a regime's draws come from ``SeedSequence([seed, regime code])`` spawned
into independent streams for ids, features and exits; the split/duplicate layout
uses ``default_rng([LAYOUT_SEED, k])`` (k = 1 practice, 2 source); regime codes
are 1 (practice) and 2 (source). ``PRACTICE_SEED = 1101``,
``SOURCE_SEED = 2202``, ``LAYOUT_SEED = 3303``; rerunning reproduces every file
byte for byte (given the same numpy version's generators).

A month to try the automation on (``--month``)
---------------------------------------------
``write_month(path, rows, market, seed, labelled)``: ``generate_columns(rows, market, seed)`` with
the ids ``m<seed>-00000``, ``m<seed>-00001``, ... and, but for the practice market, the annual
revenue above; unlabelled, without ``exited`` (this month's export, before anyone knows who will
leave). The same seed gives the same clients with the same figures whatever the label, so a
labelled month written after an unlabelled one with the same seed and rows brings those clients'
labels (the estimate's ledger then realizes its F1); another market with the same seed gives the
same ids new figures (new snapshots of the same clients). ``shifted`` and ``changed`` are the
months above: clients that shift but leave by the same rule, and a change in who leaves.

Large files: ``write_clients_csv`` streams ``n`` rows in chunks with ids
``c00000000, c00000001, ...``; chunk ``k`` is drawn from
``SeedSequence([seed, regime code, k])``, so output depends on ``chunk_rows`` too.
With ``with_duplicates_share = s``, ``round(s * rows)`` rows of each chunk are
overwritten by exact copies of other rows of that chunk (the row count stays ``n``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from riskcore.cli import whole_number_argument
from riskcore.contract import COLUMNS, KNOWN_COLUMNS, PROJECT_DIR, REVENUE
from riskcore.files import atomic_path

if TYPE_CHECKING:
    import pandas as pd

HEADER = ",".join(COLUMNS)
Columns = dict[str, np.ndarray]

REVENUE_PER_EMPLOYEE = 150_000.0  # median yearly revenue per employee
REVENUE_SIGMA = 0.5
REVENUE_UNKNOWN_SHARE = 0.05
REVENUE_STREAM = 3  # the regime's seed sequence's fourth child: ids, features and exits keep theirs

PRACTICE_SEED = 1101
SOURCE_SEED = 2202
LAYOUT_SEED = 3303

N_TEST = 500
N_PRACTICE = 2930
N_PRACTICE_SHARED = 75
N_SOURCE = 10_000
N_SOURCE_SHARED = 150

ID_LETTERS = 4
ID_SPACE = 26**ID_LETTERS
# Logits beyond this are saturated; clipping keeps np.exp from overflowing.
LOGIT_CLIP = 50.0


@dataclass(frozen=True)
class Regime:
    """Parameters of one market's client population and attrition."""

    code: int
    emp_median: float
    emp_sigma: float
    emp_cap: int
    act_median: float
    act_sigma: float
    act_cap: float
    rho: float
    trend_mu: float
    trend_sigma: float
    dormant_share: float
    inactive_share: float
    no_staff_share: float
    b0: float
    b_month: float
    b_year: float
    b_emp: float


PRACTICE = Regime(
    code=1, emp_median=40, emp_sigma=1.0, emp_cap=5000,
    act_median=60, act_sigma=0.8, act_cap=3000, rho=0.3,
    trend_mu=0.0, trend_sigma=0.25,
    dormant_share=0.04, inactive_share=0.01, no_staff_share=0.01,
    b0=3.0, b_month=-0.05, b_year=-0.002, b_emp=-0.004,
)
# Source logit = 0.75 + 0.02*employees + 0.007*(year - 12*month) - 0.05*month, so
# b_year = 0.007 (the fall) and b_month = -12 * 0.007 - 0.05 = -0.134 (fall plus level).
SOURCE = Regime(
    code=2, emp_median=100, emp_sigma=1.1, emp_cap=8000,
    act_median=100, act_sigma=0.4, act_cap=3000, rho=0.3,
    trend_mu=-0.15, trend_sigma=0.25,
    dormant_share=0.10, inactive_share=0.01, no_staff_share=0.01,
    b0=0.75, b_month=-0.134, b_year=0.007, b_emp=0.02,
)
# Two months for the decision tests (never bundled): "shifted" keeps the source market's rule for who
# leaves, but its clients are bigger (emp_median 180) and quieter (act_median 70); "changed" keeps
# the source market's clients, but who leaves changes: small clients and quiet ones leave
# (logit 2.5 - 0.03*month - 0.02*employees), where the source market lost the large and the falling.
SHIFTED = replace(SOURCE, code=3, emp_median=180, act_median=70)
CHANGED = replace(SOURCE, code=4, b0=2.5, b_month=-0.03, b_year=0.0, b_emp=-0.02)
REGIMES = {"practice": PRACTICE, "source": SOURCE, "shifted": SHIFTED, "changed": CHANGED}


def get_regime(regime: str) -> Regime:
    """Return the parameters of a named regime, rejecting unknown names."""
    try:
        return REGIMES[regime]
    except KeyError:
        raise ValueError(f"unknown regime {regime!r}; expected one of {sorted(REGIMES)}") from None


def letter_ids(codes: np.ndarray) -> np.ndarray:
    """Encode integers in [0, 26**4) as 4-lowercase-letter strings."""
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype="S1")
    digits = [(codes // 26**p) % 26 for p in range(ID_LETTERS - 1, -1, -1)]
    chars = np.ascontiguousarray(np.stack([letters[d] for d in digits], axis=1))
    return chars.view(f"S{ID_LETTERS}").ravel().astype(str)


def numbered_ids(start: int, n: int) -> np.ndarray:
    """Return ids c00000000-style for rows start .. start+n-1 (unique at any size)."""
    return np.array([f"c{i:08d}" for i in range(start, start + n)], dtype=object)


def draw_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw n unique ids: random 4-letter ids when they fit, numbered ids otherwise."""
    if n <= ID_SPACE:
        return letter_ids(rng.choice(ID_SPACE, size=n, replace=False))
    return numbered_ids(0, n)


def draw_features(rng: np.random.Generator, n: int, r: Regime) -> Columns:
    """Draw the three integer features of n clients of a regime."""
    z_size = rng.standard_normal(n)
    z_act = rng.standard_normal(n)
    employees = np.minimum(np.rint(r.emp_median * np.exp(r.emp_sigma * z_size)), r.emp_cap)
    employees[rng.random(n) < r.no_staff_share] = 0
    z_level = r.rho * z_size + np.sqrt(1.0 - r.rho**2) * z_act
    level = np.minimum(r.act_median * np.exp(r.act_sigma * z_level), r.act_cap)
    year_ratio = np.exp(rng.normal(r.trend_mu, r.trend_sigma, n))
    lastmonth = np.rint(level)
    lastyear = np.rint(12.0 * level * year_ratio)
    lastmonth[rng.random(n) < r.dormant_share] = 0
    inactive = rng.random(n) < r.inactive_share
    lastmonth[inactive] = 0
    lastyear[inactive] = 0
    return {
        "lastmonth_activity": lastmonth.astype(np.int64),
        "lastyear_activity": lastyear.astype(np.int64),
        "number_of_employees": employees.astype(np.int64),
    }


def exit_probability(features: Columns, r: Regime) -> np.ndarray:
    """Return the regime's attrition probability for each client."""
    logit = (
        r.b0
        + r.b_month * features["lastmonth_activity"]
        + r.b_year * features["lastyear_activity"]
        + r.b_emp * features["number_of_employees"]
    )
    return 1.0 / (1.0 + np.exp(-np.clip(logit, -LOGIT_CLIP, LOGIT_CLIP)))


def draw_exited(rng: np.random.Generator, features: Columns, r: Regime) -> np.ndarray:
    """Draw the 0/1 exited label from the regime's logistic attrition model."""
    p = exit_probability(features, r)
    return (rng.random(p.shape[0]) < p).astype(np.int64)


def draw_rows(rng_features: np.random.Generator, rng_exits: np.random.Generator,
              ids: np.ndarray, r: Regime) -> Columns:
    """Assemble full columns for the given ids from feature and exit streams."""
    features = draw_features(rng_features, len(ids), r)
    exited = draw_exited(rng_exits, features, r)
    return {"corporation": ids, **features, "exited": exited}


def generate_columns(n: int, regime: str, seed: int) -> Columns:
    """Generate n clients of a regime as a dict of numpy columns (pure, seeded)."""
    if n < 0:
        raise ValueError("n must be >= 0")
    r = get_regime(regime)
    # Separate streams: changing how ids are drawn never shifts the features.
    ids_seq, feat_seq, exit_seq = np.random.SeedSequence([seed, r.code]).spawn(3)
    ids = draw_ids(np.random.default_rng(ids_seq), n)
    return draw_rows(np.random.default_rng(feat_seq), np.random.default_rng(exit_seq), ids, r)


def draw_revenue(employees: np.ndarray, regime: str, seed: int) -> np.ndarray:
    """Each client's annual revenue (float; NaN: unknown), log-normal per employee, from its own stream."""
    stream = np.random.SeedSequence([seed, get_regime(regime).code]).spawn(REVENUE_STREAM + 1)[REVENUE_STREAM]
    rng = np.random.default_rng(stream)
    n = len(employees)
    revenue = np.rint(REVENUE_PER_EMPLOYEE * np.maximum(employees, 1) * np.exp(REVENUE_SIGMA * rng.standard_normal(n)))
    revenue[rng.random(n) < REVENUE_UNKNOWN_SHARE] = np.nan
    return revenue


def generate_clients(n: int, regime: str, seed: int) -> pd.DataFrame:
    """Generate n clients of a regime ("practice" or "source") as a DataFrame."""
    import pandas as pd

    return pd.DataFrame(generate_columns(n, regime, seed), columns=list(COLUMNS))


def take(cols: Columns, index: np.ndarray | slice) -> Columns:
    """Select the same rows from every column."""
    return {name: values[index] for name, values in cols.items()}


def concat(*parts: Columns) -> Columns:
    """Stack column dicts row-wise."""
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def n_rows(cols: Columns) -> int:
    """Return the number of rows of a column dict."""
    return len(cols["corporation"])


def split_with_shared_rows(cols: Columns, n_shared: int,
                           rng: np.random.Generator) -> tuple[Columns, Columns]:
    """Split rows in halves; shuffle copies of n_shared first-half rows into the second."""
    half = n_rows(cols) // 2
    first, second = take(cols, slice(0, half)), take(cols, slice(half, None))
    shared = take(first, rng.choice(half, size=n_shared, replace=False))
    second = concat(second, shared)
    return first, take(second, rng.permutation(n_rows(second)))


def format_rows(cols: Columns) -> str:
    """Format rows as CSV lines (LF-terminated) with plain integers (an unknown revenue: an empty field)."""
    lines = zip(*(cols[name].tolist() for name in COLUMNS), strict=True)
    if REVENUE not in cols:
        return "".join(f"{c},{m},{y},{e},{x}\n" for c, m, y, e, x in lines)
    amounts = ["" if math.isnan(value) else str(int(value)) for value in cols[REVENUE].tolist()]
    return "".join(f"{c},{m},{y},{e},{x},{r}\n" for (c, m, y, e, x), r in zip(lines, amounts, strict=True))


def header_of(cols: Columns) -> str:
    return HEADER + (f",{REVENUE}" if REVENUE in cols else "")


def write_chunks(path: str | os.PathLike, chunks: Iterable[str]) -> None:
    """Write text chunks to path atomically (the project's one helper: temp file, fsync, rename)."""
    # Binary mode: no newline translation, so files are LF on every platform.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk.encode("utf-8"))


def write_columns_csv(path: str | os.PathLike, cols: Columns) -> None:
    """Atomically write a column dict as a CSV file with the project header (and annual_revenue where it has it)."""
    write_chunks(path, [header_of(cols) + "\n", format_rows(cols)])


def overwrite_with_duplicates(cols: Columns, share: float,
                              rng: np.random.Generator) -> Columns:
    """Replace a share of rows by exact copies of other rows of the same chunk."""
    m = n_rows(cols)
    k = int(round(share * m))
    if k == 0 or m < 2:
        return cols
    order = rng.permutation(m)
    targets, sources = order[:k], rng.choice(order[k:], size=k, replace=True)
    out = {name: values.copy() for name, values in cols.items()}
    for values in out.values():
        values[targets] = values[sources]
    return out


def stream_chunks(n: int, r: Regime, seed: int, chunk_rows: int,
                  with_duplicates_share: float) -> Iterator[str]:
    """Yield the header and then formatted CSV chunks of at most chunk_rows rows."""
    yield HEADER + "\n"
    for k, start in enumerate(range(0, n, chunk_rows)):
        m = min(chunk_rows, n - start)
        feat_seq, exit_seq, dup_seq = np.random.SeedSequence([seed, r.code, k]).spawn(3)
        cols = draw_rows(np.random.default_rng(feat_seq), np.random.default_rng(exit_seq),
                         numbered_ids(start, m), r)
        cols = overwrite_with_duplicates(cols, with_duplicates_share, np.random.default_rng(dup_seq))
        yield format_rows(cols)


def write_clients_csv(path: str | os.PathLike, n: int, regime: str, seed: int,
                      chunk_rows: int = 500_000, with_duplicates_share: float = 0.0) -> int:
    """Stream n rows of a regime to a CSV in bounded memory; return the row count.

    About with_duplicates_share of the rows are exact copies of other rows of
    the same chunk (so the file holds fewer distinct rows than n).
    """
    r = get_regime(regime)
    if n < 0 or chunk_rows < 1:
        raise ValueError("need n >= 0 and chunk_rows >= 1")
    if not 0.0 <= with_duplicates_share < 0.5:
        raise ValueError("with_duplicates_share must be in [0, 0.5)")
    write_chunks(path, stream_chunks(n, r, seed, chunk_rows, with_duplicates_share))
    return n


def build_bundled() -> dict[str, Columns]:
    """Build the bundled datasets, keyed by path relative to the repo root."""
    practice = generate_columns(N_TEST + N_PRACTICE, "practice", PRACTICE_SEED)
    test = take(practice, slice(0, N_TEST))
    dataset1, dataset2 = split_with_shared_rows(
        take(practice, slice(N_TEST, None)), N_PRACTICE_SHARED,
        np.random.default_rng([LAYOUT_SEED, 1]))
    source = generate_columns(N_SOURCE, "source", SOURCE_SEED)
    source[REVENUE] = draw_revenue(source["number_of_employees"], "source", SOURCE_SEED)
    dataset3, dataset4 = split_with_shared_rows(
        source, N_SOURCE_SHARED, np.random.default_rng([LAYOUT_SEED, 2]))
    return {
        "practicedata/dataset1.csv": dataset1,
        "practicedata/dataset2.csv": dataset2,
        "sourcedata/dataset3.csv": dataset3,
        "sourcedata/dataset4.csv": dataset4,
        "testdata/testdata.csv": test,
    }


def write_month(path: str | os.PathLike, rows: int, market: str, seed: int, labelled: bool = True) -> int:
    """Write one month of `rows` new clients of a market as a CSV file (see the docstring); its row count."""
    cols = generate_columns(rows, market, seed)
    cols["corporation"] = np.array([f"m{seed}-{i:05d}" for i in range(rows)])
    if market != "practice":  # the course's old market has no revenue, as practicedata/ has none
        cols[REVENUE] = draw_revenue(cols["number_of_employees"], market, seed)
    names = [name for name in KNOWN_COLUMNS if name in cols and (labelled or name != "exited")]
    cells = [cols[name].tolist() for name in names]
    lines = (",".join("" if value != value else str(int(value)) if isinstance(value, float) else str(value)
                      for value in row) + "\n" for row in zip(*cells, strict=True))
    write_chunks(path, [",".join(names) + "\n", "".join(lines)])
    return rows


def write_bundled(root: str | os.PathLike) -> dict[str, int]:
    """Write the bundled datasets under root; return row counts by relative path."""
    counts = {}
    for relpath, cols in build_bundled().items():
        write_columns_csv(Path(root) / relpath, cols)
        counts[relpath] = n_rows(cols)
    return counts


# --- The SQLite example (config.database.json, make run-db) -------------------------------------
SQLITE_TABLE = "clients"
SQLITE_SCHEMA = (f"CREATE TABLE {SQLITE_TABLE} (corporation TEXT NOT NULL, lastmonth_activity INTEGER, "
                 "lastyear_activity INTEGER, number_of_employees INTEGER, exited INTEGER, annual_revenue REAL, "
                 "updated_at TEXT NOT NULL)")
# The bundled markets as rows of a CRM table: the practice market's rows first, the new market's
# arriving later with a newer updated_at (the watermark column config.database.json names).
SQLITE_MARKETS = {
    "practice": (("practicedata/dataset1.csv", "practicedata/dataset2.csv"), "2024-01-31T00:00:00Z"),
    "source": (("sourcedata/dataset3.csv", "sourcedata/dataset4.csv"), "2024-02-29T00:00:00Z"),
}


def bundled_rows(root: str | os.PathLike, market: str, updated_at: str,
                 columns: tuple[str, ...] = KNOWN_COLUMNS) -> list[tuple]:
    """A market's rows from the bundled CSV files, as table rows of `columns` stamped with `updated_at` (a revenue
    the files do not give, or an empty one, is NULL)."""
    rows = []
    for relpath in SQLITE_MARKETS[market][0]:
        with open(Path(root) / relpath, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                values = {name: row[name] if name == "corporation" else int(row[name]) if row.get(name) else None
                          for name in columns}
                rows.append((*values.values(), updated_at))
    return rows


def write_sqlite(path: str | os.PathLike, market: str, root: str | os.PathLike) -> int:
    """Add a market's bundled rows to the example table, creating the file; 0 when they are there already."""
    path = Path(path)
    if market not in SQLITE_MARKETS:
        raise ValueError(f"unknown market {market!r}; expected one of {sorted(SQLITE_MARKETS)}")
    if not path.exists():
        with atomic_path(path) as tmp, contextlib.closing(sqlite3.connect(tmp)) as connection:
            connection.execute(SQLITE_SCHEMA)
            connection.commit()
    updated_at = SQLITE_MARKETS[market][1]
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:  # one transaction: all rows or none
        if connection.execute(f"SELECT 1 FROM {SQLITE_TABLE} WHERE updated_at = ? LIMIT 1", (updated_at,)).fetchone():
            return 0
        present = [row[1] for row in connection.execute(f"PRAGMA table_info({SQLITE_TABLE})")]
        columns = tuple(name for name in KNOWN_COLUMNS if name in present)  # a table made before revenue: none
        rows = bundled_rows(root, market, updated_at, columns)
        connection.executemany(f"INSERT INTO {SQLITE_TABLE} ({', '.join(columns)}, updated_at) "
                               f"VALUES ({', '.join('?' * (len(columns) + 1))})", rows)
    return len(rows)


MONTH_ROWS = 1000  # --month's defaults
MONTH_SEED = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description="Generate the project's bundled client data, or one more month.")
    parser.add_argument("--root", default=str(PROJECT_DIR),
                        help="folder to write practicedata/, sourcedata/, testdata/ into "
                             "(default: the folder of datagen.py)")
    parser.add_argument("--sqlite", metavar="PATH",
                        help="instead: add the bundled rows of --market to the SQLite example table at PATH "
                             f"(table {SQLITE_TABLE}, created when missing; rows already there are not added again)")
    parser.add_argument("--month", metavar="PATH",
                        help="instead: write one month of --rows new clients of --market to PATH, a new CSV file "
                             "(put it in the input folder, then run fullprocess.py); ids m<seed>-00000, ...")
    parser.add_argument("--market", choices=sorted(REGIMES),
                        help="with --sqlite: practice (practicedata's rows, the default) or source (sourcedata's); "
                             "with --month: practice, source (the default), shifted (bigger, quieter clients who "
                             "leave by the same rule) or changed (clients like source's, another rule of who leaves)")
    parser.add_argument("--rows", type=whole_number_argument(1),
                        help=f"with --month: how many clients (default {MONTH_ROWS})")
    parser.add_argument("--seed", type=whole_number_argument(0),
                        help=f"with --month: the seed (default {MONTH_SEED}); the same seed gives the same "
                             "clients and figures, so a labelled month after an unlabelled one brings their labels")
    parser.add_argument("--unlabelled", action="store_true",
                        help="with --month: no exited column (this month's export, before anyone knows who leaves)")
    args = parser.parse_args(argv)
    if args.sqlite and args.month:
        parser.error("--sqlite and --month are two different jobs: give one of them")
    if args.sqlite and args.market not in (None, *SQLITE_MARKETS):
        parser.error(f"--market {args.market} is a month's market; --sqlite takes practice or source")
    if not args.month and (args.unlabelled or args.rows is not None or args.seed is not None):
        parser.error("--rows, --seed and --unlabelled go with --month PATH")
    return args


def main(argv: list[str] | None = None) -> int:
    """Write the five bundled CSV files and report their row counts (or add rows to the SQLite example, or a month)."""
    args = parse_args(argv)
    if args.sqlite:
        market = args.market or "practice"
        added = write_sqlite(args.sqlite, market, args.root)
        print(f"{args.sqlite}: {added} {market} rows added" if added else
              f"{args.sqlite}: the {market} rows are there already")
        return 0
    if args.month:
        market, rows, seed = args.market or "source", args.rows or MONTH_ROWS, \
            MONTH_SEED if args.seed is None else args.seed
        path = Path(args.month)
        if path.exists():  # rewriting a month the automation ingested would change its rows, not add a month
            print(f"error: {path} exists already; --month writes a new file only (choose another name).",
                  file=sys.stderr)
            return 1
        if not path.parent.is_dir():
            print(f"error: the folder {path.parent} does not exist.", file=sys.stderr)
            return 1
        write_month(path, rows, market, seed, labelled=not args.unlabelled)
        print(f"{path}: {rows} {market} clients (ids m{seed}-00000 ...), "
              f"{'unlabelled (no exited column)' if args.unlabelled else 'labelled'}")
        return 0
    for relpath, count in write_bundled(args.root).items():
        print(f"{relpath}: {count} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
