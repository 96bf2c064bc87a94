"""Signals in workflow code: every payload is validated inside the workflow, none can fail it.

A process declares the signals it takes with ``SignalHost.accept(name, Model, apply)``. One
dynamic handler receives every signal the run gets, whatever its name, number of payloads or
encoding, as raw payloads that cannot fail to convert. It then checks, in this order:

1. the name is one the run takes;
2. exactly one payload came (``temporal workflow signal`` without ``--input``, or with two);
3. the payload is JSON (``json/plain``; not ``binary/plain``, protobuf or anything else);
4. the JSON fits ``Model`` (pydantic: field names, types, lengths, characters);
5. ``apply(model)`` accepts it (the process's own rules: the gate is open, the amount is
   within the balance...).

A signal that fails any check is rejected: counted, logged, and written to the event log as
``signal.rejected`` with the signal name and a one-line reason. The run keeps waiting, and a
valid signal sent afterwards applies as usual. Reasons never echo what was sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from aios.activities.kernel import KernelActivities
    from aios.activities.models import RecordEventInput
    from aios.converter import describe_validation
    from aios.workflows.steps import step, step_key
    from aios.workflows.timeouts import LOCAL_WRITE

__all__ = ["SignalHost", "SignalLog", "decode_payloads", "describe_invalid"]

ModelT = TypeVar("ModelT", bound=BaseModel)
JSON_ENCODING = "json/plain"
MAX_SHOWN_NAME = 60


def describe_invalid(error: Exception) -> str:
    """One line naming what is wrong with a payload (field and problem, never the value)."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, ValidationError):
        cause = cause.__cause__
    if isinstance(cause, ValidationError):
        return describe_validation(cause)
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__


def shown_name(name: str) -> str:
    """A signal name as it may appear in a reason: quoted, escaped, cut."""
    return ascii(name[:MAX_SHOWN_NAME]) + ("..." if len(name) > MAX_SHOWN_NAME else "")


def decode_payloads(args: Sequence[RawValue], model: type[ModelT]) -> ModelT | str:
    """The one payload in ``args`` as ``model``, or one line saying what is wrong with it."""
    if len(args) != 1:
        if not args:
            return f"no payload: send one JSON object ({model.__name__})"
        return f"{len(args)} payloads: send exactly one JSON object ({model.__name__})"
    payload = args[0].payload
    encoding = payload.metadata.get("encoding", b"").decode("utf-8", "replace")
    if encoding != JSON_ENCODING:
        return (
            f"payload encoding {encoding[:40]!a} is not {JSON_ENCODING}: "
            f"send one JSON object ({model.__name__})"
        )
    try:
        value = workflow.payload_converter().from_payload(payload, model)
    except Exception as exc:
        return describe_invalid(exc)
    if not isinstance(value, model):  # a converter that ignored the type hint
        return f"not a JSON object of the expected shape ({model.__name__})"
    return value


@dataclass
class SignalLog:
    """Rejected signals, counted, and queued until the workflow records them as events."""

    total: int = 0
    last: str | None = None
    pending: list[tuple[str, str]] = field(default_factory=list)

    def reject(self, signal: str, reason: str) -> None:
        workflow.logger.warning("rejected a %s signal: %s", signal, reason)
        self.total += 1
        self.last = f"{signal}: {reason}"
        self.pending.append((signal, reason))

    async def flush(self) -> None:
        """Write every rejection not yet in the event log (once each, keyed by its number)."""
        while self.pending:
            signal, reason = self.pending.pop(0)
            n = self.total - len(self.pending)
            await step(
                KernelActivities.record_event,
                RecordEventInput(
                    idempotency_key=step_key(f"signal/rejected/{n}"),
                    kind="signal.rejected",
                    payload={"signal": signal, "reason": reason},
                ),
                LOCAL_WRITE,
            )


@dataclass(frozen=True)
class _Route:
    model: type[BaseModel]
    apply: Callable[[Any], str | None]


class SignalHost:
    """Base for workflows that take signals: one handler for all, rejections logged."""

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}
        self._signals = SignalLog()

    def accept(self, name: str, model: type[ModelT], apply: Callable[[ModelT], str | None]) -> None:
        """Take signal ``name`` with a ``model`` payload; ``apply`` returns why it is refused,
        or ``None`` after applying it."""
        self._routes[name] = _Route(model, apply)

    @workflow.signal(dynamic=True)
    def _signal(self, name: str, args: Sequence[RawValue]) -> None:
        route = self._routes.get(name)
        if route is None:
            takes = ", ".join(sorted(self._routes)) or "none"
            self.reject_signal(shown_name(name), f"this run takes no such signal (takes: {takes})")
            return
        value = decode_payloads(args, route.model)
        problem = value if isinstance(value, str) else route.apply(value)
        if problem:
            self.reject_signal(name, problem)

    def reject_signal(self, name: str, reason: str) -> None:
        self._signals.reject(name, reason)

    @property
    def signal_log(self) -> SignalLog:
        return self._signals
