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
