"""Does calling help? The share who left among the clients to call and among the measurement group.

The clients of every cycle's calls (riskcore.ops.calls) with a measurement group (reporting.control_share
above 0) are counted once each, in the group of the first cycle that assigned them (a client keeps it
until measured): "called" are those assigned to be called, whether or not a call was recorded
(intention to treat: what the decision to call achieves; the recorded calls are counted beside it),
the measurement group those not to be called. A client's outcome is its latest snapshot in the
ingested data once that is labelled and later than the one it was listed with: a snapshot saying
it left (it had not when listed), or a labelled one whose features differ from those listed.

The difference (called minus measurement group) has a 95% interval by Newcombe's hybrid score
method (his method 10: Wilson score intervals of each share, without continuity correction, from
scipy.stats.binomtest), which keeps its coverage with small groups and shares near 0, where the
normal approximation does not. The smallest detectable drop is for power 80% at alpha 0.05
(two-sided, the normal approximation for two proportions), from the measurement group's share of
leavers, or the model's mean probability for them before any label arrives.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from riskcore.contract import FEATURES, FEW_ROWS, ID_COLUMN, TARGET
from riskcore.formatting import count, counted_percent, whole_percent
from riskcore.ops.calls import REACHED, all_calls, read_cycles

LEVEL = 0.95
POWER = 0.8
ALPHA = 0.05
REFERENCE_DROP = 0.05  # "to see 30% -> 25%": the drop the needed group size is given for
METHOD = "Newcombe's hybrid score interval (Wilson, no continuity correction)"


@dataclass
class Arm:
    """One group: clients listed, labelled since, and how many of those left."""

    listed: int = 0
    labelled: int = 0
    left: int = 0
    probability_sum: float = 0.0  # the model's probabilities when listed: the expected share before labels

    @property
    def share(self) -> float | None:
        return self.left / self.labelled if self.labelled else None


# --- The statistics --------------------------------------------------------------------------
def z_value(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def wilson(left: int, rows: int) -> tuple[float, float]:
    """The Wilson score interval of a share (scipy.stats.binomtest)."""
    from scipy.stats import binomtest

    low, high = binomtest(left, rows).proportion_ci(LEVEL, method="wilson")
    return float(low), float(high)


def newcombe(left1: int, rows1: int, left2: int, rows2: int) -> tuple[float, float, float]:
    """(p1 - p2, and its 95% interval) by Newcombe's method 10 from the two Wilson intervals."""
    p1, p2 = left1 / rows1, left2 / rows2
    (l1, u1), (l2, u2) = wilson(left1, rows1), wilson(left2, rows2)
    difference = p1 - p2
    return (difference, difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def power_gap(p1: float, p2: float, n1: float, n2: float) -> float:
    """How far the two-proportion test at ALPHA falls short of POWER (negative: short) for p1 vs p2."""
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    needed = (z_value(1 - ALPHA / 2) * math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
              + z_value(POWER) * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2))
    return abs(p1 - p2) - needed


def needed_per_group(p1: float, p2: float) -> int:
    """Clients per group (equal groups) for POWER at ALPHA to tell p1 from p2."""
    pooled = (p1 + p2) / 2
    root = (z_value(1 - ALPHA / 2) * math.sqrt(2 * pooled * (1 - pooled))
            + z_value(POWER) * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2)))
    return math.ceil(root ** 2 / (p1 - p2) ** 2)


def smallest_drop(base: float, n_called: int, n_group: int) -> float | None:
    """The smallest drop from `base` (the measurement group's share) these group sizes detect (bisection);
    None when even a drop to 0 would not be seen."""
    if n_called < 1 or n_group < 1 or not 0 < base < 1:
        return None
    if power_gap(base, 0.0, n_group, n_called) < 0:
        return None
    low, high = 0.0, base
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (low, middle) if power_gap(base, base - middle, n_group, n_called) >= 0 else (middle, high)
    return high


def reference_target(base: float) -> float:
    return base - REFERENCE_DROP if base > 2 * REFERENCE_DROP else base / 2


# --- Who is in which group, and what became of them ------------------------------------------
def first_assignments(cycles: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each client's first assignment in a cycle with a measurement group: {cycle, group, probability, snapshot}."""
    first: dict[str, dict[str, Any]] = {}
    for cycle in cycles:
        if cycle["control_share"] <= 0:
            continue
        for member in cycle["clients"]:
            first.setdefault(member["client"], {"cycle": cycle["cycle"], "group": member["measurement_group"],
                                                "probability": member["probability"],
                                                "snapshot": member["snapshot"]})
    return first


def outcome(listed: dict[str, Any], latest: dict[str, Any] | None) -> int | None:
    """1 left, 0 stayed, None not known yet: the latest snapshot, if labelled and later than the one listed."""
    if latest is None or latest.get(TARGET) is None:
        return None
    if int(latest[TARGET]) == 1:
        return 1
    changed = any(latest.get(f) != listed.get(f) for f in FEATURES)
    return 0 if changed else None


def latest_rows_of(final_data: Path, clients: set[str]) -> dict[str, dict[str, Any]]:
    """The latest snapshot (last row) of each named client in the ingested data; only those rows are kept."""
    import polars as pl

    from riskcore.data.client_scan import open_clients

    if not clients or not final_data.is_file():
        return {}
    frame, _ = open_clients(final_data)
    names = frame.collect_schema().names()
    columns = [c for c in (ID_COLUMN, *FEATURES, TARGET) if c in names]
    rows = (frame.select(columns).filter(pl.col(ID_COLUMN).is_in(pl.Series(sorted(clients), dtype=pl.String)))
            .collect().unique(ID_COLUMN, keep="last", maintain_order=True))
    return {row[ID_COLUMN]: row for row in rows.iter_rows(named=True)}


def count_arms(first: dict[str, dict[str, Any]], latest: dict[str, dict[str, Any]]) -> tuple[Arm, Arm]:
    """(the clients to call, the measurement group), each with its labelled clients and leavers."""
    called, group = Arm(), Arm()
    for client, listed in first.items():
        arm = group if listed["group"] else called
        arm.listed += 1
        arm.probability_sum += listed["probability"] or 0.0
        known = outcome(listed["snapshot"], latest.get(client))
        if known is not None:
            arm.labelled += 1
            arm.left += known
    return called, group


# --- The measurement in figures and words ----------------------------------------------------
def about(count: int) -> int:
    """A needed size as said in words: to the nearest ten from 100 up (1,251 is "about 1,250")."""
    return round(count, -1) if count >= 100 else count


def measured_effect(called: Arm, group: Arm, cycles: list[int], with_call: int) -> dict[str, Any]:
    """The measured effect (JSON-ready): both groups, the difference and its interval, what the sizes can detect,
    and one sentence saying it, or saying what is missing."""
    measured: dict[str, Any] = {
        "cycles": cycles, "called": asdict(called) | {"share_left": called.share},
        "measurement_group": asdict(group) | {"share_left": group.share}, "called_and_reached": with_call,
        "difference": None, "interval": None, "method": METHOD, "level": LEVEL, "power": POWER, "alpha": ALPHA,
        "baseline": None, "baseline_source": None, "smallest_drop": None, "needed_per_group": None}
    for arm in ("called", "measurement_group"):
        measured[arm].pop("probability_sum")
    if not cycles or group.listed == 0:
        measured["sentence"] = ("No measurement group yet: set reporting.control_share (for example 0.1) and the "
                                "next report run draws one from its calls.")
        return measured
    if group.share is not None and group.labelled >= FEW_ROWS:
        base, source = group.share, "the measurement group's share who left"
    else:
        base, source = group.probability_sum / group.listed, "the model's mean probability for the measurement group"
    measured["baseline"], measured["baseline_source"] = base, source
    if 0 < base < 1:
        target = reference_target(base)
        measured["needed_per_group"] = {"from": base, "to": target, "clients": needed_per_group(base, target)}
        measured["smallest_drop"] = smallest_drop(base, called.listed, group.listed)
    counts = (f"{called.listed:,} called ({with_call:,} reached, as recorded), {group.listed:,} in the measurement "
              f"group, labels for {called.labelled + group.labelled:,}")
    need = measured["needed_per_group"]
    need_text = (f"about {about(need['clients']):,} per group are needed to see {whole_percent(need['from'])} → "
                 f"{whole_percent(need['to'])}" if need else "")
    drop = measured["smallest_drop"]
    detect = (f"these group sizes can detect a drop from {whole_percent(base)} to {whole_percent(base - drop)} or more "
              f"(power 80%, alpha 0.05)" if drop is not None else "these group sizes cannot detect even a drop to 0%")
    if called.labelled == 0 or group.labelled == 0:
        measured["sentence"] = f"{counts}: " + (need_text or "no difference can be measured yet") + f"; {detect}."
        return measured
    difference, low, high = newcombe(called.left, called.labelled, group.left, group.labelled)
    measured["difference"], measured["interval"] = difference, [low, high]
    few = called.labelled < FEW_ROWS or group.labelled < FEW_ROWS
    measured["sentence"] = (
        f"{counts}: {counted_percent(called.share)} of the {called.labelled:,} labelled called clients left, "
        f"{counted_percent(group.share)} of "
        f"the {group.labelled:,} in the measurement group; difference {difference * 100:+.1f} points "
        f"(95% interval {low * 100:+.1f} to {high * 100:+.1f}, {METHOD})"
        + ("; too few labels to tell (fewer than 30 in a group)" if few else "")
        + f"; {detect}" + (f"; {need_text}" if need_text else "") + ".")
    return measured


# --- The same words in the PDF and on /model ----------------------------------------------------
TITLE = "Does calling help? The called clients beside the measurement group"
GROUPS_HEADER = ("group", "listed", "labelled since", "left", "share who left")
GROUP_NAMES = {"called": "to call", "measurement_group": "measurement group"}


def group_rows(measured: dict[str, Any]) -> list[list[str]]:
    """The two groups as the PDF and /model table them (GROUPS_HEADER); none before a measurement group."""
    if not measured["cycles"] or not measured["measurement_group"]["listed"]:
        return []
    return [[name, count(measured[arm]["listed"]), count(measured[arm]["labelled"]), count(measured[arm]["left"]),
             counted_percent(measured[arm]["share_left"]) if measured[arm]["share_left"] is not None else "\N{EM DASH}"]
            for arm, name in GROUP_NAMES.items()]


def counting_note(measured: dict[str, Any]) -> str:
    """How the table counts, under it in the PDF and on /model."""
    return (f"Cycles {', '.join(map(str, measured['cycles']))}: each client counted once, in the group of the first "
            "cycle that drew it; the clients to call are counted whether or not a call was recorded (intention to "
            "treat). Labelled since: a later snapshot with a label. The interval is Newcombe's hybrid score "
            "interval of the difference; power 80%, alpha 0.05.")


def measure_calls(store: Path, final_data: Path) -> dict[str, Any]:
    """The effect of calling, from the calls store and the ingested data (the page, the PDF, the run history)."""
    cycles = read_cycles(store)
    first = first_assignments(cycles)
    called, group = count_arms(first, latest_rows_of(final_data, set(first)))
    reached = {call[ID_COLUMN] for call in all_calls(store) if call["outcome"] in REACHED}
    with_call = sum(1 for client, listed in first.items() if not listed["group"] and client in reached)
    return measured_effect(called, group, sorted({listed["cycle"] for listed in first.values()}), with_call)
