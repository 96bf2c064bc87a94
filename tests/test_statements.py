"""Bank statements and Stripe events as plain Python: parsing, matching, signatures.

No stack: CSV and camt.053 bytes in, credits or a clear error naming the line and field out;
credits matched to open invoices; Stripe events signed as Stripe signs them (HMAC-SHA256 of
``<timestamp>.<body>``) and verified by the real ``stripe`` library.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import date
from decimal import Decimal

import pytest

from aios.connectors.payments.statements import (
    Credit,
    CsvLayout,
    OpenInvoice,
    StatementError,
    invoice_numbers,
    match_credit,
    parse_amount_text,
    read_camt053,
    read_csv,
    read_statement,
)
from aios.connectors.payments.stripe_events import (
    BadEvent,
    BadSignature,
    read_event,
    verify_event,
)

SECRET = "whsec_test_statements"


def stripe_signature(body: bytes, secret: str = SECRET, at: int | None = None) -> str:
    """The ``Stripe-Signature`` header exactly as Stripe builds it."""
    timestamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


# --- amounts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mark", "value"),
    [
        ("4500.00", ".", "4500.00"),
        ("1,234.56", ".", "1234.56"),
        ("1.234,56", ",", "1234.56"),
        ("1'234.50", ".", "1234.50"),
        ("1\u00a0234,50 €", ",", "1234.50"),
        ("+450.00", ".", "450.00"),
        ("EUR 450", ".", "450"),
        ("-12.00", ".", "-12.00"),
        ("12.00-", ".", "-12.00"),
        ("(12.00)", ".", "-12.00"),
    ],
)
def test_amounts_as_banks_write_them(text: str, mark: str, value: str) -> None:
    assert parse_amount_text(text, mark) == Decimal(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "12x", "1.2.3", "--5", "EUR"])
def test_what_is_not_an_amount_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"empty|is not an amount"):
        parse_amount_text(text, ".")


# --- CSV -----------------------------------------------------------------------------------

GERMAN = CsvLayout(
    date="Buchungstag",
    amount="Betrag",
    currency="Währung",
    reference="Verwendungszweck",
    payer="Auftraggeber",
    id="",
    delimiter="",
    decimal=",",
    date_format="%d.%m.%Y",
    default_currency="EUR",
)


def test_csv_with_configured_columns_windows_1252_and_odd_amounts() -> None:
    data = (
        "Buchungstag;Betrag;Währung;Verwendungszweck;Auftraggeber\r\n"
        "21.11.2026;1.234,56;EUR;Rechnung INV-000042;Jürgen Müller GmbH\r\n"
        "21.11.2026;-50,00;EUR;Kontoführung;Bank\r\n"
        "22.11.2026;+ 450,00 EUR;;inv 43 danke;Ölwerke AG\r\n"
        ";;;;\r\n"
    ).encode("cp1252")
    statement = read_csv(data, GERMAN, name="umsatz.csv")
    assert statement.skipped == 1  # the debit
    assert [
        (c.where, c.booked_on, c.amount, c.currency, c.reference, c.payer)
        for c in statement.credits
    ] == [
        (
            "line 2",
            date(2026, 11, 21),
            Decimal("1234.56"),
            "EUR",
            "Rechnung INV-000042",
            "Jürgen Müller GmbH",
        ),
        ("line 4", date(2026, 11, 22), Decimal("450.00"), "EUR", "inv 43 danke", "Ölwerke AG"),
    ]


def test_csv_utf8_with_bom_and_the_default_columns() -> None:
    data = (
        "\ufeffDate,Amount,Currency,Reference,Name,Transaction ID\n"
        '2026-11-21,"4,500.00",USD,INV-000007,Globex,TX-1\n'
    ).encode()
    [credit] = read_csv(data, CsvLayout()).credits
    assert (credit.amount, credit.line_id, credit.payer) == (
        Decimal("4500.00"),
        "csv:TX-1",
        "Globex",
    )


def test_identical_lines_get_distinct_ids_and_a_reread_gets_the_same_ids() -> None:
    row = "2026-11-21,100.00,USD,INV-000001,Globex\n"
    data = ("Date,Amount,Currency,Reference,Name\n" + row + row).encode()
    first = [c.line_id for c in read_csv(data, CsvLayout()).credits]
    again = [c.line_id for c in read_csv(data, CsvLayout()).credits]
    assert len(set(first)) == 2 and first == again


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "Date,Amount,Reference\n2026-11-21,12x,INV-1\n",
            "s.csv line 2, field 'Amount': '12x' is not an amount",
        ),
        (
            "Date,Amount,Reference\n21/11/2026,12.00,INV-1\n",
            "s.csv line 2, field 'Date': '21/11/2026' is not a date",
        ),
        ("Date,Amount,Reference\n2026-11-21,12.001,INV-1\n", "s.csv line 2, field 'Amount'"),
        (
            "Date,Amount,Currency,Reference\n2026-11-21,12.00,EU,INV-1\n",
            "s.csv line 2, field 'Currency'",
        ),
        ("Date,Amount,Reference\n2026-11-21,12.00\n", "s.csv line 2: 2 fields, the header has 3"),
        (
            "Datum,Amount,Reference\n",
            "s.csv line 1: no column 'Date' for the date (columns: Datum, Amount, Reference)",
        ),
        ("", "s.csv: empty file"),
    ],
)
def test_a_bad_csv_is_refused_naming_line_and_field(body: str, expected: str) -> None:
    with pytest.raises(StatementError) as refused:
        read_csv(body.encode(), CsvLayout(), name="s.csv")
    assert str(refused.value).startswith(expected)


def test_binary_and_undecodable_files_are_refused() -> None:
    with pytest.raises(StatementError, match="binary file"):
        read_statement(b"PK\x03\x04\x00\x00", layout=CsvLayout(), name="x.zip")
    with pytest.raises(StatementError, match="neither UTF-8 nor Windows-1252"):
        read_csv(b"Date,Amount,Reference\n\x81\x8d\x8f\n", CsvLayout(), name="x.csv")


# --- camt.053 ------------------------------------------------------------------------------


def camt(entries: str, version: str = "08") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.{version}">
 <BkToCstmrStmt>
  <GrpHdr><MsgId>STMT-1</MsgId><CreDtTm>2026-11-22T06:00:00</CreDtTm></GrpHdr>
  <Stmt>
   <Id>STMT-1-1</Id>
   <Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>
   {entries}
  </Stmt>
 </BkToCstmrStmt>
</Document>""".encode()


def entry(
    amount: str,
    *,
    ind: str = "CRDT",
    status: str = "BOOK",
    ref: str = "",
    ustrd: str = "",
    ccy: str = "EUR",
    details: str = "",
) -> str:
    tx = details or (
        f"<TxDtls><RmtInf><Ustrd>{ustrd}</Ustrd></RmtInf>"
        "<RltdPties><Dbtr><Nm>Globex GmbH</Nm></Dbtr></RltdPties></TxDtls>"
    )
    return (
        f'<Ntry><Amt Ccy="{ccy}">{amount}</Amt><CdtDbtInd>{ind}</CdtDbtInd>'
        f"<Sts><Cd>{status}</Cd></Sts><BookgDt><Dt>2026-11-21</Dt></BookgDt>"
        f"<AcctSvcrRef>{ref}</AcctSvcrRef><NtryDtls>{tx}</NtryDtls></Ntry>"
    )


def test_camt053_booked_credits_with_batches_debits_and_pending_skipped() -> None:
    batch = (
        '<TxDtls><Refs><AcctSvcrRef>B-1</AcctSvcrRef></Refs><Amt Ccy="EUR">100.00</Amt>'
        "<RmtInf><Ustrd>INV-000050</Ustrd></RmtInf></TxDtls>"
        '<TxDtls><Refs><AcctSvcrRef>B-2</AcctSvcrRef></Refs><Amt Ccy="EUR">200.00</Amt>'
        "<RmtInf><Strd><CdtrRefInf><Ref>INV-000051</Ref></CdtrRefInf></Strd></RmtInf></TxDtls>"
    )
    data = camt(
        entry("4500.00", ref="R-1", ustrd="Invoice INV-000042 thanks")
        + entry("12.00", ind="DBIT", ref="R-2")
        + entry("99.00", status="PDNG", ref="R-3")
        + entry("300.00", ref="R-4", details=batch),
        version="02",
    )
    statement = read_camt053(data, name="camt.xml")
    assert statement.account == "DE89370400440532013000"
    assert statement.skipped == 2
    assert [(c.line_id, c.where, c.amount, c.currency, c.reference) for c in statement.credits] == [
        (
            "camt:DE89370400440532013000:R-1",
            "entry 1",
            Decimal("4500.00"),
            "EUR",
            "Invoice INV-000042 thanks",
        ),
        (
            "camt:DE89370400440532013000:B-1",
            "entry 4, transaction 1",
            Decimal("100.00"),
            "EUR",
            "INV-000050",
        ),
        (
            "camt:DE89370400440532013000:B-2",
            "entry 4, transaction 2",
            Decimal("200.00"),
            "EUR",
            "INV-000051",
        ),
    ]
    assert statement.credits[0].payer == "Globex GmbH"
    assert read_statement(data, layout=CsvLayout()).format == "camt053"  # sniffed as XML


def test_camt053_refuses_entities_and_document_types() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><Document>&lol2;</Document>'
    )
    with pytest.raises(StatementError, match="document type or entities"):
        read_camt053(bomb, name="bomb.xml")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"<Document><BkToCstmrStmt><Stmt>", "bad.xml line 1, column 32: not well-formed XML"),
        (b"<Invoice/>", "bad.xml: not a camt.053 statement"),
        (camt(""), "bad.xml: the statement has no entries"),
        (camt(entry("12,50")), "bad.xml entry 1, field Amt: '12,50' is not an amount"),
        (camt(entry("12.50", ccy="")), "bad.xml entry 1, field Amt:"),
        (
            camt(entry("12.50").replace("2026-11-21", "21.11.2026")),
            "bad.xml entry 1, field BookgDt",
        ),
    ],
)
def test_a_bad_camt053_is_refused_naming_the_entry_and_field(data: bytes, expected: str) -> None:
    with pytest.raises(StatementError) as refused:
        read_camt053(data, name="bad.xml")
    assert str(refused.value).startswith(expected)


# --- matching ------------------------------------------------------------------------------

OPEN = [
    OpenInvoice("a", 42, "billing/a", "EUR", 450_000),
    OpenInvoice("b", 43, "billing/b", "EUR", 10_000),
    OpenInvoice("c", 44, "billing/c", "EUR", 10_000),
]


def credit(amount: str, reference: str, currency: str = "EUR") -> Credit:
    return Credit("x", "line 2", None, Decimal(amount), currency, reference)


def test_invoice_numbers_in_references_as_people_type_them() -> None:
    assert invoice_numbers("Rechnung INV-000042") == [42]
    assert invoice_numbers("inv 42 and INV000043, INV-42 again") == [42, 43]
    assert invoice_numbers("INVOICE 42 / SINV-9") == []


def test_matching_by_number_and_amount() -> None:
    exact = match_credit(credit("4500.00", "INV-000042"), OPEN)
    assert (exact.kind, exact.invoice) == ("exact", OPEN[0])
    over = match_credit(credit("4600.00", "inv 42"), OPEN)
    assert over.kind == "over"
    assert (
        over.why == "amount: EUR 4,600.00 is more than the open balance EUR 4,500.00 of billing/a"
    )
    partial = match_credit(credit("1000.00", "INV-000042"), OPEN)
    assert (partial.kind, partial.candidates) == ("partial", ["INV-000042"])
    both = match_credit(credit("100.00", "INV-000043 INV-000044"), OPEN)
    assert (both.kind, both.invoice, both.candidates) == (
        "ambiguous",
        None,
        ["INV-000043", "INV-000044"],
    )
    by_amount = match_credit(credit("100.00", "thanks"), OPEN)
    assert (by_amount.kind, by_amount.candidates) == ("ambiguous", ["INV-000043", "INV-000044"])
    assert match_credit(credit("7.00", "thanks"), OPEN).kind == "unmatched"
    assert match_credit(credit("100.00", "INV-000099"), OPEN).kind == "unmatched"
    assert match_credit(credit("4500.00", "INV-000042", "USD"), OPEN).kind == "unmatched"


# --- Stripe events -------------------------------------------------------------------------


def stripe_event(type_: str, obj: dict[str, object], event_id: str = "evt_1") -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": type_,
            "created": 1764000000,
            "data": {"object": obj},
        }
    ).encode()


PAID = stripe_event(
    "invoice.paid",
    {
        "id": "in_1",
        "object": "invoice",
        "amount_paid": 620000,
        "currency": "eur",
        "metadata": {"aios_invoice_id": "acme-1", "aios_invoice_number": "INV-000042"},
        "payment_intent": "pi_1",
        "customer_name": "Acme",
    },
)


def test_a_stripe_signature_is_verified_by_the_stripe_library() -> None:
    verify_event(PAID, stripe_signature(PAID), SECRET)  # no error
    with pytest.raises(BadSignature, match="does not match"):
        verify_event(PAID, stripe_signature(PAID, secret="whsec_other"), SECRET)
    with pytest.raises(BadSignature, match="does not match"):
        verify_event(PAID + b" ", stripe_signature(PAID), SECRET)
    with pytest.raises(BadSignature, match="does not match"):  # replayed an hour later
        verify_event(PAID, stripe_signature(PAID, at=int(time.time()) - 3600), SECRET)
    with pytest.raises(BadSignature, match="missing"):
        verify_event(PAID, None, SECRET)


def test_what_stripe_events_mean() -> None:
    paid = read_event(PAID)
    assert (paid.action, paid.amount_minor, paid.currency, paid.invoice_id, paid.money_id) == (
        "payment",
        620000,
        "EUR",
        "acme-1",
        "in_1",
    )
    assert paid.refs == ["in_1", "pi_1"]
    of_invoice = read_event(
        stripe_event(
            "payment_intent.succeeded",
            {"id": "pi_1", "amount_received": 620000, "currency": "eur", "invoice": "in_1"},
        )
    )
    assert of_invoice.action == "ignore"
    alone = read_event(
        stripe_event(
            "payment_intent.succeeded",
            {
                "id": "pi_2",
                "amount_received": 5000,
                "currency": "usd",
                "description": "For INV-000007",
            },
        )
    )
    assert (alone.action, alone.invoice_number, alone.money_id) == ("payment", "INV-000007", "pi_2")
    refund = read_event(
        stripe_event(
            "charge.refunded",
            {
                "id": "ch_1",
                "currency": "eur",
                "payment_intent": "pi_1",
                "refunds": {"data": [{"id": "re_1", "amount": 1000, "currency": "eur"}]},
            },
        )
    )
    assert (refund.action, refund.amount_minor, refund.money_id, refund.refs) == (
        "refund",
        1000,
        "re_1",
        ["pi_1", "ch_1"],
    )
    unlisted = read_event(
        stripe_event(
            "charge.refunded",
            {"id": "ch_2", "currency": "eur", "amount_refunded": 500, "payment_intent": "pi_1"},
        )
    )
    assert (unlisted.action, unlisted.amount_minor, unlisted.refs) == (
        "refund",
        500,
        ["pi_1", "ch_2"],
    )
    assert "lists no refund: record it by hand" in unlisted.problem
    collecting = read_event(
        stripe_event(
            "payment_intent.succeeded",
            {
                "id": "pi_3",
                "amount_received": 5000,
                "currency": "usd",
                "description": "Payment for Invoice",
            },
        )
    )
    assert collecting.action == "ignore"
    odd = read_event(
        stripe_event(
            "invoice.paid",
            {
                "id": "in_2",
                "amount_paid": 100,
                "currency": "usd",
                "customer_name": "Ac\x00me\n Ltd",
                "metadata": {"aios_invoice_id": " acme-\x072 "},
            },
        )
    )
    assert (odd.payer, odd.invoice_id) == ("Acme Ltd", "acme-2")  # storable, one line
    other = read_event(stripe_event("customer.created", {"id": "cus_1"}))
    assert (other.action, other.why_ignored) == (
        "ignore",
        "event type customer.created is not handled",
    )


def test_a_signed_event_without_the_fields_we_rely_on_is_a_bad_event() -> None:
    with pytest.raises(BadEvent, match=r"data\.object: amount_paid"):
        read_event(stripe_event("invoice.paid", {"id": "in_1", "currency": "eur"}))
    with pytest.raises(BadEvent, match="event: id"):
        read_event(json.dumps({"type": "invoice.paid", "data": {}}).encode())
    with pytest.raises(BadEvent, match="not JSON"):
        read_event(b"<xml/>")
