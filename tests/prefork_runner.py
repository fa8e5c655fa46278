"""Run fullprocess.main in a fresh child process per job, forked from a process that imported the libraries once.

The kill tests run fullprocess dozens of times; importing pandas, scikit-learn and matplotlib
anew costs more than the runs themselves. This runner imports them once, then forks one child
per job: each run is still its own process, with its own environment, working directory and
stderr file, and RISK_KILL_AT still SIGKILLs it at the named point.

Protocol: one JSON job per line on stdin, {"argv": [...], "cwd": "...", "env": {...}, "stderr": "..."};
one JSON line per job on stdout, {"status": <exit status, or -signal when killed>, "cpu_seconds": ...}; the child's
stdout and stderr both go to the job's file. Exits at EOF.
Usage (from a test): python tests/prefork_runner.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def preload() -> None:
    """Import what a full run imports, so that every forked child starts with it loaded."""
    sys.path.insert(0, str(ROOT))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import pandas  # noqa: F401
    import requests  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.metrics  # noqa: F401

    import apicalls  # noqa: F401
    import deployment  # noqa: F401
    import diagnostics  # noqa: F401
    import fullprocess  # noqa: F401
    import ingestion  # noqa: F401
    import reporting  # noqa: F401
    import scoring  # noqa: F401
    import training  # noqa: F401


def child(job: dict) -> None:
    """In the forked child: become the job's process, run fullprocess, exit with its status."""
    import logging
    import traceback

    os.chdir(job["cwd"])
    os.environ.update(job["env"])
    fd = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)  # stdout is the runner's answer channel: the child must not write to it
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.argv = [str(ROOT / "fullprocess.py"), *job["argv"]]
    status = 1
    try:
        import fullprocess

        status = fullprocess.main(job["argv"])
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def main() -> int:
    preload()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(job)
        _, wait_status, usage = os.wait4(pid, 0)
        print(json.dumps({"status": os.waitstatus_to_exitcode(wait_status),
                          "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
