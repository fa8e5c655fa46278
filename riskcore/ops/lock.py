"""One automation run at a time: an flock on the production folder.

Standard library only: every cron tick takes this lock, including the ones with nothing to do.
A tick that finds the lock held asks Linux who holds it and since when (/proc/locks), so a stuck
run is reported with its age instead of being waited for in silence.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@contextlib.contextmanager
def exclusive_lock(prod_folder: Path) -> Iterator[bool]:
    """Yield True when this process holds the run lock, False when another run does.

    The lock is an flock on the production folder itself, so every config that deploys there
    shares it and a no-op tick creates no file; the kernel releases it when its holder dies.
    """
    prod_folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(prod_folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@dataclass(frozen=True)
class LockHolder:
    """The process holding the run lock: its id, how long it has run, its command line."""

    pid: int
    seconds: float | None  # None when the system cannot say
    command: str


def lock_holder(prod_folder: Path) -> LockHolder | None:
    """Who holds the flock on the production folder, from Linux's /proc/locks; None when it cannot be told."""
    try:
        stat = os.stat(prod_folder)
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return None
    where = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    for line in lines:
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK" or fields[5] != where:
            continue  # "->": a process waiting for the lock, not holding it
        with contextlib.suppress(ValueError):
            pid = int(fields[4])
            return LockHolder(pid, process_age(pid), process_command(pid))
    return None


def process_age(pid: int) -> float | None:
    """Seconds since process `pid` started (Linux's /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            started_ticks = int(handle.read().rpartition(")")[2].split()[19])
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))


def process_command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return " ".join(handle.read().replace(b"\0", b" ").decode("utf-8", "replace").split())[:200]
    except OSError:
        return ""
