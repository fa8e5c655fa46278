"""Step timings: the real ingestion, training and scoring, run against a scratch copy of the output folders.

The steps read the configured input and test data but write only under a temporary folder: the
deployed model, the production folder and the configured outputs are never touched. The libraries
are imported with this module, before any clock starts, so the figures are the steps' own work.
The steps' own log lines are marked "timing run:" and shown with --verbose only: the model they
train is thrown away, and no line of it may read like the real training.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from riskcore.config import Config
from riskcore.contract import UserError
from riskcore.data.folder_ingest import ingest
from riskcore.model.evaluation import score_trained
from riskcore.model.training import train

log = logging.getLogger(__name__)

STEPS = {"ingestion": ingest, "training": train, "scoring": score_trained}


def scratch_config(config: Config, folder: Path) -> Config:
    """The same settings with every folder the steps write to moved under `folder`."""
    return config.replace(
        output_folder=folder / "ingested",
        output_model_folder=folder / "models",
        prod_deployment_folder=folder / "production",
    )


class TimingRunLines(logging.Filter):
    """The steps' own log lines during a timing run: marked "timing run: ", and kept for --verbose only.

    A throw-away model trained for the clock must never read like the real training; warnings stay
    visible, marked.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == __name__:
            return True
        if not getattr(record, "timing_run", False):  # each handler sees the same record: mark it once
            record.timing_run = True
            record.msg = f"timing run: {record.msg}"
            if record.levelno <= logging.INFO:
                record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return record.levelno > logging.INFO or logging.getLogger().isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def marked_as_timing_runs() -> Iterator[None]:
    """While the steps run for the clock, every log handler marks their lines (TimingRunLines)."""
    handlers = list(logging.getLogger().handlers)
    marker = TimingRunLines()
    for handler in handlers:
        handler.addFilter(marker)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(marker)


def time_steps_once(config: Config) -> tuple[dict[str, float], dict[str, object]]:
    """Run ingestion, training and scoring once with `config`: seconds and result per step."""
    seconds, results = {}, {}
    for name, run_step in STEPS.items():
        start = time.perf_counter()
        results[name] = run_step(config)
        seconds[name] = time.perf_counter() - start
    return seconds, results


def describe_timing_run(seconds: dict[str, float], results: dict[str, object]) -> str:
    """What one timing run did, so that no line of it reads as the real training."""
    trained = results.get("training")
    rows = f" on {trained['training_rows']:,} rows" if isinstance(trained, dict) and "training_rows" in trained else ""
    score = results.get("scoring")
    scored = f" (F1 {score:.4f})" if isinstance(score, float) else ""
    return (f"ingestion {seconds['ingestion']:.3f} s; training {seconds['training']:.3f} s (trained a throw-away "
            f"model{rows}, never deployed); scoring {seconds['scoring']:.3f} s{scored}")


def execution_time(config: Config, repeat: int = 1) -> dict[str, float]:
    """Seconds taken by ingestion, training and scoring: the median of `repeat` real runs."""
    if repeat < 1:
        raise UserError("The number of timing runs must be at least 1.")
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="risk-timing-") as tmp, marked_as_timing_runs():
        scratch = scratch_config(config, Path(tmp))
        for number in range(1, repeat + 1):
            seconds, results = time_steps_once(scratch)
            runs.append(seconds)
            log.info("timing run %d of %d: %s", number, repeat, describe_timing_run(seconds, results))
    return {name: round(statistics.median(run[name] for run in runs), 4) for name in STEPS}
