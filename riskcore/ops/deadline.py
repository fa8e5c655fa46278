"""A tick's deadline (automation.max_run_seconds): the run stops inside a step, never inside a deployment.

SIGALRM marks the deadline. Inside an ordinary step (ingestion, drift check, training, reports) the
alarm raises RunTimedOut at once, which the step turns into its failure sentence; inside a step
that changes production (deployment, record_files: under a second, and atomic) it is only noted,
so production is never left half-switched. The next step to begin then stops the run. The waits a
signal cannot cut short in C code are bounded on their own: the database's statement and lock
timeouts, cut to the time left (time_left), and training's child process (automation.max_train_seconds).

Standard library only: the cron tick arms it before it asks whether there is anything to do.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

from riskcore.contract import UserError

PRODUCTION_STEPS = ("deployment", "record_files")  # finished once begun: they switch production atomically

_state: dict = {"seconds": None, "due": False, "step": None, "ends": None}


class RunTimedOut(UserError):
    """The run reached automation.max_run_seconds and stopped."""


def _timed_out() -> RunTimedOut:
    return RunTimedOut(f"the run reached its time limit of {_state['seconds']:g} s (automation.max_run_seconds) "
                       "and stopped before finishing")


def _on_alarm(_signum, _frame) -> None:
    _state["due"] = True
    if _state["step"] is not None and _state["step"] not in PRODUCTION_STEPS:
        raise _timed_out()


@contextlib.contextmanager
def run_deadline(seconds: float) -> Iterator[None]:
    """Arm the deadline for the work inside (main thread only: signals are delivered there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    _state.update(seconds=seconds, due=False, step=None, ends=time.monotonic() + seconds)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _state.update(seconds=None, due=False, step=None, ends=None)


def time_left() -> tuple[float, float] | None:
    """(seconds left before the deadline, the run's time limit), None when no deadline is armed (a command run by
    hand). What a wait in C code takes as its own bound, which the alarm cannot cut short (the database's)."""
    if _state["ends"] is None:
        return None
    return max(0.0, _state["ends"] - time.monotonic()), _state["seconds"]


@contextlib.contextmanager
def within_deadline(step: str) -> Iterator[None]:
    """A step of the run: refused once the deadline has passed; interrupted by it unless it changes production."""
    if _state["due"]:
        raise _timed_out()
    _state["step"] = step
    try:
        yield
    finally:
        _state["step"] = None
