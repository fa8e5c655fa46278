"""How numbers and times read, in one place: the web page's filters, the PDF report, the diagnostics text and the run
history.

Standard library only: the run history formats with it, and a cron tick with nothing to do imports that.
A missing figure reads as an em dash on the page and in the PDF; the plain-text tables pass their own.
"""

from __future__ import annotations

from typing import Any

from riskcore.contract import FEW_ROWS
from riskcore.files import parse_utc

MISSING = "\N{EM DASH}"
BELOW_CHANCE = "below 0.5: worse than chance"  # said of an AUC below_chance, on the page, in the PDF and the history


def count(value: Any, missing: str = MISSING) -> str:
    """A whole number with thousands separators: "6,462"."""
    return missing if value is None else f"{int(value):,}"


def plural(amount: int, noun: str, nouns: str | None = None) -> str:
    """A count with its noun: "1 row", "2,000 rows" ("1 client who was called" with `nouns` for the irregular)."""
    return f"{amount:,} {noun if amount == 1 else (nouns or noun + 's')}"


def fixed(value: Any, decimals: int = 2, missing: str = MISSING) -> str:
    """A number with `decimals` decimals and thousands separators: "1,234.50"."""
    return missing if value is None else f"{float(value):,.{decimals}f}"


def score(value: Any, decimals: int = 4, missing: str = MISSING) -> str:
    """An F1, AUC, PSI or probability with `decimals` decimals and no separator: "0.6900"."""
    return missing if value is None else f"{float(value):.{decimals}f}"


def psi_figure(value: float, label: str | None = None) -> str:
    """A PSI with 3 decimals; under a reading of "stable" or "some shift", rounded down, so that 0.2496 reads
    "0.249", never "0.250" beside a verdict that it is below the 0.25 threshold (thresholds have at most 3
    decimals: a figure at or above one never rounds below it)."""
    if label not in ("stable", "some shift"):
        return f"{float(value):.3f}"
    from decimal import ROUND_FLOOR, Decimal

    return str(Decimal(repr(float(value))).quantize(Decimal("0.001"), rounding=ROUND_FLOOR))


def signed(value: Any, decimals: int = 2, missing: str = MISSING) -> str:
    """A log-odds or a contribution with its sign: "+2.10", "-0.35"."""
    return missing if value is None else f"{float(value):+.{decimals}f}"


def number(value: Any, decimals: int = 2, missing: str = MISSING) -> str:
    """A count when the value is whole (an int, or a whole float asked for no decimals), otherwise `fixed`."""
    if value is None:
        return missing
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and decimals == 0):
        return count(value)
    return fixed(value, decimals)


def table_cell(value: Any) -> str:
    """A value in a plain-text table: "-" when missing, four decimals (one from a million), counts grouped."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return fixed(value, 4 if abs(value) < 1e6 else 1)
    if isinstance(value, int):
        return count(value)
    return str(value)


def rank_change(change: str | None) -> str | None:
    """A change in rank as people read it, its places grouped: "up 2,495" (risk_scores.csv's and /risk's "up 2495");
    "new", "same" and an empty change as they are."""
    direction, _, places = (change or "").partition(" ")
    return f"{direction} {count(places)}" if places.isdigit() else change


def percent(probability: float) -> str:
    """A probability as a percentage a reader can trust: never "100.0%" for a client who may stay."""
    if probability > 0.999:
        return ">99.9%"
    if probability < 0.001:
        return "<0.1%"
    return f"{100 * probability:.1f}%"


def counted_percent(share: float) -> str:
    """A counted share as a percentage with one decimal: 43 of 43 is "100.0%" (a probability is never that: percent)."""
    return f"{share:.1%}"


def whole_percent(share: float) -> str:
    """A share in whole percent, as a sentence says it; never "100%" or "0%" for a share that is not
    ("a 99.99% baseline read '100% \N{RIGHTWARDS ARROW} 95%'")."""
    shown = f"{share * 100:.0f}%"
    if shown == "100%" and share < 1:
        return ">99%"
    if shown == "0%" and share > 0:
        return "<1%"
    return shown


def interval(bounds: Any, decimals: int = 2) -> str:
    """A bootstrap interval as it follows its figure: " [0.61, 0.76]"; nothing when there is none. A narrow one
    takes the decimals that tell its bounds apart (at most 4): 10,000 clients' " [0.876, 0.881]", not a
    zero-width " [0.88, 0.88]"."""
    if not (isinstance(bounds, (list, tuple)) and len(bounds) == 2):
        return ""
    low, high = score(bounds[0], decimals), score(bounds[1], decimals)
    if low == high and bounds[0] != bounds[1] and decimals < 4:
        return interval(bounds, decimals + 1)
    return f" [{low}, {high}]"


def money(value: Any, missing: str = MISSING) -> str:
    """An amount of money as people say it, without a currency (the data's own; no setting names one):
    "950", "9,500", "12 k", "1.2 M", "2.5 bn"."""
    if value is None:
        return missing
    amount = float(value)
    for threshold, scale, unit, decimals in ((999.95e6, 1e9, "bn", 1), (999.95e3, 1e6, "M", 1), (9999.5, 1e3, "k", 0)):
        if amount >= threshold:
            return f"{amount / scale:,.{decimals}f} {unit}"
    return f"{amount:,.0f}"


def size(byte_count: int | None) -> str:
    """A file's size: "12 KB", "3.4 MB"; nothing when unknown."""
    if byte_count is None:
        return ""
    return f"{byte_count / 1024:,.0f} KB" if byte_count < 1024 * 1024 else f"{byte_count / 1024 / 1024:,.1f} MB"


def below_chance(auc: float | None) -> bool:
    """An AUC under 0.5: the model ranks clients who stayed above clients who left more often than the reverse."""
    return auc is not None and auc < 0.5


def few_rows_note(rows: Any) -> str:
    """ " (8 rows: fewer than 30)" after a figure measured on fewer than FEW_ROWS rows; "" otherwise."""
    return f" ({rows} rows: fewer than {FEW_ROWS})" if isinstance(rows, int) and rows < FEW_ROWS else ""


def sentence_case(text: str | None) -> str | None:
    """A phrase opening a sentence: its first letter upper case, the rest as written ("ECE" stays)."""
    return text[:1].upper() + text[1:] if text else text


# --- Times ---------------------------------------------------------------------------------------
def when(stamp: Any) -> str:
    """An ISO UTC time stamp as people read it: "2026-11-26 07:02 UTC" (the page, the PDF, the banner)."""
    text = str(stamp or "")
    return f"{text[:10]} {text[11:16]} UTC" if len(text) >= 16 and text[10] == "T" else text or MISSING


def day(stamp: Any, year: bool = False) -> str:
    """An ISO UTC time stamp's date as people read it: "6 Dec", or with the year "6 Dec 2026"."""
    moment = parse_utc(stamp)
    if moment is None:
        return when(stamp)
    return f"{moment.day} {moment:%b}" + (f" {moment.year}" if year else "")


def ago(stamp: Any, now: float) -> str:
    """How long ago an ISO UTC time stamp was, as people say it: "just now", "2 hours ago", "3 days ago"."""
    moment = parse_utc(stamp)
    if moment is None:
        return when(stamp)
    seconds = max(0.0, now - moment.timestamp())
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            amount = int(seconds // length)
            return f"{plural(amount, unit)} ago"
    return "just now"
