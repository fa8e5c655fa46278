"""The words for a drift check's estimate without labels, what its labels said once they arrived (the ledger)
and the calibration the estimate rests on, defined once.

The PDF report (riskcore.report), the web page (riskcore.api), the run history (riskcore.ops.history)
and the alerts take them from here. Standard library at import, like riskcore.model.drift_evidence (the
no-op tick imports it through the history).
"""

from __future__ import annotations

from typing import Any

from riskcore.formatting import MISSING, interval, score
from riskcore.model.drift_evidence import MIN_DRIFT_ROWS, TOO_FEW_ROWS, checked_clients, checked_rows

LEDGER_TOLERANCE = 0.05  # an estimate this close to the realized F1 held; further off, the words say by how much


def _clients_text(rows: int, labelled: Any, snapshots: int | None) -> str:
    """ "10,000 clients (6,975 unlabelled; each client's latest snapshot of the window's 13,040 rows)": one bracket,
    and the window's size in rows said as rows, as the realized F1 says its clients as clients."""
    unlabelled = rows - labelled if isinstance(labelled, int) else None
    notes = [f"{unlabelled:,} unlabelled"] if unlabelled and unlabelled != rows else []
    if snapshots is not None:
        notes.append(f"each client's latest snapshot of the window's {snapshots:,} rows")
    said = f"{rows:,} unlabelled clients" if unlabelled == rows else f"{rows:,} clients"
    return said + (f" ({'; '.join(notes)})" if notes else "")


def estimate_text(row: dict[str, Any]) -> str | None:
    """ "estimated F1 0.81 [0.77, 0.85] on 3,000 unlabelled clients; own-market baseline 0.86" (None: no estimate).

    Each client once (estimated_rows, its latest snapshot); where the window held more snapshots, it says how many.
    """
    f1 = row.get("estimated_f1")
    if not isinstance(f1, (int, float)):
        return None
    bounds = interval(row.get("estimated_f1_interval"))
    estimated = int(row.get("estimated_rows") or 0)
    snapshots = row.get("window_rows")
    repeated = checked_clients(row) is not None and isinstance(snapshots, int) and snapshots > estimated
    clients = _clients_text(estimated, row.get("window_labelled"), snapshots if repeated else None)
    text = f"estimated F1 {f1:.2f}{bounds} on {clients}"
    expected = row.get("estimated_positives")
    if isinstance(expected, (int, float)):  # how many leavers the F1 is about: a handful make any F1 noise
        text += f", about {expected:,.0f} of them expected to leave"
    baseline = row.get("estimated_baseline")
    if isinstance(baseline, (int, float)):
        text += f"; own-market baseline {baseline:.2f}"
        if row.get("estimated_drift"):
            text += (f": an estimated drop of {baseline - f1:.2f}, its interval wholly below the baseline "
                     "(a warning: without labels nothing is retrained)")
    if int(row.get("estimated_rows") or 0) < MIN_DRIFT_ROWS:
        text += f" ({TOO_FEW_ROWS}: fewer than {MIN_DRIFT_ROWS}, no warning)"
    return text


def realized_text(row: dict[str, Any]) -> str | None:
    """ "realized F1 0.62 on 2,950 clients once their labels arrived" (None: no estimate to realize)."""
    if row.get("estimated_f1") is None:
        return None
    rows = row.get("realized_rows")
    if not rows:
        return "realized F1 not known yet: no label has arrived for these clients"
    f1 = row.get("realized_f1")
    realized = f"realized F1 {f1:.2f}" if isinstance(f1, (int, float)) else "realized F1 undefined (nobody left)"
    estimated = row.get("estimated_rows")
    if isinstance(estimated, int) and rows < estimated:
        text = f"{realized} on the {rows:,} of the window's {estimated:,} clients whose labels are known"
    else:
        text = f"{realized} on {rows:,} clients whose labels are known"
    if rows < MIN_DRIFT_ROWS:  # 10 labels of 10,000 clients say nothing of the estimate, right or wrong
        text += f" ({TOO_FEW_ROWS} to judge the estimate: fewer than {MIN_DRIFT_ROWS})"
    elif isinstance(f1, (int, float)):
        gap = row["estimated_f1"] - f1
        text += f" (the estimate was off by {gap:+.2f})" if abs(gap) > LEDGER_TOLERANCE else \
            f" (the estimate was within {LEDGER_TOLERANCE:g})"
    return text


def calibration_text(calibration: dict[str, Any] | None) -> str | None:
    """ "calibration on 800 labelled rows: ECE 0.031, Brier score 0.112" (None: not measured)."""
    if not isinstance(calibration, dict) or calibration.get("ece") is None:
        return None
    rows = int(calibration.get("rows") or 0)
    few = f" ({TOO_FEW_ROWS} to judge: fewer than {MIN_DRIFT_ROWS})" if rows < MIN_DRIFT_ROWS else ""
    return (f"calibration on {rows:,} labelled rows: ECE {calibration['ece']:.3f}, "
            f"Brier score {calibration['brier']:.3f}{few}")


def calibrator_text(record: dict[str, Any] | None) -> str | None:
    """The served model's calibrator in words, from its metadata's "calibration" record: "isotonic, fitted on 400
    rows of the test data (testdata.csv): ECE 0.120 → 0.031, Brier score 0.150 → 0.110"; with no calibrator, why
    not and the model's own ECE. None: no record."""
    if not isinstance(record, dict) or not record.get("method"):
        return None
    before, after = record.get("before") or {}, record.get("after") or {}
    rows = f"{int(record['rows']):,} rows" if record.get("rows") else "no rows"
    source = f" of {record['source']}" if record.get("source") else ""
    if source.startswith(" of held-out rows"):  # "85 held-out rows of the new market", not "85 rows of held-out rows"
        rows, source = rows.replace(" rows", " held-out rows"), source[len(" of held-out rows"):]
    elif source.startswith(" of out-of-fold"):  # its source counts its rows: "the out-of-fold log-odds of the 240 ..."
        what, _, why = record["source"].partition(": ")
        rows, source = f"the {what}", f" ({why})" if why else ""

    def figure(values: dict[str, Any], key: str) -> str:
        return MISSING if values.get(key) is None else score(values[key], 3)

    if record["method"] == "model":
        tried = record.get("candidates") or {}
        others = ", ".join(f"{label} {figure(tried[name], 'ece')}" for name, label in
                           (("isotonic", "isotonic"), ("platt", "Platt")) if name in tried)
        return (f"the model's own, measured on {rows}{source}: ECE {figure(before, 'ece')}, Brier score "
                f"{figure(before, 'brier')}, at least as well calibrated as a calibrator fitted on these rows "
                f"(cross-fitted ECE: {others})")
    if record["method"] == "none":
        why = record.get("reason") or "the probabilities are the model's own"
        return (f"none ({why}); measured on {rows}{source}: ECE {figure(before, 'ece')}, "
                f"Brier score {figure(before, 'brier')}")
    arrow = " \N{RIGHTWARDS ARROW} "
    return (f"{record['method']}, fitted on {rows}{source}: ECE {figure(before, 'ece')}{arrow}{figure(after, 'ece')}, "
            f"Brier score {figure(before, 'brier')}{arrow}{figure(after, 'brier')}")


def check_estimate(check: dict[str, Any] | None) -> dict[str, Any] | None:
    """The drift check's own estimate without labels, beside its verdict: the check when it estimated its window,
    else None. Never an earlier run's: after a retrain that was another model's window (the PDF's and /history's
    table keep every window)."""
    return check if check is not None and isinstance(check.get("estimated_f1"), (int, float)) else None


def no_estimate_text(check: dict[str, Any] | None) -> str | None:
    """Why a drift check that took rows estimated nothing without labels (None: it estimated, or took no rows)."""
    if check is None or check_estimate(check) is not None or not checked_rows(check):
        return None
    model = check.get("version_before")
    return (f"not estimated: model {model} has no calibrator to estimate from (its held-out rows were too few "
            "to fit one)" if model else "not estimated: no calibrator to estimate from")


def latest_calibrated(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest labelled window whose calibration carries reliability bins, on MIN_DRIFT_ROWS rows or more (`runs`
    oldest first): the diagram of a 5-row window is 5 bins of one client each, 0 or 1 against a probability."""
    return next((row for row in reversed(runs) if isinstance(row.get("calibration"), dict)
                 and isinstance(row["calibration"].get("reliability"), list) and row["calibration"]["reliability"]
                 and int(row["calibration"].get("rows") or 0) >= MIN_DRIFT_ROWS), None)
