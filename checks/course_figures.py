"""Reproduce the course's published figures with our scripts, on the course's own data.

Reads the course's data folder (default ../shared/reference/udacity beside this repository; not
needed by the project or its tests) into a temporary project, runs ingestion, training, scoring and
the drift scores, and compares each figure with the contract; then, for each new delivery (sourcedata,
no_drift.csv, drift.csv), deploys the practice model and lets the automation decide under the course's
rule, as fullprocess.py does (its reports left out): the decision table, and the replacement's F1.
Example: python checks/course_figures.py --data ../shared/reference/udacity
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import deployment  # noqa: E402
import ingestion  # noqa: E402
import scoring  # noqa: E402
import training  # noqa: E402
from riskcore.config import Config, load_config  # noqa: E402
from riskcore.contract import RUN_HISTORY, SCORE_FILE  # noqa: E402
from riskcore.data.client_csv import read_client_csv  # noqa: E402
from riskcore.model.evaluation import predict  # noqa: E402
from riskcore.model.training import train_model  # noqa: E402
from riskcore.ops.history import read_history  # noqa: E402
from riskcore.ops.tick import tick  # noqa: E402
from riskcore.release.load import load_trained_model  # noqa: E402

REFERENCE = ROOT.parent / "shared" / "reference" / "udacity"


def course_project(reference: Path, tmp: Path, input_folder: str, model_folder: str = "practicemodels") -> Config:
    for name in ("practicedata", "sourcedata", "testdata", "validation_data"):
        if not (tmp / name).exists():
            shutil.copytree(reference / name, tmp / name)
    raw = {"input_folder_path": input_folder, "output_folder_path": "ingesteddata",
           "test_data_path": "testdata", "output_model_path": model_folder,
           "prod_deployment_path": "production_deployment",
           "automation": {"drift_test": "raw", "promotion_gate": False}}  # the course's decision rule
    (tmp / "config.json").write_text(json.dumps(raw))
    return load_config(tmp / "config.json")


def decide(reference: Path, tmp: Path, delivery: str) -> tuple[Config, dict]:
    """Deploy the practice model, then one tick of the automation on `delivery` (the production switch)."""
    practice = course_project(reference, tmp, "practicedata")
    for step in (ingestion, training, scoring, deployment):
        step.run(practice)
    production = course_project(reference, tmp, delivery, "models")
    if tick(production, lambda config, run: None, take_over=True) != 0:
        raise SystemExit(f"the automation failed on {delivery}: see the log above")
    [run] = read_history(production.output_model_folder / RUN_HISTORY)
    return production, run


def f1_on(model, path: Path) -> float:
    return scoring.score_model(model, read_client_csv(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REFERENCE), help=f"the course's data folder (default: {REFERENCE})")
    reference = Path(parser.parse_args(argv).data).absolute()
    logging.basicConfig(level=logging.ERROR)  # the figures, not the steps' logs (a production take-over per delivery)
    if not (reference / "practicedata").is_dir():
        print(f"error: the course data (practicedata, sourcedata, testdata, validation_data) is not in {reference}.",
              file=sys.stderr)
        return 2
    checks = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config = course_project(reference, tmp, "practicedata")
        result = ingestion.run(config)
        checks.append(("practice rows after dedup", len(result.frame), 26))
        training.run(config)
        model, _ = load_trained_model(config.output_model_folder)
        test = read_client_csv(config.test_data_file)
        checks.append(("predictions on testdata", predict(model, test).tolist(), [0, 1, 1, 1, 1]))
        checks.append(("F1 on testdata", round(scoring.run(config), 4), 0.5714))
        source = ingestion.ingest_folder(tmp / "sourcedata").frame
        checks.append(("F1 on sourcedata", round(scoring.score_model(model, source), 4), 0.6923))
        no_drift = tmp / "validation_data" / "no_drift" / "no_drift.csv"
        drift = tmp / "validation_data" / "drift" / "drift.csv"
        checks.append(("F1 on no_drift.csv", round(f1_on(model, no_drift), 4), 1.0))
        checks.append(("F1 on drift.csv", round(f1_on(model, drift), 4), 0.0))
        replacement = train_model(read_client_csv(drift), config.model)
        checks.append(("replacement F1 on testdata", round(scoring.score_model(replacement, test), 4), 0.5))
    for delivery, f1, decision in (("sourcedata", 0.6923, "keep"), ("validation_data/no_drift", 1.0, "keep"),
                                   ("validation_data/drift", 0.0, "retrain")):
        with tempfile.TemporaryDirectory() as tmp_name:
            production, run = decide(reference, Path(tmp_name), delivery)
            checks.append((f"fullprocess on {delivery}: F1, decision", (round(run["f1_new_data"], 4), run["decision"]),
                           (f1, decision)))
            if decision == "retrain":  # learnt from every ingested row, and scored on the test data
                model, metadata = load_trained_model(production.output_model_folder)
                ingested = read_client_csv(production.final_data_file)
                checks.append(("retrained on every ingested row", metadata["training_rows"], len(ingested)))
                score = float((production.output_model_folder / SCORE_FILE).read_text())
                checks.append(("retrained model's F1 on testdata (latestscore.txt)", round(score, 4), 0.5))
    failed = 0
    for name, got, expected in checks:
        ok = got == expected
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {got} (contract: {expected})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
