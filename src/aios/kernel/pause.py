"""Waiting at a paused switch: how a pause reaches runs in flight.

Where the check happens: inside the activity, right before the thing a switch stops. The
agent runner asks ``PauseGate.hold`` before every model call (``agent:<name>``), the
connector runtime before every effect (``connector:<name>``), in every worker; both also
honour ``all`` and ``process:<the run's process>``. Because the check sits in the runtime,
anything built on it (a batch that sends one email per recipient) stops between two effects.

What a paused step does: it waits, it does not raise. While any of its switches is paused
the activity heartbeats and reads the switches again every ``poll_seconds`` (the reader's
cache is about a second), so a pause reaches it before its next effect and a resume is seen
within a few seconds. Raising instead would burn the step's retries and, after its retry
budget, fail the run; waiting costs no attempt, and the run neither fails nor compensates.
The steps that can wait are scheduled with a heartbeat timeout (a worker killed meanwhile
hands the step back to Temporal within it, and the next attempt checks again) and with a
start-to-close long enough for a pause of days (``aios.workflows.timeouts.PAUSE_LIMIT``).

What the operator sees: the step's heartbeat details say ``paused: <switch>`` (the Web UI
shows them on the pending activity), and a notice in the inbox per waiting run and switch,
kind ``paused``, key ``paused/<workflow id>/<switch>``, title ``paused: <switch>``, opened
when the step starts waiting and resolved when it goes on (its events are ``notice.opened`` and
``notice.resolved``). A step interrupted while it waits (its worker stops) leaves the notice
open for its next attempt; one the run cancels meanwhile (the run was cancelled, or a gate was
decided before its email went out) resolves it, saying so, so the inbox never keeps a wait
nobody has any more. A later wait of the same run at
the same switch gets a fresh key (``.../<switch>/2``), and so does another step of the run
waiting at the same time (a gate's email and the step after the decision), so each wait is its
own inbox item.

The mail poll skips instead of waiting: while ``all``, ``connector:imap`` or
``process:mail-poll`` is paused, its read of the mailbox (``fetch_inbound``) returns at once,
reading nothing, and the poll ends; the emails stay unseen in the mailbox for the first poll
after the resume. A waiting poll would only hold a worker slot and block the next poll.

Exactly once: the check comes before the outbox records the attempt, so a step that waited
then performs its effect through the outbox like any other, once per idempotency key; a
step retried after its worker died waits again at the same check, then finds the effect
done (or runs it) by that key.

Why not wait in the workflow instead: a check there would be a new command before every
step of every process (a versioned change to each), it could not stop a step already
running (a batch between two of its messages), and it would not cover what other modules
build on the connector runtime. The price of waiting in the activity: a waiting step
occupies one of its worker's activity slots for as long as it waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aios.kernel.stores.notices import NoticeDraft, NoticeStore
from aios.kernel.stores.switches import Switch, SwitchReader

__all__ = ["CANCELLED_WAIT", "PauseGate", "Waiter"]

# How a paused notice ends when the run no longer wants the step that waited.
CANCELLED_WAIT = "cancelled: the run no longer waits"

MAX_WAITS_PER_SWITCH = 1000  # fresh notice keys a run may use for one switch


@dataclass(frozen=True)
class Waiter:
    """Who would wait: the run a step belongs to and how it tells Temporal it is alive."""

    workflow_id: str = ""
    run_id: str = ""
    beat: Callable[..., None] = lambda *details: None  # details show in the Web UI
    # Whether the run itself cancelled the step (not its worker stopping): no retry will come.
    cancelled: Callable[[], bool] = lambda: False

    @property
    def process(self) -> str:
        return self.workflow_id.split("/", 1)[0] if self.workflow_id else ""


def _resume_command(switch: Switch) -> str:
    if switch.scope == "all":
        return "aios resume all"
    return f"aios resume {switch.scope} {switch.name}"


class PauseGate:
    """Hold a step while a switch that covers it is paused (see the module docstring)."""

    def __init__(
        self,
        reader: SwitchReader,
        notices: NoticeStore,
        *,
        current: Callable[[], Waiter | None] = lambda: None,
        poll_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._reader = reader
        self._notices = notices
        self._current = current
        self._poll = poll_seconds
        self._sleep = sleep

    def labels(self, labels: Sequence[str], waiter: Waiter) -> list[str]:
        """``labels`` plus ``all`` and the run's process: every switch that covers the step."""
        out = ["all", *labels]
        if waiter.process:
            out.append(f"process:{waiter.process}")
        return out

    def paused(self, labels: Sequence[str]) -> Switch | None:
        """The paused switch covering the running step (``labels``, ``all``, the run's
        process), or None; it does not wait. For a step that skips its work while paused
        instead of waiting (the mail poll's read of the mailbox)."""
        return self._reader.blocking(self.labels(labels, self._current() or Waiter()))

    def hold(self, labels: Sequence[str], what: str) -> float:
        """Return when no switch covering the step is paused; the seconds it waited.

        ``labels`` are the step's own switches (``connector:email``); ``what`` says what
        waits, for the notice (``email send_welcome``).
        """
        run = self._current() or Waiter()
        covering = self.labels(labels, run)
        switch = self._reader.blocking(covering)
        if switch is None:
            run.beat()  # a step about to do its work is alive: its heartbeat timeout starts
            return 0.0
        started = time.monotonic()
        opened: dict[str, str] = {}
        try:
            while switch is not None:
                if switch.label not in opened:
                    opened[switch.label] = self._open(run, switch, what)
                run.beat(f"paused: {switch.label}")
                self._sleep(self._poll)
                run.beat(f"paused: {switch.label}")
                switch = self._reader.blocking(covering)
        except BaseException:
            # The worker shutting down leaves the notice open: Temporal retries the step,
            # whose wait finds the open notice by its key and resolves it. A step the run
            # cancelled has no next attempt: its wait is over.
            if run.cancelled():
                for key in opened.values():
                    self._notices.resolve(key, by="aios", resolution=CANCELLED_WAIT)
            raise
        for key in opened.values():
            self._notices.resolve(key, by="aios", resolution="resumed: the step went on")
        return time.monotonic() - started

    def _open(self, run: Waiter, switch: Switch, what: str) -> str:
        base = f"paused/{run.workflow_id or what}/{switch.label}"
        key = base
        for n in range(2, MAX_WAITS_PER_SWITCH + 2):
            existing = self._notices.get(key)
            if existing is None:
                break
            if existing.status == "open" and existing.details.get("what") == what:
                break  # this step's own wait, left open by an attempt whose worker died
            key = f"{base}/{n}"
        by = f" by {switch.changed_by}" if switch.changed_by else ""
        why = f": {switch.reason}" if switch.reason else ""
        self._notices.open(
            NoticeDraft(
                key=key,
                kind="paused",
                title=f"paused: {switch.label}",
                summary=f"{what} waits: {switch.label} was paused{by}{why}. It goes on, "
                f"exactly once, after `{_resume_command(switch)}`.",
                details={
                    "switch": switch.label,
                    "what": what,
                    "run_id": run.run_id,
                    "paused_by": switch.changed_by,
                    "reason": switch.reason,
                    "paused_at": switch.paused_at.isoformat() if switch.paused_at else None,
                },
                workflow_id=run.workflow_id or None,
                source="pause",
            )
        )
        return key
