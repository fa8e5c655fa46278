"""The web page's small charts, drawn as inline SVG: a path or two per chart, no image file, no script.

Each drifted feature gets the chart the PDF report draws on its distributions page (riskcore.report.charts):
the training data of the model the drift check tested, filled, beside the ingested data, as a line;
each from its quantiles, on 40 bins from the lowest value to the 99th percentile of either (the top
1% counted in the last bin). Inline SVG is markup, so the page's Content-Security-Policy needs to
allow no image source for it, and presentation attributes style it without inline CSS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

WIDTH, HEIGHT = 240, 56  # the chart's drawing area, in SVG units
BINS = 40


@dataclass(frozen=True)
class DistributionChart:
    """One feature's two distributions as SVG path data, with what the caption says."""

    reference: str  # the filled area: the training data
    compared: str  # the line: the ingested data
    low: float  # the value at the left edge
    high: float  # the value at the right edge (the 99th percentile)
    width: int = WIDTH
    height: int = HEIGHT


def quantile_masses(quantiles, edges: np.ndarray) -> np.ndarray:
    """The share of the data in each bin between `edges`, from its evenly spaced quantiles.

    The same reading of quantiles as riskcore.report.charts.quantile_masses, the report's (that module loads
    matplotlib, which the API does not): linear between quantiles, the first bin starts below
    everything and the last takes everything above it.
    """
    values = np.asarray(quantiles, dtype=np.float64)
    cdf = np.interp(edges, values, np.linspace(0.0, 1.0, len(values)))
    cdf[0], cdf[-1] = 0.0, 1.0
    return np.diff(cdf)


def bars_path(masses: np.ndarray, peak: float) -> str:
    """A filled step outline of the bins, from the baseline up and back."""
    steps = " ".join(f"V{y:.1f}H{x:.1f}" for x, y in zip(bin_right_edges(len(masses)), heights(masses, peak),
                                                           strict=True))
    return f"M0,{HEIGHT} {steps} V{HEIGHT} Z"


def line_path(masses: np.ndarray, peak: float) -> str:
    """The step line over the bins."""
    ys = heights(masses, peak)
    steps = " ".join(f"V{y:.1f}H{x:.1f}" for x, y in zip(bin_right_edges(len(masses)), ys, strict=True))
    return f"M0,{ys[0]:.1f} {steps}"


def bin_right_edges(count: int) -> list[float]:
    return [(i + 1) * WIDTH / count for i in range(count)]


def heights(masses: np.ndarray, peak: float) -> list[float]:
    """SVG y of each bin's top: the tallest bin of either data set reaches 2 units below the top."""
    return [HEIGHT - (HEIGHT - 2) * float(m) / peak for m in masses]


def distribution_chart(reference: Any, compared: Any) -> DistributionChart | None:
    """The chart of one feature from the quantiles of its two data sets; None if either has under two."""
    old = np.asarray(reference if reference is not None else [], dtype=np.float64)
    new = np.asarray(compared if compared is not None else [], dtype=np.float64)
    if len(old) < 2 or len(new) < 2:
        return None
    low = float(min(old[0], new[0]))
    top = float(max(np.interp(0.99, np.linspace(0, 1, len(q)), q) for q in (old, new)))
    edges = np.linspace(low, top if top > low else low + 1.0, BINS + 1)
    masses = quantile_masses(old, edges), quantile_masses(new, edges)
    peak = max(float(m.max()) for m in masses) or 1.0
    return DistributionChart(reference=bars_path(masses[0], peak), compared=line_path(masses[1], peak),
                             low=low, high=float(edges[-1]))
