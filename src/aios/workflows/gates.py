"""Human gates: a workflow waits for the operator's decision, a plain Temporal signal.

Signal ``decide`` takes one JSON object::

    {"decision": "approve" | "reject" | "edit", "approver": "you", "comment": "why",
     "edits": {"subject": "...", "body": "..."}, "gate": "welcome"}

``approver`` is required; ``edits`` is required for ``edit`` (which approves the edited
version) and not allowed otherwise; ``gate`` is optional and, when given, must name the gate
that is waiting. A payload that does not fit is rejected without failing the workflow: the gate
keeps waiting, the rejection is counted and shown by query ``pending_gates``, logged, and
written to the event log as ``signal.rejected`` (``workflows.signals``: any number of payloads,
any encoding, any characters). While a gate waits the workflow sets search attribute
``AiosAwaitingApproval=true``; a gate may also check the edited values (``check_edits``), so
an edit that could not be applied is rejected the same way. It reminds the operator every
``remind_after`` and expires at ``expire_after`` (both from the run's ``GatePolicy``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from aios.activities.connectors import ConnectorActivities
    from aios.activities.kernel import KernelActivities
    from aios.activities.models import (
        CancelEffectInput,
        RecordEventInput,
        SendGateReminderInput,
    )
    from aios.kernel.policy import GatePolicy
    from aios.workflows import versions
    from aios.workflows.attributes import AWAITING_APPROVAL
    from aios.workflows.contract import (
        DECIDE_SIGNAL,
        PENDING_GATES_QUERY,
        GateDecision,
        PendingGate,
    )
    from aios.workflows.signals import SignalHost
    from aios.workflows.steps import drop, step, step_key
    from aios.workflows.timeouts import CONNECTOR_EFFECT, KERNEL_WRITE, LOCAL_WRITE
    from aios.workflows.waiting import Schedule, wait_until

__all__ = ["DECIDE_SIGNAL", "GATE_EMAIL", "GateDecision", "GateHost", "GateOutcome", "PendingGate"]

# Patch: the operator's gate email goes out when a gate opens (reminder 0), not only reminders.
GATE_EMAIL = "gate-email"


class GateOutcome(BaseModel):
    gate: str
    status: Literal["approved", "rejected", "edited", "expired"]
    decision: GateDecision | None = None
    waited_seconds: float
    # The event recording the decision: what an irreversible effect names as its approval.
    event_key: str | None = None


EDIT_EXAMPLES = {"subject": "New subject", "body": "New body", "total": "4000.00"}


def gate_details(
    gate: str,
    title: str,
    summary: str,
    expires: datetime,
    editable_fields: list[str],
    amount: str | None,
) -> str:
    """The run's current details while ``gate`` waits: what it asks, and the exact commands
    that answer it (the Web UI shows this on the run's page)."""
    info = workflow.info()
    wid = info.workflow_id
    lines = [
        f"**Waiting for your decision** at gate `{gate}`: {title}"
        + (f" ({amount})" if amount else ""),
        "",
        summary[:500],
        "",
        f"- approve: `aios approve {wid}`",
        f'- reject: `aios reject {wid} --comment "why"`',
    ]
    if editable_fields:
        example = {f: EDIT_EXAMPLES.get(f, "...") for f in editable_fields[:1]}
        payload = json.dumps({"decision": "edit", "approver": "you", "edits": example})
        lines.append(
            f"- edit ({', '.join(editable_fields)}): `temporal workflow signal --namespace "
            f"{info.namespace} --workflow-id {wid} --name {DECIDE_SIGNAL} --input '{payload}'`"
        )
    payload = json.dumps({"decision": "approve", "approver": "you"})
    lines += [
        f"- or with the Temporal CLI: `temporal workflow signal --namespace {info.namespace} "
        f"--workflow-id {wid} --name {DECIDE_SIGNAL} --input '{payload}'`",
        "",
        f"Expires {expires:%Y-%m-%d %H:%M} UTC if nobody decides.",
    ]
    return "\n".join(lines)


class GateHost(SignalHost):
    """Base for workflows with human gates: signal ``decide`` and query ``pending_gates``."""

    def __init__(self) -> None:
        super().__init__()
        self._open: PendingGate | None = None
        self._decision: GateDecision | None = None
        self._check_edits: Callable[[dict[str, str]], str | None] | None = None
        self._opened: dict[str, int] = {}
        self._gate_key = ""
        self.accept(DECIDE_SIGNAL, GateDecision, self._decide)

    def _decide(self, decision: GateDecision) -> str | None:
        problem = self._check(decision)
        if problem is None:
            self._decision = decision
        return problem

    @workflow.query(name=PENDING_GATES_QUERY)
    def pending_gates(self) -> list[PendingGate]:
        return [self._open] if self._open else []

    def _check(self, decision: GateDecision) -> str | None:
        gate = self._open
        if gate is None:
            return "no gate is waiting for a decision"
        if self._decision is not None:
            return f"gate {gate.gate!r} already has a decision"
        if decision.gate is not None and decision.gate != gate.gate:
            return f"gate: {decision.gate!r} is not waiting (waiting: {gate.gate!r})"
        unknown = sorted(set(decision.edits) - set(gate.editable_fields))
        if unknown:
            allowed = ", ".join(gate.editable_fields) or "none"
            return f"edits.{unknown[0]}: not an editable field (editable: {allowed})"
        if decision.edits and self._check_edits is not None:
            return self._check_edits(decision.edits)
        return None

    def reject_signal(self, name: str, reason: str) -> None:
        super().reject_signal(name, reason)
        if self._open is not None:
            self._open.rejected_signals += 1
            self._open.last_rejection = f"{name}: {reason}" if name != DECIDE_SIGNAL else reason

    async def wait_for_decision(
        self,
        *,
        gate: str,
        title: str,
        summary: str,
        policy: GatePolicy,
        editable_fields: list[str],
        entity: str | None = None,
        amount: str | None = None,
        drafted_by: str | None = None,
        check_edits: Callable[[dict[str, str]], str | None] | None = None,
        details: dict[str, Any] | None = None,
    ) -> GateOutcome:
        """Open ``gate`` and wait until the operator decides or the policy expires it.

        ``details`` are the gate's own facts for the console (a budget gate's estimate and what
        it pays for, an agent gate's reason and candidate answers, a connectors gate's failing
        checks): small JSON values, recorded with ``gate.requested`` and in the gate projection.
        The operator gets an email when the gate opens and again at each reminder.
        """
        requested = workflow.now()
        # A gate opened again in the same run (a second budget gate, a counter-offer's
        # approval) gets its own step keys: "gate/<name>", then "gate/<name>#2"...
        opened = self._opened[gate] = self._opened.get(gate, 0) + 1
        self._gate_key = f"gate/{gate}" if opened == 1 else f"gate/{gate}#{opened}"
        expires = requested + policy.expire_after
        reminders = [requested + offset for offset in policy.reminder_times()]
        self._decision = None
        self._check_edits = check_edits
        self._open = PendingGate(
            gate=gate,
            title=title,
            summary=summary,
            requested_at=requested,
            expires_at=expires,
            next_reminder_at=reminders[0] if reminders else None,
            editable_fields=editable_fields,
            amount=amount,
            drafted_by=drafted_by,
        )
        workflow.upsert_search_attributes([AWAITING_APPROVAL.value_set(True)])
        workflow.set_current_details(
            gate_details(gate, title, summary, expires, editable_fields, amount)
        )
        await self._gate_event(
            gate,
            "gate.requested",
            entity,
            {
                "title": title,
                "summary": summary,
                "expires_at": expires.isoformat(),
                **({"drafted_by": drafted_by} if drafted_by else {}),
                # What the gate projection's row needs (kernel.stores.gates).
                "requested_at": requested.isoformat(),
                "run_started_at": workflow.info().workflow_start_time.isoformat(),
                "next_reminder_at": reminders[0].isoformat() if reminders else None,
                "editable_fields": list(editable_fields),
                "amount": amount,
                "details": details or {},
                # The policy version that set this gate's reminders and expiry.
                "policy_version": policy.version,
            },
        )
        schedule = Schedule(reminders=reminders, deadline=expires)

        def email(n: int) -> SendGateReminderInput:
            return SendGateReminderInput(
                idempotency_key=step_key(f"{self._gate_key}/reminder/{n}"),
                gate=gate,
                title=title,
                summary=summary,
                requested_at=requested,
                expires_at=expires,
                reminder=n,
                gate_key=self._gate_key,
                amount=amount,
                drafted_by=drafted_by,
                next_reminder_at=schedule.next_reminder,
            )

        async def first_email() -> None:
            try:
                await step(ConnectorActivities.send_gate_reminder, email(0), CONNECTOR_EFFECT)
            except ActivityError as exc:  # the gate waits all the same; the inbox shows it
                if isinstance(exc.cause, CancelledError):
                    raise
                workflow.logger.warning(
                    "gate %s: the operator's email could not be sent: %s", gate, exc.cause or exc
                )

        # Runs with fewer-round-trips wait for the decision, not for the gate's email: a
        # decision made while the email is still on its way (held at a paused switch, a slow
        # server) acts at once, and the email that is no longer needed is cancelled. Earlier
        # runs sent the email before they looked at any decision.
        emailing: asyncio.Task[None] | None = None
        if self._decision is None and versions.patched(GATE_EMAIL):
            if versions.fewer_round_trips():
                emailing = asyncio.ensure_future(first_email())
            else:
                await first_email()

        async def remind(n: int) -> None:
            assert self._open is not None
            self._open.reminders_sent = n
            self._open.next_reminder_at = schedule.next_reminder
            await step(ConnectorActivities.send_gate_reminder, email(n), CONNECTOR_EFFECT)

        def unsent(n: int) -> CancelEffectInput:
            return CancelEffectInput(
                idempotency_key=email(n).idempotency_key,
                connector="email",
                operation="send_gate_reminder",
                reason=f"gate {gate} no longer waits for a decision",
            )

        try:
            await wait_until(
                lambda: self._decision is not None,
                schedule,
                remind=remind,
                signals=self.signal_log,
                summary=f"gate {gate}",
                unsent=unsent,
            )
        except GeneratorExit:  # the run left this worker's cache: nothing to cancel from here
            emailing = None
            raise
        finally:  # decided, expired, or the run cancelled: the first email is not needed now
            if emailing is not None and not emailing.done():
                await asyncio.shield(asyncio.ensure_future(drop(emailing, unsent(0))))
        sent = schedule.sent
        decision = self._decision
        self._open = None
        workflow.upsert_search_attributes([AWAITING_APPROVAL.value_set(False)])
        workflow.set_current_details(f"Gate `{gate}` answered; working.")
        await self.signal_log.flush()
        waited = (workflow.now() - requested).total_seconds()
        if decision is None:
            await self._gate_event(
                gate,
                "gate.expired",
                entity,
                {
                    "waited_seconds": waited,
                    "reminders_sent": sent,
                    "expired_at": workflow.now().isoformat(),
                    "policy_version": policy.version,
                },
            )
            return GateOutcome(gate=gate, status="expired", waited_seconds=waited)
        status: Literal["approved", "rejected", "edited"] = {
            "approve": "approved",
            "reject": "rejected",
            "edit": "edited",
        }[decision.decision]
        await self._gate_event(
            gate,
            "gate.decided",
            entity,
            {
                "decision": decision.decision,
                "approver": decision.approver,
                "comment": decision.comment,
                "edited_fields": sorted(decision.edits),
                "waited_seconds": waited,
                "reminders_sent": sent,
                "decided_at": workflow.now().isoformat(),
            },
        )
        return GateOutcome(
            gate=gate,
            status=status,
            decision=decision,
            waited_seconds=waited,
            event_key=step_key(f"{self._gate_key}/gate.decided"),
        )

    async def _gate_event(self, gate: str, kind: str, entity: str | None, payload: dict) -> None:
        await step(
            KernelActivities.record_event,
            RecordEventInput(
                idempotency_key=step_key(f"{self._gate_key}/{kind}"),
                kind=kind,
                entity=entity,
                # gate_key names the gate's row in the projection ("gate/budget#2").
                payload={"gate": gate, "gate_key": self._gate_key, **payload},
            ),
            # The gate's row in the projection is what the inbox, the console and scripts
            # answer: it must never show a gate the run's history has not opened yet.
            KERNEL_WRITE if kind == "gate.requested" else LOCAL_WRITE,
        )
