"""What a draft needs from memory: recalls with provenance and the operator's corrections."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.memory import MemoryActivities
    from aios.activities.models import (
        RecallCorrectionsInput,
        RecallForDraftInput,
        RecallMemoryInput,
        RecallMemoryResult,
    )
    from aios.agents.corrections import CorrectionHint
    from aios.workflows import versions
    from aios.workflows.steps import step
    from aios.workflows.timeouts import MEMORY

__all__ = ["OPERATOR_CORRECTIONS", "recall_for_draft"]

# Patch: recall the operator's corrections before a draft, and remember an edit at a gate as
# one (see ``versions``).
OPERATOR_CORRECTIONS = "operator-corrections"


async def recall_for_draft(
    queries: list[RecallMemoryInput], corrections: RecallCorrectionsInput, *, apply: bool
) -> tuple[list[RecallMemoryResult], list[CorrectionHint] | None]:
    """Run ``queries`` (results in order) and, with ``apply`` (the policy applies corrections)
    in a run that has ``operator-corrections``, recall ``corrections`` too (else ``None``).

    One memory step for all of them (``recall_for_draft``); runs started before
    ``fewer-round-trips`` take one step per recall, as their histories hold.
    """
    if versions.fewer_round_trips():
        wanted = corrections if apply and versions.patched(OPERATOR_CORRECTIONS) else None
        found = await step(
            MemoryActivities.recall_for_draft,
            RecallForDraftInput(queries=queries, corrections=wanted),
            MEMORY,
            summary=f"recall for draft: {len(queries)} quer{'y' if len(queries) == 1 else 'ies'}"
            + (f", corrections to {wanted.agent}" if wanted else ""),
        )
        return found.results, (found.corrections if wanted else None)
    results = [await step(MemoryActivities.recall_memory, q, MEMORY) for q in queries]
    if not (versions.patched(OPERATOR_CORRECTIONS) and apply):  # in this order, as before
        return results, None
    learnt = await step(MemoryActivities.recall_corrections, corrections, MEMORY)
    return results, learnt.corrections
