"""Kernel activities: canonical records and the event log."""

from __future__ import annotations

import structlog
from temporalio import activity

from aios.activities.context import event_for_step
from aios.activities.errors import translating_errors
from aios.activities.models import (
    CancelEffectInput,
    RecordEventInput,
    UpsertClientInput,
    UpsertClientResult,
)
from aios.kernel.pause import CANCELLED_WAIT
from aios.kernel.store import KernelStore
from aios.kernel.stores.gates import GATE_EVENTS
from aios.kernel.stores.notices import NoticeDraft, NoticeResolution

__all__ = ["KernelActivities"]

log = structlog.get_logger("aios.gates")


class KernelActivities:
    def __init__(self, store: KernelStore) -> None:
        self._store = store

    @activity.defn(name="upsert_client")
    @translating_errors
    def upsert_client(self, inp: UpsertClientInput) -> UpsertClientResult:
        client = inp.client
        event = event_for_step(
            inp.idempotency_key,
            "client.upserted",
            entity=f"client:{client.key}",
            payload={"segment": client.segment, "email": client.email},
        )
        stored = self._store.clients.upsert(client, event=event)
        return UpsertClientResult(client_key=stored.key)

    @activity.defn(name="record_event")
    @translating_errors
    def record_event(self, inp: RecordEventInput) -> None:
        event = event_for_step(
            inp.idempotency_key, inp.kind, entity=inp.entity, payload=inp.payload
        )
        if inp.kind in GATE_EVENTS:  # the gate projection changes in the same transaction
            self._store.gates.apply(event, workflow_type=activity.info().workflow_type or "")
        else:
            self._store.events.append(event)
        if inp.kind == "gate.decided":  # the line carries the run's workflow and run ids
            p = inp.payload
            log.info(
                f"gate {p.get('gate')} {p.get('decision')} by {p.get('approver')}",
                gate=p.get("gate"),
                decision=p.get("decision"),
                approver=p.get("approver"),
                edited_fields=p.get("edited_fields"),
                waited_seconds=p.get("waited_seconds"),
            )

    @activity.defn(name="open_notice")
    @translating_errors
    def open_notice(self, draft: NoticeDraft) -> int:
        """Open a notice in the inbox (idempotent by its key); a run's notice names the run."""
        if draft.workflow_id is None:
            draft = draft.model_copy(update={"workflow_id": activity.info().workflow_id})
        return self._store.notices.open(draft).id

    @activity.defn(name="resolve_notice")
    @translating_errors
    def resolve_notice(self, request: NoticeResolution) -> None:
        self._store.notices.resolve(request.key, by=request.by, resolution=request.resolution)

    @activity.defn(name="cancel_effect")
    @translating_errors
    def cancel_effect(self, inp: CancelEffectInput) -> bool:
        """Cancel an effect step the run no longer needs, unless it is done (``Outbox.cancel``).

        Returns whether it was cancelled here; an ``outbox.cancelled`` event says so. If the
        step waits at a paused switch, its notice is resolved now: the step itself learns of
        the cancel only with its next heartbeat's answer, up to half a minute later.
        """
        cancelled = self._store.outbox.cancel(
            inp.idempotency_key,
            connector=inp.connector,
            operation=inp.operation,
            reason=inp.reason,
            event=event_for_step(
                f"{inp.idempotency_key}/outbox.cancelled",
                "outbox.cancelled",
                payload={"idempotency_key": inp.idempotency_key, "reason": inp.reason},
            ),
        )
        if cancelled:
            workflow_id = activity.info().workflow_id or ""
            what = f"{inp.connector} {inp.operation}"
            for notice in self._store.notices.paused_steps(workflow_id, what):
                self._store.notices.resolve(notice.key, by="aios", resolution=CANCELLED_WAIT)
        return cancelled
