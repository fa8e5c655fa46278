"""Tests for riskcore.formatting, the one way numbers read: on the web page (its Jinja filters), in the PDF report,
in the diagnostics text and in the run history."""

from __future__ import annotations

import pytest

import app as app_module
from riskcore import formatting
from riskcore.ops.history import format_history
from riskcore.report.diagnostics import text_table

DASH = "\N{EM DASH}"


@pytest.mark.parametrize(("value", "shown"), [(None, DASH), (0, "0"), (6462, "6,462"), (1234567, "1,234,567"),
                                              (2.9, "2"), (True, "1")])
def test_a_count_is_whole_with_thousands_separators(value, shown):
    assert formatting.count(value) == shown


@pytest.mark.parametrize(("value", "decimals", "fixed", "score", "signed"), [
    (None, 2, DASH, DASH, DASH),
    (0, 2, "0.00", "0.00", "+0.00"),
    (0.69, 4, "0.6900", "0.6900", "+0.6900"),
    (-0.346, 2, "-0.35", "-0.35", "-0.35"),
    (1234.5, 1, "1,234.5", "1234.5", "+1234.5"),
    (2.1, 0, "2", "2", "+2"),
])
def test_fixed_score_and_signed_differ_only_in_separators_and_sign(value, decimals, fixed, score, signed):
    assert formatting.fixed(value, decimals) == fixed
    assert formatting.score(value, decimals) == score
    assert formatting.signed(value, decimals) == signed


@pytest.mark.parametrize(("value", "decimals", "shown"), [
    (None, 2, DASH), (220, 2, "220"), (220, 0, "220"), (220.0, 0, "220"), (220.0, 2, "220.00"), (0.5, 2, "0.50"),
    (12345.678, 2, "12,345.68"), (0.61234, 4, "0.6123"), (2.5, 0, "2"),
])
def test_a_report_number_is_a_count_when_whole(value, decimals, shown):
    assert formatting.number(value, decimals) == shown


@pytest.mark.parametrize(("value", "shown"), [(None, "-"), (0.5, "0.5000"), (1234.5, "1,234.5000"),
                                              (12_345_678.25, "12,345,678.2"), (1200, "1,200"), ("pandas", "pandas")])
def test_a_table_cell_reads_as_the_diagnostics_text_gives_it(value, shown):
    assert formatting.table_cell(value) == shown


@pytest.mark.parametrize(("probability", "shown"), [(0.0, "<0.1%"), (0.0009, "<0.1%"), (0.001, "0.1%"),
                                                    (0.5, "50.0%"), (0.999, "99.9%"), (0.9991, ">99.9%"), (1.0, ">99.9%")])
def test_a_percent_never_reads_as_certain(probability, shown):
    assert formatting.percent(probability) == shown


@pytest.mark.parametrize(("byte_count", "shown"), [(None, ""), (0, "0 KB"), (5000, "5 KB"),
                                                   (1024 * 1024, "1.0 MB"), (3 * 1024 * 1024 + 5, "3.0 MB")])
def test_a_size_in_kilobytes_or_megabytes(byte_count, shown):
    assert formatting.size(byte_count) == shown


def test_the_page_the_diagnostics_and_the_history_format_with_it(project):
    app_filters = app_module.create_app(project).jinja_env.filters
    assert {name: app_filters[name] for name in ("count", "score", "signed", "number", "size", "percent")} == {
        "count": formatting.count, "score": formatting.score, "signed": formatting.signed,
        "number": formatting.fixed, "size": formatting.size, "percent": formatting.percent}
    assert text_table(["c", "mean"], [["a", 1234.5], ["b", None]]).splitlines()[2:] == [
        "a  1,234.5000", "b           -"]
    row = {"id": 1, "started_at": "2026-01-01T00:00:00Z", "new_files": [], "rows_ingested": None, "rows_new": None,
           "f1_new_data": 0.61, "f1_ingested": None, "baseline": 0.7, "drift_test": "raw", "decision": "keep",
           "version_before": "v1", "version_after": "v1", "outcome": "done", "error": None}
    line = format_history([row], ks_alpha=0.01).splitlines()[1]
    assert "0.6100" in line and "0.7000" in line and DASH not in line


@pytest.mark.parametrize(("change", "words"), [("up 2495", "up 2,495"), ("down 12", "down 12"), ("new", "new"),
                                               ("same", "same"), ("", ""), (None, None)])
def test_a_change_in_rank_reads_with_its_places_grouped(change, words):
    """The page and the PDF say "up 2,495" where risk_scores.csv and /risk keep "up 2495" (a manager read the one,
    a spreadsheet the other)."""
    assert formatting.rank_change(change) == words


@pytest.mark.parametrize(("bounds", "shown"), [([0.612, 0.758], " [0.61, 0.76]"), ((0, 1), " [0.00, 1.00]"),
                                               (None, ""), ([], ""), ([0.5], ""), ([0.0, 0.0], " [0.00, 0.00]"),
                                               # the walk: 10,419 clients' estimate read "[0.88, 0.88]"
                                               ([0.8763609, 0.8807244], " [0.876, 0.881]"),
                                               ([0.87641, 0.87649], " [0.8764, 0.8765]")])
def test_an_interval_follows_its_figure_in_brackets_or_is_left_out(bounds, shown):
    assert formatting.interval(bounds) == shown


@pytest.mark.parametrize(("value", "label", "shown"), [
    (0.2496, "some shift", "0.249"), (0.0999, "stable", "0.099"), (0.57, "some shift", "0.570"),
    (0.25, "drift", "0.250"), (1.2498, "drift", "1.250"), (5.6784, "too few rows", "5.678"), (0.0, "stable", "0.000")])
def test_a_psi_never_reads_as_reaching_a_threshold_it_is_below(value, label, shown):
    """The walk's /model: "PSI 0.250 (some shift)" under "drift is a PSI at or above 0.25" (the PSI was 0.2496)."""
    from riskcore.model.drift_evidence import figures_text

    assert formatting.psi_figure(value, label) == shown
    assert figures_text({"psi": value, "psi_label": label}) == f"PSI {shown} ({label})"


@pytest.mark.parametrize(("amount", "noun", "nouns", "text"), [
    (1, "row", None, "1 row"), (0, "row", None, "0 rows"), (2000, "row", None, "2,000 rows"),
    (1, "client who was", "clients who were", "1 client who was"),
    (3, "client who was", "clients who were", "3 clients who were"),
])
def test_a_count_reads_with_its_noun_in_the_singular_only_for_one(amount, noun, nouns, text):
    assert formatting.plural(amount, noun, nouns) == text


def test_an_auc_below_chance_and_a_figure_on_few_rows_read_one_way():
    from riskcore.contract import FEW_ROWS
    from riskcore.formatting import BELOW_CHANCE, below_chance, few_rows_note

    assert below_chance(0.499) and not below_chance(0.5) and not below_chance(None)
    assert BELOW_CHANCE == "below 0.5: worse than chance"
    assert few_rows_note(FEW_ROWS - 1) == f" ({FEW_ROWS - 1} rows: fewer than {FEW_ROWS})"
    assert few_rows_note(FEW_ROWS) == "" and few_rows_note(None) == ""
