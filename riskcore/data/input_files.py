"""The input folder: which entries are candidate CSV files, and what identifies each between runs.

Standard library only: the cron tick with nothing new runs this and nothing heavier.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def printable_name(name: str) -> str:
    """A file name (or a value a sentence quotes) as one line of UTF-8 text: bytes that are not UTF-8 and control
    characters escaped.

    Names come from the file system as they are (a Latin-1 "société.csv", a newline): written raw they
    would fail to encode, split a line of ingestedfiles.txt in two or forge a log line.
    """
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def list_input_files(folder: Path) -> tuple[list[Path], list[str]]:
    """Split a folder's entries into CSV candidates and ignored names, sorted by name."""
    candidates, ignored = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.lower().endswith(".csv") and not entry.name.startswith("."):
            candidates.append(entry)
        else:
            ignored.append(entry.name)
    return candidates, ignored


def input_digest(path: Path, folder: Path) -> str:
    """What identifies an input entry between runs, reading it only if it is a regular file in `folder`.

    A regular file (directly, or through a link that stays in `folder`) gets the sha256 of its
    content. Anything else (a link out of the folder, a directory, a pipe, a device, a dangling
    link) is never read, since reading it could block or never end; it gets a description that
    stays the same as long as the entry does, so a rejected entry is not new again on every run.
    """
    try:
        if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
            return f"link to {os.readlink(path)}"
        # O_NONBLOCK: opening a pipe must not wait for a writer; fstat then says what was opened.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a link loop
        return f"unreadable ({getattr(exc, 'strerror', None) or exc.__class__.__name__})"
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            return f"not a regular file (mode {stat.S_IFMT(mode):o})"
        digest = hashlib.sha256()
        for block in iter(lambda: os.read(fd, 1 << 20), b""):
            digest.update(block)
        return digest.hexdigest()
    finally:
        os.close(fd)
