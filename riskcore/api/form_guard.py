"""What guards the pages' two forms (the key form and a client's call form): the session's signing secret
when no API key is set, the CSRF token, and a rate limit per client address.

The page secret: with an API key, the pages' session is signed under a secret derived from the key
(riskcore.api.page_access.session_secret). Without one, the call form still needs a signed session for its
CSRF token, so the secret is PAGE_SECRET beside the models (output_model_path/.page-secret): 32
random bytes, readable by its owner only, created once, atomically (written under a temporary name,
then linked into place, so gunicorn workers starting together all read the same secret).

The rate limit is a sliding window per client address. Under gunicorn it is kept in the SQLite file that
ATTEMPTS_ENV names (gunicorn.conf.py makes one per start), so that every worker counts the same attempts:
with the window in each process, W workers let an address make up to W times the limit (the walk saw 18
key-form tries and 41 call forms pass limits of 10 and 30 with 2 workers). Without that variable (one
process: app.py, the tests), or where the file cannot be written, each process keeps its own window.
Standard library only.
"""

from __future__ import annotations

import collections
import contextlib
import hmac
import logging
import os
import secrets
import sqlite3
import stat
import threading
import time
from pathlib import Path

from riskcore.contract import ConfigError

log = logging.getLogger(__name__)

PAGE_SECRET = ".page-secret"
ATTEMPTS_ENV = "RISK_FORM_ATTEMPTS"  # the SQLite file of the forms' attempts, shared by the gunicorn workers
SECRET_BYTES = 32
CSRF_ENTRY = "csrf"  # the session's entry holding the token the forms send back
CSRF_FIELD = "csrf_token"


# --- The page secret, when no API key is set ---------------------------------------------------
def page_secret(folder: Path) -> bytes:
    """The secret in folder/PAGE_SECRET, created (owner-only, once, atomically) when it is not there yet."""
    path = folder / PAGE_SECRET
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f"{PAGE_SECRET}.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(SECRET_BYTES))
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another worker linked its own first: that one is kept
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    return read_secret(path)


def read_secret(path: Path) -> bytes:
    """The secret of a page-secret file, refused unless only its owner can read it and it holds SECRET_BYTES."""
    try:
        info = path.stat()
        secret = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"The page secret {path.name} cannot be read ({exc.__class__.__name__}).") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"The page secret {path.name} can be read by others; make it readable by its owner only "
                          f"(chmod 600), or delete it to have a new one made.")
    if len(secret) != SECRET_BYTES:
        raise ConfigError(f"The page secret {path.name} does not hold {SECRET_BYTES} bytes; delete it to have a "
                          "new one made.")
    return secret


# --- The CSRF token --------------------------------------------------------------------------
def csrf_token(session) -> str:
    """The token of this session, made on first use; the form sends it back in CSRF_FIELD."""
    token = session.get(CSRF_ENTRY)
    if not isinstance(token, str) or not token:
        token = session[CSRF_ENTRY] = secrets.token_urlsafe(32)
    return token


def csrf_ok(session, sent: str | None) -> bool:
    """Whether a form's token is its session's, compared in constant time."""
    expected = session.get(CSRF_ENTRY)
    if not isinstance(expected, str) or not expected or not sent:
        return False
    return hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8"))


# --- The rate limit --------------------------------------------------------------------------
class RateLimit:
    """At most `attempts` per `seconds` from one address (a sliding window): in the SQLite file `shared` (named
    `form` there) when one is given and can be written, otherwise in this process.

    The clock is time.monotonic: on Linux one clock for every process of the machine (CLOCK_MONOTONIC).
    """

    MAX_ADDRESSES = 10_000  # addresses remembered; past it, those with no attempt in the window are forgotten

    def __init__(self, attempts: int, seconds: float = 60.0, clock=time.monotonic, shared: Path | None = None,
                 form: str = "") -> None:
        self.attempts, self.seconds, self.clock = attempts, seconds, clock
        self.shared, self.form = shared, form
        self._seen: dict[str, collections.deque[float]] = {}
        self._full_until: dict[str, float] = {}  # addresses this process saw fill the window, and until when
        self._lock = threading.Lock()

    def allow(self, address: str) -> bool:
        """Count an attempt from the address; False when it already made `attempts` in the window."""
        now = self.clock()
        if self.shared is not None:
            try:
                allowed, first = self._allow_shared(address, now)
            except (sqlite3.Error, OSError) as exc:
                log.warning("%s form: the rate limit is kept in this worker alone: %s cannot be written (%s)",
                            self.form, self.shared.name, exc)
                self.shared = None
            else:
                if first is not None:
                    with self._lock:
                        self._mark_full(address, first + self.seconds, now)
                return allowed
        with self._lock:
            if len(self._seen) >= self.MAX_ADDRESSES:
                self._forget_before(now - self.seconds)
            times = self._seen.setdefault(address, collections.deque())
            while times and times[0] <= now - self.seconds:
                times.popleft()
            allowed = len(times) < self.attempts
            if allowed:
                times.append(now)
            if len(times) >= self.attempts:
                self._mark_full(address, times[0] + self.seconds, now)
            return allowed

    def blocked_for(self, address: str) -> int:
        """Whole seconds until the address may try again, without counting an attempt: 0 unless this process saw
        it fill the window (with a shared file, another worker's attempts count once this one sees one more)."""
        until = self._full_until.get(address)
        if until is None:
            return 0
        left = until - self.clock()
        if left <= 0:
            self._full_until.pop(address, None)
            return 0
        return int(left) + 1

    def retry_after(self, address: str) -> int:
        """Whole seconds until the address may try again."""
        first = None
        if self.shared is not None:
            with contextlib.suppress(sqlite3.Error, OSError), self._attempts() as connection:
                first = connection.execute("SELECT min(at) FROM attempts WHERE form = ? AND address = ?",
                                           (self.form, address)).fetchone()[0]
        else:
            with self._lock:
                times = self._seen.get(address)
                first = times[0] if times else None
        return max(1, int(first + self.seconds - self.clock()) + 1) if first is not None else 1

    def _allow_shared(self, address: str, now: float) -> tuple[bool, float | None]:
        """(whether the attempt is allowed, the window's first attempt when the window is now full)."""
        with self._attempts() as connection:
            # Out of the window, or ahead of the clock: the monotonic clock starts again at a reboot.
            connection.execute("DELETE FROM attempts WHERE at <= ? OR at > ?", (now - self.seconds, now))
            made, first = connection.execute("SELECT count(*), min(at) FROM attempts WHERE form = ? AND address = ?",
                                             (self.form, address)).fetchone()
            allowed = made < self.attempts
            if allowed:
                connection.execute("INSERT INTO attempts VALUES (?, ?, ?)", (self.form, address, now))
                made, first = made + 1, now if first is None else first
            return allowed, first if made >= self.attempts else None

    @contextlib.contextmanager
    def _attempts(self):
        """One transaction on the shared file (made on first use), one worker at a time."""
        with contextlib.closing(sqlite3.connect(self.shared, timeout=5, isolation_level=None)) as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute("CREATE TABLE IF NOT EXISTS attempts (form TEXT, address TEXT, at REAL)")
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def _mark_full(self, address: str, until: float, now: float) -> None:
        if len(self._full_until) >= self.MAX_ADDRESSES:
            for other in [a for a, end in self._full_until.items() if end <= now]:
                del self._full_until[other]
        self._full_until[address] = until

    def _forget_before(self, start: float) -> None:
        for address in [a for a, times in self._seen.items() if not times or times[-1] <= start]:
            del self._seen[address]
