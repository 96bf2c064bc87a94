"""Memory activities: recall with provenance, remember idempotently, look memory up.

They run on the memory task queue (``<task queue>-memory``, ``aios-memory`` by default), served
by the process that owns the memory store; ``MEMORY_ACTIVITY_NAMES`` lists them so worker
assembly can put them there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from aios.activities.context import event_for_step
from aios.activities.errors import translating_errors
from aios.activities.models import (
    RecallCorrectionsInput,
    RecallCorrectionsResult,
    RecallForDraftInput,
    RecallForDraftResult,
    RecallMemoryInput,
    RecallMemoryResult,
    RememberCorrectionInput,
    RememberCorrectionResult,
    RememberInput,
    RememberResult,
)
from aios.agents.corrections import CorrectionHint, Replacement, replacements_from_edit
from aios.errors import InvalidInput
from aios.kernel.money import format_amount
from aios.kernel.store import KernelStore
from aios.kernel.stores.corrections import CorrectionRecord
from aios.memory.records import MemoryQuery, MemoryView
from aios.memory.store import MemoryStore, lookup

__all__ = ["MEMORY_ACTIVITY_NAMES", "MemoryActivities"]

MEMORY_ACTIVITY_NAMES = frozenset(
    {
        "recall_memory",
        "recall_for_draft",
        "remember",
        "lookup_memory",
        "remember_correction",
        "recall_corrections",
    }
)
CORRECTION_KIND = "operator_correction"
# How similar (cosine) a client must be for a correction learnt on them to be recalled.
CORRECTION_MIN_SCORE = 0.5


class MemoryActivities:
    def __init__(self, memory: MemoryStore, store: KernelStore) -> None:
        self._memory = memory
        self._store = store

    def activities(self) -> list[Callable[..., Any]]:
        """Every memory activity (``MEMORY_ACTIVITY_NAMES``), bound to this store: what the
        worker serving the memory task queue registers."""
        return [getattr(self, name) for name in sorted(MEMORY_ACTIVITY_NAMES)]

    @activity.defn(name="recall_memory")
    @translating_errors
    def recall_memory(self, inp: RecallMemoryInput) -> RecallMemoryResult:
        return self._recall(inp)

    def _recall(self, inp: RecallMemoryInput) -> RecallMemoryResult:
        found = self._memory.recall(
            inp.query, kinds=inp.kinds or None, entity=inp.entity, limit=inp.limit
        )
        return RecallMemoryResult(memories=found)

    @activity.defn(name="recall_for_draft")
    @translating_errors
    def recall_for_draft(self, inp: RecallForDraftInput) -> RecallForDraftResult:
        """``recall_memory`` for each query and ``recall_corrections`` when asked: what a draft
        needs from memory, in one step instead of one per recall."""
        learnt = (
            self._corrections(inp.corrections)
            if inp.corrections is not None
            else RecallCorrectionsResult()
        )
        return RecallForDraftResult(
            results=[self._recall(query) for query in inp.queries],
            corrections=learnt.corrections,
        )

    @activity.defn(name="remember")
    @translating_errors
    def remember(self, inp: RememberInput) -> RememberResult:
        info = activity.info()
        record = self._memory.remember(
            inp.text,
            entity=inp.entity,
            kind=inp.kind,
            source_workflow_id=info.workflow_id or "",
            source_run_id=info.workflow_run_id or "",
            idempotency_key=inp.idempotency_key,
        )
        self._store.events.append(
            event_for_step(
                inp.idempotency_key,
                "memory.stored",
                entity=inp.entity,
                payload={
                    "point_id": record.id,
                    "kind": inp.kind,
                    "version": record.provenance.version,
                },
            )
        )
        return RememberResult(id=record.id, version=record.provenance.version)

    @activity.defn(name="remember_correction")
    @translating_errors
    def remember_correction(self, inp: RememberCorrectionInput) -> RememberCorrectionResult:
        """Store the operator's edit at a gate as memory kind ``operator_correction`` (entity
        ``agent:<agent>``, searchable by the client's profile) and its replacements in the
        kernel under the same id (event ``correction.stored``). An edit that changed nothing
        stores nothing."""
        before = self._fields(inp.document, inp.draft_before)
        after = self._fields(inp.document, inp.draft_after)
        replacements = replacements_from_edit(before, after, client_name=inp.client_name)
        if not replacements:
            return RememberCorrectionResult()
        info = activity.info()
        # The text is the client's description alone: what the next client is compared with
        # (any other words would blur that); what changed is in the kernel under the same id.
        record = self._memory.remember(
            inp.client_profile,
            entity=f"agent:{inp.agent}",
            kind=CORRECTION_KIND,
            source_workflow_id=info.workflow_id or "",
            source_run_id=info.workflow_run_id or "",
            idempotency_key=inp.idempotency_key,
        )
        self._store.corrections.save(
            CorrectionRecord(
                id=record.id,
                agent=inp.agent,
                gate=inp.gate,
                client_key=inp.client_key,
                client_name=inp.client_name,
                workflow_id=info.workflow_id or "",
                run_id=info.workflow_run_id or "",
                draft_before=inp.draft_before,
                draft_after=inp.draft_after,
                replacements=[r.model_dump() for r in replacements],
                approver=inp.approver,
                comment=inp.comment,
            )
        )
        return RememberCorrectionResult(id=record.id, replacements=len(replacements))

    def _fields(self, document: str, document_id: str) -> dict[str, str]:
        """The fields an edit may change, as text: a welcome draft's subject and body; a
        proposal version's terms, total and discount."""
        if document == "draft":
            draft = self._store.drafts.get(document_id)
            if draft is not None:
                return {"subject": draft.subject, "body": draft.body}
        else:
            version = self._store.proposals.get_version(document_id)
            if version is not None:
                return {
                    "terms": version.terms,
                    "total": format_amount(version.total_minor, version.currency),
                    "discount_pct": f"{version.discount_pct}%",
                }
        raise InvalidInput(f"remember_correction: {document} {document_id!r} does not exist")

    @activity.defn(name="recall_corrections")
    @translating_errors
    def recall_corrections(self, inp: RecallCorrectionsInput) -> RecallCorrectionsResult:
        """The operator's corrections to ``agent``'s drafts for the clients most similar to
        ``query``, most similar first."""
        return self._corrections(inp)

    def _corrections(self, inp: RecallCorrectionsInput) -> RecallCorrectionsResult:
        hits = self._memory.recall(
            inp.query,
            kinds=[CORRECTION_KIND],
            entity=f"agent:{inp.agent}",
            limit=inp.limit,
            min_score=CORRECTION_MIN_SCORE,
        )
        score = {h.id: h.score for h in hits}
        return RecallCorrectionsResult(
            corrections=[
                CorrectionHint(
                    id=c.id,
                    client_name=c.client_name,
                    score=score[c.id],
                    approver=c.approver,
                    replacements=[Replacement.model_validate(r) for r in c.replacements],
                )
                for c in self._store.corrections.get_many([h.id for h in hits])
            ]
        )

    @activity.defn(name="lookup_memory")
    @translating_errors
    def lookup_memory(self, inp: MemoryQuery) -> MemoryView:
        """Read memory for a person (``aios memory``, the console): no effect."""
        return lookup(self._memory, inp)
