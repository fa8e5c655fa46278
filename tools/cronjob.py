"""Install, remove or print this project's crontab line (cronjob.txt), every path quoted for the shell and cron.

Reads:  cronjob.txt (its @PROJECT_DIR@, @CONFIG@ and @LOG@ placeholders, and its schedule), the user's crontab
Writes: the user's crontab (install: one line per config, replaced if present; uninstall: removed)
Standard library only: `make cron` and `make uncron` run it with the system Python.
Examples: python3 tools/cronjob.py install --project "/srv/risk proj & co" --config "/srv/risk proj & co/config.json"
              --log "/srv/risk proj & co/logs/cron.log"
          python3 tools/cronjob.py uninstall --config "/srv/risk proj & co/config.json"
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "cronjob.txt"
SCHEDULE_FIELDS = 5


def cron_quote(path: str) -> str:
    """A path as one shell word that cron passes on unchanged: cron turns a bare % into a newline."""
    return shlex.quote(path).replace("%", "\\%")


def cron_line(template: str, project: str, config: str, log: str, schedule: str | None = None) -> str:
    """The template's line with the placeholders filled, each path a single quoted word."""
    fields = template.strip().split(None, SCHEDULE_FIELDS)
    command = fields[SCHEDULE_FIELDS]
    for placeholder, value in (("@PROJECT_DIR@", project), ("@CONFIG@", config), ("@LOG@", log)):
        command = command.replace(placeholder, cron_quote(value))
    when = schedule if schedule is not None else " ".join(fields[:SCHEDULE_FIELDS])
    if len(when.split()) != SCHEDULE_FIELDS:
        raise ValueError(f"a cron schedule has {SCHEDULE_FIELDS} fields, not {when!r}")
    return f"{when} {command}"


def mark(config: str) -> str:
    """The comment that ends this config's line: how install and uninstall find it again."""
    return f"# risk-assessment {cron_quote(config)}"


def read_crontab() -> list[str]:
    listed = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return listed.stdout.splitlines() if listed.returncode == 0 else []  # 1: no crontab yet


def write_crontab(lines: list[str]) -> None:
    subprocess.run(["crontab", "-"], input="".join(f"{line}\n" for line in lines), text=True, check=True)


def others(lines: list[str], config: str) -> list[str]:
    return [line for line in lines if not line.endswith(mark(config))]


CRON_DAEMONS = {"cron", "crond", "cronie"}  # Debian's and Busybox's, and Fedora's names for the daemon


def cron_daemon_running(proc: Path = Path("/proc")) -> bool | None:
    """Whether a cron daemon runs on this machine (Linux's /proc), or None when it cannot be told."""
    try:
        entries = [entry for entry in proc.iterdir() if entry.name.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            if (entry / "comm").read_text(encoding="utf-8", errors="replace").strip() in CRON_DAEMONS:
                return True
        except OSError:
            continue  # a process that ended meanwhile
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("install", "uninstall", "line"))
    parser.add_argument("--project", default=str(TEMPLATE.parent), help="the project folder (absolute)")
    parser.add_argument("--config", required=True, help="the config file (absolute)")
    parser.add_argument("--log", default=None, help="where the job's output goes (absolute; install, line)")
    parser.add_argument("--schedule", default=None, help="five cron fields (default: cronjob.txt's)")
    args = parser.parse_args(argv)
    try:
        if args.action == "uninstall":
            write_crontab(others(read_crontab(), args.config))
            print(f"removed the cron line for {args.config}")
            return 0
        if args.log is None:
            raise ValueError("--log is needed to write the line")
        line = cron_line(TEMPLATE.read_text(encoding="utf-8"), args.project, args.config, args.log, args.schedule)
        if args.action == "line":
            print(line)
            return 0
        write_crontab([*others(read_crontab(), args.config), line])
        print(f"installed: {line}")
        if cron_daemon_running() is False:  # the walk's line sat in the crontab and never ran
            print("warning: no cron daemon is running, so the line does not run until one starts (as root: "
                  "service cron start, or systemctl enable --now cron).", file=sys.stderr)
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
