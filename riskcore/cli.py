"""The command-line edge every script shares: options, logging, and one sentence per user error."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable

from riskcore.contract import EXIT_FAILED, EXIT_OK, UserError


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (tests swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # the status a Unix tool has when the reader of its output went away

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(verbose: bool = False) -> None:
    """Configure logging for an entry point: one line per event on stderr."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if any(isinstance(h, _StderrHandler) for h in root.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)


def argument_parser(description: str | None) -> argparse.ArgumentParser:
    """An argparse parser with the options every script shares (--config, --verbose)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=None, metavar="PATH",
                        help="config file (default: config.json beside the scripts)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    return parser


def whole_number_argument(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `least` (--rows 1, --seed 0), else an error naming the value."""
    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = least - 1
        if number < least:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {least}, not {text!r}")
        return number
    return parse


def os_error_text(exc: OSError) -> str:
    """An OSError in words, naming its file when it has one: "/x/y.csv: No space left on device"."""
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason


def run_cli(body: Callable[[], int | None]) -> int:
    """Run a command body; a user error becomes one sentence on stderr and its exit status."""
    try:
        status = body()
    except BrokenPipeError:  # `--history | head`: the reader has what it wanted, which is no error
        silence_stdout()
        return EXIT_BROKEN_PIPE
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a full disk, a read-only folder: the environment, not a bug
        print(f"error: {os_error_text(exc)}.", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    return EXIT_OK if status is None else status


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of what is left does not fail again.

    Python's documented way out of a broken pipe (library/signal.html, "Note on SIGPIPE").
    """
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a stand-in stdout (tests) has no descriptor to point anywhere
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)
