"""Reading deployments: the release `current` names, its manifest, and models loaded only after a hash check.

deployment.py writes releases (riskcore.release.publish); everything else reads them through here.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riskcore.contract import (
    CALIBRATOR_FILE,
    CURRENT_LINK,
    INGESTION_RECORD,
    MANIFEST,
    MODEL_FILE,
    MODEL_METADATA,
    RELEASES_DIR,
    DataError,
    IntegrityError,
    UserError,
)
from riskcore.files import read_json, sha256_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    """One published release: its folder and its manifest."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def release(self) -> str:
        return self.folder.name

    @property
    def model_version(self) -> str:
        return self.manifest["model_version"]

    @property
    def deployed_at(self) -> str:
        """When this release was published (a records-only release too)."""
        return self.manifest["deployed_at"]

    @property
    def kind(self) -> str:
        """ "model" (a model deployed) or "records" (the same model with newer ingestion records)."""
        return str(self.manifest.get("kind", "model"))

    @property
    def model_deployed_at(self) -> str:
        """When this release's model was first deployed; a records-only release keeps its model's time.

        Manifests written before publish recorded it give their own time (riskcore.release.load.first_deployed
        looks further back through the releases kept).
        """
        return str(self.manifest.get("model_deployed_at") or self.manifest["deployed_at"])

    @property
    def previous(self) -> str | None:
        """The release `current` named when this one was published."""
        return self.manifest.get("previous")

    def path(self, name: str) -> Path:
        return self.folder / name


def current_release_name(prod: Path) -> str | None:
    """The release the deployment pointer names, read cheaply; None when nothing is deployed."""
    try:
        return Path(os.readlink(prod / CURRENT_LINK)).name
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise IntegrityError(f"Deployment pointer {prod / CURRENT_LINK} is not a link ({exc.strerror}).") from None


def read_release(prod: Path, name: str) -> Deployment:
    """A release folder with its manifest."""
    folder = prod / RELEASES_DIR / name
    return Deployment(folder=folder, manifest=read_json(folder / MANIFEST, "Deployment manifest"))


def current_deployment(prod: Path) -> Deployment | None:
    """The current deployment with its manifest; None when nothing is deployed yet."""
    name = current_release_name(prod)
    return None if name is None else read_release(prod, name)


def require_deployment(prod: Path) -> Deployment:
    """The current deployment, or a UserError saying nothing is deployed."""
    deployment = current_deployment(prod)
    if deployment is None:
        raise DataError(f"No model is deployed in {prod} yet; run deployment.py first.")
    return deployment


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """Read a file and check it against its recorded sha256, or raise IntegrityError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IntegrityError(f"{path} cannot be read ({exc.strerror or exc.__class__.__name__}).") from None
    if sha256_bytes(data) != expected_sha256:
        raise IntegrityError(f"{path} does not match its recorded sha256; refusing to load it.")
    return data


def read_deployed(deployment: Deployment, name: str) -> bytes:
    """A file of a release, checked against the hash its manifest records."""
    return read_verified(deployment.path(name), deployment.manifest["files"][name])


def deployed_record(deployment: Deployment) -> dict[str, Any]:
    """The deployed ingestion record, checked against the manifest: a record edited by hand could hide files."""
    data = read_deployed(deployment, INGESTION_RECORD)
    try:
        record = json.loads(data)
    except ValueError:
        raise DataError(f"Ingestion record {deployment.path(INGESTION_RECORD)} is not valid JSON.") from None
    if not isinstance(record, dict):
        raise DataError(f"Ingestion record {deployment.path(INGESTION_RECORD)} is not a JSON object.")
    return record


def known_files(record: dict[str, Any]) -> dict[str, str]:
    """Name -> sha256 of every file a deployed ingestion record accounts for (rejected too)."""
    known = {f["name"]: f["sha256"] for f in record.get("files", [])}
    known.update({r["name"]: r["sha256"] for r in record.get("rejected", []) if r.get("sha256")})
    return known


def verify_release(deployment: Deployment) -> None:
    """Check every file of a release against its manifest, or raise IntegrityError."""
    for name in deployment.manifest["files"]:
        read_deployed(deployment, name)


def load_model_bytes(data: bytes):
    """Unpickle a model whose bytes have already been verified."""
    return pickle.loads(data)  # noqa: S301 - only after the sha256 check


def load_deployed_model(deployment: Deployment):
    """The deployed model, loaded only if its bytes match the hash recorded at deployment."""
    return load_model_bytes(read_deployed(deployment, MODEL_FILE))


def load_deployed_calibrator(deployment: Deployment):
    """The deployed model's calibrator, loaded only if its bytes match the hash recorded at deployment.

    None for a release made before models were calibrated: its probabilities are the model's own.
    """
    from riskcore.model.calibration import load_calibrator_bytes

    if CALIBRATOR_FILE not in deployment.manifest.get("files", {}):
        return None
    return load_calibrator_bytes(read_deployed(deployment, CALIBRATOR_FILE))


def deployed_metadata(deployment: Deployment) -> dict[str, Any]:
    """The deployed model's metadata, checked against the manifest's hash."""
    return json.loads(read_deployed(deployment, MODEL_METADATA))


def load_trained_model(model_folder: Path) -> tuple[Any, dict[str, Any]]:
    """The model training.py wrote, checked against the sha256 in its metadata."""
    metadata = read_json(model_folder / MODEL_METADATA, "Model metadata")
    data = read_verified(model_folder / MODEL_FILE, metadata["model_sha256"])
    return load_model_bytes(data), metadata


RELEASE_NAME = re.compile(r"^\d{6}-\w+$")


def release_names(prod: Path) -> list[str]:
    """Completed release folders (NNNNNN-<time>), oldest first; anything else there is logged and ignored."""
    folder = prod / RELEASES_DIR
    if not folder.is_dir():
        return []
    names = []
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue  # a release being built, or one a killed deployment left (publish removes those)
        if RELEASE_NAME.match(entry.name) and entry.is_dir():
            names.append(entry.name)
        else:
            log.info("ignoring %s in %s: not a release", ascii(entry.name), folder)
    return sorted(names)


def first_deployed(prod: Path, deployment: Deployment) -> str:
    """When the deployment's model was first deployed: its manifest's record, else its oldest release kept."""
    if deployment.manifest.get("model_deployed_at"):
        return deployment.model_deployed_at
    times = [item["model_deployed_at"] for item in deployment_history(prod)
             if item["model_version"] == deployment.model_version]
    return min([*times, deployment.deployed_at])


def find_release(prod: Path, wanted: str) -> Deployment:
    """A kept release named in full (000003-20261126T070200Z) or by its number (3 or 000003)."""
    names = release_names(prod)
    if wanted in names:
        return read_release(prod, wanted)
    if wanted.isdigit():
        found = [name for name in names if int(name.split("-", 1)[0]) == int(wanted)]
        if found:
            return read_release(prod, found[0])
    raise DataError(f"No release {wanted!r} is kept in {prod / RELEASES_DIR} "
                    "(deployment.py --list names the releases kept).")


def release_baseline(prod: Path, name: str) -> float | None:
    """A release's model's F1 on held-out rows of its own market (its metadata's drift baseline); None when the
    release records none (made before baselines were kept) or its metadata no longer matches its manifest."""
    try:
        baseline = deployed_metadata(read_release(prod, name)).get("baseline") or {}
    except (UserError, KeyError, ValueError) as exc:
        log.warning("release %s: no baseline read (%s)", name, exc)
        return None
    f1 = baseline.get("f1")
    return float(f1) if isinstance(f1, (int, float)) else None


def deployment_history(prod: Path) -> list[dict[str, Any]]:
    """Every release still kept: when it was deployed, which model, its F1 on the test data."""
    history = []
    for name in release_names(prod):
        try:
            manifest = read_release(prod, name).manifest
            history.append({"release": name, "deployed_at": str(manifest["deployed_at"]),
                            "model_version": str(manifest["model_version"]), "score": float(manifest["score"]),
                            "kind": str(manifest.get("kind", "model")),
                            "model_deployed_at": str(manifest.get("model_deployed_at") or manifest["deployed_at"])})
        except (DataError, KeyError, TypeError, ValueError) as exc:
            log.warning("skipping release %s: its manifest is unreadable (%s)", name, exc)
    return sorted(history, key=lambda item: item["deployed_at"])
