"""Why a client is at risk: each feature's contribution to the model's log-odds, against the average client.

The model is a logistic regression: log-odds = intercept + sum of coef_j * x_j. The average client
is the mean of the training data, feature by feature, and its log-odds are intercept + sum of
coef_j * mean_j. A client's log-odds minus the average client's is therefore the sum of
coef_j * (x_j - mean_j): one term per feature, the reasons, which add up exactly to how much
riskier (positive) or safer (negative) than the average client the model finds this one.

Reasons are listed raising the risk first, the largest first, then lowering it, the largest
first; equal ones in feature order. In words: "employees 6,462: +2.1" (FEATURE_LABELS, the
client's value, the contribution to the log-odds with one decimal).

`contribution` and `comes_before` use operators only, so one definition serves plain numbers
(the report, /risk), numpy arrays (a prediction request) and polars expressions (a risk list of
millions of clients). modelmetadata.json records what they need (coefficients, intercept,
average_client), so the reasons can be recomputed from it alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from riskcore.contract import FEATURE_LABELS, FEATURES, IntegrityError

TOP_REASONS = len(FEATURES)  # every feature: with three, the top three are all of them, ordered
REASON_COLUMNS = tuple(f"reason_{k}" for k in range(1, TOP_REASONS + 1))  # in risk_scores.csv
FEW_ROWS = 16  # fewer rows than this are explained one by one, in plain Python


def comes_before(ci: Any, i: int, cj: Any, j: int) -> Any:
    """Whether feature i's contribution ci is listed before feature j's cj (numbers, arrays or expressions)."""
    raises_i, raises_j = ci > 0, cj > 0
    larger, equal = abs(ci) > abs(cj), abs(ci) == abs(cj)
    return (raises_i > raises_j) | ((raises_i == raises_j) & (larger | (equal & (i < j))))


def positions(contributions: Sequence[Any]) -> list[Any]:
    """Each feature's place among the reasons (0 = listed first), for numbers, arrays or expressions."""
    count = len(contributions)
    return [sum(comes_before(contributions[i], i, contributions[j], j) * 1 for i in range(count) if i != j)
            for j in range(count)]


def contribution_text(value: float) -> str:
    """A contribution to the log-odds with one decimal and its sign; one that rounds to nothing has none."""
    shown = f"{value:+,.1f}"
    return "0.0" if shown in ("+0.0", "-0.0") else shown


@dataclass(frozen=True)
class Explainer:
    """The model's coefficients and intercept, and the average client the reasons compare against."""

    coefficients: tuple[float, ...]  # in FEATURES order
    intercept: float
    average: tuple[float, ...]  # the training data's mean of each feature

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Explainer | None:
        """The explainer modelmetadata.json describes; None for a model trained before it recorded one."""
        coefficients, average = metadata.get("coefficients"), metadata.get("average_client")
        intercept = metadata.get("intercept")
        if not (isinstance(coefficients, Mapping) and isinstance(average, Mapping) and is_number(intercept)):
            return None
        if not all(is_number(coefficients.get(f)) and is_number(average.get(f)) for f in FEATURES):
            return None
        return cls(tuple(float(coefficients[f]) for f in FEATURES), float(intercept),
                   tuple(float(average[f]) for f in FEATURES))

    @property
    def average_log_odds(self) -> float:
        """The log-odds of the average client."""
        return self.intercept + sum(c * m for c, m in zip(self.coefficients, self.average, strict=True))

    def contribution(self, j: int, value: Any) -> Any:
        """Feature j's contribution to the log-odds of a client with this value, against the average client."""
        return self.coefficients[j] * (value - self.average[j])

    def text(self, j: int, value: Any) -> str:
        """Feature j's reason in words: "employees 6,462: +2.1"."""
        return words(j, value, self.contribution(j, value))

    def reasons(self, values: Sequence[Any]) -> list[dict[str, Any]]:
        """One client's reasons, in the order they are listed, each with its feature, value, contribution and words."""
        contributions = [self.contribution(j, value) for j, value in enumerate(values)]
        order = sorted(range(len(values)), key=positions(contributions).__getitem__)[:TOP_REASONS]
        return [reason(j, values[j], contributions[j]) for j in order]

    def reasons_of(self, matrix) -> list[list[dict[str, Any]]]:
        """The reasons of each row of a numpy matrix of the features, computed column by column.

        numpy costs about 70 us a call and saves about 5 us a row, so a few rows go one by one.
        """
        import numpy as np

        if len(matrix) < FEW_ROWS:
            return [self.reasons(values) for values in matrix.tolist()]
        contributions = [self.contribution(j, matrix[:, j]) for j in range(len(FEATURES))]
        orders = np.argsort(np.column_stack(positions(contributions)), axis=1)[:, :TOP_REASONS]
        return [[reason(j, values[j], shares[j]) for j in order]
                for values, shares, order in zip(matrix.tolist(), np.column_stack(contributions).tolist(),
                                                 orders.tolist(), strict=True)]

    def agrees_with(self, model) -> bool:
        """The coefficients and intercept are exactly the fitted model's."""
        return (tuple(float(c) for c in model.coef_[0]) == self.coefficients
                and float(model.intercept_[0]) == self.intercept)


def words(j: int, value: Any, contribution: float) -> str:
    return f"{FEATURE_LABELS[FEATURES[j]]} {int(value):,}: {contribution_text(contribution)}"


def reason(j: int, value: Any, contribution: float) -> dict[str, Any]:
    """Feature j's reason: its name, the client's value, its contribution and the words for them."""
    return {"feature": FEATURES[j], "value": int(value), "contribution": float(contribution),
            "text": words(j, value, contribution)}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def model_terms(model, frame) -> dict[str, Any]:
    """What modelmetadata.json records for the reasons: coefficients, intercept and the average client.

    `frame` is the data the model was fitted on; its mean per feature is the average client.
    """
    return {
        "coefficients": dict(zip(FEATURES, (float(c) for c in model.coef_[0]), strict=True)),
        "intercept": float(model.intercept_[0]),
        "average_client": {feature: float(frame[feature].mean()) for feature in FEATURES},
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

