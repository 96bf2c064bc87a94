"""Stripe webhook events: verify the signature, read the money in them.

``verify_event`` checks the ``Stripe-Signature`` header with the ``stripe`` library
(``stripe.Webhook.construct_event``: HMAC-SHA256 of ``<timestamp>.<body>`` under the
endpoint's signing secret, within a 5-minute tolerance); a missing or wrong signature is a
``BadSignature`` and nothing else is looked at. ``read_event`` then validates the fields we
rely on (pydantic; a payload that lacks them is a ``BadEvent``) and says what the event means:

- ``invoice.paid``: a payment of ``amount_paid`` for the invoice named by its metadata
  (``aios_invoice_id``, set when the Stripe provider created it) or its id (``in_...``);
  its payment id is ``stripe:<in_...>``.
- ``payment_intent.succeeded``: a payment of ``amount_received`` for the invoice named in its
  metadata (``aios_invoice_id`` or ``aios_invoice_number``) or its description
  (``INV-000042``). A payment intent that belongs to a Stripe invoice (its ``invoice`` field,
  or Stripe's description "Payment for Invoice") is ignored: the invoice's own
  ``invoice.paid`` records that money, once.
- ``refund.created`` and ``charge.refunded``: a refund; it belongs to the invoice named in its
  metadata, else to the payment its payment intent or charge paid. A ``charge.refunded`` that
  lists no refund (newer API versions) says only the charge's total refunded: a notice.
- anything else: acknowledged and ignored.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aios.converter import describe_validation
from aios.errors import InvalidInput
from aios.kernel.text import clean_pasted

__all__ = ["BadEvent", "BadSignature", "StripeMoney", "read_event", "verify_event"]

PAYMENT_TYPES = ("invoice.paid", "payment_intent.succeeded")
REFUND_TYPES = ("refund.created", "charge.refunded")
TOLERANCE_SECONDS = 300
# How Stripe describes the payment intent it makes to collect one of its invoices.
_INVOICE_PAYMENT = "Payment for Invoice"


class BadSignature(InvalidInput):
    """The request is not signed by Stripe with our secret (or the signature is too old)."""


class BadEvent(InvalidInput):
    """Signed, but not an event we can read (the fields we rely on are missing)."""


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Event(_Loose):
    id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=255)
    created: int | None = None
    data: dict[str, Any]


class _Invoice(_Loose):
    id: str
    amount_paid: int = Field(ge=0)
    currency: str
    metadata: dict[str, str] = Field(default_factory=dict)
    payment_intent: str | None = None
    charge: str | None = None
    customer_name: str | None = None
    customer_email: str | None = None


class _PaymentIntent(_Loose):
    id: str
    amount_received: int = Field(ge=0)
    currency: str
    metadata: dict[str, str] = Field(default_factory=dict)
    description: str | None = None
    invoice: str | None = None
    latest_charge: str | None = None


class _Refund(_Loose):
    id: str
    amount: int = Field(gt=0)
    currency: str
    metadata: dict[str, str] = Field(default_factory=dict)
    charge: str | None = None
    payment_intent: str | None = None


class _RefundList(_Loose):
    data: list[_Refund] = Field(default_factory=list)


class _Charge(_Loose):
    id: str
    currency: str
    metadata: dict[str, str] = Field(default_factory=dict)
    payment_intent: str | None = None
    amount_refunded: int = Field(default=0, ge=0)
    refunds: _RefundList | None = None


class StripeMoney(BaseModel):
    """What one Stripe event means for billing."""

    event_id: str
    event_type: str
    action: Literal["payment", "refund", "ignore"]
    why_ignored: str = ""
    amount_minor: int = 0
    currency: str = ""
    invoice_id: str | None = None  # our invoice id, from metadata
    invoice_number: str | None = None  # INV-000042, from metadata or description
    stripe_invoice: str | None = None  # in_...
    money_id: str = ""  # in_..., pi_..., re_...: the payment or refund id
    refs: list[str] = Field(default_factory=list)  # in_, pi_, ch_ ids of the same money
    payer: str = ""
    occurred_at: datetime | None = None
    problem: str = ""  # what keeps it from being settled by itself: it becomes a notice


def verify_event(payload: bytes, signature: str | None, secret: str) -> None:
    """Raise ``BadSignature`` unless ``signature`` is Stripe's for ``payload`` under
    ``secret``."""
    import stripe

    if not signature:
        raise BadSignature("the Stripe-Signature header is missing")
    try:
        stripe.Webhook.construct_event(payload, signature, secret, tolerance=TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError:
        raise BadSignature("the Stripe-Signature does not match this endpoint's secret") from None
    except ValueError:
        raise BadEvent("the signed body is not JSON") from None


def one_line(text: str | None, limit: int = 200) -> str:
    """Text from outside as one storable line: control characters dropped, spaces collapsed."""
    return " ".join(clean_pasted(text or "").split())[:limit]


def _meta(metadata: dict[str, str], key: str) -> str | None:
    return one_line(metadata.get(key)) or None


def _model(model: type[_Loose], data: Any, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadEvent(f"{what}: {describe_validation(exc)}") from None


def read_event(payload: bytes) -> StripeMoney:
    """What a verified event's body means (``verify_event`` first)."""
    try:
        body = json.loads(payload)
    except ValueError:
        raise BadEvent("the body is not JSON") from None
    event: _Event = _model(_Event, body, "event")
    obj = event.data.get("object")
    occurred = datetime.fromtimestamp(event.created, UTC) if event.created else None
    base: dict[str, Any] = {
        "event_id": event.id,
        "event_type": event.type,
        "occurred_at": occurred,
    }
    if event.type == "invoice.paid":
        inv: _Invoice = _model(_Invoice, obj, "data.object")
        return StripeMoney(
            **base,
            action="payment",
            amount_minor=inv.amount_paid,
            currency=inv.currency.upper(),
            invoice_id=_meta(inv.metadata, "aios_invoice_id"),
            invoice_number=_meta(inv.metadata, "aios_invoice_number"),
            stripe_invoice=inv.id,
            money_id=inv.id,
            refs=[r for r in (inv.id, inv.payment_intent, inv.charge) if r],
            payer=one_line(inv.customer_name or inv.customer_email),
        )
    if event.type == "payment_intent.succeeded":
        pi: _PaymentIntent = _model(_PaymentIntent, obj, "data.object")
        if pi.invoice or (pi.description or "").startswith(_INVOICE_PAYMENT):
            return StripeMoney(
                **base,
                action="ignore",
                why_ignored=f"the payment of Stripe invoice {pi.invoice or '(unnamed)'}: "
                "its invoice.paid records it",
            )
        number = _meta(pi.metadata, "aios_invoice_number")
        if number is None and pi.description:
            from aios.connectors.payments.statements import invoice_numbers

            found = invoice_numbers(pi.description)
            number = f"INV-{found[0]:06d}" if len(found) == 1 else None
        return StripeMoney(
            **base,
            action="payment",
            amount_minor=pi.amount_received,
            currency=pi.currency.upper(),
            invoice_id=_meta(pi.metadata, "aios_invoice_id"),
            invoice_number=number,
            money_id=pi.id,
            refs=[r for r in (pi.id, pi.latest_charge) if r],
        )
    if event.type in REFUND_TYPES:
        if event.type == "refund.created":
            refund: _Refund = _model(_Refund, obj, "data.object")
        else:
            charge: _Charge = _model(_Charge, obj, "data.object")
            if charge.refunds is None or not charge.refunds.data:
                # Newer API versions do not list the refunds: which one this is (and so its
                # amount) is unknown. Signed money is never dropped: the operator looks.
                return StripeMoney(
                    **base,
                    action="refund",
                    amount_minor=charge.amount_refunded,
                    currency=charge.currency.upper(),
                    money_id=charge.id,
                    refs=[r for r in (charge.payment_intent, charge.id) if r],
                    problem=f"charge {charge.id} was refunded "
                    "(in total so far), but the event lists no refund: record it by hand",
                )
            refund = charge.refunds.data[0]  # newest first, as Stripe lists them
            refund = refund.model_copy(
                update={
                    "metadata": {**charge.metadata, **refund.metadata},
                    "charge": refund.charge or charge.id,
                    "payment_intent": refund.payment_intent or charge.payment_intent,
                }
            )
        return StripeMoney(
            **base,
            action="refund",
            amount_minor=refund.amount,
            currency=refund.currency.upper(),
            invoice_id=_meta(refund.metadata, "aios_invoice_id"),
            invoice_number=_meta(refund.metadata, "aios_invoice_number"),
            money_id=refund.id,
            refs=[r for r in (refund.payment_intent, refund.charge) if r],
        )
    return StripeMoney(
        **base, action="ignore", why_ignored=f"event type {event.type[:80]} is not handled"
    )
