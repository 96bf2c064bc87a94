"""Kickoff meetings as iCalendar invitations (RFC 5545 / iTIP), attached to emails.

A REQUEST creates the event in the client's calendar; a CANCEL with the same UID and a higher
SEQUENCE removes it. UIDs derive from the workflow step, so a resent invite updates rather
than duplicates.

A start in an IANA time zone (a ``zoneinfo.ZoneInfo`` other than UTC, such as the business's
``Europe/Berlin``) is written as ``DTSTART;TZID=Europe/Berlin:...`` with the zone's
``VTIMEZONE``, so every calendar shows the meeting at the right moment and names the zone it
was planned in; any other start is written in UTC.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vCalAddress, vText

from aios.connectors.email import Attachment

__all__ = ["Invite", "invite_attachment", "kickoff_uid"]

Method = Literal["REQUEST", "CANCEL"]
_UTC_KEYS = frozenset({"UTC", "Etc/UTC", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu"})


def kickoff_uid(workflow_id: str, run_id: str) -> str:
    digest = hashlib.sha256(f"{workflow_id}/{run_id}/kickoff".encode()).hexdigest()[:24]
    return f"{digest}@aios"


class Invite:
    def __init__(
        self,
        *,
        uid: str,
        summary: str,
        description: str,
        start: datetime,
        duration: timedelta,
        organizer: str,
        attendee: str,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("invite start must be timezone-aware")
        self.uid = uid
        self.summary = summary
        self.description = description
        named = isinstance(start.tzinfo, ZoneInfo) and start.tzinfo.key not in _UTC_KEYS
        self.start = start if named else start.astimezone(UTC)
        self.duration = duration
        self.organizer = organizer
        self.attendee = attendee

    def to_ical(self, method: Method, *, sequence: int, stamp: datetime) -> bytes:
        cal = Calendar()
        cal.add("prodid", "-//AiOs//Kickoff//EN")
        cal.add("version", "2.0")
        cal.add("method", method)
        event = Event()
        event.add("uid", self.uid)
        event.add("sequence", sequence)
        event.add("dtstamp", stamp.astimezone(UTC))
        event.add("dtstart", self.start)
        event.add("dtend", self.start + self.duration)
        event.add("summary", self.summary)
        event.add("description", self.description)
        event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
        organizer = vCalAddress(f"mailto:{_address(self.organizer)}")
        event.add("organizer", organizer)
        attendee = vCalAddress(f"mailto:{self.attendee}")
        attendee.params["ROLE"] = vText("REQ-PARTICIPANT")
        attendee.params["RSVP"] = vText("TRUE")
        event.add("attendee", attendee, encode=False)
        cal.add_component(event)
        # The zone's rules around the meeting (a year before, two after: room to reschedule).
        cal.add_missing_timezones(
            first_date=(self.start - timedelta(days=366)).date(),
            last_date=(self.start + timedelta(days=2 * 366)).date(),
        )
        return bytes(cal.to_ical())


def invite_attachment(invite: Invite, method: Method, *, sequence: int) -> Attachment:
    content = invite.to_ical(method, sequence=sequence, stamp=datetime.now(UTC))
    filename = "kickoff.ics" if method == "REQUEST" else "kickoff-cancelled.ics"
    return Attachment(filename, content, "text", "calendar", params=(("method", method),))


def _address(value: str) -> str:
    from email.utils import parseaddr

    return parseaddr(value)[1] or value
