"""gunicorn's settings for the API (`make serve`, `make run`): read by `gunicorn -c gunicorn.conf.py wsgi:app`.

Threaded workers: a client that opens a connection and never finishes its headers holds one thread
for at most `timeout` seconds, not a whole worker, so /health keeps answering while a few such
clients wait (tests/test_serving.py holds two open).

The access log goes to logs/access.log beside this file (`--access-logfile` chooses another), in
gunicorn's combined format less what may carry a secret: the request line without its query string,
no referrer (it holds the query of the page the browser came from), no request header but the user
agent (never the X-API-Key nor the session cookie). GET /metrics counts the requests of every worker
(prometheus_client's multiprocess mode): each gunicorn start gets a fresh folder for their counts, and one
for the pages' forms' attempts, so that a rate limit holds across the workers (riskcore.api.form_guard).
Each worker loads the model, builds the call list and renders the page before it takes requests, then sets what
it holds aside from garbage collection (gc.freeze).
"""

import os
import shutil
import tempfile
from pathlib import Path

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = 2
worker_class = "gthread"
threads = 4
timeout = 30  # seconds a request (or a client still sending its headers) may take
graceful_timeout = 10
keepalive = 2
control_socket_disable = True

LOGS = Path(__file__).resolve().parent / "logs"
LOGS.mkdir(exist_ok=True)  # gunicorn opens the access log before any hook runs
accesslog = str(LOGS / "access.log")
# %(U)s is the path alone; gunicorn's default %(r)s would log the query string, %(f)s the referrer.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "-" "%(a)s" %(L)s'

# prometheus_client reads this when it is first imported, in each worker: it must be set before they start.
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PREFIX = "risk-metrics-"
if not os.environ.get(METRICS_ENV):
    os.environ[METRICS_ENV] = tempfile.mkdtemp(prefix=METRICS_PREFIX)


# The pages' forms count each client address's attempts in one file for every worker: set before they start.
ATTEMPTS_ENV = "RISK_FORM_ATTEMPTS"  # riskcore.api.form_guard's name (riskcore is not importable before --chdir)
FORMS_PREFIX = "risk-forms-"
if not os.environ.get(ATTEMPTS_ENV):
    os.environ[ATTEMPTS_ENV] = str(Path(tempfile.mkdtemp(prefix=FORMS_PREFIX)) / "attempts.sqlite")


def on_starting(server):
    """Refuse to start, with one sentence, when the config or the API key is unusable (before any worker);
    empty the metrics folder of an earlier run (an operator may name the same folder each time)."""
    import sys

    from riskcore.api.key import api_key
    from riskcore.config import load_config
    from riskcore.contract import CONFIG_ENV, UserError

    try:
        api_key(load_config(os.environ.get(CONFIG_ENV) or None))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        remove_own_folders()  # on_exit does not run after a refusal here
        sys.exit(exc.exit_code)
    for counts in Path(os.environ[METRICS_ENV]).glob("*.db"):
        counts.unlink()


def post_worker_init(worker):
    """Warm up before the worker takes requests: the model, the call list and the page; then set what it holds
    aside from garbage collection (riskcore.api.warm_up)."""
    from riskcore.api.warm_up import set_aside, warm_up

    worker.notify()  # the warm-up gets the whole `timeout`, whatever booting the worker took
    warm_up(worker.wsgi, worker.log)
    set_aside(worker.log)


def child_exit(server, worker):
    """A worker that exited: its live figures leave /metrics (its counts stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    remove_own_folders()


def remove_own_folders():
    """Remove the metrics and form-attempts folders this file made (not ones the operator named)."""
    for folder, prefix in ((Path(os.environ[METRICS_ENV]), METRICS_PREFIX),
                           (Path(os.environ[ATTEMPTS_ENV]).parent, FORMS_PREFIX)):
        if folder.name.startswith(prefix) and folder.parent == Path(tempfile.gettempdir()):
            shutil.rmtree(folder, ignore_errors=True)
