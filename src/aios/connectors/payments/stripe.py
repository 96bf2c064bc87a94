"""The Stripe payment provider: invoices that clients pay on Stripe's hosted invoice page.

``create_invoice`` finds or creates the Stripe customer (by email: the customer whose metadata
``aios_client_key`` matches, else the first one no other client claims), creates a draft
``send_invoice`` invoice that carries our invoice id and number (metadata, and a custom field
the client sees), adds one invoice item per line (integer ``quantity`` times
``unit_amount_decimal`` in minor units), finalizes it, and checks that Stripe's ``total`` and
``currency`` are ours. ``void_invoice`` voids an open invoice (or deletes a draft);
``mark_paid`` records a payment made outside Stripe.

Idempotency: every POST carries a Stripe ``Idempotency-Key`` derived from the caller's key and
the sub-step: ``<key>/customer``, ``<key>/invoice``, ``<key>/item/<n>`` (n counts lines from 1),
``<key>/finalize``, ``<key>/void``, ``<key>/pay``. Repeating a call with the same key within
Stripe's idempotency window (24 hours) replays the first responses and creates nothing new; the
customer is found again by listing, so a repeat makes no customer POST at all. (After that
window Stripe forgets the keys and a repeat would make a second invoice.) A key longer than
Stripe's 255 characters is replaced by a digest of itself (same form, ``aios-<sha256>/<step>``).

Errors, classified in one place (``_classified``):

- ``TransientConnectorError`` (retry): rate limits (the message gives Stripe's ``Retry-After``
  seconds when sent), connection errors and timeouts, HTTP 5xx and 409 (lock conflicts).
- ``PermanentConnectorError`` (do not retry): authentication and permission failures (the
  message never carries Stripe's text, which echoes part of the key), invalid requests with
  Stripe's own message and parameter, idempotency-key misuse, a paid invoice that cannot be
  voided, a total or currency that differs from ours, and responses that do not match the
  fields we rely on ("schema drift: invoice.total: Field required").
- ``InvalidInput``: our own input is wrong (line items that do not add up to the total, a
  payment amount that differs from what is still owed, a reference that is no Stripe invoice).

The library's own network retries are off: retries belong to Temporal's retry policy. No
message or log line carries the API key or request headers.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Literal, TypeVar

import stripe
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from aios.connectors.payments.base import OPERATIONS, ProviderInvoice, ProviderReceipt
from aios.errors import (
    ConnectorError,
    InvalidInput,
    PermanentConnectorError,
    TransientConnectorError,
)
from aios.kernel.money import line_items_total

__all__ = ["StripeProvider"]

NAME = "stripe"
_MAX_IDEMPOTENCY_KEY = 255
_CUSTOMER_PAGE = 100
_CUSTOM_FIELD_NAME = "Invoice number"

log = logging.getLogger(__name__)


# --- the fields we rely on, validated on every response -------------------------------------


class _Fields(BaseModel):
    # Strict: JSON gives ints as ints; a string where a number was is drift, not a conversion.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class _Customer(_Fields):
    id: str
    object: Literal["customer"]
    email: str | None
    metadata: dict[str, str]


class _CustomerList(_Fields):
    object: Literal["list"]
    data: list[_Customer]


class _Invoice(_Fields):
    id: str
    object: Literal["invoice"]
    status: Literal["draft", "open", "paid", "uncollectible", "void"]
    currency: str
    total: int
    amount_remaining: int
    customer: str
    hosted_invoice_url: str | None
    metadata: dict[str, str]


class _InvoiceItem(_Fields):
    id: str
    object: Literal["invoiceitem"]
    amount: int
    currency: str
    quantity: int
    invoice: str | None


class _DeletedInvoice(_Fields):
    id: str
    object: Literal["invoice"]
    deleted: Literal[True]


_M = TypeVar("_M", bound=_Fields)


def _validated(model: type[_M], name: str, obj: stripe.StripeObject) -> _M:
    """The response behind ``obj`` as ``model``; a missing or changed field is schema drift."""
    response = obj.last_response
    data: object = response.data if response is not None else obj.to_dict()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join([name, *(str(part) for part in first["loc"])])
        raise PermanentConnectorError(NAME, f"schema drift: {where}: {first['msg']}") from None


# --- error classification: the one place ----------------------------------------------------


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def _short(text: object, limit: int = 300) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _classified(exc: stripe.StripeError) -> ConnectorError:
    """The AiOs error for a Stripe error. Never quotes the key, headers or auth messages."""
    status = exc.http_status
    request = f"request {exc.request_id}" if exc.request_id else "no request id"
    if isinstance(exc, stripe.RateLimitError):
        retry_after = _header(exc.headers, "Retry-After")
        wait = f"; Stripe asks to retry after {retry_after} seconds" if retry_after else ""
        return TransientConnectorError(NAME, f"rate limited (HTTP {status}, {request}){wait}")
    if isinstance(exc, stripe.AuthenticationError):
        return PermanentConnectorError(NAME, f"authentication failed (HTTP {status}, {request})")
    if isinstance(exc, stripe.PermissionError):
        return PermanentConnectorError(
            NAME, f"permission denied: the API key may not do this (HTTP {status}, {request})"
        )
    if isinstance(exc, stripe.IdempotencyError):
        return PermanentConnectorError(
            NAME,
            f"idempotency key reused for a different request: {_short(exc.user_message)} "
            f"({request})",
        )
    if isinstance(exc, stripe.APIConnectionError):
        # Only the kind of failure ("ReadTimeout", "ConnectionError"): the library's detail
        # quotes the request URL, query string and all.
        _, _, network = (exc.user_message or "").partition("(Network error:")
        kind = network.strip().split(":", 1)[0].strip() or type(exc).__name__
        return TransientConnectorError(NAME, f"cannot reach Stripe ({_short(kind, 60)})")
    if isinstance(exc, stripe.InvalidRequestError | stripe.CardError):
        param = f" [param: {exc.param}]" if exc.param else ""
        code = f" [code: {exc.code}]" if exc.code else ""
        return PermanentConnectorError(
            NAME,
            f"request refused (HTTP {status}): {_short(exc.user_message)}{param}{code} ({request})",
        )
    if status is None or status >= 500 or status == 409:
        return TransientConnectorError(NAME, f"Stripe unavailable (HTTP {status}, {request})")
    return PermanentConnectorError(
        NAME, f"unexpected response (HTTP {status}): {_short(exc.user_message)} ({request})"
    )


@contextmanager
def _stripe_errors() -> Iterator[None]:
    try:
        yield
    except stripe.StripeError as exc:
        error = _classified(exc)
        if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
            # Stripe's own text echoes part of the key: keep it out of the cause chain too.
            raise error from None
        raise error from exc


# --- the provider -------------------------------------------------------------------------


def _step_key(idempotency_key: str, step: str) -> str:
    key = f"{idempotency_key}/{step}"
    if len(key) <= _MAX_IDEMPOTENCY_KEY:
        return key
    return f"aios-{hashlib.sha256(idempotency_key.encode()).hexdigest()}/{step}"


def _days_until_due(invoice: ProviderInvoice) -> int:
    return max(1, math.ceil((invoice.due_at - invoice.issued_at) / timedelta(days=1)))


class StripeProvider:
    """Makes invoices payable on Stripe (``PaymentProvider``); see the module docstring."""

    name = NAME
    operations = OPERATIONS

    def __init__(
        self,
        api_key: SecretStr,
        *,
        api_base: str | None = None,
        timeout_seconds: float = 30.0,
    ) -> None:
        self._client = stripe.StripeClient(
            api_key.get_secret_value(),
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout_seconds),
        )

    # -- PaymentProvider --------------------------------------------------------------------

    def create_invoice(self, invoice: ProviderInvoice, *, idempotency_key: str) -> ProviderReceipt:
        lines_total = line_items_total(invoice.line_items)
        if lines_total != invoice.total_minor:
            raise InvalidInput(
                f"total_minor: {invoice.total_minor} is not the sum of the line items "
                f"({lines_total}) for invoice {invoice.number}"
            )
        currency = invoice.currency.lower()
        customer_id = self._customer_for(invoice, idempotency_key)
        with _stripe_errors():
            created = self._client.v1.invoices.create(
                params={
                    "customer": customer_id,
                    "collection_method": "send_invoice",
                    "days_until_due": _days_until_due(invoice),
                    "currency": currency,
                    "auto_advance": False,
                    "pending_invoice_items_behavior": "exclude",
                    "custom_fields": [{"name": _CUSTOM_FIELD_NAME, "value": invoice.number}],
                    "metadata": {
                        "aios_invoice_id": invoice.invoice_id,
                        "aios_invoice_number": invoice.number,
                        "aios_client_key": invoice.client_key,
                    },
                },
                options={"idempotency_key": _step_key(idempotency_key, "invoice")},
            )
        draft = _validated(_Invoice, "invoice", created)
        for n, line in enumerate(invoice.line_items, start=1):
            with _stripe_errors():
                made = self._client.v1.invoice_items.create(
                    params={
                        "customer": customer_id,
                        "invoice": draft.id,
                        "currency": currency,
                        "description": line.description,
                        "quantity": line.quantity,
                        "unit_amount_decimal": Decimal(line.unit_price_minor),
                        "metadata": {"aios_invoice_id": invoice.invoice_id, "aios_line": str(n)},
                    },
                    options={"idempotency_key": _step_key(idempotency_key, f"item/{n}")},
                )
            item = _validated(_InvoiceItem, "invoiceitem", made)
            if item.invoice != draft.id or item.amount != line.amount_minor:
                raise PermanentConnectorError(
                    NAME,
                    f"invoice item {item.id} is {item.amount} on {item.invoice}, "
                    f"expected {line.amount_minor} on {draft.id}",
                )
        with _stripe_errors():
            finalized_obj = self._client.v1.invoices.finalize_invoice(
                draft.id, options={"idempotency_key": _step_key(idempotency_key, "finalize")}
            )
        final = _validated(_Invoice, "invoice", finalized_obj)
        if final.currency != currency or final.total != invoice.total_minor:
            raise PermanentConnectorError(
                NAME,
                f"invoice {final.id} came out as {final.total} {final.currency}, "
                f"expected {invoice.total_minor} {currency} for {invoice.number}",
            )
        if final.status not in ("open", "paid"):
            raise PermanentConnectorError(
                NAME, f"invoice {final.id} is {final.status} after finalizing, expected open"
            )
        if final.hosted_invoice_url is None:
            raise PermanentConnectorError(
                NAME, "schema drift: invoice.hosted_invoice_url: missing after finalizing"
            )
        log.info(
            "stripe invoice %s finalized for %s",
            final.id,
            invoice.number,
            extra={"operation": "stripe.create_invoice", "idempotency_key": idempotency_key},
        )
        due = invoice.due_at.strftime("%d %B %Y")
        return ProviderReceipt(
            provider=NAME,
            reference=final.id,
            status="paid" if final.status == "paid" else "open",
            hosted_url=final.hosted_invoice_url,
            payment_instructions=(
                f"Please pay invoice {invoice.number} by {due} online at "
                f"{final.hosted_invoice_url}\n(card or bank transfer, as the page offers)."
            ),
        )

    def void_invoice(self, reference: str, *, idempotency_key: str) -> ProviderReceipt:
        current = self._retrieve(reference)
        if current.status == "void":
            return self._void_receipt(current)
        if current.status == "paid":
            raise PermanentConnectorError(
                NAME,
                f"invoice {current.id} is paid and a paid invoice cannot be voided; "
                "issue a credit note instead",
            )
        if current.status == "draft":
            with _stripe_errors():
                deleted = self._client.v1.invoices.delete(current.id)
            _validated(_DeletedInvoice, "invoice", deleted)
            log.info(
                "stripe draft invoice %s deleted",
                current.id,
                extra={"operation": "stripe.void_invoice", "idempotency_key": idempotency_key},
            )
            return self._void_receipt(current)
        with _stripe_errors():
            voided_obj = self._client.v1.invoices.void_invoice(
                current.id, options={"idempotency_key": _step_key(idempotency_key, "void")}
            )
        voided = _validated(_Invoice, "invoice", voided_obj)
        if voided.status != "void":
            raise PermanentConnectorError(
                NAME, f"invoice {voided.id} is {voided.status} after voiding, expected void"
            )
        log.info(
            "stripe invoice %s voided",
            voided.id,
            extra={"operation": "stripe.void_invoice", "idempotency_key": idempotency_key},
        )
        return self._void_receipt(voided)

    def mark_paid(
        self, reference: str, amount_minor: int, *, idempotency_key: str
    ) -> ProviderReceipt:
        current = self._retrieve(reference)
        if current.status == "paid":
            return self._paid_receipt(current)
        if current.status != "open":
            raise PermanentConnectorError(
                NAME, f"invoice {current.id} is {current.status}; only an open invoice can be paid"
            )
        if amount_minor != current.amount_remaining:
            raise InvalidInput(
                f"amount_minor: {amount_minor} does not equal the amount_remaining "
                f"{current.amount_remaining} of Stripe invoice {current.id}"
            )
        with _stripe_errors():
            paid_obj = self._client.v1.invoices.pay(
                current.id,
                params={"paid_out_of_band": True},
                options={"idempotency_key": _step_key(idempotency_key, "pay")},
            )
        paid = _validated(_Invoice, "invoice", paid_obj)
        if paid.status != "paid":
            raise PermanentConnectorError(
                NAME, f"invoice {paid.id} is {paid.status} after paying, expected paid"
            )
        log.info(
            "stripe invoice %s marked paid out of band",
            paid.id,
            extra={"operation": "stripe.mark_paid", "idempotency_key": idempotency_key},
        )
        return self._paid_receipt(paid)

    # -- steps --------------------------------------------------------------------------------

    def _customer_for(self, invoice: ProviderInvoice, idempotency_key: str) -> str:
        with _stripe_errors():
            found = self._client.v1.customers.list(
                params={"email": invoice.client_email, "limit": _CUSTOMER_PAGE}
            )
        customers = _validated(_CustomerList, "customer_list", found).data
        for customer in customers:
            if customer.metadata.get("aios_client_key") == invoice.client_key:
                return customer.id
        # Else the first one not claimed by another client (two clients may share an address).
        for customer in customers:
            if "aios_client_key" not in customer.metadata:
                return customer.id
        with _stripe_errors():
            created = self._client.v1.customers.create(
                params={
                    "name": invoice.client_name,
                    "email": invoice.client_email,
                    "metadata": {"aios_client_key": invoice.client_key},
                },
                options={"idempotency_key": _step_key(idempotency_key, "customer")},
            )
        return _validated(_Customer, "customer", created).id

    def _retrieve(self, reference: str) -> _Invoice:
        if not reference.startswith("in_"):
            raise InvalidInput(f"reference: {reference!r} is not a Stripe invoice id (in_...)")
        with _stripe_errors():
            found = self._client.v1.invoices.retrieve(reference)
        return _validated(_Invoice, "invoice", found)

    @staticmethod
    def _our_number(invoice: _Invoice) -> str:
        return invoice.metadata.get("aios_invoice_number", invoice.id)

    def _void_receipt(self, invoice: _Invoice) -> ProviderReceipt:
        return ProviderReceipt(
            provider=NAME,
            reference=invoice.id,
            status="void",
            hosted_url=invoice.hosted_invoice_url,
            payment_instructions=f"Invoice {self._our_number(invoice)} is void; do not pay it.",
        )

    def _paid_receipt(self, invoice: _Invoice) -> ProviderReceipt:
        return ProviderReceipt(
            provider=NAME,
            reference=invoice.id,
            status="paid",
            hosted_url=invoice.hosted_invoice_url,
            payment_instructions=f"Invoice {self._our_number(invoice)} is paid. Thank you.",
        )
