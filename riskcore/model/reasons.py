"""Why a client is at risk, in the manager's words and in the data scientist's numbers.

The model is a logistic regression: log-odds = intercept + sum of coef_j * x_j. The average client
is the mean of the training data, feature by feature, and its log-odds are intercept + sum of
coef_j * mean_j. A client's log-odds minus the average client's is therefore the sum of
coef_j * (x_j - mean_j): one term per feature, the contributions, which add up exactly to how much
riskier (positive) or safer (negative) than the average client the model finds this one. The
data scientist reads them exactly (the client page's table, risk_scores.csv's contribution_<feature>).

The manager reads reasons: each names what it is about, the client's value, how that compares with
the typical client of the current market (the median of the data the model was trained on, which
after a new market's retrain is that market; the mean for a model whose metadata predates the
median), and the direction and strength of its effect in words:
"employees 6,462, about 65 times the typical 99: raises the risk strongly". Features the model
reads together are explained together: when the two activity coefficients have opposite signs the
model weighs last month against the year, so one reason tells the activity trend (last month
against the client's own monthly average, lastyear_activity / 12) with the two contributions added:
"activity falling: 48 last month, about half the typical 94, against its usual 65 a month: raises
the risk strongly". The direction words come from the sign of the contribution the reason stands
for, never from the trend: a reason never says the opposite of what the model does.

Reasons are listed raising the risk first, the largest first, then lowering it, the largest
first; equal ones in the order of their features.

`contribution`, `comes_before`, `effect_code` and `Explainer.unit_text` use operators only, so one
definition serves plain numbers (the report, /risk), numpy arrays (a prediction request) and polars
expressions (a risk list of millions of clients). Words are composed once per distinct value
(`Explainer.value_words`) and picked per row, never a Python call per row and value.
modelmetadata.json records what they need (coefficients, intercept, average_client, typical_client),
so the reasons can be recomputed from it alone.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache, partial
from typing import Any

from riskcore.contract import FEATURE_LABELS, FEATURES, IntegrityError
from riskcore.formatting import count

TOP_REASONS = len(FEATURES)  # at most one reason per feature; the activity trend stands for two
REASON_COLUMNS = tuple(f"reason_{k}" for k in range(1, TOP_REASONS + 1))  # in risk_scores.csv
CONTRIBUTION_COLUMNS = tuple(f"contribution_{feature}" for feature in FEATURES)  # in risk_scores.csv
ONE_BY_ONE_ROWS = 16  # fewer rows than this are explained one by one, in plain Python
TREND = "activity_trend"  # the reason that reads last month's activity against the year's
WORDS_KEPT = 1 << 14  # values per feature whose words an explainer keeps (Explainer.value_words)
MONTH, YEAR = FEATURES.index("lastmonth_activity"), FEATURES.index("lastyear_activity")

# How strongly a contribution moves the log-odds, in words: at least this much (absolute log-odds).
# 0.5 moves an even chance to 62%, 1.5 to 82%, 3 to 95%.
STRENGTHS = ((3.0, "very strongly"), (1.5, "strongly"), (0.5, ""), (0.0, "slightly"))
EFFECTS = tuple(
    "leaves the risk unchanged" if sign == 0 else
    " ".join(filter(None, ("raises the risk" if sign > 0 else "lowers the risk", STRENGTHS[::-1][level][1])))
    for sign in (-1, 0, 1) for level in range(len(STRENGTHS)))
# How a reason about the activity trend starts, by last month against the usual month the reason shows
# (usual_month): below 80%, below 95%, within 5%, above 105%, above 125%, or none in the year at all (a client with
# no activity read "activity steady: 0 last month, ..."). "Steady" is within 5%: it was 80-125%, and "activity
# steady: 52 last month, ..., against its usual 43 a month" (21% up) read oddly.
TREND_WORDS = ("activity falling", "activity slightly down", "activity steady", "activity slightly up",
               "activity rising", "no activity")
FRACTIONS = ((0.1, "a tenth of"), (0.2, "a fifth of"), (0.25, "a quarter of"), (1 / 3, "a third of"),
             (0.5, "half"), (2 / 3, "two thirds of"), (0.75, "three quarters of"))
FRACTION_VALUES = tuple(value for value, _ in FRACTIONS)  # ascending


def comes_before(ci: Any, i: int, cj: Any, j: int) -> Any:
    """Whether reason i's contribution ci is listed before reason j's cj (numbers, arrays or expressions)."""
    raises_i, raises_j = ci > 0, cj > 0
    larger, equal = abs(ci) > abs(cj), abs(ci) == abs(cj)
    return (raises_i > raises_j) | ((raises_i == raises_j) & (larger | (equal & (i < j))))


def positions(contributions: Sequence[Any]) -> list[Any]:
    """Each reason's place among the reasons (0 = listed first), for numbers, arrays or expressions."""
    count = len(contributions)
    return [sum(comes_before(contributions[i], i, contributions[j], j) * 1 for i in range(count) if i != j)
            for j in range(count)]


def effect_code(contribution: Any) -> Any:
    """Where a contribution's words are in EFFECTS: its sign and strength (numbers, arrays or expressions)."""
    size = abs(contribution)
    level = sum((size >= bound) * 1 for bound, _ in STRENGTHS[:-1])
    sign = (contribution > 0) * 1 - (contribution < 0) * 1
    return (sign + 1) * len(STRENGTHS) + level


def effect(contribution: float) -> str:
    """A contribution's direction and strength in words: "raises the risk strongly"."""
    return EFFECTS[int(effect_code(contribution))]


def usual_month(year: Any) -> Any:
    """A client's usual month, as its reason shows it: the year's activity over 12, rounded half up (whole numbers,
    numbers, arrays or expressions alike)."""
    return (year + 6) // 12


def trend_code(month: Any, year: Any) -> Any:
    """Where the activity trend's words are in TREND_WORDS: last month against the usual month the reason shows
    (whole-number arithmetic, so the words never contradict the two numbers beside them: "slightly up" is always
    above the usual month shown, "steady" within 5% of it), or no activity in either. A year of less than half a
    month's activity (shown as the year's total) has no usual month: no activity last month is falling, some
    rising."""
    usual = usual_month(year)
    none_of_some = (month == 0) & (year > 0)
    below = ((month * 20 < usual * 19) | none_of_some) * 1
    falling = ((month * 5 < usual * 4) | none_of_some) * 1  # falling is below too: two steps down
    above = (month * 20 > usual * 21) * 1
    rising = (month * 4 > usual * 5) * 1
    idle = ((month == 0) & (year == 0)) * 3  # neither below nor above: 2 + 3 is "no activity"
    return 2 - below - falling + above + rising + idle


def compared(value: float, typical: float) -> str:
    """A value against the typical client's: "about half the typical 97", "about 3 times the typical 97"."""
    typical = round(typical)  # the ratio is the one the reader can check from the numbers shown
    shown = count(typical)
    if typical <= 0:
        return f"the same as the typical {shown}" if value <= 0 else f"above the typical {shown}"
    ratio = value / typical
    if ratio == 0:
        return f"none against the typical {shown}"
    if ratio < 0.05:
        return f"far below the typical {shown}"
    if ratio < 0.875:
        # The nearest fraction in log terms. |log(ratio / f)| falls then rises along the sorted fractions, so it is
        # one of the two around the ratio: two logs instead of seven, the same choice (words cost 3 µs a value).
        around = bisect_right(FRACTION_VALUES, ratio)
        _, words = min(FRACTIONS[max(around - 1, 0):around + 1], key=lambda pair: abs(math.log(ratio / pair[0])))
        return f"about {words} the typical {shown}"
    if ratio <= 1.15:
        return f"close to the typical {shown}"
    times = f"{ratio:.1f}" if ratio < 1.95 else f"{round(ratio):,}"
    return f"about {times} times the typical {shown}"


@dataclass(frozen=True)
class Explainer:
    """The model's coefficients and intercept, the average client the contributions are measured against,
    and the typical client of the current market the words compare with."""

    coefficients: tuple[float, ...]  # in FEATURES order
    intercept: float
    average: tuple[float, ...]  # the training data's mean of each feature
    typical: tuple[float, ...] | None = None  # the current market's median of each feature; None: the average

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Explainer | None:
        """The explainer modelmetadata.json describes; None for a model trained before it recorded one."""
        coefficients, average = metadata.get("coefficients"), metadata.get("average_client")
        intercept, typical = metadata.get("intercept"), metadata.get("typical_client")
        if not (isinstance(coefficients, Mapping) and isinstance(average, Mapping) and is_number(intercept)):
            return None
        if not all(is_number(coefficients.get(f)) and is_number(average.get(f)) for f in FEATURES):
            return None
        usable = isinstance(typical, Mapping) and all(is_number(typical.get(f)) for f in FEATURES)
        return cls(tuple(float(coefficients[f]) for f in FEATURES), float(intercept),
                   tuple(float(average[f]) for f in FEATURES),
                   tuple(float(typical[f]) for f in FEATURES) if usable else None)

    @property
    def typical_client(self) -> tuple[float, ...]:
        return self.typical if self.typical is not None else self.average

    @property
    def average_log_odds(self) -> float:
        """The log-odds of the average client."""
        return self.intercept + sum(c * m for c, m in zip(self.coefficients, self.average, strict=True))

    @property
    def reads_trend(self) -> bool:
        """Whether the model weighs last month's activity against the year's (coefficients of opposite signs)."""
        return self.coefficients[MONTH] * self.coefficients[YEAR] < 0

    @property
    def units(self) -> tuple[tuple[int, ...], ...]:
        """The features each reason stands for, in the order of FEATURES: the two activities together or apart."""
        if not self.reads_trend:
            return tuple((j,) for j in range(len(FEATURES)))
        rest = tuple((j,) for j in range(len(FEATURES)) if j not in (MONTH, YEAR))
        return ((MONTH, YEAR), *rest)

    def contribution(self, j: int, value: Any) -> Any:
        """Feature j's contribution to the log-odds of a client with this value, against the average client."""
        return self.coefficients[j] * (value - self.average[j])

    def unit_contribution(self, unit: tuple[int, ...], values: Sequence[Any]) -> Any:
        """A reason's contribution: the sum of its features' (numbers, arrays or expressions, in feature order)."""
        total = self.contribution(unit[0], values[unit[0]])
        for j in unit[1:]:
            total = total + self.contribution(j, values[j])
        return total

    @cached_property
    def value_words(self) -> dict[int, Callable[[Any], str]]:
        """The words of one value of each feature a reason words by value (feature index -> words of a value):
        a single feature's whole reason (its effect follows from its value), or a part of the activity trend's.

        Each feature keeps the words of its last WORDS_KEPT values: the API's explainer lives as long as its
        model is served, and words cost 3 µs a value (1,000 clients hold 1,300 distinct values, 4 ms a request).
        """
        typical = self.typical_client
        words: dict[int, Callable[[Any], str]] = {}
        for unit in self.units:
            if len(unit) == 1:
                j = unit[0]
                words[j] = partial(single_text, self, j)
            else:
                words.update({MONTH: partial(month_part, typical=typical[MONTH]), YEAR: year_part})
        return {j: lru_cache(maxsize=WORDS_KEPT)(worded) for j, worded in words.items()}

    def unit_text(self, unit: tuple[int, ...], words_of: Callable[[int], Any], values: Sequence[Any],
                  take: Callable[[Sequence[str], Any], Any]) -> Any:
        """A reason's words for one client or many: `words_of(j)` gives the words of feature j's value(s)
        (value_words), `take(words, codes)` picks words by code; plain values, numpy arrays or polars expressions."""
        if len(unit) == 1:
            return words_of(unit[0])
        trend = take(TREND_WORDS, trend_code(values[MONTH], values[YEAR]))
        said = take(EFFECTS, effect_code(self.unit_contribution(unit, values)))
        return trend + ": " + words_of(MONTH) + words_of(YEAR) + ": " + said

    def text(self, unit: tuple[int, ...], values: Sequence[Any]) -> str:
        """A reason in words: "employees 6,462, about 65 times the typical 99: raises the risk strongly"."""
        words = self.value_words
        return self.unit_text(unit, lambda j: words[j](values[j]), values, lambda listed, code: listed[int(code)])

    def reasons(self, values: Sequence[Any]) -> list[dict[str, Any]]:
        """One client's reasons in the order they are listed: features, values, contributions and words."""
        units = self.units
        contributions = [self.unit_contribution(unit, values) for unit in units]
        order = sorted(range(len(units)), key=positions(contributions).__getitem__)[:TOP_REASONS]
        return [self.reason(units[k], values) for k in order]

    def reason(self, unit: tuple[int, ...], values: Sequence[Any]) -> dict[str, Any]:
        """A reason: what it is about, the client's values, each feature's exact contribution, the sum and the words."""
        shares = {FEATURES[j]: float(self.contribution(j, values[j])) for j in unit}
        return {"feature": FEATURES[unit[0]] if len(unit) == 1 else TREND,
                "values": {FEATURES[j]: int(values[j]) for j in unit},
                "contributions": shares, "contribution": float(self.unit_contribution(unit, values)),
                "text": self.text(unit, values)}

    def detail(self, values: Sequence[Any]) -> list[dict[str, Any]]:
        """The data scientist's view of one client: per feature, its value, the average and typical client's and
        its exact contribution, listed as reasons are (raising the risk first, the largest first)."""
        contributions = [float(self.contribution(j, value)) for j, value in enumerate(values)]
        order = sorted(range(len(values)), key=positions(contributions).__getitem__)
        return [{"feature": FEATURES[j], "value": int(values[j]), "average": self.average[j],
                 "typical": self.typical_client[j], "contribution": contributions[j]} for j in order]

    def contributions(self, values: Sequence[Any]) -> dict[str, float]:
        """Each feature's exact contribution to the log-odds against the average client, in FEATURES order."""
        return {feature: float(self.contribution(j, values[j])) for j, feature in enumerate(FEATURES)}

    def reasons_of(self, matrix) -> list[list[dict[str, Any]]]:
        """The reasons of each row of a numpy matrix of the features: what `reasons` gives row by row.

        The numbers column by column, the words once per distinct value (value_words, as the call list
        words them), never a Python call per row and value: 1,000 rows one by one took 44 ms. A single
        feature's reason is a function of its value alone: made once per distinct value, the rows that hold the
        value share it (the bench's 1,000 clients: 1,300 reasons made instead of 3,000).
        """
        if len(matrix) < ONE_BY_ONE_ROWS:
            return [self.reasons(values) for values in matrix.tolist()]
        import numpy as np

        units, columns, describe = self.units, list(matrix.T), self.value_words

        def take(listed: Sequence[Any], codes):
            return np.array(listed, dtype=object)[codes]

        def words_of(j: int):
            values, codes = np.unique(columns[j], return_inverse=True)
            return take([describe[j](value) for value in values.tolist()], codes)

        totals = [self.unit_contribution(unit, columns) for unit in units]
        by_unit = []  # each unit's reason for every row, then each row takes its units in its order
        for unit, total in zip(units, totals, strict=True):
            if len(unit) == 1:
                [j], f = unit, FEATURES[unit[0]]
                values, codes = np.unique(columns[j], return_inverse=True)
                made = [{"feature": f, "values": {f: v}, "contributions": {f: c}, "contribution": c, "text": words}
                        for v, c, words in zip(values.astype(np.int64).tolist(), self.contribution(j, values).tolist(),
                                               map(describe[j], values.tolist()), strict=True)]
                by_unit.append(take(made, codes).tolist())
            else:
                fa, fb = FEATURES[unit[0]], FEATURES[unit[1]]
                whole = [columns[j].astype(np.int64).tolist() for j in unit]
                shares = [self.contribution(j, columns[j]).tolist() for j in unit]
                text, total = self.unit_text(unit, words_of, columns, take).tolist(), total.tolist()
                by_unit.append([{"feature": TREND, "values": {fa: va, fb: vb}, "contributions": {fa: ca, fb: cb},
                                 "contribution": t, "text": w}
                                for va, vb, ca, cb, t, w in zip(*whole, *shares, total, text, strict=True)])
        order = np.argsort(np.column_stack(positions(totals)), axis=1, kind="stable")[:, :TOP_REASONS].tolist()
        return [[by_unit[k][i] for k in listed] for i, listed in enumerate(order)]

    def agrees_with(self, model) -> bool:
        """The coefficients and intercept are exactly the fitted model's."""
        return (tuple(float(c) for c in model.coef_[0]) == self.coefficients
                and float(model.intercept_[0]) == self.intercept)


def month_part(month: Any, typical: float) -> str:
    """The activity trend's words about last month: "48 last month, about half the typical 94, "."""
    return f"{count(month)} last month, {compared(month, typical)}, "


def year_part(year: Any) -> str:
    """The activity trend's words about the year: "against its usual 65 a month" (usual_month); a year of less than
    half a month is said as it is ("against 5 in the last year", "and none in the last year"), never "its usual 0 a
    month"."""
    monthly = usual_month(year)
    if monthly >= 1:
        return f"against its usual {count(monthly)} a month"
    return "and none in the last year" if year == 0 else f"against {count(year)} in the last year"


def single_text(explainer: Explainer, j: int, value: Any) -> str:
    """A single feature's reason: "employees 6,462, about 65 times the typical 99: raises the risk strongly".

    The effect is measured against the average client the model learnt from, the comparison made with the
    typical client of the current market: where the value is close to the typical one but its effect is
    more than slight, the reason names the average it is measured from ("employees 95, close to the typical
    100 but below the average 185: lowers the risk strongly"), so it never reads as a typical value that moves
    the risk for no reason; so does a value between the two ("employees 125, about 1.2 times the typical 100 but
    below the average 185: lowers the risk"), which would otherwise read as more employees lowering the risk.
    """
    typical, average = explainer.typical_client[j], explainer.average[j]
    contribution = explainer.contribution(j, value)
    words = compared(value, typical)
    close = words.startswith("close to")
    # A value between the typical client's and the average one is above the one and below the other: the words say
    # one side, the effect follows from the other ("about 1.2 times the typical 100: lowers the risk" read backwards
    # in 1,160 reasons of the bundled list), so the reason names the average too.
    between = not close and (value - round(typical)) * (value - average) < 0
    if (close and abs(contribution) >= STRENGTHS[2][0] and value != average) or between:
        words += f" but {'below' if value < average else 'above'} the average {count(round(average))}"
    return f"{FEATURE_LABELS[FEATURES[j]]} {count(value)}, {words}: {effect(contribution)}"


def worded_units(explainer: Explainer, frame):
    """Each reason's words for every row of a polars frame of the features, in Explainer.units order: (the frame,
    lazy, with a words column per feature worded, one text expression per unit).

    The words of each distinct value (value_words: 12,282 at 10M rows) are the categories of one polars Enum, and
    each row gets its value's category by a join on the value: millions of clients hold 4 bytes per row and
    feature, never the words, and the CSV writer writes each category's words as it writes the row (the same
    bytes as strings gathered per row, for less CPU). A join, not replace_strict: at 10M rows replace_strict wrote
    the reason columns in 2.8 s of CPU instead of 3.6 s but kept 200-250 MB more (polars 2.1); the join gives
    0.4-0.6 s of that CPU back.
    """
    import polars as pl

    describe = explainer.value_words
    found = frame.select(pl.col(FEATURES[j]).unique().implode() for j in describe).row(0)
    values = dict(zip(describe, found, strict=True))
    worded = {j: [words_of(value) for value in values[j]] for j, words_of in describe.items()}
    categories = pl.Enum(list(dict.fromkeys(words for listed in worded.values() for words in listed)))
    rows = frame.lazy()
    for j in describe:
        feature = FEATURES[j]
        words = pl.LazyFrame([pl.Series(feature, values[j], dtype=frame.schema[feature]),
                              pl.Series(f"_words_{feature}", worded[j], dtype=categories)])
        rows = rows.join(words, on=feature, how="left", maintain_order="left")
    features = [pl.col(f).cast(pl.Int64) for f in FEATURES]

    def words_of(j: int) -> pl.Expr:
        return pl.col(f"_words_{FEATURES[j]}")

    def take(listed: Sequence[str], code: pl.Expr) -> pl.Expr:
        return pl.lit(pl.Series(listed)).gather(code)

    return rows, [explainer.unit_text(unit, words_of, features, take).alias(f"_text{k}")
                  for k, unit in enumerate(explainer.units)]


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def model_terms(model, frame) -> dict[str, Any]:
    """What modelmetadata.json records for the reasons: coefficients, intercept and the average client.

    `frame` is the data the model was fitted on; its mean per feature is the average client, its median the
    typical client of the market the words compare with.
    """
    return {
        "coefficients": dict(zip(FEATURES, (float(c) for c in model.coef_[0]), strict=True)),
        "intercept": float(model.intercept_[0]),
        "average_client": {feature: float(frame[feature].mean()) for feature in FEATURES},
        "typical_client": {feature: float(frame[feature].median()) for feature in FEATURES},
    }


def explainer_for(model, metadata: Mapping[str, Any], model_version: str) -> Explainer | None:
    """The reasons' explainer of a loaded model, from its metadata; None when the metadata predates them.

    The metadata's coefficients must be the model's own, or the reasons would not add up to its
    log-odds: a mismatch is an IntegrityError.
    """
    explainer = Explainer.from_metadata(metadata)
    if explainer is not None and not explainer.agrees_with(model):
        raise IntegrityError(f"The metadata of model {model_version} records other coefficients than the model's.")
    return explainer

