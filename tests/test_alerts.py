"""Alerts (issue 23): the config section, the events of a run, and delivery to a real local SMTP server and
a local HTTP receiver: each alert once, a slow or failed send never fails the tick and is retried."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_faults import STUCK

import deployment
import fullprocess
from conftest import ROOT, client_rows, make_project, one_sentence, run_script, write_csv
from riskcore.config import Config, load_config
from riskcore.contract import ConfigError
from riskcore.files import utc_at
from riskcore.ops import alerts
from riskcore.ops import tick as tick_module
from riskcore.ops.run_record import Run, StepFailed
from riskcore.release.operator_state import read_control


# --- Local receivers ------------------------------------------------------------------------------
# Both serve from threads of this process, so the tests that use them are marked slow (pyproject.toml).
class Receiver:
    """A webhook receiver on a loopback port: keeps each POSTed JSON body; `delay` makes it slow."""

    def __init__(self, port: int = 0) -> None:
        self.bodies: list[dict] = []
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                receiver.bodies.append({"type": self.headers["Content-Type"], **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self) -> list[str]:
        return [body["text"] for body in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """A real SMTP server (aiosmtpd) on a loopback port, keeping each message it gets."""

    def __init__(self, port: int | None = None) -> None:
        from email import message_from_bytes

        from aiosmtpd.controller import Controller

        self.messages: list = []
        mailbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
                mailbox.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
                return "250 OK"

        from conftest import free_port

        self.port = port or free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def subjects(self) -> list[str]:
        return [message["Subject"] for _, message in self.messages]

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture
def receiver():
    served = Receiver()
    yield served
    served.close()


@pytest.fixture
def mailbox():
    served = Mailbox()
    yield served
    served.close()


def with_alerts(config: Config, section: dict) -> Config:
    raw = json.loads(config.config_file.read_text())
    raw["alerts"] = section
    config.config_file.write_text(json.dumps(raw))
    return load_config(config.config_file)


def alerting(config: Config, receiver: Receiver, mailbox: Mailbox) -> Config:
    return with_alerts(config, {"webhook_urls": [receiver.url],
                                "email": {"smtp_host": "127.0.0.1", "smtp_port": mailbox.port, "from": "risk@example.test",
                                          "to": ["ops@example.test"], "starttls": False, "password_file": None},
                                "silence_minutes": 60})


# --- The config section ----------------------------------------------------------------------------
def test_the_alerts_section_of_the_issue_loads(config: Config):
    loaded = with_alerts(config, {"webhook_urls": ["https://hooks.example/x"],
                                  "email": {"smtp_host": "127.0.0.1", "smtp_port": 25, "from": "risk@example.test",
                                            "to": ["ops@example.test"], "starttls": False, "password_file": None},
                                  "silence_minutes": 60})
    assert loaded.alerts["webhook_urls"] == ["https://hooks.example/x"] and loaded.alerts["email"]["smtp_port"] == 25
    assert with_alerts(config, {}).alerts == {"webhook_urls": [], "email": None, "silence_minutes": 60}


@pytest.mark.parametrize(("section", "message"), [
    ({"webhooks": []}, 'Unknown config key "alerts.webhooks"'),
    ({"webhook_urls": "https://hooks.example/x"}, '"alerts.webhook_urls" .* must be a list'),
    ({"webhook_urls": ["ftp://x"]}, "http\\(s\\) URLs only"),
    ({"silence_minutes": "60"}, '"alerts.silence_minutes" .* must be'),
    ({"email": {"to": ["a@b"], "from": "r@b", "smtp_port": "25"}}, '"alerts.email.smtp_port" .* must be an integer'),
    ({"email": {"to": ["a@b"], "from": "r@b", "password": "x"}},
     '"alerts.email.password" .* is refused: the SMTP password comes from alerts.email.password_file'),
    ({"webhook_urls": ["http://u:pw@127.0.0.1:9/hook"]}, "without a user or password"),
    ({"email": {"from": "r@b"}}, "at least one recipient"),
    ({"email": {"to": ["a@b"], "from": "r@b", "starttls": "yes"}}, '"alerts.email.starttls" .* true or false'),
    ({"email": {"to": ["a@b"], "from": "r@b\nBcc: x@y"}}, '"alerts.email.from" .* mail addresses'),
    ({"email": {"to": ["ops"], "from": "r@b"}}, '"alerts.email.to" .* mail addresses'),
])
def test_a_wrong_alerts_section_is_refused_at_load_in_one_sentence(config: Config, section, message):
    with pytest.raises(ConfigError, match=message) as caught:
        with_alerts(config, section)
    one_sentence(str(caught.value))
    assert "pw@" not in str(caught.value)  # a password in a webhook's URL is never repeated


# --- The events of a run ---------------------------------------------------------------------------
@pytest.mark.parametrize(("row", "events"), [
    ({"decision": "retrain", "outcome": "done", "drift_verdict": "F1 0.41 < 0.69 (baseline): model drift",
      "version_before": "a", "version_after": "b"}, ["model_drift", "retrain_deployed"]),
    ({"decision": "keep", "outcome": "done", "drift_verdict": "F1 0.80 >= 0.69 (baseline): no model drift",
      "version_before": "a", "version_after": "a"}, []),
    ({"decision": "keep: the new model did worse on the holdout (automation.promotion_gate)", "outcome": "done",
      "drift_verdict": "F1 0.41 < 0.69 (baseline): model drift", "evaluation": {"promoted": False},
      "version_before": "a", "version_after": "a"}, ["model_drift", "gate_kept_old_model"]),
    ({"decision": "keep", "outcome": "done", "estimated_drift": "estimated F1 0.61 [0.55, 0.66] below 0.80",
      "version_after": "a"}, ["estimated_drop"]),
    ({"decision": "keep", "outcome": "done", "version_after": "a",
      "data_drift": {"features": {"lastmonth_activity": {"drift": True}, "number_of_employees": {"drift": False}}}},
     ["data_drift"]),
    ({"outcome": "failed", "error": "step ingestion failed: dataset1.csv is gone"}, ["ingestion_held_back"]),
    ({"decision": "keep", "outcome": "failed", "error": "step apicalls failed: no API"}, ["run_failed"]),
    ({"decision": "retrain", "outcome": "failed", "error": "step apicalls failed: no API",  # deployed, then failed
      "drift_verdict": "F1 0.41 < 0.69 (baseline): model drift", "version_before": "a", "version_after": "b"},
     ["model_drift", "retrain_deployed", "run_failed"]),
    ({"decision": "retrain", "outcome": "done", "model_drift": False, "version_before": "a", "version_after": "b",
      "drift_verdict": "F1 0.80 >= 0.69 (baseline): no model drift; data drift alone triggers retraining "
                       "(automation.data_drift_triggers_retrain)"}, ["retrain_deployed"]),
    ({"decision": "wait", "outcome": "done", "model_drift": True, "version_before": "a", "version_after": "a",
      "drift_verdict": "F1 0.30 on 220 labelled rows (39 left) against 0.84 ...: a drop of 0.54 (p 0.0001 < 0.05): "
                       "model drift; model drift found, but its holdout would hold 44 rows, fewer than 50"},
     ["model_drift"]),
    ({"decision": "rollback", "outcome": "done", "note": "rolled back from release 2 to 1 by ops"}, ["rollback"]),
    ({"decision": "pin", "outcome": "done", "note": "pinned release 1 by ops"}, ["pin"]),
])
def test_the_events_a_run_calls_for(row, events):
    assert [event for event, _ in alerts.events_of_run(row)] == events


@pytest.mark.parametrize(("row", "title"), [
    ({"decision": "rollback", "note": "rolled back from release 6 to 5 by ops"}, "[risk] Rollback: rolled back"),
    ({"decision": "roll-forward", "note": "rolled forward from release 5 to 6 (the newest rollback undone) by ops"},
     "[risk] Roll forward: rolled forward"),
    ({"decision": "pin", "note": "pinned release 1 by ops"}, "[risk] Pin: pinned"),
    ({"decision": "unpin", "note": "unpinned release 1 by ops"}, "[risk] Unpin: unpinned"),
])
def test_an_operators_undo_is_titled_the_way_it_went(tmp_path, row, title):
    """The walk's webhook got "[risk] Rollback: rolled forward from release 5 to 6": the title read backwards."""
    config = load_config(make_project(tmp_path))
    [(event, detail)] = alerts.events_of_run({"outcome": "done", "version_before": "a", "version_after": "b", **row})
    assert alerts.message_text(event, detail, row, config).startswith(title)


def test_the_gate_keeping_the_old_model_is_said_with_both_models_f1():
    held = {"old": {"f1": 0.0968, "rows": 60}, "new": {"f1": 0.0, "rows": 60}}
    row = {"decision": "kept_by_gate", "outcome": "done", "version_before": "a", "version_after": "a",
           "evaluation": {"promoted": False, "old_model": "a", "new_model": "b", "holdout": held}}
    [(event, said)] = alerts.events_of_run(row)
    assert event == "gate_kept_old_model"
    assert said == ("the new model b does worse than the old model a on the held-out new rows: F1 0.0000 < 0.0968; "
                    "the old model was kept (automation.promotion_gate); model a stays.")


def test_an_estimated_drop_is_said_with_its_interval_rows_and_baseline():
    row = {"decision": "wait", "outcome": "done", "estimated_f1": 0.6123456789, "estimated_f1_interval": [0.55, 0.66],
           "estimated_rows": 3000, "window_labelled": 0, "estimated_baseline": 0.86, "estimated_drift": True}
    [(event, said)] = alerts.events_of_run(row)
    assert event == "estimated_drop"
    assert said.startswith("estimated F1 0.61 [0.55, 0.66] on 3,000 unlabelled clients; own-market baseline 0.86: "
                           "an estimated drop of 0.25")


@pytest.mark.parametrize(("row", "said"), [
    ({"outcome": "done", "version_after": "a",
      "error": "rejected input: broken.csv is missing the column exited (the file stays rejected until it changes)."},
     "rejected input: broken.csv is missing the column exited (the file stays rejected until it changes); the deployed "
     "model is a."),
    ({"outcome": "failed", "error": "step ingestion failed: dataset1.csv is gone."},
     "step ingestion failed: dataset1.csv is gone; production is unchanged."),
])
def test_an_errors_sentence_goes_on_without_a_stray_full_stop(row, said):
    """A run's error is a sentence; the alert continues it ("...; the deployed model is a."), never ".;"."""
    [(_, detail)] = alerts.events_of_run(row)
    assert detail == said


# --- Delivery ---------------------------------------------------------------------------------------
def failing_reports(config: Config, run: Run) -> None:
    raise StepFailed("step apicalls failed: the API did not answer")


@pytest.mark.slow
def test_drift_retrain_rollback_and_a_failed_run_are_each_sent_once_to_the_webhook_and_the_mail(
        deployed: Config, receiver: Receiver, mailbox: Mailbox):
    config = alerting(deployed, receiver, mailbox)
    write_csv(config.input_folder / "flipped.csv", client_rows(200, seed=6, flip=True))
    assert tick_module.tick(config, lambda c, r: None) == 0  # drift -> retrain
    deployment.run(config, action="rollback")
    write_csv(config.input_folder / "more.csv", client_rows(60, seed=12, noise=0.0))
    assert tick_module.tick(config, failing_reports) == 1  # a failed run
    for _ in range(2):  # ticks with nothing new: nothing is sent again
        assert tick_module.tick(config, lambda c, r: None) == 0
    titles = ["Model drift found", "Retrained model deployed", "Rollback", "A run failed"]
    for title in titles:
        assert sum(text.startswith(f"[risk] {title}:") for text in receiver.texts()) == 1, receiver.texts()
        assert mailbox.subjects().count(f"[risk] {title}") == 1, mailbox.subjects()
    assert {body["type"] for body in receiver.bodies} == {"application/json"}
    assert len(receiver.bodies) == len(mailbox.messages)  # the same alerts on both channels
    assert all(rcpt == ["ops@example.test"] for rcpt, _ in mailbox.messages)
    rollback = next(text for text in receiver.texts() if text.startswith("[risk] Rollback:"))
    assert "rolled back from release" in rollback and " by " in rollback
    outbox = alerts.read_outbox(config)
    assert not alerts.pending(outbox)
    assert "secret-token" not in json.dumps(outbox)  # the webhook's path may be a secret: never recorded


@pytest.mark.slow
def test_a_run_finished_again_is_not_announced_twice(deployed: Config, receiver: Receiver, mailbox: Mailbox):
    config = alerting(deployed, receiver, mailbox)
    row = {"run_id": "r1", "decision": "keep", "outcome": "failed", "error": "step reporting failed: disk full"}
    alerts.note_run(config, row)
    alerts.note_run(config, row)  # the same run recorded again (a killed run finished by the next tick)
    assert len(receiver.bodies) == 1 and len(mailbox.messages) == 1


@pytest.mark.slow
def test_a_failure_that_stays_is_announced_once_until_a_tick_succeeds(deployed: Config, receiver: Receiver,
                                                                     caplog):
    # The walk: a table held back by a bad row sent the same "Ingestion held back" by webhook and mail every tick.
    caplog.set_level("INFO")
    config = with_alerts(deployed, {"webhook_urls": [receiver.url]})
    ingested = config.input_folder / "dataset1.csv"
    good = ingested.read_bytes()
    ingested.write_text(good.decode().splitlines()[0] + "\nabcd,x,1,1,0\n")
    for _ in range(3):
        assert tick_module.tick(config, lambda c, r: None) == 1
    assert [text.split(":")[0] for text in receiver.texts()] == ["[risk] Ingestion held back"]
    assert re.search(r"run without reports failed: no decision, model \S+ -> \S+", caplog.text)  # no number taken
    ingested.write_bytes(good)
    assert tick_module.tick(config, lambda c, r: None) == 0  # a tick that went well
    ingested.write_text(good.decode().splitlines()[0] + "\nabcd,x,1,1,0\n")
    assert tick_module.tick(config, lambda c, r: None) == 1
    assert len(receiver.texts()) == 2  # the same failure again, after a success: announced again


@pytest.mark.slow  # fullprocess.py in its own processes, one killed
@pytest.mark.parametrize("point", ["after-deployment", "after-reporting", "run-recorded"])
def test_a_run_killed_then_finished_by_the_next_tick_announces_its_drift_and_retrain_once(
        deployed: Config, receiver: Receiver, mailbox: Mailbox, api_url: str, tmp_path: Path, point: str):
    """A retraining run killed for real (SIGKILL at a named point: after deploying, after its reports, after recording
    itself) and finished by the next tick: its drift and its retrain reach each channel once, neither lost with the
    killed process nor sent again by the tick that finishes it or the ones after."""
    config = alerting(deployed, receiver, mailbox)
    write_csv(config.input_folder / "flipped.csv", client_rows(200, seed=6, flip=True))
    command = ("fullprocess.py", "--config", str(config.config_file), "--api-url", api_url)
    killed = run_script(*command, cwd=tmp_path, env={"RISK_KILL_AT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    for _ in range(2):
        finished = run_script(*command, cwd=tmp_path)
        assert finished.returncode == 0, finished.stderr
    for title in ("Model drift found", "Retrained model deployed"):
        assert sum(text.startswith(f"[risk] {title}:") for text in receiver.texts()) == 1, receiver.texts()
        assert mailbox.subjects().count(f"[risk] {title}") == 1, mailbox.subjects()
    assert not alerts.pending(alerts.read_outbox(config))


def channel_states(config: Config) -> list[dict]:
    return [state for message in alerts.read_outbox(config)["messages"].values() for state in message["channels"].values()]


def with_a_slow_webhook(deployed: Config, receiver: Receiver, monkeypatch) -> Config:
    """The config with the receiver as its one webhook, answering after the send's timeout; new rows to run on."""
    config = with_alerts(deployed, {"webhook_urls": [receiver.url]})
    monkeypatch.setattr(alerts, "SEND_TIMEOUT", 0.5)
    receiver.delay = 3.0
    write_csv(config.input_folder / "more.csv", client_rows(60, seed=12, noise=0.0))
    return config


@pytest.mark.slow
def test_a_send_that_times_out_does_not_fail_the_tick_and_is_retried(deployed: Config, receiver: Receiver,
                                                                     monkeypatch):
    config = with_a_slow_webhook(deployed, receiver, monkeypatch)
    started = time.monotonic()
    assert tick_module.tick(config, failing_reports) == 1  # exit 1 for the failed run, not for the alert
    assert time.monotonic() - started < 30
    [key] = [key for key, message in alerts.read_outbox(config)["messages"].items() if message["event"] == "run_failed"]
    [state] = alerts.read_outbox(config)["messages"][key]["channels"].values()
    assert state["sent_at"] is None  # the hook timed out on the run's first alert: the others wait for the next tick
    assert any("TimeoutError" in (failed["last_error"] or "") for failed in channel_states(config))
    receiver.delay = 0.0
    assert tick_module.tick(config, lambda c, r: None) == 0  # nothing new: the tick retries what is owed
    [state] = alerts.read_outbox(config)["messages"][key]["channels"].values()
    assert state["sent_at"] is not None

    # Each alert of the outbox reached the hook once, and the one that timed out once more: the hook took it late
    # (its handler answers after its delay), then the retry. Waited for, so that a late arrival is counted too.
    owed = len(alerts.read_outbox(config)["messages"]) + 1
    deadline = time.monotonic() + 10
    while len(receiver.bodies) < owed and time.monotonic() < deadline:
        time.sleep(0.05)
    texts = receiver.texts()
    assert len(texts) == owed and sum(text.startswith("[risk] A run failed:") for text in texts) == 1, texts
    assert len(set(texts)) == owed - 1  # one alert twice (sent late, then again), every other once


@pytest.mark.slow
def test_a_tick_tries_a_slow_channel_once_within_its_one_sending_budget(deployed: Config, receiver: Receiver,
                                                                        monkeypatch):
    # The run's alerts and the end of the tick both send: a channel that timed out in the first is not tried
    # again seconds later in the second (nor for its other alerts), and the two share the tick's DELIVERY_BUDGET
    # (it took 2 x 20 s).
    config = with_a_slow_webhook(deployed, receiver, monkeypatch)
    assert tick_module.tick(config, failing_reports) == 1
    states = channel_states(config)
    assert len(states) >= 2 and sum(state["attempts"] for state in states) == 1
    assert not any(state["sent_at"] for state in states)
    monkeypatch.setattr(alerts, "DELIVERY_BUDGET", 0.3)  # the next tick: its own budget, one attempt long
    assert tick_module.tick(config, lambda c, r: None) == 0
    assert sum(state["attempts"] for state in channel_states(config)) == 2


@pytest.mark.slow
def test_a_webhook_that_times_out_does_not_hold_up_the_channels_that_answer(deployed: Config, receiver: Receiver,
                                                                            monkeypatch):
    # A dead hook that times out took the tick's whole sending time, message after message, on every tick: the
    # webhook that answers and the mail got none of the newer alerts.
    slow = Receiver()
    try:
        slow.delay = 3.0
        config = with_alerts(deployed, {"webhook_urls": [slow.url, receiver.url]})
        monkeypatch.setattr(alerts, "SEND_TIMEOUT", 0.5)
        monkeypatch.setattr(alerts, "DELIVERY_BUDGET", 1.5)  # three attempts on the slow hook, had it been tried so
        outbox = alerts.read_outbox(config)
        for number in range(6):
            alerts.enqueue(outbox, f"run{number}:run_failed", "run_failed", f"[risk] A run failed: {number}", config)
        alerts.new_tick()
        alerts.deliver(config, outbox)  # the slow hook fails once, then waits for the next tick
        assert receiver.texts() == [f"[risk] A run failed: {number}" for number in range(6)]
        slow_states = [message["channels"] for message in alerts.read_outbox(config)["messages"].values()]
        slow_id = next(channel for channel, name in alerts.channels(config).items() if str(slow.server.server_port)
                       in name)
        assert sum(states[slow_id]["attempts"] for states in slow_states) == 1
    finally:
        slow.close()


@pytest.mark.slow
def test_a_webhook_answering_a_byte_at_a_time_is_given_up_within_the_send_timeout(deployed: Config, monkeypatch):
    # Each byte comes before the socket's timeout, so only a bound on the whole attempt stops it: it held the tick.
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(100):  # 20 s at most, a byte every 0.2 s
                if stop.wait(0.2):
                    break
                connection.sendall(b"x")

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        config = with_alerts(deployed, {"webhook_urls": [f"http://127.0.0.1:{listener.getsockname()[1]}/hook"]})
        monkeypatch.setattr(alerts, "SEND_TIMEOUT", 1.0)
        outbox = alerts.read_outbox(config)
        alerts.enqueue(outbox, "r1:run_failed", "run_failed", "[risk] A run failed: x", config)
        alerts.new_tick()
        started = time.monotonic()
        alerts.deliver(config, outbox)
        assert time.monotonic() - started < 5
        [state] = channel_states(config)
        assert state["sent_at"] is None and "no complete answer within 1 s" in state["last_error"]
    finally:
        stop.set()
        listener.close()


@pytest.mark.slow
def test_an_operators_action_waits_briefly_for_dead_channels_and_the_next_tick_delivers_once(deployed: Config):
    # A webhook and a mail server that take the connection and never answer held deployment.py --pin for 22 s.
    import socket

    # The kernel completes each connection; nobody ever answers (an SMTP server's greeting never comes).
    dead = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    hook, smtp = (listener.getsockname()[1] for listener in dead)
    config = with_alerts(deployed, {"webhook_urls": [f"http://127.0.0.1:{hook}/hook"],
                                    "email": {"smtp_host": "127.0.0.1", "smtp_port": smtp, "from": "risk@example.test",
                                              "to": ["ops@example.test"]}})
    started = time.monotonic()
    try:
        assert deployment.run(config, action="pin").release == read_control(config.prod_deployment_folder)[
            "pinned"]["release"]
        assert time.monotonic() - started < alerts.COMMAND_BUDGET + 2  # both channels side by side, 3 s each
    finally:
        for listener in dead:
            listener.close()
    states = channel_states(config)
    assert len(states) == 2 and all(state["sent_at"] is None and state["attempts"] == 1 for state in states)
    assert all("no complete answer within" in state["last_error"] for state in states)
    receiver, mailbox = Receiver(hook), Mailbox(smtp)  # the same URL and server, back: the next tick delivers
    try:
        for _ in range(2):
            assert tick_module.tick(config, lambda c, r: None) == 0
        assert [text.split(":")[0] for text in receiver.texts()] == ["[risk] Pin"]
        assert mailbox.subjects() == ["[risk] Pin"]
    finally:
        receiver.close()
        mailbox.close()


def test_a_refused_webhook_is_recorded_and_the_tick_still_succeeds(deployed: Config):
    from conftest import free_port

    config = with_alerts(deployed, {"webhook_urls": [f"http://127.0.0.1:{free_port()}/hook"]})
    deployment.run(config, action="pin")
    [message] = alerts.read_outbox(config)["messages"].values()
    [state] = message["channels"].values()
    assert state["sent_at"] is None and state["last_error"]
    assert tick_module.tick(config, lambda c, r: None) == 0


def silent_for_two_hours(config: Config) -> None:
    alerts.mark_success(config)
    hours_ago = time.time() - 2 * 3600
    os.utime(config.output_model_folder / alerts.LAST_TICK_FILE, (hours_ago, hours_ago))


@pytest.mark.slow
def test_silence_is_announced_once(deployed: Config, receiver: Receiver):
    config = with_alerts(deployed, {"webhook_urls": [receiver.url], "silence_minutes": 30})
    silent_for_two_hours(config)
    alerts.tick_finished(config, succeeded=False)
    alerts.tick_finished(config, succeeded=False)
    [text] = receiver.texts()
    assert text.startswith("[risk] No successful tick:") and "120 minutes ago" in text
    alerts.tick_finished(config, succeeded=True)  # a tick went well again: no more silence
    alerts.tick_finished(config, succeeded=False)
    assert len(receiver.texts()) == 1


@pytest.mark.slow
def test_ticks_that_fail_before_any_work_raise_the_silence_alert(deployed: Config, receiver: Receiver, capsys):
    # The walk: a database table locked by another session made every tick fail at its first question
    # (exit 1), and no silence alert ever came: only a tick that reached the work said it had failed.
    config = with_alerts(deployed, {"webhook_urls": [receiver.url], "silence_minutes": 30})
    silent_for_two_hours(config)
    (config.prod_deployment_folder / "current").unlink()
    assert fullprocess.main(["--config", str(config.config_file)]) == 1
    assert "no `current` link" in capsys.readouterr().err
    [text] = receiver.texts()
    assert text.startswith("[risk] No successful tick:") and "120 minutes ago" in text


@pytest.mark.slow
def test_a_stuck_run_raises_the_silence_alert(deployed: Config, receiver: Receiver, tmp_path):
    config = with_alerts(deployed, {"webhook_urls": [receiver.url], "silence_minutes": 30})
    raw = json.loads(config.config_file.read_text())
    raw["automation"] = {"max_run_seconds": 2}
    config.config_file.write_text(json.dumps(raw))
    silent_for_two_hours(config)
    stuck = subprocess.Popen([sys.executable, "-c", STUCK.format(root=str(ROOT),
                                                                 prod=str(config.prod_deployment_folder))],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert stuck.stdout.readline().strip() == "True"
        time.sleep(2.5)
        ticked = run_script("fullprocess.py", "--config", str(config.config_file), cwd=tmp_path)
    finally:
        stuck.send_signal(signal.SIGKILL)
        stuck.wait()
    assert ticked.returncode == 1 and "it looks stuck" in ticked.stderr
    [text] = receiver.texts()
    assert text.startswith("[risk] No successful tick:")


@pytest.mark.slow
def test_test_alerts_sends_to_every_channel(deployed: Config, receiver: Receiver, mailbox: Mailbox, capsys):
    config = alerting(deployed, receiver, mailbox)
    assert fullprocess.main(["--config", str(config.config_file), "--test-alerts"]) == 0
    out = capsys.readouterr().out
    assert f"webhook 127.0.0.1:{receiver.server.server_port}: sent" in out and "mail to ops@example.test: sent" in out
    assert receiver.texts()[0].startswith("[risk] Test alert:") and mailbox.subjects() == ["[risk] Test alert"]
    [(_, message)] = mailbox.messages
    assert message["Date"] and message["Message-ID"].endswith("@example.test>")  # RFC 5322's, none added on the way


@pytest.mark.slow
def test_test_alerts_says_which_of_several_webhooks_on_one_host_failed(deployed: Config, receiver: Receiver, capsys):
    from conftest import free_port

    port = free_port()  # a user:password@ in a webhook URL is refused at load (test_a_wrong_alerts_section_...)
    refused = f"http://127.0.0.1:{port}/hooks/other-token"
    config = with_alerts(deployed, {"webhook_urls": [receiver.url, refused]})
    assert fullprocess.main(["--config", str(config.config_file), "--test-alerts"]) == 1
    first, second = capsys.readouterr().out.splitlines()
    assert first == f"webhook 127.0.0.1:{receiver.server.server_port} (alerts.webhook_urls 1 of 2): sent"
    assert second.startswith(f"webhook 127.0.0.1:{port} (alerts.webhook_urls 2 of 2): failed")
    assert "token" not in first + second


def test_test_alerts_without_a_channel_is_one_sentence(deployed: Config, capsys):
    assert fullprocess.main(["--config", str(deployed.config_file), "--test-alerts"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "names no alert channel" in one_sentence(line)


def test_the_smtp_password_file_must_be_owner_only(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(alerts.PASSWORD_ENV, raising=False)
    secret = tmp_path / "smtp-password"
    secret.write_text("pw\n")
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="can be read by others"):
        alerts.smtp_password({"password_file": str(secret)})
    secret.chmod(0o600)
    assert alerts.smtp_password({"password_file": str(secret)}) == "pw"
    monkeypatch.setenv(alerts.PASSWORD_ENV, "from-env")
    assert alerts.smtp_password({"password_file": str(secret)}) == "from-env"


def test_an_alert_owed_to_a_channel_taken_out_of_the_config_is_no_longer_owed(deployed: Config):
    from conftest import free_port

    config = with_alerts(deployed, {"webhook_urls": [f"http://127.0.0.1:{free_port()}/old-hook"]})
    deployment.run(config, action="pin")
    assert alerts.pending(alerts.read_outbox(config))  # refused: owed
    config = with_alerts(deployed, {"webhook_urls": [f"http://127.0.0.1:{free_port()}/new-hook"]})
    assert tick_module.tick(config, lambda c, r: None) == 0
    [state] = channel_states(config)
    assert state["given_up"] and state["sent_at"] is None and not alerts.pending(alerts.read_outbox(config))


@pytest.mark.slow
def test_what_the_outbox_owes_is_sent_oldest_first(deployed: Config, receiver: Receiver):
    # The outbox is written with sorted keys: a retry sent a run's data drift before its model drift, and a rollback
    # (keyed by its own run id) could come before the retrain it undid.
    config = with_alerts(deployed, {"webhook_urls": [receiver.url]})
    outbox = alerts.read_outbox(config)
    for key, seconds_ago in (("ffff:rollback", 2), ("0000:model_drift", 1), ("aaaa:retrain_deployed", 3)):
        alerts.enqueue(outbox, key, key.split(":")[1], f"[risk] {key}", config)
        outbox["messages"][key]["created_at"] = utc_at(time.time() - seconds_ago)
    alerts.new_tick()
    alerts.deliver(config, outbox, budget=5)
    assert receiver.texts() == ["[risk] aaaa:retrain_deployed", "[risk] ffff:rollback", "[risk] 0000:model_drift"]


@pytest.mark.slow
def test_test_alerts_tries_the_channels_side_by_side(deployed: Config, receiver: Receiver, monkeypatch, capsys):
    import socket

    dead = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]  # connections taken, never answered
    try:
        urls = [f"http://127.0.0.1:{listener.getsockname()[1]}/hook" for listener in dead]
        config = with_alerts(deployed, {"webhook_urls": [*urls, receiver.url]})
        monkeypatch.setattr(alerts, "SEND_TIMEOUT", 1.5)
        started = time.monotonic()
        assert fullprocess.main(["--config", str(config.config_file), "--test-alerts"]) == 1
        assert time.monotonic() - started < 3.5  # in turn: 4.5 s
    finally:
        for listener in dead:
            listener.close()
    said = capsys.readouterr().out.splitlines()
    assert [line.split(": ", 1)[1].split(":")[0] for line in said] == ["failed"] * 3 + ["sent"]
    assert all("timed out" in line or "no complete answer" in line for line in said[:3]), said
