"""A throwaway PostgreSQL server for the tests (and the benchmarks): Debian's binaries, a temporary
cluster, a free loopback port, an unprivileged user, stopped afterwards.

`make test` installs the `postgresql` package when run as root (as it installs cron). The
server runs initdb and pg_ctl from /usr/lib/postgresql/<version>/bin as `nobody` when the tests
run as root (PostgreSQL refuses to run as root), as the current user otherwise. It listens on
127.0.0.1 only, with its socket in its own folder, and asks for a password (scram-sha-256), so a
wrong password is refused as on a real server. fsync is off: nothing here needs to survive a crash.

Standard library only (the benchmarks start servers too): SQL goes through Debian's psql.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

UNPRIVILEGED_USER = "nobody"
SUPERUSER = "risk"
PASSWORD = "s3cret-Pw-for-tests"
MISSING = "the postgresql package is not installed (make test installs it as root)"


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env() -> dict[str, str]:
    """A clean environment: none of the caller's PG* settings reach initdb or the server."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    return env


@dataclass
class PostgresServer:
    """One cluster in `folder`, serving 127.0.0.1:`port`; `start`, `stop`, `connect`, `url`."""

    folder: Path
    port: int
    bin: Path
    run_as: str | None  # the user the server runs as when this process is root

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        """The connection URL, without the password (it comes from PGPASSWORD, as docs/database.md says)."""
        return f"postgresql://{user}@{self.host}:{self.port}/{database}"

    def client_env(self, password: str = PASSWORD) -> dict[str, str]:
        """Environment variables a client needs: the password, and no ~/.pgpass or service file of the caller."""
        return {"PGPASSWORD": password, "PGPASSFILE": os.devnull, "PGSERVICEFILE": os.devnull}

    def _run(self, *args: str, timeout: float = 60) -> None:
        user = {"user": self.run_as, "group": pwd.getpwnam(self.run_as).pw_gid, "extra_groups": []} \
            if self.run_as else {}
        done = subprocess.run([str(self.bin / args[0]), *args[1:]], env=server_env(), cwd=self.folder,
                              capture_output=True, text=True, timeout=timeout, **user)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} {args[1:3]} exited {done.returncode}: {done.stderr[-2000:]}{tail}")

    def init(self) -> None:
        pwfile = self.folder / "pwfile"
        pwfile.write_text(PASSWORD + "\n", encoding="utf-8")
        self._chown(pwfile)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--pwfile", str(pwfile), "--auth",
                  "scram-sha-256", "--encoding", "UTF8", "--locale", "C", "--no-instructions", "--no-sync")
        pwfile.unlink()

    def start(self) -> None:
        options = (f"-c listen_addresses={self.host} -c port={self.port} -c unix_socket_directories={self.folder} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", options, "-w",
                  "-t", "60", "start", timeout=90)

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def _chown(self, path: Path) -> None:
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def psql(self, sql: str, database: str = "postgres", password: str = PASSWORD,
             check: bool = True) -> subprocess.CompletedProcess:
        """Run SQL (psql's meta-commands too, such as \\copy) as the superuser; stops at the first error."""
        return subprocess.run([str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.url(database)],
                              input=sql, env={**server_env(), **self.client_env(password)}, capture_output=True,
                              text=True, timeout=600, check=check)

    def create_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}"; CREATE DATABASE "{name}";')


def start_server(parent: str | None = None) -> PostgresServer:
    """Init and start a new cluster in a temporary folder (below `parent`, default the system's)."""
    bin_folder = postgres_bin()
    if bin_folder is None:
        raise FileNotFoundError(MISSING)
    run_as = UNPRIVILEGED_USER if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="risk-pg-", dir=parent))
    server = PostgresServer(folder, free_port(), bin_folder, run_as)
    try:
        server._chown(folder)
        server.init()
        try:
            server.start()
        except RuntimeError:  # the port was taken meanwhile: once more on another
            server.port = free_port()
            server.start()
    except BaseException:
        remove(server)
        raise
    return server


def remove(server: PostgresServer) -> None:
    """Stop the server (immediately) and delete its cluster."""
    with contextlib.suppress(Exception):
        server.stop(mode="immediate")
    shutil.rmtree(server.folder, ignore_errors=True)


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    server = start_server()
    try:
        yield server
    finally:
        remove(server)


def require_postgres() -> None:
    if postgres_bin() is None:
        from conftest import system_missing

        system_missing(MISSING)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server for the session; each test takes a database of its own (pg_database)."""
    require_postgres()
    with running_server() as server:
        yield server


@pytest.fixture
def pg_database(postgres_server: PostgresServer, request) -> str:
    """A fresh, empty database on the session's server; its name."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    postgres_server.create_database(name)
    return name


@pytest.fixture
def pg_env(postgres_server, monkeypatch):
    """The password as libpq's PGPASSWORD (no ~/.pgpass or service file of the machine's)."""
    for key, value in postgres_server.client_env().items():
        monkeypatch.setenv(key, value)
    for key in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE"):
        monkeypatch.delenv(key, raising=False)
    return postgres_server


@pytest.fixture
def own_postgres_server() -> Iterator[PostgresServer]:
    """A server of the test's own, for tests that stop it."""
    require_postgres()
    with running_server() as server:
        yield server
