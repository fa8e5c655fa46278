"""One automation run at a time: an flock on the production folder.

Standard library only: every cron tick takes this lock, including the ones with nothing to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
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
