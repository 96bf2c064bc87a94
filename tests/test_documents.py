"""PDF documents: what the rendered proposal, invoice and credit note say, read back with pypdf."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from pypdf import PdfReader

import aios.documents as documents
from aios.documents import (
    PLACEHOLDER,
    CreditNoteDocument,
    InvoiceDocument,
    ProposalDocument,
    clean_text,
    render_credit_note,
    render_invoice,
    render_proposal,
)
from aios.kernel.money import LineItem, line_items_total

ISSUED = datetime(2025, 3, 14, 10, 30, tzinfo=timezone(timedelta(hours=1)))
LINES = [
    LineItem(
        description="Discovery workshop, two days on site", quantity=2, unit_price_minor=150_000
    ),
    LineItem(description="Process automation build", quantity=10, unit_price_minor=95_050),
    LineItem(description="Handover and training", quantity=1, unit_price_minor=80_000),
]
LINES_TOTAL = 2 * 150_000 + 10 * 95_050 + 80_000  # 1,330,500 minor units: EUR 13,305.00


def invoice(**overrides: Any) -> InvoiceDocument:
    fields: dict[str, Any] = {
        "invoice_id": "inv-acme-42",
        "number": "INV-000042",
        "client_name": "Acme Ltd",
        "client_email": "ops@acme.example",
        "operator_name": "Jo Operator",
        "issued_at": ISSUED,
        "due_at": ISSUED + timedelta(days=30),
        "currency": "EUR",
        "line_items": LINES,
        "total_minor": LINES_TOTAL,
        "payment_instructions": "IBAN DE89 3704 0044 0532 0130 00\nBIC COBADEFFXXX",
        "reference": "Proposal p-acme-1 v2",
    }
    fields.update(overrides)
    if "line_items" in overrides and "total_minor" not in overrides:
        fields["total_minor"] = line_items_total(fields["line_items"])
    return InvoiceDocument(**fields)


def proposal(discount_pct: str = "0", **overrides: Any) -> ProposalDocument:
    pct = Decimal(discount_pct)
    discount = int(LINES_TOTAL * pct / 100)
    fields: dict[str, Any] = {
        "proposal_id": "p-acme-1",
        "version": 2,
        "client_name": "Acme Ltd",
        "operator_name": "Jo Operator",
        "issued_at": ISSUED,
        "valid_until": ISSUED + timedelta(days=30),
        "currency": "EUR",
        "scope": "Map the onboarding process.\nAutomate the welcome email and kickoff.",
        "line_items": LINES,
        "subtotal_minor": LINES_TOTAL,
        "discount_pct": pct,
        "discount_minor": discount,
        "total_minor": LINES_TOTAL - discount,
        "terms": "Payment within 30 days of invoice.\nPrices exclude VAT.",
    }
    fields.update(overrides)
    return ProposalDocument(**fields)


def credit_note(**overrides: Any) -> CreditNoteDocument:
    fields: dict[str, Any] = {
        "number": "CN-000003",
        "invoice_number": "INV-000042",
        "client_name": "Acme Ltd",
        "operator_name": "Jo Operator",
        "issued_at": ISSUED,
        "currency": "EUR",
        "amount_minor": 80_000,
        "reason": "Training session cancelled by agreement.",
    }
    fields.update(overrides)
    return CreditNoteDocument(**fields)


def pages_text(pdf: bytes) -> list[str]:
    """The text of each page with whitespace collapsed, so wrapped lines read as one."""
    reader = PdfReader(io.BytesIO(pdf))
    return [" ".join(page.extract_text().split()) for page in reader.pages]


def text_of(pdf: bytes) -> str:
    return " ".join(pages_text(pdf))


def error_fields(exc: ValidationError) -> str:
    return " ".join(str(err["msg"]) + " " + ".".join(map(str, err["loc"])) for err in exc.errors())


# --- invoice -----------------------------------------------------------------------------------


def test_invoice_shows_number_client_lines_total_and_payment_instructions():
    pdf = render_invoice(invoice())
    assert pdf.startswith(b"%PDF-")
    text = text_of(pdf)
    assert "INV-000042" in text
    assert "Acme Ltd" in text
    assert "ops@acme.example" in text
    for item in LINES:
        assert item.description in text
    assert "EUR 9,505.00" in text  # 10 x EUR 950.50
    assert "EUR 950.50" in text
    assert "Total due EUR 13,305.00" in text
    assert "IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX" in text
    assert "Proposal p-acme-1 v2" in text
    assert "14 March 2025" in text
    assert "13 April 2025" in text


def test_invoice_metadata_names_document_and_operator():
    reader = PdfReader(io.BytesIO(render_invoice(invoice(operator_name="Zoë Łukasiewicz"))))
    meta = reader.metadata
    assert meta is not None
    assert meta.title == "Invoice INV-000042"
    assert meta.author == "Zoë Łukasiewicz"
    assert meta.creation_date == ISSUED


def test_one_page_invoice_has_no_page_numbers():
    pdf = render_invoice(invoice())
    assert len(pages_text(pdf)) == 1
    assert "Page 1 of" not in text_of(pdf)


def test_invoice_total_that_does_not_match_lines_is_rejected():
    with pytest.raises(ValidationError) as info:
        invoice(total_minor=LINES_TOTAL + 1)
    assert "total_minor" in error_fields(info.value)


def test_invoice_needs_a_line_a_valid_email_and_aware_dates():
    with pytest.raises(ValidationError) as info:
        invoice(line_items=[], total_minor=0)
    assert "line_items" in error_fields(info.value)
    with pytest.raises(ValidationError) as info:
        invoice(client_email="not-an-address")
    assert "client_email" in error_fields(info.value)
    with pytest.raises(ValidationError) as info:
        invoice(issued_at=datetime(2025, 3, 14, 10, 30))  # naive: would depend on the machine
    assert "issued_at" in error_fields(info.value)
    with pytest.raises(ValidationError) as info:
        invoice(due_at=ISSUED - timedelta(days=1))
    assert "due_at" in error_fields(info.value)
    with pytest.raises(ValidationError) as info:
        invoice(currency="euro")
    assert "currency" in error_fields(info.value)
    with pytest.raises(ValidationError) as info:
        invoice(unexpected="x")
    assert "unexpected" in error_fields(info.value)


def test_zero_decimal_currency_formats_without_decimals():
    lines = [LineItem(description="Workshop", quantity=3, unit_price_minor=45_000)]
    text = text_of(render_invoice(invoice(currency="jpy", line_items=lines)))
    assert "JPY 45,000" in text
    assert "Total due JPY 135,000" in text
    assert "45,000.00" not in text
    assert "135,000.00" not in text


# --- proposal ----------------------------------------------------------------------------------


def test_proposal_without_discount_has_no_discount_line():
    text = text_of(render_proposal(proposal()))
    assert "Proposal" in text
    assert "p-acme-1" in text
    assert "version 2" in text
    assert "Map the onboarding process. Automate the welcome email and kickoff." in text
    assert "Subtotal EUR 13,305.00" in text
    assert "Discount" not in text
    assert "Total EUR 13,305.00" in text
    assert "Payment within 30 days of invoice. Prices exclude VAT." in text


def test_proposal_with_discount_shows_the_discount_and_the_discounted_total():
    doc = proposal("12.5")
    assert doc.discount_minor == 166_312  # 12.5% of 1,330,500, rounded down
    text = text_of(render_proposal(doc))
    assert "Subtotal EUR 13,305.00" in text
    assert "Discount (12.5%) \u2212 EUR 1,663.12" in text  # a minus sign, then the amount
    assert "EUR -" not in text
    assert "Total EUR 11,641.88" in text


def test_proposal_metadata_title_carries_id_and_version():
    reader = PdfReader(io.BytesIO(render_proposal(proposal())))
    assert reader.metadata is not None
    assert reader.metadata.title == "Proposal p-acme-1 v2"
    assert reader.metadata.author == "Jo Operator"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"subtotal_minor": LINES_TOTAL - 1, "total_minor": LINES_TOTAL - 1}, "subtotal_minor"),
        ({"total_minor": LINES_TOTAL - 5}, "total_minor"),
        ({"discount_pct": Decimal(10), "discount_minor": 0}, "discount_minor"),
        ({"discount_minor": 500, "total_minor": LINES_TOTAL - 500}, "discount_minor"),
        ({"discount_pct": Decimal(101)}, "discount_pct"),
        ({"valid_until": ISSUED - timedelta(days=1)}, "valid_until"),
        ({"version": 0}, "version"),
    ],
)
def test_proposal_figures_that_do_not_add_up_are_rejected(overrides: dict[str, Any], field: str):
    with pytest.raises(ValidationError) as info:
        proposal(**overrides)
    assert field in error_fields(info.value)


def test_long_scope_flows_onto_further_pages_and_keeps_its_last_line():
    scope = "\n".join(
        f"{i}. Deliverable number {i}: review the process, automate it and document it."
        for i in range(1, 301)
    )
    pdf = render_proposal(proposal("10", scope=scope))
    pages = pages_text(pdf)
    assert len(pages) >= 5
    text = " ".join(pages)
    assert "300. Deliverable number 300: review the process, automate it and document it." in text
    assert "1. Deliverable number 1:" in pages[0]
    assert f"Page 1 of {len(pages)}" in pages[0]
    assert f"Page {len(pages)} of {len(pages)}" in pages[-1]
    # The lines and totals still follow the scope.
    assert "Total EUR 11,974.50" in pages[-1]


def test_long_unbroken_word_wraps_instead_of_being_cut():
    word = "x" * 2500
    text = text_of(render_proposal(proposal(scope=f"Start {word} END-OF-SCOPE")))
    assert "END-OF-SCOPE" in text
    assert text.count("x") >= 2500


# --- credit note -------------------------------------------------------------------------------


def test_credit_note_shows_numbers_amount_and_reason():
    pdf = render_credit_note(credit_note())
    text = text_of(pdf)
    assert "Credit note" in text
    assert "CN-000003" in text
    assert "INV-000042" in text
    assert "Total credit EUR 800.00" in text
    assert "Training session cancelled by agreement." in text
    reader = PdfReader(io.BytesIO(pdf))
    assert reader.metadata is not None
    assert reader.metadata.title == "Credit note CN-000003"


def test_credit_note_needs_a_positive_amount():
    with pytest.raises(ValidationError) as info:
        credit_note(amount_minor=0)
    assert "amount_minor" in error_fields(info.value)


# --- text --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Zoë Łukasiewicz",  # Latin extended
        "Ærøskøbing Café Ångström Dvořák Gülşen",  # Latin-1 and extended A
        "Αλέξανδρος Παπαδόπουλος",  # Greek
        "Анна Кузнецова-Щербакова",  # Cyrillic
    ],
)
def test_unicode_names_come_out_as_written(name: str):
    text = text_of(render_invoice(invoice(client_name=name, operator_name=name)))
    assert name in text
    assert PLACEHOLDER not in text


def test_characters_without_a_glyph_are_replaced_not_fatal(caplog: pytest.LogCaptureFixture):
    name = "Zoë 山田太郎 😀 Ltd"
    with caplog.at_level(logging.WARNING):
        pdf = render_invoice(
            invoice(client_name=name, payment_instructions="Pay by card ✔ or 银行转账")
        )
    text = text_of(pdf)
    assert f"Zoë {PLACEHOLDER * 4} {PLACEHOLDER} Ltd" in text
    assert "山" not in text
    assert "😀" not in text
    assert "银" not in text
    assert f"Pay by card {PLACEHOLDER} or {PLACEHOLDER * 4}" in text
    assert not [r for r in caplog.records if "missing" in r.getMessage()]


def test_control_characters_are_dropped_and_aliases_stay_literal():
    pdf = render_invoice(
        invoice(
            client_name="Acme\x00\x1b Ltd\u202e",
            payment_instructions="Line\x07 one\r\nLine two\u200d {nb}",
        )
    )
    text = text_of(pdf)
    assert "Acme Ltd" in text
    assert "Line one Line two {nb}" in text


def test_clean_text_keeps_line_breaks_only_in_multiline_text():
    assert clean_text("  Acme\n\tLtd\x00  ") == "Acme Ltd"
    assert clean_text("a\r\nb\tc\x0bd", multiline=True) == "a\nb    c\nd"
    # Variation selectors are dropped, so an emoji is one placeholder, not two.
    assert clean_text("ok\ufe0e ❤\ufe0f 中") == f"ok {PLACEHOLDER} {PLACEHOLDER}"


# --- determinism ---------------------------------------------------------------------


def test_rendering_twice_gives_identical_bytes():
    assert render_invoice(invoice()) == render_invoice(invoice())
    long_scope = "\n".join(f"Item {i}" for i in range(300))
    first = render_proposal(proposal("12.5", scope=long_scope))
    assert first == render_proposal(proposal("12.5", scope=long_scope))
    assert render_credit_note(credit_note()) == render_credit_note(credit_note())


def test_different_documents_give_different_bytes():
    assert render_invoice(invoice()) != render_invoice(invoice(number="INV-000043"))


# --- public surface ----------------------------------------------------------------------------


def test_public_surface():
    assert sorted(documents.__all__) == sorted(
        [
            "PLACEHOLDER",
            "CreditNoteDocument",
            "InvoiceDocument",
            "ProposalDocument",
            "clean_text",
            "render_credit_note",
            "render_invoice",
            "render_proposal",
        ]
    )
    for name in documents.__all__:
        assert getattr(documents, name) is not None


def test_issued_at_in_utc_is_accepted():
    doc = invoice(
        issued_at=datetime(2025, 1, 2, tzinfo=UTC), due_at=datetime(2025, 2, 1, tzinfo=UTC)
    )
    assert "2 January 2025" in text_of(render_invoice(doc))
