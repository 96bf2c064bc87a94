"""Per-worker guards around connectors: rate limits, circuit breakers, dry-run, the outbox.

Every connector call from an activity goes through ``ConnectorRuntime.call`` (reads) or
``ConnectorRuntime.effect`` (operations with an outside effect, which also go through the
outbox: recorded before and after, at most once per idempotency key), or
``ConnectorRuntime.committing_effect`` for a connector that marks the outbox row done itself
just before its last irrevocable step (email: before the terminating dot of DATA, so a worker
killed at any moment never sends a message twice; see ``aios.connectors.email``). For each
connector the worker keeps

- a rate limiter (``limits``, moving window, e.g. ``"100/10 seconds"``). Over the limit the call
  is not made: ``RateLimited`` with the seconds until the window frees up, and Temporal retries
  then. Nobody sleeps or loops here;
- a circuit breaker (``pybreaker``). Transient failures (5xx, timeouts, 429s) count; after
  ``fail_max`` in a row it opens, and calls fail fast with a transient error saying when the
  next trial is, until ``reset_timeout`` has passed; then one trial call closes it again or
  reopens it. Refusals that say the system is up (auth, invalid request, schema drift) do not
  count.

An irreversible effect (``Operation.irreversible``: no compensation, not itself one) runs only
with ``approval=``: the event key of a recorded human decision of the same workflow run, a
``gate.decided`` that approved (or approved an edit), or a ``payment.recorded`` the operator
signalled. The runtime looks the event up in the log; a missing, foreign or negative one is a
``PolicyRefusal`` and nothing is attempted. Dry runs need no approval (they change nothing).

Kill switches: with a ``pause`` gate (``aios.kernel.pause.PauseGate``), every effect first
waits while ``all``, ``connector:<name>`` or the run's ``process:<name>`` is paused, before
anything else (the outbox, the rate limit, the approval check): the step heartbeats and
waits, costing no retry, and goes on when resumed. A batch of effects stops between two of
them. Reads and probes (``call``, ``check``) are not held: they change nothing.

Breaker and rate-limit state is per worker process; ``snapshot`` reports it and ``publish``
stores it in PostgreSQL (on every breaker state change, and on each synthetic check), which is
what ``aios health`` shows.

The runtime is also the boundary where connector text enters AiOs, so it is scrubbed here
(``aios.secrets``), once for every connector: what ``call`` and ``effect`` return (the
outbox result, a reply) and the message of every error they raise, before the outbox keeps it
as ``last_error``, an activity puts it in an event or a result, or Temporal puts it in
history; the payload of the event an effect records; ``check`` does the same for
synthetic-check probes. An ``AiosError`` is scrubbed in
place (its type, retryability and Retry-After stay); an unclassified exception whose text
cannot be scrubbed in place becomes a ``TransientConnectorError`` naming its class, retryable
as the unclassified error was. The breaker sees the original error.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import pybreaker
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from aios.connectors.contract import CheckResult, Operation
from aios.errors import (
    AiosError,
    ConnectorError,
    InvalidInput,
    PolicyRefusal,
    RateLimited,
    TransientConnectorError,
)
from aios.kernel.events import EventDraft
from aios.kernel.pause import PauseGate
from aios.kernel.store import KernelStore, OutboxResult
from aios.kernel.stores.outbox import CommitPoint
from aios.secrets import Scrubber, installed

__all__ = [
    "APPROVING_DECISIONS",
    "ConnectorGuard",
    "ConnectorRuntime",
    "GuardSettings",
    "worker_name",
]

# Events that record a person's go-ahead, and (for gates) the decisions that approve.
APPROVING_DECISIONS: dict[str, frozenset[str] | None] = {
    "gate.decided": frozenset({"approve", "edit"}),
    "payment.recorded": None,  # the operator said the money arrived
}

T = TypeVar("T")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class GuardSettings:
    rate_limit: str = "20/second"
    fail_max: int = 5
    reset_timeout: float = 60.0


def _counts_as_failure(exc: BaseException) -> bool:
    return isinstance(exc, TransientConnectorError)


class ConnectorGuard:
    """The rate limiter and circuit breaker of one connector in this worker."""

    def __init__(
        self,
        connector: str,
        settings: GuardSettings,
        *,
        on_change: Callable[[ConnectorGuard, str], None] | None = None,
    ) -> None:
        self.connector = connector
        self.settings = settings
        self._item: RateLimitItem = parse(settings.rate_limit)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        guard = self

        class _Listener(pybreaker.CircuitBreakerListener):
            def state_change(
                self,
                cb: pybreaker.CircuitBreaker,
                old_state: pybreaker.CircuitBreakerState | None,
                new_state: pybreaker.CircuitBreakerState,
            ) -> None:
                if on_change is not None:  # called before the breaker switches state
                    on_change(guard, str(new_state.name))

        self.breaker = pybreaker.CircuitBreaker(
            fail_max=settings.fail_max,
            reset_timeout=settings.reset_timeout,
            exclude=[lambda exc: not _counts_as_failure(exc)],
            listeners=[_Listener()],
            name=connector,
            throw_new_error_on_trip=False,
        )

    def call(self, fn: Callable[[], T]) -> T:
        if not self._limiter.hit(self._item, self.connector):
            stats = self._limiter.get_window_stats(self._item, self.connector)
            wait = max(stats.reset_time - time.time(), 0.1)
            raise RateLimited(
                self.connector,
                f"local rate limit {self.settings.rate_limit} reached; next call in {wait:.1f} s",
                retry_after=wait,
            )
        try:
            return self.breaker.call(fn)
        except pybreaker.CircuitBreakerError:
            wait = self.seconds_until_trial()
            raise TransientConnectorError(
                self.connector,
                f"circuit open after {self.breaker.fail_counter} failures in a row; "
                f"next trial in {wait:.0f} s",
                retry_after=wait,
            ) from None

    def seconds_until_trial(self) -> float:
        opened = self.opened_at()
        if opened is None:
            return 0.0
        elapsed = (datetime.now(UTC) - opened).total_seconds()
        return max(self.settings.reset_timeout - elapsed, 0.0)

    def opened_at(self) -> datetime | None:
        if self.breaker.current_state == pybreaker.STATE_CLOSED:
            return None
        opened = self.breaker._state_storage.opened_at  # pybreaker has no public accessor
        if opened is None:
            return None
        return opened if opened.tzinfo else opened.replace(tzinfo=UTC)

    def snapshot(self, *, state: str | None = None) -> dict[str, Any]:
        stats = self._limiter.get_window_stats(self._item, self.connector)
        limit = self._item.amount
        return {
            "connector": self.connector,
            "breaker_state": state or str(self.breaker.current_state),
            "failures": self.breaker.fail_counter,
            "opened_at": self.opened_at(),
            "rate_limit": self.settings.rate_limit,
            "rate_used": limit - stats.remaining,
            "rate_remaining": stats.remaining,
        }


class ConnectorRuntime:
    """One per worker: a guard per connector, dry-run, and the outbox for effects."""

    def __init__(
        self,
        store: KernelStore,
        *,
        guards: dict[str, GuardSettings] | None = None,
        default: GuardSettings | None = None,
        dry_run: bool = False,
        worker: str | None = None,
        scrubber: Scrubber | None = None,
        pause: PauseGate | None = None,
        shield: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self._store = store
        self._pause = pause
        # Holds a cancel of the running step back until the effect (outbox record, the effect,
        # its commit) is over: a step is cancelled before or after its effect, never within.
        self._shield = shield
        self._scrubber = scrubber  # None: the process-wide one (aios.secrets.installed)
        self._settings = guards or {}
        self._default = default or GuardSettings()
        self.dry_run = dry_run
        self.worker = worker or worker_name()
        self._guards: dict[str, ConnectorGuard] = {}
        self._lock = threading.Lock()

    def guard(self, connector: str) -> ConnectorGuard:
        with self._lock:
            guard = self._guards.get(connector)
            if guard is None:
                guard = ConnectorGuard(
                    connector,
                    self._settings.get(connector, self._default),
                    on_change=self._changed,
                )
                self._guards[connector] = guard
            return guard

    def call(self, connector: str, operation: Operation, fn: Callable[[], T]) -> T:
        """A call without an outside effect (a read, a probe), guarded."""
        if operation.effect:
            raise InvalidInput(f"{connector}.{operation.name} has an effect: use effect()")
        guard = self.guard(connector)
        return self._scrubbed(connector, lambda: guard.call(fn))

    def check(self, connector: str, probe: Callable[[], CheckResult]) -> CheckResult:
        """A synthetic-check probe, guarded: what it found, or why it failed (scrubbed)."""
        try:
            return self._scrubbed(connector, lambda: self.guard(connector).call(probe))
        except ConnectorError as exc:
            return CheckResult(ok=False, detail=str(exc))
        except Exception as exc:  # a probe must report, not crash the check run
            text = self.scrubber.scrub(f"{type(exc).__name__}: {exc}")
            return CheckResult(ok=False, detail=text[:300])

    @property
    def scrubber(self) -> Scrubber:
        return self._scrubber or installed()

    def _scrubbed(self, connector: str, run: Callable[[], T]) -> T:
        """``run()`` with its result and any error it raises scrubbed of secrets."""
        scrub = self.scrubber
        try:
            return scrub.scrub_value(run())
        except AiosError as exc:
            scrub.scrub_exception(exc)  # str(AiosError) is its first argument: always clean
            raise
        except Exception as exc:
            if scrub.scrub_exception(exc):
                raise
            raise TransientConnectorError(
                connector, scrub.scrub(f"{type(exc).__name__}: {exc}")
            ) from None
        except BaseException as exc:  # an exit: on its way out, but through the outbox record
            scrub.scrub_exception(exc)
            raise

    def effect(
        self,
        connector: str,
        operation: Operation,
        key: str,
        fn: Callable[[bool], OutboxResult],
        *,
        event: EventDraft | None = None,
        step: str | None = None,
        approval: str | None = None,
    ) -> tuple[OutboxResult, bool]:
        """Run an effect at most once for ``key``: outbox before and after, guarded.

        ``step`` names the effect in the outbox (``send_welcome``); default: the operation.
        ``approval`` is required for an irreversible operation (see the module docstring).

        ``fn(dry_run)`` performs the effect. In a dry-run worker it is called with ``True``
        and nothing is written to the outbox, so a rehearsal never blocks the real effect.
        """
        return self.committing_effect(
            connector,
            operation,
            key,
            lambda dry_run, _commit: fn(dry_run),
            event=event,
            step=step,
            approval=approval,
        )

    def committing_effect(
        self,
        connector: str,
        operation: Operation,
        key: str,
        fn: Callable[[bool, CommitPoint | None], OutboxResult],
        *,
        event: EventDraft | None = None,
        step: str | None = None,
        approval: str | None = None,
    ) -> tuple[OutboxResult, bool]:
        """``effect`` for a connector that commits the outbox row itself, just before its
        last irrevocable step (email: before the terminating dot of DATA).

        ``fn(dry_run, commit)`` gets the outbox's ``CommitPoint`` (``None`` in a dry run).
        """
        if not operation.effect:
            raise InvalidInput(f"{connector}.{operation.name} has no effect: use call()")
        if not key.strip():
            raise InvalidInput(f"{connector}.{operation.name}: an idempotency key is required")
        if self._pause is not None:
            self._pause.hold([f"connector:{connector}"], f"{connector} {step or operation.name}")
        if self.dry_run:
            return self._scrubbed(connector, lambda: fn(True, None)), False
        if operation.irreversible:
            self._check_approval(f"{connector}.{operation.name}", key, approval)
        guard = self.guard(connector)
        if event is not None:  # it may quote connector settings (a URL with a token in it)
            event = event.model_copy(update={"payload": self.scrubber.scrub_value(event.payload)})
        with self._shield():
            return self._store.outbox.run_once(
                key,
                connector=connector,
                operation=step or operation.name,
                effect=lambda commit: self._scrubbed(
                    connector, lambda: guard.call(lambda: fn(False, commit))
                ),
                event=event,
            )

    def _check_approval(self, what: str, key: str, approval: str | None) -> None:
        if approval is None or not approval.strip():
            raise PolicyRefusal(
                f"{what} cannot be undone, so it needs a human approval first; none was given"
            )
        event = self._store.events.by_key(approval)
        problem = None
        if event is None:
            problem = "no such event in the log"
        elif not key.startswith(f"{event.workflow_id}/{event.run_id}/"):
            problem = f"it belongs to {event.workflow_id} run {event.run_id}, not to this run"
        elif event.kind not in APPROVING_DECISIONS:
            problem = f"a {event.kind} event is not an approval"
        else:
            decisions = APPROVING_DECISIONS[event.kind]
            decision = event.payload.get("decision")
            if decisions is not None and decision not in decisions:
                problem = f"the decision was {decision!r}"
        if problem is not None:
            raise PolicyRefusal(f"{what} cannot be undone; approval {approval!r}: {problem}")

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            guards = list(self._guards.values())
        return [g.snapshot() for g in sorted(guards, key=lambda g: g.connector)]

    def publish(self) -> None:
        """Store this worker's guard states for ``aios health``."""
        self._store.health.save_guards(self.worker, self.snapshot())

    def _changed(self, guard: ConnectorGuard, state: str) -> None:
        # Reporting health must never break the call that changed it.
        with contextlib.suppress(Exception):
            self._store.health.save_guards(self.worker, [guard.snapshot(state=state)])
