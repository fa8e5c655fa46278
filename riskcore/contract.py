"""What users rely on: the data schema, artifact names, exit statuses and the errors they can cause."""

from __future__ import annotations

import unicodedata
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_DIR / "config.json"

# --- Data schema -----------------------------------------------------------------------------
ID_COLUMN = "corporation"
FEATURES = ("lastmonth_activity", "lastyear_activity", "number_of_employees")
TARGET = "exited"
COLUMNS = (ID_COLUMN, *FEATURES, TARGET)
# Optional, never a feature: a client's yearly revenue (a number >= 0, empty when unknown, in the files' own
# currency). Where it is known the call list gives each client its revenue at risk (probability x revenue).
REVENUE = "annual_revenue"
KNOWN_COLUMNS = (*COLUMNS, REVENUE)  # every column a client file or table may have, in contract order
MAX_VALUE = 10**12  # far above any real activity count; keeps values exact in float64
MAX_ID_LENGTH = 200  # characters of a client id ingestion accepts (config: max_id_length): a link and a line
ID_BLANKS = " \t"  # not part of a client id: "abcd " and "abcd" are one client


# Nor in one, anywhere: an id is one line of text, what a link, a log line, the page and the PDF can show as it is.
# Unicode categories: control characters (line breaks, tabs, ...) and the line and paragraph separators. Format
# characters stay (the zero-width joiner of an emoji sequence, a right-to-left mark).
ID_FORBIDDEN = ("Cc", "Zl", "Zp")
ID_ONE_LINE = "a client id is one line of text without control characters"
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines splits at


def normalise_id(value: str) -> str:
    """A client id as every part of the system compares it: surrounding blanks stripped (the id rule)."""
    return value.strip(ID_BLANKS)


def id_break(value: str) -> str | None:
    """The first character of an id that ID_FORBIDDEN refuses, in words ("a line break (\\n)"); None: it has none."""
    found = next((ch for ch in value if unicodedata.category(ch) in ID_FORBIDDEN), None)
    if found is None:
        return None
    code = found.encode("unicode_escape").decode("ascii") if found in "\n\r\t" else f"U+{ord(found):04X}"
    kind = "a line break" if found in LINE_BREAKS else "a tab" if found == "\t" else "a control character"
    return f"{kind} ({code})"


FEATURE_LABELS = {
    "lastmonth_activity": "activity last month",
    "lastyear_activity": "activity last year",
    "number_of_employees": "employees",
}

FEW_ROWS = 30  # a figure measured on fewer rows is marked as such wherever it appears

# --- Artifact names --------------------------------------------------------------------------
FINAL_DATA = "finaldata.csv"
INGESTED_FILES = "ingestedfiles.txt"
INGESTION_RECORD = "ingestionrecord.json"
MODEL_FILE = "trainedmodel.pkl"
MODEL_METADATA = "modelmetadata.json"
CALIBRATOR_FILE = "calibrator.pkl"  # maps the model's log-odds to calibrated probabilities (riskcore.model.calibration)
SCORE_FILE = "latestscore.txt"
SCORE_RECORD = "scorerecord.json"  # which model the score in latestscore.txt belongs to
TEST_DATA = "testdata.csv"
DIAGNOSTICS_RECORD = "diagnostics.json"
RISK_SCORES = "risk_scores.csv"
RISK_RECORD = "risk_scores.json"  # which model and release made the risk list beside it
CONFUSION_MATRIX = "confusionmatrix.png"
SUMMARY_REPORT = "summary_report.pdf"
API_RETURNS = "apireturns.txt"
RUN_HISTORY = "runhistory.sqlite"
CALLS_STORE = "calls.sqlite"  # beside the run history: the calls managers recorded, each cycle's list and groups
ESTIMATE_LEDGER = "estimateledger.sqlite"  # beside the history: each estimated window's clients (riskcore.ops.ledger)
TRAINING_DATA = "trainingdata.csv"  # beside finaldata.csv: each client's latest labelled snapshot, when it differs
ROW_DIGESTS = "rowdigests"  # beside finaldata.csv: each ingested file's row digests, to tell a changed file's new rows
EVIDENCE_WINDOW = "evidencewindow.csv"  # the drift check's rows since its last decision, deployed with the records
TABLE_SNAPSHOT = "tablesnapshot.csv"  # beside finaldata.csv: the database table's rows as last read
# Reports numbered per run (the contract: plain name first, then name2, name3, ...).
NUMBERED_REPORTS = (CONFUSION_MATRIX, SUMMARY_REPORT, API_RETURNS)
# What deployment.py publishes; the first three are the course's graded names.
DEPLOYED_FILES = (MODEL_FILE, SCORE_FILE, INGESTED_FILES, MODEL_METADATA, INGESTION_RECORD, CALIBRATOR_FILE)
RELEASES_DIR = "releases"
CURRENT_LINK = "current"
MANIFEST = "deployment.json"

# --- The API's names, shared by the server, apicalls.py and the automation --------------------
CONFIG_ENV = "RISK_CONFIG"
API_KEY_ENV = "RISK_API_KEY"
API_KEY_FILE_ENV = "RISK_API_KEY_FILE"  # a file holding the key, readable by its owner only
API_KEY_HEADER = "X-API-Key"

# --- Exit statuses ---------------------------------------------------------------------------
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


class UserError(Exception):
    """A mistake a user can cause and fix; its message is one sentence naming what is wrong."""

    exit_code = EXIT_FAILED


class ConfigError(UserError):
    """The configuration file is missing, malformed or inconsistent."""

    exit_code = EXIT_CONFIG


class DataError(UserError):
    """An input file does not follow the data contract."""


class IntegrityError(UserError):
    """A deployed artifact does not match the hash recorded when it was deployed."""
