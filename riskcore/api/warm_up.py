"""A worker's warm-up before it takes requests (gunicorn.conf.py's post_worker_init): no client pays for a cold start.

The first request of a fresh worker used to take 0.3-1.5 s: the model loaded and checked, numpy, polars and
scikit-learn imported, the call list ranked, the page's templates compiled and the page rendered. The
warm-up does all of it through the app's own test client (so through the same caches the requests use):
GET /health loads the model, the call list is built, GET / renders the first page. Its requests are not
counted in /metrics (riskcore.api.metrics.WARM_UP). A failure is logged, never fatal: the worker then
serves as it would have without the warm-up.

What the worker holds by then (the libraries' modules, the model, the caches: about 150,000 objects) stays for
its life, and is then set aside from the garbage collector's full passes (`set_aside`, gc.freeze, called by
gunicorn.conf.py): each pass over them took 80-130 ms, and a POST /prediction of 1,000 records (some 15,000 new
objects) set one off every ten requests or so. Reference counting still frees what is set aside.
"""

from __future__ import annotations

import gc
import logging
import time

from flask import Flask

from riskcore.api.metrics import WARM_UP
from riskcore.api.page_access import KEY_GIVEN
from riskcore.api.paged_call_list import CallList

log = logging.getLogger(__name__)


def warm_up(app: Flask, logger: logging.Logger | logging.LoggerAdapter | None = None) -> str:
    """Load the model, build the call list and render GET / once; the sentence logged (what was warmed, how long)."""
    logger = logger or log
    started = time.perf_counter()
    try:
        client = app.test_client()
        if app.extensions["risk_key"].current():  # the page asks for the key: the session cookie says it was given
            with client.session_transaction() as session:
                session[KEY_GIVEN] = True
        environ = {WARM_UP: True}
        client.get("/health", environ_base=environ)
        risk = app.extensions["risk"]
        _, served = risk.models.serve()
        calls = risk.call_list(served) if served is not None else None
        page = client.get("/", environ_base=environ)
    except Exception:  # a warm-up must never stop a worker that could still serve
        logger.exception("warm-up failed after %.2f s; the worker serves without it", time.perf_counter() - started)
        return "warm-up failed"
    model = f"model {served.model_version}" if served is not None else "no model deployed"
    listed = f"call list of {calls.total:,} clients" if isinstance(calls, CallList) else "no call list"
    sentence = (f"warm-up done in {time.perf_counter() - started:.2f} s: {model}, {listed}, "
                f"page / answered {page.status_code}")
    logger.info("%s", sentence)
    return sentence


def set_aside(logger: logging.Logger | logging.LoggerAdapter | None = None) -> int:
    """Collect once, then keep every object alive now out of later collections (gc.freeze); how many were set aside."""
    gc.collect()
    gc.freeze()
    kept = gc.get_freeze_count()
    (logger or log).info("%s objects set aside from garbage collection for the worker's life", f"{kept:,}")
    return kept
