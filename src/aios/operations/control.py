"""The operator's kill switches: pause and resume everything, an agent, a connector or a process.

Shared by ``aios pause`` / ``aios resume`` and the console. A switch name is checked against
the names AiOs knows (``KNOWN``); an unknown one is an error that lists the valid names, and
nothing is written. Pausing a paused switch (or resuming a running one) changes nothing and
says so. How a pause reaches runs in flight: ``aios.kernel.pause``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ValidationError

from aios.config import AGENT_NAMES
from aios.errors import InvalidInput

if TYPE_CHECKING:
    from aios.kernel.store import KernelStore
    from aios.kernel.stores.switches import Switch, SwitchScope

__all__ = ["KNOWN", "SwitchOutcome", "change_switch", "list_switches", "parse_switch"]

# The names a switch may take, per scope. Agents are the agents' ``name``; connectors are the
# names their effects go through the connector runtime under (``imap``: the mail poll reads
# the mailbox only while it runs); processes are the first part of their workflow ids.
# tests/test_switches.py keeps these equal to the code that defines them.
KNOWN: dict[str, tuple[str, ...]] = {
    "agent": tuple(sorted(AGENT_NAMES)),
    "connector": (
        "caldav",
        "email",
        "hubspot",
        "imap",
        "payments:bank_transfer",
        "payments:stripe",
        "webhook",
    ),
    "process": (
        "billing",
        "content",
        "inbound-mail",
        "mail-poll",
        "newsletter",
        "onboarding",
        "proposal",
        "review",
        "synthetic-check",
    ),
}
SCOPE_NAMES = ("all", *KNOWN)


class SwitchOutcome(BaseModel):
    """What a pause or resume did: the switch as it is now, and whether this call changed it."""

    switch: str
    scope: str
    name: str
    paused: bool
    changed: bool
    reason: str = ""
    changed_by: str | None = None
    changed_at: str | None = None
    paused_at: str | None = None
    waiting: list[str] = []  # runs waiting at this switch now (their open "paused" notices)


def parse_switch(scope: str | None, name: str | None) -> tuple[SwitchScope, str]:
    """``(scope, name)`` as typed, checked: ``all``, or a scope and one of its known names."""
    scope = (scope or "").strip().lower()
    name = (name or "").strip()
    if scope not in SCOPE_NAMES:
        raise InvalidInput(
            f"switch: {scope or '(none)'!r} is not one of {', '.join(SCOPE_NAMES)} "
            "(e.g. `aios pause connector email`)"
        )
    if scope == "all":
        if name:
            raise InvalidInput(f"switch all: takes no name (got {name!r})")
        return "all", ""
    valid = KNOWN[scope]
    if not name:
        raise InvalidInput(f"{scope}: a name is required, one of {', '.join(valid)}")
    if name not in valid:
        raise InvalidInput(f"{scope} {name!r} is not known; valid names: {', '.join(valid)}")
    return cast("SwitchScope", scope), name


def _when(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value.isoformat())
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def outcome(switch: Switch | None, scope: str, name: str, changed: bool) -> SwitchOutcome:
    from aios.kernel.stores.switches import switch_label

    if switch is None:  # resumed, never paused
        return SwitchOutcome(
            switch=switch_label(scope, name), scope=scope, name=name, paused=False, changed=False
        )
    return SwitchOutcome(
        switch=switch.label,
        scope=switch.scope,
        name=switch.name,
        paused=switch.paused,
        changed=changed,
        reason=switch.reason,
        changed_by=switch.changed_by,
        changed_at=_when(switch.changed_at),
        paused_at=_when(switch.paused_at),
    )


def change_switch(
    store: KernelStore,
    *,
    pause: bool,
    scope: str | None,
    name: str | None,
    by: str,
    reason: str = "",
) -> SwitchOutcome:
    """Pause (or resume) the switch; idempotent: a second call changes and records nothing."""
    from aios.kernel.stores.switches import SwitchChange

    checked_scope, checked_name = parse_switch(scope, name)
    try:
        change = SwitchChange(scope=checked_scope, name=checked_name, by=by, reason=reason)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    if pause:
        switch, changed = store.switches.pause(change)
        return outcome(switch, checked_scope, checked_name, changed)
    resumed, changed = store.switches.resume(change)
    return outcome(resumed, checked_scope, checked_name, changed)


def list_switches(store: KernelStore) -> list[SwitchOutcome]:
    """Every switch ever changed, paused ones first, with the runs waiting at each."""
    waiting: dict[str, list[str]] = {}
    for notice in store.notices.open_notices():
        if notice.kind == "paused" and notice.workflow_id:
            label = str(notice.details.get("switch", ""))
            waiting.setdefault(label, []).append(notice.workflow_id)
    listed = []
    for s in store.switches.all():
        shown = outcome(s, s.scope, s.name, False)
        shown.waiting = sorted(set(waiting.get(s.label, [])))
        listed.append(shown)
    return listed
