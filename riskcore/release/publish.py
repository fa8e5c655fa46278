"""Writing releases: a complete folder renamed into place, then the `current` link switched atomically.

A reader sees the old set of files or the new set, never a mix, even when the process is killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from riskcore.config import Config
from riskcore.contract import (
    CALIBRATOR_FILE,
    CURRENT_LINK,
    DEPLOYED_FILES,
    EVIDENCE_WINDOW,
    INGESTED_FILES,
    INGESTION_RECORD,
    MANIFEST,
    MODEL_FILE,
    MODEL_METADATA,
    RELEASES_DIR,
    SCORE_FILE,
    SCORE_RECORD,
    TABLE_SNAPSHOT,
    DataError,
    IntegrityError,
)
from riskcore.faults import checkpoint
from riskcore.files import atomic_write_json, fsync_dir, read_json, sha256_bytes, utc_now, write_durably
from riskcore.formatting import when
from riskcore.release.load import (
    Deployment,
    current_deployment,
    current_release_name,
    deployed_record,
    find_release,
    read_release,
    read_verified,
    release_names,
    require_deployment,
    verify_release,
)
from riskcore.release.operator_state import (
    acknowledge,
    claim,
    drop_last_rollback,
    end_rollbacks,
    note_rollback,
    read_control,
    refuse_while_pinned,
    setup_of,
)

log = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"
MODEL_FILES = (MODEL_FILE, MODEL_METADATA, SCORE_FILE, CALIBRATOR_FILE)
RECORD_FILES = (INGESTED_FILES, INGESTION_RECORD)


def next_release_name(prod: Path, stamp: str) -> str:
    names = [name for name in release_names(prod) if name.split("-", 1)[0].isdigit()]
    number = int(names[-1].split("-", 1)[0]) + 1 if names else 1
    return f"{number:06d}-{stamp}"


def copy_durably(source: Path, target: Path) -> str:
    """Copy a file, fsync it, and return the sha256 of what was written."""
    data = source.read_bytes()
    write_durably(target, data)
    return sha256_bytes(data)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(releases: Path) -> None:
    """Drop half-built release folders left by a process that died mid-deployment."""
    for entry in releases.glob(f"{TMP_PREFIX}*"):
        pid = entry.name[len(TMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        log.info("removing %s, left by an interrupted deployment", entry.name)
        shutil.rmtree(entry, ignore_errors=True)


def build_release(prod: Path, sources: dict[str, Path], manifest: dict) -> Path:
    """Fill a temporary release folder with the files and their manifest; rename it into place."""
    releases = prod / RELEASES_DIR
    releases.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(releases)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=releases))
    try:
        files = {}
        for name, path in sources.items():
            files[name] = copy_durably(path, tmp / name)
            checkpoint(f"deploy-copied-{name}")
        atomic_write_json(tmp / MANIFEST, {**manifest, "files": files})
        os.chmod(tmp, 0o755)
        fsync_dir(tmp)
        while True:
            name = next_release_name(prod, manifest["deployed_at"].replace("-", "").replace(":", ""))
            try:
                os.rename(tmp, releases / name)
                break
            except OSError:
                if not (releases / name).exists():
                    raise
        fsync_dir(releases)
        return releases / name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_link(link: Path, target: Path) -> None:
    """Atomically make `link` a symbolic link to `target`: a temporary link renamed over it."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.link")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def point_current_at(prod: Path, release: Path) -> None:
    """Atomically make `current` name `release`."""
    replace_link(prod / CURRENT_LINK, Path(RELEASES_DIR) / release.name)
    fsync_dir(prod)


def ensure_named_links(prod: Path) -> None:
    """Keep prod/<file> readable under the course's names, as links through `current`."""
    for name in (*DEPLOYED_FILES, MANIFEST):
        link = prod / name
        target = Path(CURRENT_LINK) / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        replace_link(link, target)


def prune_releases(prod: Path, keep: int) -> None:
    """Delete all but the newest `keep` releases, never the current one."""
    current = current_release_name(prod)
    for name in release_names(prod)[:-keep]:
        if name != current:
            shutil.rmtree(prod / RELEASES_DIR / name, ignore_errors=True)
            log.info("pruned old release %s", name)


def publish(prod: Path, sources: dict[str, Path], manifest: dict, keep: int) -> Deployment:
    """Publish files as a new release and switch production to it in one atomic step."""
    missing = [str(path) for path in sources.values() if not path.is_file()]
    if missing:
        raise DataError(f"Cannot deploy: {missing[0]} does not exist.")
    prod.mkdir(parents=True, exist_ok=True)
    previous = current_deployment(prod)
    # The same model published again (new records, or redeployed) keeps the time it was first deployed.
    first = previous.model_deployed_at if previous and previous.model_version == manifest["model_version"] \
        else manifest["deployed_at"]
    release = build_release(prod, sources, {**manifest, "model_deployed_at": first,
                                            "previous": previous.release if previous else None})
    checkpoint("deploy-release-built")
    try:
        point_current_at(prod, release)
    except BaseException:
        if current_release_name(prod) != release.name:
            shutil.rmtree(release, ignore_errors=True)  # never served: leave production as it was
        raise
    checkpoint("deploy-switched")
    ensure_named_links(prod)
    prune_releases(prod, keep)
    deployment = require_deployment(prod)
    log.info("deployed release %s (model %s, F1 %.4f)", deployment.release,
             deployment.model_version, deployment.manifest["score"])
    return deployment


def verified_model_sources(model_folder: Path) -> tuple[dict[str, Path], dict]:
    """The trained model's files, after checking the model and its calibrator match its metadata."""
    metadata = read_json(model_folder / MODEL_METADATA, "Model metadata")
    read_verified(model_folder / MODEL_FILE, metadata["model_sha256"])
    names = MODEL_FILES
    if metadata.get("calibrator_sha256"):
        read_verified(model_folder / CALIBRATOR_FILE, metadata["calibrator_sha256"])
    else:  # a model trained before calibration: deployed without a calibrator, its probabilities its own
        names = tuple(name for name in MODEL_FILES if name != CALIBRATOR_FILE)
    return {name: model_folder / name for name in names}, metadata


def record_sources(config: Config) -> dict[str, Path]:
    """The ingestion's records; for a table without a watermark column, its snapshot too (tablesnapshot.csv).

    The snapshot is what the next read compares with to find the changed rows: deployed with the records,
    an interrupted run or a hand-run ingestion (which rewrite the output folder's copy) cannot change what
    the next tick calls new.
    """
    sources = {name: config.output_folder / name for name in RECORD_FILES}
    source = config.input_database
    if source is not None and not source.watermark_column and (config.output_folder / TABLE_SNAPSHOT).is_file():
        sources[TABLE_SNAPSHOT] = config.output_folder / TABLE_SNAPSHOT
    return sources


def checked_score(model_folder: Path, metadata: dict) -> float:
    """The score in latestscore.txt, refused unless scoring.py wrote it for this very model."""
    # Here, not at the top: deployment.py --list, --rollback and --pin had to wait for scikit-learn and scipy (1.6 s)
    from riskcore.model.evaluation import read_score

    score = read_score(model_folder / SCORE_FILE)
    path = model_folder / SCORE_RECORD
    record = read_json(path, "Score record") if path.is_file() else {}
    if record.get("model_sha256") != metadata["model_sha256"] or record.get("score") != score:
        raise DataError(f"The score in {model_folder / SCORE_FILE} is not the score of the trained model "
                        f"{metadata['model_version']}; run scoring.py first.")
    return score


def check_trained_on_ingested(config: Config, metadata: dict) -> None:
    """Refuse to publish records of data the model was not trained on (a model release says it was)."""
    record = read_json(config.output_folder / INGESTION_RECORD, "Ingestion record")
    if record.get("final_data_sha256") != metadata.get("training_data_sha256"):
        raise DataError(f"The trained model {metadata['model_version']} was not trained on the data now in "
                        f"{config.final_data_file}; run training.py and scoring.py first.")


def deploy(config: Config, model_folder: Path | None = None) -> Deployment:
    """Deploy the trained model, its own score and the ingestion records of the data it was trained on."""
    model_folder = model_folder or config.output_model_folder
    sources, metadata = verified_model_sources(model_folder)
    score = checked_score(model_folder, metadata)
    check_trained_on_ingested(config, metadata)
    if read_control(config.prod_deployment_folder)["owner"] is None:
        # The scripts claim the folder first; a deployment made without them records its owner all the same, so
        # a release naming its setup always comes with a control record (one missing later was removed by hand).
        claim(config)
    manifest = {"model_version": metadata["model_version"], "trained_at": metadata["trained_at"],
                "score": score, "deployed_at": utc_now(), "kind": "model", "setup": setup_of(config),
                "records": "the data the model was trained on"}
    deployment = publish(config.prod_deployment_folder, {**sources, **record_sources(config)},
                         manifest, config.automation["keep_releases"])
    end_rollbacks(config.prod_deployment_folder)
    return deployment


def deploy_records(config: Config, window: bool = False) -> Deployment:
    """Re-publish the deployed model with new ingestion records (new data, no drift, or not enough to decide).

    `window`: the evidence window (riskcore.ops.evidence_window) goes with them, for the next check.
    """
    current = require_deployment(config.prod_deployment_folder)
    verify_release(current)
    sources = {name: current.path(name) for name in MODEL_FILES if name in current.manifest["files"]}
    if window:
        sources[EVIDENCE_WINDOW] = config.output_folder / EVIDENCE_WINDOW
    manifest = {key: current.manifest[key] for key in ("model_version", "trained_at", "score")}
    manifest.update(deployed_at=utc_now(), kind="records", setup=setup_of(config),
                    records=f"newer than the model: model {current.model_version} is kept on data it was "
                            "not trained on (the automation's keep or wait decision)")
    return publish(config.prod_deployment_folder, {**sources, **record_sources(config)},
                   manifest, config.automation["keep_releases"])


def previous_model_release(prod: Path, current: Deployment) -> str:
    """The release served before the current model was deployed: the previous *model*.

    Records-only releases of the current model (the automation's "keep" decisions) are skipped, so a
    rollback never serves the same model again; a model deployed twice counts as two deployments.
    """
    release = current
    while release.kind == "records" and release.previous and (prod / RELEASES_DIR / release.previous).is_dir():
        earlier = read_release(prod, release.previous)
        if earlier.model_version != current.model_version:
            break
        release = earlier
    previous = release.previous
    if not previous or not (prod / RELEASES_DIR / previous).is_dir():
        raise DataError(f"No earlier deployment in {prod} to roll back to (deployment.py --list names the "
                        "releases kept).")
    return previous


def switch_release(prod: Path, current: Deployment, target: Deployment, verb: str) -> None:
    """Serve a kept release again, hash-checked first; the files the release left had processed stay processed."""
    try:
        verify_release(target)
    except IntegrityError as exc:
        raise IntegrityError(f"Cannot {verb} to release {target.release}: {exc}") from None
    acknowledge(prod, current.release, deployed_record(current))
    point_current_at(prod, target.folder)
    ensure_named_links(prod)


def rollback(prod: Path, to: str | None = None) -> Deployment:
    """Serve the previous model again (or the kept release `to`, by name or number).

    The input files the rolled-back release had processed keep counting as processed (control.json),
    so the next tick does not retrain on them and undo the rollback; --roll-forward undoes it.
    """
    refuse_while_pinned(prod, "rollback")
    current = require_deployment(prod)
    target = find_release(prod, to) if to is not None else read_release(prod, previous_model_release(prod, current))
    if target.release == current.release:
        raise DataError(f"Release {current.release} is already the one served; nothing was done.")
    switch_release(prod, current, target, "roll back")
    note_rollback(prod, (current.release, current.model_version), (target.release, target.model_version))
    log.info("rolled back from release %s (model %s) to %s (model %s); the files release %s had processed stay "
             "processed", current.release, current.model_version, target.release, target.model_version,
             current.release)
    return target


def roll_forward(prod: Path) -> Deployment:
    """Undo the newest rollback: serve the release it rolled back from again."""
    refuse_while_pinned(prod, "roll forward")
    current = require_deployment(prod)
    rollbacks = read_control(prod)["rollbacks"]
    if not rollbacks:
        raise DataError(f"No rollback in {prod} to undo; nothing was done.")
    newest = rollbacks[-1]
    if newest["to"] != current.release:
        raise DataError(f"Release {current.release} has been served since the rollback to {newest['to']}; "
                        f"rolling forward would drop it, so nothing was done (deployment.py --rollback --to "
                        f"{newest['from']} serves the release rolled back from).")
    if not (prod / RELEASES_DIR / newest["from"]).is_dir():
        raise DataError(f"Release {newest['from']}, rolled back from, is no longer kept in {prod}; nothing was done.")
    target = read_release(prod, newest["from"])
    switch_release(prod, current, target, "roll forward")
    drop_last_rollback(prod)
    log.info("rolled forward from release %s to %s (model %s), undoing the rollback of %s by %s",
             current.release, target.release, target.model_version, newest["at"], newest["by"])
    return target


def operators_model(prod: Path) -> tuple[str, str] | None:
    """(model version, why) a rollback in force keeps served, or None. (A pin needs no such care: nothing deploys
    another model while a release is pinned, so the newest intact release holds the pinned model.)"""
    rollbacks = read_control(prod)["rollbacks"]
    if not rollbacks:
        return None
    newest = rollbacks[-1]
    return newest["to_model"], f"the rollback of {when(newest['at'])} by {newest['by']} serves it"


def repair(prod: Path) -> Deployment:
    """Point a production folder whose `current` link is missing at its newest intact release; of the model a
    rollback keeps served, if one does (the walk's repair served the model rolled back from again)."""
    if current_release_name(prod) is not None:
        raise DataError(f"{prod / CURRENT_LINK} is in place; nothing to repair.")
    skipped, intact = [], []
    for name in reversed(release_names(prod)):
        try:  # an unreadable manifest (a truncated deployment.json) is skipped like a damaged file
            candidate = read_release(prod, name)
            verify_release(candidate)
        except (IntegrityError, DataError, KeyError, TypeError) as exc:
            log.warning("skipping release %s: it cannot be served (%s)", name, exc)
            skipped.append(name)
            continue
        intact.append(candidate)
    if not intact:
        raise DataError(f"No intact release in {prod / RELEASES_DIR} to serve"
                        + (f" (skipped {', '.join(skipped)}: unreadable or damaged)." if skipped else "."))
    kept = operators_model(prod)
    chosen = next((c for c in intact if kept and c.model_version == kept[0]), None)
    if kept and chosen is None:
        log.warning("no intact release holds model %s, which the operator's state keeps served (%s): serving the "
                    "newest intact release instead", kept[0], kept[1])
    candidate = chosen or intact[0]
    point_current_at(prod, candidate.folder)
    ensure_named_links(prod)
    log.info("repaired: %s now names release %s (model %s%s)%s", CURRENT_LINK, candidate.release,
             candidate.model_version, f": {kept[1]}" if chosen else "",
             f"; skipped the unreadable or damaged release{'s' if len(skipped) > 1 else ''} {', '.join(skipped)}"
             if skipped else "")
    return candidate
