"""HubSpot CRM: mirrors AiOs clients (as contacts) and deals into HubSpot over its CRM v3 API.

The kernel stays the CRM of record; HubSpot gets a copy the operator can work with. Plain HTTP
through ``httpx`` (sync client, a private app access token sent as ``Authorization: Bearer``),
replies validated with pydantic through ``parse_reply``.

Operations
==========

==================  ======  ==================  =============================================
operation           effect  compensation        HubSpot requests
==================  ======  ==================  =============================================
upsert_contact      yes     none: irreversible  ``POST /crm/v3/objects/contacts/batch/upsert``
create_deal         yes     archive_deal        ``POST /crm/v3/objects/deals/search``, then
                                                ``POST /crm/v3/objects/deals`` (associated)
update_deal_stage   yes     update_deal_stage   ``GET /crm/v3/objects/deals/{id}``, then
                                                ``PATCH`` it if the stage differs
archive_deal        yes     (undoes create)     ``DELETE /crm/v3/objects/deals/{id}``
get_deal            no                          ``GET /crm/v3/objects/deals/{id}``
find_deal           no                          ``POST /crm/v3/objects/deals/search``
==================  ======  ==================  =============================================

Why these compensations:

- ``upsert_contact`` declares none. An upsert that *created* the contact could be archived, but
  one that *updated* an existing contact overwrote the operator's values, and nothing restores
  them exactly (archiving would destroy a contact we did not create). The operation cannot know
  in advance which case it will be, so it is irreversible: the runtime runs it only with a
  recorded human approval of the same run (see ``aios.connectors.runtime``).
- ``create_deal`` is undone by ``archive_deal`` (HubSpot keeps archived deals restorable in its
  UI for a while; the API treats them as gone).
- ``update_deal_stage`` is undone by itself, back to ``StageChange.previous_stage``. On a retry
  after a lost reply the deal already has the new stage and the reported previous stage is the
  new one: take the stage to restore from the kernel, which knows what it was.
- ``archive_deal`` is itself the undo of ``create_deal`` (``undoes``); the API has no restore,
  so nothing undoes it in turn.

Every method takes ``dry_run``: input is validated, reads that help to say what would happen
are made (the search, the current deal), and nothing is written; ``planned`` on the result is
the write that would have been sent.

Idempotency
===========

HubSpot has no idempotency keys, so each effect is made safe to repeat another way:

- Contacts are upserted by email (batch upsert, ``idProperty: "email"``): a repeat updates the
  same contact with the same values. The batch input's ``objectWriteTraceId`` carries
  ``aios_key_for(idempotency_key)`` to trace the write.
- Deals carry the custom deal property ``aios_key`` = ``aios_key_for(idempotency_key)`` (a
  SHA-256 of the caller's key). ``create_deal`` first searches for a deal with that key and
  returns it if found, so a retry after a lost reply creates no second deal.
- A stage update reads the deal first and writes only if the stage differs; archiving is a
  DELETE, and a 404 on it means it is already done.

The remaining window: HubSpot's search index lags writes by seconds (up to about half a
minute), so a retry that follows a lost reply very quickly may not find the deal yet and
create a second one. The project's outbox in front of connectors closes it (one step, one
effect, recorded before it is retried); marking ``aios_key`` "require unique values" in
HubSpot closes it on HubSpot's side too: the second create then fails with 409, which this
connector reports as transient, and the retry finds the first deal.

Setup in HubSpot: a private app with scopes ``crm.objects.contacts.read``/``.write``,
``crm.objects.deals.read``/``.write`` and ``crm.schemas.deals.read``; a deal property
``aios_key`` (single-line text, ideally unique values). ``check()`` verifies both. A deal's
amount is sent in major units with ``deal_currency_code``: the account must have that currency
(its company currency, or multi-currency on); otherwise HubSpot refuses the create (400).

Errors
======

All through ``classify_http`` and ``classify_transport`` (``aios.connectors.contract``); the
messages carry HubSpot's ``category``, ``message`` and ``correlationId``, never the token.

==================================  =================================================
429                                 ``RateLimited``; ``retry_after`` from Retry-After, else
                                    from ``X-HubSpot-RateLimit-Interval-Milliseconds``
                                    (not for the ``DAILY`` policy: that resets at midnight)
401, 403                            ``ConnectorAuthError`` (expired, revoked, missing scope)
404                                 ``get_deal``: ``None``; ``update_deal_stage``:
                                    ``ConnectorInvalidRequest``; ``archive_deal``: done
409 on ``create_deal``              ``TransientConnectorError``: a deal with this unique
                                    ``aios_key`` exists but search does not show it yet
409 elsewhere, other 4xx            ``ConnectorInvalidRequest`` with HubSpot's message
5xx, 408                            ``TransientConnectorError``
timeouts, refused connections       ``TransientConnectorError`` (``classify_transport``)
a reply without a field we rely on  ``SchemaDrift`` naming it (``properties.dealstage``)
==================================  =================================================

No retry loops: retries belong to Temporal's retry policy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from types import MappingProxyType, TracebackType
from typing import Any, Literal

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    JsonValue,
    SecretStr,
    field_validator,
    model_validator,
)

from aios.connectors.contract import (
    CheckResult,
    Operation,
    classify_http,
    classify_transport,
    parse_reply,
    retry_after_seconds,
)
from aios.errors import (
    ConnectorError,
    ConnectorInvalidRequest,
    InvalidInput,
    SchemaDrift,
    TransientConnectorError,
)
from aios.kernel.money import MAX_AMOUNT_MINOR, currency_exponent, normalize_currency

__all__ = [
    "AIOS_KEY_PROPERTY",
    "CheckResult",
    "ContactInput",
    "ContactUpsert",
    "DealArchived",
    "DealCreated",
    "DealInput",
    "DealStage",
    "HubSpotConfig",
    "HubSpotConnector",
    "HubSpotContact",
    "HubSpotDeal",
    "PlannedWrite",
    "StageChange",
    "aios_key_for",
]

NAME = "hubspot"
AIOS_KEY_PROPERTY = "aios_key"
DealStage = Literal["open", "won", "lost"]

_CONTACTS = "/crm/v3/objects/contacts"
_DEALS = "/crm/v3/objects/deals"
_DEAL_PROPERTIES = ("dealname", "amount", "dealstage", "pipeline", AIOS_KEY_PROPERTY)
_DEAL_TO_CONTACT = 3  # HubSpot-defined association type id, deal -> contact
_SEARCH_LIMIT = 10
_ID = re.compile(r"^\d{1,20}$")
_MESSAGE_LIMIT = 120
_INVALID_PROPERTIES = "Property values were not valid: "

log = logging.getLogger(__name__)


def aios_key_for(idempotency_key: str) -> str:
    """The value of the ``aios_key`` deal property for an idempotency key (SHA-256, hex)."""
    return hashlib.sha256(_checked_key(idempotency_key).encode()).hexdigest()


# --- configuration and inputs -----------------------------------------------------------------


class HubSpotConfig(BaseModel):
    """Where and how to reach one HubSpot account."""

    model_config = ConfigDict(frozen=True)

    token: SecretStr  # private app access token
    base_url: str = "https://api.hubapi.com"
    timeout_seconds: float = Field(default=15, gt=0, le=300)
    pipeline: str = Field(default="default", min_length=1)
    deal_stages: dict[str, str] = Field(
        default_factory=lambda: {
            "open": "appointmentscheduled",
            "won": "closedwon",
            "lost": "closedlost",
        }
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a local test server)")
        return value.rstrip("/")

    @field_validator("deal_stages")
    @classmethod
    def _our_stages(cls, value: dict[str, str]) -> dict[str, str]:
        wanted = {"open", "won", "lost"}
        if set(value) != wanted:
            missing = ", ".join(sorted(wanted - set(value))) or "none"
            extra = ", ".join(sorted(set(value) - wanted)) or "none"
            raise ValueError(f"needs exactly open, won, lost (missing: {missing}; extra: {extra})")
        if any(not stage.strip() for stage in value.values()):
            raise ValueError("a HubSpot stage id is empty")
        if len(set(value.values())) != len(value):
            raise ValueError("two of our stages map to the same HubSpot stage")
        return value


class ContactInput(BaseModel):
    """A client's contact as AiOs knows it; the email is the key HubSpot upserts by."""

    model_config = ConfigDict(frozen=True, str_strip_whitespace=True)

    email: EmailStr
    firstname: str | None = Field(default=None, max_length=200)
    lastname: str | None = Field(default=None, max_length=200)
    company: str | None = Field(default=None, max_length=200)

    def properties(self) -> dict[str, str]:
        """The properties to write; empty ones are left out, never cleared in HubSpot."""
        values = {
            "email": self.email,
            "firstname": self.firstname,
            "lastname": self.lastname,
            "company": self.company,
        }
        return {name: value for name, value in values.items() if value}


class DealInput(BaseModel):
    """A deal to mirror; ``contact_id`` (from ``upsert_contact``) associates it on create."""

    model_config = ConfigDict(frozen=True, str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=500)
    stage: DealStage = "open"
    amount_minor: int | None = Field(default=None, ge=0, le=MAX_AMOUNT_MINOR)
    currency: str | None = None
    contact_id: str | None = Field(default=None, pattern=_ID.pattern)

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalize_currency(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _amount_has_currency(self) -> DealInput:
        if self.amount_minor is not None and self.currency is None:
            raise ValueError("currency is required with amount_minor")
        return self

    def amount(self) -> str | None:
        """The amount as HubSpot stores it: a decimal string in major units."""
        if self.amount_minor is None or self.currency is None:
            return None
        exponent = currency_exponent(self.currency)
        return f"{Decimal(self.amount_minor).scaleb(-exponent):.{exponent}f}"


# --- what the connector returns ---------------------------------------------------------------


class HubSpotContact(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    email: str
    firstname: str | None = None
    lastname: str | None = None
    company: str | None = None


class HubSpotDeal(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    dealname: str
    amount: Decimal | None = None  # major units, in the deal's currency
    dealstage: str  # HubSpot's stage id
    pipeline: str
    aios_key: str | None = None


class PlannedWrite(BaseModel):
    """A write as it would be sent (dry run)."""

    model_config = ConfigDict(frozen=True)

    method: Literal["POST", "PATCH", "DELETE"]
    path: str
    body: JsonValue = None


class ContactUpsert(BaseModel):
    model_config = ConfigDict(frozen=True)

    contact: HubSpotContact | None  # None on a dry run
    created: bool | None  # HubSpot's ``new``: True created, False updated; None on a dry run
    dry_run: bool = False
    planned: PlannedWrite | None = None


class DealCreated(BaseModel):
    model_config = ConfigDict(frozen=True)

    deal: HubSpotDeal | None  # None on a dry run that found no deal
    created: bool  # False: found by its aios_key (an earlier attempt made it), or a dry run
    dry_run: bool = False
    planned: PlannedWrite | None = None


class StageChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    deal: HubSpotDeal  # after the change (on a dry run: as it is)
    previous_dealstage: str  # HubSpot's stage id before the call
    previous_stage: DealStage | None  # ours, None when HubSpot's stage is none we map
    changed: bool
    dry_run: bool = False
    planned: PlannedWrite | None = None


class DealArchived(BaseModel):
    model_config = ConfigDict(frozen=True)

    deal_id: str
    archived: bool  # False: already archived or never there (or a dry run)
    dry_run: bool = False
    planned: PlannedWrite | None = None


# --- the reply fields we rely on --------------------------------------------------------------


class _Fields(BaseModel):
    # Strict: HubSpot sends property values as strings; a number where a string was is drift.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, populate_by_name=True)


class _ContactProperties(_Fields):
    email: str
    firstname: str | None = None
    lastname: str | None = None
    company: str | None = None


class _UpsertedContact(_Fields):
    id: str
    properties: _ContactProperties
    new: bool


class _BatchUpsert(_Fields):
    status: str
    results: list[_UpsertedContact]


class _DealProperties(_Fields):
    dealname: str
    dealstage: str
    pipeline: str
    amount: str | None = None
    aios_key: str | None = None


class _Deal(_Fields):
    id: str
    properties: _DealProperties
    created_at: str | None = Field(default=None, alias="createdAt")


class _DealSearch(_Fields):
    total: int
    results: list[_Deal]


class _AnyObject(_Fields):
    id: str
    properties: dict[str, str | None]


class _ObjectPage(_Fields):
    results: list[_AnyObject]


class _Property(_Fields):
    name: str
    type: str


# --- helpers ----------------------------------------------------------------------------------


def _checked_key(idempotency_key: str) -> str:
    key = idempotency_key.strip() if isinstance(idempotency_key, str) else ""
    if not key:
        raise InvalidInput("idempotency_key: must be a non-empty string")
    return key


def _checked_id(field: str, value: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInput(f"{field}: {value!r} is not a HubSpot record id (digits only)")
    return value


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _readable(message: str) -> str:
    """HubSpot's message, with a property validation list turned into ``name: problem``."""
    if message.startswith(_INVALID_PROPERTIES):
        try:
            items = json.loads(message[len(_INVALID_PROPERTIES) :])
        except ValueError:
            items = None
        if isinstance(items, list) and items and all(isinstance(i, dict) for i in items):
            problems = []
            for item in items:
                said = str(item.get("message") or item.get("error") or "invalid")
                problems.append(f"{item.get('name', '?')}: {said.split(': [')[0]}")
            message = "invalid property values: " + "; ".join(problems)
    flat = " ".join(message.split())
    return flat if len(flat) <= _MESSAGE_LIMIT else flat[: _MESSAGE_LIMIT - 3] + "..."


def _deal_from(reply: _Deal, operation: str) -> HubSpotDeal:
    props = reply.properties
    amount: Decimal | None = None
    if props.amount not in (None, ""):
        try:
            amount = Decimal(str(props.amount))
        except InvalidOperation:
            raise SchemaDrift(
                NAME,
                f"schema drift in the {operation} reply: properties.amount: "
                f"{props.amount!r} is not a number",
            ) from None
    return HubSpotDeal(
        id=reply.id,
        dealname=props.dealname,
        amount=amount,
        dealstage=props.dealstage,
        pipeline=props.pipeline,
        aios_key=props.aios_key,
    )


# --- the connector ----------------------------------------------------------------------------


class HubSpotConnector:
    """Mirrors clients and deals into one HubSpot account; see the module docstring."""

    name = NAME
    operations: Mapping[str, Operation] = MappingProxyType(
        {
            op.name: op
            for op in (
                Operation("upsert_contact", effect=True, compensation=None),
                Operation("create_deal", effect=True, compensation="archive_deal"),
                Operation("update_deal_stage", effect=True, compensation="update_deal_stage"),
                Operation("archive_deal", effect=True, undoes="create_deal"),
                Operation("get_deal", effect=False),
                Operation("find_deal", effect=False),
            )
        }
    )

    def __init__(
        self, config: HubSpotConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._config = config
        self._token = config.token.get_secret_value()
        self._stage_ids: dict[str, str] = dict(config.deal_stages)
        self._stage_names: dict[str, DealStage] = {
            hubspot: ours for ours, hubspot in self._typed_stages()
        }
        self._client = httpx.Client(
            base_url=config.base_url,
            timeout=config.timeout_seconds,
            headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
            transport=transport,
            follow_redirects=False,
        )

    def _typed_stages(self) -> list[tuple[DealStage, str]]:
        ours: tuple[DealStage, ...] = ("open", "won", "lost")
        return [(stage, self._stage_ids[stage]) for stage in ours]

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HubSpotConnector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- effects -------------------------------------------------------------------------------

    def upsert_contact(
        self, contact: ContactInput, *, idempotency_key: str, dry_run: bool = False
    ) -> ContactUpsert:
        """Create the contact with this email, or update the one HubSpot has."""
        trace = aios_key_for(idempotency_key)
        path = f"{_CONTACTS}/batch/upsert"
        body: dict[str, Any] = {
            "inputs": [
                {
                    "idProperty": "email",
                    "id": contact.email,
                    "objectWriteTraceId": trace,
                    "properties": contact.properties(),
                }
            ]
        }
        planned = PlannedWrite(method="POST", path=path, body=body)
        if dry_run:
            return ContactUpsert(contact=None, created=None, dry_run=True, planned=planned)
        response = self._send("upsert_contact", "POST", path, json=body)
        data = _json_body(response)
        if response.status_code == 207 or (isinstance(data, dict) and data.get("errors")):
            raise self._batch_error("upsert_contact", response.status_code, data)
        reply = parse_reply(_BatchUpsert, data, connector=NAME, operation="upsert_contact")
        if len(reply.results) != 1:
            raise SchemaDrift(
                NAME,
                f"schema drift in the upsert_contact reply: results: expected 1 contact, "
                f"got {len(reply.results)}",
            )
        got = reply.results[0]
        result = HubSpotContact(id=got.id, **got.properties.model_dump())
        log.info(
            "hubspot contact %s %s",
            result.id,
            "created" if got.new else "updated",
            extra={"operation": "hubspot.upsert_contact", "idempotency_key": idempotency_key},
        )
        return ContactUpsert(contact=result, created=got.new)

    def create_deal(
        self, deal: DealInput, *, idempotency_key: str, dry_run: bool = False
    ) -> DealCreated:
        """The deal for this idempotency key: found by its ``aios_key``, else created."""
        key = aios_key_for(idempotency_key)
        existing = self._search_deal(key, "create_deal")
        if existing is not None:
            log.info(
                "hubspot deal %s already exists for this key",
                existing.id,
                extra={"operation": "hubspot.create_deal", "idempotency_key": idempotency_key},
            )
            return DealCreated(deal=existing, created=False, dry_run=dry_run)
        properties: dict[str, Any] = {
            "dealname": deal.name,
            "dealstage": self._stage_ids[deal.stage],
            "pipeline": self._config.pipeline,
            AIOS_KEY_PROPERTY: key,
        }
        amount = deal.amount()
        if amount is not None:
            properties["amount"] = amount
            properties["deal_currency_code"] = deal.currency
        body: dict[str, Any] = {"properties": properties}
        if deal.contact_id is not None:
            body["associations"] = [
                {
                    "to": {"id": deal.contact_id},
                    "types": [
                        {
                            "associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": _DEAL_TO_CONTACT,
                        }
                    ],
                }
            ]
        planned = PlannedWrite(method="POST", path=_DEALS, body=body)
        if dry_run:
            return DealCreated(deal=None, created=False, dry_run=True, planned=planned)
        response = self._send("create_deal", "POST", _DEALS, json=body, conflict_is_transient=True)
        reply = parse_reply(_Deal, _json_body(response), connector=NAME, operation="create_deal")
        created = _deal_from(reply, "create_deal")
        log.info(
            "hubspot deal %s created",
            created.id,
            extra={"operation": "hubspot.create_deal", "idempotency_key": idempotency_key},
        )
        return DealCreated(deal=created, created=True)

    def update_deal_stage(
        self, deal_id: str, stage: DealStage, *, idempotency_key: str, dry_run: bool = False
    ) -> StageChange:
        """Move the deal to ``stage`` (ours: open, won, lost); no write if it is there."""
        _checked_key(idempotency_key)
        _checked_id("deal_id", deal_id)
        if stage not in self._stage_ids:
            raise InvalidInput(f"stage: {stage!r} is not one of open, won, lost")
        target = self._stage_ids[stage]
        current = self._get_deal(deal_id, "update_deal_stage")
        if current is None:
            raise ConnectorInvalidRequest(
                NAME, f"update_deal_stage: deal {deal_id} does not exist in HubSpot (HTTP 404)"
            )
        previous = current.dealstage
        unchanged = StageChange(
            deal=current,
            previous_dealstage=previous,
            previous_stage=self._stage_names.get(previous),
            changed=False,
            dry_run=dry_run,
        )
        if previous == target:
            return unchanged
        path = f"{_DEALS}/{deal_id}"
        body: dict[str, Any] = {"properties": {"dealstage": target}}
        planned = PlannedWrite(method="PATCH", path=path, body=body)
        if dry_run:
            return unchanged.model_copy(update={"planned": planned})
        response = self._send("update_deal_stage", "PATCH", path, json=body)
        reply = parse_reply(
            _Deal, _json_body(response), connector=NAME, operation="update_deal_stage"
        )
        updated = _deal_from(reply, "update_deal_stage")
        log.info(
            "hubspot deal %s moved from %s to %s",
            deal_id,
            previous,
            updated.dealstage,
            extra={"operation": "hubspot.update_deal_stage", "idempotency_key": idempotency_key},
        )
        return StageChange(
            deal=updated,
            previous_dealstage=previous,
            previous_stage=self._stage_names.get(previous),
            changed=True,
        )

    def archive_deal(
        self, deal_id: str, *, idempotency_key: str, dry_run: bool = False
    ) -> DealArchived:
        """Archive the deal (HubSpot's delete); one already gone counts as done."""
        _checked_key(idempotency_key)
        _checked_id("deal_id", deal_id)
        path = f"{_DEALS}/{deal_id}"
        if dry_run:
            there = self._get_deal(deal_id, "archive_deal") is not None
            planned = PlannedWrite(method="DELETE", path=path) if there else None
            return DealArchived(deal_id=deal_id, archived=False, dry_run=True, planned=planned)
        response = self._send_or_missing("archive_deal", "DELETE", path)
        archived = response is not None
        log.info(
            "hubspot deal %s %s",
            deal_id,
            "archived" if archived else "was already archived or never existed",
            extra={"operation": "hubspot.archive_deal", "idempotency_key": idempotency_key},
        )
        return DealArchived(deal_id=deal_id, archived=archived)

    # -- reads ---------------------------------------------------------------------------------

    def get_deal(self, deal_id: str, *, dry_run: bool = False) -> HubSpotDeal | None:
        """The deal, or None if HubSpot has no (unarchived) deal with this id."""
        _checked_id("deal_id", deal_id)
        return self._get_deal(deal_id, "get_deal")

    def find_deal(self, *, idempotency_key: str, dry_run: bool = False) -> HubSpotDeal | None:
        """The deal ``create_deal`` made for this idempotency key, if search shows it."""
        return self._search_deal(aios_key_for(idempotency_key), "find_deal")

    def check(self) -> CheckResult:
        """Read-only probe: the token works, replies have our shape, ``aios_key`` exists."""
        try:
            try:
                page = self._client.get(_CONTACTS, params={"limit": 1})
                self._raise_for("check", page)
                parse_reply(_ObjectPage, _json_body(page), connector=NAME, operation="check")
                prop = self._client.get(f"/crm/v3/properties/deals/{AIOS_KEY_PROPERTY}")
            except httpx.TransportError as exc:
                error = classify_transport(NAME, "check", exc)
                return CheckResult(ok=False, detail=f"unreachable: {error}")
            if prop.status_code == 404:
                return CheckResult(
                    ok=False,
                    detail=f"setup: the deal property {AIOS_KEY_PROPERTY} does not exist; "
                    "create it (single-line text, unique values) before creating deals",
                )
            self._raise_for("check", prop)
            found = parse_reply(_Property, _json_body(prop), connector=NAME, operation="check")
            if found.type != "string":
                return CheckResult(
                    ok=False,
                    detail=f"setup: the deal property {AIOS_KEY_PROPERTY} has type "
                    f"{found.type!r}, expected 'string'",
                )
        except ConnectorError as exc:
            reason = {"auth": "auth", "schema_drift": "drift", "rate_limited": "rate limited"}
            return CheckResult(ok=False, detail=f"{reason.get(exc.kind, exc.kind)}: {exc}")
        return CheckResult(
            ok=True,
            detail=f"HubSpot reachable at {self._config.base_url}; token accepted; "
            f"deal property {AIOS_KEY_PROPERTY} present",
        )

    # -- internals -----------------------------------------------------------------------------

    def _get_deal(self, deal_id: str, operation: str) -> HubSpotDeal | None:
        response = self._send_or_missing(
            operation,
            "GET",
            f"{_DEALS}/{deal_id}",
            params={"properties": ",".join(_DEAL_PROPERTIES)},
        )
        if response is None:
            return None
        reply = parse_reply(_Deal, _json_body(response), connector=NAME, operation=operation)
        return _deal_from(reply, operation)

    def _search_deal(self, key: str, operation: str) -> HubSpotDeal | None:
        body = {
            "filterGroups": [
                {"filters": [{"propertyName": AIOS_KEY_PROPERTY, "operator": "EQ", "value": key}]}
            ],
            "properties": list(_DEAL_PROPERTIES),
            "limit": _SEARCH_LIMIT,
        }
        response = self._send(operation, "POST", f"{_DEALS}/search", json=body)
        reply = parse_reply(_DealSearch, _json_body(response), connector=NAME, operation=operation)
        matches = [d for d in reply.results if d.properties.aios_key in (None, key)]
        if not matches:
            return None
        if len(matches) > 1 or reply.total > 1:
            log.warning(
                "hubspot holds %d deals with aios_key %s; using the oldest",
                max(reply.total, len(matches)),
                key,
                extra={"operation": f"hubspot.{operation}"},
            )
        oldest = min(matches, key=lambda d: (d.created_at or "", len(d.id), d.id))
        return _deal_from(oldest, operation)

    def _request(
        self,
        operation: str,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        body: Any,
    ) -> httpx.Response:
        try:
            return self._client.request(method, path, params=params, json=body)
        except httpx.TransportError as exc:
            raise classify_transport(NAME, operation, exc) from None

    def _send(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        conflict_is_transient: bool = False,
    ) -> httpx.Response:
        response = self._request(operation, method, path, params, json)
        self._raise_for(operation, response, conflict_is_transient=conflict_is_transient)
        return response

    def _send_or_missing(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response | None:
        """Like ``_send``, but a 404 is None (no such record, or archived)."""
        response = self._request(operation, method, path, params, None)
        if response.status_code == 404:
            return None
        self._raise_for(operation, response)
        return response

    def _raise_for(
        self, operation: str, response: httpx.Response, *, conflict_is_transient: bool = False
    ) -> None:
        """Nothing if the request succeeded, else the classified error."""
        status = response.status_code
        if response.is_success:
            return
        detail = self._detail(response)
        if status == 409 and conflict_is_transient:
            raise TransientConnectorError(
                NAME,
                f"{operation} got HTTP 409: {detail}; a deal with this {AIOS_KEY_PROPERTY} "
                "already exists but search does not show it yet (HubSpot's index lags); "
                "the retry finds it",
            )
        headers: dict[str, str] = dict(response.headers.items())
        if status == 429:
            headers = self._rate_limit_headers(response, headers)
        if status == 409:
            detail += "; HubSpot already holds a record with this unique value"
        raise classify_http(NAME, operation, status, headers=headers, detail=detail)

    def _rate_limit_headers(
        self, response: httpx.Response, headers: dict[str, str]
    ) -> dict[str, str]:
        """Headers with a Retry-After: HubSpot's own, else the rolling window's length."""
        if retry_after_seconds(headers) is not None:
            return headers
        body = _json_body(response)
        policy = body.get("policyName") if isinstance(body, dict) else None
        interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        if policy == "DAILY" or interval is None:
            return headers
        try:
            seconds = max(float(interval) / 1000, 0.0)
        except ValueError:
            return headers
        return {**headers, "Retry-After": f"{seconds:g}"}

    def _detail(self, response: httpx.Response) -> str:
        """HubSpot's category, message and correlationId; never the token."""
        body = _json_body(response)
        category = message = correlation = policy = None
        if isinstance(body, dict):
            category = _text(body.get("category")) or _text(body.get("errorType"))
            message = _text(body.get("message"))
            correlation = _text(body.get("correlationId"))
            policy = _text(body.get("policyName"))
            errors = body.get("errors")
            if message is None and isinstance(errors, list) and errors:
                first = errors[0]
                message = _text(first.get("message")) if isinstance(first, dict) else None
        correlation = correlation or response.headers.get("X-HubSpot-Correlation-Id")
        head = " ".join(p for p in (category, f"policy {policy}" if policy else None) if p)
        if message is not None:
            text = f"{head}: {_readable(message)}" if head else _readable(message)
        elif head:
            text = head
        else:
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            text = f"no HubSpot error body ({kind})"
        if policy == "DAILY":
            text += "; the daily limit resets at midnight in the account's time zone"
        if correlation:
            text += f" (correlationId {correlation})"
        return text.replace(self._token, "<redacted>") if self._token else text

    def _batch_error(self, operation: str, status: int, data: Any) -> ConnectorError:
        errors = data.get("errors") if isinstance(data, dict) else None
        first = errors[0] if isinstance(errors, list) and errors else {}
        first = first if isinstance(first, dict) else {}
        category = _text(first.get("category")) or "error"
        message = _readable(_text(first.get("message")) or "no message")
        detail = f"{category}: {message}".replace(self._token, "<redacted>")
        return ConnectorInvalidRequest(
            NAME, f"refused: {operation} got HTTP {status} with a batch error: {detail}"
        )
