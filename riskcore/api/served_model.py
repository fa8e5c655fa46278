"""The deployed model the API serves: loaded once per release, checked, ready to predict.

The model is loaded once per deployed release, after its sha256 check, with the explainer of its
reasons (riskcore.model.reasons, from its metadata); a new release is noticed on the next request (one
readlink), and a release that fails to load never replaces the model being served.

numpy and scikit-learn are imported with the first request that needs them, so that creating the
app (a gunicorn worker booting, `python app.py --help`) stays cheap.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riskcore.api.errors import ApiError
from riskcore.contract import FEATURES, DataError, IntegrityError
from riskcore.model.reasons import Explainer, explainer_for
from riskcore.release.load import (
    Deployment,
    current_deployment,
    current_release_name,
    deployed_metadata,
    load_deployed_calibrator,
    load_deployed_model,
)

log = logging.getLogger(__name__)

LOAD_ATTEMPTS = 3  # a release replaced while it loads: the newer one is tried, this many times at most
RETRY_FAILED_RELEASE_SECONDS = 30.0  # a release that failed to load is not retried on every request
BROKEN_POINTER = "current"  # stands for a deployment pointer that is not a link


@dataclass(frozen=True)
class Served:
    """A deployed model, loaded and checked, ready to predict."""

    deployment: Deployment
    model: Any
    positive: int  # column of predict_proba holding the attrition (class 1) probability
    explainer: Explainer | None  # None: a model trained before its metadata recorded the average client
    calibrator: Any = None  # riskcore.model.calibration.Calibrator; None: a release made before calibration
    plain: bool = False  # a few rows scored by riskcore.model.calibration.linear_log_odds (prepare_model)

    @property
    def release(self) -> str:
        return self.deployment.release

    @property
    def model_version(self) -> str:
        return self.deployment.model_version

    def predict(self, features) -> tuple[list[int], list[float]]:
        """Class labels and attrition probabilities of feature rows.

        The label is the model's own (its decision_function's sign: what predict gives); the probability
        is the calibrated one (riskcore.model.calibration), the call list's. One decision_function call
        gives both, so scikit-learn checks the input once; a few rows (a request's records, already checked) are
        not checked again: linear_log_odds, where the model is one it gives exactly the numbers of (prepare_model).
        """
        from riskcore.model.calibration import PLAIN_ROWS, calibrated_probability, linear_log_odds

        if self.plain and len(features) < PLAIN_ROWS:
            log_odds = linear_log_odds(self.model, features)
        else:
            log_odds = self.model.decision_function(features)
        labels = self.model.classes_[(log_odds > 0).astype(int)]
        return labels.tolist(), calibrated_probability(self.calibrator, log_odds).tolist()

    def revenue_at_risk(self, probabilities: list[float], revenues: list[float | None] | None) -> list[float | None]:
        """Each row's revenue at risk (riskcore.report.call_list.revenue_at_risk); None where its revenue is unknown."""
        if revenues is None:
            return [None] * len(probabilities)
        import polars as pl

        from riskcore.report.call_list import revenue_at_risk

        return revenue_at_risk(pl.Series(probabilities, dtype=pl.Float64),
                               pl.Series(revenues, dtype=pl.Float64)).to_list()

    def reasons(self, features) -> list[list[dict[str, Any]]]:
        """Each row's reasons (riskcore.model.reasons); none for a model whose metadata predates them."""
        if self.explainer is None:
            return [[] for _ in range(len(features))]
        return self.explainer.reasons_of(features)


def prepare_model(deployment: Deployment) -> Served:
    """Load a deployment's model (hash-checked) and check it can answer predictions."""
    import numpy as np

    model = load_deployed_model(deployment)
    calibrator = load_deployed_calibrator(deployment)
    positive = [i for i, label in enumerate(np.asarray(model.classes_).tolist()) if label == 1]
    if not positive:
        raise DataError("the deployed model has no class 1 (attrition) to give a probability for")
    if not isinstance(deployment.manifest.get("model_version"), str):
        raise DataError("the deployment manifest has no model_version")
    model.predict_proba(np.zeros((1, len(FEATURES))))  # fail here, not in a request
    explainer = explainer_for(model, deployed_metadata(deployment), deployment.model_version)
    if explainer is None:
        log.warning("model %s was trained before its metadata recorded the average client: its answers carry "
                    "no reasons", deployment.model_version)
    return Served(deployment=deployment, model=model, positive=positive[0], explainer=explainer,
                  calibrator=calibrator, plain=scored_plainly(model))


PROBE = ((0.0, 0.0, 0.0), (1.0, 2.0, 3.0), (79.0, 563.0, 108.0), (5000.0, 60000.0, 1e6))


def scored_plainly(model) -> bool:
    """Whether linear_log_odds gives exactly the model's decision_function (a binary linear model of the features)."""
    import numpy as np

    from riskcore.model.calibration import linear_log_odds

    coef, intercept = getattr(model, "coef_", None), getattr(model, "intercept_", None)
    if not (isinstance(coef, np.ndarray) and coef.shape == (1, len(FEATURES))
            and isinstance(intercept, np.ndarray) and intercept.shape == (1,)):
        return False
    probe = np.array(PROBE, dtype="float64")
    return all(np.array_equal(linear_log_odds(model, probe[:rows]), model.decision_function(probe[:rows]))
               for rows in range(1, len(PROBE) + 1))


class ModelCache:
    """The model to serve, loaded once per deployed release; a release that fails to load is skipped."""

    def __init__(self, prod: Path) -> None:
        self.prod = prod
        self._served: Served | None = None
        self._failed: dict[str, float] = {}  # release -> monotonic time its load failed
        self._lock = threading.Lock()

    def pointer(self) -> str | None:
        """The release the deployment pointer names now (a readlink); None when nothing is deployed."""
        try:
            return current_release_name(self.prod)
        except IntegrityError as exc:
            self._note_failure(BROKEN_POINTER, exc)
            return BROKEN_POINTER

    def serve(self) -> tuple[str | None, Served | None]:
        """(the release the pointer names, the model to serve), switching when the pointer moved."""
        name = self.pointer()
        if name is None:
            return None, None
        served = self._served
        if served is None or served.release != name:
            served = self._switch(name)
        return name, served

    def get(self) -> Served:
        """The model to serve now, or ApiError 503 when there is none."""
        name, served = self.serve()
        if served is None:
            raise ApiError(503, "No model is deployed yet; run deployment.py first." if name is None else
                           "The deployed model could not be loaded (see the server log) and no earlier "
                           "model is available to serve.")
        return served

    def _switch(self, name: str) -> Served | None:
        with self._lock:
            served = self._served
            if served is not None and served.release == name:
                return served
            failed_at = self._failed.get(name)
            if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_RELEASE_SECONDS:
                return served
            new = self._load(name)
            if new is None:
                return served
            self._failed.clear()  # earlier failures are moot; a release named again is tried again
            self._served = new
            log.info("serving release %s (model %s)", new.release, new.model_version)
            return new

    def _load(self, name: str) -> Served | None:
        """The model of the release the pointer names, or None (the failure noted).

        A release pruned by later deployments while it loads is no failure of its own: the pointer
        has moved on meanwhile, and the release it names now is loaded instead (a few times at most).
        """
        for _ in range(LOAD_ATTEMPTS):
            try:
                deployment = current_deployment(self.prod)
                if deployment is None:
                    raise DataError("the deployment pointer vanished while loading")
                name = deployment.release
                return prepare_model(deployment)
            except Exception as exc:  # whatever is wrong with a deployment must not take the API down
                moved_on = self.pointer() not in (name, None, BROKEN_POINTER)
                if not moved_on:
                    self._note_failure(name, exc)
                    return None
        self._note_failure(name, RuntimeError("the deployment kept moving while it was loaded"))
        return None

    def _note_failure(self, name: str, exc: BaseException) -> None:
        if name not in self._failed:
            now = self._served
            log.error("deployment %s cannot be served (%s: %s); still serving %s", name,
                      exc.__class__.__name__, exc, f"release {now.release}" if now else "nothing")
        self._failed[name] = time.monotonic()
