"""Bank statements: read the credits of a CSV export or an ISO 20022 camt.053 file, and match
each to an open invoice by the invoice number in its reference and its amount.

Plain Python, no I/O besides the bytes given. A file that cannot be read is refused whole with
a ``StatementError`` naming the line (CSV) or entry (camt.053) and the field; nothing of it is
used then.

CSV: the columns are configurable (``CsvLayout``: which header names hold the booking date, the
amount, the currency, the reference, the payer and the bank's own transaction id), as are the
delimiter (or sniffed), the decimal mark and the date format. The encoding is UTF-8 (with or
without BOM), else Windows-1252, the two that bank exports use. Amounts may carry thousands
separators (``1,234.56``, ``1.234,56``, ``1'234.56``, spaces), a currency code or sign, a
leading ``+``/``-``, a trailing ``-`` or parentheses; only positive amounts (credits) are kept.

camt.053 (``BkToCstmrStmt``, any version ``camt.053.001.02`` to ``.13``): booked credit
entries (``CdtDbtInd`` ``CRDT``; reversals, debits and pending entries are skipped), one
credit per transaction detail when an entry is a batch. XML is parsed with ``defusedxml``:
a document type declaration or an entity is refused, so no entity expansion or outside
fetch happens.

Every credit has a stable ``line_id`` (the bank's reference, else a digest of its fields and
its position among identical lines), so importing the same file again, or a later statement
that repeats lines, finds the same ids.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Literal

from aios.errors import InvalidInput
from aios.kernel.money import format_amount, normalize_currency, parse_amount

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

__all__ = [
    "Credit",
    "CsvLayout",
    "Match",
    "OpenInvoice",
    "OpenInvoices",
    "Statement",
    "StatementError",
    "invoice_numbers",
    "match_credit",
    "parse_amount_text",
    "read_camt053",
    "read_csv",
    "read_statement",
]

StatementFormat = Literal["csv", "camt053"]
MAX_BYTES = 20 * 1024 * 1024
_INVOICE_NUMBER = re.compile(r"(?i)\bINV[\s\-_/]*0*(\d{1,12})\b")
_CURRENCY_BITS = re.compile(r"[€$£¥]|^\s*[A-Za-z]{3}(?=[\s\d+\-(])|(?<=[\s\d)\-])[A-Za-z]{3}\s*$")


class StatementError(InvalidInput):
    """The statement cannot be read; the message names the line or entry and the field."""


@dataclass(frozen=True)
class Credit:
    """Money that arrived, as the statement shows it."""

    line_id: str
    where: str  # "line 7", "entry 3"
    booked_on: date | None
    amount: Decimal
    currency: str
    reference: str
    payer: str = ""


@dataclass(frozen=True)
class Statement:
    format: StatementFormat
    account: str
    credits: list[Credit]
    skipped: int = 0  # debits, reversals, pending entries


@dataclass(frozen=True)
class CsvLayout:
    """Which CSV columns hold what (header names, matched without case and spaces)."""

    date: str = "Date"
    amount: str = "Amount"
    currency: str = "Currency"  # optional column; missing: ``default_currency``
    reference: str = "Reference"
    payer: str = "Name"  # optional
    id: str = "Transaction ID"  # optional; missing: a digest of the line
    delimiter: str = ""  # "" sniffs , ; tab |
    decimal: Literal[".", ","] = "."
    date_format: str = "%Y-%m-%d"
    default_currency: str = "USD"


# --- amounts --------------------------------------------------------------------------------


def parse_amount_text(text: str, decimal_mark: Literal[".", ","] = ".") -> Decimal:
    """``text`` as a signed decimal: thousands separators, a currency code or sign, ``+``/``-``,
    a trailing ``-`` and parentheses are understood. Raises ``ValueError`` naming the problem."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty")
    value = raw.replace("\u00a0", " ").replace("\u202f", " ")
    negative = False
    if value.startswith("(") and value.endswith(")"):
        negative, value = True, value[1:-1]
    value = _CURRENCY_BITS.sub("", value).strip()
    if value.endswith("-"):
        negative, value = True, value[:-1].strip()
    if value.startswith(("-", "+")):
        negative = negative or value[0] == "-"
        value = value[1:].strip()
    thousands = "," if decimal_mark == "." else "."
    value = value.replace(" ", "").replace("'", "").replace(thousands, "")
    if decimal_mark == ",":
        value = value.replace(",", ".")
    if not re.fullmatch(r"\d+(\.\d+)?", value):
        raise ValueError(f"{raw[:40]!r} is not an amount")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{raw[:40]!r} is not an amount") from None
    return -amount if negative else amount


def _line_id(prefix: str, parts: list[str], seen: Counter[str]) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
    seen[digest] += 1
    return f"{prefix}:{digest}/{seen[digest]}"


# --- CSV -------------------------------------------------------------------------------------


def _decode(data: bytes, name: str) -> str:
    if len(data) > MAX_BYTES:
        raise StatementError(f"{name}: larger than {MAX_BYTES // (1024 * 1024)} MB")
    if b"\x00" in data:
        raise StatementError(f"{name}: a binary file, not a statement (NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="strict") if _cp1252_ok(data) else _undecodable(name)


def _cp1252_ok(data: bytes) -> bool:
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return False
    return True


def _undecodable(name: str) -> str:
    raise StatementError(f"{name}: neither UTF-8 nor Windows-1252 text")


def _key(name: str) -> str:
    return "".join(name.split()).lower()


def read_csv(data: bytes, layout: CsvLayout, *, name: str = "statement") -> Statement:
    """The credits of a CSV bank export laid out as ``layout``."""
    text = _decode(data, name)
    if not text.strip():
        raise StatementError(f"{name}: empty file")
    delimiter = layout.delimiter
    if not delimiter:
        try:
            delimiter = csv.Sniffer().sniff(text.splitlines()[0], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(rows)
    except csv.Error as exc:
        raise StatementError(f"{name} line 1: {exc}") from None
    columns = {_key(h): i for i, h in enumerate(header)}

    def column(field_name: str, wanted: str, *, required: bool) -> int | None:
        index = columns.get(_key(wanted)) if wanted else None
        if index is None and required:
            shown = ", ".join(h.strip() for h in header) or "none"
            raise StatementError(
                f"{name} line 1: no column {wanted!r} for the {field_name} (columns: {shown})"
            )
        return index

    at_date = column("date", layout.date, required=True)
    at_amount = column("amount", layout.amount, required=True)
    at_reference = column("reference", layout.reference, required=True)
    at_currency = column("currency", layout.currency, required=False)
    at_payer = column("payer", layout.payer, required=False)
    at_id = column("id", layout.id, required=False)
    default_currency = normalize_currency(layout.default_currency)
    credits: list[Credit] = []
    skipped = 0
    seen: Counter[str] = Counter()
    try:
        for row in rows:
            where = f"line {rows.line_num}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < len(header):
                raise StatementError(
                    f"{name} {where}: {len(row)} fields, the header has {len(header)}"
                )

            def cell(index: int | None, row: list[str] = row) -> str:
                return row[index].strip() if index is not None else ""

            try:
                amount = parse_amount_text(cell(at_amount), layout.decimal)
            except ValueError as exc:
                raise StatementError(f"{name} {where}, field {layout.amount!r}: {exc}") from None
            if amount <= 0:
                skipped += 1
                continue
            try:
                booked = datetime.strptime(cell(at_date), layout.date_format).date()
            except ValueError:
                raise StatementError(
                    f"{name} {where}, field {layout.date!r}: {cell(at_date)[:40]!r} is not a "
                    f"date like {layout.date_format}"
                ) from None
            try:
                currency = normalize_currency(cell(at_currency) or default_currency)
                parse_amount(amount, currency)
            except InvalidInput as exc:
                field_name = layout.currency if cell(at_currency) else layout.amount
                raise StatementError(f"{name} {where}, field {field_name!r}: {exc}") from None
            reference, payer = cell(at_reference), cell(at_payer)
            own_id = cell(at_id)
            line_id = (
                f"csv:{own_id}"
                if own_id
                else _line_id(
                    "csv", [booked.isoformat(), str(amount), currency, reference, payer], seen
                )
            )
            credits.append(Credit(line_id, where, booked, amount, currency, reference, payer))
    except csv.Error as exc:
        raise StatementError(f"{name} line {rows.line_num}: {exc}") from None
    return Statement("csv", "", credits, skipped)


# --- camt.053 --------------------------------------------------------------------------------


def _local(tag: object) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _child(el: Element, *path: str) -> Element | None:
    node = el
    for step in path:
        found = None
        for c in node:
            if _local(c.tag) == step:
                found = c
                break
        if found is None:
            return None
        node = found
    return node


def _first(*nodes: Element | None) -> Element | None:
    """The first node that is not ``None`` (an element without children is falsy)."""
    return next((n for n in nodes if n is not None), None)


def _children(el: Element | None, tag: str) -> list[Element]:
    return [] if el is None else [c for c in el if _local(c.tag) == tag]


def _text(el: Element, *path: str) -> str:
    node = _child(el, *path)
    return (node.text or "").strip() if node is not None else ""


def read_camt053(data: bytes, *, name: str = "statement") -> Statement:
    """The booked credits of an ISO 20022 camt.053 statement."""
    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException

    if len(data) > MAX_BYTES:
        raise StatementError(f"{name}: larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException:
        raise StatementError(
            f"{name}: refused: the XML declares a document type or entities"
        ) from None
    except SafeET.ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        raise StatementError(
            f"{name} line {line}, column {column + 1}: not well-formed XML"
        ) from None
    report = _child(root, "BkToCstmrStmt")
    if _local(root.tag) != "Document" or report is None:
        raise StatementError(f"{name}: not a camt.053 statement (no Document/BkToCstmrStmt)")
    credits: list[Credit] = []
    skipped = 0
    account = ""
    seen: Counter[str] = Counter()
    n = 0
    for stmt in _children(report, "Stmt"):
        account = _text(stmt, "Acct", "Id", "IBAN") or _text(stmt, "Acct", "Id", "Othr", "Id")
        for entry in _children(stmt, "Ntry"):
            n += 1
            where = f"entry {n}"
            status = _text(entry, "Sts", "Cd") or _text(entry, "Sts")
            if (
                _text(entry, "CdtDbtInd") != "CRDT"
                or _text(entry, "RvslInd").lower() == "true"
                or status not in ("BOOK", "")
            ):
                skipped += 1
                continue
            booked_text = _text(entry, "BookgDt", "Dt") or _text(entry, "BookgDt", "DtTm")[:10]
            try:
                booked = date.fromisoformat(booked_text) if booked_text else None
            except ValueError:
                raise StatementError(
                    f"{name} {where}, field BookgDt: {booked_text[:40]!r} is not a date"
                ) from None
            entry_ref = _text(entry, "AcctSvcrRef") or _text(entry, "NtryRef")
            details = [
                tx for block in _children(entry, "NtryDtls") for tx in _children(block, "TxDtls")
            ]
            parts: list[tuple[Element, Element | None]] = (
                [
                    (tx, _first(_child(tx, "Amt"), _child(tx, "AmtDtls", "TxAmt", "Amt")))
                    for tx in details
                ]
                if len(details) > 1
                else [(details[0] if details else entry, _child(entry, "Amt"))]
            )
            for i, (tx, amount_el) in enumerate(parts, 1):
                here = where if len(parts) == 1 else f"{where}, transaction {i}"
                if amount_el is None:
                    raise StatementError(f"{name} {here}, field Amt: missing")
                try:
                    text = (amount_el.text or "").strip()
                    if not re.fullmatch(r"\d+(\.\d+)?", text):  # ISO 20022: digits and a dot
                        raise ValueError(f"{text[:40]!r} is not an amount")
                    amount = Decimal(text)
                    currency = normalize_currency(amount_el.get("Ccy", ""))
                    parse_amount(amount, currency)
                except (ValueError, InvalidInput) as exc:
                    raise StatementError(f"{name} {here}, field Amt: {exc}") from None
                if amount <= 0:
                    raise StatementError(f"{name} {here}, field Amt: must be more than zero")
                reference = " ".join(
                    t
                    for t in (
                        " ".join(
                            (u.text or "").strip()
                            for u in _children(_first(_child(tx, "RmtInf"), tx), "Ustrd")
                        ),
                        _text(tx, "RmtInf", "Strd", "CdtrRefInf", "Ref"),
                        _text(tx, "Refs", "EndToEndId")
                        if _text(tx, "Refs", "EndToEndId") != "NOTPROVIDED"
                        else "",
                    )
                    if t
                )
                payer = _text(tx, "RltdPties", "Dbtr", "Nm") or _text(
                    tx, "RltdPties", "Dbtr", "Pty", "Nm"
                )
                tx_ref = _text(tx, "Refs", "AcctSvcrRef") or _text(tx, "Refs", "TxId")
                own = tx_ref or (f"{entry_ref}/{i}" if entry_ref and len(parts) > 1 else entry_ref)
                line_id = (
                    f"camt:{account}:{own}"
                    if own
                    else _line_id(
                        "camt",
                        [account, booked_text, str(amount), currency, reference, payer],
                        seen,
                    )
                )
                credits.append(Credit(line_id, here, booked, amount, currency, reference, payer))
    if n == 0:
        raise StatementError(f"{name}: the statement has no entries (Ntry)")
    return Statement("camt053", account, credits, skipped)


def read_statement(
    data: bytes,
    *,
    layout: CsvLayout,
    format: StatementFormat | Literal["auto"] = "auto",
    name: str = "statement",
) -> Statement:
    """A CSV or camt.053 statement; ``auto`` takes XML for camt.053."""
    if format == "auto":
        head = data[:200].lstrip(b"\xef\xbb\xbf \t\r\n")
        format = "camt053" if head.startswith(b"<") else "csv"
    if format == "camt053":
        return read_camt053(data, name=name)
    return read_csv(data, layout, name=name)


# --- matching --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenInvoice:
    invoice_id: str
    number: int
    workflow_id: str
    currency: str
    balance_minor: int

    @property
    def display_number(self) -> str:
        return f"INV-{self.number:06d}"


MatchKind = Literal["exact", "over", "partial", "ambiguous", "unmatched"]


@dataclass(frozen=True)
class Match:
    """What a credit is: ``exact`` (pays the invoice), ``over`` (more than its open balance:
    refused), ``partial`` (less), ``ambiguous`` (several invoices fit) or ``unmatched``."""

    kind: MatchKind
    invoice: OpenInvoice | None
    why: str
    candidates: list[str] = field(default_factory=list)


def invoice_numbers(reference: str) -> list[int]:
    """Invoice numbers named in a payment reference (``INV-000042``, ``inv 42``, ``INV000042``)."""
    found: list[int] = []
    for m in _INVOICE_NUMBER.finditer(reference):
        number = int(m.group(1))
        if number not in found:
            found.append(number)
    return found


class OpenInvoices:
    """Open invoices indexed by number and by (currency, open balance), built once per file."""

    def __init__(self, invoices: list[OpenInvoice]) -> None:
        self.by_number = {inv.number: inv for inv in invoices}
        self.by_amount: dict[tuple[str, int], list[OpenInvoice]] = {}
        for inv in invoices:
            self.by_amount.setdefault((inv.currency, inv.balance_minor), []).append(inv)


def match_credit(credit: Credit, open_invoices: list[OpenInvoice] | OpenInvoices) -> Match:
    """Match ``credit`` to one of ``open_invoices`` by the number in its reference and amount."""
    index = (
        open_invoices if isinstance(open_invoices, OpenInvoices) else OpenInvoices(open_invoices)
    )
    by_number = index.by_number
    named = invoice_numbers(credit.reference)
    amount = parse_amount(credit.amount, credit.currency)
    shown = format_amount(amount, credit.currency)
    if named:
        fitting = [by_number[n] for n in named if n in by_number]
        if not fitting:
            numbers = ", ".join(f"INV-{n:06d}" for n in named)
            return Match("unmatched", None, f"{shown}: {numbers} is no open invoice")
        if len(fitting) > 1:
            return Match(
                "ambiguous",
                None,
                f"{shown}: the reference names several open invoices",
                [inv.display_number for inv in fitting],
            )
        invoice = fitting[0]
        if invoice.currency != credit.currency:
            return Match(
                "unmatched",
                None,
                f"{shown}: {invoice.display_number} is in {invoice.currency}",
                [invoice.display_number],
            )
        if amount == invoice.balance_minor:
            return Match("exact", invoice, f"{shown} pays {invoice.display_number}")
        if amount > invoice.balance_minor:
            return Match(
                "over",
                invoice,
                f"amount: {shown} is more than the open balance "
                f"{format_amount(invoice.balance_minor, invoice.currency)} of "
                f"{invoice.workflow_id}",
            )
        return Match(
            "partial",
            invoice,
            f"{shown} is less than the open balance "
            f"{format_amount(invoice.balance_minor, invoice.currency)} of "
            f"{invoice.display_number}",
            [invoice.display_number],
        )
    same_amount = index.by_amount.get((credit.currency, amount), [])
    if same_amount:
        return Match(
            "ambiguous",
            None,
            f"{shown}: the reference names no invoice; the amount fits "
            + ", ".join(inv.display_number for inv in same_amount),
            [inv.display_number for inv in same_amount],
        )
    return Match("unmatched", None, f"{shown}: the reference names no invoice")
