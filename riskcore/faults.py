"""Named kill points between writes, for the reliability tests (RISK_KILL_AT=<name>)."""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "RISK_KILL_AT"


def checkpoint(name: str) -> None:
    """A named point between steps; RISK_KILL_AT=<name> kills the process here (tests only)."""
    if os.environ.get(KILL_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
