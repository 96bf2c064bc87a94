"""The CalDAV connector against a real Radicale server.

Every assertion about an effect reads the calendar back with a separate plain ``caldav``
client, so it checks what the server holds rather than what the connector says. Each test
works in its own calendar (a fresh display name), so counts are exact.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest
from caldav.calendarobjectresource import Event as DavEvent
from caldav.collection import Calendar as DavCalendar
from caldav.davclient import DAVClient
from caldav.lib import error as dav_error
from icalendar import Component
from pydantic import SecretStr, ValidationError

from aios.connectors.caldav import (
    OPERATIONS,
    CalDavConfig,
    CalDavConnector,
    CalendarEvent,
    EventRef,
    uid_for,
)
from aios.errors import (
    ConnectorAuthError,
    ConnectorInvalidRequest,
    InvalidInput,
    PermanentConnectorError,
    RateLimited,
    TransientConnectorError,
)
from tests.radicale_server import RadicaleServer, free_port

START = datetime(2031, 3, 4, 9, 30, tzinfo=UTC)


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadicaleServer]:
    with RadicaleServer(tmp_path_factory.mktemp("radicale")) as server:
        yield server


@pytest.fixture
def config(radicale: RadicaleServer) -> CalDavConfig:
    """A calendar of this test's own, made by the connector's first write."""
    return CalDavConfig(
        url=radicale.url,
        username=radicale.username,
        password=radicale.password,
        calendar=f"AiOs test {uuid.uuid4().hex[:8]}",
        create_missing=True,
        timeout_seconds=5,
    )


@pytest.fixture
def connector(config: CalDavConfig) -> CalDavConnector:
    return CalDavConnector(config)


def kickoff(**changes: Any) -> CalendarEvent:
    fields: dict[str, Any] = {
        "summary": "Kickoff: Acme Ltd",
        "start": START,
        "end": START + timedelta(minutes=45),
        "description": "Agenda: goals, timeline, next steps.",
        "location": "https://meet.example.com/acme",
        "organizer": "operator@example.com",
        "attendees": ["ops@acme.example"],
    }
    return CalendarEvent(**(fields | changes))


def key() -> str:
    return f"onboarding/acme-{uuid.uuid4().hex[:8]}/kickoff"


def server_calendar(radicale: RadicaleServer, name: str) -> tuple[DAVClient, DavCalendar | None]:
    client = DAVClient(
        url=radicale.url,
        username=radicale.username,
        password=radicale.password,
        enable_rfc6764=False,
    )
    calendars = cast(list[DavCalendar], client.principal().get_calendars())
    return client, next((c for c in calendars if c.get_display_name() == name), None)


@dataclass(frozen=True)
class Held:
    """One event as the server holds it."""

    uid: str
    summary: str
    start: datetime
    end: datetime
    location: str | None
    sequence: int
    status: str
    organizer: str
    attendees: list[str]
    key: str | None
    raw: bytes


def _held(component: Component) -> Held:
    attendees = component.get("ATTENDEE", [])
    location = component.get("LOCATION")
    key = component.get("X-AIOS-IDEMPOTENCY-KEY")
    return Held(
        uid=str(component.get("UID")),
        summary=str(component.get("SUMMARY")),
        start=component.get("DTSTART").dt,
        end=component.get("DTEND").dt,
        location=None if location is None else str(location),
        sequence=int(component.get("SEQUENCE")),
        status=str(component.get("STATUS")),
        organizer=str(component.get("ORGANIZER")),
        attendees=[str(a) for a in (attendees if isinstance(attendees, list) else [attendees])],
        key=None if key is None else str(key),
        raw=component.to_ical(),
    )


def server_events(radicale: RadicaleServer, name: str) -> dict[str, Held]:
    """UID -> every event the server holds in calendar ``name``, read by a plain client."""
    client, calendar = server_calendar(radicale, name)
    with client:
        if calendar is None:
            return {}
        events = cast(list[DavEvent], calendar.get_events())
        held = [_held(e.get_icalendar_component()) for e in events]
        return {h.uid: h for h in held}


def server_raw(radicale: RadicaleServer, name: str) -> dict[str, bytes]:
    """UID -> the stored bytes, to show that a no-op wrote nothing (not even DTSTAMP)."""
    return {uid: h.raw for uid, h in server_events(radicale, name).items()}


# --- idempotent create --------------------------------------------------------------------------


def test_create_twice_with_the_same_key_leaves_one_event(
    radicale: RadicaleServer, config: CalDavConfig, connector: CalDavConnector
) -> None:
    k = key()
    first = connector.create_event(k, kickoff())
    second = connector.create_event(k, kickoff())

    assert first == second
    assert first.uid == uid_for(k) and first.uid.endswith("@aios")
    assert (first.sequence, first.status) == (0, "CONFIRMED")
    held = server_events(radicale, config.calendar)
    assert list(held) == [first.uid]
    event = held[first.uid]
    assert (event.summary, event.start, event.end) == (
        "Kickoff: Acme Ltd",
        START,
        START + timedelta(minutes=45),
    )
    assert (event.sequence, event.status) == (0, "CONFIRMED")
    assert event.organizer == "mailto:operator@example.com"
    assert event.attendees == ["mailto:ops@acme.example"]
    assert event.key == k
    assert connector.get_event(first.uid) == first


def test_different_keys_make_different_events(
    radicale: RadicaleServer, config: CalDavConfig, connector: CalDavConnector
) -> None:
    a = connector.create_event(key(), kickoff())
    b = connector.create_event(key(), kickoff(summary="Follow-up"))

    assert a.uid != b.uid and a.href != b.href
    held = server_events(radicale, config.calendar)
    assert set(held) == {a.uid, b.uid}
    assert held[b.uid].summary == "Follow-up"


def test_a_calendar_named_by_path_finds_the_same_events(
    radicale: RadicaleServer, config: CalDavConfig, connector: CalDavConnector
) -> None:
    made = connector.create_event(key(), kickoff())
    path = made.href.removeprefix(radicale.url.rstrip("/")).rsplit("/", 1)[0] + "/"

    by_path = CalDavConnector(config.model_copy(update={"calendar": path, "create_missing": False}))
    assert by_path.get_event(made.uid) == made
    assert by_path.check().ok


# --- update -------------------------------------------------------------------------------------


def test_update_replaces_fields_and_bumps_sequence_once(
    radicale: RadicaleServer, config: CalDavConfig, connector: CalDavConnector
) -> None:
    made = connector.create_event(key(), kickoff())
    moved = kickoff(
        summary="Kickoff (moved)",
        start=START + timedelta(days=1),
        end=START + timedelta(days=1, hours=1),
        location="",
        attendees=["ops@acme.example", "cfo@acme.example"],
    )

    updated = connector.update_event("update-1", made.uid, moved)
    assert (updated.uid, updated.href) == (made.uid, made.href)
    assert (updated.sequence, updated.status) == (1, "CONFIRMED")
    event = server_events(radicale, config.calendar)[made.uid]
    assert event.summary == "Kickoff (moved)"
    assert event.start == START + timedelta(days=1)
    assert event.end == START + timedelta(days=1, hours=1)
    assert event.location is None
    assert event.attendees == [
        "mailto:ops@acme.example",
        "mailto:cfo@acme.example",
    ]
    assert event.sequence == 1
    assert event.key  # what an update does not touch stays

    before = server_raw(radicale, config.calendar)
    again = connector.update_event("update-1", made.uid, moved)
    assert again == updated
    assert server_raw(radicale, config.calendar) == before


def test_update_with_the_same_time_in_another_zone_is_a_no_op(
    radicale: RadicaleServer, config: CalDavConfig, connector: CalDavConnector
) -> None:
    made = connector.create_event(key(), kickoff())
    before = server_raw(radicale, config.calendar)
    paris = timezone(timedelta(hours=1))
    same = kickoff(start=START.astimezone(paris), end=(START + timedelta(minutes=45)))

    assert connector.update_event("update-tz", made.uid, same) == made
    assert server_raw(radicale, config.calendar) == before


def test_update_of_an_unknown_uid_is_invalid(connector: CalDavConnector) -> None:
    connector.create_event(key(), kickoff())
    with pytest.raises(ConnectorInvalidRequest, match="no event with uid 'nope@aios'"):
        connector.update_event("update-x", "nope@aios", kickoff())


# --- cancel -------------------------------------------------------------------------------------


def test_cancel_marks_the_event_cancelled_once(
    radicale: RadicaleServer, config: CalDavConfig, connector: CalDavConnector
) -> None:
    made = connector.create_event(key(), kickoff())

    cancelled = connector.cancel_event("cancel-1", made.uid)
    assert (cancelled.uid, cancelled.href) == (made.uid, made.href)
    assert (cancelled.sequence, cancelled.status) == (1, "CANCELLED")
    held = server_events(radicale, config.calendar)
    assert list(held) == [made.uid]  # kept, so attendees' clients see the cancellation
    assert (held[made.uid].status, held[made.uid].sequence) == ("CANCELLED", 1)
    assert held[made.uid].summary == "Kickoff: Acme Ltd"

    before = server_raw(radicale, config.calendar)
    assert connector.cancel_event("cancel-1", made.uid) == cancelled
    assert server_raw(radicale, config.calendar) == before


def test_cancel_of_an_unknown_uid_is_a_clear_invalid_request(connector: CalDavConnector) -> None:
    with pytest.raises(ConnectorInvalidRequest) as caught:
        connector.cancel_event("cancel-x", "missing@aios")
    assert not caught.value.retryable
    assert "no event with uid 'missing@aios'" in str(caught.value)


def test_create_again_after_cancel_reconfirms_the_same_event(
    radicale: RadicaleServer, config: CalDavConfig, connector: CalDavConnector
) -> None:
    """``cancel_event``'s compensation: the step's create, repeated, confirms it again."""
    k = key()
    made = connector.create_event(k, kickoff())
    connector.cancel_event("cancel-2", made.uid)

    again = connector.create_event(k, kickoff())
    assert (again.uid, again.href, again.sequence, again.status) == (
        made.uid,
        made.href,
        2,
        "CONFIRMED",
    )
    held = server_events(radicale, config.calendar)
    assert list(held) == [made.uid]
    assert (held[made.uid].status, held[made.uid].sequence) == ("CONFIRMED", 2)
    assert connector.create_event(k, kickoff()) == again


# --- dry runs -----------------------------------------------------------------------------------


def test_dry_runs_write_nothing_and_say_what_would_happen(
    radicale: RadicaleServer, config: CalDavConfig, connector: CalDavConnector
) -> None:
    k = key()
    planned = connector.create_event(k, kickoff(), dry_run=True)
    assert (planned.uid, planned.sequence, planned.status) == (uid_for(k), 0, "CONFIRMED")
    _, calendar = server_calendar(radicale, config.calendar)
    assert calendar is None  # not even the missing calendar was made

    made = connector.create_event(k, kickoff())
    assert made == planned  # the dry run predicted the very href
    before = server_raw(radicale, config.calendar)

    assert connector.create_event(k, kickoff(), dry_run=True) == made
    update = connector.update_event("u", made.uid, kickoff(summary="New"), dry_run=True)
    assert (update.sequence, update.status) == (1, "CONFIRMED")
    same = connector.update_event("u", made.uid, kickoff(), dry_run=True)
    assert same == made
    cancel = connector.cancel_event("c", made.uid, dry_run=True)
    assert (cancel.sequence, cancel.status) == (1, "CANCELLED")
    with pytest.raises(ConnectorInvalidRequest):
        connector.cancel_event("c", "nope@aios", dry_run=True)

    assert server_raw(radicale, config.calendar) == before
    assert connector.get_event(made.uid) == made


# --- failures -----------------------------------------------------------------------------------


def test_wrong_password_is_an_auth_error_without_the_password(
    radicale: RadicaleServer, config: CalDavConfig
) -> None:
    wrong = "not-" + radicale.password
    connector = CalDavConnector(config.model_copy(update={"password": SecretStr(wrong)}))

    with pytest.raises(ConnectorAuthError) as caught:
        connector.create_event(key(), kickoff())
    assert not caught.value.retryable
    assert "401" in str(caught.value)
    assert wrong not in str(caught.value) and radicale.password not in str(caught.value)
    assert caught.value.__cause__ is None  # the library's exception is not chained on

    result = connector.check()
    assert not result.ok
    assert "not authorised" in result.detail and wrong not in result.detail


def test_server_down_is_transient(config: CalDavConfig) -> None:
    down = CalDavConnector(config.model_copy(update={"url": f"http://127.0.0.1:{free_port()}/"}))

    with pytest.raises(TransientConnectorError) as caught:
        down.create_event(key(), kickoff())
    assert caught.value.retryable
    assert "cannot reach the server" in str(caught.value)
    with pytest.raises(TransientConnectorError):
        down.get_event("x@aios")
    assert not down.check().ok


def test_check_finds_the_calendar_and_explains_what_is_wrong(
    radicale: RadicaleServer, config: CalDavConfig, connector: CalDavConnector
) -> None:
    pending = connector.check()
    assert pending.ok and "will be created" in pending.detail
    connector.create_event(key(), kickoff())

    result = connector.check()
    assert result.ok and config.calendar in result.detail and "will be created" not in result.detail

    missing = CalDavConnector(
        config.model_copy(update={"calendar": "No Such Calendar", "create_missing": False})
    )
    result = missing.check()
    assert not result.ok
    assert "'No Such Calendar' not found" in result.detail
    assert config.calendar in result.detail  # it lists what the account has
    with pytest.raises(ConnectorInvalidRequest, match="not found"):
        missing.get_event("x@aios")


def test_a_change_between_read_and_write_is_transient_and_kept(
    radicale: RadicaleServer,
    config: CalDavConfig,
    connector: CalDavConnector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = connector.create_event(key(), kickoff())
    read = CalDavConnector._find

    def read_then_someone_else_writes(target: Any, uid: str) -> Any:
        found = read(target, uid)
        client, calendar = server_calendar(radicale, config.calendar)
        with client:
            assert calendar is not None
            other = cast(DavEvent, calendar.get_event_by_uid(uid))
            with other.edit_icalendar_component() as component:
                component["SUMMARY"] = "Changed by someone else"
            other.save(increase_seqno=False)
        return found

    monkeypatch.setattr(CalDavConnector, "_find", staticmethod(read_then_someone_else_writes))
    with pytest.raises(TransientConnectorError, match="changed on the server") as caught:
        connector.update_event("update-race", made.uid, kickoff(summary="Mine"))
    assert caught.value.retryable
    monkeypatch.undo()
    assert server_events(radicale, config.calendar)[made.uid].summary == "Changed by someone else"


def test_a_resource_squatting_our_href_is_refused_not_overwritten(
    radicale: RadicaleServer, config: CalDavConfig, connector: CalDavConnector
) -> None:
    k = key()
    planned = connector.create_event(key(), kickoff())  # makes the calendar
    href = planned.href.rsplit("/", 1)[0] + "/" + uid_for(k).split("@")[0] + ".ics"
    client, calendar = server_calendar(radicale, config.calendar)
    with client:
        assert calendar is not None
        squatter = (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
            "UID:someone-else\r\nDTSTAMP:20300101T000000Z\r\nDTSTART:20300101T100000Z\r\n"
            "DTEND:20300101T110000Z\r\nSEQUENCE:0\r\nSTATUS:CONFIRMED\r\n"
            "SUMMARY:Squatter\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        )
        DavEvent(client, url=href, data=squatter, parent=calendar).save(increase_seqno=False)

    with pytest.raises(ConnectorInvalidRequest, match="HTTP 412"):
        connector.create_event(k, kickoff())
    held = server_events(radicale, config.calendar)
    assert held["someone-else"].summary == "Squatter" and uid_for(k) not in held


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (dav_error.PutError("409 Conflict\n\nUID in use", status=409), ConnectorInvalidRequest),
        (dav_error.ReportError("400 Bad Request\n\n"), ConnectorInvalidRequest),
        (dav_error.AuthorizationError(reason="Forbidden", status=403), ConnectorAuthError),
        (dav_error.PutError("503 Service Unavailable", status=503), TransientConnectorError),
        (
            dav_error.ETagMismatchError("412 Precondition Failed", status=412),
            TransientConnectorError,
        ),
        (dav_error.ConsistencyError("odd"), PermanentConnectorError),
    ],
)
def test_library_errors_are_classified_by_status(
    connector: CalDavConnector, exc: dav_error.DAVError, expected: type[Exception]
) -> None:
    classified = connector._classified("create_event", exc)
    assert type(classified) is expected


def test_rate_limits_carry_retry_after(connector: CalDavConnector) -> None:
    exc = dav_error.RateLimitError(reason="slow down", retry_after="7", status=429)
    classified = connector._classified("update_event", exc)
    assert isinstance(classified, RateLimited)
    assert classified.retry_after == 7


# --- input --------------------------------------------------------------------------------------


def test_end_before_start_names_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        kickoff(end=START - timedelta(minutes=1))
    errors = caught.value.errors()
    assert [e["loc"] for e in errors] == [("end",)]
    assert "must be after start" in errors[0]["msg"]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        kickoff(start=datetime(2031, 3, 4, 9, 30))
    assert [e["loc"] for e in caught.value.errors()] == [("start",)]
    assert "timezone" in caught.value.errors()[0]["msg"]


def test_bad_addresses_and_config_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        kickoff(attendees=["not an address"])
    assert caught.value.errors()[0]["loc"] == ("attendees", 0)
    with pytest.raises(ValidationError, match="must not carry credentials"):
        CalDavConfig(url="http://u:secret@127.0.0.1:1/", calendar="x")
    with pytest.raises(InvalidInput, match="idempotency key"):
        uid_for(" ")


def test_operations_table_names_compensations() -> None:
    assert CalDavConnector.name == "caldav"
    assert CalDavConnector.operations is OPERATIONS
    assert {n: (o.effect, o.compensation) for n, o in OPERATIONS.items()} == {
        "create_event": (True, "cancel_event"),
        "update_event": (True, "update_event"),
        "cancel_event": (True, "create_event"),
        "get_event": (False, None),
    }
    assert not any(o.irreversible for o in OPERATIONS.values())
    assert EventRef(uid="u", href="h", sequence=0, status="CONFIRMED").status == "CONFIRMED"


def test_radicale_server_stops(tmp_path: Path) -> None:
    with RadicaleServer(tmp_path) as server:
        assert (
            CalDavConnector(
                CalDavConfig(
                    url=server.url,
                    username=server.username,
                    password=server.password,
                    calendar="x",
                    create_missing=True,
                )
            )
            .check()
            .ok
        )
    down = CalDavConfig(url=server.url, calendar="x", timeout_seconds=2)
    assert not CalDavConnector(down).check().ok
