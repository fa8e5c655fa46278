"""The web page's small charts, drawn as inline SVG: a path or two per chart, no image file, no script.

Each drifted feature gets the chart the PDF report draws on its distributions page: the training data
of the model the drift check tested, filled, beside the compared data, as a line, on the bins both take
from riskcore.model.drift_evidence. Inline SVG is markup, so the page's Content-Security-Policy needs to
allow no image source for it, and presentation attributes style it without inline CSS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from riskcore.model.drift_evidence import distribution_bins

WIDTH, HEIGHT = 240, 56  # the chart's drawing area, in SVG units


@dataclass(frozen=True)
class DistributionChart:
    """One feature's two distributions as SVG path data, with what the caption says."""

    reference: str  # the filled area: the training data
    compared: str  # the line: the compared data
    low: float  # the value at the left edge
    high: float  # the value at the right edge (riskcore.model.drift_evidence.TOP_SHARE of either data set)
    width: int = WIDTH
    height: int = HEIGHT


def bars_path(masses, peak: float) -> str:
    """A filled step outline of the bins, from the baseline up and back."""
    steps = " ".join(f"V{y:.1f}H{x:.1f}" for x, y in zip(bin_right_edges(len(masses)), heights(masses, peak),
                                                           strict=True))
    return f"M0,{HEIGHT} {steps} V{HEIGHT} Z"


def line_path(masses, peak: float) -> str:
    """The step line over the bins."""
    ys = heights(masses, peak)
    steps = " ".join(f"V{y:.1f}H{x:.1f}" for x, y in zip(bin_right_edges(len(masses)), ys, strict=True))
    return f"M0,{ys[0]:.1f} {steps}"


def bin_right_edges(count: int) -> list[float]:
    return [(i + 1) * WIDTH / count for i in range(count)]


def heights(masses, peak: float) -> list[float]:
    """SVG y of each bin's top: the tallest bin of either data set reaches 2 units below the top."""
    return [HEIGHT - (HEIGHT - 2) * float(m) / peak for m in masses]


DATE_BAND = 12  # SVG units under a chart for the dates of its first and last run


@dataclass(frozen=True)
class RiskChart:
    """A client's probability of leaving across the kept runs: a line on a 0-100% scale, a dot per run, and the
    dates of the first and last run under it."""

    line: str  # SVG path data
    points: list[tuple[float, float, dict[str, Any], float]]  # x, y, the run (run, ranked_at, rank), its probability
    dates: list[tuple[float, str, str]]  # x, text-anchor, the run's ranked_at
    width: int = WIDTH
    height: int = HEIGHT
    full_height: int = HEIGHT + DATE_BAND
    scale_width: int = 32  # SVG units left of the chart for its scale, 0% and 100%: one dot alone read as no value
    top: float = 2.0  # the SVG y of 100% (0% is at height - top)


def risk_chart(runs: list[dict[str, Any]]) -> RiskChart | None:
    """The chart of a client's runs (riskcore.report.rankings.client_across_runs): the probability each run's list gave
    (its model's calibrated probability); a ranking kept without it, the run's log-odds as a probability (expit).
    None without a run. One run is one dot in the middle."""
    from scipy.special import expit

    if not runs:
        return None
    step = (WIDTH - 8) / (len(runs) - 1) if len(runs) > 1 else 0.0
    left = 4 if len(runs) > 1 else WIDTH / 2
    chances = [run["probability"] if run.get("probability") is not None else float(expit(run["log_odds"]))
               for run in runs]
    points = [(left + i * step, HEIGHT - RiskChart.top - (HEIGHT - 2 * RiskChart.top) * chance, run, chance)
              for i, (run, chance) in enumerate(zip(runs, chances, strict=True))]
    line = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
    if len(runs) == 1:
        dates = [(WIDTH / 2, "middle", runs[0]["ranked_at"])]
    else:
        dates = [(0.0, "start", runs[0]["ranked_at"]), (float(WIDTH), "end", runs[-1]["ranked_at"])]
    return RiskChart(line=line, points=points, dates=dates)


def distribution_svg(reference: Any, compared: Any) -> DistributionChart | None:
    """The page's SVG chart of one feature from the quantiles of its two data sets (the PDF's PNG is
    riskcore.report.charts.distribution_chart, on the same bins); None if either has under two."""
    bins = distribution_bins(reference, compared)
    if bins is None:
        return None
    peak = max(float(bins.reference.max()), float(bins.compared.max())) or 1.0
    return DistributionChart(reference=bars_path(bins.reference, peak), compared=line_path(bins.compared, peak),
                             low=float(bins.edges[0]), high=float(bins.edges[-1]))


# --- The reliability diagram ---------------------------------------------------------------------
SIDE = 120  # the reliability diagram's square, in SVG units


@dataclass(frozen=True)
class ReliabilityChart:
    """A labelled window's reliability diagram: one point per bin (predicted share, observed share) and the diagonal."""

    points: tuple[tuple[float, float], ...]  # SVG x, y of each bin's point
    line: str  # the path through the points, bin by bin
    side: int = SIDE


def reliability_svg(calibration: Any) -> ReliabilityChart | None:
    """The page's SVG diagram of a window's `calibration` (riskcore.model.calibration.calibration_figures; the PDF's PNG
    is riskcore.report.charts.reliability_chart); None without bins."""
    bins = calibration.get("reliability") if isinstance(calibration, dict) else None
    if not isinstance(bins, list) or not bins:
        return None
    try:
        shares = [(float(b["predicted"]), float(b["observed"])) for b in bins]
    except (KeyError, TypeError, ValueError):
        return None
    points = tuple((round(SIDE * p, 1), round(SIDE * (1 - o), 1)) for p, o in shares)
    line = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return ReliabilityChart(points=points, line=line)
