"""Workflows with a deliberate bug, registered under the real names, for tests only.

A worker that runs one of these fails the workflow task at the bug; a worker with the real
class then resumes the run from history, as a fixed deployment would.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.workflows.gates import GateDecision
    from aios.workflows.onboarding import OnboardingInput, OnboardingResult, OnboardingWorkflow


@workflow.defn(name="OnboardingWorkflow")
class BrokenAfterWelcome(OnboardingWorkflow):
    """Raises ``KeyError`` in workflow code right after the welcome email went out."""

    @workflow.run
    async def run(self, inp: OnboardingInput) -> OnboardingResult:
        return await super().run(inp)

    def _done(self, name: str) -> None:
        if name.startswith("kickoff-event"):
            raise KeyError("deliberate bug after send-welcome")
        super()._done(name)


@workflow.defn(name="OnboardingWorkflow")
class BrokenOnDecision(OnboardingWorkflow):
    """Raises ``KeyError`` in the ``decide`` handler when the comment is ``boom``."""

    @workflow.run
    async def run(self, inp: OnboardingInput) -> OnboardingResult:
        return await super().run(inp)

    def _decide(self, decision: GateDecision) -> str | None:
        if decision.comment == "boom":
            raise KeyError("deliberate bug in the decide handler")
        return super()._decide(decision)
