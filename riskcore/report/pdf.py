"""The PDF report: what it shows (ReportData), its sections, and build_pdf (reportlab).

Its look is riskcore.report.pdf_layout; the evidence it gives (the drift check behind it, a retrain's old and
new model on the same data) riskcore.report.pdf_evidence.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportlab import rl_config
from reportlab.lib.colors import HexColor
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import KeepTogether, PageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle

from riskcore.contract import (
    DIAGNOSTICS_RECORD,
    FEATURE_LABELS,
    FEW_ROWS,
    FINAL_DATA,
    ID_COLUMN,
    INGESTION_RECORD,
    RUN_HISTORY,
)
from riskcore.formatting import (
    BELOW_CHANCE,
    below_chance,
    few_rows_note,
    number,
    percent,
    plural,
    rank_change,
    score,
    when,
)
from riskcore.model.drift_evidence import baseline_text, drift_baseline, training_choice_text
from riskcore.model.evaluation import Evaluation
from riskcore.ops.calls import GROUP_MARK
from riskcore.release.load import Deployment
from riskcore.report.call_effect import GROUPS_HEADER, counting_note, group_rows
from riskcore.report.call_effect import TITLE as CALL_EFFECT_TITLE
from riskcore.report.call_list import GROUP, RiskList, at_risk_sentence
from riskcore.report.charts import BLUE, model_deployments
from riskcore.report.outputs import project_path
from riskcore.report.pdf_evidence import (
    DRIFT_SECTION,
    DriftEvidence,
    drift_check_lines,
    drift_flow,
    estimate_flow,
    estimate_lines,
    retrain_flow,
    retrain_line,
)
from riskcore.report.pdf_layout import (
    Styles,
    code_points,
    data_table,
    escape,
    image,
    missing_font_packages,
    shorten,
    undrawable,
    unjoined_sequences,
)
from riskcore.report.statistics import summary_table

SECTIONS = {
    "headline": "Headline",
    "trend": "F1 across deployments",
    "matrix": "Confusion matrix and ROC curve",
    "clients": "This cycle's calls",
    "summary": "Summary statistics",
    "missing": "Missing data",
    "distributions": DRIFT_SECTION,
    "estimates": "Estimated against realized F1, and calibration",
    "calls": CALL_EFFECT_TITLE,
    "timings": "Step timings",
    "dependencies": "Dependencies",
    "ingestion": "Ingestion record",
}


@dataclass
class ReportData:
    """Everything the PDF shows, gathered before anything is written."""

    run_number: int
    generated_at: str
    deployment: Deployment
    metadata: dict[str, Any]
    evaluation: Evaluation
    risk: RiskList
    deployments: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    summary: list[dict[str, Any]] | None
    missing: list[dict[str, Any]] | None
    ingested_rows: int | None
    drift: DriftEvidence
    retrain: dict[str, Any] | None  # a retrain's old and new model on the same data (riskcore.model.holdout)
    project: Path  # the config file's folder: files are named relative to it
    diagnostics: dict[str, Any] | None
    ingestion: dict[str, Any] | None
    charts: dict[str, bytes]
    served: dict[str, Any] | None = None  # the served model as /health says it (riskcore.release.listing)
    call_effect: dict[str, Any] | None = None  # the called clients against the measurement group (report.call_effect)


def headline_box(data: ReportData, styles: Styles, width: float):
    """The framed headline: the four numbers that matter and what they describe."""
    ev = data.evaluation
    few = few_rows_note(ev.rows)
    metrics = [(f"{ev.f1:.4f}", f"F1 on the test data{few}"), (f"{ev.precision:.4f}", f"precision{few}"),
               (f"{ev.recall:.4f}", f"recall{few}"),
               (f"{ev.auc:.3f}" if ev.auc is not None else "\N{EM DASH}",
                f"ROC AUC {BELOW_CHANCE}" if below_chance(ev.auc) else f"ROC AUC{few}")]
    cards = Table([[Paragraph(value, styles.metric) for value, _ in metrics],
                   [Paragraph(label, styles.metric_label) for _, label in metrics]],
                  colWidths=[(width - 24) / 4] * 4, hAlign="LEFT")
    cards.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0), ("BOTTOMPADDING", (0, 0), (-1, 0), 0)]))
    deployment, metadata = data.deployment, data.metadata
    served = data.served or {"deployed_at": deployment.model_deployed_at, "operator_state": None}
    state = served["operator_state"]
    lines = [f"<b>{escape(state['sentence'])}</b>"] if state else []
    lines += [
        f"<b>Model {escape(deployment.model_version)}</b>, trained {escape(metadata.get('trained_at', '?'))} "
        f"on {number(metadata.get('training_rows'), 0)} clients, first deployed {escape(when(served['deployed_at']))} "
        f"(now served from release {escape(deployment.release)}, published {escape(when(deployment.deployed_at))}).",
        f"Test data: {ev.rows:,} clients, {ev.positives:,} of whom left. Of those who left the model flagged "
        f"{ev.matrix[1][1]:,} (recall); of the {ev.matrix[0][1] + ev.matrix[1][1]:,} it flagged, "
        f"{ev.matrix[1][1]:,} did leave (precision). F1 recorded at deployment: "
        f"{float(deployment.manifest.get('score', ev.f1)):.4f}.",
    ]
    training = training_choice_text(metadata.get("candidates"))
    if training:
        lines.append(f"<b>Learnt from</b> {escape(training)}.")
    baseline = drift_baseline(metadata)
    if baseline is not None:
        lines.append(f"<b>Drift baseline</b>: {escape(baseline_text(baseline, why=True))}; drift checks compare new "
                     "rows with it, while the test-data F1 above is the course's score.")
    if ev.rows < FEW_ROWS:
        lines.append(f"<b>Measured on {ev.rows} rows, fewer than {FEW_ROWS}:</b> one client more or less moves "
                     "the test-data figures a lot; read them as rough.")
    if below_chance(ev.auc):
        lines.append(f"<b>ROC AUC {ev.auc:.3f} is below 0.5:</b> on the test data the model ranks clients who "
                     "stayed above clients who left more often than the reverse, worse than chance.")
    lines.extend(drift_check_lines(data.drift, deployment.model_version))
    lines.extend(estimate_lines(data.drift.check, metadata.get("calibration")))
    lines.extend(retrain_line(data.retrain, deployment.model_version))
    if data.risk.top:
        first = data.risk.top[0]
        lines.append(f"{data.risk.rows:,} clients of {escape(data.risk.source.name)} ranked by their risk of "
                     f"leaving; the riskiest, {escape(shorten(first[ID_COLUMN], PDF_ID_CHARS))}, leaves with "
                     f"probability {escape(percent(first['probability']))}.")
    inner = [[Paragraph(SECTIONS["headline"], styles.box_title)], [cards],
             *[[Paragraph(line, styles.body)] for line in lines]]
    box = Table(inner, colWidths=[width], hAlign="LEFT")
    box.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, -1), HexColor("#eef3f8")),
        ("BOX", (0, 0), (-1, -1), 1.2, HexColor(BLUE)),
        ("LEFTPADDING", (0, 0), (-1, -1), 12),
        ("RIGHTPADDING", (0, 0), (-1, -1), 12),
        ("TOPPADDING", (0, 0), (-1, 0), 10),
        ("BOTTOMPADDING", (0, -1), (-1, -1), 10),
    ]))
    return box


def trend_section(data: ReportData, styles: Styles, width: float) -> list:
    flow: list = []
    models = model_deployments(data.deployments)
    checks = [r for r in data.runs if isinstance(r.get("f1_new_data"), (int, float))]
    if len(models) + len(checks) >= 2:
        flow.append(image(data.charts["trend"], width))
    else:
        flow.append(Paragraph("Only one deployment and no drift check so far: the trend starts with the next "
                              "run of the automation.", styles.body))
    recent = models[-6:]
    if recent:
        few = f" ({data.evaluation.rows} rows)" if data.evaluation.rows < FEW_ROWS else ""
        flow.append(data_table(styles, ["deployed at (UTC)", "model version", f"F1 on the test data{few}",
                                        "F1 on held-out rows of its own market"],
                               [[d["deployed_at"], d["model_version"], f"{d['score']:.4f}", score(d.get("baseline"))]
                                for d in recent],
                               [width * w for w in (0.23, 0.35, 0.18, 0.24)], right={2, 3}))
    runs = len(data.runs)
    kept = plural(runs, "run") if runs else "not present yet"
    flow.append(Paragraph(
        "Deployments come from the release manifests still kept in the production folder; drift checks, "
        f"rollbacks and roll forwards from the run history ({RUN_HISTORY}, {kept}).", styles.note))
    return section(styles, "trend", *flow)


def estimates_section(data: ReportData, styles: Styles, width: float) -> list:
    """Estimated against realized F1 per window and the reliability diagram; nothing when no run has either."""
    flow = estimate_flow(data.runs, data.charts.get("reliability"), styles, width)
    return section(styles, "estimates", *flow) if flow else []


def matrix_section(data: ReportData, styles: Styles, width: float) -> list:
    ev = data.evaluation
    pair = Table([[image(data.charts["confusion"], width * 0.53), image(data.charts["roc"], width * 0.45)]],
                 colWidths=[width * 0.55, width * 0.45], hAlign="LEFT")
    pair.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    (tn, fp), (fn, tp) = ev.matrix
    return section(
        styles, "matrix",
        pair,
        Paragraph(f"Reading it: of {fn + tp:,} test clients who left, the model expected {tp:,} to leave and missed "
                  f"{fn:,}; it raised {fp:,} false alarms among the {tn + fp:,} who stayed.", styles.body),
    )


PDF_REASONS = 1  # of each client's reasons, the main one (as on the page); the CSV and the client page have all


def managers_lines(data: ReportData, styles: Styles) -> list:
    """The managers' page opens with whether the model behind the list is the usual one (a rollback or pin says so)."""
    served = data.served or {"operator_state": None}
    state = served.get("operator_state")
    lines = [f"<b>{escape(state['sentence'])}</b>"] if state else []
    at_risk = at_risk_sentence(data.risk.at_risk)
    if at_risk:
        lines.append(f"<b>{escape(at_risk)}</b> (probability of leaving \N{MULTIPLICATION SIGN} yearly revenue, "
                     "in the data's own currency).")
    lines.append(f"Ranked by model {escape(data.deployment.model_version)}; its evidence (scores, drift, statistics, "
                 "dependencies, timings) follows on the next pages.")
    return [Paragraph(line, styles.body) for line in lines]


def clients_section(data: ReportData, styles: Styles, width: float) -> list:
    """The clients to call first, with the reasons of their risk (riskcore.model.reasons), as in the call list."""
    risk = data.risk
    # The measurement group's mark leads the why column: in the client's narrow one it broke "measure-ment".
    rows = [[c["rank"], shorten(c[ID_COLUMN], PDF_ID_CHARS), percent(c["probability"]),
             rank_change(c.get("change")) or "\N{EM DASH}",
             "; ".join([GROUP_MARK] * bool(c.get(GROUP)) + [r["text"] for r in c["reasons"][:PDF_REASONS]])
             or "\N{EM DASH}"] for c in risk.top]
    headers = ["rank", "client", "probability of leaving", "since last run", "why: the main reason"]
    changes = (f" Since last run: the rank against run {risk.compared_with}'s (new: not listed then)."
               if risk.compared_with is not None else " Since last run: no earlier run's ranking is kept yet.")
    reasons = ("Why: what moves the model's risk most for this client, against the typical client of this list."
               if any(c["reasons"] for c in risk.top) else
               "No reasons: the deployed model was trained before its metadata recorded the average client.")
    shown = (f"The {len(risk.top):,} clients" if len(risk.top) == risk.calls else f"The first {len(risk.top):,} "
             f"of this cycle's {risk.calls:,} calls (the risk list has them all), the clients")
    intro = Paragraph(f"{shown} of {escape(risk.source.name)} who have not left with the highest probability of "
                      f"leaving, of {risk.rows:,} ranked: call them first.", styles.body)
    return section(styles, "clients", intro) + [  # the table may break across pages, never leave the first one empty
        data_table(styles, headers, rows, [w * width for w in (0.07, 0.145, 0.135, 0.1, 0.55)], right={0, 2}),
        Paragraph(f"{escape(reasons)}{escape(changes)} Every client who has not left ({risk.rows:,}, one row each, "
                  "every reason): "
                  f"{escape(project_path(risk.path, data.project))}, model {escape(risk.model_version)}."
                  f"{id_note(risk.top)}", styles.note),
    ]


PDF_ID_CHARS = 40  # of a client id in the PDF: three lines of its column; the risk list has every id in full


def id_note(top: list[dict[str, Any]]) -> str:
    """What the table cannot show of the ids, in words: ids shortened, characters no installed font draws."""
    ids = [str(c[ID_COLUMN]) for c in top]
    note = ""
    if any(len(i) > PDF_ID_CHARS for i in ids):
        note += (f" Ids longer than {PDF_ID_CHARS} characters are shortened here (\N{HORIZONTAL ELLIPSIS} in the "
                 "middle); the risk list has them in full.")
    missing = undrawable("".join(ids))
    if missing:
        packages = missing_font_packages()
        note += (f" {plural(len(missing), 'character')} of these ids cannot be drawn with "
                 f"the fonts installed and print as boxes ({few(sorted(missing), code_points, ', ')}); " +
                 (f"installing {', '.join(packages)} (make system-deps) may draw them." if packages else
                  "none of the report's fonts has them (it draws Latin, Greek, Cyrillic, Arabic, Hebrew, Chinese, "
                  "Japanese, Korean and emoji)."))
    sequences = unjoined_sequences(" ".join(ids))
    if sequences:
        note += (f" {plural(len(sequences), 'emoji sequence')} of these ids print as separate symbols "
                 f"({few(sequences, code_points, '; ')}): the PDF draws one symbol per character and its emoji font "
                 "joins none (a family as its members, a flag as two letters); the risk list has the ids as they are.")
    return escape(note)


SHOWN_CHARACTERS = 8  # characters (or sequences) a note names by code point; the rest are counted


def few(items: list[str], show, separator: str) -> str:
    """The first SHOWN_CHARACTERS items as `show` writes them, and how many more there are."""
    more = f" and {len(items) - SHOWN_CHARACTERS:,} more" if len(items) > SHOWN_CHARACTERS else ""
    return separator.join(show(item) for item in items[:SHOWN_CHARACTERS]) + more


def section(styles: Styles, key: str, *flowables) -> list:
    """A titled section whose title never sits alone at the foot of a page."""
    heading = Paragraph(SECTIONS[key], styles.h2)
    return [KeepTogether([heading, *flowables[:2]]), *flowables[2:]]


def no_data(styles: Styles):
    return Paragraph(f"No ingested data ({FINAL_DATA}) yet.", styles.body)


def calls_section(data: ReportData, styles: Styles, width: float) -> list:
    """Does calling help: the share who left among the clients to call and in the measurement group, with the
    difference's interval and what the group sizes can detect, or what is missing (riskcore.report.call_effect)."""
    measured = data.call_effect
    if not measured:
        return []
    flow = [Paragraph(escape(measured["sentence"]), styles.body)]
    rows = group_rows(measured)
    if rows:
        flow.append(data_table(styles, list(GROUPS_HEADER), rows, [w * width for w in (0.3, 0.15, 0.2, 0.15, 0.2)],
                               right={1, 2, 3, 4}))
        flow.append(Paragraph(escape(counting_note(measured)), styles.note))
    return section(styles, "calls", *flow)


def summary_section(data: ReportData, styles: Styles, width: float) -> list:
    if data.summary is None:
        return section(styles, "summary", no_data(styles))
    by_column = summary_table(data.summary)
    rows = [[FEATURE_LABELS.get(c, c), number(s["mean"]), number(s["median"]), number(s["std"]),
             number(s["min"], 0), number(s["max"], 0), number(s["count"], 0)] for c, s in by_column.items()]
    return section(
        styles, "summary",
        Paragraph(f"The {data.ingested_rows:,} rows of the ingested data ({FINAL_DATA}); "
                  "std is the sample standard deviation.", styles.body),
        data_table(styles, ["feature", "mean", "median", "std", "min", "max", "count"], rows,
                   [width * w for w in (0.25, 0.13, 0.12, 0.13, 0.1, 0.13, 0.14)], right={1, 2, 3, 4, 5, 6}),
    )


def distributions_section(data: ReportData, styles: Styles, width: float) -> list:
    flow = drift_flow(data.drift, data.charts.get("distributions"), styles, width)
    if data.retrain:
        flow += retrain_flow(data.retrain, styles, width)
    return section(styles, "distributions", *flow)


def missing_section(data: ReportData, styles: Styles, width: float) -> list:
    if data.missing is None:
        return section(styles, "missing", no_data(styles))
    table = data_table(styles, ["column", "missing", "rows missing"],
                       [[m["column"], f"{m['missing_percent']:.2f}%", f"{m['missing_count']:,}"]
                        for m in data.missing], [width * 0.4, width * 0.2, width * 0.2], right={1, 2})
    complete = all(m["missing_count"] == 0 for m in data.missing)
    note = f"No value is missing in the {data.ingested_rows:,} rows." if complete else (
        f"Share of the {data.ingested_rows:,} rows of {FINAL_DATA} with no value in the column.")
    return section(styles, "missing", table, Paragraph(note, styles.note))


def timings_section(data: ReportData, styles: Styles, width: float) -> list:
    record = data.diagnostics
    if not (record and record.get("timings")):
        return section(styles, "timings", Paragraph(
            f"Not measured yet: diagnostics.py writes them to {DIAGNOSTICS_RECORD}.", styles.body))
    runs = record.get("timing_runs", 1)
    rows = [[step, f"{record['timings'][step]:.3f}"]
            for step in ("ingestion", "training", "scoring") if step in record["timings"]]
    return section(
        styles, "timings",
        data_table(styles, ["step", "seconds"], rows, [width * 0.3, width * 0.2], right={1}),
        Paragraph(f"Median of {plural(runs, 'run')} of the real steps on a temporary copy, "
                  f"measured {escape(record.get('generated_at'))} by diagnostics.py.", styles.note),
    )


def dependencies_section(data: ReportData, styles: Styles, width: float) -> list:
    record = data.diagnostics
    if not (record and record.get("dependencies")):
        return section(styles, "dependencies", Paragraph(
            f"Not checked yet: diagnostics.py writes them to {DIAGNOSTICS_RECORD}.", styles.body))
    deps = record["dependencies"]
    notes = [Paragraph(f"Latest version unknown: {escape(reason)}.", styles.note)
             for reason in sorted({d["reason"] for d in deps if d.get("reason")})]
    asked = record.get("dependencies_checked_at") or record.get("generated_at")
    notes.append(Paragraph(f"Packages of requirements.txt; latest versions as the package index gave them at "
                           f"{escape(asked)} (asked at most every automation.dependency_check_hours).", styles.note))
    return section(
        styles, "dependencies",
        data_table(styles, ["package", "pinned", "installed", "latest", "status"],
                   [[d["package"], d["pinned"], d["installed"], d["latest"], d.get("status", "")] for d in deps],
                   [width * w for w in (0.26, 0.16, 0.16, 0.16, 0.2)]),
        *notes,
    )


def ingestion_section(data: ReportData, styles: Styles, width: float) -> list:
    record = data.ingestion
    if not record:
        return section(styles, "ingestion", Paragraph(
            f"No ingestion record ({INGESTION_RECORD}) found.", styles.body))
    files = record.get("files", [])
    source = record.get("input_folder") or (record.get("database") or {}).get("label") or "?"  # a folder, or a table
    flow = [
        Paragraph(f"Ingested {escape(record.get('ingested_at', '?'))} from {escape(source)}: "
                  f"{number(record.get('rows_read'), 0)} rows read from {plural(len(files), 'file')}, "
                  f"{number(record.get('rows_kept'), 0)} kept, one per client "
                  f"({number(record.get('duplicates_dropped'), 0)} exact duplicates dropped, "
                  f"{number(record.get('superseded'), 0)} earlier snapshots superseded by a later one); new rows: "
                  "those a file did not hold when it was last ingested.", styles.body),
        data_table(styles, ["file", "rows read", "new rows", "rows kept", "duplicates", "superseded"],
                   [[f.get("name"), number(f.get("rows_read"), 0), number(f.get("rows_new"), 0),
                     number(f.get("rows_kept"), 0), number(f.get("duplicates_dropped"), 0),
                     number(f.get("superseded"), 0)] for f in files],
                   [width * w for w in (0.3, 0.13, 0.13, 0.13, 0.15, 0.16)], right={1, 2, 3, 4, 5}),
    ]
    rejected = record.get("rejected", [])
    if rejected:
        flow.append(Paragraph(f"Rejected files ({len(rejected)}): not ingested, picked up again once fixed.",
                              styles.spaced))
        flow.append(data_table(styles, ["file", "reason"], [[r.get("name"), r.get("reason")] for r in rejected],
                               [width * 0.3, width * 0.7]))
    else:
        flow.append(Paragraph("No file was rejected.", styles.note))
    return section(styles, "ingestion", *flow)


def build_pdf(data: ReportData) -> bytes:
    """The summary report as PDF bytes: the managers' pages, then the model's evidence, section after section."""
    styles = Styles()
    footer = (f"Client attrition risk report \N{MIDDLE DOT} run {data.run_number} \N{MIDDLE DOT} "
              f"model {data.deployment.model_version} \N{MIDDLE DOT} {data.generated_at}")

    class NumberedCanvas(Canvas):
        """Draws "page i of n" once the number of pages is known."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._saved: list[dict] = []

        def showPage(self) -> None:  # noqa: N802 - reportlab's name
            self._saved.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            for state in self._saved:
                self.__dict__.update(state)
                self.setFont(styles.regular, 7.5)
                self.setFillColor(HexColor("#7a8794"))
                self.drawString(18 * mm, 10 * mm, footer)
                self.drawRightString(A4[0] - 18 * mm, 10 * mm, f"page {self._pageNumber} of {len(self._saved)}")
                super().showPage()
            super().save()

    # Binary streams, not ASCII85 text: ReportLab 5.1's pure-Python ASCII85 encoder took 50-60 ms of a report
    # on the bundled data, and made the file a sixth larger (356 against 297 KB).
    rl_config.useA85 = 0
    buffer = io.BytesIO()
    # ReportLab's page frame pads its content by 6 pt a side: the margins leave room for it, so that the text, the
    # tables and the footer all run from 18 mm to 18 mm. Tables and charts sized to doc.width ran 12 pt past the
    # text's right edge and 6 pt past the footer's.
    padding = 6
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=18 * mm - padding, rightMargin=18 * mm - padding,
                            topMargin=16 * mm, bottomMargin=18 * mm, title="Client attrition risk report",
                            author="reporting.py", subject=f"model {data.deployment.model_version}")
    width = doc.width - 2 * padding
    story = [
        Paragraph("Client attrition risk report", styles.title),
        Paragraph(f"Run {data.run_number} \N{MIDDLE DOT} generated {escape(data.generated_at)} \N{MIDDLE DOT} "
                  f"deployed model {escape(data.deployment.model_version)}", styles.subtitle),
        *managers_lines(data, styles),
        *clients_section(data, styles, width),
        PageBreak(),  # the managers' page ends here; the model's evidence follows for the data scientist
        # The evidence flows from section to section (each title kept with its first lines: `section`): a page
        # break before each group left pages a quarter full (ten pages on the bundled data, one holding only
        # "Does calling help?" and its two lines; six now).
        headline_box(data, styles, width),
        *trend_section(data, styles, width),
        *matrix_section(data, styles, width),
        *estimates_section(data, styles, width),
        *summary_section(data, styles, width),
        *distributions_section(data, styles, width),
        *calls_section(data, styles, width),
        *missing_section(data, styles, width),
        *timings_section(data, styles, width),
        *dependencies_section(data, styles, width),
        *ingestion_section(data, styles, width),
    ]
    doc.build(story, canvasmaker=NumberedCanvas)
    return buffer.getvalue()

