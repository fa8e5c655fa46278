"""The PDF report: what it shows (ReportData), its styles, its sections, and build_pdf (reportlab)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import matplotlib
from reportlab.lib.colors import HexColor
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.fonts import addMapping
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Image, KeepTogether, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from riskcore.charts import BLUE, INK, model_deployments
from riskcore.contract import (
    DIAGNOSTICS_RECORD,
    FEATURE_LABELS,
    FEATURES,
    FINAL_DATA,
    ID_COLUMN,
    INGESTION_RECORD,
    RUN_HISTORY,
)
from riskcore.drift import psi_drifted
from riskcore.evaluation import Evaluation
from riskcore.releases import Deployment
from riskcore.risklist import RiskList
from riskcore.summary import summary_table

SECTIONS = {
    "headline": "Headline",
    "trend": "F1 across deployments",
    "matrix": "Confusion matrix and ROC curve",
    "clients": "Clients most likely to leave",
    "summary": "Summary statistics",
    "missing": "Missing data",
    "distributions": "Feature distributions: training data beside newest data",
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
    psi: dict[str, tuple[float, str]]
    psi_threshold: float
    diagnostics: dict[str, Any] | None
    ingestion: dict[str, Any] | None
    charts: dict[str, bytes]


def register_fonts() -> tuple[str, str]:
    """DejaVu Sans (shipped with matplotlib) for any client name; Helvetica if it is missing."""
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
    if not (os.path.isfile(regular) and os.path.isfile(bold)):
        return "Helvetica", "Helvetica-Bold"
    if "ReportSans" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("ReportSans", str(regular)))
        pdfmetrics.registerFont(TTFont("ReportSans-Bold", str(bold)))
        addMapping("ReportSans", 0, 0, "ReportSans")
        addMapping("ReportSans", 1, 0, "ReportSans-Bold")
        addMapping("ReportSans", 0, 1, "ReportSans")
        addMapping("ReportSans", 1, 1, "ReportSans-Bold")
    return "ReportSans", "ReportSans-Bold"


class Styles:
    """The report's paragraph styles."""

    def __init__(self) -> None:
        self.regular, self.bold = register_fonts()
        ink, grey, blue = HexColor(INK), HexColor("#5b6875"), HexColor(BLUE)
        base = ParagraphStyle("base", fontName=self.regular, fontSize=9.5, leading=13, textColor=ink)
        self.title = ParagraphStyle("title", base, fontName=self.bold, fontSize=20, leading=24)
        self.subtitle = ParagraphStyle("subtitle", base, fontSize=9, textColor=grey, spaceAfter=10)
        self.h2 = ParagraphStyle("h2", base, fontName=self.bold, fontSize=13, leading=16, textColor=blue,
                                 spaceBefore=12, spaceAfter=6)
        self.body = base
        self.spaced = ParagraphStyle("spaced", base, spaceBefore=8, spaceAfter=2)
        self.note = ParagraphStyle("note", base, fontSize=8, leading=10.5, textColor=grey, spaceBefore=3)
        self.cell = ParagraphStyle("cell", base, fontSize=8.5, leading=10.5)
        self.cell_right = ParagraphStyle("cell_right", self.cell, alignment=TA_RIGHT)
        self.head = ParagraphStyle("head", self.cell, fontName=self.bold, textColor=HexColor("#ffffff"))
        self.head_right = ParagraphStyle("head_right", self.head, alignment=TA_RIGHT)
        self.metric = ParagraphStyle("metric", base, fontName=self.bold, fontSize=22, leading=26, textColor=blue)
        self.metric_label = ParagraphStyle("metric_label", base, fontSize=8.5, leading=10, textColor=grey)
        self.box_title = ParagraphStyle("box_title", base, fontName=self.bold, fontSize=11, leading=14)


def escape(text: Any) -> str:
    return xml_escape(str(text))


def number(value: Any, decimals: int = 2) -> str:
    if value is None:
        return "\N{EM DASH}"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and decimals == 0):
        return f"{int(value):,}"
    return f"{value:,.{decimals}f}"


def percent(probability: float) -> str:
    """A probability as a percentage a reader can trust: never "100.0%" for a client who may stay."""
    if probability > 0.999:
        return ">99.9%"
    if probability < 0.001:
        return "<0.1%"
    return f"{100 * probability:.1f}%"


def data_table(styles: Styles, headers: list[str], rows: list[list[Any]], widths: list[float],
               right: set[int] | None = None):
    """A table with a dark header row, light stripes and numbers right-aligned."""
    right = right or set()
    cells = [[Paragraph(escape(h), styles.head_right if i in right else styles.head)
              for i, h in enumerate(headers)]]
    for row in rows:
        cells.append([Paragraph(escape(v), styles.cell_right if i in right else styles.cell)
                      for i, v in enumerate(row)])
    table = Table(cells, colWidths=widths, repeatRows=1, hAlign="LEFT")
    style = [
        ("BACKGROUND", (0, 0), (-1, 0), HexColor(INK)),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
        ("LINEBELOW", (0, -1), (-1, -1), 0.6, HexColor("#c3ccd5")),
    ]
    style += [("BACKGROUND", (0, r), (-1, r), HexColor("#f1f4f7")) for r in range(2, len(cells), 2)]
    table.setStyle(TableStyle(style))
    return table


def image(png: bytes, width: float):
    """A PNG flowable `width` points wide, its height from the image's own proportions."""
    pixels_wide, pixels_high = ImageReader(io.BytesIO(png)).getSize()
    return Image(io.BytesIO(png), width=width, height=width * pixels_high / pixels_wide)


def headline_box(data: ReportData, styles: Styles, width: float):
    """The framed headline: the four numbers that matter and what they describe."""
    ev = data.evaluation
    metrics = [(f"{ev.f1:.4f}", "F1 on the test data"), (f"{ev.precision:.4f}", "precision"),
               (f"{ev.recall:.4f}", "recall"),
               (f"{ev.auc:.3f}" if ev.auc is not None else "\N{EM DASH}", "ROC AUC")]
    cards = Table([[Paragraph(value, styles.metric) for value, _ in metrics],
                   [Paragraph(label, styles.metric_label) for _, label in metrics]],
                  colWidths=[(width - 24) / 4] * 4, hAlign="LEFT")
    cards.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0), ("BOTTOMPADDING", (0, 0), (-1, 0), 0)]))
    deployment, metadata = data.deployment, data.metadata
    first_deployed = next((d["deployed_at"] for d in data.deployments
                           if d["model_version"] == deployment.model_version), deployment.deployed_at)
    lines = [
        f"<b>Model {escape(deployment.model_version)}</b>, trained {escape(metadata.get('trained_at', '?'))} "
        f"on {number(metadata.get('training_rows'), 0)} clients, deployed {escape(first_deployed)} "
        f"(now served from release {escape(deployment.release)}).",
        f"Test data: {ev.rows:,} clients, {ev.positives:,} of whom left. Of those who left the model flagged "
        f"{ev.matrix[1][1]:,} (recall); of the {ev.matrix[0][1] + ev.matrix[1][1]:,} it flagged, "
        f"{ev.matrix[1][1]:,} did leave (precision). F1 recorded at deployment: "
        f"{float(deployment.manifest.get('score', ev.f1)):.4f}.",
    ]
    checks = [r for r in data.runs if isinstance(r.get("f1_new_data"), (int, float))]
    if checks:
        last = checks[-1]
        baseline = last.get("baseline")
        verdict = f" ({escape(last['drift_verdict'])})" if last.get("drift_verdict") else ""
        lines.append(f"Latest drift check ({escape(last.get('started_at'))}): F1 {last['f1_new_data']:.4f} on the "
                     f"new data against the baseline {number(baseline, 4)}; decision: "
                     f"{escape(last.get('decision') or 'not recorded')}{verdict}.")
    drifted = [FEATURE_LABELS.get(f, f) for f, (value, _) in data.psi.items() if psi_drifted(value, data.psi_threshold)]
    if drifted:
        lines.append(f"<b>Data drift:</b> the newest data differs from the data the model was trained on in "
                     f"{escape(', '.join(drifted))} (PSI at or above {data.psi_threshold:g}; page 3).")
    if data.risk.top:
        first = data.risk.top[0]
        lines.append(f"{data.risk.rows:,} clients of {escape(data.risk.source.name)} ranked by their risk of "
                     f"leaving; the riskiest, {escape(first[ID_COLUMN])}, leaves with probability "
                     f"{escape(percent(first['probability']))}.")
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
        flow.append(data_table(styles, ["deployed at (UTC)", "model version", "F1 on the test data"],
                               [[d["deployed_at"], d["model_version"], f"{d['score']:.4f}"] for d in recent],
                               [width * 0.3, width * 0.45, width * 0.25], right={2}))
    flow.append(Paragraph(
        "Deployments come from the release manifests still kept in the production folder; drift checks from "
        f"the automation's run history ({RUN_HISTORY}"
        f"{', not present yet' if not data.runs else f', {len(data.runs)} runs'}).", styles.note))
    return section(styles, "trend", *flow)


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


def clients_section(data: ReportData, styles: Styles, width: float) -> list:
    risk = data.risk
    rows = [[c["rank"], c[ID_COLUMN], percent(c["probability"]),
             *(f"{int(c[f]):,}" for f in FEATURES)] for c in risk.top]
    headers = ["rank", "client", "probability of leaving", *(FEATURE_LABELS[f] for f in FEATURES)]
    return section(
        styles, "clients",
        Paragraph(f"The {len(risk.top)} clients of {escape(risk.source.name)} with the highest probability of "
                  "leaving: the ones to call first.", styles.body),
        data_table(styles, headers, rows, [w * width for w in (0.08, 0.2, 0.18, 0.18, 0.18, 0.18)],
                   right={0, 2, 3, 4, 5}),
        Paragraph(f"The full list, all {risk.rows:,} clients ranked, is {escape(risk.path.name)} in "
                  f"{escape(risk.path.parent)} (scored by model {escape(risk.model_version)}).", styles.note),
    )


def section(styles: Styles, key: str, *flowables) -> list:
    """A titled section whose title never sits alone at the foot of a page."""
    heading = Paragraph(SECTIONS[key], styles.h2)
    return [KeepTogether([heading, *flowables[:2]]), *flowables[2:]]


def no_data(styles: Styles):
    return Paragraph(f"No ingested data ({FINAL_DATA}) yet.", styles.body)


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
    if "distributions" not in data.charts:
        return section(styles, "distributions", Paragraph(
            "Not available: the deployed model carries no training profile, or no data is ingested yet.",
            styles.body))
    return section(
        styles, "distributions",
        Paragraph("Filled bars: the data the deployed model was trained on (from the 1,001 quantiles stored with "
                  "it). Outline: the newest ingested data. Where the two part, the clients have changed since "
                  "training and the model may no longer fit them. PSI (population stability index) below 0.1 "
                  f"means stable; at or above {data.psi_threshold:g} counts as drift.", styles.body),
        image(data.charts["distributions"], width),
        Paragraph("PSI against the training data: " + "; ".join(
            f"{FEATURE_LABELS.get(f, f)} {value:.3f} ({label})" for f, (value, label) in data.psi.items()) + ".",
            styles.note),
    )


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
        Paragraph(f"Median of {runs} run{'s' if runs != 1 else ''} of the real steps on a temporary copy, "
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
    notes.append(Paragraph(f"Packages of requirements.txt, checked {escape(record.get('generated_at'))}.",
                           styles.note))
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
    flow = [
        Paragraph(f"Ingested {escape(record.get('ingested_at', '?'))} from {escape(record.get('input_folder', '?'))}: "
                  f"{number(record.get('rows_read'), 0)} rows read from {len(files)} file"
                  f"{'s' if len(files) != 1 else ''}, {number(record.get('rows_kept'), 0)} kept after dropping "
                  "exact duplicates.", styles.body),
        data_table(styles, ["file", "rows read", "rows kept", "duplicates dropped"],
                   [[f.get("name"), number(f.get("rows_read"), 0), number(f.get("rows_kept"), 0),
                     number(f.get("duplicates_dropped"), 0)] for f in files],
                   [width * w for w in (0.4, 0.18, 0.18, 0.24)], right={1, 2, 3}),
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
    """The summary report as PDF bytes: four A4 pages for the usual project."""
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

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm,
                            bottomMargin=18 * mm, title="Client attrition risk report",
                            author="reporting.py", subject=f"model {data.deployment.model_version}")
    width = doc.width
    story = [
        Paragraph("Client attrition risk report", styles.title),
        Paragraph(f"Run {data.run_number} \N{MIDDLE DOT} generated {escape(data.generated_at)} \N{MIDDLE DOT} "
                  f"deployed model {escape(data.deployment.model_version)}", styles.subtitle),
        headline_box(data, styles, width),
        *trend_section(data, styles, width),
        PageBreak(),
        *matrix_section(data, styles, width),
        Spacer(1, 4),
        *clients_section(data, styles, width),
        PageBreak(),
        *summary_section(data, styles, width),
        *distributions_section(data, styles, width),
        PageBreak(),
        *missing_section(data, styles, width),
        *timings_section(data, styles, width),
        *dependencies_section(data, styles, width),
        *ingestion_section(data, styles, width),
    ]
    doc.build(story, canvasmaker=NumberedCanvas)
    return buffer.getvalue()

