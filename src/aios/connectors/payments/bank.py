"""The bank-transfer provider, the embedded default: the invoice carries the payment details.

Nothing leaves the machine: creating an invoice composes the payment instructions (account
holder, IBAN, BIC, bank, and the invoice number as the transfer reference), voiding and marking
paid only confirm the new state. The operator records a received transfer with ``aios paid``.
"""

from __future__ import annotations

from dataclasses import dataclass

from aios.connectors.payments.base import OPERATIONS, ProviderInvoice, ProviderReceipt

__all__ = ["BankDetails", "BankTransferProvider"]


@dataclass(frozen=True)
class BankDetails:
    account_name: str = ""
    iban: str = ""
    bic: str = ""
    bank_name: str = ""
    contact_email: str = ""


class BankTransferProvider:
    name = "bank_transfer"
    operations = OPERATIONS

    def __init__(self, details: BankDetails) -> None:
        self._details = details

    def instructions(self, invoice: ProviderInvoice) -> str:
        d = self._details
        # How to pay, not how much: the invoice email names the total, a reminder the balance
        # still open, and both quote these instructions.
        lines = [
            f"Please pay by bank transfer by {invoice.due_at:%d %B %Y}, quoting the reference "
            f"{invoice.number}."
        ]
        for label, value in (
            ("Account holder", d.account_name),
            ("IBAN", " ".join(d.iban.replace(" ", "")[i : i + 4] for i in range(0, 34, 4)).strip()),
            ("BIC", d.bic),
            ("Bank", d.bank_name),
        ):
            if value:
                lines.append(f"{label}: {value}")
        if not d.iban:
            lines.append(f"For the account details, reply to {d.contact_email or 'this email'}.")
        return "\n".join(lines)

    def create_invoice(self, invoice: ProviderInvoice, *, idempotency_key: str) -> ProviderReceipt:
        return ProviderReceipt(
            provider=self.name,
            reference=invoice.number,
            status="open",
            payment_instructions=self.instructions(invoice),
        )

    def void_invoice(self, reference: str, *, idempotency_key: str) -> ProviderReceipt:
        return ProviderReceipt(
            provider=self.name,
            reference=reference,
            status="void",
            payment_instructions="This invoice is void; do not pay it.",
        )

    def mark_paid(
        self, reference: str, amount_minor: int, *, idempotency_key: str
    ) -> ProviderReceipt:
        return ProviderReceipt(
            provider=self.name,
            reference=reference,
            status="paid",
            payment_instructions="Paid by bank transfer. Thank you.",
        )
