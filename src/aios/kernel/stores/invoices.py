"""Invoices, their gap-free numbers, payments (the ledger) and credit notes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from aios.errors import InvalidInput
from aios.kernel.commerce import (
    CreditNote,
    Invoice,
    LedgerEntry,
    credit_note_number,
)
from aios.kernel.events import EventDraft
from aios.kernel.stores.database import Store

__all__ = ["InvoiceStore"]


class InvoiceStore(Store):
    """Invoices, their gap-free numbers, payments (the ledger) and credit notes."""

    def create(self, invoice: Invoice, *, event: EventDraft) -> Invoice:
        """Record a draft invoice (no number yet); a repeat returns the stored one."""
        with self.transaction() as conn:
            if not conn.execute(
                "SELECT 1 FROM clients WHERE client_key = %s", (invoice.client_key,)
            ).fetchone():
                raise InvalidInput(f"client: no client with key {invoice.client_key!r}")
            conn.execute(
                """
                INSERT INTO invoices (invoice_id, client_key, proposal_id, workflow_id, currency,
                                      line_items, total_minor, status)
                VALUES (%s, %s, %s, %s, %s, %s, %s, 'draft')
                ON CONFLICT (invoice_id) DO NOTHING
                """,
                (
                    invoice.invoice_id,
                    invoice.client_key,
                    invoice.proposal_id,
                    invoice.workflow_id,
                    invoice.currency,
                    Jsonb([item.model_dump() for item in invoice.line_items]),
                    invoice.total_minor,
                ),
            )
            self._append(conn, event)
            row = self._invoice_row(conn, invoice.invoice_id)
        return Invoice.model_validate(row)

    def issue(
        self, invoice_id: str, *, issued_at: datetime, due_at: datetime, event: EventDraft
    ) -> Invoice:
        """Give a draft invoice the next number of the gap-free series; a repeat is a no-op.

        The counter row is locked until the invoice carrying the number commits, so concurrent
        issues queue, and a failed transaction gives its number back.
        """
        with self.transaction() as conn:
            row: dict[str, Any] | None = self._invoice_row(conn, invoice_id, lock=True)
            assert row is not None
            if row["status"] == "draft":
                number = self._next_number(conn, "INV")
                row = conn.execute(
                    """
                    UPDATE invoices SET number = %s, status = 'issued', issued_at = %s,
                                        due_at = %s, updated_at = now()
                    WHERE invoice_id = %s RETURNING *
                    """,
                    (number, issued_at, due_at, invoice_id),
                ).fetchone()
                assert row is not None
                self._append(
                    conn, event.model_copy(update={"payload": {**event.payload, "number": number}})
                )
        return Invoice.model_validate(row)

    def attach_provider(
        self,
        invoice_id: str,
        *,
        provider: str,
        reference: str,
        payment_instructions: str,
        hosted_url: str | None,
        event: EventDraft,
    ) -> Invoice:
        with self.transaction() as conn:
            self._invoice_row(conn, invoice_id, lock=True)
            conn.execute(
                """
                UPDATE invoices SET provider = %s, provider_reference = %s,
                                    payment_instructions = %s, hosted_url = %s, updated_at = now()
                WHERE invoice_id = %s
                """,
                (provider, reference, payment_instructions, hosted_url, invoice_id),
            )
            self._append(conn, event)
            row = self._invoice_row(conn, invoice_id)
        return Invoice.model_validate(row)

    def void(self, invoice_id: str, *, event: EventDraft) -> Invoice:
        """Mark the invoice void (it keeps its number); voiding a void invoice is a no-op."""
        with self.transaction() as conn:
            row: dict[str, Any] | None = self._invoice_row(conn, invoice_id, lock=True)
            assert row is not None
            if row["status"] != "void":
                row = conn.execute(
                    """
                    UPDATE invoices SET status = 'void', voided_at = now(), updated_at = now()
                    WHERE invoice_id = %s RETURNING *
                    """,
                    (invoice_id,),
                ).fetchone()
                assert row is not None
                self._append(conn, event)
        return Invoice.model_validate(row)

    def record_payment(
        self,
        invoice_id: str,
        *,
        entry_key: str,
        amount_minor: int,
        currency: str,
        reference: str,
        paid_at: datetime,
        event: EventDraft,
    ) -> tuple[Invoice, int]:
        """Add a payment to the ledger (once per ``entry_key``); returns invoice and balance.

        The invoice becomes ``paid`` when the payments cover its total.
        """
        if amount_minor <= 0:
            raise InvalidInput("payment: amount must be positive")
        with self.transaction() as conn:
            row: dict[str, Any] | None = self._invoice_row(conn, invoice_id, lock=True)
            assert row is not None
            if row["currency"] != currency:
                raise InvalidInput(
                    f"payment: currency {currency} does not match the invoice's {row['currency']}"
                )
            seen = conn.execute(
                "SELECT 1 FROM ledger_entries WHERE entry_key = %s", (entry_key,)
            ).fetchone()
            if not seen:
                if row["status"] not in ("issued", "paid"):
                    raise InvalidInput(
                        f"payment: invoice {invoice_id!r} is {row['status']}, it cannot be paid"
                    )
                conn.execute(
                    """
                    INSERT INTO ledger_entries (entry_key, invoice_id, kind, amount_minor,
                                                currency, reference, occurred_at)
                    VALUES (%s, %s, 'payment', %s, %s, %s, %s)
                    """,
                    (entry_key, invoice_id, amount_minor, currency, reference, paid_at),
                )
                self._append(conn, event)
            balance = self._balance(conn, invoice_id, int(row["total_minor"]))
            if balance <= 0 and row["status"] == "issued":
                row = conn.execute(
                    """
                    UPDATE invoices SET status = 'paid', paid_at = %s, updated_at = now()
                    WHERE invoice_id = %s RETURNING *
                    """,
                    (paid_at, invoice_id),
                ).fetchone()
                assert row is not None
        return Invoice.model_validate(row), balance

    def record_refund(
        self,
        invoice_id: str,
        *,
        entry_key: str,
        amount_minor: int,
        currency: str,
        reference: str,
        refunded_at: datetime,
        event: EventDraft,
    ) -> tuple[Invoice, int]:
        """Add a refund (money paid for the invoice went back) to the ledger, once per
        ``entry_key``; returns invoice and balance. A paid invoice with a balance again is
        ``issued`` again."""
        if amount_minor <= 0:
            raise InvalidInput("refund: amount must be positive")
        with self.transaction() as conn:
            row: dict[str, Any] | None = self._invoice_row(conn, invoice_id, lock=True)
            assert row is not None
            if row["currency"] != currency:
                raise InvalidInput(
                    f"refund: currency {currency} does not match the invoice's {row['currency']}"
                )
            seen = conn.execute(
                "SELECT 1 FROM ledger_entries WHERE entry_key = %s", (entry_key,)
            ).fetchone()
            if not seen:
                paid = conn.execute(
                    "SELECT coalesce(sum(amount_minor), 0) AS paid FROM ledger_entries "
                    "WHERE invoice_id = %s AND kind IN ('payment', 'refund')",
                    (invoice_id,),
                ).fetchone()
                assert paid is not None
                if amount_minor > int(paid["paid"]):
                    raise InvalidInput(
                        f"refund: more than the payments recorded for invoice {invoice_id!r}"
                    )
                conn.execute(
                    """
                    INSERT INTO ledger_entries (entry_key, invoice_id, kind, amount_minor,
                                                currency, reference, occurred_at)
                    VALUES (%s, %s, 'refund', %s, %s, %s, %s)
                    """,
                    (entry_key, invoice_id, -amount_minor, currency, reference, refunded_at),
                )
                self._append(conn, event)
            balance = self._balance(conn, invoice_id, int(row["total_minor"]))
            if balance > 0 and row["status"] == "paid":
                row = conn.execute(
                    """
                    UPDATE invoices SET status = 'issued', paid_at = NULL, updated_at = now()
                    WHERE invoice_id = %s RETURNING *
                    """,
                    (invoice_id,),
                ).fetchone()
                assert row is not None
        return Invoice.model_validate(row), balance

    def issue_credit_note(
        self,
        credit_note_id: str,
        invoice_id: str,
        *,
        amount_minor: int,
        reason: str,
        event: EventDraft,
    ) -> CreditNote:
        """Credit ``amount_minor`` against the invoice with a numbered credit note, once per id."""
        if amount_minor <= 0:
            raise InvalidInput("credit note: amount must be positive")
        with self.transaction() as conn:
            row = self._invoice_row(conn, invoice_id, lock=True)
            note = conn.execute(
                "SELECT * FROM credit_notes WHERE credit_note_id = %s", (credit_note_id,)
            ).fetchone()
            if note is None:
                number = self._next_number(conn, "CN")
                note = conn.execute(
                    """
                    INSERT INTO credit_notes (credit_note_id, number, invoice_id, currency,
                                              amount_minor, reason)
                    VALUES (%s, %s, %s, %s, %s, %s) RETURNING *
                    """,
                    (credit_note_id, number, invoice_id, row["currency"], amount_minor, reason),
                ).fetchone()
                conn.execute(
                    """
                    INSERT INTO ledger_entries (entry_key, invoice_id, kind, amount_minor,
                                                currency, reference)
                    VALUES (%s, %s, 'credit_note', %s, %s, %s)
                    """,
                    (
                        credit_note_id,
                        invoice_id,
                        -amount_minor,
                        row["currency"],
                        credit_note_number(number),
                    ),
                )
                self._append(
                    conn,
                    event.model_copy(
                        update={"payload": {**event.payload, "number": credit_note_number(number)}}
                    ),
                )
        assert note is not None
        return CreditNote.model_validate(note)

    def get(self, invoice_id: str) -> Invoice | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM invoices WHERE invoice_id = %s", (invoice_id,)
            ).fetchone()
        return Invoice.model_validate(row) if row else None

    def by_number(self, number: int) -> Invoice | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM invoices WHERE number = %s", (number,)).fetchone()
        return Invoice.model_validate(row) if row else None

    def by_provider_reference(self, provider: str, reference: str) -> Invoice | None:
        """The one invoice a provider knows as ``reference`` (Stripe ``in_...``); ``None``
        when there is none, or more than one (a reference never to guess from)."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM invoices WHERE provider = %s AND provider_reference = %s LIMIT 2",
                (provider, reference),
            ).fetchall()
        return Invoice.model_validate(rows[0]) if len(rows) == 1 else None

    def open_with_balances(self) -> list[tuple[Invoice, int]]:
        """Issued invoices not yet paid, with their open balance, oldest number first."""
        with self.transaction() as conn:
            rows = conn.execute(
                """
                SELECT i.*, i.total_minor - coalesce(
                    (SELECT sum(amount_minor) FROM ledger_entries l
                     WHERE l.invoice_id = i.invoice_id), 0) AS open_minor
                FROM invoices i WHERE i.status = 'issued' ORDER BY i.number
                """
            ).fetchall()
        return [(Invoice.model_validate(r), int(r["open_minor"])) for r in rows]

    def ledger(self, invoice_id: str) -> list[LedgerEntry]:
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM ledger_entries WHERE invoice_id = %s ORDER BY id", (invoice_id,)
            ).fetchall()
        return [LedgerEntry.model_validate(r) for r in rows]

    def credit_notes(self, invoice_id: str) -> list[CreditNote]:
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM credit_notes WHERE invoice_id = %s ORDER BY number", (invoice_id,)
            ).fetchall()
        return [CreditNote.model_validate(r) for r in rows]

    def for_client(self, client_key: str) -> list[Invoice]:
        """The client's invoices, newest first."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM invoices WHERE client_key = %s ORDER BY created_at DESC",
                (client_key,),
            ).fetchall()
        return [Invoice.model_validate(r) for r in rows]

    def overdue(self, now: datetime) -> list[Invoice]:
        """Issued invoices not paid by their due date, longest overdue first."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM invoices WHERE status = 'issued' AND due_at < %s ORDER BY due_at",
                (now,),
            ).fetchall()
        return [Invoice.model_validate(r) for r in rows]

    def numbers(self) -> list[int]:
        """Every issued invoice number, ascending (for audits and tests of the series)."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT number FROM invoices WHERE number IS NOT NULL ORDER BY number"
            ).fetchall()
        return [int(r["number"]) for r in rows]

    def balance(self, invoice_id: str) -> int:
        with self.transaction() as conn:
            row = self._invoice_row(conn, invoice_id)
            return self._balance(conn, invoice_id, int(row["total_minor"]))

    @staticmethod
    def _invoice_row(
        conn: psycopg.Connection[dict[str, Any]], invoice_id: str, *, lock: bool = False
    ) -> dict[str, Any]:
        locked = "SELECT * FROM invoices WHERE invoice_id = %s FOR UPDATE"
        plain = "SELECT * FROM invoices WHERE invoice_id = %s"
        row = conn.execute(locked if lock else plain, (invoice_id,)).fetchone()
        if row is None:
            raise InvalidInput(f"invoice: no invoice with id {invoice_id!r}")
        return row

    @staticmethod
    def _next_number(conn: psycopg.Connection[dict[str, Any]], series: str) -> int:
        row = conn.execute(
            """
            UPDATE document_counters SET last_number = last_number + 1
            WHERE series = %s RETURNING last_number
            """,
            (series,),
        ).fetchone()
        assert row is not None, f"no counter for series {series}"
        return int(row["last_number"])

    @staticmethod
    def _balance(conn: psycopg.Connection[dict[str, Any]], invoice_id: str, total: int) -> int:
        row = conn.execute(
            "SELECT coalesce(sum(amount_minor), 0) AS paid FROM ledger_entries "
            "WHERE invoice_id = %s",
            (invoice_id,),
        ).fetchone()
        assert row is not None
        return total - int(row["paid"])
