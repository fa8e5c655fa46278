"""The input_database setting: which table, in which PostgreSQL or SQLite database, and how it is named.

config.json names the table in `input_database` (url, table, optional watermark_column) in place
of `input_folder_path`. Passwords never sit there: a PostgreSQL connection follows libpq's own
conventions (PGPASSWORD, ~/.pgpass, PGSERVICE), and what is logged or recorded is the URL without
its user. Messages name the host, port and database, as libpq would resolve them (URL, service
file, PG* variables, defaults). Standard library only: config.py reads it.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

from riskcore.contract import ConfigError

POSTGRES_SCHEMES = ("postgresql", "postgres")
SQLITE_PREFIX = "sqlite:///"
# Bounds on every wait, in seconds, with their defaults: well under the cron's 10 minutes, far above
# what a healthy read takes (1M rows: about 1 s).
WAIT_DEFAULTS = {"statement_timeout_seconds": 120, "lock_timeout_seconds": 30, "keepalive_seconds": 30}
TUNING_DEFAULTS: dict[str, float] = {
    **WAIT_DEFAULTS,
    "watermark_lookback_seconds": 600,  # rows committed up to this long after their watermark was set
    "max_deleted_share": 0.1,  # more of the table's rows gone than this is held back (--allow-removed)
}
DATABASE_KEYS = ("url", "table", "watermark_column", *TUNING_DEFAULTS)
PASSWORD_WAYS = "PGPASSWORD, ~/.pgpass or PGSERVICE"


# --- Where the table is ------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """What a PostgreSQL URL (with libpq's environment defaults) points at, for messages and records."""

    host: str
    port: str
    database: str
    user: str | None
    service: str | None


SERVICE_FILES = ("/etc/postgresql-common/pg_service.conf",)  # Debian's; PGSYSCONFDIR names another folder


def service_settings(name: str, env: dict[str, str]) -> dict[str, str]:
    """A libpq service's host, port, dbname and user, from the service files libpq reads (first one naming it)."""
    import configparser

    personal = env.get("PGSERVICEFILE") or os.path.expanduser("~/.pg_service.conf")
    system = [os.path.join(env["PGSYSCONFDIR"], "pg_service.conf")] if env.get("PGSYSCONFDIR") else SERVICE_FILES
    for path in (personal, *system):
        parser = configparser.ConfigParser(interpolation=None)
        with contextlib.suppress(OSError, configparser.Error, UnicodeDecodeError):
            parser.read(path, encoding="utf-8")
            if parser.has_section(name):
                return {key: parser[name][key] for key in ("host", "port", "dbname", "user") if key in parser[name]}
    return {}


def postgres_endpoint(url: str, env: dict[str, str] | None = None) -> Endpoint:
    """Host, port, database, user and service of a libpq URL; what it leaves out comes, as in libpq, from the
    service file, then PGHOST, PGPORT, PGDATABASE, PGUSER, then the defaults."""
    env = os.environ if env is None else env
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    given = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    first = hosts.split(",")[0]
    host, port = first, ""
    if first.startswith("["):  # [::1]:5432
        host, _, rest = first[1:].partition("]")
        port = rest.removeprefix(":")
    elif ":" in first:
        host, _, port = first.partition(":")
    from_url = {"host": unquote(host), "port": port, "dbname": unquote(parts.path.lstrip("/")),
                "user": unquote(userinfo.partition(":")[0])}
    service = given.get("service") or env.get("PGSERVICE")
    settings = service_settings(service, env) if service else {}
    environment = {"host": env.get("PGHOST"), "port": env.get("PGPORT"), "dbname": env.get("PGDATABASE"),
                   "user": env.get("PGUSER")}

    def value(key: str) -> str | None:
        return given.get(key) or from_url[key] or settings.get(key) or environment[key]

    user = value("user")
    return Endpoint(host=value("host") or "localhost", port=value("port") or "5432",
                    database=value("dbname") or user or "", user=user, service=service)


@dataclass(frozen=True)
class DatabaseSource:
    """The configured table: a PostgreSQL URL (no password) or an SQLite file, and its watermark column."""

    url: str
    table: str
    watermark_column: str | None = None
    sqlite_file: Path | None = None
    statement_timeout_seconds: float = TUNING_DEFAULTS["statement_timeout_seconds"]
    lock_timeout_seconds: float = TUNING_DEFAULTS["lock_timeout_seconds"]
    keepalive_seconds: float = TUNING_DEFAULTS["keepalive_seconds"]
    watermark_lookback_seconds: float = TUNING_DEFAULTS["watermark_lookback_seconds"]
    max_deleted_share: float = TUNING_DEFAULTS["max_deleted_share"]

    @property
    def kind(self) -> str:
        return "sqlite" if self.sqlite_file is not None else "postgresql"

    @property
    def public_url(self) -> str:
        """The URL as logged and recorded: without its user (a password never gets this far)."""
        if self.sqlite_file is not None:
            return self.url
        parts = urlsplit(self.url)
        query = urlencode([(key, value) for key, value in parse_qsl(parts.query) if key not in ("user", "password")])
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}" + (f"?{query}" if query else "")

    @property
    def where(self) -> str:
        """Which database, in words: "PostgreSQL at 127.0.0.1:5432, database crm"."""
        if self.sqlite_file is not None:
            return f"SQLite file {self.sqlite_file}"
        end = postgres_endpoint(self.url)
        service = f" (service {end.service})" if end.service else ""
        return f"PostgreSQL at {end.host}:{end.port}, database {end.database or '(default)'}{service}"

    @property
    def label(self) -> str:
        """The table and its database, as every message names them: 'table "clients" (PostgreSQL at ...)'."""
        return f'table "{self.table}" ({self.where})'

    @property
    def subject(self) -> str:
        """The label opening a sentence."""
        return "T" + self.label[1:]

    @property
    def locator(self) -> str:
        """The table as one string, the same from any config folder: the URL without user (an SQLite file's
        absolute path), then #table."""
        url = f"{SQLITE_PREFIX}{self.sqlite_file}" if self.sqlite_file is not None else self.public_url
        return f"{url}#{self.table}"

    def identity(self) -> dict[str, Any]:
        """What the ingestion record keeps to recognise this source on the next tick."""
        return {"url": self.public_url, "table": self.table, "watermark_column": self.watermark_column}


def _text_key(raw: dict, key: str, where: str, required: bool = True) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        kind = "a non-empty string" + ("" if required else " or null")
        raise ConfigError(f'Config key "input_database.{key}" in {where} must be {kind}.')
    return value


PASSWORD_PARAMETERS = ("password", "sslpassword")  # libpq's; passfile names a file, as ~/.pgpass does: allowed
CONNINFO_PASSWORD = re.compile(r"(?i)(?:^|\s)(?:ssl)?password\s*=")


def holds_password(url: str) -> bool:
    """Whether a libpq URL carries a password anywhere: user:pw@, a password parameter, or a connection
    string or URL nested in a value (`?dbname=postgresql://u:pw@...`, which libpq expands)."""
    parts = urlsplit(url)
    if ":" in parts.netloc.rpartition("@")[0]:
        return True
    values = [unquote(parts.path.lstrip("/"))]
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.strip().lower() in PASSWORD_PARAMETERS:
            return True
        values.append(value)
    for value in values:
        if value.startswith(tuple(f"{scheme}://" for scheme in POSTGRES_SCHEMES)):
            if holds_password(value):
                return True
        elif CONNINFO_PASSWORD.search(value):
            return True
    return False


def _refuse_password(url: str, where: str) -> None:
    """Refuse a URL with a password in it, naming neither the URL nor the password."""
    if holds_password(url):
        raise ConfigError(f'Config key "input_database.url" in {where} holds a password; passwords never sit in '
                          f"the config: use {PASSWORD_WAYS}.")


def _tuning(raw: dict, where: str) -> dict[str, float]:
    """The waits' bounds, the watermark's look-back and the deletion share, checked."""
    tuning = {}
    for key, default in TUNING_DEFAULTS.items():
        value = raw.get(key, default)
        share = key == "max_deleted_share"
        low, high = (0, 1) if share else (0 if key == "watermark_lookback_seconds" else 1, 86_400)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            unit = "a share" if share else "a number of seconds"
            raise ConfigError(f'Config key "input_database.{key}" in {where} must be {unit} from {low} to {high:,}.')
        tuning[key] = value
    return tuning


def parse_input_database(raw: Any, base: Path, where: str) -> DatabaseSource:
    """Validate the config's `input_database` object; an SQLite path resolves against `base` (the config's folder)."""
    if not isinstance(raw, dict):
        raise ConfigError(f'Config key "input_database" in {where} must be an object with "url" and "table".')
    unknown = sorted(set(raw) - set(DATABASE_KEYS))
    if unknown:
        raise ConfigError(f'Unknown config key "input_database.{unknown[0]}" in {where}.')
    url = _text_key(raw, "url", where)
    table = _text_key(raw, "table", where)
    watermark = _text_key(raw, "watermark_column", where, required=False)
    if table.count(".") > 1:
        raise ConfigError(f'Config key "input_database.table" in {where} must be a table name or schema.table.')
    if url.startswith(SQLITE_PREFIX):
        path = (base / url[len(SQLITE_PREFIX):]).resolve()
        if not path.is_file():
            raise ConfigError(f'Config key "input_database.url" in {where} names an SQLite file that does not '
                              f"exist: {path}.")
        return DatabaseSource(url, table, watermark, sqlite_file=path, **_tuning(raw, where))
    if urlsplit(url).scheme not in POSTGRES_SCHEMES:
        raise ConfigError(f'Config key "input_database.url" in {where} must start with postgresql:// or '
                          f"{SQLITE_PREFIX}.")
    _refuse_password(url, where)
    try:
        postgres_endpoint(url)
    except ValueError:
        raise ConfigError(f'Config key "input_database.url" in {where} is not a valid URL.') from None
    return DatabaseSource(url, table, watermark, **_tuning(raw, where))
