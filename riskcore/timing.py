"""Step timings: the real ingestion, training and scoring, run against a scratch copy of the output folders.

The steps read the configured input and test data but write only under a temporary folder: the
deployed model, the production folder and the configured outputs are never touched. The libraries
are imported with this module, before any clock starts, so the figures are the steps' own work.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path

from riskcore.config import Config
from riskcore.contract import UserError
from riskcore.evaluation import score_trained
from riskcore.ingest import ingest
from riskcore.model import train

log = logging.getLogger(__name__)

STEPS = {"ingestion": ingest, "training": train, "scoring": score_trained}


def scratch_config(config: Config, folder: Path) -> Config:
    """The same settings with every folder the steps write to moved under `folder`."""
    return config.replace(
        output_folder=folder / "ingested",
        output_model_folder=folder / "models",
        prod_deployment_folder=folder / "production",
    )


def time_steps_once(config: Config) -> dict[str, float]:
    """Run ingestion, training and scoring once with `config`; seconds per step."""
    seconds = {}
    for name, run_step in STEPS.items():
        start = time.perf_counter()
        run_step(config)
        seconds[name] = time.perf_counter() - start
    return seconds


def execution_time(config: Config, repeat: int = 1) -> dict[str, float]:
    """Seconds taken by ingestion, training and scoring: the median of `repeat` real runs."""
    if repeat < 1:
        raise UserError("The number of timing runs must be at least 1.")
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="risk-timing-") as tmp:
        scratch = scratch_config(config, Path(tmp))
        for number in range(1, repeat + 1):
            runs.append(time_steps_once(scratch))
            log.info("timing run %d of %d: %s", number, repeat,
                     ", ".join(f"{name} {seconds:.3f} s" for name, seconds in runs[-1].items()))
    return {name: round(statistics.median(run[name] for run in runs), 4) for name in STEPS}
