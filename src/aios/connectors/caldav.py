"""CalDAV calendars: events written straight into the operator's calendar server.

The connector speaks CalDAV through the ``caldav`` library and builds every event with the
``icalendar`` library. Each call opens its own client, so one connector can serve many
activity threads at once.

Idempotency. An event's UID comes from the idempotency key of the step that creates it
(``uid_for(key)``: the first 32 hex digits of the key's SHA-256, then ``@aios``), and the event
lives at a resource named after that digest (``<calendar>/<digest>.ics``). ``create_event``
first looks the UID up: when the event is there it returns it and writes nothing, so a retry
or a replayed activity never makes a second event; the PUT itself carries ``If-None-Match: *``
and a create that loses a race reads back the winner's event. ``update_event`` and
``cancel_event`` are idempotent by content: they compare what the server holds with what is
asked and write only when something differs, so their keys are checked but not needed to
de-duplicate. Every write that changes an event raises its ``SEQUENCE`` by one (RFC 5545), so
attendees' clients take the newest version; the PUT sends the ETag it read, and a concurrent
change makes it fail as a transient error that a retry reads afresh.

========================  ======  ================  =============================================
operation                 effect  compensation      what it does
========================  ======  ================  =============================================
``create_event``          yes     ``cancel_event``  make the event (or re-confirm a cancelled one)
``update_event``          yes     ``update_event``  replace its fields (with the previous ones)
``cancel_event``          yes     ``create_event``  ``STATUS:CANCELLED``; the event stays, so
                                                    attendees see the cancellation
``get_event``             no                        the event's ref, or ``None``
========================  ======  ================  =============================================

Every effect takes ``dry_run``: it validates, connects, authenticates and finds the calendar
and the event, writes nothing, and returns the ref the real call would return (a missing
calendar that ``create_missing`` allows is not created either). ``check`` is the synthetic
probe: connect, authenticate, find the calendar; it never writes.

Errors, classified in ``_classified`` through ``classify_http`` / ``classify_transport``:
401/403 are ``ConnectorAuthError``; timeouts, refused connections, 5xx and a lost ETag race
are ``TransientConnectorError`` (429 is ``RateLimited``); other 4xx, an unknown UID and a
missing calendar are ``ConnectorInvalidRequest``; a stored event whose UID, SEQUENCE or STATUS
we cannot read is ``SchemaDrift``. The library's own rate-limit sleeping and RFC 6764 discovery
are off: retries belong to Temporal. No message carries the password.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, cast
from urllib.parse import unquote, urlsplit

import niquests.exceptions
from caldav.calendarobjectresource import Event as DavEvent
from caldav.collection import Calendar as DavCalendar
from caldav.collection import CalendarSet
from caldav.davclient import DAVClient
from caldav.davobject import DAVObject
from caldav.lib import error as dav_error
from caldav.lib.url import URL
from icalendar import Calendar as ICalendar
from icalendar import Component, vCalAddress, vText
from icalendar import Event as IEvent
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from aios.connectors.contract import (
    CheckResult,
    Operation,
    classify_http,
    classify_transport,
    parse_reply,
)
from aios.errors import (
    ConnectorError,
    ConnectorInvalidRequest,
    InvalidInput,
    PermanentConnectorError,
    SchemaDrift,
    TransientConnectorError,
)

__all__ = [
    "OPERATIONS",
    "CalDavConfig",
    "CalDavConnector",
    "CalendarEvent",
    "CheckResult",
    "EventRef",
    "uid_for",
]

NAME = "caldav"
Status = Literal["CONFIRMED", "CANCELLED"]

OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("create_event", effect=True, compensation="cancel_event"),
        Operation("update_event", effect=True, compensation="update_event"),
        Operation("cancel_event", effect=True, compensation="create_event"),
        Operation("get_event", effect=False),
    )
}

_PRODID = "-//AiOs//CalDAV connector//EN"
_KEY_PROPERTY = "X-AIOS-IDEMPOTENCY-KEY"
# The properties an update replaces; everything else on the stored event is kept.
_CONTENT_PROPERTIES = ("SUMMARY", "DTSTART", "DTEND", "DURATION", "DESCRIPTION", "LOCATION")
_PEOPLE_PROPERTIES = ("ORGANIZER", "ATTENDEE")
_STATUS_AT_START = re.compile(r"^\s*(\d{3})\b")


# --- models -------------------------------------------------------------------------------------


class CalDavConfig(BaseModel):
    """Where the calendar lives and how to log in."""

    model_config = ConfigDict(frozen=True)

    url: str = Field(description="the server's CalDAV URL, e.g. https://dav.example.com/")
    username: str | None = None
    password: SecretStr | None = None
    calendar: str = Field(min_length=1, description="display name or path of the calendar")
    create_missing: bool = False
    timeout_seconds: float = Field(default=20, gt=0)

    @field_validator("url")
    @classmethod
    def _plain_http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials; set username and password instead")
        return value.strip()

    @field_validator("calendar")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


_ADDRESS = re.compile(r"^[^@\s<>\"(),;:]+@[^@\s<>\"(),;:]+$")


def _address_shape(value: str) -> str:
    """A bare ``local@domain`` address. Calendars take any such address (an operator on
    ``operator@aios.localhost`` included), so no deliverability or reserved-name rules apply."""
    value = value.strip()
    if len(value) > 254 or not _ADDRESS.match(value):
        raise ValueError(f"{value[:80]!r} is not an address of the form name@domain")
    return value


Address = Annotated[str, AfterValidator(_address_shape)]


class CalendarEvent(BaseModel):
    """What an event should say. Times must carry a time zone; they are stored in UTC."""

    model_config = ConfigDict(frozen=True)

    summary: str = Field(min_length=1, max_length=500)
    start: AwareDatetime
    end: AwareDatetime
    description: str = Field(default="", max_length=20_000)
    location: str = Field(default="", max_length=500)
    organizer: Address | None = None
    attendees: list[Address] = Field(default_factory=list, max_length=200)

    @field_validator("summary")
    @classmethod
    def _summary_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if isinstance(start, datetime) and value <= start:
            raise ValueError(f"must be after start ({start.isoformat()})")
        return value


class EventRef(BaseModel):
    """Where an event is and which version of it the server holds."""

    model_config = ConfigDict(frozen=True)

    uid: str = Field(min_length=1)
    href: str = Field(min_length=1)
    sequence: int = Field(ge=0)
    status: Status


def uid_for(key: str) -> str:
    """The UID of the event the step with idempotency ``key`` creates (stable across retries)."""
    if not key or not key.strip():
        raise InvalidInput(f"{NAME}: the idempotency key must not be empty")
    return f"{_digest(key)}@aios"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


# --- the connector ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """The configured calendar, or (``calendar is None``) where it would be created."""

    calendar: DavCalendar | None
    url: URL


class CalDavConnector:
    """Creates, updates and cancels events in one CalDAV calendar (see the module docstring)."""

    name: ClassVar[str] = NAME
    operations: ClassVar[dict[str, Operation]] = OPERATIONS

    def __init__(self, config: CalDavConfig) -> None:
        self._config = config

    def __repr__(self) -> str:
        return f"CalDavConnector(url={self._config.url!r}, calendar={self._config.calendar!r})"

    # -- operations

    def create_event(
        self, key: str, event: CalendarEvent, *, uid: str | None = None, dry_run: bool = False
    ) -> EventRef:
        """Make the event for step ``key``; a repeat returns the event the first call made.

        ``uid`` defaults to ``uid_for(key)``; pass one to make the event the same one an
        emailed invitation already announced (so calendars merge the two).
        """
        operation = "create_event"
        if uid is None:
            uid = uid_for(key)
        else:
            _check_uid(uid)
        with self._client(operation) as client:
            target = self._target(client, create=not dry_run)
            found = self._find(target, uid)
            if found is not None:
                ref = self._ref(found, operation)
                if ref.status == "CONFIRMED":
                    return ref
                # Cancelled earlier (a compensation ran): confirm it again, as asked now.
                return self._rewrite(found, ref, operation, event=event, dry_run=dry_run)
            href = str(_collection(target.url).join(f"{_digest(key)}.ics"))
            ref = EventRef(uid=uid, href=href, sequence=0, status="CONFIRMED")
            if dry_run or target.calendar is None:
                return ref
            return self._put_new(client, target.calendar, key, ref, event, operation)

    def update_event(
        self, key: str, uid: str, event: CalendarEvent, *, dry_run: bool = False
    ) -> EventRef:
        """Give the event ``event``'s fields; a repeat (nothing differs) writes nothing."""
        operation = "update_event"
        uid_for(key)  # the key must be usable, even though content decides what to write
        with self._client(operation) as client:
            found, ref = self._existing(client, operation, uid)
            return self._rewrite(found, ref, operation, event=event, dry_run=dry_run)

    def cancel_event(self, key: str, uid: str, *, dry_run: bool = False) -> EventRef:
        """Mark the event cancelled (it stays, so attendees see it); a repeat writes nothing."""
        operation = "cancel_event"
        uid_for(key)
        with self._client(operation) as client:
            found, ref = self._existing(client, operation, uid)
            return self._rewrite(found, ref, operation, status="CANCELLED", dry_run=dry_run)

    def get_event(self, uid: str) -> EventRef | None:
        """The event with ``uid`` as the server holds it, or ``None``."""
        operation = "get_event"
        _check_uid(uid)
        with self._client(operation) as client:
            found = self._find(self._target(client, create=False), uid)
            return None if found is None else self._ref(found, operation)

    def check(self) -> CheckResult:
        """Connect, authenticate and find the calendar; never writes."""
        try:
            with self._client("check") as client:
                target = self._target(client, create=False)
        except ConnectorError as exc:
            return CheckResult(ok=False, detail=str(exc))
        who = self._config.username or "anonymous"
        name = self._config.calendar
        if target.calendar is None:
            detail = f"logged in as {who}; calendar {name!r} is missing and will be created"
            return CheckResult(ok=True, detail=f"{detail} at {target.url} on first write")
        return CheckResult(ok=True, detail=f"logged in as {who}; calendar {name!r} at {target.url}")

    # -- steps

    def _existing(self, client: DAVClient, operation: str, uid: str) -> tuple[_Stored, EventRef]:
        _check_uid(uid)
        found = self._find(self._target(client, create=False), uid)
        if found is None:
            raise ConnectorInvalidRequest(
                NAME,
                f"{operation}: no event with uid {uid!r} in calendar {self._config.calendar!r}",
            )
        return found, self._ref(found, operation)

    def _rewrite(
        self,
        found: _Stored,
        ref: EventRef,
        operation: str,
        *,
        event: CalendarEvent | None = None,
        status: Status = "CONFIRMED",
        dry_run: bool,
    ) -> EventRef:
        """Write ``event``'s fields and ``status`` over ``found`` if either differs."""
        current = _content(found.component)
        changed = ref.status != status or (event is not None and current != _wanted(event))
        if not changed:
            return ref
        new_ref = ref.model_copy(update={"sequence": ref.sequence + 1, "status": status})
        if dry_run:
            return new_ref
        with found.resource.edit_icalendar_component() as component:
            if event is not None:
                _fill(component, event)
            _stamp(component, new_ref)
        # SEQUENCE is ours to set; the library must not bump it a second time.
        found.resource.save(increase_seqno=False)
        return new_ref

    def _put_new(
        self,
        client: DAVClient,
        calendar: DavCalendar,
        key: str,
        ref: EventRef,
        event: CalendarEvent,
        operation: str,
    ) -> EventRef:
        component = IEvent()
        component.add("uid", ref.uid)
        component.add("created", datetime.now(UTC))
        component.add(_KEY_PROPERTY, key)
        _fill(component, event)
        _stamp(component, ref)
        document = ICalendar()
        document.add("prodid", _PRODID)
        document.add("version", "2.0")
        document.add_component(component)
        resource = DavEvent(client, url=ref.href, data=document.to_ical().decode(), parent=calendar)
        try:
            resource.save(no_overwrite=True, increase_seqno=False)
        except dav_error.ConsistencyError:
            # Another run of this step got there first (If-None-Match: * failed): use its event.
            found = self._find(_Target(calendar, _url(calendar)), ref.uid)
            if found is None:
                raise
            return self._ref(found, operation)
        return ref

    # -- server access

    @contextmanager
    def _client(self, operation: str) -> Iterator[DAVClient]:
        """A client for one call; library and transport errors leave as ``ConnectorError``."""
        cfg = self._config
        password = cfg.password.get_secret_value() if cfg.password is not None else None
        try:
            client = DAVClient(
                url=cfg.url,
                username=cfg.username,
                password=password,
                timeout=cast(int, cfg.timeout_seconds),  # niquests takes float seconds
                enable_rfc6764=False,
                rate_limit_handle=False,
            )
            with client:
                yield client
        except (dav_error.DAVError, OSError) as exc:
            classified = self._classified(operation, exc)
            if isinstance(exc, dav_error.AuthorizationError):
                raise classified from None  # nothing about a refused login travels further
            raise classified from exc

    def _target(self, client: DAVClient, *, create: bool) -> _Target:
        """The configured calendar, made when missing if allowed (and ``create``)."""
        principal = client.principal()
        calendars = cast(list[DavCalendar], principal.get_calendars())
        wanted = self._config.calendar
        match = _pick(calendars, wanted)
        if match is not None:
            return _Target(match, _url(match))
        if not self._config.create_missing:
            names = ", ".join(repr(_label(c)) for c in calendars) or "none"
            raise ConnectorInvalidRequest(
                NAME,
                f"calendar {wanted!r} not found (this account has: {names}); "
                "fix the name or set create_missing",
            )
        home = cast(CalendarSet, principal.calendar_home_set)
        cal_id, display = _new_calendar_id(wanted, _url(home))
        planned = _collection(_url(home)).join(cal_id + "/")
        if not create:
            return _Target(None, planned)
        made = cast(DavCalendar, principal.make_calendar(name=display, cal_id=cal_id))
        return _Target(made, _url(made))

    @staticmethod
    def _find(target: _Target, uid: str) -> _Stored | None:
        if target.calendar is None:
            return None
        try:
            resource = cast(DavEvent, target.calendar.get_event_by_uid(uid))
        except dav_error.NotFoundError:
            return None
        return _Stored(resource, resource.get_icalendar_component())

    @staticmethod
    def _ref(found: _Stored, operation: str) -> EventRef:
        component = found.component
        status = component.get("STATUS")
        data = {
            "uid": None if component.get("UID") is None else str(component.get("UID")),
            "href": str(_url(found.resource)),
            "sequence": component.get("SEQUENCE", 0),
            "status": "CONFIRMED" if status is None else str(status).upper(),
        }
        return parse_reply(EventRef, data, connector=NAME, operation=operation)

    def _classified(self, operation: str, exc: BaseException) -> ConnectorError:
        if isinstance(exc, dav_error.RateLimitError):
            headers = {"Retry-After": exc.retry_after} if exc.retry_after else None
            return classify_http(NAME, operation, exc.status or 429, headers=headers)
        if isinstance(
            exc, dav_error.ETagMismatchError | dav_error.ScheduleTagMismatchError
        ) and not isinstance(exc, dav_error.UidConflictError):
            return TransientConnectorError(
                NAME, f"{operation}: the event changed on the server while we wrote it"
            )
        if isinstance(exc, dav_error.DAVError):
            detail = self._scrubbed(_dav_detail(exc))
            status = _dav_status(exc)
            if status is not None:
                return classify_http(NAME, operation, status, detail=detail)
            return PermanentConnectorError(NAME, f"{operation}: {detail}")
        if isinstance(exc, niquests.exceptions.SSLError):
            return PermanentConnectorError(
                NAME, f"{operation}: TLS with the server failed (certificate or protocol)"
            )
        if isinstance(exc, niquests.exceptions.ConnectionError | niquests.exceptions.Timeout):
            return classify_transport(NAME, operation, exc)
        if isinstance(exc, niquests.exceptions.RequestException):
            return PermanentConnectorError(
                NAME, f"{operation}: the request could not be made ({type(exc).__name__})"
            )
        return classify_transport(NAME, operation, exc)  # any other OSError: socket trouble

    def _scrubbed(self, text: str) -> str:
        secret = self._config.password.get_secret_value() if self._config.password else ""
        return text.replace(secret, "***") if secret else text


@dataclass(frozen=True)
class _Stored:
    """An event read from the server: the resource (to save) and a copy of its VEVENT."""

    resource: DavEvent
    component: Component


# --- iCalendar ----------------------------------------------------------------------------------


def _fill(component: Component, event: CalendarEvent) -> None:
    """Put ``event``'s fields on ``component``, replacing the ones it had."""
    for prop in (*_CONTENT_PROPERTIES, *_PEOPLE_PROPERTIES):
        component.pop(prop, None)
    component.add("summary", event.summary)
    component.add("dtstart", event.start.astimezone(UTC))
    component.add("dtend", event.end.astimezone(UTC))
    if event.description:
        component.add("description", event.description)
    if event.location:
        component.add("location", event.location)
    if event.organizer:
        component.add("organizer", vCalAddress(f"mailto:{event.organizer}"))
    for address in event.attendees:
        attendee = vCalAddress(f"mailto:{address}")
        attendee.params["ROLE"] = vText("REQ-PARTICIPANT")
        attendee.params["RSVP"] = vText("TRUE")
        component.add("attendee", attendee, encode=False)


def _stamp(component: Component, ref: EventRef) -> None:
    """Set the version fields of a write: SEQUENCE, STATUS, DTSTAMP, LAST-MODIFIED."""
    now = datetime.now(UTC)
    for prop in ("SEQUENCE", "STATUS", "DTSTAMP", "LAST-MODIFIED"):
        component.pop(prop, None)
    component.add("sequence", ref.sequence)
    component.add("status", ref.status)
    component.add("dtstamp", now)
    component.add("last-modified", now)


_Content = tuple[str, Any, Any, str, str, str | None, tuple[str, ...]]


def _wanted(event: CalendarEvent) -> _Content:
    return (
        event.summary,
        event.start.astimezone(UTC),
        event.end.astimezone(UTC),
        event.description,
        event.location,
        event.organizer.lower() if event.organizer else None,
        tuple(a.lower() for a in event.attendees),
    )


def _content(component: Component) -> _Content:
    """The fields ``_fill`` writes, read back in the form ``_wanted`` gives them."""
    organizer = component.get("ORGANIZER")
    attendees = component.get("ATTENDEE", [])
    if not isinstance(attendees, list):
        attendees = [attendees]
    return (
        str(component.get("SUMMARY", "")),
        _when(component, "DTSTART"),
        _when(component, "DTEND"),
        str(component.get("DESCRIPTION", "")),
        str(component.get("LOCATION", "")),
        None if organizer is None else _address(organizer),
        tuple(_address(a) for a in attendees),
    )


def _when(component: Component, prop: str) -> Any:
    value = component.get(prop)
    moment = getattr(value, "dt", None)
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        return moment.astimezone(UTC)
    return moment


def _address(value: object) -> str:
    text = str(value)
    return (text[7:] if text.lower().startswith("mailto:") else text).lower()


# --- small helpers ------------------------------------------------------------------------------


def _check_uid(uid: str) -> None:
    if not uid or not uid.strip():
        raise InvalidInput(f"{NAME}: uid must not be empty")


def _label(calendar: DavCalendar) -> str:
    name = calendar.get_display_name()  # read from the listing, no request
    return name if isinstance(name, str) and name else _path(_url(calendar))


def _url(obj: DAVObject) -> URL:
    """The URL of something read from the server (the library types it as optional)."""
    if obj.url is None:
        raise SchemaDrift(NAME, f"the server gave no URL for a {type(obj).__name__}")
    return obj.url


def _collection(url: URL) -> URL:
    """``url`` with the trailing slash a join needs to land inside the collection."""
    return url if str(url).endswith("/") else URL.objectify(f"{url}/")


def _path(url: URL | str) -> str:
    return unquote(urlsplit(str(url)).path).strip("/")


def _pick(calendars: list[DavCalendar], wanted: str) -> DavCalendar | None:
    """The calendar named ``wanted``: a path or URL, else a display name, else a collection id."""
    if "/" in wanted:
        path = _path(wanted)
        return next((c for c in calendars if _path(_url(c)) == path), None)
    named = next((c for c in calendars if c.get_display_name() == wanted), None)
    if named is not None:
        return named
    return next((c for c in calendars if _path(_url(c)).rsplit("/", 1)[-1] == wanted), None)


def _new_calendar_id(wanted: str, home: URL) -> tuple[str, str]:
    """Collection id and display name for a calendar ``create_missing`` makes."""
    if "/" in wanted:
        path, home_path = _path(wanted), _path(home)
        parent, _, cal_id = path.rpartition("/")
        if parent != home_path or not re.fullmatch(r"[A-Za-z0-9._-]+", cal_id):
            raise ConnectorInvalidRequest(
                NAME, f"cannot create calendar {wanted!r}: it is not directly under /{home_path}/"
            )
        return cal_id, cal_id
    slug = re.sub(r"[^a-z0-9]+", "-", wanted.lower()).strip("-")[:40] or "calendar"
    return f"{slug}-{hashlib.sha256(wanted.encode()).hexdigest()[:8]}", wanted


def _dav_status(exc: dav_error.DAVError) -> int | None:
    if isinstance(exc.status, int):
        return exc.status
    # Errors built from a response carry "<status> <reason>..." as their first argument.
    for text in (exc.url, exc.reason):
        found = _STATUS_AT_START.match(text or "")
        if found:
            return int(found.group(1))
    return None


def _dav_detail(exc: dav_error.DAVError) -> str:
    text = exc.reason if exc.reason and exc.reason != "no reason" else (exc.url or "")
    return f"{type(exc).__name__}: {' '.join(text.split())}".rstrip(": ")
