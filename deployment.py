"""Deploy the trained model and its records to production, all at once.

Reads:  output_model_path/trainedmodel.pkl, modelmetadata.json, latestscore.txt
        output_folder_path/ingestedfiles.txt, ingestionrecord.json
Writes: prod_deployment_path/releases/<NNNNNN-time>/  a complete copy of those files plus a
                                                       manifest (deployment.json) with hashes
        prod_deployment_path/current                  link to the release being served
        prod_deployment_path/<file>                   links through `current`, for the course's names

A release folder is filled under a temporary name and renamed into place, then the `current`
link is replaced atomically: a reader sees the old set or the new set, never a mix, even when
the process is killed. The last few releases are kept; --rollback serves the previous one again.
Examples: python deployment.py --config config.json
          python deployment.py --config config.json --rollback
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import riskcore
from riskcore import CURRENT_LINK, MANIFEST, RELEASES_DIR, Deployment, IntegrityError

log = logging.getLogger("deployment")

TMP_PREFIX = ".tmp-"


def release_names(prod: Path) -> list[str]:
    """Completed release folders, oldest first."""
    folder = prod / RELEASES_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir())


def next_release_name(prod: Path, stamp: str) -> str:
    names = release_names(prod)
    number = int(names[-1].split("-", 1)[0]) + 1 if names else 1
    return f"{number:06d}-{stamp}"


def copy_durably(source: Path, target: Path) -> str:
    """Copy a file, fsync it, and return the sha256 of what was written."""
    data = source.read_bytes()
    try:
        with open(target, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:  # a failed write() names no file
            raise OSError(exc.errno, exc.strerror, str(target)) from exc
        raise
    return riskcore.sha256_bytes(data)


def remove_stale_temporaries(releases: Path) -> None:
    """Drop half-built release folders left by a process that died mid-deployment."""
    for entry in releases.glob(f"{TMP_PREFIX}*"):
        pid = entry.name[len(TMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        log.info("removing %s, left by an interrupted deployment", entry.name)
        shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
            riskcore.checkpoint(f"deploy-copied-{name}")
        riskcore.atomic_write_json(tmp / MANIFEST, {**manifest, "files": files})
        os.chmod(tmp, 0o755)
        riskcore.fsync_dir(tmp)
        while True:
            name = next_release_name(prod, manifest["deployed_at"].replace("-", "").replace(":", ""))
            try:
                os.rename(tmp, releases / name)
                break
            except OSError:
                if not (releases / name).exists():
                    raise
        riskcore.fsync_dir(releases)
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
    riskcore.fsync_dir(prod)


def ensure_named_links(prod: Path) -> None:
    """Keep prod/<file> readable under the course's names, as links through `current`."""
    for name in (*riskcore.DEPLOYED_FILES, MANIFEST):
        link = prod / name
        target = Path(CURRENT_LINK) / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        replace_link(link, target)


def prune_releases(prod: Path, keep: int) -> None:
    """Delete all but the newest `keep` releases, never the current one."""
    current = riskcore.current_release_name(prod)
    for name in release_names(prod)[:-keep]:
        if name != current:
            shutil.rmtree(prod / RELEASES_DIR / name, ignore_errors=True)
            log.info("pruned old release %s", name)


def publish(prod: Path, sources: dict[str, Path], manifest: dict, keep: int) -> Deployment:
    """Publish files as a new release and switch production to it in one atomic step."""
    missing = [str(path) for path in sources.values() if not path.is_file()]
    if missing:
        raise riskcore.DataError(f"Cannot deploy: {missing[0]} does not exist.")
    prod.mkdir(parents=True, exist_ok=True)
    previous = riskcore.current_release_name(prod)
    release = build_release(prod, sources, {**manifest, "previous": previous})
    riskcore.checkpoint("deploy-release-built")
    try:
        point_current_at(prod, release)
    except BaseException:
        if riskcore.current_release_name(prod) != release.name:
            shutil.rmtree(release, ignore_errors=True)  # never served: leave production as it was
        raise
    riskcore.checkpoint("deploy-switched")
    ensure_named_links(prod)
    prune_releases(prod, keep)
    deployment = riskcore.require_deployment(prod)
    log.info("deployed release %s (model %s, F1 %.4f)", deployment.release,
             deployment.model_version, deployment.manifest["score"])
    return deployment


def verified_model_sources(model_folder: Path) -> tuple[dict[str, Path], dict]:
    """The trained model's files, after checking the model matches its metadata."""
    metadata = riskcore.read_json(model_folder / riskcore.MODEL_METADATA, "Model metadata")
    riskcore.read_verified(model_folder / riskcore.MODEL_FILE, metadata["model_sha256"])
    sources = {name: model_folder / name
               for name in (riskcore.MODEL_FILE, riskcore.MODEL_METADATA, riskcore.SCORE_FILE)}
    return sources, metadata


def record_sources(config: riskcore.Config) -> dict[str, Path]:
    return {name: config.output_folder / name
            for name in (riskcore.INGESTED_FILES, riskcore.INGESTION_RECORD)}


def deploy(config: riskcore.Config, model_folder: Path | None = None) -> Deployment:
    """Deploy the trained model, its score and the ingestion records."""
    from scoring import read_score

    model_folder = model_folder or config.output_model_folder
    sources, metadata = verified_model_sources(model_folder)
    manifest = {"model_version": metadata["model_version"], "trained_at": metadata["trained_at"],
                "score": read_score(model_folder / riskcore.SCORE_FILE),
                "deployed_at": riskcore.utc_now(), "kind": "model"}
    return publish(config.prod_deployment_folder, {**sources, **record_sources(config)},
                   manifest, config.automation["keep_releases"])


def deploy_records(config: riskcore.Config) -> Deployment:
    """Re-publish the deployed model with new ingestion records (new data, no drift)."""
    current = riskcore.require_deployment(config.prod_deployment_folder)
    verify_release(current)
    sources = {name: current.path(name)
               for name in (riskcore.MODEL_FILE, riskcore.MODEL_METADATA, riskcore.SCORE_FILE)}
    manifest = {key: current.manifest[key] for key in ("model_version", "trained_at", "score")}
    manifest.update(deployed_at=riskcore.utc_now(), kind="records")
    return publish(config.prod_deployment_folder, {**sources, **record_sources(config)},
                   manifest, config.automation["keep_releases"])


def verify_release(deployment: Deployment) -> None:
    """Check every file of a release against its manifest, or raise IntegrityError."""
    for name, sha in deployment.manifest["files"].items():
        riskcore.read_verified(deployment.path(name), sha)


def rollback(prod: Path) -> Deployment:
    """Serve the release deployed before the current one again."""
    current = riskcore.require_deployment(prod)
    previous = current.manifest.get("previous")
    if not previous or not (prod / RELEASES_DIR / previous).is_dir():
        raise riskcore.DataError(f"No earlier deployment in {prod} to roll back to.")
    target = Deployment(prod / RELEASES_DIR / previous,
                        riskcore.read_json(prod / RELEASES_DIR / previous / MANIFEST, "Deployment manifest"))
    try:
        verify_release(target)
    except IntegrityError as exc:
        raise IntegrityError(f"Cannot roll back to release {previous}: {exc}") from None
    point_current_at(prod, target.folder)
    ensure_named_links(prod)
    log.info("rolled back from release %s to %s (model %s)", current.release, previous, target.model_version)
    return target


def main(argv: list[str] | None = None) -> int:
    """Command line: deploy the trained model, or roll back with --rollback."""
    parser = riskcore.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--rollback", action="store_true", help="serve the previous release again")
    args = parser.parse_args(argv)
    riskcore.setup_logging(args.verbose)

    def body() -> None:
        config = riskcore.load_config(args.config)
        if args.rollback:
            deployment = rollback(config.prod_deployment_folder)
        else:
            deployment = deploy(config)
        print(f"release {deployment.release}: model {deployment.model_version}")

    return riskcore.run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
