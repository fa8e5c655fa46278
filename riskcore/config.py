"""config.json: read and validated once per process into a frozen Config of resolved paths."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from riskcore.contract import DEFAULT_CONFIG, FINAL_DATA, MAX_ID_LENGTH, MODEL_FILE, TEST_DATA, ConfigError

if TYPE_CHECKING:
    from riskcore.data.db_setting import DatabaseSource

PATH_KEYS = (
    "input_folder_path",
    "output_folder_path",
    "test_data_path",
    "output_model_path",
    "prod_deployment_path",
)

# The course's LogisticRegression settings; `penalty` is left at its (L2) default because
# current scikit-learn deprecates passing it.
MODEL_DEFAULTS: dict[str, Any] = {
    "C": 1.0,
    "solver": "liblinear",
    "max_iter": 100,
    "tol": 1e-4,
    "random_state": 0,
    "fit_intercept": True,
    "intercept_scaling": 1,
    "class_weight": None,
}
MODEL_TYPES: dict[str, tuple[type, ...]] = {
    "C": (int, float),
    "solver": (str,),
    "max_iter": (int,),
    "tol": (int, float),
    "random_state": (int, type(None)),
    "fit_intercept": (bool,),
    "intercept_scaling": (int, float),
    "class_weight": (str, dict, type(None)),
}
SOLVERS = ("lbfgs", "liblinear", "newton-cg", "newton-cholesky", "sag", "saga")

AUTOMATION_DEFAULTS: dict[str, Any] = {
    # The default decides on enough evidence (riskcore.model.drift.significant_drop); the course's
    # rule is "drift_test": "raw" with "promotion_gate": false (config.practice.json).
    "drift_test": "significance",
    "min_history": 5,
    "data_drift_triggers_retrain": False,
    "psi_threshold": 0.25,
    "ks_alpha": 0.01,
    "keep_releases": 5,
    "api_url": "http://127.0.0.1:8000",
    "api_key_file": None,
    "dependency_check_hours": 24,  # diagnostics asks the package index for the latest versions at most this often
    # Of the labelled new rows, left out of a retrain to score old and new model on; 0 under the course's rule
    # unless set (is_course_rule: the course retrains on every ingested row).
    "holdout_share": 0.2,
    "promotion_gate": True,  # keep the old model when the new one does worse on that holdout
    # The significance test's evidence: the window of labelled rows since the last decision.
    "min_rows": 200,  # labelled rows before a model-drift decision (fewer: wait)
    "min_positives": 20,  # clients who left among them
    "min_drop": 0.05,  # the F1 drop below the baseline that counts
    "alpha": 0.05,  # the permutation test's significance level
    "min_holdout_rows": 50,  # the gate judges a retrain on at least this many held-out rows (fewer: wait)
    "recent_rows": 2000,  # after model drift, a candidate trained on the newest labelled rows only
    "max_run_seconds": 540,  # a tick stops at this deadline (cron starts one every 600 s)
    "max_train_seconds": 120,  # training stops after this long (it takes about a second)
    "leave_out_called": True,  # the drift check leaves out clients a recorded call reached (riskcore.ops.calls)
}
AUTOMATION_TYPES: dict[str, tuple[type, ...]] = {
    "drift_test": (str,),
    "min_history": (int,),
    "data_drift_triggers_retrain": (bool,),
    "psi_threshold": (int, float),
    "ks_alpha": (int, float),
    "keep_releases": (int,),
    "api_url": (str,),
    "api_key_file": (str, type(None)),
    "dependency_check_hours": (int, float),
    "holdout_share": (int, float),
    "promotion_gate": (bool,),
    "max_run_seconds": (int, float),
    "max_train_seconds": (int, float),
    "min_rows": (int,),
    "min_positives": (int,),
    "min_drop": (int, float),
    "alpha": (int, float),
    "min_holdout_rows": (int,),
    "recent_rows": (int,),
    "leave_out_called": (bool,),
}
DRIFT_TESTS = ("significance", "raw", "parametric", "nonparametric")

# Where the automation's alerts go (riskcore.ops.alerts); every key optional, none set: no alert is sent.
ALERT_DEFAULTS: dict[str, Any] = {"webhook_urls": [], "email": None, "silence_minutes": 60}
ALERT_TYPES: dict[str, tuple[type, ...]] = {"webhook_urls": (list,), "email": (dict, type(None)),
                                            "silence_minutes": (int, float)}
EMAIL_DEFAULTS: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_port": 25, "from": None, "to": [],
                                  "starttls": False, "password_file": None}
EMAIL_TYPES: dict[str, tuple[type, ...]] = {"smtp_host": (str,), "smtp_port": (int,), "from": (str, type(None)),
                                            "to": (list,), "starttls": (bool,), "password_file": (str, type(None))}
REPORTING_DEFAULTS: dict[str, Any] = {
    "calls_per_cycle": 50,  # the clients at the top of the call list the managers call this cycle
    "keep_rankings": 10,  # runs whose ranks are kept (models/rankings/), to say what changed and chart a client
    "control_share": 0,  # of those, the share drawn each cycle into the measurement group, not called (0: none)
}
REPORTING_TYPES: dict[str, tuple[type, ...]] = {"calls_per_cycle": (int,), "keep_rankings": (int,),
                                                "control_share": (int, float)}
MAX_CALLS_PER_CYCLE = 10_000
MAX_CONTROL_SHARE = 0.5  # above it most listed clients would go uncalled

# How the API serves (riskcore.api): GET /metrics follows the API key rule unless this opens it to a scraper on
# the same machine (a client from 127.0.0.0/8 or ::1; never behind a proxy on the same host, whose requests all
# come from there).
API_DEFAULTS: dict[str, Any] = {"metrics_open_on_loopback": False}
API_TYPES: dict[str, tuple[type, ...]] = {"metrics_open_on_loopback": (bool,)}


# Every key a config file may hold at its top level (docs/pipeline.md's reference names each, and each section's).
TOP_LEVEL_KEYS = (*PATH_KEYS, "input_database", "max_id_length", "model", "automation", "alerts", "reporting", "api")


@dataclass(frozen=True)
class Config:
    """Validated settings with every path resolved against the config file's folder."""

    config_file: Path
    input_folder: Path | None  # None when the data comes from a database table (input_database)
    output_folder: Path
    test_data_folder: Path
    output_model_folder: Path
    prod_deployment_folder: Path
    model: dict[str, Any] = field(default_factory=lambda: dict(MODEL_DEFAULTS))
    automation: dict[str, Any] = field(default_factory=lambda: dict(AUTOMATION_DEFAULTS))
    reporting: dict[str, Any] = field(default_factory=lambda: dict(REPORTING_DEFAULTS))
    input_database: DatabaseSource | None = None
    alerts: dict[str, Any] = field(default_factory=lambda: dict(ALERT_DEFAULTS))
    max_id_length: int = MAX_ID_LENGTH  # longer client ids are refused at ingestion
    api: dict[str, Any] = field(default_factory=lambda: dict(API_DEFAULTS))

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed (e.g. outputs pointed at a scratch folder)."""
        return replace(self, **changes)

    @property
    def final_data_file(self) -> Path:
        return self.output_folder / FINAL_DATA

    @property
    def test_data_file(self) -> Path:
        return self.test_data_folder / TEST_DATA

    @property
    def model_file(self) -> Path:
        return self.output_model_folder / MODEL_FILE

    @property
    def input_source(self) -> str:
        """Where the data comes from, as one string: the input folder, or the table (URL without user, #table)."""
        return str(self.input_folder) if self.input_database is None else self.input_database.locator

    @property
    def data_folders(self) -> tuple[Path, ...]:
        """Folders an API caller may name a dataset in."""
        return tuple(folder for folder in (self.input_folder, self.output_folder, self.test_data_folder) if folder)


def _is_type(value: Any, types: tuple[type, ...]) -> bool:
    # bool is an int in Python; a `true` where a number belongs is still a mistake.
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             dict: "an object", list: "a list", type(None): "null"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _check_section(raw: Any, section: str, defaults: dict, types: dict, where: str) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f'Config key "{section}" in {where} must be an object.')
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        raise ConfigError(f'Unknown config key "{section}.{unknown[0]}" in {where}.')
    for key, value in raw.items():
        if not _is_type(value, types[key]):
            raise ConfigError(f'Config key "{section}.{key}" in {where} must be {_type_names(types[key])}.')
    return {**defaults, **raw}


SEED_LIMIT = 2**32 - 1  # numpy's largest random seed
ITERATION_LIMIT = 2**31 - 1  # liblinear counts iterations in a C int


# Outside these, liblinear and lbfgs spin for minutes (C 1e300, class weights 1e308: still at 100% CPU
# after 10 minutes); inside, the course's data trains in under a second with every solver (measured
# on the 13,155 labelled rows at the corners: C and weights 1e6, 1e-6).
SETTING_RANGE = (1e-6, 1e6)


def _in_range(value: Any, key: str, where: str) -> None:
    low, high = SETTING_RANGE
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f'Config key "{key}" in {where} must be a number from {low:g} to {high:g}, not {value!r} '
                          "(outside that range the solver can run for hours).")


def _finite_positive(model: dict, key: str, where: str) -> None:
    value = model[key]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f'Config key "model.{key}" in {where} must be a finite number above 0, not {value!r}.')


def _class_weight(value: Any, where: str) -> Any:
    """null, "balanced", or per-class weights; JSON object keys are strings, so "0" and "1" name the classes."""
    if value is None or value == "balanced":
        return value
    if isinstance(value, str):
        raise ConfigError(f'Config key "model.class_weight" in {where} must be null, "balanced" or '
                          '{"0": weight, "1": weight}.')
    unknown = [key for key in value if key not in ("0", "1")]
    if unknown:
        raise ConfigError(f'Config key "model.class_weight" in {where} names the class {unknown[0]!r}; '
                          'the classes are "0" and "1".')
    weights = {}
    for key, weight in value.items():
        if not _is_type(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise ConfigError(f'Config key "model.class_weight.{key}" in {where} must be a finite number above 0.')
        _in_range(weight, f"model.class_weight.{key}", where)
        weights[int(key)] = weight
    return weights


def _check_model(model: dict, where: str) -> None:
    """The settings scikit-learn would refuse only at the first fit, refused now (stdlib checks only).

    riskcore.model.training.check_settings then applies scikit-learn's own parameter rules before any step runs.
    """
    if model["solver"] not in SOLVERS:
        raise ConfigError(f'Config key "model.solver" in {where} must be one of {", ".join(SOLVERS)}.')
    for key in ("C", "tol", "intercept_scaling"):
        _finite_positive(model, key, where)
    for key in ("C", "intercept_scaling"):
        _in_range(model[key], f"model.{key}", where)
    if not 1 <= model["max_iter"] <= ITERATION_LIMIT:
        raise ConfigError(f'Config key "model.max_iter" in {where} must be a whole number from 1 to {ITERATION_LIMIT}.')
    seed = model["random_state"]
    if seed is not None and not 0 <= seed <= SEED_LIMIT:
        raise ConfigError(f'Config key "model.random_state" in {where} must be null or a whole number from 0 to '
                          f'{SEED_LIMIT}.')
    model["class_weight"] = _class_weight(model["class_weight"], where)


def is_course_rule(automation: dict[str, Any]) -> bool:
    """Whether the automation decides by the course's rule: the raw F1 comparison, no promotion gate."""
    return automation["drift_test"] == "raw" and not automation["promotion_gate"]


def _check_automation(auto: dict, where: str) -> None:
    for key in ("psi_threshold", "ks_alpha"):
        if not math.isfinite(auto[key]) or auto[key] <= 0:
            raise ConfigError(f'Config key "automation.{key}" in {where} must be a finite number above 0.')
    if auto["ks_alpha"] >= 1:
        raise ConfigError(f'Config key "automation.ks_alpha" in {where} must be below 1.')
    if not math.isfinite(auto["dependency_check_hours"]) or auto["dependency_check_hours"] < 0:
        raise ConfigError(f'Config key "automation.dependency_check_hours" in {where} must be a finite number of at '
                          'least 0 (0: ask on every run).')
    for key, ceiling in (("max_run_seconds", 86_400), ("max_train_seconds", 86_400)):
        if not math.isfinite(auto[key]) or not 1 <= auto[key] <= ceiling:
            raise ConfigError(f'Config key "automation.{key}" in {where} must be a number of seconds from 1 to '
                              f"{ceiling:,}.")
    if not 0 <= auto["holdout_share"] < 1:
        raise ConfigError(f'Config key "automation.holdout_share" in {where} must be a number from 0 to below 1.')
    if auto["drift_test"] not in DRIFT_TESTS:
        raise ConfigError(f'Config key "automation.drift_test" in {where} must be one of {", ".join(DRIFT_TESTS)}.')
    for key in ("min_rows", "min_positives", "min_holdout_rows", "recent_rows"):
        if not 1 <= auto[key] <= 10**12:
            raise ConfigError(f'Config key "automation.{key}" in {where} must be a whole number of at least 1.')
    if not (math.isfinite(auto["min_drop"]) and 0 <= auto["min_drop"] < 1):
        raise ConfigError(f'Config key "automation.min_drop" in {where} must be a number from 0 to below 1.')
    if not (math.isfinite(auto["alpha"]) and 0 < auto["alpha"] < 1):
        raise ConfigError(f'Config key "automation.alpha" in {where} must be a number above 0 and below 1.')
    if auto["min_history"] < 2:
        raise ConfigError(f'Config key "automation.min_history" in {where} must be at least 2.')
    if auto["keep_releases"] < 2:
        raise ConfigError(f'Config key "automation.keep_releases" in {where} must be at least 2.')
    if not auto["api_url"].startswith(("http://", "https://")):
        raise ConfigError(f'Config key "automation.api_url" in {where} must be an http(s) URL.')


def _strings(values: list, key: str, where: str) -> list[str]:
    if not all(isinstance(value, str) and value.strip() for value in values):
        raise ConfigError(f'Config key "{key}" in {where} must be a list of non-empty strings.')
    return values


def _check_alerts(raw: Any, where: str) -> dict[str, Any]:
    """The alerts section: webhook URLs, an SMTP mail setting, and the silence after which a missing tick is news."""
    alerts = _check_section(raw, "alerts", ALERT_DEFAULTS, ALERT_TYPES, where)
    for url in _strings(alerts["webhook_urls"], "alerts.webhook_urls", where):
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f'Config key "alerts.webhook_urls" in {where} must hold http(s) URLs only.')
        if "@" in urlsplit(url).netloc:  # urllib would take "user:password@host" for a host name; never shown
            raise ConfigError(f'Config key "alerts.webhook_urls" in {where} must hold URLs without a user or '
                              "password (user:password@host): a hook's secret goes in its path, as Slack's, "
                              "Mattermost's and Teams' do.")
    if not math.isfinite(alerts["silence_minutes"]) or alerts["silence_minutes"] <= 0:
        raise ConfigError(f'Config key "alerts.silence_minutes" in {where} must be a finite number above 0.')
    if isinstance(alerts["email"], dict) and "password" in alerts["email"]:
        raise ConfigError(f'Config key "alerts.email.password" in {where} is refused: the SMTP password comes from '
                          'alerts.email.password_file (a file only its owner can read) or $RISK_SMTP_PASSWORD, '
                          "never from the config.")
    if alerts["email"] is not None:
        email = _check_section(alerts["email"], "alerts.email", EMAIL_DEFAULTS, EMAIL_TYPES, where)
        if not _strings(email["to"], "alerts.email.to", where):
            raise ConfigError(f'Config key "alerts.email.to" in {where} must name at least one recipient.')
        if not email["from"]:
            raise ConfigError(f'Config key "alerts.email.from" in {where} must name the sender.')
        for key, address in [("from", email["from"])] + [("to", to) for to in email["to"]]:
            # An address with a line break cannot be a mail header: every send would fail, each tick, for a day.
            if "@" not in address or any(not ch.isprintable() for ch in address):
                raise ConfigError(f'Config key "alerts.email.{key}" in {where} must hold mail addresses '
                                  f'(name@host, on one line), not {address!r}.')
        if not 0 < email["smtp_port"] < 65536:
            raise ConfigError(f'Config key "alerts.email.smtp_port" in {where} must be a port from 1 to 65535.')
        if email["password_file"] is not None:  # resolved like every path: against the config file's folder
            email["password_file"] = str(Path(where).parent / email["password_file"])
        alerts["email"] = email
    return alerts


ID_LENGTH_LIMIT = 1000  # beyond it a client's page address (/clients/<id>, percent-encoded) nears servers' limits


def _max_id_length(value: Any, where: str) -> int:
    if not _is_type(value, (int,)) or not 1 <= value <= ID_LENGTH_LIMIT:
        raise ConfigError(f'Config key "max_id_length" in {where} must be a whole number from 1 to {ID_LENGTH_LIMIT}.')
    return value


def _check_reporting(reporting: dict, where: str) -> None:
    if not 1 <= reporting["calls_per_cycle"] <= MAX_CALLS_PER_CYCLE:
        raise ConfigError(f'Config key "reporting.calls_per_cycle" in {where} must be a whole number from 1 to '
                          f"{MAX_CALLS_PER_CYCLE:,}.")
    if not 2 <= reporting["keep_rankings"] <= 1000:
        raise ConfigError(f'Config key "reporting.keep_rankings" in {where} must be a whole number from 2 to 1,000.')
    share = reporting["control_share"]
    if not (math.isfinite(share) and 0 <= share <= MAX_CONTROL_SHARE):
        raise ConfigError(f'Config key "reporting.control_share" in {where} must be a number from 0 (no measurement '
                          f"group) to {MAX_CONTROL_SHARE}, not {share!r}.")


def _check_distinct(paths: dict[str, Path], where: str) -> None:
    """Folders one step reads and another writes must differ, or a run would read its own outputs."""
    for first, second in (("input_folder_path", "output_folder_path"), ("input_folder_path", "output_model_path"),
                          ("input_folder_path", "prod_deployment_path"), ("output_model_path", "prod_deployment_path"),
                          ("output_folder_path", "prod_deployment_path")):
        if first in paths and paths[first] == paths[second]:
            raise ConfigError(f'Config keys "{first}" and "{second}" in {where} name the same folder; '
                              "they must differ.")


def parse_config(raw: Any, config_file: Path) -> Config:
    """Validate a decoded config document; relative paths resolve against its folder."""
    where = str(config_file)
    if not isinstance(raw, dict):
        raise ConfigError(f"Config file {where} must hold a JSON object.")
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f'Unknown config key "{unknown[0]}" in {where}.')
    # The data comes from a folder of CSV files or from a database table: exactly one of the two.
    from_database = "input_database" in raw
    if from_database and "input_folder_path" in raw:
        raise ConfigError(f'Config file {where} names both "input_folder_path" and "input_database"; keep one.')
    path_keys = [key for key in PATH_KEYS if not (from_database and key == "input_folder_path")]
    for key in path_keys:
        if key not in raw:
            alternative = ' (or a table in "input_database")' if key == "input_folder_path" else ""
            raise ConfigError(f'Config key "{key}"{alternative} is missing from {where}.')
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise ConfigError(f'Config key "{key}" in {where} must be a non-empty string.')
        if "\x00" in raw[key]:
            raise ConfigError(f'Config key "{key}" in {where} holds a NUL character; no path can.')
    base = config_file.parent
    paths = {key: (base / raw[key]).resolve() for key in path_keys}
    database = None
    if from_database:
        from riskcore.data.db_setting import parse_input_database  # standard library only

        database = parse_input_database(raw["input_database"], base, where)
    elif not paths["input_folder_path"].is_dir():
        raise ConfigError(f'Config key "input_folder_path" in {where} names a folder that does not exist: '
                          f'{raw["input_folder_path"]}.')
    _check_distinct(paths, where)
    model = _check_section(raw.get("model", {}), "model", MODEL_DEFAULTS, MODEL_TYPES, where)
    _check_model(model, where)
    automation = _check_section(raw.get("automation", {}), "automation", AUTOMATION_DEFAULTS, AUTOMATION_TYPES,
                                where)
    if is_course_rule(automation) and "holdout_share" not in raw.get("automation", {}):
        # The course retrains on finaldata.csv whole; its rule holds rows out only when asked to.
        automation["holdout_share"] = 0.0
    _check_automation(automation, where)
    alerts = _check_alerts(raw.get("alerts", {}), where)
    max_id_length = _max_id_length(raw.get("max_id_length", MAX_ID_LENGTH), where)
    reporting = _check_section(raw.get("reporting", {}), "reporting", REPORTING_DEFAULTS, REPORTING_TYPES, where)
    _check_reporting(reporting, where)
    api = _check_section(raw.get("api", {}), "api", API_DEFAULTS, API_TYPES, where)
    return Config(
        config_file=config_file,
        input_folder=paths.get("input_folder_path"),
        output_folder=paths["output_folder_path"],
        test_data_folder=paths["test_data_path"],
        output_model_folder=paths["output_model_path"],
        prod_deployment_folder=paths["prod_deployment_path"],
        model=model,
        automation=automation,
        reporting=reporting,
        input_database=database,
        alerts=alerts,
        max_id_length=max_id_length,
        api=api,
    )


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and validate the config file (default: config.json beside the scripts)."""
    config_file = Path(path if path is not None else DEFAULT_CONFIG).absolute()
    try:
        if config_file.exists() and not config_file.is_file():  # a pipe would block the read for good
            raise ConfigError(f"Config file {config_file} is not a regular file.")
        text = config_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Config file {config_file} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {config_file} cannot be read ({exc.__class__.__name__}).") from None
    try:
        raw = json.loads(text, object_pairs_hook=_object_without_repeats)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"Config file {config_file} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
        ) from None
    except RecursionError:
        raise ConfigError(f"Config file {config_file} is not valid JSON (nested too deeply).") from None
    except _RepeatedKey as exc:
        raise ConfigError(f'Config file {config_file} gives the key "{exc}" twice in one object; keep one.') from None
    return parse_config(raw, config_file)


class _RepeatedKey(Exception):
    """A key given twice in one JSON object: json.loads would keep the last silently."""


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        keys = [key for key, _ in pairs]
        raise _RepeatedKey(next(key for place, key in enumerate(keys) if key in keys[:place]))
    return document
