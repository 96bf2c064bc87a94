"""Render proposals, invoices and credit notes as A4 PDF documents with fpdf2.

Each ``render_*`` function takes a validated document model and returns the PDF as bytes:
the letterhead (the business's logo on the left; its name, address, tax id and contact address
on the right), a title, the parties, the dates, a table of lines (quantity, unit price, amount),
the totals, then the terms or payment instructions. Amounts go through
``aios.kernel.money.format_amount``; a discount is its own line that reads as one
("Discount (10%)", then "USD 1,120.00" after a real minus sign, U+2212). Dates are shown in
the business's time zone. Long texts wrap and flow onto further pages, never cut and never past
the margins.
The foot of every page of an invoice or credit note carries the invoice footer text, and an
invoice's also the bank account; a document of more than one page carries "Page x of y" (and
its title) there too. While the business identity is the placeholder (``business.placeholder``)
every page carries a "DRAFT" watermark and banner.

Fonts: Noto Sans from the ``fontpkg-noto-sans`` wheel, which ships it as a variable font (axes
``wght`` and ``wdth``). Instantiating the whole font takes seconds, so for every document the
variable font is first cut down to the characters the document uses, then instantiated with
fontTools as two static faces, regular (wght 400) and bold (wght 700), in tens of milliseconds.
fpdf2 only loads fonts from files, so the two faces live in a temporary directory for the
duration of one rendering.

Untrusted text (names, scope, terms, payment instructions, reasons, references) is cleaned
before it is drawn: it is NFC-normalised; control and format characters (C0/C1 controls, bidi
overrides, zero-width joiners, private-use and unassigned code points) and variation selectors
are dropped; one-line fields have their whitespace collapsed, multi-line fields keep their line
breaks. Every character Noto Sans has no glyph for (CJK, emoji, Arabic, Hebrew, ...) is replaced
by the visible placeholder ``PLACEHOLDER`` (U+FFFD, "�"), so rendering never fails and nothing
vanishes unnoticed. Latin (with its extensions), Greek and Cyrillic render as written. Text is
not shaped (no HarfBuzz), so scripts that need shaping, such as Devanagari, render unshaped.
fpdf2's page-count alias is switched off, so a literal ``{nb}`` in a text stays as written.

Output is deterministic: the same document gives byte-identical PDFs. The creation date is the
document's ``issued_at``, the font subsets are built from the document's characters only, the
logo is embedded as its file's bytes, and the file identifier fpdf2 writes is a hash of the
content.
"""

from __future__ import annotations

import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from importlib.resources import files
from io import BytesIO
from pathlib import Path

from fontTools import subset  # type: ignore[import-untyped]
from fontTools.ttLib import TTFont  # type: ignore[import-untyped]
from fontTools.varLib import instancer  # type: ignore[import-untyped]
from fpdf import FPDF, FontFace
from fpdf.enums import XPos, YPos
from fpdf.fonts import TTFFont
from PIL import Image

from aios.documents.models import CreditNoteDocument, InvoiceDocument, ProposalDocument
from aios.identity import BusinessIdentity, format_date
from aios.kernel.money import LineItem, format_amount

__all__ = [
    "PLACEHOLDER",
    "clean_text",
    "render_credit_note",
    "render_invoice",
    "render_proposal",
]

PLACEHOLDER = "\ufffd"

_FONT_PACKAGE = "fontpkg_noto_sans"
_VARIABLE_FONT = "NotoSans[wdth,wght].ttf"
_FAMILY = "NotoSans"
_REGULAR_WEIGHT = 400
_BOLD_WEIGHT = 700
_LAYOUT_TABLES = ("GSUB", "GPOS", "GDEF")

MINUS = "\u2212"  # a real minus sign, not a hyphen
DRAFT = "DRAFT"
DRAFT_BANNER = "DRAFT \u00b7 the business identity is not set up yet: not a document to send"

# Characters the layout itself may draw (labels, amounts, dates, page numbers, the minus sign).
_LAYOUT_CHARS = frozenset(chr(c) for c in range(0x20, 0x7F)) | {"\u00b7", MINUS, PLACEHOLDER}

# Layout, in millimetres and points.
_MARGIN_X = 20.0
_MARGIN_TOP = 18.0
_MARGIN_BOTTOM = 22.0
_FOOTER_Y = -14.0
_BODY_PT = 10.0
_BODY_LINE = 5.0
_SMALL_PT = 8.5
_TEXT = (34, 34, 34)
_MUTED = (110, 110, 110)
_RULE = (200, 200, 200)
_HEAD_FILL = (240, 240, 240)
_DRAFT_RED = (200, 40, 40)
_LOGO_MAX_W = 60.0
_LOGO_MAX_H = 22.0
_LETTERHEAD_W = 90.0
_FOOT_PT = 7.5
_FOOT_LINE = 3.6
_FOOT_BOTTOM = 10.0  # the last footer line ends this far above the page's edge


# --- text -------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _variable_font() -> bytes:
    return files(_FONT_PACKAGE).joinpath("files", _VARIABLE_FONT).read_bytes()


@lru_cache(maxsize=1)
def _coverage() -> frozenset[int]:
    """The code points Noto Sans has a glyph for."""
    font = TTFont(BytesIO(_variable_font()), lazy=True)
    try:
        return frozenset(font.getBestCmap())
    finally:
        font.close()


def _is_dropped(ch: str) -> bool:
    # Cc controls, Cf format (bidi overrides, ZWJ, soft hyphen), Cs, Co, Cn; variation selectors.
    code = ord(ch)
    return (
        unicodedata.category(ch).startswith("C")
        or 0xFE00 <= code <= 0xFE0F
        or 0xE0100 <= code <= 0xE01EF
    )


def _keep(text: str) -> str:
    coverage = _coverage()
    out: list[str] = []
    for ch in text:
        if _is_dropped(ch):
            continue
        if ord(ch) in coverage:
            out.append(ch)
        elif ch.isspace():
            out.append(" ")
        else:
            out.append(PLACEHOLDER)
    return "".join(out)


def clean_text(text: str, *, multiline: bool = False) -> str:
    """``text`` as it will be drawn: controls dropped, unknown glyphs replaced by PLACEHOLDER.

    A one-line text has its whitespace (line breaks included) collapsed to single spaces; a
    multi-line text keeps its line breaks and indentation, tabs become four spaces.
    """
    text = unicodedata.normalize("NFC", text)
    if not multiline:
        return " ".join(_keep(" ".join(text.split())).split())
    lines = (_keep(line.replace("\t", "    ")).rstrip() for line in text.splitlines())
    return "\n".join(lines).strip("\n")


def _percent(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _less(minor: int, currency: str) -> str:
    """An amount taken off: "USD 1,120.00" after a minus sign (U+2212) and a space."""
    return f"{MINUS} {format_amount(minor, currency)}"


# --- what a page shows ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Party:
    label: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class _Row:
    description: str
    quantity: str
    unit_price: str
    amount: str


@dataclass(frozen=True)
class _Total:
    label: str
    value: str
    strong: bool = False


@dataclass(frozen=True)
class _Letterhead:
    """The sender at the top of the first page: logo, name, then address and contact lines."""

    name: str
    lines: tuple[str, ...]
    logo: Path | None

    @classmethod
    def of(cls, business: BusinessIdentity) -> _Letterhead:
        lines = [clean_text(line) for line in business.address_lines]
        if business.tax_id:
            lines.append(f"Tax ID: {clean_text(business.tax_id)}")
        if business.email:
            lines.append(clean_text(business.email))
        return cls(clean_text(business.name), tuple(line for line in lines if line), business.logo)


@dataclass(frozen=True)
class _Sheet:
    """Everything one document draws, already cleaned and formatted."""

    heading: str  # "Invoice"
    reference: str  # "INV-000042"
    title: str  # metadata and footer: "Invoice INV-000042"
    author: str
    issued_at: datetime
    letterhead: _Letterhead
    parties: tuple[_Party, ...]
    facts: tuple[tuple[str, str], ...]
    rows: tuple[_Row, ...]
    totals: tuple[_Total, ...]
    sections_before: tuple[tuple[str, str], ...] = ()
    sections_after: tuple[tuple[str, str], ...] = ()
    foot: tuple[str, ...] = ()  # lines at the foot of every page
    draft: bool = False

    def strings(self) -> Iterator[str]:
        yield from (self.heading, self.reference, self.title, self.author)
        yield from (self.letterhead.name, *self.letterhead.lines, *self.foot)
        if self.draft:
            yield from (DRAFT, DRAFT_BANNER)
        for party in self.parties:
            yield party.label
            yield from party.lines
        for label, value in self.facts:
            yield from (label, value)
        for row in self.rows:
            yield from (row.description, row.quantity, row.unit_price, row.amount)
        for total in self.totals:
            yield from (total.label, total.value)
        for label, text in (*self.sections_before, *self.sections_after):
            yield from (label, text)


def _rows(items: Sequence[LineItem], currency: str) -> tuple[_Row, ...]:
    return tuple(
        _Row(
            description=clean_text(item.description),
            quantity=f"{item.quantity:,}",
            unit_price=format_amount(item.unit_price_minor, currency),
            amount=format_amount(item.amount_minor, currency),
        )
        for item in items
    )


def _sections(*pairs: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    cleaned = ((label, clean_text(text, multiline=True)) for label, text in pairs)
    return tuple((label, text) for label, text in cleaned if text.strip())


# --- fonts ------------------------------------------------------------------------------------


def _static_face(chars: frozenset[str], weight: int) -> bytes:
    """A static Noto Sans face at ``weight`` holding only the glyphs for ``chars``."""
    font = TTFont(BytesIO(_variable_font()), lazy=True, recalcTimestamp=False)
    for tag in _LAYOUT_TABLES:  # fpdf2 drops them too (no shaping); never parse them
        if tag in font:
            del font[tag]
    options = subset.Options()
    options.layout_features = []
    options.notdef_outline = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=sorted(ord(ch) for ch in chars))
    subsetter.subset(font)
    instancer.instantiateVariableFont(
        font,
        {"wght": weight, "wdth": 100},
        inplace=True,
        static=True,
        updateFontNames=True,  # "Noto Sans" and "Noto Sans Bold", two distinct PDF fonts
    )
    out = BytesIO()
    font.save(out)
    font.close()
    return out.getvalue()


# --- drawing ----------------------------------------------------------------------------------


class _Pdf(FPDF):
    """A4 portrait with our margins; DRAFT marks, foot lines and page numbers on every page."""

    def __init__(self, sheet: _Sheet, total_pages: int | None) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.sheet = sheet
        self.total_pages = total_pages
        self.alias_nb_pages("")  # a literal "{nb}" in client text must stay as written
        self.set_margins(_MARGIN_X, _MARGIN_TOP, _MARGIN_X)
        self.set_auto_page_break(auto=True, margin=_MARGIN_BOTTOM)
        self.set_creation_date(sheet.issued_at)
        self.set_title(sheet.title)
        self.set_author(sheet.author)
        self.set_creator("AiOs")
        self.set_lang("en")
        self.foot_lines: list[str] = []  # the foot, wrapped to the page width (set by _layout)

    @property
    def numbered(self) -> bool:
        return bool(self.total_pages and self.total_pages > 1)

    def foot_height(self, *, numbered: bool | None = None) -> float:
        """The height of the foot; with ``numbered=True`` as if it had page numbers."""
        with_numbers = self.numbered if numbered is None else numbered
        height = len(self.foot_lines) * _FOOT_LINE + (2.0 if self.foot_lines else 0.0)
        if with_numbers:
            height += _FOOT_LINE + (1.5 if self.foot_lines else 0.0)
        return height

    def header(self) -> None:
        if not self.sheet.draft:
            return
        with self.local_context(text_color=_DRAFT_RED, fill_opacity=0.10):
            self.set_font(_FAMILY, "B", 130)
            width = self.get_string_width(DRAFT)
            with self.rotation(angle=50, x=self.w / 2, y=self.h / 2):
                self.text(self.w / 2 - width / 2, self.h / 2 + 16, DRAFT)
        with self.local_context(text_color=_DRAFT_RED):
            self.set_font(_FAMILY, "B", 8)
            self.set_xy(self.l_margin, 7)
            self.cell(self.epw, 5, _fit(self, DRAFT_BANNER, self.epw), align="C")
        self.set_xy(self.l_margin, self.t_margin)

    def footer(self) -> None:
        if not self.foot_lines and not self.numbered:
            return
        y = self.h - _FOOT_BOTTOM - self.foot_height()
        self.set_text_color(*_MUTED)
        self.set_font(_FAMILY, "", _FOOT_PT)
        if self.foot_lines:
            self.line(self.l_margin, y, self.l_margin + self.epw, y)
            y += 2.0
            for line in self.foot_lines:
                self.set_xy(self.l_margin, y)
                self.cell(self.epw, _FOOT_LINE, line, align="C")
                y += _FOOT_LINE
        if self.numbered:
            half = self.epw / 2
            self.set_xy(self.l_margin, y + (1.5 if self.foot_lines else 0.0))
            self.set_font(_FAMILY, "", 8)
            self.cell(half, _FOOT_LINE, _fit(self, self.sheet.title, half - 4), align="L")
            self.cell(half, _FOOT_LINE, f"Page {self.page_no()} of {self.total_pages}", align="R")
        self.set_text_color(*_TEXT)


def _fit(pdf: FPDF, text: str, width: float) -> str:
    """``text``, shortened with "..." until it fits ``width`` in the current font."""
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + "...") > width:
        text = text[:-1]
    return text.rstrip() + "..."


def _wrap(pdf: FPDF, text: str, width: float) -> list[str]:
    """``text`` as the lines it takes in ``width`` in the current font."""
    lines = pdf.multi_cell(width, _FOOT_LINE, text, dry_run=True, output="LINES")
    assert isinstance(lines, list)  # output="LINES" gives the list alone
    return [str(line) for line in lines]


def _letterhead(pdf: FPDF, head: _Letterhead) -> None:
    """Logo at the top left, the sender's name and lines right-aligned at the top right."""
    top = pdf.get_y()
    bottom = top
    text_w = _LETTERHEAD_W
    if head.logo is not None:
        with Image.open(head.logo) as image:
            px_w, px_h = image.size
        # As large as fits in the box, keeping the aspect ratio.
        scale = min(_LOGO_MAX_W / px_w, _LOGO_MAX_H / px_h)
        w, h = px_w * scale, px_h * scale
        pdf.image(str(head.logo), x=pdf.l_margin, y=top, w=w, h=h)
        bottom = top + h
        text_w = min(_LETTERHEAD_W, pdf.epw - w - 8)
    x = pdf.l_margin + pdf.epw - text_w
    pdf.set_xy(x, top)
    pdf.set_font(_FAMILY, "B", 11)
    pdf.multi_cell(text_w, 5.5, head.name, align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(_FAMILY, "", _SMALL_PT)
    pdf.set_text_color(*_MUTED)
    for line in head.lines:
        pdf.set_x(x)
        pdf.multi_cell(text_w, 4.2, line, align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_text_color(*_TEXT)
    pdf.set_xy(pdf.l_margin, max(pdf.get_y(), bottom) + 8)


def _layout(sheet: _Sheet, regular: Path, bold: Path, total_pages: int | None) -> _Pdf:
    pdf = _Pdf(sheet, total_pages)
    pdf.add_font(_FAMILY, "", str(regular))
    pdf.add_font(_FAMILY, "B", str(bold))
    pdf.add_page()
    pdf.set_font(_FAMILY, "", _FOOT_PT)
    pdf.foot_lines = [wrapped for line in sheet.foot for wrapped in _wrap(pdf, line, pdf.epw)]
    # The body stops above the foot (page numbers included, so that knowing the page count
    # in the second pass never changes where pages break), with room to breathe.
    reserved = _FOOT_BOTTOM + pdf.foot_height(numbered=True) + 5
    pdf.set_auto_page_break(auto=True, margin=max(_MARGIN_BOTTOM, reserved))
    pdf.set_text_color(*_TEXT)
    pdf.set_draw_color(*_RULE)

    _letterhead(pdf, sheet.letterhead)

    # Title and document reference.
    pdf.set_font(_FAMILY, "B", 22)
    pdf.multi_cell(0, 10, sheet.heading, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(_FAMILY, "", 11)
    pdf.set_text_color(*_MUTED)
    pdf.multi_cell(0, 6, sheet.reference, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*_TEXT)
    pdf.ln(6)

    # Parties on the left, dates and references on the right.
    top = pdf.get_y()
    left_w = pdf.epw * 0.55
    right_x = pdf.l_margin + left_w + 8
    right_w = pdf.epw - left_w - 8
    for party in sheet.parties:
        _label(pdf, party.label, left_w)
        for i, line in enumerate(party.lines):
            pdf.set_font(_FAMILY, "B" if i == 0 else "", _BODY_PT)
            pdf.multi_cell(left_w, _BODY_LINE, line, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(3)
    left_end = pdf.get_y()
    pdf.set_y(top)
    label_w = 28.0
    for label, value in sheet.facts:
        pdf.set_x(right_x)
        pdf.set_font(_FAMILY, "", _SMALL_PT)
        pdf.set_text_color(*_MUTED)
        pdf.cell(label_w, _BODY_LINE, label)
        pdf.set_text_color(*_TEXT)
        pdf.set_font(_FAMILY, "", _BODY_PT)
        pdf.multi_cell(
            right_w - label_w, _BODY_LINE, value, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
    pdf.set_y(max(pdf.get_y(), left_end))
    pdf.ln(4)

    for label, text in sheet.sections_before:
        _section(pdf, label, text)

    _table(pdf, sheet.rows)
    _totals(pdf, sheet.totals)

    for label, text in sheet.sections_after:
        _section(pdf, label, text)
    return pdf


def _label(pdf: FPDF, text: str, width: float) -> None:
    pdf.set_font(_FAMILY, "", _SMALL_PT)
    pdf.set_text_color(*_MUTED)
    pdf.multi_cell(width, 4.5, text.upper(), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*_TEXT)


def _section(pdf: FPDF, heading: str, text: str) -> None:
    if pdf.will_page_break(7 + 3 * _BODY_LINE):  # keep a heading with its first lines
        pdf.add_page()
    pdf.ln(2)
    pdf.set_font(_FAMILY, "B", 11)
    pdf.multi_cell(0, 7, heading, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(_FAMILY, "", _BODY_PT)
    pdf.multi_cell(0, _BODY_LINE, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)


def _table(pdf: FPDF, rows: Sequence[_Row]) -> None:
    pdf.set_font(_FAMILY, "", 9.5)
    with pdf.table(
        col_widths=(80, 16, 37, 37),
        width=pdf.epw,
        align="LEFT",
        borders_layout="HORIZONTAL_LINES",
        headings_style=FontFace(emphasis="BOLD", fill_color=_HEAD_FILL),
        line_height=5,
        padding=(1.6, 1.5),
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
        repeat_headings=1,
    ) as table:
        heading = table.row()
        for text in ("Description", "Qty", "Unit price", "Amount"):
            heading.cell(text)
        for row in rows:
            cells = table.row()
            for text in (row.description, row.quantity, row.unit_price, row.amount):
                cells.cell(text)
    pdf.ln(2)


def _totals(pdf: FPDF, totals: Sequence[_Total]) -> None:
    height = 6.5
    if pdf.will_page_break(height * len(totals) + 2):  # keep the totals together
        pdf.add_page()
    label_w = 50.0
    value_w = 40.0
    for total in totals:
        pdf.set_font(_FAMILY, "B" if total.strong else "", _BODY_PT + (1 if total.strong else 0))
        value_w = max(value_w, pdf.get_string_width(total.value) + 2)
    value_w = min(value_w, pdf.epw - label_w)
    x = pdf.l_margin + pdf.epw - label_w - value_w
    for total in totals:
        pdf.set_font(_FAMILY, "B" if total.strong else "", _BODY_PT + (1 if total.strong else 0))
        if total.strong:
            pdf.line(x, pdf.get_y(), x + label_w + value_w, pdf.get_y())
        pdf.set_x(x)
        pdf.cell(label_w, height, total.label, align="R")
        pdf.multi_cell(value_w, height, total.value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)


def _close_fonts(pdf: FPDF) -> None:
    for font in pdf.fonts.values():
        if isinstance(font, TTFFont):
            font.close()


def _render(sheet: _Sheet) -> bytes:
    chars = _LAYOUT_CHARS.union(*sheet.strings()) - {"\n"}
    with tempfile.TemporaryDirectory(prefix="aios-pdf-", ignore_cleanup_errors=True) as tmp:
        regular = Path(tmp, "regular.ttf")
        bold = Path(tmp, "bold.ttf")
        regular.write_bytes(_static_face(chars, _REGULAR_WEIGHT))
        bold.write_bytes(_static_face(chars, _BOLD_WEIGHT))
        pdf = _layout(sheet, regular, bold, total_pages=None)
        if pdf.pages_count > 1:  # the footer needs the page count: lay out again, knowing it
            pages = pdf.pages_count
            _close_fonts(pdf)
            pdf = _layout(sheet, regular, bold, total_pages=pages)
        try:
            return bytes(pdf.output())
        finally:
            _close_fonts(pdf)


# --- public -----------------------------------------------------------------------------------


def _foot(business: BusinessIdentity, *, bank: bool) -> tuple[str, ...]:
    """The invoice footer text, then (``bank``) the bank account on one line."""
    lines = [clean_text(line) for line in business.footer_lines]
    account = [clean_text(line) for line in business.bank.lines()] if bank else []
    if business.bank.iban and account:
        lines.append(" \u00b7 ".join(account))
    return tuple(line for line in lines if line)


def render_proposal(doc: ProposalDocument) -> bytes:
    """The proposal as a PDF: scope, priced lines, subtotal, discount (if any), total, terms."""
    proposal_id = clean_text(doc.proposal_id)
    business = doc.business
    totals = [_Total("Subtotal", format_amount(doc.subtotal_minor, doc.currency))]
    if doc.discount_minor > 0:
        totals.append(
            _Total(
                f"Discount ({_percent(doc.discount_pct)}%)",
                _less(doc.discount_minor, doc.currency),
            )
        )
    totals.append(_Total("Total", format_amount(doc.total_minor, doc.currency), strong=True))
    prepared_by = [clean_text(doc.operator_name)]
    if clean_text(business.name) != prepared_by[0]:
        prepared_by.append(clean_text(business.name))
    sheet = _Sheet(
        heading="Proposal",
        reference=f"{proposal_id} \u00b7 version {doc.version}",
        title=f"Proposal {proposal_id} v{doc.version}",
        author=clean_text(business.name),
        issued_at=doc.issued_at,
        letterhead=_Letterhead.of(business),
        parties=(
            _Party("Prepared for", (clean_text(doc.client_name),)),
            _Party("Prepared by", tuple(prepared_by)),
        ),
        facts=(
            ("Issued", format_date(doc.issued_at, business.zone)),
            ("Valid until", format_date(doc.valid_until, business.zone)),
            ("Currency", doc.currency),
        ),
        rows=_rows(doc.line_items, doc.currency),
        totals=tuple(totals),
        sections_before=_sections(("Scope", doc.scope)),
        sections_after=_sections(("Terms", doc.terms)),
        draft=business.placeholder,
    )
    return _render(sheet)


def render_invoice(doc: InvoiceDocument) -> bytes:
    """The invoice as a PDF: lines, total, due date, payment instructions, bank account."""
    number = clean_text(doc.number)
    business = doc.business
    facts = [
        ("Invoice no.", number),
        ("Issued", format_date(doc.issued_at, business.zone)),
        ("Due", format_date(doc.due_at, business.zone)),
    ]
    reference = clean_text(doc.reference or "")
    if reference:
        facts.append(("Reference", reference))
    sheet = _Sheet(
        heading="Invoice",
        reference=number,
        title=f"Invoice {number}",
        author=clean_text(business.name),
        issued_at=doc.issued_at,
        letterhead=_Letterhead.of(business),
        parties=(_Party("Billed to", (clean_text(doc.client_name), clean_text(doc.client_email))),),
        facts=tuple(facts),
        rows=_rows(doc.line_items, doc.currency),
        totals=(_Total("Total due", format_amount(doc.total_minor, doc.currency), strong=True),),
        sections_after=_sections(("Payment instructions", doc.payment_instructions)),
        foot=_foot(business, bank=True),
        draft=business.placeholder,
    )
    return _render(sheet)


def render_credit_note(doc: CreditNoteDocument) -> bytes:
    """The credit note as a PDF: the invoice it credits, the amount and the reason."""
    number = clean_text(doc.number)
    business = doc.business
    invoice_number = clean_text(doc.invoice_number)
    amount = format_amount(doc.amount_minor, doc.currency)
    sheet = _Sheet(
        heading="Credit note",
        reference=number,
        title=f"Credit note {number}",
        author=clean_text(business.name),
        issued_at=doc.issued_at,
        letterhead=_Letterhead.of(business),
        parties=(_Party("Credited to", (clean_text(doc.client_name),)),),
        facts=(
            ("Credit note no.", number),
            ("Issued", format_date(doc.issued_at, business.zone)),
            ("Invoice", invoice_number),
        ),
        rows=(_Row(f"Credit against invoice {invoice_number}", "1", amount, amount),),
        totals=(_Total("Total credit", amount, strong=True),),
        sections_after=_sections(("Reason", doc.reason)),
        foot=_foot(business, bank=False),
        draft=business.placeholder,
    )
    return _render(sheet)
