"""The PDF report's look: fonts, paragraph styles, and the tables, numbers and images its sections are made of."""

from __future__ import annotations

import functools
import io
import re
import unicodedata
from collections.abc import Container
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import matplotlib
from reportlab.lib.colors import HexColor
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.fonts import addMapping
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics, ttfonts
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Image, Paragraph, Table, TableStyle

from riskcore.report.charts import BLUE, INK

# DejaVu Sans draws Latin, Greek, Cyrillic, Arabic, Hebrew and many symbols; Debian ships it in
# fonts-dejavu-core, and matplotlib (a requirement) carries a copy. It has no CJK and no emoji: the
# fallbacks draw the characters it lacks (Debian's fonts-droid-fallback: Chinese and Japanese, 1.8 MB;
# fonts-nanum's NanumGothic: Korean, 4.7 MB, for Hangul only, as Droid draws 3 of its 11,172 syllables;
# fonts-symbola: emoji, monochrome, 1.3 MB). Noto CJK and the colour emoji font cannot serve: ReportLab
# embeds TrueType outlines only, and those are CFF and bitmap fonts. `make system-deps` installs them all.
DEJAVU_FOLDERS = (Path("/usr/share/fonts/truetype/dejavu"), Path(matplotlib.get_data_path()) / "fonts" / "ttf")
HANGUL = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7FF))  # jamo, compatibility, syllables
FALLBACK_FONTS = (  # name, where Debian puts it, its package, the characters it serves (None: all it has)
    ("ReportHangul", (Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf"),), "fonts-nanum", HANGUL),
    ("ReportCJK", (Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
                   Path("/usr/share/fonts-droid-fallback/truetype/DroidSansFallback.ttf")), "fonts-droid-fallback",
     None),
    ("ReportSymbols", (Path("/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf"),
                       Path("/usr/share/fonts/truetype/ancient-scripts/Symbola.ttf")), "fonts-symbola", None),
)


@dataclass
class Fonts:
    """The report's fonts: a regular and a bold face, and per font name the characters it can draw."""

    regular: str
    bold: str
    coverage: dict[str, Container[int]]  # DejaVu first, then the fallbacks in order


class FallbackFont:
    """A fallback's characters, read (and the font registered) the first time DejaVu lacks one.

    Most reports have no such character, and reading the fonts took 0.15 s of every report
    (DroidSansFallbackFull alone 0.12 s).
    """

    def __init__(self, name: str, path: Path, serves: tuple[tuple[int, int], ...] | None = None) -> None:
        self.name, self.path, self.serves = name, path, serves

    @functools.cached_property
    def glyphs(self) -> Container[int]:
        if self.name not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(self.name, str(self.path)))
        for bold in (0, 1):  # no bold face: <b> keeps the regular one
            for italic in (0, 1):
                addMapping(self.name, bold, italic, self.name)
        return pdfmetrics.getFont(self.name).face.charToGlyph

    def __contains__(self, code: object) -> bool:
        if self.serves is not None and not any(low <= code <= high for low, high in self.serves):  # type: ignore[operator]
            return False
        return code in self.glyphs


@functools.cache
def register_fonts() -> Fonts:
    """DejaVu Sans with its fallbacks (FallbackFont), registered once per process; Helvetica if DejaVu is missing."""
    folder = next((f for f in DEJAVU_FOLDERS if (f / "DejaVuSans.ttf").is_file()
                   and (f / "DejaVuSans-Bold.ttf").is_file()), None)
    if folder is None:
        return Fonts("Helvetica", "Helvetica-Bold", {})
    fix_wide_characters()
    for name, path in (("ReportSans", folder / "DejaVuSans.ttf"), ("ReportSans-Bold", folder / "DejaVuSans-Bold.ttf")):
        if name not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(name, str(path)))
    addMapping("ReportSans", 0, 0, "ReportSans")
    addMapping("ReportSans", 1, 0, "ReportSans-Bold")
    addMapping("ReportSans", 0, 1, "ReportSans")
    addMapping("ReportSans", 1, 1, "ReportSans-Bold")
    coverage: dict[str, Container[int]] = {"ReportSans": pdfmetrics.getFont("ReportSans").face.charToGlyph}
    for name, candidates, _, serves in FALLBACK_FONTS:
        found = next((path for path in candidates if path.is_file()), None)
        if found is not None:
            coverage[name] = FallbackFont(name, found, serves)
    return Fonts("ReportSans", "ReportSans-Bold", coverage)


def missing_font_packages() -> list[str]:
    """The Debian packages of the report's fonts that are not installed (make system-deps installs them)."""
    coverage = register_fonts().coverage
    return ([] if coverage else ["fonts-dejavu-core"]) + [package for name, _, package, _ in FALLBACK_FONTS
                                                          if name not in coverage]


def fix_wide_characters() -> None:
    """Make ReportLab's ToUnicode maps right for characters above U+FFFF (emoji), so the PDF's text reads back.

    ReportLab 5.1.0 writes such a code point as five hex digits where PDF wants UTF-16: pdftotext
    read U+1F60 for U+1F600 (measured). The glyphs drawn were right; only the text behind them was not.
    """
    original = ttfonts.makeToUnicodeCMap
    if getattr(original, "wide_characters_fixed", False):
        return

    def to_unicode_cmap(fontname: str, subset: list[int]) -> str:
        text = original(fontname, subset)
        for index, code in enumerate(subset):
            if code > 0xFFFF:
                text = text.replace(f"<{index:02X}> <{code:04X}>",
                                    f"<{index:02X}> <{chr(code).encode('utf-16-be').hex().upper()}>")
        return text

    to_unicode_cmap.wide_characters_fixed = True  # type: ignore[attr-defined]
    ttfonts.makeToUnicodeCMap = to_unicode_cmap


def font_for(code: int, coverage: dict[str, Container[int]]) -> str | None:
    """The first of the report's fonts that draws a character, None if none does."""
    return next((name for name, covered in coverage.items() if code in covered), None)


def undrawable(text: str) -> set[str]:
    """The characters of `text` that none of the installed report fonts can draw (they print as boxes)."""
    coverage = register_fonts().coverage
    if not coverage:
        return {ch for ch in text if ord(ch) > 0xFF}
    return {ch for ch in text if ch.isprintable() and font_for(ord(ch), coverage) is None}


def invisible(ch: str) -> bool:
    """Whether a character is one a text shows as nothing when its font lacks it: a format character (a tag of a
    flag's sequence, a joiner) or a variation selector (Unicode's default ignorables, roughly)."""
    code = ord(ch)
    return unicodedata.category(ch) == "Cf" or 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF


# Emoji that a screen draws as one picture and the PDF as their parts: ReportLab draws one glyph per character (it
# shapes text only with uharfbuzz, not installed), and Symbola, the one emoji font it can embed (outlines; Noto
# Color Emoji is bitmaps), has no glyph for any of these sequences (measured: no ligature of the zero-width joiner
# or of two regional indicators in its GSUB table). So a family prints as its members, a flag as two boxed letters.
EMOJI = "[\u2600-\u27BF\U0001F000-\U0001FAFF][\uFE0F\U0001F3FB-\U0001F3FF]?"  # a pictograph, its presentation, skin
EMOJI_SEQUENCE = re.compile(
    f"{EMOJI}(?:\u200d{EMOJI})+"  # pictographs joined by zero-width joiners: a family, a kiss
    "|[\U0001F1E6-\U0001F1FF]{2}"  # two regional indicators: a country's flag
    "|\U0001F3F4[\U000E0020-\U000E007E]+\U000E007F"  # a black flag and tags: a region's flag (Scotland)
    "|\\S[\U0001F3FB-\U0001F3FF]")  # a skin tone


def unjoined_sequences(text: str) -> list[str]:
    """The emoji sequences of `text` that the PDF prints as their separate parts (EMOJI_SEQUENCE), each once."""
    return list(dict.fromkeys(EMOJI_SEQUENCE.findall(text)))


def code_points(text: str) -> str:
    """Characters as their code points, for a sentence about characters the PDF cannot draw: "U+1F1EB U+1F1F7"."""
    return " ".join(f"U+{ord(ch):04X}" for ch in text)


class Styles:
    """The report's paragraph styles."""

    def __init__(self) -> None:
        fonts = register_fonts()
        self.regular, self.bold = fonts.regular, fonts.bold
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


def visual_order(text: str) -> str:
    """Text as it is drawn: right-to-left runs (Hebrew, Arabic) reversed, Arabic letters in their joined forms.

    ReportLab draws characters left to right as they come (its bidirectional support needs rlbidi, which PyPI
    does not have): 'עברית' printed as 'תירבע', Arabic letters apart and backwards. python-bidi applies the
    Unicode bidirectional algorithm, arabic-reshaper picks the joined forms (which DejaVu Sans has); pdftotext
    reads the result back in its logical order. Text without a right-to-left letter is left as it is.
    """
    if not any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in text):
        return text
    import arabic_reshaper
    from bidi import get_display

    return get_display(arabic_reshaper.reshape(text))


def escape(text: Any) -> str:
    """Text for a Paragraph: XML-escaped, in the order it is drawn (visual_order), each run of characters DejaVu
    lacks set in the fallback that has them; an invisible character no font has is left out, not drawn as a box."""
    text = str(text)
    coverage = register_fonts().coverage
    if text.isascii() or not coverage:
        return xml_escape(text)
    text = visual_order(text)
    main = next(iter(coverage))
    parts: list[str] = []
    drawn = "".join(ch for ch in text if not invisible(ch) or font_for(ord(ch), coverage))  # no box for a tag
    for name, run in groupby(drawn, key=lambda ch: font_for(ord(ch), coverage) or main):
        chunk = xml_escape("".join(run))
        parts.append(chunk if name == main else f'<font name="{name}">{chunk}</font>')
    return "".join(parts)


ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"


def shorten(text: Any, limit: int) -> str:
    """Text of at most `limit` characters: a longer one keeps its start and end around an ellipsis."""
    text = str(text)
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return text[:head] + ELLIPSIS + text[len(text) - (limit - 1 - head):]


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
