"""The PDF report's look: fonts, paragraph styles, and the tables, numbers and images its sections are made of."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import matplotlib
from reportlab.lib.colors import HexColor
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.fonts import addMapping
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Image, Paragraph, Table, TableStyle

from riskcore.report.charts import BLUE, INK


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
