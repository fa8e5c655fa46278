"""gunicorn's settings for the API (`make serve`, `make run`): read by `gunicorn -c gunicorn.conf.py wsgi:app`.

Threaded workers: a client that opens a connection and never finishes its headers holds one thread
for at most `timeout` seconds, not a whole worker, so /health keeps answering while a few such
clients wait (tests/test_serving.py holds two open).
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = 2
worker_class = "gthread"
threads = 4
timeout = 30  # seconds a request (or a client still sending its headers) may take
graceful_timeout = 10
keepalive = 2
control_socket_disable = True


def post_worker_init(worker):
    """Load the deployed model before the worker takes requests: no client waits for a cold start."""
    worker.wsgi.test_client().get("/health")


def on_starting(server):
    """Refuse to start, with one sentence, when the config or the API key is unusable (before any worker)."""
    import sys

    from riskcore.api.key import api_key
    from riskcore.config import load_config
    from riskcore.contract import CONFIG_ENV, UserError

    try:
        api_key(load_config(os.environ.get(CONFIG_ENV) or None))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
