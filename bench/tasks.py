"""The heavy half of the benchmarks, one task per process, so each is measured on its own.

`bench/run.py` starts every task as `python bench/tasks.py TASK ...`: data generation, project
setup, and the timed work together with the floor it is compared with. A timed task imports what
it needs before its clock starts and prints one JSON line, {"seconds": ...}, as its last line; the
harness measures the process's wall time and peak memory around it.

Reads:  the project's scripts (imported from the folder above this one)
Writes: only under the folders named on the command line (generated data, benchmark projects)
Example: python bench/tasks.py clients --rows 100000 7=/tmp/c.csv
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from riskcore.config import load_config  # noqa: E402 - importable once ROOT is on the path

TEST_ROWS = 500


def emit(document: dict) -> None:
    """The task's result: one JSON line, last on stdout."""
    print(json.dumps(document), flush=True)


def write_config(path: Path, **paths: str) -> Path:
    """A project config; folders are relative to the config file's folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(paths, indent=2) + "\n", encoding="utf-8")
    return path


def write_frame(path: Path, frame) -> None:
    import datagen

    datagen.write_columns_csv(path, {name: frame[name].to_numpy() for name in datagen.COLUMNS})


# --- Generated data --------------------------------------------------------------------------
def task_clients(args: argparse.Namespace) -> None:
    """Large client CSVs, each streamed in bounded memory (cached by the caller)."""
    import datagen

    start = time.perf_counter()
    for spec in args.files:
        seed, _, path = spec.partition("=")
        datagen.write_clients_csv(path, args.rows, args.regime, int(seed), with_duplicates_share=args.duplicates)
    emit({"seconds": time.perf_counter() - start})


def deploy_pipeline(config_path: Path) -> None:
    """Ingest, train, score and deploy, in this process, as the scripts do."""
    import deployment
    import ingestion
    import scoring
    import training

    config = load_config(config_path)
    ingestion.run(config)
    training.run(config)
    scoring.run(config)
    deployment.deploy(config)


def task_project(args: argparse.Namespace) -> None:
    """The benchmarks' project: the old market's model deployed, the new market's clients waiting.

    As in the bundled project, config.practice.json (practicedata -> practicemodels) has deployed
    to production_deployment, and config.json reads sourcedata, on which that model drifts. The
    API serves config.json; a tick of config.practice.json has nothing new; config.risk.json
    writes risk lists beside nothing else; a fullprocess run of config.json is the full cycle.
    """
    import datagen
    import diagnostics

    folder = Path(args.dir)
    shutil.rmtree(folder, ignore_errors=True)
    practice = datagen.generate_clients(args.practice + TEST_ROWS, "practice", args.seed)
    write_frame(folder / "testdata" / "testdata.csv", practice.iloc[:TEST_ROWS])
    write_frame(folder / "practicedata" / "practice.csv", practice.iloc[TEST_ROWS:])
    source = datagen.generate_clients(args.clients, "source", args.seed + 1)
    half = len(source) // 2
    write_frame(folder / "sourcedata" / "source1.csv", source.iloc[:half])
    write_frame(folder / "sourcedata" / "source2.csv", source.iloc[half:])
    shared = {"output_folder_path": "ingesteddata", "test_data_path": "testdata",
              "prod_deployment_path": "production_deployment"}
    practice_config = write_config(folder / "config.practice.json", input_folder_path="practicedata",
                                   output_model_path="practicemodels", **shared)
    config = write_config(folder / "config.json", input_folder_path="sourcedata", output_model_path="models",
                          **shared)
    write_config(folder / "config.risk.json", input_folder_path="sourcedata", output_model_path="risk-out", **shared)
    deploy_pipeline(practice_config)
    # GET /diagnostics serves this record; pip's answer does not matter here, so it gets little time.
    diagnostics.run(load_config(config), timeout=args.pip_timeout)
    emit({"config": str(config), "practice_config": str(practice_config), "source_rows": len(source)})


# --- Timed work and its floors ---------------------------------------------------------------
def task_risk_list(args: argparse.Namespace) -> None:
    """riskcore.report.call_list.risk_scores over a client file, libraries imported before the clock starts.

    --no-reasons leaves the reason columns empty: the floor that the reasons' cost is measured against.
    """
    import sklearn.linear_model  # noqa: F401

    from riskcore.report.call_list import risk_scores

    config = load_config(args.config)
    start, cpu = time.perf_counter(), time.process_time()
    result = risk_scores(config, Path(args.clients), reasons=not args.no_reasons)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rows, size = result.rows, result.path.stat().st_size
    result.path.unlink()
    result.record.unlink()
    # The ranking it kept (riskcore.report.rankings) goes too: each measurement compares with the same earlier
    # ranking (earlier-ranking), as a list of the week after it would.
    (config.output_model_folder / "rankings" / f"{result.run_number}.parquet").unlink(missing_ok=True)
    emit({"seconds": seconds, "cpu_seconds": cpu, "rows": rows, "bytes": size})


def task_write_bytes(args: argparse.Namespace) -> None:
    """A floor: writing as many bytes as the risk list wrote to a file beside it, fsynced (as riskcore.files does)."""
    import os

    block = b"x" * (1 << 23)
    path = Path(args.path)
    start, cpu = time.perf_counter(), time.process_time()
    with open(path, "wb") as handle:
        for _ in range(args.bytes // len(block)):
            handle.write(block)
        handle.write(block[:args.bytes % len(block)])
        handle.flush()
        os.fsync(handle.fileno())
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    path.unlink()
    emit({"seconds": seconds, "cpu_seconds": cpu})


def task_earlier_ranking(args: argparse.Namespace) -> None:
    """An earlier run's kept ranking (riskcore.report.rankings) that the risk list of a client file compares with, so
    that its change columns are filled: two thirds of the file's clients (about as many as it lists), in a random
    order, kept as run 1 of another list; the rest of the listed clients are new, the others up or down."""
    import polars as pl

    from riskcore.contract import ID_COLUMN
    from riskcore.report.rankings import KEY, keep_ranking

    config = load_config(args.config)
    ids = pl.scan_csv(args.clients, schema_overrides={ID_COLUMN: pl.String}).select(ID_COLUMN).unique().collect()
    earlier = ids.sample(fraction=2 / 3, shuffle=True, seed=args.seed).with_columns(pl.lit(0.0).alias(KEY))
    path = keep_ranking(config.output_model_folder, 1, earlier, {"model_version": "earlier", "source": "earlier"},
                        config.reporting["keep_rankings"], pl.Series([0.0] * earlier.height))
    emit({"path": str(path), "clients": earlier.height})


def task_read_csv(args: argparse.Namespace) -> None:
    """The floor: pandas.read_csv of the same files, alone."""
    import pandas as pd

    start, cpu = time.perf_counter(), time.process_time()
    frames = [pd.read_csv(path) for path in args.files]
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    emit({"seconds": seconds, "cpu_seconds": cpu, "rows": sum(len(frame) for frame in frames)})


def task_ingest(args: argparse.Namespace) -> None:
    """ingestion.run over a folder of files, polars imported before the clock starts."""
    import polars  # noqa: F401

    import ingestion

    config = load_config(args.config)
    start, cpu = time.perf_counter(), time.process_time()
    result = ingestion.run(config)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    emit({"seconds": seconds, "cpu_seconds": cpu, "rows_read": sum(f.rows_read for f in result.files),
          "rows_kept": result.data.height, "rejected": len(result.rejected)})


# --- The database source (input_database) ----------------------------------------------------
# A throwaway PostgreSQL server (tests/pg.py: Debian's binaries, a free loopback port, an
# unprivileged user when run as root); its password reaches the tasks as PGPASSWORD.
DB_TABLE_SQL = ("CREATE TABLE {table} (corporation text NOT NULL, lastmonth_activity bigint, lastyear_activity bigint, "
                "number_of_employees bigint, exited smallint, updated_at timestamptz NOT NULL DEFAULT now());")
DB_COLUMNS = "corporation, lastmonth_activity, lastyear_activity, number_of_employees, exited"


def pg_module():
    sys.path.insert(0, str(ROOT / "tests"))
    import pg

    return pg


def task_postgres(args: argparse.Namespace) -> None:
    """start: a new cluster in the system's temporary folder (one its unprivileged user can reach) with a database
    "crm", printing where; stop: stop it and delete the cluster."""
    pg = pg_module()
    if args.action == "start":
        server = pg.start_server()
        server.create_database("crm")
        emit({"folder": str(server.folder), "port": server.port, "run_as": server.run_as,
              "psql": str(server.bin / "psql"), "url": server.url("crm"),
              "password": server.client_env()["PGPASSWORD"]})
    else:
        bin_folder = pg.postgres_bin()
        pg.remove(pg.PostgresServer(Path(args.folder), args.port, bin_folder, args.run_as or None))
        emit({"stopped": args.folder})


def psql(url: str, sql: str) -> None:
    """Run SQL and psql meta-commands through Debian's psql (the password from PGPASSWORD)."""
    import subprocess

    subprocess.run([str(pg_module().postgres_bin() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
                   input=sql, text=True, check=True, capture_output=True)


# The no-op tick re-reads the rows within input_database.watermark_lookback_seconds (600 s by default) of the
# recorded watermark and recognises them by their hashes. A table written over time ("spread": one row every
# 6 s up to the newest, DB_NEWEST) holds LOOKBACK_ROWS of them; a bulk load (one instant) holds every row there.
LOOKBACK_ROWS = 100
ROW_SPACING_SECONDS = 600 / LOOKBACK_ROWS
DB_NEWEST = "2024-01-31T00:00:00Z"


def load_table(url: str, table: str, clients: Path, spread: bool = False) -> None:
    """A client CSV as a PostgreSQL table with an indexed updated_at watermark: one instant (now(), a bulk
    load) or, `spread`, a row every ROW_SPACING_SECONDS in file order up to DB_NEWEST."""
    stamp = (f"UPDATE {table} t SET updated_at = timestamptz '{DB_NEWEST}' - (s.last - s.n) * "
             f"interval '{ROW_SPACING_SECONDS:g} seconds' FROM (SELECT ctid, row_number() OVER () AS n, "
             f"count(*) OVER () AS last FROM {table}) s WHERE t.ctid = s.ctid;") if spread else ""
    psql(url, f"DROP TABLE IF EXISTS {table};" + DB_TABLE_SQL.format(table=table)
         + f"\\copy {table} ({DB_COLUMNS}) FROM '{clients}' CSV HEADER\n"
         + f"{stamp}CREATE INDEX ON {table} (updated_at); VACUUM ANALYZE {table};")


def sqlite_stamps(rows: int, spread: bool) -> list[str]:
    """updated_at of `rows` SQLite rows, in the ISO form datagen.py writes: as load_table stamps them."""
    from datetime import datetime, timedelta

    newest = datetime.fromisoformat(DB_NEWEST)
    return [(newest - timedelta(seconds=(rows - 1 - n) * ROW_SPACING_SECONDS if spread else 0))
            .strftime("%Y-%m-%dT%H:%M:%SZ") for n in range(rows)]


def task_db_table(args: argparse.Namespace) -> None:
    """Load a client CSV into a PostgreSQL table (timed, for the log)."""
    start = time.perf_counter()
    load_table(args.url, args.table, Path(args.clients))
    emit({"seconds": time.perf_counter() - start})


# (kind of table, watermark column, table) of the no-op tick benchmark: written over time, without a
# watermark (count and checksum), bulk-loaded
DB_TICK_TABLES = (("", "updated_at", "clients"), ("-checksum", None, "clients"),
                  ("-bulk", "updated_at", "clients_bulk"))


def task_db_project(args: argparse.Namespace) -> None:
    """Deployed projects whose source is a table of --rows clients: SQLite and PostgreSQL, with a watermark
    column (rows written over time; rows bulk-loaded at one instant) and without; a tick of each then has nothing
    new. Prints each project's config and how many rows its record recognises within the look-back."""
    import sqlite3

    import datagen
    from riskcore.data.db_changes import recorded_hashes

    folder = Path(args.dir)
    shutil.rmtree(folder, ignore_errors=True)
    practice = datagen.generate_clients(args.rows + TEST_ROWS, "practice", args.seed)
    write_frame(folder / "testdata" / "testdata.csv", practice.iloc[:TEST_ROWS])
    clients = folder / "clients.csv"
    write_frame(clients, practice.iloc[TEST_ROWS:])
    rows = [(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]))
            for r in practice.iloc[TEST_ROWS:].itertuples(index=False)]
    with sqlite3.connect(folder / "crm.sqlite") as connection:
        for table, spread in (("clients", True), ("clients_bulk", False)):
            connection.execute(f"CREATE TABLE {table} (corporation TEXT NOT NULL, lastmonth_activity INTEGER, "
                               "lastyear_activity INTEGER, number_of_employees INTEGER, exited INTEGER, "
                               "updated_at TEXT NOT NULL)")
            connection.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)",
                                   [(*row, stamp) for row, stamp in zip(rows, sqlite_stamps(len(rows), spread),
                                                                          strict=True)])
            connection.execute(f"CREATE INDEX {table}_updated_at ON {table} (updated_at)")
    connection.close()
    load_table(args.url, "clients", clients, spread=True)
    load_table(args.url, "clients_bulk", clients)
    configs, lookback = {}, {}
    for name, url in (("sqlite", "sqlite:///crm.sqlite"), ("postgresql", args.url)):
        for kind, watermark, table in DB_TICK_TABLES:
            key = f"{name}{kind}"
            config = folder / f"config.{key}.json"
            config.write_text(json.dumps({
                "input_database": {"url": url, "table": table, "watermark_column": watermark},
                "output_folder_path": f"{key}/ingesteddata", "test_data_path": "testdata",
                "output_model_path": f"{key}/models", "prod_deployment_path": f"{key}/production_deployment"}))
            deploy_pipeline(config)
            configs[key] = str(config)
            record = json.loads((folder / key / "production_deployment" / "ingestionrecord.json").read_text())
            lookback[key] = len(recorded_hashes(record["database"]["state"]) or [])
    emit({"configs": configs, "lookback_rows": lookback})


def task_db_select(args: argparse.Namespace) -> None:
    """The query ingestion reads a configured table with (for psql's \\copy floor)."""
    from riskcore.contract import COLUMNS
    from riskcore.data.db_ingest import select_sql

    emit({"sql": select_sql(load_config(args.config).input_database, dict.fromkeys(COLUMNS, True))})


def task_drift_test(args: argparse.Namespace) -> None:
    """The significance test on a window of --rows rows, and its floor (f1_score on them): medians of 5."""
    import statistics

    import numpy as np
    from sklearn.metrics import f1_score

    from riskcore.model.drift import Counts, significant_drop

    rng = np.random.default_rng(7)
    labels, predictions = rng.random(args.rows) < 0.3, rng.random(args.rows) < 0.3
    tests, floors = [], []
    for _ in range(5):
        start = time.perf_counter()
        f1_score(labels, predictions)
        floors.append(time.perf_counter() - start)
        start = time.perf_counter()
        significant_drop(Counts(170, 30, 30, 770), Counts.of(labels, predictions), 0.05, 0.05)
        tests.append(time.perf_counter() - start)
    emit({"seconds": statistics.median(tests), "floor": statistics.median(floors)})


def task_estimate(args: argparse.Namespace) -> None:
    """Issue 20's costs on generated new-market clients: estimating a window of --rows rows from calibrated
    probabilities (beside f1_score on them), and the calibrator's share of training.py on --rows rows (its
    seconds, as modelmetadata.json records them, beside the rest of the training step)."""
    import statistics
    import tempfile

    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    import datagen
    import ingestion
    import training
    from riskcore.contract import FEATURES, TARGET
    from riskcore.model.calibration import calibrated_probability, estimate_performance, fit_calibrator

    columns = datagen.generate_columns(args.rows + 2000 + args.rows, "source", 11)
    features = np.column_stack([columns[name] for name in FEATURES]).astype(float)
    labels = columns[TARGET]
    train, held, window = slice(0, args.rows), slice(args.rows, args.rows + 2000), slice(args.rows + 2000, None)
    model = LogisticRegression(solver="liblinear").fit(features[train], labels[train])
    calibrator, _ = fit_calibrator(model.decision_function(features[held]), labels[held], "bench")
    log_odds, predictions = model.decision_function(features[window]), model.predict(features[window])
    estimates, floors = [], []
    for _ in range(5):
        start = time.perf_counter()
        estimate_performance(calibrated_probability(calibrator, log_odds), predictions, log_odds)
        estimates.append(time.perf_counter() - start)
        start = time.perf_counter()
        f1_score(labels[window], predictions)
        floors.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        datagen.write_columns_csv(root / "input" / "clients.csv", {k: v[train] for k, v in columns.items()})
        datagen.write_columns_csv(root / "test" / "testdata.csv", {k: v[held] for k, v in columns.items()})
        config = load_config(write_config(root / "config.json", input_folder_path="input", output_folder_path="out",
                                          test_data_path="test", output_model_path="models",
                                          prod_deployment_path="prod"))
        ingestion.run(config)
        steps, calibrations = [], []
        for _ in range(3):
            start = time.perf_counter()
            metadata = training.run(config)
            steps.append(time.perf_counter() - start)
            calibrations.append(metadata["calibration"]["seconds"])
        ticks = tick_estimates(config, {k: v[window] for k, v in columns.items() if k != TARGET})
    emit({"seconds": statistics.median(estimates), "floor": statistics.median(floors),
          "calibration": statistics.median(calibrations),
          "training": statistics.median(s - c for s, c in zip(steps, calibrations, strict=True)),
          "tick": statistics.median(ticks)})


def tick_estimates(config, window: dict) -> list[float]:
    """What the estimate adds to a tick, as the drift check runs it on an unlabelled window (all of
    riskcore.ops.drift_check.estimate_window: the model's log-odds, the calibrated probabilities, the estimate, and
    the ledger's rows of the window written): five times, each a new run."""
    import pandas as pd

    import deployment
    import scoring
    from riskcore.contract import TARGET
    from riskcore.ops.drift_check import estimate_window
    from riskcore.ops.evidence_window import by_client
    from riskcore.ops.run_record import Run
    from riskcore.release.load import current_deployment, load_deployed_model

    scoring.run(config)
    deployment.deploy(config)
    served = current_deployment(config.prod_deployment_folder)
    model = load_deployed_model(served)
    rows = pd.DataFrame(window).assign(**{TARGET: float("nan")})
    clients = by_client(rows)
    seconds = []
    for _ in range(5):
        start = time.perf_counter()
        estimate_window(config, Run(), served, model, clients, rows.iloc[:0])
        seconds.append(time.perf_counter() - start)
    return seconds


TASKS = {
    "clients": task_clients,
    "project": task_project,
    "risk-list": task_risk_list,
    "earlier-ranking": task_earlier_ranking,
    "write-bytes": task_write_bytes,
    "read-csv": task_read_csv,
    "drift-test": task_drift_test,
    "estimate": task_estimate,
    "ingest": task_ingest,
    "postgres": task_postgres,
    "db-table": task_db_table,
    "db-project": task_db_project,
    "db-select": task_db_select,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="task", required=True)
    clients = sub.add_parser("clients", help="write generated client CSVs")
    clients.add_argument("files", nargs="+", metavar="SEED=PATH")
    clients.add_argument("--rows", type=int, required=True)
    clients.add_argument("--regime", default="source")
    clients.add_argument("--duplicates", type=float, default=0.0)
    project = sub.add_parser("project", help="build the deployed project the benchmarks share")
    project.add_argument("--dir", required=True)
    project.add_argument("--clients", type=int, required=True, help="new-market clients in sourcedata")
    project.add_argument("--practice", type=int, required=True, help="old-market clients in practicedata")
    project.add_argument("--seed", type=int, required=True)
    project.add_argument("--pip-timeout", type=float, default=0.5)
    risk = sub.add_parser("risk-list", help="time the risk list of a client file")
    risk.add_argument("--config", required=True)
    risk.add_argument("--clients", required=True)
    risk.add_argument("--no-reasons", action="store_true", help="leave the reason columns empty")
    earlier = sub.add_parser("earlier-ranking", help="keep an earlier run's ranking for the risk list to compare with")
    earlier.add_argument("--config", required=True)
    earlier.add_argument("--clients", required=True)
    earlier.add_argument("--seed", type=int, required=True)
    write = sub.add_parser("write-bytes", help="time writing and fsyncing a file of a given size")
    write.add_argument("--path", required=True)
    write.add_argument("--bytes", type=int, required=True)
    read = sub.add_parser("read-csv", help="time pandas.read_csv of files")
    read.add_argument("files", nargs="+")
    ingest = sub.add_parser("ingest", help="time ingestion.run")
    ingest.add_argument("--config", required=True)
    postgres = sub.add_parser("postgres", help="start or stop a throwaway PostgreSQL server")
    postgres.add_argument("action", choices=("start", "stop"))
    postgres.add_argument("--folder", help="stop: the cluster's folder")
    postgres.add_argument("--port", type=int, help="stop: the server's port")
    postgres.add_argument("--run-as", default="", help="stop: the user the server runs as")
    table = sub.add_parser("db-table", help="load a client CSV into a PostgreSQL table")
    table.add_argument("--url", required=True)
    table.add_argument("--table", required=True)
    table.add_argument("--clients", required=True)
    db_project = sub.add_parser("db-project", help="deployed projects reading SQLite and PostgreSQL tables")
    db_project.add_argument("--dir", required=True)
    db_project.add_argument("--url", required=True, help="the PostgreSQL database (no password: PGPASSWORD)")
    db_project.add_argument("--rows", type=int, required=True)
    db_project.add_argument("--seed", type=int, required=True)
    drift = sub.add_parser("drift-test", help="time the significance test on a window of rows")
    drift.add_argument("--rows", type=int, required=True)
    estimate = sub.add_parser("estimate", help="time the window estimate and the calibrator's fit")
    estimate.add_argument("--rows", type=int, required=True)
    select = sub.add_parser("db-select", help="print the query ingestion reads a configured table with")
    select.add_argument("--config", required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    TASKS[args.task](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
