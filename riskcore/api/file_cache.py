"""The one cache of what the API serves from disk: each answer is kept until a file it was built from changes.

An entry is found by its kind ("scoring", "history", "page", ...) and a key (a release, a client, a
page number), and is valid while the signatures of its files (one stat each: device, inode, size
and modification time, so a file replaced by a rename is a new file) are those it was built with.
The signatures are taken before the build, so an answer built while a file changed is rebuilt on the
next request instead of being served as the new file's. Each kind keeps its `keep` newest keys.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

Signature = tuple[int, int, int, int] | None


def file_signature(path: Path) -> Signature:
    """A cheap identity of a file's content (one stat); None when it does not exist."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class FileCache:
    """Answers built from files, by kind and key, each rebuilt only when one of its files changed."""

    def __init__(self) -> None:
        self._kinds: dict[str, dict[Any, tuple[tuple[Signature, ...], Any]]] = {}
        self._lock = threading.Lock()

    def get(self, kind: str, files: Sequence[Path], build: Callable[[tuple[Signature, ...]], T],
            key: Any = None, keep: int = 1) -> T:
        """The entry of (kind, key) while `files` are unchanged; else build(their signatures), kept in its place."""
        signatures = tuple(map(file_signature, files))
        entries = self._kinds.get(kind)
        entry = entries.get(key) if entries is not None else None
        if entry is not None and entry[0] == signatures:
            return entry[1]
        value = build(signatures)
        with self._lock:
            entries = self._kinds.setdefault(kind, {})
            entries.pop(key, None)
            while len(entries) >= keep:
                entries.pop(next(iter(entries)))  # the oldest key of this kind
            entries[key] = (signatures, value)
        return value
