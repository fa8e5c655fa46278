"""The dependency check: each package of requirements.txt, pinned, installed and latest version.

Requirement lines are parsed by `packaging` (as pip does), versions compared with
packaging.version. The latest versions come from `pip index versions`, asked in parallel under one
deadline, so a machine without a reachable package index finishes in seconds and says why the
versions are unknown.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from riskcore.contract import PROJECT_DIR, UserError

log = logging.getLogger(__name__)

REQUIREMENTS = PROJECT_DIR / "requirements.txt"
DEPENDENCY_TIMEOUT = 10.0  # seconds for the whole dependency check, however many packages
UNKNOWN = "unknown"
NOT_INSTALLED = "not installed"
NO_VERSION = "pip gave no version"
COMMENT = re.compile(r"(^|\s+)#.*$")  # pip's rule: a comment starts at a # after whitespace
INCLUDE = ("-r", "--requirement")


# --- requirements.txt --------------------------------------------------------------------------
def pinned_version(requirement: Requirement) -> str:
    """The version an exact pin names, else the specifier as written, else "unpinned"."""
    specifiers = list(requirement.specifier)
    if len(specifiers) == 1 and specifiers[0].operator == "==" and "*" not in specifiers[0].version:
        return specifiers[0].version
    return str(requirement.specifier) or "unpinned"


def parse_requirements(path: Path, seen: set[Path] | None = None) -> list[tuple[str, str]]:
    """(name, pinned version or specifier) for each requirement that applies here, following -r includes."""
    seen = seen if seen is not None else set()
    path = path.resolve()
    if path in seen:
        return []
    seen.add(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(
            f"Requirements file {path} cannot be read ({exc.strerror or exc.__class__.__name__})."
        ) from None
    found: list[tuple[str, str]] = []
    for raw in lines:
        line = COMMENT.sub("", raw).strip()
        option, _, argument = line.partition(" ")
        if option in INCLUDE and argument.strip():
            found.extend(parse_requirements(path.parent / argument.strip(), seen))
            continue
        if not line or line.startswith("-"):
            continue  # blank, or a pip option such as --index-url
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            log.debug("skipping requirements line %r: not a package requirement", raw)
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            log.debug("skipping %s: its marker (%s) excludes this environment", requirement.name, requirement.marker)
            continue
        found.append((requirement.name, pinned_version(requirement)))
    return found


def installed_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return NOT_INSTALLED


def version_status(installed: str, latest: str) -> str:
    """"up to date", "outdated", "unknown" or "not installed"."""
    if installed == NOT_INSTALLED:
        return installed
    if latest == UNKNOWN:
        return UNKNOWN
    try:
        return "outdated" if Version(installed) < Version(latest) else "up to date"
    except InvalidVersion:
        return "up to date" if installed == latest else "outdated"


# --- Asking pip for the latest versions --------------------------------------------------------
FETCH_FAILURE = re.compile(r"Could not fetch URL (\S+): (.*?) - skipping")
ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
ANSWER = re.compile(r"^(\S+)\s*\(([^)]+)\)\s*$", re.MULTILINE)  # "numpy (2.4.6)"


def pip_failure(stderr: str) -> str:
    """Why pip found no version, in one short phrase."""
    fetch = FETCH_FAILURE.search(stderr)
    if fetch:
        host = urlsplit(fetch.group(1)).netloc or fetch.group(1)
        detail = fetch.group(2)
        errno = ERRNO.search(detail)
        if errno:
            detail = errno.group(1).strip()
        elif "timed out" in detail:
            detail = "timed out"
        return f"package index {host} unreachable ({detail[:80]})"
    errors = [line[len("ERROR: "):] for line in stderr.splitlines() if line.startswith("ERROR: ")]
    if errors:
        return f"pip: {errors[-1][:120]}"
    return NO_VERSION


def ask_pip(name: str, deadline: float, verbose: bool = False) -> subprocess.CompletedProcess | str:
    """Run `pip index versions name` before `deadline`; the finished process, or why it did not finish."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return "no time left for the check"
    command = [sys.executable, "-m", "pip", "index", "versions", name,
               "--disable-pip-version-check", "--no-input",
               "--timeout", f"{max(1.0, min(remaining, 10.0)):.1f}", *(["-vv"] if verbose else [])]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=remaining, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        # One reason for every package the deadline cut short: with the seconds each had left in it, the PDF
        # listed nine notes ("within 0.0 s" ... "within 4.9 s") for one fact.
        return "no answer from the package index before the check's time ran out"
    except OSError as exc:
        return f"pip could not be started ({exc.strerror or exc.__class__.__name__})"


def read_latest(name: str, answer: subprocess.CompletedProcess | str) -> tuple[str, str | None]:
    """The latest version in pip's answer about `name`, or UNKNOWN and why."""
    if isinstance(answer, str):
        return UNKNOWN, answer
    wanted = canonicalize_name(name)  # pip may spell the name differently
    # The last match: pip prints its answer after any debug output.
    versions = [version for spelled, version in ANSWER.findall(answer.stdout) if canonicalize_name(spelled) == wanted]
    if answer.returncode == 0 and versions:
        return versions[-1], None
    if "No module named pip" in answer.stderr:
        return UNKNOWN, "pip is not installed in this environment"
    return UNKNOWN, pip_failure(answer.stderr)


def latest_versions(names: list[str], deadline: float) -> list[tuple[str, str | None]]:
    """(latest version or UNKNOWN, reason) per package, asked before `deadline`.

    The first package is asked alone and verbosely: when pip finds nothing, it says why only in
    its debug output. When that reason is not about the package (the index cannot be reached, no
    time is left, no pip), the others are not asked: each pip costs most of a second of CPU, and
    every one would fail the same way. Otherwise the others are asked in parallel.
    """
    first = ask_pip(names[0], deadline, verbose=True)
    version, reason = read_latest(names[0], first)
    if version == UNKNOWN and not isinstance(first, str) and "No module named pip" not in first.stderr:
        reason = pip_failure(first.stdout + first.stderr)
    if version == UNKNOWN and not (reason.startswith("pip: ") or reason == NO_VERSION):
        return [(UNKNOWN, reason)] * len(names)
    rest = names[1:]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(rest)))) as pool:
        answers = list(pool.map(lambda name: ask_pip(name, deadline), rest))
    return [(version, reason), *(read_latest(name, answer) for name, answer in zip(rest, answers, strict=True))]


def outdated_packages_list(requirements: Path | str | None = None,
                           timeout: float = DEPENDENCY_TIMEOUT) -> list[dict[str, Any]]:
    """For each package in requirements.txt: pinned, installed and latest version, and its status.

    A package whose latest version pip could not find within `timeout` seconds gets "unknown"
    and the reason.
    """
    packages = parse_requirements(Path(requirements) if requirements is not None else REQUIREMENTS)
    if not packages:
        return []
    latest = latest_versions([name for name, _ in packages], time.monotonic() + timeout)
    rows = [dependency_row(name, pinned, newest, reason)
            for (name, pinned), (newest, reason) in zip(packages, latest, strict=True)]
    unknown = [row for row in rows if row["latest"] == UNKNOWN]
    if unknown:
        log.warning("latest version unknown for %d of %d packages: %s", len(unknown), len(rows),
                    unknown[0]["reason"])
    return rows


def dependency_row(name: str, pinned: str, latest: str, reason: str | None) -> dict[str, Any]:
    """One package's row: pinned, installed (asked now) and latest version, and its status."""
    installed = installed_version(name)
    return {"package": name, "pinned": pinned, "installed": installed, "latest": latest,
            "status": version_status(installed, latest), "reason": reason}


def rows_from_earlier_answer(earlier: list[dict[str, Any]],
                             requirements: Path | None = None) -> list[dict[str, Any]] | None:
    """Today's rows with the latest versions an earlier answer of the package index gave.

    Pins and installed versions are read now; None when that answer lacks a package now required.
    """
    latest = {canonicalize_name(str(row.get("package"))): (row.get("latest"), row.get("reason")) for row in earlier
              if isinstance(row, dict) and isinstance(row.get("latest"), str)}
    packages = parse_requirements(requirements if requirements is not None else REQUIREMENTS)
    if not all(canonicalize_name(name) in latest for name, _ in packages):
        return None
    return [dependency_row(name, pinned, *latest[canonicalize_name(name)]) for name, pinned in packages]
