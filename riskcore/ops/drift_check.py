"""The drift check of a run with new data: keep, retrain or wait, and the evidence behind the verdict.

The deployed model's F1 on the new rows against its baseline (the course's rule, automation.drift_test
"raw"), or the significance test on the evidence window (riskcore.model.drift); the window's performance
estimated from calibrated probabilities, and the estimate ledger kept beside it. riskcore.ops.run calls
check_drift; what it decides is the run's (riskcore.ops.run_record.Run).
"""

from __future__ import annotations

import logging

import numpy as np

from riskcore.config import Config
from riskcore.contract import ESTIMATE_LEDGER, ID_COLUMN, SCORE_FILE, TARGET, TEST_DATA
from riskcore.data.folder_ingest import IngestionResult
from riskcore.data.validation import features_of, labelled
from riskcore.formatting import plural
from riskcore.model.calibration import calibrated_probability, calibration_figures, estimate_performance, estimated_drop
from riskcore.model.drift import Counts, data_drift, drift_verdict, significant_drop
from riskcore.model.drift_evidence import NEW_ROWS_POINTS, baseline_where, data_drift_text, quantiles_of
from riskcore.model.estimate_words import calibration_text, estimate_text
from riskcore.model.evaluation import baseline_measurement, predict, read_score, read_test_data, score_model
from riskcore.ops.calls import called_clients, calls_path
from riskcore.ops.evidence_window import WindowClients, by_client, carried_window, new_snapshots, with_new_rows
from riskcore.ops.history import record_realized, score_history
from riskcore.ops.ledger import record_window, settle
from riskcore.ops.run_record import AUTOMATION_LOGGER, Run, history_path
from riskcore.release.load import (
    Deployment,
    deployed_metadata,
    load_deployed_calibrator,
    load_deployed_model,
    verify_release,
)

log = logging.getLogger(AUTOMATION_LOGGER)

NO_LABELS = 'no labels yet: the new rows have no "exited" values, so F1 cannot be measured; the model is kept'
NO_NEW_ROWS = "no new rows to check: the model is kept"


def labelled_f1(model, frame) -> tuple[float | None, int]:
    """The model's F1 on a frame's labelled rows (None when none is labelled), and how many rows that is."""
    rows = labelled(frame)
    return (score_model(model, rows) if len(rows) else None), len(rows)


def describe_f1(f1: float | None) -> str:
    return "no labelled rows" if f1 is None else f"F1 {f1:.4f}"


def deployed_baseline(config: Config, deployment: Deployment, model) -> dict:
    """The served model's own-market baseline (modelmetadata.json); a release made before baselines were
    kept is measured now on the test data, as its first deployment was."""
    baseline = deployed_metadata(deployment).get("baseline")
    return baseline or baseline_measurement(model, read_test_data(config), f"the test data, {TEST_DATA}")


def too_little_evidence(counts: Counts, min_rows: int, min_positives: int) -> str | None:
    """What the window lacks for the significance test, in words (each minimum it misses); None: enough.

    Only the minimums missed are named: "355 of 200 labelled rows" read as a shortfall when the
    window had enough rows and too few clients who left.
    """
    missing = []
    if counts.rows < min_rows:
        missing.append(f"{plural(counts.rows, 'labelled row')} of the {min_rows:,} needed (automation.min_rows)")
    if counts.positives < min_positives:
        who = plural(counts.positives, "client who left", "clients who left")
        missing.append(f"{who} of the {min_positives:,} needed (automation.min_positives)")
    undefined = "; nobody left, so F1 is undefined: no F1 verdict" if counts.rows and not counts.positives else ""
    return f"the window has {' and '.join(missing)}{undefined}" if missing else None


def significance_check(config: Config, run: Run, deployment: Deployment, model, known, window_rows: int) -> str:
    """The default test on the evidence window's labelled rows (each client's latest labelled snapshot): "drift",
    "keep", or "wait" for more labelled rows.

    A window of no row at all (the run's new files were all rejected) has nothing to wait for: a "wait"
    there deployed a header-only window that every later check refused.
    """
    auto = config.automation
    counts = Counts.of(known[TARGET].to_numpy() == 1, predict(model, known) == 1) if len(known) else Counts(0, 0, 0, 0)
    baseline = deployed_baseline(config, deployment, model)
    run.baseline, run.baseline_source = baseline["f1"], baseline["source"]
    run.f1_new_data = counts.f1  # None without a client who left: F1 is undefined there, never 0
    run.drift_test = "significance"
    if not window_rows:
        run.drift_verdict = NO_NEW_ROWS
        return "keep"
    short = too_little_evidence(counts, auto["min_rows"], auto["min_positives"])
    if short:
        run.drift_verdict = f"waiting for more labelled rows: {short}"
        return "wait"
    test = significant_drop(Counts.from_dict(baseline["counts"]), counts, auto["min_drop"], auto["alpha"],
                            baseline_where(baseline))
    run.drift_p_value, run.drift_verdict = test.p_value, test.reason
    return "drift" if test.drift else "keep"


def estimate_window(config: Config, run: Run, deployment: Deployment, model, clients: WindowClients, new,
                    ledger: bool = True, labels_found_drift: bool = False) -> None:
    """The window's performance estimated from calibrated probabilities, its calibration where labelled, and the ledger.

    Every client of the window counts once, labelled or not: its latest snapshot
    (riskcore.model.calibration.estimate_performance); an estimated drop beyond automation.min_drop
    with the interval wholly below the own-market baseline, in a window where some clients lack a
    label, is the warning `estimated_drift`, which never retrains by itself (in a window labelled
    throughout, or whose labelled rows found model drift, the labels' own verdict decides). Each
    client's latest labelled snapshot measures the calibration (ECE, Brier score), as it does F1. The
    ledger (riskcore.ops.ledger) settles earlier windows whose clients' labels arrived in this run's
    new rows, and keeps this window's clients.
    """
    rows, known = clients.latest, clients.labelled
    if not len(rows):
        return
    calibrator = load_deployed_calibrator(deployment)
    log_odds = model.decision_function(features_of(rows))
    predictions = predict(model, rows)  # the model's own classes: calibration changes no prediction
    probabilities = calibrated_probability(calibrator, log_odds)
    if len(known):
        run.calibration = calibration_figures(
            calibrated_probability(calibrator, model.decision_function(features_of(known))), known[TARGET].to_numpy())
    if calibrator is not None and calibrator.method != "none":
        estimate = estimate_performance(probabilities, predictions, log_odds)
        baseline = deployed_baseline(config, deployment, model)["f1"]
        run.estimated_f1, run.estimated_f1_interval = estimate["f1"], estimate["f1_interval"]
        run.estimated_precision, run.estimated_recall = estimate["precision"], estimate["recall"]
        run.estimated_roc_auc, run.estimated_rows, run.estimated_baseline = estimate["roc_auc"], len(rows), baseline
        run.estimated_positives = estimate["expected_positives"]
        # A warning where labels are missing: where every client is labelled, or the labels found model drift, the
        # labels decide (a run that retrained read "without labels nothing is retrained" about the model it replaced).
        # Like a labelled verdict, it needs automation.min_positives clients who leave, here expected ones: a window
        # of clients all expected to stay has an F1 near 0 whatever the model (a drop, its interval far below).
        dropped = not labels_found_drift and len(known) < len(rows) and estimated_drop(
            estimate, baseline, config.automation["min_drop"])
        few = estimate["expected_positives"] < config.automation["min_positives"]
        run.estimated_drift = dropped and not few
        if dropped and few:
            log.info("no estimated_drift warning: about %.0f of the window's clients are expected to leave, fewer than "
                     "the %d a verdict needs (automation.min_positives)", estimate["expected_positives"],
                     config.automation["min_positives"])
    if ledger:
        keep_ledger(config, run, rows, predictions, probabilities, labelled(new))
    words = [text for text in (estimate_text(run.as_row()), calibration_text(run.calibration)) if text]
    if words:
        (log.warning if run.estimated_drift else log.info)("%s", "; ".join(words))


def keep_ledger(config: Config, run: Run, rows, predictions, probabilities, arrived) -> None:
    """Settle earlier windows with the labels that arrived (`arrived`), and keep this window's clients.

    The ledger is bookkeeping beside the decision: a ledger that cannot be written is logged, and
    the run goes on (its window's realized F1 is then never recorded).
    """
    import sqlite3

    path = config.output_model_folder / ESTIMATE_LEDGER
    try:
        settled = settle(path, dict(zip(arrived[ID_COLUMN].astype(str), arrived[TARGET].astype(int).tolist(),
                                        strict=True)), exclude_run=run.run_id)
        numbers = record_realized(history_path(config), settled)
        for run_id, (f1, counted, now) in settled.items():
            log.info("ledger: labels arrived for %d clients of run %s's window: realized F1 %s on the %d whose "
                     "labels are known", now, numbers.get(run_id) or run_id,
                     "undefined (nobody left)" if f1 is None else f"{f1:.4f}", counted)
        labels = [None if np.isnan(v) else int(v) for v in rows[TARGET].to_numpy(dtype="float64")]
        run.realized_f1, run.realized_rows = record_window(
            path, run.run_id, rows[ID_COLUMN].astype(str).tolist(), np.asarray(predictions).astype(int).tolist(),
            np.asarray(probabilities).tolist(), labels)
    except (sqlite3.Error, OSError) as exc:
        log.warning("the estimate ledger %s cannot be written (%s): this window's realized F1 will not be recorded",
                    path, exc)


def course_check(config: Config, run: Run, deployment: Deployment, model, new) -> str:
    """The course's rule and the history tests (raw, parametric, nonparametric) on this run's new rows."""
    known = labelled(new)
    auto = config.automation
    run.baseline = read_score(deployment.path(SCORE_FILE))
    if not len(known):
        run.drift_test, run.drift_verdict = None, NO_LABELS if len(new) else NO_NEW_ROWS
        return "keep"
    f1 = score_model(model, known)  # 0 where nobody left, as the course's f1_score scores it: that decides the run
    verdict = drift_verdict(f1, run.baseline, score_history(history_path(config)), auto["drift_test"],
                            auto["min_history"])
    run.drift_test, run.drift_verdict = verdict.test, verdict.reason
    if known[TARGET].sum():
        run.f1_new_data = f1
    else:  # the history keeps F1 null where it is undefined (issue 19), and the verdict says why it read 0
        run.drift_verdict = (f"nobody left among the {plural(len(known), 'labelled row')}, so F1 is undefined; the "
                             f"course's rule scores it 0: {verdict.reason}")
    return "drift" if verdict.drift else "keep"


def without_called(config: Config, rows) -> tuple[object, int]:
    """The rows without those of clients a recorded call reached (automation.leave_out_called), and how many
    were left out: a call that keeps a client must not read as the model getting worse."""
    if not config.automation["leave_out_called"] or not len(rows):
        return rows, 0
    called = called_clients(calls_path(config.output_model_folder))
    if not called:
        return rows, 0
    reached = rows[ID_COLUMN].astype(str).isin(called)
    if reached.any():
        clients = plural(int(rows.loc[reached, ID_COLUMN].nunique()), "client who was", "clients who were")
        log.info("drift check: %s of %s called are left out of the window (automation.leave_out_called)",
                 plural(int(reached.sum()), "row"), clients)
    return rows.loc[~reached].reset_index(drop=True), int(reached.sum())


def check_drift(config: Config, run: Run, deployment: Deployment, result: IngestionResult,
                ledger: bool = True) -> tuple[str, object]:
    """Decide whether the deployed model has drifted; record why. Returns the verdict and the rows it took.

    The verdict is "drift", "keep" or "wait". The default test ("significance") takes the evidence
    window (riskcore.ops.evidence_window: the new rows since the last decision, this run's added);
    the course's rule takes this run's new rows (the rows of the new or changed files that
    production had not processed). The data-drift statistics (PSI, KS) take every row of either,
    labelled or not; F1 on everything ingested is recorded beside it, and the window's performance
    estimated without labels (estimate_window; `ledger` False, as for a dry run, keeps no ledger). The
    window's F1 and its estimate count each client once (riskcore.ops.evidence_window.by_client); the
    window adds, before a client's unlabelled new snapshot, its labelled one of the same run (new_snapshots).
    The course's rule takes the run's new rows as they are: one per client, its latest. Rows of clients a
    recorded call reached are left out of either and counted (window_called), unless
    automation.leave_out_called is off.
    """
    verify_release(deployment)  # the baseline and the training profile decide too
    model = load_deployed_model(deployment)
    new = result.new_frame
    auto = config.automation
    significance = auto["drift_test"] == "significance"
    arrived = new_snapshots(result)  # with the labels an unlabelled snapshot of the same run followed
    rows = with_new_rows(carried_window(config, deployment), arrived) if significance else new
    rows, run.window_called = without_called(config, rows)
    clients = by_client(rows)
    known = clients.labelled
    run.rows_new = len(new)
    run.window_rows, run.window_clients, run.window_labelled = len(rows), len(clients.latest), len(known)
    run.window_positives = int(known[TARGET].sum()) if len(known) else 0
    run.f1_ingested, ingested_labelled = labelled_f1(model, result.frame)
    profile = deployed_metadata(deployment)["training_profile"]
    run.data_drift = data_drift(rows, profile, auto["psi_threshold"], auto["ks_alpha"]) if len(rows) else None
    run.new_rows_quantiles = quantiles_of(rows, NEW_ROWS_POINTS) if len(rows) else None  # the report draws them
    drifted = [c for c, f in (run.data_drift or {"features": {}})["features"].items() if f["drift"]]
    if significance:
        verdict = significance_check(config, run, deployment, model, known, len(rows))
    else:
        verdict = course_check(config, run, deployment, model, rows)
    estimate_window(config, run, deployment, model, clients, arrived, ledger, labels_found_drift=verdict == "drift")
    run.model_drift = {"drift": True, "keep": False}.get(verdict)  # "wait": too few labelled rows to tell
    repeated = f" of {len(clients.latest)} clients" if len(clients.latest) < len(rows) else ""  # several snapshots
    log.info("drift check on %s (%d rows%s, %d labelled), %s who left: %s; on everything ingested "
             "(%d rows, %d labelled): %s; data drift in %s (%s)",
             "the evidence window" if significance else "the new data", len(rows), repeated, len(known),
             plural(run.window_positives, "client"), run.drift_verdict, len(result.frame), ingested_labelled,
             describe_f1(run.f1_ingested), ", ".join(drifted) or "no feature",
             data_drift_text(run.data_drift, auto["ks_alpha"]))
    if verdict == "drift" or not drifted or not auto["data_drift_triggers_retrain"]:
        return verdict, rows
    if not len(known):
        run.drift_verdict += "; data drift noted, but retraining waits for labelled new rows"
        return verdict, rows
    run.drift_verdict += "; data drift alone triggers retraining (automation.data_drift_triggers_retrain)"
    return "drift", rows
