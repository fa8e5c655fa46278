"""The report's charts, drawn with matplotlib's Agg canvas (no display, no pyplot state) into PNG bytes."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Any

import matplotlib.dates as mdates
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from riskcore.contract import FEATURE_LABELS, FEATURES, FEW_ROWS, TEST_DATA
from riskcore.files import parse_utc
from riskcore.formatting import BELOW_CHANCE, below_chance, few_rows_note, psi_figure
from riskcore.model.drift_evidence import distribution_bins, last_bar_text
from riskcore.model.evaluation import Evaluation

CLASS_NAMES = ("stayed (0)", "exited (1)")
INK = "#1f2a36"
BLUE = "#2f6690"
ORANGE = "#d1603d"
GREY = "#8a96a3"
GREEN = "#3a7d44"


def figure(width_in: float, height_in: float):
    """A matplotlib figure drawn by the Agg canvas: no display, no pyplot state."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig, dpi: int = 150) -> bytes:
    """A figure as PNG bytes on a white background."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def confusion_matrix_chart(evaluation: Evaluation, model_version: str, day: str):
    """The confusion matrix: counts in labelled cells, F1, model version and date in the title."""
    matrix = np.array(evaluation.matrix)
    fig = figure(5.6, 4.9)
    ax = fig.add_subplot()
    cmap = LinearSegmentedColormap.from_list("risk", ["#f4f7fa", BLUE])
    ax.imshow(matrix, cmap=cmap, vmin=0, vmax=max(int(matrix.max()), 1))
    captions = [["correctly expected to stay", "false alarm"], ["missed: left unexpectedly", "correctly flagged"]]
    total = max(int(matrix.sum()), 1)
    for actual in (0, 1):
        for predicted in (0, 1):
            count = int(matrix[actual, predicted])
            dark = count > 0.55 * max(int(matrix.max()), 1)
            color = "white" if dark else INK
            ax.text(predicted, actual - 0.08, f"{count:,}", ha="center", va="center", fontsize=22,
                    fontweight="bold", color=color)
            ax.text(predicted, actual + 0.2, f"{captions[actual][predicted]}\n{100 * count / total:.1f}% of clients",
                    ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks([0, 1], labels=list(CLASS_NAMES), fontsize=10)
    ax.set_yticks([0, 1], labels=list(CLASS_NAMES), fontsize=10, rotation=90, va="center")
    ax.set_xlabel("predicted", fontsize=11, labelpad=8)
    ax.set_ylabel("actual", fontsize=11, labelpad=8)
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"Confusion matrix on the test data: F1 {evaluation.f1:.4f}\n"
                 f"model {model_version} \N{MIDDLE DOT} {day} \N{MIDDLE DOT} {evaluation.rows:,} clients",
                 fontsize=11, color=INK, pad=10)
    return fig


def roc_chart(evaluation: Evaluation):
    """The ROC curve, with the point where the model's 0.5 threshold puts it."""
    fig = figure(4.6, 4.4)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color=GREY, linewidth=1, label="random guess")
    if evaluation.roc is not None:
        fpr, tpr = evaluation.roc
        worse = f", {BELOW_CHANCE}" if below_chance(evaluation.auc) else ""
        few = f", {evaluation.rows} rows: fewer than {FEW_ROWS}" if evaluation.rows < FEW_ROWS else ""
        ax.plot(fpr, tpr, color=BLUE, linewidth=2, label=f"model (AUC {evaluation.auc:.3f}{worse}{few})")
        (tn, fp), (fn, tp) = evaluation.matrix
        ax.plot([fp / max(fp + tn, 1)], [tp / max(tp + fn, 1)], "o", color=ORANGE, markersize=7,
                label="threshold 0.5 (the predictions)")
        ax.set_title("ROC curve on the test data", fontsize=11, color=INK)
    else:
        ax.set_title("ROC curve: undefined\n(the test data holds one class only)", fontsize=11, color=INK)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (stayers flagged)")
    ax.set_ylabel("true positive rate (leavers flagged)")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.grid(alpha=0.25)
    return fig


def chart_time(text: str | None):
    """An ISO 8601 time as a naive UTC datetime (as matplotlib's axes take them), or None."""
    moment = parse_utc(text)
    return None if moment is None else moment.replace(tzinfo=None)


def model_deployments(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per model, at its first deployment: records-only releases repeat the model."""
    seen: set[str] = set()
    firsts = []
    for item in history:
        if item["model_version"] not in seen:
            seen.add(item["model_version"])
            firsts.append(item)
    return firsts


SWITCHES = ("rollback", "roll-forward")  # the operator's decisions that serve another model again


def served_switches(deployments: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[tuple[datetime, float]]:
    """(time, F1 on the test data) of each rollback and roll forward: the model served again from then on."""
    scores = {d["model_version"]: d["score"] for d in deployments}
    found = [(chart_time(r.get("finished_at") or r.get("started_at")), scores.get(r.get("version_after")))
             for r in runs if r.get("decision") in SWITCHES]
    return [(t, f) for t, f in found if t is not None and f is not None]


def readable_time_axis(ax, times: list[datetime]) -> None:
    """Tick labels a reader takes in at a glance, precise enough for the span shown; the day in the axis label."""
    span = max(times) - min(times) if times else timedelta(0)
    if span >= timedelta(days=60):
        pattern = "%b %Y"
    elif span >= timedelta(days=2):
        pattern = "%d %b"
    elif span >= timedelta(hours=2):
        pattern = "%d %b %H:%M"
    else:
        pattern = "%H:%M"
    if times and span < timedelta(minutes=10):  # events minutes apart or less: the ten minutes around them
        middle = min(times) + span / 2
        ax.set_xlim(middle - timedelta(minutes=5), middle + timedelta(minutes=5))
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=7))
    ax.xaxis.set_major_formatter(mdates.DateFormatter(pattern))
    single_day = times and span < timedelta(days=2) and "%d" not in pattern
    ax.set_xlabel(f"time (UTC) on {min(times):%d %b %Y}" if single_day else "date (UTC)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)


def holdout_points(runs: list[dict[str, Any]]) -> list[tuple[datetime, dict[str, Any], dict[str, Any]]]:
    """(time, old model's figures, new model's figures) on the held-out new rows of each retrain."""
    points = []
    for run in runs:
        held = (run.get("evaluation") or {}).get("holdout") if isinstance(run.get("evaluation"), dict) else None
        moment = chart_time(run.get("started_at"))
        if held and moment is not None:
            points.append((moment, held["old"], held["new"]))
    return points


def with_interval(ax, moment: datetime, figures: dict[str, Any], **style) -> None:
    """One F1 as a marker, its bootstrap interval (if any) as an error bar."""
    f1, bounds = figures["f1"], figures.get("f1_interval")
    # A percentile interval need not hold its point estimate (few rows, skewed resamples): no negative bar.
    error = [[max(f1 - bounds[0], 0.0)], [max(bounds[1] - f1, 0.0)]] if bounds else None
    ax.errorbar([moment], [f1], yerr=error, linestyle="none", capsize=3, elinewidth=1, **style)


def trend_chart(deployments: list[dict[str, Any]], runs: list[dict[str, Any]], now: str, test_rows: int | None = None):
    """F1 over time, each point labelled with the data it was measured on: each model's F1 on the test data
    when deployed, the drift checks on the new rows, and each retrain's old and new model on the held-out new rows.
    The line is the served model's: a rollback or roll forward steps it to the model served again."""
    fig = figure(7.2, 2.9)
    ax = fig.add_subplot()
    models = [(chart_time(d["deployed_at"]), d["score"]) for d in model_deployments(deployments)]
    models = [(t, f) for t, f in models if t is not None]
    switches = served_switches(deployments, runs)
    checks = [(chart_time(r.get("started_at")), r.get("f1_new_data"), r.get("baseline")) for r in runs]
    checks = [(t, f, b) for t, f, b in checks if t is not None and isinstance(f, (int, float))]
    held = holdout_points(runs)
    few = few_rows_note(test_rows)
    if models:
        # The served model's level holds until the next deployment or rollback, drawn up to the latest event.
        served = sorted(models + switches)
        end = max([t for t, _ in served] + [t for t, _, _ in checks] + [chart_time(now) or served[-1][0]])
        times = [t for t, _ in served] + [end]
        levels = [f for _, f in served] + [served[-1][1]]
        ax.step(times, levels, where="post", color=BLUE, linewidth=1.5)
        ax.plot([t for t, _ in models], [f for _, f in models], "o", color=BLUE, markersize=6,
                label=f"each model deployed: its F1 on the test data, {TEST_DATA}{few}")
        if switches:
            ax.plot([t for t, _ in switches], [f for _, f in switches], "o", markerfacecolor="white",
                    markeredgecolor=BLUE, markersize=6, linestyle="none",
                    label="rollback or roll forward: the model served again")
    if checks:
        ax.plot([t for t, _, _ in checks], [f for _, f, _ in checks], "D", markerfacecolor="white",
                markeredgecolor=ORANGE, markersize=5, linestyle="none",
                label="drift check: the deployed model's F1 on the new rows")
        baselines = [(t, b) for t, _, b in checks if isinstance(b, (int, float))]
        if baselines:
            ax.plot([t for t, _ in baselines], [b for _, b in baselines], "_", color=INK, markersize=12,
                    markeredgewidth=1.5, linestyle="none", label="baseline the check compared against")
    for number, (moment, old, new) in enumerate(held):
        rows = few_rows_note(old.get("rows"))
        with_interval(ax, moment, old, fmt="s", color=GREEN, markerfacecolor="white", markersize=6,
                      label=f"retrain: old model's F1 on the held-out new rows{rows}" if number == 0 else None)
        with_interval(ax, moment, new, fmt="s", color=GREEN, markersize=6,
                      label=f"retrain: new model's F1 on the held-out new rows{rows}" if number == 0 else None)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.grid(alpha=0.25)
    shown = [t for t, _ in models] + [t for t, _ in switches] + [t for t, _, _ in checks]
    readable_time_axis(ax, shown + ([end] if models else []))
    if ax.get_legend_handles_labels()[0]:
        fig.legend(loc="outside lower center", ncols=2, fontsize=7, frameon=False, handletextpad=0.3,
                   columnspacing=1.2, labelspacing=0.25)
    return fig


def distribution_chart(reference: dict[str, list[float]], compared: dict[str, list[float]],
                       figures: dict[str, dict[str, Any]], reference_label: str, compared_label: str):
    """Per feature: one data set beside another on the bins of riskcore.model.drift_evidence, titled with its PSI."""
    fig = figure(7.2, 4.0)
    axes = fig.subplots(len(FEATURES), 1)
    for ax, feature in zip(axes, FEATURES, strict=True):
        bins = distribution_bins(reference.get(feature), compared.get(feature))
        if bins is None:
            ax.set_axis_off()
            continue
        ax.stairs(100 * bins.reference, bins.edges, fill=True, color=BLUE, alpha=0.45, label=reference_label)
        ax.stairs(100 * bins.compared, bins.edges, color=ORANGE, linewidth=1.8, label=compared_label)
        shown = figures.get(feature, {})
        label = shown.get("psi_label", "")
        psi = f": PSI {psi_figure(shown['psi'], label)} ({label})" if shown.get("psi") is not None else ""
        ax.set_title(f"{FEATURE_LABELS.get(feature, feature)}{psi}", fontsize=10,
                     color=ORANGE if shown.get("drift") else INK, loc="left")
        ax.set_ylabel("% of clients", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.2)
    axes[0].legend(fontsize=8, frameon=False, loc="upper right")
    axes[-1].set_xlabel(f"value ({last_bar_text()} are counted in the last bar)", fontsize=8)
    return fig


def reliability_chart(calibration: dict[str, Any], window: str):
    """A labelled window's reliability diagram: per equal-count bin, the mean calibrated probability against the
    share who left (riskcore.model.calibration.calibration_figures), with the diagonal of perfect calibration."""
    bins = calibration.get("reliability") or []
    predicted = [float(b["predicted"]) for b in bins]
    observed = [float(b["observed"]) for b in bins]
    fig = figure(4.2, 3.8)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color=GREY, linewidth=1, label="perfect calibration")
    ax.plot(predicted, observed, "o-", color=BLUE, linewidth=1.6, markersize=5,
            label=f"{len(bins)} equal-count bins")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted share leaving (calibrated probability)")
    ax.set_ylabel("observed share leaving")
    ece = calibration.get("ece")
    ax.set_title(f"Reliability, {window}" + (f" (ECE {float(ece):.3f})" if ece is not None else ""),
                 fontsize=10, color=INK)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.grid(alpha=0.25)
    return fig
