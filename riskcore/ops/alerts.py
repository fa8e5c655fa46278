"""Alerts: what the automation and the operator did that someone should hear about, sent once, to webhooks and mail.

Events, read from a run's history row (riskcore.ops.history) or from the tick itself:
  model_drift          the drift check found model drift
  retrain_deployed     a retrained model is served
  gate_kept_old_model  the promotion gate kept the old model
  estimated_drop       an estimated drop without labels
  data_drift           features drifted in the new data
  ingestion_held_back  nothing ingested: a file production ingested is broken or gone
  run_failed           a run failed or a file was rejected
  rollback, pin        an operator's deployment.py action (roll forward and unpin too)
  silence              no successful tick for longer than alerts.silence_minutes

Each event is a message in the outbox (alerts-outbox.json beside the run history), keyed by the run id and
the event, so a run killed and finished later is not announced twice; a failure (ingestion_held_back,
run_failed) by its words and the last successful tick, so one that stays is announced once until a tick
succeeds again. Each channel (every webhook URL,
the mail) is tried until it has the message: a failed or slow send is logged and recorded, never fails
the tick, and is tried again at the next tick (for a day, then given up with an error in the log). Sending
is bounded: SEND_TIMEOUT per attempt, DELIVERY_BUDGET per tick, whether the tick sends once (a run's alerts)
or twice (then the silence alert and what earlier ticks still owe), COMMAND_BUDGET for deployment.py's actions;
the channels are tried side by side, and a channel that failed in this tick is not tried again before the next.

Webhooks get a JSON POST {"text": ...} (Slack, Mattermost and Teams accept it); mail goes through SMTP
(smtplib), STARTTLS when asked, the password from alerts.email.password_file (owner-only) or
$RISK_SMTP_PASSWORD, never from the config. Standard library only: a tick with nothing new calls this.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import time
import urllib.error
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from riskcore.config import Config
from riskcore.contract import ConfigError, DataError
from riskcore.files import atomic_write_json, atomic_write_text, parse_utc, read_json, utc_at, utc_now
from riskcore.formatting import plural, when
from riskcore.ops.history import OPERATOR_DECISIONS

log = logging.getLogger(__name__)

OUTBOX_FILE = "alerts-outbox.json"
LAST_TICK_FILE = "lasttick"  # its modification time: when a tick last finished well (the silence alert, /metrics)
HEARTBEAT_TEXT = "This file's modification time is when fullprocess.py last finished a tick well.\n"
PASSWORD_ENV = "RISK_SMTP_PASSWORD"
SEND_TIMEOUT = 10.0  # seconds one attempt on one channel may take
DELIVERY_BUDGET = 30.0  # seconds a tick spends sending, all channels together
# deployment.py's actions are run by a person waiting for the prompt: their alerts get this much, then wait in the
# outbox for the next tick (a dead webhook and a dead mail server held --rollback for 22 s, 10 s each in turn).
COMMAND_BUDGET = 3.0
GIVE_UP_AFTER = timedelta(days=1)
KEEP_SENT = timedelta(days=30)  # delivered messages are kept this long, so a late duplicate is still recognised

# This process's tick: the seconds spent sending, and the channels that failed. One tick is one
# process (fullprocess.py, deployment.py); tick() starts a new one all the same (new_tick).
_tick: dict[str, Any] = {"spent": 0.0, "failed": set()}


def new_tick() -> None:
    """A new tick: its own DELIVERY_BUDGET, and every channel may be tried again."""
    _tick.update(spent=0.0, failed=set())

TITLES = {
    "model_drift": "Model drift found", "retrain_deployed": "Retrained model deployed",
    "gate_kept_old_model": "The promotion gate kept the old model", "estimated_drop": "Estimated drop without labels",
    "data_drift": "Data drift", "ingestion_held_back": "Ingestion held back", "run_failed": "A run failed",
    "rollback": "Rollback", "pin": "Pin", "silence": "No successful tick", "test": "Test alert",
}
# The events stay "rollback" and "pin" (their names are the contract); the title says which way the operator went:
# "[risk] Rollback: rolled forward from release 5 to 6" read backwards.
UNDO_TITLES = {("rollback", "roll-forward"): "Roll forward", ("pin", "unpin"): "Unpin"}


# --- What happened: a history row's events ---------------------------------------------------------
def events_of_run(row: dict[str, Any]) -> list[tuple[str, str]]:
    """(event, sentence) for each alert a run's history row calls for; a pure function of the row."""
    decision, outcome = row.get("decision") or "", row.get("outcome")
    before, after = row.get("version_before"), row.get("version_after")
    events = []
    if decision in ("rollback", "roll-forward"):
        events.append(("rollback", f"{row.get('note') or decision}; model {before} -> {after}."))
    elif decision in ("pin", "unpin"):
        events.append(("pin", f"{row.get('note') or decision} (model {after})."))
    verdict = row.get("drift_verdict") or ""
    found = row.get("model_drift")  # the check's own word; runs recorded before it: the verdict's
    if found is None:
        found = decision == "retrain" or ("model drift" in verdict and "no model drift" not in verdict)
    if found:
        events.append(("model_drift", f"{verdict or 'model drift'}."))
    # Whatever the run's outcome: a run that deployed its model and then failed in its reports still serves it.
    if decision == "retrain" and after and after != before:
        events.append(("retrain_deployed", f"model {after} now served, replacing {before}."))
    evaluation = row.get("evaluation") or {}
    if decision.startswith("keep: the new model") or evaluation.get("promoted") is False:
        from riskcore.ops.history import worse_on_holdout  # standard library only, like this module

        try:  # the history's sentence with both models' F1 (the decision alone read "kept_by_gate; model a stays.")
            why = worse_on_holdout(evaluation).rstrip(".")
        except (KeyError, TypeError):
            why = decision if decision.startswith("keep: the new model") else "the promotion gate kept the old model"
        events.append(("gate_kept_old_model", f"{why}; model {after} stays."))
    if row.get("estimated_drift"):
        from riskcore.model.estimate_words import estimate_text  # standard library only, like this module

        # The history's words, with the interval and rows ("estimated F1 0.6123456789 below the baseline" was the
        # recorded float as it came); the warning's own text when a row carries one.
        said = row["estimated_drift"] if isinstance(row["estimated_drift"], str) else estimate_text(row)
        events.append(("estimated_drop", f"{said or 'an estimated F1 below the baseline, without labels'}."))
    features = ((row.get("data_drift") or {}).get("features") or {})
    drifted = [name for name, figures in features.items() if isinstance(figures, dict) and figures.get("drift")]
    if drifted:
        events.append(("data_drift", f"the new rows differ from the training data in {', '.join(drifted)}."))
    error = str(row.get("error") or "").rstrip(".")  # a sentence, continued below: "...changes); the deployed ..."
    if outcome in ("failed", "crashed") and error.startswith("step ingestion failed"):
        events.append(("ingestion_held_back", f"{error}; production is unchanged."))
    elif outcome in ("failed", "crashed") or (error and outcome == "done"):
        events.append(("run_failed", f"{error or outcome}; the deployed model is {after or 'none'}."))
    return events


def message_text(event: str, detail: str, row: dict[str, Any], config: Config) -> str:
    run = f"run {row['run_number']}" if row.get("run_number") else "an operator's action" \
        if row.get("decision") in OPERATOR_DECISIONS else "the automation"
    title = UNDO_TITLES.get((event, row.get("decision")), TITLES.get(event, event))
    return (f"[risk] {title}: {detail[:1500]} ({run}, {when(row.get('finished_at') or utc_now())}, "
            f"{config.config_file})")


# --- The outbox ------------------------------------------------------------------------------------
def outbox_path(config: Config) -> Path:
    return config.output_model_folder / OUTBOX_FILE


def read_outbox(config: Config) -> dict[str, Any]:
    try:
        document = read_json(outbox_path(config), "alert outbox", missing={"messages": {}}, advice="starting a new one")
    except DataError as exc:
        log.error("%s", exc)
        return {"messages": {}}
    document.setdefault("messages", {})
    return document


def channels(config: Config) -> dict[str, str]:
    """Channel id -> how the log names it; a webhook by its host and port only (its path may hold a secret), and
    by its place in alerts.webhook_urls when there are several (two Slack hooks share hooks.slack.com)."""
    found = {}
    urls = config.alerts["webhook_urls"]
    for number, url in enumerate(urls, 1):
        where = urlsplit(url).netloc.rpartition("@")[2]  # never the user and password a URL may carry
        found[f"webhook:{hashlib.sha256(url.encode()).hexdigest()[:12]}"] = \
            f"webhook {where}" + (f" (alerts.webhook_urls {number} of {len(urls)})" if len(urls) > 1 else "")
    if config.alerts["email"]:
        found["email"] = f"mail to {', '.join(config.alerts['email']['to'])}"
    return found


def enabled(config: Config) -> bool:
    return bool(config.alerts["webhook_urls"] or config.alerts["email"])


def enqueue(outbox: dict[str, Any], key: str, event: str, text: str, config: Config) -> bool:
    """Add a message unless its key is known; True when it is new."""
    if key in outbox["messages"]:
        return False
    outbox["messages"][key] = {"event": event, "text": text, "created_at": utc_now(),
                               "channels": {channel: {"sent_at": None, "attempts": 0, "last_error": None}
                                            for channel in channels(config)}}
    return True


# --- Sending -----------------------------------------------------------------------------------------
def webhook_url(config: Config, channel: str) -> str:
    return next(url for url in config.alerts["webhook_urls"]
                if f"webhook:{hashlib.sha256(url.encode()).hexdigest()[:12]}" == channel)


# The senders import their modules when they send: smtplib, ssl, email and urllib.request took 13-14 ms of a
# tick with nothing to do (python -X importtime), which calls this module but sends nothing.
def post_webhook(url: str, text: str, timeout: float) -> None:
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps({"text": text}).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - only the configured URLs
        answer.read(1024)


def smtp_password(email: dict[str, Any]) -> str | None:
    """The SMTP password: $RISK_SMTP_PASSWORD, else alerts.email.password_file (readable by its owner only)."""
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not email.get("password_file"):
        return None
    path = Path(email["password_file"])
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"SMTP password file {path} cannot be read ({exc.__class__.__name__}).") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"SMTP password file {path} can be read by others; chmod 600 {path}.")
    return text.strip("\n")


def send_mail(email: dict[str, Any], subject: str, text: str, timeout: float) -> None:
    import smtplib
    import ssl
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = subject, email["from"], ", ".join(email["to"])
    # RFC 5322 asks for both, and neither smtplib nor a relay that only forwards adds them; the sender's domain
    # names the Message-ID (make_msgid's default asks the resolver for this host's name).
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=email["from"].rpartition("@")[2] or "localhost")
    message.set_content(text)
    with smtplib.SMTP(email["smtp_host"], email["smtp_port"], timeout=timeout) as server:
        if email["starttls"]:
            server.starttls(context=ssl.create_default_context())
        password = smtp_password(email)
        if password:
            server.login(email["from"], password)
        server.send_message(message)


def send(config: Config, channel: str, event: str, text: str, timeout: float) -> None:
    """One attempt on one channel; raises on any failure."""
    if channel == "email":
        send_mail(config.alerts["email"], text.partition(": ")[0], text, timeout)  # the title the text begins with
    else:
        post_webhook(webhook_url(config, channel), text, timeout)


def send_within(config: Config, channel: str, event: str, text: str, seconds: float) -> None:
    """One attempt, over after `seconds` whatever the other end does; raises on any failure.

    Socket timeouts bound each wait, not the whole: a server that answers a byte at a time held an attempt (and
    the tick, past automation.max_run_seconds, which stops steps, not the alerts after them) for as long as it
    went on. The attempt runs in a daemon thread; one still waiting is left behind, to end with the process.
    """
    import threading

    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            send(config, channel, event, text, seconds)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=attempt, name=f"alert to {channel}", daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        raise TimeoutError(f"no complete answer within {round(seconds, 1):g} s")
    if outcome[0] is not None:
        raise outcome[0]


def failure_text(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    return f"{exc.__class__.__name__}: {exc}"[:300]


def deliver(config: Config, outbox: dict[str, Any] | None = None, budget: float | None = None) -> dict[str, Any]:
    """Send what the outbox still owes, within the time budget; record each attempt. Never raises for a send.

    The channels are tried side by side, each in its own thread, oldest message first: a dead webhook that
    times out holds up neither the mail nor the other webhooks, and the whole takes at most the budget however
    many channels fail. A channel that fails in this tick is not tried again before the next (a webhook that
    times out took the whole budget on every tick, message after message).
    """
    import threading  # 1 ms; a tick with nothing owed never gets here

    outbox = read_outbox(config) if outbox is None else outbox
    names = channels(config)
    started = time.monotonic()
    deadline = started + (DELIVERY_BUDGET - _tick["spent"] if budget is None else budget)
    now = datetime.now(UTC)
    queues: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = {}
    # Oldest first: the outbox is written with its keys sorted, and a rollback's key (a run id) sorted after the
    # retrain's that it undid.
    for key, message in sorted(outbox["messages"].items(), key=lambda item: item[1]["created_at"]):
        for channel, state in message["channels"].items():
            if state.get("sent_at") or state.get("given_up") or channel in _tick["failed"]:
                continue
            if channel not in names:  # a webhook URL changed or removed: owed to nobody (it kept every tick sending)
                state.update(given_up=utc_now(), last_error="channel no longer in the config's alerts section")
                log.info("alert %s: its channel is no longer in the config's alerts section, not sent there", key)
                continue
            if now - parse_utc(message["created_at"]) > GIVE_UP_AFTER:
                state["given_up"] = utc_now()
                log.error("alert %s to %s given up after %d attempts (last: %s)", key, names[channel],
                          state["attempts"], state["last_error"])
                continue
            queues.setdefault(channel, []).append((key, message, state))
    writing = threading.Lock()  # the threads share the outbox: one writes it at a time
    waiting = [0]

    def record(state: dict[str, Any], **changes: Any) -> None:
        with writing:
            state.update(changes)
            atomic_write_json(outbox_path(config), outbox)  # after each attempt: a killed tick resends nothing sent

    def send_in_turn(channel: str, owed: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        for number, (key, message, state) in enumerate(owed):
            left = deadline - time.monotonic()
            if left <= 0:
                with writing:
                    waiting[0] += len(owed) - number
                return
            try:
                send_within(config, channel, message["event"], message["text"], min(SEND_TIMEOUT, left))
            except Exception as exc:  # noqa: BLE001 - this thread's end: an alert never fails what it reports on
                record(state, attempts=state["attempts"] + 1, last_error=failure_text(exc))
                _tick["failed"].add(channel)
                # smtplib's errors are OSErrors; anything else is a bug, logged with its traceback
                (log.warning if isinstance(exc, (OSError, ConfigError, ValueError)) else log.exception)(
                    "alert %s to %s not delivered (%s); it and the channel's other alerts are tried again at the "
                    "next tick", key, names[channel], state["last_error"])
                return
            record(state, attempts=state["attempts"] + 1, sent_at=utc_now())
            log.info("alert %s sent to %s", key, names[channel])

    workers = [threading.Thread(target=send_in_turn, args=item, name=f"alerts to {item[0]}", daemon=True)
               for item in queues.items()]
    for worker in workers:
        worker.start()
    for worker in workers:  # send_within ends each attempt by the deadline; the second is a margin for the write
        worker.join(max(0.0, deadline - time.monotonic()) + 1.0)
    if waiting[0]:
        log.info("%s left for the next tick (this %s's sending time, %g s, is used up)",
                 plural(waiting[0], "alert message"), "tick" if budget is None else "command",
                 DELIVERY_BUDGET if budget is None else budget)
    _tick["spent"] += time.monotonic() - started
    with writing:
        prune(outbox, now)
        atomic_write_json(outbox_path(config), outbox)
    return outbox


def prune(outbox: dict[str, Any], now: datetime) -> None:
    for key, message in list(outbox["messages"].items()):
        done = all(s.get("sent_at") or s.get("given_up") for s in message["channels"].values())
        if done and now - parse_utc(message["created_at"]) > KEEP_SENT:
            del outbox["messages"][key]


# --- The hooks: small calls from the run, the tick and deployment.py -----------------------------------
def note_run(config: Config, row: dict[str, Any], budget: float | None = None) -> None:
    """Queue the alerts a recorded run calls for and send them now, within `budget` seconds (the tick's sending
    time when None); never raises."""
    if not enabled(config) or not row.get("run_id"):
        return
    try:
        outbox = read_outbox(config)
        new = [enqueue(outbox, message_key(event, detail, row, config), event,
                       message_text(event, detail, row, config), config)
               for event, detail in events_of_run(row)]
        if any(new) or pending(outbox):
            deliver(config, outbox, budget)
    except Exception:  # an alert must never fail the run it reports on
        log.exception("alerts for run %s could not be queued or sent", row.get("run_id"))


# A failure that stays (a held-back table, a file still broken) fails every tick in the same words: announced once
# until a tick succeeds again, not every 10 minutes (the walk's mailbox got the same held-back sentence each tick).
REPEATING = ("ingestion_held_back", "run_failed")


def message_key(event: str, detail: str, row: dict[str, Any], config: Config) -> str:
    """The outbox key: the run and the event; for a failure, its words since the last successful tick."""
    if event not in REPEATING:
        return f"{row['run_id']}:{event}"
    words = hashlib.sha256(detail.encode("utf-8", "replace")).hexdigest()[:16]
    return f"{event}:{last_successful_tick(config)}:{words}"


def pending(outbox: dict[str, Any]) -> bool:
    return any(not (s.get("sent_at") or s.get("given_up"))
               for message in outbox["messages"].values() for s in message["channels"].values())


def tick_finished(config: Config, succeeded: bool) -> None:
    """At the end of every tick: note a success, raise the silence alert when due, retry what is owed; never raises."""
    try:
        if succeeded:
            mark_success(config)
        if not enabled(config):
            return
        outbox = read_outbox(config)
        silence = silence_alert(config)
        if silence is not None:
            enqueue(outbox, *silence, config)
        if pending(outbox):
            deliver(config, outbox)
    except Exception:
        log.exception("alerts could not be checked or sent at the end of this tick")


def mark_success(config: Config) -> None:
    """The heartbeat: the file's modification time is when a tick last finished well.

    Its bytes never change, so a tick with nothing to do changes no file's content (only this time).
    """
    path = config.output_model_folder / LAST_TICK_FILE
    if not path.is_file():
        atomic_write_text(path, HEARTBEAT_TEXT)
    os.utime(path)


def last_successful_tick(config: Config) -> str | None:
    """When a tick last finished well (ISO UTC), or None when none has yet."""
    try:
        stamp = (config.output_model_folder / LAST_TICK_FILE).stat().st_mtime
    except OSError:
        return None
    return utc_at(stamp)


def silence_alert(config: Config) -> tuple[str, str, str] | None:
    """(key, event, text) when no tick has succeeded for longer than alerts.silence_minutes; keyed by the last
    success, so one silence is announced once."""
    last = last_successful_tick(config)
    if last is None:
        return None
    quiet = datetime.now(UTC) - parse_utc(last)
    if quiet <= timedelta(minutes=config.alerts["silence_minutes"]):
        return None
    text = (f"[risk] {TITLES['silence']}: the last tick that finished well was at {when(last)}, "
            f"{quiet.total_seconds() / 60:.0f} minutes ago (alerts.silence_minutes "
            f"{config.alerts['silence_minutes']:g}); see logs/cron.log ({config.config_file})")
    return f"silence:{last}", "silence", text


def send_test(config: Config) -> list[tuple[str, str | None]]:
    """fullprocess.py --test-alerts: one test message to every channel now, side by side (three dead webhooks took
    30 s in turn); (channel name, error or None) in the config's order."""
    import threading

    text = f"[risk] {TITLES['test']}: fullprocess.py --test-alerts at {when(utc_now())} ({config.config_file})"
    errors: dict[str, str | None] = {}

    def attempt(channel: str) -> None:
        try:
            send_within(config, channel, "test", text, SEND_TIMEOUT)
        except (OSError, ConfigError, ValueError) as exc:  # smtplib's errors are OSErrors
            errors[channel] = failure_text(exc)
        else:
            errors[channel] = None

    workers = [threading.Thread(target=attempt, args=(channel,), daemon=True) for channel in channels(config)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(SEND_TIMEOUT + 1.0)
    # A channel with no answer here failed with something other than a send's error (a bug): its thread said so.
    return [(name, errors.get(channel, "no result (see the log)")) for channel, name in channels(config).items()]

