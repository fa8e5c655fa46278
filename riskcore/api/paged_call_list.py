"""The call list as the API and the page serve it: GET /risk pages through it as JSON, the web page by
page number, search, size band and move.

The list is the ingested data ranked by the served model (riskcore.report.call_list), built by
RiskService.call_list once per release and version of finaldata.csv; each row is rendered to JSON
once, when an answer first holds it.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from riskcore.api.errors import Answer, ApiError, json_bytes
from riskcore.api.query import page_in_range
from riskcore.api.served_model import Served
from riskcore.contract import FEATURES, FINAL_DATA, ID_COLUMN, REVENUE
from riskcore.formatting import count
from riskcore.model.reasons import Explainer

# The size bands the page filters by, in employees (the EU's enterprise sizes): (lowest, highest or None).
SIZE_BANDS = {"micro": (0, 9), "small": (10, 49), "medium": (50, 249), "large": (250, None)}
MOVES = ("new", "up")  # the page's "what changed" filter: new on the list, moved up since the previous run
BY_REVENUE = "revenue_at_risk"  # an order of /risk and the page (?order=): the largest revenue at risk first


class CallList:
    """The ingested clients ranked by a served model (riskcore.report.call_list): GET /risk pages through it
    as JSON, the web page by page number and search.

    Each row is rendered to JSON once, when an answer first holds it; an answer is then a join of
    ready bytes. The page's columns (rank, probability, revenue at risk, the id in lower case for the
    search) are added once, when the page first asks; so is the order by revenue at risk.
    """

    def __init__(self, served: Served, ranking, modified_at: str, previous: tuple[int, Any] | None = None) -> None:
        from riskcore.report.rankings import with_changes

        self.served = served
        ranked = ranking.frame.lazy().with_row_index("rank", offset=1)  # with previous_rank and change
        self.frame = with_changes(ranked, previous[1] if previous is not None else None).collect()
        self.total = ranking.frame.height
        self.left = ranking.left  # clients left out because their latest snapshot says they left
        self.rows: dict[int, bytes] = {}
        self.explainer: Explainer | None = served.explainer  # None: a model whose metadata predates the reasons
        explainer = self.explainer
        self.group: frozenset[str] = frozenset()  # the measurement group the rendered rows were marked with
        self.about = {"model_version": served.model_version, "release": served.release, "data": FINAL_DATA,
                      "modified_at": modified_at, "total": self.total, "rows_read": ranking.rows_read,
                      "left_out": {"earlier_snapshots": ranking.earlier_snapshots, "left": ranking.left},
                      "average_log_odds": explainer.average_log_odds if explainer is not None else None,
                      "compared_with_run": previous[0] if previous is not None else None}

    @property
    def release(self) -> str:
        return self.served.release

    @property
    def model_version(self) -> str:
        return self.served.model_version

    @property
    def average_log_odds(self) -> float | None:
        return self.about["average_log_odds"]

    @property
    def clients(self) -> int:
        return self.total

    # --- GET /risk ---
    def answer(self, limit: int, offset: int, group: frozenset[str] = frozenset(), query: str = "",
               order: str = "risk", band: str = "", moved: str = "") -> Answer:
        """`limit` clients from rank offset + 1 (of those the page's search and filters keep: an id containing
        `query`, whatever the case, a size `band`, new or `moved` up; in `order`: riskiest first, or BY_REVENUE), or
        ApiError 400 for an offset past the end; each marked whether it is in this cycle's measurement group."""
        self._mark(group)
        filtered = bool(query or band or moved)
        places = self.matching(query, order, band, moved) if filtered or order == BY_REVENUE else None
        total = self.total if places is None else len(places)
        if offset >= total and offset > 0:  # 0 on an empty list is its one (empty) page
            held = f"{total} clients match" if filtered else f"the call list holds {total} clients"
            raise ApiError(400, f'The query parameter "offset" must be a whole number from 0 to '
                                f"{max(total - 1, 0)} ({held}).", field="offset")
        end = min(offset + limit, total)
        shown = list(range(offset, end)) if places is None else places[offset:end]
        missing = [index for index in shown if index not in self.rows]
        if missing and places is None:
            self._render(min(missing), max(missing) + 1)
        elif missing:
            self._render_each(missing)
        matches = total if filtered else None
        head = json_bytes({**self.about, "q": query or None, "size": band or None, "moved": moved or None,
                           "order": order, "matches": matches,
                           "offset": offset, "limit": limit, "count": end - offset,
                           "next_offset": end if end < total else None})
        return 200, head[:-1] + b',"clients":[' + b",".join(self.rows[i] for i in shown) + b"]}"

    def one(self, client_id: str, group: frozenset[str] = frozenset(), story: dict[str, Any] | None = None) -> Answer:
        """GET /risk/<id>: the list's figures, the client's `story` (riskcore.api.client_story) and its row as /risk
        gives it (null for a client not on the list: one who left)."""
        self._mark(group)
        index = self.place(client_id)
        if index is not None and index not in self.rows:
            self._render(index, index + 1)
        head = json_bytes({**self.about, ID_COLUMN: client_id, **(story or {})})
        return 200, head[:-1] + b',"client":' + (self.rows[index] if index is not None else b"null") + b"}"

    def place(self, client_id: str) -> int | None:
        """The client's place in the list (0 first), or None when it is not listed."""
        import polars as pl

        found = self.ranking.filter(pl.col(ID_COLUMN) == client_id)
        return found.item(0, "rank") - 1 if found.height else None

    def matching(self, query: str, order: str = "risk", band: str = "", moved: str = "") -> list[int]:
        """The places in the list (0 first) of the clients the page would show for a search and filters (`shown`),
        in `order`."""
        return [rank - 1 for rank in self.shown(query, band, moved, order).get_column("rank").to_list()]

    def in_order(self, order: str):
        """The page's list in `order`: by rank, or BY_REVENUE (by_revenue)."""
        return self.by_revenue if order == BY_REVENUE else self.ranking

    @cached_property
    def by_revenue(self):
        """The list with the largest revenue at risk first, clients whose revenue is unknown last, ties by rank."""
        from riskcore.report.call_list import REVENUE_AT_RISK

        return self.ranking.sort([REVENUE_AT_RISK, "rank"], descending=[True, False], nulls_last=True,
                                 maintain_order=True)

    def _mark(self, group: frozenset[str]) -> None:
        if group != self.group:  # a new cycle: the rows are marked again
            self.rows, self.group = {}, group

    def _render(self, start: int, end: int) -> None:
        from riskcore.report.call_list import entries

        rows = entries(self.frame.slice(start, end - start), start + 1, self.explainer, self.group,
                       self.served.calibrator)
        self.rows.update((index, json_bytes(row)) for index, row in enumerate(rows, start=start))

    def _render_each(self, places: list[int]) -> None:
        from riskcore.report.call_list import entries

        for index in places:
            [row] = entries(self.frame.slice(index, 1), index + 1, self.explainer, self.group, self.served.calibrator)
            self.rows[index] = json_bytes(row)

    # --- The web page ---
    @cached_property
    def ranking(self):
        """The list as the page shows and searches it: each client's rank, probability, revenue and revenue at risk
        (empty without revenue), and id in lower case."""
        import polars as pl

        from riskcore.report.call_list import KEY, REVENUE_AT_RISK, probability, revenue_at_risk

        chance = probability(self.frame[KEY], self.served.calibrator)
        revenue = self.frame[REVENUE] if REVENUE in self.frame.columns else pl.Series([None] * self.frame.height,
                                                                                       dtype=pl.Float64)
        return self.frame.with_columns(probability=chance, search=pl.col(ID_COLUMN).str.to_lowercase(),
                                       **{REVENUE: revenue, REVENUE_AT_RISK: revenue_at_risk(chance, revenue)})

    @cached_property
    def has_revenue(self) -> bool:
        """Whether some listed client's annual_revenue is known (the page then shows revenue at risk and its order)."""
        return REVENUE in self.frame.columns and self.frame[REVENUE].null_count() < self.frame.height

    def shown(self, query: str = "", band: str = "", moved: str = "", order: str = "risk"):
        """The clients the page shows for a search and filters, in `order` (rank, or BY_REVENUE): ids containing
        `query` (whatever the case), of a size band (SIZE_BANDS), new on the list or moved up since the previous
        run (`moved`)."""
        import polars as pl

        rows = self.in_order(order)
        if query:
            rows = rows.filter(pl.col("search").str.contains(query.lower(), literal=True))
        if band:
            low, high = SIZE_BANDS[band]
            employees = pl.col("number_of_employees")
            rows = rows.filter((employees >= low) if high is None else employees.is_between(low, high))
        if moved == "new":
            rows = rows.filter(pl.col("change") == "new")
        elif moved == "up":
            rows = rows.filter(pl.col("change").str.starts_with("up "))
        return rows

    def shown_csv(self, query: str, band: str, moved: str, group: frozenset[str] = frozenset(),
                  order: str = "risk") -> str:
        """What the page shows for a search, filters and order, in risk_scores.csv's columns, every page of it."""

        from riskcore.report.call_list import risk_table, spreadsheet_safe

        rows = self.shown(query, band, moved, order)
        revenue = [REVENUE] if self.has_revenue else []
        table = risk_table(rows.select(ID_COLUMN, "log_odds", *FEATURES, *revenue), self.explainer, group,
                           calibrator=self.served.calibrator).collect()
        table = table.with_columns(spreadsheet_safe(ID_COLUMN), rank=rows["rank"], previous_rank=rows["previous_rank"],
                                   change=rows["change"])
        return table.write_csv()  # numbers written as in risk_scores.csv (call_list.risk_scores)

    def page(self, number: int | None, query: str, size: int, band: str = "", moved: str = "",
             order: str = "risk") -> tuple[list[dict[str, Any]], int, int, int]:
        """(the rows of a page, the page number shown, the number of pages, the rows in all) of the list, or of what a
        search and the filters keep (shown), in `order`.

        ApiError 400 for a page past the last one or no page number (None), as answer() refuses an offset past the
        end; an empty list has one (empty) page.
        """
        rows = self.shown(query, band, moved, order)
        pages = max(1, -(-rows.height // size))
        held = f"{count(rows.height)} clients match" if query or band or moved else f"{count(rows.height)} clients"
        number = page_in_range(number, pages, f"{held}, {size} a page")
        shown = rows.slice((number - 1) * size, size).to_dicts()
        return [self.with_reasons(row) for row in shown], number, pages, rows.height

    def client(self, client_id: str) -> dict[str, Any] | None:
        """A client's ranked row (its latest snapshot) with its reasons, or None."""
        import polars as pl

        found = self.ranking.filter(pl.col(ID_COLUMN) == client_id)
        return self.with_reasons(found.row(0, named=True)) if found.height else None

    def with_reasons(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row with its reasons, in the order riskcore.model.reasons lists them (none without an explainer)."""
        values = [row[feature] for feature in FEATURES]
        moved = row.get("change")
        row = {**row, "change_class": moved.split()[0] if moved else ""}  # new, up, down or same: the page's colour
        if self.explainer is None:
            return {**row, "reasons": [], "detail": []}
        return {**row, "reasons": self.explainer.reasons(values), "detail": self.explainer.detail(values)}
