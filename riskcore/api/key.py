"""The API key: from RISK_API_KEY, or from a key file only its owner can read (so no crontab shows it).

The server and its callers (apicalls.py, the automation) resolve it the same way:
RISK_API_KEY, else the file RISK_API_KEY_FILE names, else the file `automation.api_key_file` names.
A key that could never travel in an HTTP header is refused with one sentence, before anything starts.
Standard library only.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

from riskcore.config import Config
from riskcore.contract import API_KEY_ENV, API_KEY_FILE_ENV, ConfigError

MAX_KEY_LENGTH = 256
# A shorter key is refused: 16 characters drawn as secrets.token_urlsafe draws them are 96 bits, out of reach of
# guesses at the 10 wrong keys a minute an address may send (riskcore.api.factory); "secret" or a name is not.
MIN_KEY_LENGTH = 16
MAKE_A_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def check_key(key: str, source: str) -> str:
    """The key, if it can be sent as an X-API-Key header value (printable ASCII without spaces) and is long enough
    not to be guessed."""
    if not key:
        raise ConfigError(f"The API key from {source} is empty.")
    if len(key) > MAX_KEY_LENGTH:
        raise ConfigError(f"The API key from {source} is longer than {MAX_KEY_LENGTH} characters.")
    if not all("!" <= ch <= "~" for ch in key):
        raise ConfigError(f"The API key from {source} holds a space, a line break or a character outside "
                          "printable ASCII; an HTTP header cannot carry it.")
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"The API key from {source} is {len(key)} characters long; use at least {MIN_KEY_LENGTH} "
                          f"random ones ({MAKE_A_KEY} makes one).")
    return key


def read_key_file(path: Path) -> str:
    """A key file's key (one line), refused unless only its owner can read it."""
    try:
        info = path.stat()
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise ConfigError(f"API key file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"API key file {path} cannot be read ({exc.__class__.__name__}).") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"API key file {path} can be read by others; make it readable by its owner only "
                          f"(chmod 600 {path}).")
    return check_key(text.strip("\n"), f"the file {path}")


def key_file(config: Config | None, environ: dict[str, str]) -> Path | None:
    """The key file the API key comes from, None when it comes from $RISK_API_KEY or there is none."""
    if environ.get(API_KEY_ENV):
        return None
    if environ.get(API_KEY_FILE_ENV):
        return Path(environ[API_KEY_FILE_ENV]).absolute()
    if config is not None and config.automation.get("api_key_file"):
        return config.config_file.parent / config.automation["api_key_file"]
    return None


def api_key(config: Config | None = None, environ: dict[str, str] | None = None) -> str | None:
    """The API key this process uses, or None when the API is open."""
    environ = os.environ if environ is None else environ
    if environ.get(API_KEY_ENV):
        return check_key(environ[API_KEY_ENV], f"${API_KEY_ENV}")
    path = key_file(config, environ)
    return read_key_file(path) if path is not None else None


KEY_CHECK_SECONDS = 2.0  # how soon a server notices a changed key file: one stat() per interval, not per request


class KeyWatch:
    """The key a running server checks: read at start, read again when its key file changes.

    The file is looked at (stat) at most every KEY_CHECK_SECONDS and read only when its inode,
    size or modification time changed. A file that becomes unreadable or unsafe raises ConfigError
    on every check until it is fixed: the server refuses requests rather than fall back to an old key.
    """

    def __init__(self, key: str | None, path: Path | None = None, clock=time.monotonic) -> None:
        self._key, self._path, self._clock = key, path, clock
        self._error: ConfigError | None = None
        self._signature = self._stat() if path is not None else None
        self._checked = clock()
        self._lock = threading.Lock()

    @classmethod
    def of(cls, config: Config | None, environ: dict[str, str] | None = None) -> KeyWatch:
        environ = os.environ if environ is None else environ
        return cls(api_key(config, environ), key_file(config, environ))

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            info = self._path.stat()
        except OSError:
            return None
        return info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode

    def current(self) -> str | None:
        """The key now; ConfigError when its file cannot give one."""
        if self._path is not None and self._clock() - self._checked >= KEY_CHECK_SECONDS:
            with self._lock:
                if self._clock() - self._checked >= KEY_CHECK_SECONDS:
                    self._refresh()
        if self._error is not None:
            raise self._error
        return self._key

    def _refresh(self) -> None:
        signature = self._stat()
        if signature != self._signature or self._error is not None:
            try:
                self._key, self._error = read_key_file(self._path), None
            except ConfigError as exc:
                self._error = exc
            self._signature = signature
        self._checked = self._clock()
