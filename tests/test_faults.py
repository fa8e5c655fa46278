"""Issue 21: nothing hangs, nothing is silently lost, under the faults that happen in production.

Waits are bounded (database timeouts and keepalives, the tick's deadline, a stuck run's lock
reported with its age), training is bounded, late rows are ingested once, the table snapshot is
deployed with the records, a mass deletion is held back, and the operator's state survives the
operator. PostgreSQL cases run on a real throwaway server (tests/pg.py) and interruptions are real
kills; both are marked slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_database import CREATE_PG, FIRST, Reports, database_config, pg_values

from conftest import ROOT, client_rows, one_sentence, run_script, tree_snapshot
from riskcore.config import load_config
from riskcore.contract import EXIT_FAILED, ConfigError, DataError
from riskcore.data.db_changes import new_data, recorded_hashes
from riskcore.data.db_connection import DatabaseError, connect, conninfo
from riskcore.data.db_setting import parse_input_database
from riskcore.faults import KILL_AT_ENV
from riskcore.ops import tick
from riskcore.ops.deadline import run_deadline
from riskcore.ops.history import read_history
from riskcore.ops.run_record import history_path, step
from riskcore.release.load import require_deployment
from riskcore.release.operator_state import (
    CONTROL_FILE,
    JOURNAL_FILE,
    JOURNAL_KEEP,
    JOURNAL_MAX_BYTES,
    JOURNAL_MAX_LINES,
    append_journal,
    compact_journal,
    locked_journal,
    read_control,
    write_control,
)


def pg_source(server, database: str, **settings):
    return parse_input_database({"url": server.url(database), "table": "clients", "watermark_column": "updated_at",
                                 **settings}, Path("/"), "config.json")


def hold_lock(server, database: str, seconds: int) -> subprocess.Popen:
    """Another session: LOCK TABLE clients IN ACCESS EXCLUSIVE MODE, then pg_sleep, in one open transaction."""
    holder = subprocess.Popen([str(server.bin / "psql"), "-X", "-q", "-d", server.url(database)], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                              env={**os.environ, **server.client_env()})
    holder.stdin.write(f"BEGIN; LOCK TABLE clients IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({seconds});\n")
    holder.stdin.flush()
    for _ in range(100):  # until the server shows the lock granted
        done = server.psql("SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND granted "
                           "AND relation = 'clients'::regclass;", database, check=False)
        if done.returncode == 0:
            shown = server.psql("\\t on\nSELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                "WHERE c.relname = 'clients' AND l.mode = 'AccessExclusiveLock' AND l.granted;",
                                database, check=False).stdout.strip()
            if shown == "1":
                return holder
        time.sleep(0.1)
    holder.kill()
    raise AssertionError("the other session never got its lock")


# --- 1. Every wait is bounded -------------------------------------------------------------------
def test_database_waits_are_configurable_with_defaults_well_under_the_cron_interval(tmp_path: Path):
    source = parse_input_database({"url": "postgresql://risk@db/crm", "table": "clients"}, tmp_path, "c.json")
    assert (source.statement_timeout_seconds, source.lock_timeout_seconds, source.keepalive_seconds) == (120, 30, 30)
    url = conninfo(source)
    for part in ("keepalives=1", "keepalives_idle=30", "keepalives_interval=30", "keepalives_count=3",
                 "tcp_user_timeout=120000", "connect_timeout=10"):
        assert part in url
    given = parse_input_database({"url": "postgresql://risk@db/crm?keepalives_idle=5", "table": "clients",
                                  "keepalive_seconds": 9}, tmp_path, "c.json")
    assert "keepalives_idle=5" in conninfo(given) and "keepalives_idle=9" not in conninfo(given)


def test_within_a_run_the_database_waits_are_cut_to_the_time_left(tmp_path: Path):
    from riskcore.data.db_connection import session_waits

    source = parse_input_database({"url": "postgresql://risk@db/crm", "table": "clients"}, tmp_path, "c.json")
    alone = session_waits(source)  # a command run by hand: no deadline
    assert (alone.statement, alone.lock, alone.statement_cut, alone.lock_cut) == (120, 30, False, False)
    with run_deadline(60):
        waits = session_waits(source)
    assert 59 < waits.statement <= 60 and waits.lock == 30 and (waits.statement_cut, waits.lock_cut) == (True, False)
    assert waits.statement_reason() == ("a query was still running at the run's time limit of 60 s "
                                        "(automation.max_run_seconds) and was cancelled; nothing was read")
    assert waits.lock_reason().endswith("within 30 s (input_database.lock_timeout_seconds); nothing was read")
    with run_deadline(10):
        assert session_waits(source).lock_reason().endswith(
            "did not clear before the run's time limit of 10 s (automation.max_run_seconds); nothing was read")


@pytest.mark.parametrize("key, value", [("lock_timeout_seconds", 0), ("statement_timeout_seconds", -1),
                                        ("keepalive_seconds", 1e9), ("statement_timeout_seconds", "60"),
                                        ("watermark_lookback_seconds", -5), ("max_deleted_share", 1.5)])
def test_bad_wait_settings_are_one_sentence_naming_the_key(tmp_path: Path, key, value):
    with pytest.raises(ConfigError, match=f'"input_database.{key}"') as caught:
        parse_input_database({"url": "postgresql://db/crm", "table": "clients", key: value}, tmp_path, "c.json")
    one_sentence(str(caught.value))


@pytest.mark.slow
def test_postgres_sessions_carry_the_statement_and_lock_timeouts_and_tcp_keepalives(pg_env, pg_database):
    import shutil

    from conftest import system_missing

    if shutil.which("ss") is None:
        system_missing("ss (iproute2) is not installed: make system-test-deps installs it")
    pg_env.psql(CREATE_PG, pg_database)
    with connect(pg_source(pg_env, pg_database, statement_timeout_seconds=7, lock_timeout_seconds=3)) as connection:
        [row] = connection.rows("SELECT current_setting('statement_timeout') AS statement, "
                                "current_setting('lock_timeout') AS lock, application_name AS name "
                                "FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        # The kernel's view of this process's socket to the server: a keepalive timer runs on it (ss -o).
        sockets = subprocess.run(["ss", "-tnpo", "state", "established", f"dport = :{pg_env.port}"],
                                 capture_output=True, text=True, check=True).stdout.splitlines()
    assert row == {"statement": "7s", "lock": "3s", "name": "dynamic-risk-assessment"}  # our conninfo was used
    [ours] = [line for line in sockets if f"pid={os.getpid()}," in line]
    assert "timer:(keepalive," in ours


@pytest.mark.slow
def test_a_lock_held_by_another_session_ends_the_wait_with_one_sentence(pg_env, pg_database):
    server = pg_env
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(FIRST, '2024-01-01Z')};", pg_database)
    holder = hold_lock(server, pg_database, 60)
    try:
        start = time.monotonic()
        with pytest.raises(DatabaseError) as caught:
            new_data(pg_source(server, pg_database, lock_timeout_seconds=2), None)
        waited = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    assert 1.5 < waited < 10
    assert str(caught.value) == (
        f'Cannot read table "clients" (PostgreSQL at 127.0.0.1:{server.port}, database {pg_database}): another '
        "session holds a lock on the table that did not clear within 2 s (input_database.lock_timeout_seconds); "
        "nothing was read.")


@pytest.mark.slow
def test_a_statement_running_too_long_is_cancelled_with_one_sentence(pg_env, pg_database):
    server = pg_env
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(FIRST[:5], '2024-01-01Z')};"
                "CREATE VIEW slow AS SELECT c.* FROM clients c, LATERAL (SELECT pg_sleep(30)) s;", pg_database)
    source = parse_input_database({"url": server.url(pg_database), "table": "slow", "statement_timeout_seconds": 2},
                                  Path("/"), "config.json")
    start = time.monotonic()
    with pytest.raises(DatabaseError, match=r"a query ran longer than 2 s \(input_database.statement_timeout_seconds\)"):
        new_data(source, None)
    assert time.monotonic() - start < 10


@pytest.mark.slow
def test_a_locked_table_stops_the_cron_tick_with_exit_1_and_production_unchanged(pg_env, pg_database, tmp_path):
    server = pg_env
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(FIRST, '2024-01-01Z')};", pg_database)
    config = load_config(database_config(tmp_path, {"url": server.url(pg_database), "table": "clients",
                                                    "watermark_column": "updated_at", "lock_timeout_seconds": 2}))
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "testdata.csv").write_text("corporation,lastmonth_activity,lastyear_activity,"
                                                    "number_of_employees,exited\n" + "\n".join(client_rows(60, 3, prefix="t")))
    assert tick.tick(config, Reports()) == 0
    before = tree_snapshot(config.prod_deployment_folder)
    holder = hold_lock(server, pg_database, 120)
    try:
        start = time.monotonic()
        done = run_script("fullprocess.py", "--config", str(config.config_file), cwd=tmp_path,
                          env=server.client_env(), timeout=60)
        took = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == EXIT_FAILED and took < 30, done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(
        "did not clear within 2 s (input_database.lock_timeout_seconds); nothing was read.")
    assert tree_snapshot(config.prod_deployment_folder) == before


SLOW_TABLE = ("ALTER TABLE clients RENAME TO clients_data; CREATE FUNCTION slow() RETURNS boolean AS "
              "$$ SELECT pg_sleep(0.3) IS NULL $$ LANGUAGE sql VOLATILE; "
              "CREATE VIEW clients AS SELECT c.* FROM clients_data c WHERE slow() IS NOT NULL;")  # 0.3 s a row


@pytest.mark.slow
def test_a_slow_table_read_stops_at_the_runs_deadline_with_exit_1_and_production_unchanged(pg_env, pg_database,
                                                                                             tmp_path):
    """The deadline's alarm cannot cut the database driver's C code short: a tick limited to 5 s read this table
    (220 rows, 66 s) to its end and exited 0. The session's timeouts are now cut to the time left."""
    from test_database import table_project

    server = pg_env
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(FIRST, '2024-01-01Z')};", pg_database)
    config = table_project(tmp_path, server.url(pg_database))
    assert tick.tick(config, Reports()) == 0
    before = tree_snapshot(config.prod_deployment_folder)
    server.psql(SLOW_TABLE, pg_database)
    raw = json.loads(config.config_file.read_text())
    raw.setdefault("automation", {})["max_run_seconds"] = 5  # the statement timeout stays at its 120 s
    config.config_file.write_text(json.dumps(raw))
    start = time.monotonic()
    done = run_script("fullprocess.py", "--config", str(config.config_file), cwd=tmp_path, env=server.client_env(),
                      timeout=200)
    took = time.monotonic() - start
    assert done.returncode == EXIT_FAILED and took < 20, (took, done.stderr)
    assert done.stderr.strip().splitlines()[-1].endswith(
        "a query was still running at the run's time limit of 5 s (automation.max_run_seconds) and was cancelled; "
        "nothing was read.")
    assert tree_snapshot(config.prod_deployment_folder) == before


def slow_drift_check(seconds: float):
    from riskcore.ops import run

    check = run.check_drift

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return check(*args, **kwargs)
    return slow


@pytest.mark.slow  # 1-2.6 s: in make test, out of make test-fast's minute
def test_a_run_past_its_deadline_stops_in_its_step_with_production_unchanged(deployed, monkeypatch):
    from riskcore.ops import run

    (deployed.input_folder / "late.csv").write_text(
        "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"
        + "\n".join(client_rows(80, seed=7, flip=True)) + "\n")
    before = tree_snapshot(deployed.prod_deployment_folder)
    monkeypatch.setattr(run, "check_drift", slow_drift_check(30))
    done = Reports()
    start = time.monotonic()
    with run_deadline(1):
        status = tick.tick(deployed, done)
    assert time.monotonic() - start < 10
    assert status == EXIT_FAILED and done.calls == []
    row = read_history(history_path(deployed))[-1]
    assert row["outcome"] == "failed"
    assert row["error"] == ("step drift_check failed: the run reached its time limit of 1 s "
                            "(automation.max_run_seconds) and stopped before finishing")
    assert tree_snapshot(deployed.prod_deployment_folder) == before


@pytest.mark.slow  # 1-2.6 s: in make test, out of make test-fast's minute
def test_the_deadline_never_cuts_a_deployment_short(deployed, monkeypatch):
    from riskcore.ops import run

    (deployed.input_folder / "flipped.csv").write_text(
        "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"
        + "\n".join(client_rows(200, seed=9, flip=True)) + "\n")
    deploy = run.deploy

    def slow_deploy(config):
        time.sleep(2.5)  # the alarm rings in here, and waits
        return deploy(config)

    def reports(config, run_):  # as the real reports: steps, the first of which finds the deadline passed
        with step(run_, "diagnostics"):
            raise AssertionError("a step began after the deadline")

    monkeypatch.setattr(run, "deploy", slow_deploy)
    before = require_deployment(deployed.prod_deployment_folder)
    with run_deadline(2):
        status = tick.tick(deployed, reports)
    after = require_deployment(deployed.prod_deployment_folder)
    row = read_history(history_path(deployed))[-1]
    assert status == EXIT_FAILED and row["decision"] == "retrain" and after.release != before.release
    assert row["version_after"] == after.model_version and row["step_seconds"]["deployment"] >= 2.5
    assert row["error"] == ("step diagnostics failed: the run reached its time limit of 2 s "
                            "(automation.max_run_seconds) and stopped before finishing")


STUCK = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from riskcore.ops.lock import exclusive_lock
with exclusive_lock(Path({prod!r})) as held:
    print(held, flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_a_stuck_run_holding_the_lock_is_reported_with_its_age_then_a_killed_one_frees_it(deployed, tmp_path):
    raw = json.loads(deployed.config_file.read_text())
    raw["automation"] = {"max_run_seconds": 2}
    deployed.config_file.write_text(json.dumps(raw))
    stuck = subprocess.Popen([sys.executable, "-c", STUCK.format(root=str(ROOT),
                                                                 prod=str(deployed.prod_deployment_folder))],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert stuck.stdout.readline().strip() == "True"
        young = run_script("fullprocess.py", "--config", str(deployed.config_file), cwd=tmp_path)
        assert young.returncode == 0 and f"another fullprocess run is in progress (process {stuck.pid}, started" in young.stderr
        time.sleep(3)
        old = run_script("fullprocess.py", "--config", str(deployed.config_file), cwd=tmp_path)
    finally:
        stuck.send_signal(signal.SIGKILL)
        stuck.wait()
    assert old.returncode == EXIT_FAILED
    [line] = old.stderr.strip().splitlines()
    assert line.startswith(f"error: Process {stuck.pid} (") and "longer than automation.max_run_seconds (2 s)" in line
    freed = run_script("fullprocess.py", "--config", str(deployed.config_file), cwd=tmp_path)
    assert freed.returncode == 0 and "nothing to do" in freed.stderr


# --- 3. Training is bounded -----------------------------------------------------------------------
@pytest.mark.parametrize("settings, key", [('"C": 1e300', "model.C"), ('"C": 1e-300', "model.C"),
                                           ('"intercept_scaling": 1e300', "model.intercept_scaling"),
                                           ('"class_weight": {"0": 1e308, "1": 1e308}', "model.class_weight.0")])
def test_settings_that_make_the_solver_spin_are_refused_at_load(project: Path, settings, key):
    from test_model_settings import with_model

    with pytest.raises(ConfigError) as caught:
        load_config(with_model(project, settings))
    assert f'"{key}"' in str(caught.value) and "from 1e-06 to 1e+06" in str(caught.value)


@pytest.mark.slow  # training's child process spins until it is killed, 2 s later
def test_training_that_does_not_finish_in_time_is_stopped_with_one_sentence(config):
    import ingestion
    from riskcore.model import time_limit, training

    ingestion.run(config)
    spinning = config.replace(model={**config.model, "C": 1e300},
                              automation={**config.automation, "max_train_seconds": 2})
    monkey_free = training.check_settings
    training.check_settings = lambda _config: None  # the load-time range check is what normally refuses it
    try:
        start = time.monotonic()
        with pytest.raises(time_limit.TrainingTimedOut) as caught:
            training.train(spinning)
    finally:
        training.check_settings = monkey_free
    assert time.monotonic() - start < 15
    assert str(caught.value) == ("Training stopped after 2 s (automation.max_train_seconds): the solver did not "
                                 "finish with these model settings, so no model was written.")
    assert not config.model_file.exists()


@pytest.mark.slow  # training's child process spins until it is killed, 2 s later
def test_a_tick_whose_training_does_not_finish_in_time_exits_1_with_production_unchanged(deployed, monkeypatch):
    """Through the tick, as cron runs it: the issue's spinning retrain held the run (and its lock) and every later
    tick exited 0. Now the retrain stops at automation.max_train_seconds, the run fails in one sentence, exit 1."""
    from conftest import write_csv
    from riskcore.model import training

    write_csv(deployed.input_folder / "flipped.csv", client_rows(200, seed=9, flip=True))  # model drift: retrain
    spinning = deployed.replace(model={**deployed.model, "C": 1e300},
                                automation={**deployed.automation, "max_train_seconds": 2})
    monkeypatch.setattr(training, "check_settings", lambda _config: None)  # what refuses C 1e300 at load
    before = tree_snapshot(deployed.prod_deployment_folder)
    start = time.monotonic()
    assert tick.tick(spinning, Reports()) == EXIT_FAILED
    assert time.monotonic() - start < 30
    row = read_history(history_path(deployed))[-1]
    assert (row["decision"], row["outcome"]) == ("retrain", "failed")
    assert row["error"] == ("step training failed: Training stopped after 2 s (automation.max_train_seconds): the "
                            "solver did not finish with these model settings, so no model was written.")
    assert tree_snapshot(deployed.prod_deployment_folder) == before


SPINNING_UNDER_LOCK = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
import numpy as np
from riskcore.model.training import fit_within
from riskcore.ops.lock import exclusive_lock
with exclusive_lock(Path({prod!r})) as held:
    print(held, flush=True)
    fit_within({{"C": 1e300, "solver": "liblinear"}}, np.array([[0.0, 0, 0], [1, 2, 3], [2, 1, 0], [3, 3, 3]]),
               np.array([0, 1, 0, 1]), 600)
"""


def lock_free(prod: Path) -> bool:
    from riskcore.ops.lock import exclusive_lock

    with exclusive_lock(prod) as held:
        return held


def gone(pid: int) -> bool:
    """Whether process `pid` has ended (a zombie not reaped yet counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("Z", "X")
    except OSError:
        return True


@pytest.mark.slow  # the solver spins in the child until its killed parent takes it along
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_a_spinning_training_child_dies_with_its_killed_parent_and_frees_the_run_lock(tmp_path):
    prod, child = tmp_path / "production_deployment", None
    parent = subprocess.Popen([sys.executable, "-c", SPINNING_UNDER_LOCK.format(root=str(ROOT), prod=str(prod))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "True"
        children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
        for _ in range(100):  # until the training child is forked
            if children.read_text().split():
                break
            time.sleep(0.05)
        [child] = map(int, children.read_text().split())
        time.sleep(0.5)
        assert not gone(child)  # still spinning
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        for _ in range(100):  # the kernel ends the child's threads one by one; the lock goes with the last
            if gone(child) and lock_free(prod):
                break
            time.sleep(0.05)
        assert gone(child) and lock_free(prod)
    finally:
        parent.kill()
        parent.wait()
        if child is not None and not gone(child):  # the test failed: leave no solver spinning
            os.kill(child, signal.SIGKILL)


# --- 6. The operator's state survives the operator --------------------------------------------------
def handed_over_and_pinned(deployed):
    """The course's flow: practice deployed, production takes over (the one handover) and pins its release."""
    from test_operations import deploy_all, second_setup

    import deployment

    production = second_setup(deployed, "production")
    deploy_all(production)
    deployment.run(production, action="pin")
    return deployed, production


@pytest.mark.parametrize("damage", ["removed", "truncated"])
def test_a_lost_control_record_is_restored_from_its_journal(deployed, damage):
    import deployment
    from riskcore.release.operator_state import CONTROL_FILE, read_control

    practice, production = handed_over_and_pinned(deployed)
    prod = production.prod_deployment_folder
    before = read_control(prod)
    path = prod / CONTROL_FILE
    if damage == "removed":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:40])
    assert read_control(prod) == before
    with pytest.raises(ConfigError, match="run with --take-over"):  # no second free handover
        deployment.run(practice)
    with pytest.raises(DataError, match="is pinned"):
        deployment.run(production, action="rollback")


@pytest.mark.parametrize("damage", ["unreadable", "removed"])  # removed: both files deleted by hand
def test_without_a_journal_the_record_is_rebuilt_from_the_manifests_and_the_history(deployed, damage):
    import deployment
    from riskcore.release.operator_state import CONTROL_FILE, JOURNAL_FILE, read_control

    practice, production = handed_over_and_pinned(deployed)
    prod = production.prod_deployment_folder
    pinned = read_control(prod)["pinned"]
    (prod / JOURNAL_FILE).unlink()
    if damage == "removed":
        (prod / CONTROL_FILE).unlink()
    else:
        (prod / CONTROL_FILE).write_text("{\"owner\": ", encoding="utf-8")
    rebuilt = read_control(prod)
    assert rebuilt["owner"]["config_file"] == str(production.config_file)
    assert rebuilt["pinned"]["release"] == pinned["release"] and rebuilt["pinned"]["by"] == pinned["by"]
    with pytest.raises(ConfigError, match="run with --take-over"):  # the practice setup does not take over
        deployment.run(practice)
    assert require_deployment(prod).release == pinned["release"]


@pytest.mark.parametrize("damage", ["control removed", "control and journal removed"])
def test_a_rollback_survives_a_lost_control_record_and_the_next_ticks(deployed, damage):
    """The issue's walk: with control.json gone, the next tick redid a rollback. Restored from the journal, or rebuilt
    from the manifests and the history, the rollback stands: ticks with nothing new and with new rows of the same
    market serve the model rolled back to."""
    import deployment
    from conftest import write_csv
    from riskcore.release.operator_state import CONTROL_FILE, JOURNAL_FILE, read_control

    prod = deployed.prod_deployment_folder
    first = require_deployment(prod).model_version
    write_csv(deployed.input_folder / "flipped.csv", client_rows(200, seed=9, flip=True))
    assert tick.tick(deployed, Reports()) == 0 and require_deployment(prod).model_version != first  # retrained
    back = deployment.run(deployed, action="rollback")
    assert back.model_version == first
    rolled = read_control(prod)["rollbacks"]
    assert rolled and rolled[-1]["to_model"] == back.model_version
    (prod / CONTROL_FILE).unlink()
    if damage == "control and journal removed":
        (prod / JOURNAL_FILE).unlink()
    assert [(r["from_model"], r["to_model"]) for r in read_control(prod)["rollbacks"]] == \
        [(r["from_model"], r["to_model"]) for r in rolled]
    assert tick.tick(deployed, Reports()) == 0  # nothing new
    assert require_deployment(prod).model_version == back.model_version
    write_csv(deployed.input_folder / "later.csv", client_rows(60, seed=12, noise=0.0))
    assert tick.tick(deployed, Reports()) == 0  # new rows the served model gets right: kept
    assert read_history(history_path(deployed))[-1]["decision"] == "keep"
    assert require_deployment(prod).model_version == back.model_version


def pin_states(count: int, acknowledged: int = 0) -> list[dict]:
    """`count` control states, each pinning release r<number> (with `acknowledged` made-up files each)."""
    return [{"owner": None, "owners": [], "rollbacks": [], "pinned": {"release": f"r{n}", "at": "t", "by": "op"},
             "acknowledged": {f"file{n}-{i}.csv": "0" * 64 for i in range(acknowledged)}} for n in range(count)]


def journal_lines(prod: Path) -> list[dict]:

    return [json.loads(line) for line in (prod / JOURNAL_FILE).read_text(encoding="ascii").splitlines()]


@pytest.mark.parametrize("bound", ["lines", "bytes"])
def test_a_journal_past_its_bound_is_compacted_to_its_newest_states_which_restore_the_record(tmp_path, bound):

    prod = tmp_path / "prod"
    prod.mkdir()
    states = pin_states(JOURNAL_MAX_LINES + 1) if bound == "lines" else pin_states(40, acknowledged=400)
    for state in states[:-1]:
        append_journal(prod, state)
    size = (prod / JOURNAL_FILE).stat().st_size
    assert size > JOURNAL_MAX_BYTES if bound == "bytes" else size < JOURNAL_MAX_BYTES  # the bound under test
    write_control(prod, states[-1])
    kept = journal_lines(prod)
    assert kept == states[-len(kept):] and 1 <= len(kept) <= JOURNAL_KEEP  # the newest states, oldest first
    assert (prod / JOURNAL_FILE).stat().st_size <= JOURNAL_MAX_BYTES // 2
    assert not list(prod.glob(f".{JOURNAL_FILE}.*"))
    (prod / CONTROL_FILE).unlink()
    assert read_control(prod)["pinned"]["release"] == states[-1]["pinned"]["release"]


def test_a_journal_within_its_bounds_is_left_as_it_is(tmp_path):

    states = pin_states(JOURNAL_MAX_LINES)
    for state in states:
        write_control(tmp_path, state)
    assert journal_lines(tmp_path) == states


def test_a_line_cut_short_by_a_crash_is_skipped_and_the_next_state_kept_whole(tmp_path):

    first, second = pin_states(2)
    write_control(tmp_path, first)
    with open(tmp_path / JOURNAL_FILE, "ab") as journal:
        journal.write(b'{"owner": null, "pinn')  # the write a crash cut short: no line end
    write_control(tmp_path, second)
    (tmp_path / CONTROL_FILE).unlink()
    assert read_control(tmp_path)["pinned"]["release"] == "r1"


COMPACT = """
import json, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from riskcore.release.operator_state import write_control
write_control(Path({prod!r}), json.loads({state!r}))
"""


@pytest.mark.slow  # a subprocess, killed
def test_a_compaction_killed_before_its_rename_leaves_the_whole_journal_usable(tmp_path):

    states = pin_states(JOURNAL_MAX_LINES + 2)
    for state in states[:-2]:
        append_journal(tmp_path, state)
    killed = subprocess.run([sys.executable, "-c", COMPACT.format(root=str(ROOT), prod=str(tmp_path),
                                                                  state=json.dumps(states[-2]))],
                            env={**os.environ, KILL_AT_ENV: "journal-compaction-written"}, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert journal_lines(tmp_path) == states[:-1]  # every state, the one being written last
    assert list(tmp_path.glob(f".{JOURNAL_FILE}.*"))  # the compacted copy that was never renamed
    assert read_control(tmp_path)["pinned"]["release"] == states[-2]["pinned"]["release"]  # restored from it
    write_control(tmp_path, states[-1])  # the next write compacts, and clears the leftover
    assert journal_lines(tmp_path)[-1] == states[-1] and not list(tmp_path.glob(f".{JOURNAL_FILE}.*"))
    (tmp_path / CONTROL_FILE).unlink()
    assert read_control(tmp_path)["pinned"]["release"] == states[-1]["pinned"]["release"]


def test_an_append_waiting_for_a_compaction_lands_in_the_compacted_journal(tmp_path):

    states = pin_states(JOURNAL_MAX_LINES + 2)
    for state in states[:-1]:
        append_journal(tmp_path, state)
    with locked_journal(tmp_path) as fd:  # a compaction under way holds the journal
        waiting = threading.Thread(target=append_journal, args=(tmp_path, states[-1]))
        waiting.start()
        time.sleep(0.3)
        assert waiting.is_alive()  # the append waits for the journal's lock
        assert compact_journal(tmp_path, fd)
    waiting.join(10)
    assert journal_lines(tmp_path)[-2:] == states[-2:]  # not lost in the replaced file


@pytest.mark.slow
def test_a_rollback_while_pinned_is_refused_with_one_sentence(deployed, tmp_path):
    from test_operations import deploy_all

    import deployment
    from conftest import write_csv

    write_csv(deployed.input_folder / "more.csv", client_rows(80, seed=8))
    deploy_all(deployed)
    pinned = deployment.run(deployed, action="pin")
    done = run_script("deployment.py", "--config", str(deployed.config_file), "--rollback", cwd=tmp_path)
    assert done.returncode == EXIT_FAILED
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: Release {pinned.release} is pinned (by ") and "deployment.py --unpin" in line
    assert require_deployment(deployed.prod_deployment_folder).release == pinned.release


def test_repair_skips_unreadable_releases_and_names_them(deployed, caplog):
    from test_operations import deploy_all

    import deployment
    from conftest import write_csv
    from riskcore.contract import CURRENT_LINK, MANIFEST, RELEASES_DIR

    first = require_deployment(deployed.prod_deployment_folder)
    write_csv(deployed.input_folder / "more.csv", client_rows(80, seed=8))
    deploy_all(deployed)
    prod = deployed.prod_deployment_folder
    newest = require_deployment(prod)
    manifest = prod / RELEASES_DIR / newest.release / MANIFEST
    manifest.write_bytes(manifest.read_bytes()[:30])  # truncated deployment.json
    os.unlink(prod / CURRENT_LINK)
    with caplog.at_level("INFO"):
        repaired = deployment.run(deployed, action="repair")
    assert repaired.release == first.release
    assert f"skipping release {newest.release}" in caplog.text
    assert f"skipped the unreadable or damaged release {newest.release}" in caplog.text


# --- 4. State is written where it cannot mislead -----------------------------------------------------
def sqlite_project(tmp_path: Path, watermark: bool = False, **settings):
    from test_database import as_tuples, sqlite_table, table_project

    db = sqlite_table(tmp_path / "crm.sqlite", as_tuples(FIRST), watermark=watermark)
    config = table_project(tmp_path, "sqlite:///crm.sqlite", watermark="updated_at" if watermark else None)
    if settings:
        raw = json.loads(config.config_file.read_text())
        raw["input_database"].update(settings)
        config.config_file.write_text(json.dumps(raw))
        config = load_config(config.config_file)
    return db, config


def flip_labels(db: Path, count: int) -> None:
    from test_database import execute

    execute(db, f"UPDATE clients SET exited = 1 - exited WHERE rowid <= {count}")


def test_the_table_snapshot_is_deployed_with_the_records(tmp_path: Path):
    from riskcore.contract import TABLE_SNAPSHOT

    _, config = sqlite_project(tmp_path)
    assert tick.tick(config, Reports()) == 0
    current = require_deployment(config.prod_deployment_folder)
    assert TABLE_SNAPSHOT in current.manifest["files"]
    assert current.path(TABLE_SNAPSHOT).read_bytes() == (config.output_folder / TABLE_SNAPSHOT).read_bytes()


def test_a_hand_run_ingestion_does_not_change_what_the_next_tick_calls_new(tmp_path: Path):
    import ingestion

    db, config = sqlite_project(tmp_path)
    assert tick.tick(config, Reports()) == 0
    flip_labels(db, 20)
    ingestion.run(config)  # by hand: the output folder's snapshot now holds the flipped rows
    done = Reports()
    assert tick.tick(config, done) == 0
    row = read_history(history_path(config))[-1]
    assert row["rows_new"] == 20 and row["f1_new_data"] == 0.0 and done.calls == ["retrain"]


@pytest.mark.slow
def test_a_run_killed_after_writing_the_snapshot_leaves_the_next_tick_the_same_new_rows(tmp_path: Path):
    db, config = sqlite_project(tmp_path)
    assert tick.tick(config, Reports()) == 0
    flip_labels(db, 20)
    killed = run_script("fullprocess.py", "--config", str(config.config_file), cwd=tmp_path,
                        env={"RISK_KILL_AT": "ingestion-wrote-data"})
    assert killed.returncode == -signal.SIGKILL
    done = Reports()
    tick.tick(config, done)
    row = read_history(history_path(config))[-1]
    assert row["rows_new"] == 20 and row["f1_new_data"] == 0.0 and done.calls == ["retrain"]


@pytest.mark.slow
def test_on_postgresql_a_killed_run_leaves_the_next_tick_the_same_new_rows(pg_env, pg_database, tmp_path: Path):
    """The same interruption on a PostgreSQL table without a watermark column, as the issue walked it: killed after
    writing the snapshot, the next tick still finds the 20 flipped rows new (not none of them) and retrains."""
    from test_database import table_project

    server = pg_env
    server.psql(CREATE_PG + f"INSERT INTO clients VALUES {pg_values(FIRST, '2024-01-01Z')};", pg_database)
    config = table_project(tmp_path, server.url(pg_database), watermark=None)
    assert tick.tick(config, Reports()) == 0
    server.psql("UPDATE clients SET exited = 1 - exited WHERE ctid IN (SELECT ctid FROM clients LIMIT 20);",
                pg_database)
    killed = run_script("fullprocess.py", "--config", str(config.config_file), cwd=tmp_path,
                        env={**server.client_env(), "RISK_KILL_AT": "ingestion-wrote-data"})
    assert killed.returncode == -signal.SIGKILL
    done = Reports()
    tick.tick(config, done)
    row = read_history(history_path(config))[-1]
    assert row["rows_new"] == 20 and row["f1_new_data"] == 0.0 and done.calls == ["retrain"]


def test_deleting_most_of_a_table_is_held_back_until_the_operator_allows_it(tmp_path: Path):
    from test_database import execute

    db, config = sqlite_project(tmp_path, max_deleted_share=0.5)
    assert tick.tick(config, Reports()) == 0
    execute(db, "DELETE FROM clients WHERE rowid > 20")  # 200 of 220 rows gone
    before = tree_snapshot(config.prod_deployment_folder)
    done = Reports()
    assert tick.tick(config, done) == EXIT_FAILED and done.calls == []
    error = read_history(history_path(config))[-1]["error"]
    assert error == (f'step ingestion failed: Nothing was ingested: table "clients" (SQLite file {db}) holds 20 '
                     "rows, 200 fewer than the 220 ingested before (91%, more than input_database.max_deleted_share "
                     "50%), so the rows stay in use (finaldata.csv and the deployment are unchanged); to drop them, "
                     "run python fullprocess.py --allow-removed (or python ingestion.py --allow-removed).")
    assert tree_snapshot(config.prod_deployment_folder) == before
    assert tick.tick(config, done, allow_removed=True) == 0
    record = json.loads((config.prod_deployment_folder / "ingestionrecord.json").read_text())
    assert record["rows_kept"] == 20 and record["removed"][0]["rows"] == 200
    execute(db, "DELETE FROM clients WHERE rowid > 15")  # 5 of 20 rows (25%, under the 50%): ingested
    assert tick.tick(config, done) == 0


# --- 2. Late rows are not lost ------------------------------------------------------------------------
README_SCHEMA = ("CREATE TABLE clients (corporation text, lastmonth_activity bigint, lastyear_activity bigint, "
                 "number_of_employees bigint, exited smallint, updated_at timestamptz NOT NULL DEFAULT now());")


def insert_sql(rows: list[str]) -> str:
    values = ", ".join("('{}', {}, {}, {}, {})".format(*row.split(",")) for row in rows)
    return ("INSERT INTO clients (corporation, lastmonth_activity, lastyear_activity, number_of_employees, exited) "
            f"VALUES {values};")


@pytest.mark.slow
def test_a_row_committed_late_below_the_recorded_watermark_is_ingested_once(pg_env, pg_database, tmp_path):
    from test_database import table_project

    server = pg_env
    server.psql(README_SCHEMA + insert_sql(FIRST), pg_database)
    config = table_project(tmp_path, server.url(pg_database))
    assert tick.tick(config, Reports()) == 0
    [slow_row] = client_rows(1, seed=41, prefix="late")
    [fast_row] = client_rows(1, seed=42, prefix="fast")
    slow = subprocess.Popen([str(server.bin / "psql"), "-X", "-q", "-d", server.url(pg_database)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, **server.client_env()})
    try:
        slow.stdin.write("BEGIN;\n" + insert_sql([slow_row]) + "\n")  # updated_at: this transaction's start
        slow.stdin.flush()
        for _ in range(100):
            waiting = server.psql("\\t on\nSELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction';",
                                  pg_database).stdout.strip()
            if waiting == "1":
                break
            time.sleep(0.1)
        time.sleep(0.2)
        server.psql(insert_sql([fast_row]), pg_database)  # a later watermark, committed first
        done = Reports()
        assert tick.tick(config, done) == 0
        assert read_history(history_path(config))[-1]["rows_new"] == 1  # the fast row alone
        slow.stdin.write("COMMIT;\n")
        slow.stdin.close()
        assert slow.wait(timeout=30) == 0
    finally:
        if slow.poll() is None:
            slow.kill()
    source = pg_source(server, pg_database)
    record = json.loads((config.prod_deployment_folder / "ingestionrecord.json").read_text())
    [found] = new_data(source, record)
    assert found.startswith("clients: 1 new row, 1 of them committed late (below updated_at ")
    assert found.endswith("within the 600 s look-back)")
    assert tick.tick(config, done) == 0
    row = read_history(history_path(config))[-1]
    assert row["rows_new"] == 1 and row["new_files"] == [found]
    before = tree_snapshot(config.prod_deployment_folder)
    assert tick.tick(config, done) == 0  # ingested once: nothing new now
    assert tree_snapshot(config.prod_deployment_folder) == before
    final = (config.final_data_file).read_text()
    assert final.count(slow_row.split(",")[0]) == 1


def test_the_look_back_recognises_rows_already_ingested_by_their_content(tmp_path: Path):
    from test_database import as_tuples, sqlite_source, sqlite_table

    from riskcore.data.db_ingest import read_table

    db = sqlite_table(tmp_path / "crm.sqlite", as_tuples(client_rows(30, seed=1), "2024-01-01 10:00:00"))
    source = sqlite_source(db)
    record = {"database": json.loads(json.dumps(read_table(source, None).record()))}
    assert len(recorded_hashes(record["database"]["state"])) == 30  # every row within 600 s of the max
    assert new_data(source, record) == []
    late = as_tuples(client_rows(2, seed=5), "2024-01-01 09:55:00")  # 5 minutes below: within the look-back
    early = as_tuples(client_rows(1, seed=6), "2024-01-01 09:40:00")  # 20 minutes below: outside it
    sqlite_table(db, late + early)
    assert new_data(source, record) == ["clients: 2 new rows, 2 of them committed late (below updated_at "
                                        "2024-01-01 10:00:00, within the 600 s look-back)"]
    again = read_table(source, record)
    assert again.new["corporation"].to_list() == [row[0] for row in late]


@pytest.mark.parametrize("change", ["a late row for a deleted one", "a row changed in place"])
def test_a_window_with_its_recorded_count_but_other_rows_is_looked_at_row_by_row(tmp_path: Path, change):
    import sqlite3

    from test_database import as_tuples, sqlite_source, sqlite_table

    from riskcore.data.db_ingest import read_table

    db = sqlite_table(tmp_path / "crm.sqlite", as_tuples(client_rows(30, seed=1), "2024-01-01 10:00:00"))
    source = sqlite_source(db)
    record = {"database": json.loads(json.dumps(read_table(source, None).record()))}
    with sqlite3.connect(db) as connection:
        if change == "a row changed in place":
            connection.execute("UPDATE clients SET lastmonth_activity = lastmonth_activity + 1 WHERE rowid = 3")
        else:
            connection.execute("DELETE FROM clients WHERE rowid = 3")
            connection.execute("INSERT INTO clients VALUES (?, ?, ?, ?, ?, ?)",
                               as_tuples(client_rows(1, seed=5), "2024-01-01 09:55:00")[0])
    connection.close()
    assert new_data(source, record) == ["clients: 1 new row, 1 of them committed late (below updated_at "
                                        "2024-01-01 10:00:00, within the 600 s look-back)"]


@pytest.mark.parametrize("newest", ["2024-01-01 10:00:00", "2024-01-01T10:00:00Z"])
def test_the_look_back_of_an_sqlite_date_text_spans_its_seconds_whatever_its_shape(tmp_path: Path, newest):
    from test_database import as_tuples, sqlite_source, sqlite_table

    from riskcore.data.db_ingest import read_table

    def at(hour: str) -> str:
        return newest.replace("10:00:00", hour)

    rows = as_tuples(client_rows(3, seed=1), at("10:00:00")) + as_tuples(client_rows(2, seed=2), at("09:55:00")) \
        + as_tuples(client_rows(4, seed=3), at("09:40:00")) + as_tuples(client_rows(5, seed=4), at("00:00:01"))
    source = sqlite_source(sqlite_table(tmp_path / "crm.sqlite", rows))
    assert len(recorded_hashes(read_table(source, None).record()["state"])) == 5  # the rows of the last 600 s


def test_a_record_from_before_the_hashes_became_one_text_still_recognises_its_rows(tmp_path: Path):
    from test_database import as_tuples, sqlite_source, sqlite_table

    from riskcore.data.db_ingest import read_table

    db = sqlite_table(tmp_path / "crm.sqlite", as_tuples(client_rows(30, seed=1), "2024-01-01 10:00:00"))
    source = sqlite_source(db)
    record = {"database": json.loads(json.dumps(read_table(source, None).record()))}
    state = record["database"]["state"]
    state["recent"] = sorted(state["recent"].split())  # the list such a record holds
    assert new_data(source, record) == []
    sqlite_table(db, as_tuples(client_rows(2, seed=5), "2024-01-01 09:55:00"))
    assert new_data(source, record)[0].startswith("clients: 2 new rows, 2 of them committed late")
    assert read_table(source, record).new.height == 2


def test_a_tick_with_nothing_new_fetches_no_row_of_the_look_back(tmp_path: Path, monkeypatch):
    from test_database import as_tuples, sqlite_source, sqlite_table

    from riskcore.data import db_changes
    from riskcore.data.db_changes import recorded_summary
    from riskcore.data.db_ingest import read_table

    db = sqlite_table(tmp_path / "crm.sqlite", as_tuples(client_rows(30, seed=1), "2024-01-01 10:00:00"))
    source = sqlite_source(db)
    state = read_table(source, None).record()["state"]
    hashes = recorded_hashes(state)
    assert recorded_summary(state) == (30, sum(int(value) for value in hashes))
    record = {"database": json.loads(json.dumps(read_table(source, None).record()))}

    def fetched(*args):
        raise AssertionError("the window's rows were fetched")

    monkeypatch.setattr(db_changes, "window_rows", fetched)
    assert new_data(source, record) == []
