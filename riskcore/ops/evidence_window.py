"""The evidence window: the drift check's new rows since its last decision, kept until they suffice.

Under the default drift test ("significance") a model-drift decision needs enough labelled rows
(automation.min_rows) and clients who left (automation.min_positives). A tick with fewer waits:
its new rows are ingested, scored and listed as usual, and kept in the window (evidencewindow.csv,
deployed with the records of a "wait" release), so the next tick adds its new rows to them. A
decision (keep or retrain) empties the window. The course's rule ("raw") has no window: each
check takes the new rows of its own run.

A window that spans ticks can hold several snapshots of a client (two monthly exports of the same
clients). Its rows, every snapshot, are the data-drift statistics' evidence (PSI and KS); a figure
about clients counts each client once (by_client): the estimate without labels and the ledger take
each client's latest snapshot (ingestion's rule: the last one wins), F1 and the calibration each
client's latest labelled snapshot, so an unlabelled export never hides a label the window holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import polars as pl

from riskcore.config import Config
from riskcore.contract import EVIDENCE_WINDOW, ID_COLUMN, REVENUE, TARGET
from riskcore.data.client_csv import read_client_frame, to_pandas
from riskcore.data.snapshots import IngestionResult
from riskcore.data.validation import LABELS_OPTIONAL, labelled
from riskcore.release.load import Deployment, read_deployed


def deployed_window(deployment: Deployment):
    """The window the deployed release carries (a pandas frame), empty when it carries none.

    A header-only window (a release deployed before a run without rows stopped carrying one) is none.
    """
    if EVIDENCE_WINDOW not in deployment.manifest.get("files", {}):
        return None
    data = read_deployed(deployment, EVIDENCE_WINDOW)
    if len(data.splitlines()) < 2:
        return None
    return to_pandas(read_client_frame(data, EVIDENCE_WINDOW, require_target=LABELS_OPTIONAL))


def carried_window(config: Config, deployment: Deployment):
    """The window the served release carries into this check: none where an operator rolled back to that release.

    Its rows were processed by the releases rolled back from (their decisions emptied or carried it), as their
    files were, which count as processed (riskcore.release.operator_state): checked again, they could retrain and
    undo the rollback. Records-only releases published after the rollback carry windows of their own.
    """
    from riskcore.release.operator_state import read_control, rollback_in_force

    rolled = rollback_in_force(read_control(config.prod_deployment_folder), deployment.model_version)
    return None if rolled and rolled.get("to") == deployment.release else deployed_window(deployment)


def new_snapshots(result: IngestionResult):
    """This run's new rows for the window: one per client (its latest snapshot), preceded, where that one is
    unlabelled, by the client's latest labelled snapshot among the new rows (a pandas frame).

    A labelled file and an unlabelled export of its clients in one run keep their labels for F1, as
    they do when they arrive in two runs.
    """
    new = result.new_frame
    earlier = result.new_labelled
    if earlier is None or not len(new):
        return new
    waiting = new.loc[new[TARGET].isna(), ID_COLUMN].astype(str).tolist()
    earlier = to_pandas(earlier.filter(pl.col(ID_COLUMN).is_in(waiting)))
    if not len(earlier):
        return new
    return pd.concat([earlier[[c for c in new.columns if c in earlier.columns]], new], ignore_index=True)


def with_new_rows(window, new_rows):
    """The window with this run's new rows added, every snapshot kept, in the order they arrived (an exact repeat
    once, where it came last: a client's snapshot that returns is its latest again).

    Revenue is left out: it is no feature, so no evidence of drift, and files with and without it mix.
    """
    new_rows = new_rows.drop(columns=[REVENUE], errors="ignore")
    if window is None or len(window) == 0:
        return new_rows
    if len(new_rows) == 0:
        return window
    return pd.concat([window, new_rows[list(window.columns)]], ignore_index=True).drop_duplicates(
        keep="last", ignore_index=True)


@dataclass(frozen=True)
class WindowClients:
    """The window's clients, each once: the rows a figure about clients takes."""

    latest: Any  # each client's latest snapshot, labelled or not: what the estimate and the ledger take
    labelled: Any  # each client's latest labelled snapshot: what F1, its minimums and the calibration take


def latest_per_client(rows):
    """Each client's last row (the rows in the order they arrived: the last one wins), in the rows' order."""
    return rows[~rows[ID_COLUMN].astype(str).duplicated(keep="last").to_numpy()] if len(rows) else rows


def by_client(rows) -> WindowClients:
    """The window's rows per client: its latest snapshot, and its latest labelled one (a pandas frame each).

    Two monthly exports of the same 10,000 clients are 20,000 rows and 10,000 clients; a labelled
    snapshot followed by an unlabelled one keeps its label for F1.
    """
    return WindowClients(latest_per_client(rows), latest_per_client(labelled(rows)))


def window_path(config: Config):
    return config.output_folder / EVIDENCE_WINDOW


def write_window(config: Config, window) -> None:
    """Keep the window beside the ingestion records, for the records release that carries it."""
    from riskcore.files import atomic_path

    with atomic_path(window_path(config)) as tmp:
        window.to_csv(tmp, index=False, float_format="%.0f")  # labels are float where some are empty


def clear_window(config: Config) -> None:
    window_path(config).unlink(missing_ok=True)
