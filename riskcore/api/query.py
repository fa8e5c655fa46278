"""The query parameters of a request, read one way by every endpoint and page (GET /risk, /history, /)."""

from __future__ import annotations

import json

from flask import request

from riskcore.api.errors import ApiError

MAX_DIGITS = 9  # a longer number is no page, offset or count this API can serve
DEFAULT_LIMIT = 50  # items a page of GET /risk, /calls and /history holds when ?limit= is not given
MAX_LIMIT = 1000
MAX_QUERY = 100  # characters of a search (?q=): the page keeps as many, GET /risk refuses more


def known_parameters(path: str, names: tuple[str, ...], said: str | None = None) -> None:
    """Refuse a query parameter the endpoint at `path` does not take, or ApiError 400: one sentence naming it and
    those it takes (`said`: how to list them, when plain names do not say it all)."""
    unknown = [key for key in request.args if key not in names]
    if not unknown:
        return
    listed = said or (", ".join(f'"{name}"' for name in names[:-1]) + f' and "{names[-1]}"' if len(names) > 1
                      else f'"{names[0]}"' if names else "no query parameters")
    raise ApiError(400, f"Unknown query parameter {json.dumps(unknown[0][:60])}; {path} takes {listed}.",
                   field=unknown[0][:60])


def given_number(name: str, default: int) -> tuple[int | None, str]:
    """(the whole number a query parameter holds, or None when it holds none; its text), `default` when absent,
    ApiError 400 when given twice. ASCII digits only (str.isdigit takes "١" and "²"), surrounding spaces ignored."""
    given = request.args.getlist(name)
    if not given:
        return default, str(default)
    if len(given) > 1:
        raise ApiError(400, f'The query parameter "{name}" may be given once only.', field=name)
    text = given[0].strip()
    return (int(text) if text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS else None), text


def query_number(name: str, default: int, lowest: int, highest: int | None = None) -> int:
    """A query parameter that must be a whole number in a range, or ApiError 400: one sentence naming it."""
    value, text = given_number(name, default)
    if value is None or value < lowest or (highest is not None and value > highest):
        # Digits, but more of them than any count here: "of at least 0" would be true of them and refuse them.
        too_large = value is None and text.isascii() and text.isdigit()
        top = highest if highest is not None else 10**MAX_DIGITS - 1 if too_large else None
        bounds = f"from {lowest} to {top}" if top is not None else f"of at least {lowest}"
        raise ApiError(400, f'The query parameter "{name}" must be a whole number {bounds}.', field=name)
    return value


def page_in_range(number: int | None, pages: int, held: str) -> int:
    """?page= (as given_number read it) against the pages there are, from 1 to `pages` (1 for an empty list, its one
    empty page), or ApiError 400 naming "page" and the last page: past the end is refused, as GET /risk refuses an
    offset past the end. `held`: what the pages hold ("6,561 clients, 50 a page")."""
    if number is not None and 1 <= number <= pages:
        return number
    bounds = f"a whole number from 1 to {pages} ({held})"
    if number is not None and number > pages:
        raise ApiError(400, f'Page {number} is past the last page, {pages}: the query parameter "page" must be '
                            f"{bounds}.", field="page")
    raise ApiError(400, f'The query parameter "page" must be {bounds}.', field="page")


def query_choice(name: str, choices: tuple[str, ...], default: str = "") -> str:
    """A query parameter that must be one of `choices`, or ApiError 400: one sentence naming it and the value given.

    Given once; empty or absent is `default`.
    """
    given = request.args.getlist(name)
    if len(given) > 1:
        raise ApiError(400, f'The query parameter "{name}" may be given once only.', field=name)
    value = given[0] if given else ""
    if not value:
        return default
    if value not in choices:
        raise ApiError(400, f'The query parameter "{name}" must be one of {", ".join(choices)}, not '
                            f"{json.dumps(value[:60])}.", field=name)
    return value


def search_text() -> str:
    """?q=: the text a client id must contain, given once, at most MAX_QUERY characters (surrounding spaces dropped)."""
    given = request.args.getlist("q")
    if len(given) > 1:
        raise ApiError(400, 'The query parameter "q" may be given once only.', field="q")
    text = given[0].strip() if given else ""
    if len(text) > MAX_QUERY or not text.isprintable():
        raise ApiError(400, f'The query parameter "q" must be printable text of at most {MAX_QUERY} characters.',
                       field="q")
    return text


def page_search_text() -> str:
    """?q= as the page's search box sends it: surrounding spaces dropped, cut to MAX_QUERY characters, never refused."""
    return request.args.get("q", "").strip()[:MAX_QUERY]
