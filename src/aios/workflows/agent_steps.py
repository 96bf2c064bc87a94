"""Agent steps in workflow code: run the step, and when it holds, ask the operator.

An agent activity either returns its output or an ``AgentHold``. ``run_agent_step`` turns a
hold into a gate on the running workflow and runs the step again with the operator's answer:

- gate ``budget`` ("budget exceeded: approve spending of ~$X?"): approve makes exactly that
  call past the monthly cap; reject (or expiry) lets the step go on without spending, on the
  deterministic template provider.
- gate ``agent`` (content filter, invalid request, no usable or confident answer): approve
  continues with the fallback the hold names (the template draft, or the model's most confident
  answer); reject (or expiry) ends the step with ``AgentStepStopped``, and the workflow ends
  the run the way it ends a rejected draft.

Replies the step already paid for are reused from the cost ledger, so asking again costs
nothing. After each try the workflow's ``AiosCostUsd`` is set from the ledger's total for the
run, through ``on_cost``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.models import AgentControls, AgentHold
    from aios.kernel.policy import GatePolicy
    from aios.workflows.gates import GateHost
    from aios.workflows.steps import step
    from aios.workflows.timeouts import MODEL_CALL

__all__ = ["AgentStepStopped", "run_agent_step"]

BUDGET_GATE = "budget"
AGENT_GATE = "agent"


class HeldResult(Protocol):
    @property
    def hold(self) -> AgentHold | None: ...
    @property
    def run_cost_usd(self) -> float: ...


ArgT = TypeVar("ArgT")
ResT = TypeVar("ResT", bound=HeldResult)


class AgentStepStopped(Exception):
    """The operator rejected an agent gate, or let it expire."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _fallback_text(hold: AgentHold) -> str:
    if hold.fallback == "best":
        best = max(
            (a for a in hold.attempts if a.confidence is not None),
            key=lambda a: a.confidence or 0.0,
            default=None,
        )
        what = f"{best.model}'s answer (confidence {best.confidence:.2f})" if best else "the best"
        return f"approve uses {what}; reject stops the run"
    return "approve uses the offline template draft (no model); reject stops the run"


async def run_agent_step(
    host: GateHost,
    fn: Callable[[Any, ArgT], ResT],
    make_input: Callable[[AgentControls], ArgT],
    *,
    title: str,
    gate_policy: GatePolicy,
    entity: str | None,
    on_cost: Callable[[float], None],
) -> ResT:
    controls = AgentControls()
    while True:
        result = await step(fn, make_input(controls), MODEL_CALL)
        on_cost(result.run_cost_usd)
        hold = result.hold
        if hold is None:
            return result
        if hold.kind == "budget":
            outcome = await host.wait_for_decision(
                gate=BUDGET_GATE,
                title=f"{title}: budget exceeded",
                summary=f"{hold.reason} Approve makes the call; reject goes on without the "
                "model (template provider, no cost).",
                policy=gate_policy,
                editable_fields=[],
                entity=entity,
                amount=f"~${hold.estimate_usd:.4f}",
                details={
                    "agent": hold.agent,
                    "reason": hold.reason,
                    "estimate_usd": hold.estimate_usd,
                    "pays_for": title,
                    "call_key": hold.call_key,
                },
            )
            if outcome.status == "approved":
                controls = controls.model_copy(
                    update={"approved_calls": [*controls.approved_calls, hold.call_key]}
                )
            else:
                controls = controls.model_copy(
                    update={
                        "use": "template",
                        "use_reason": f"budget gate {outcome.status}: no model spend",
                    }
                )
            continue
        outcome = await host.wait_for_decision(
            gate=AGENT_GATE,
            title=f"{title}: the {hold.agent} agent needs you",
            summary=f"{hold.reason}. {_fallback_text(hold)}.",
            policy=gate_policy,
            editable_fields=[],
            entity=entity,
            details={
                "agent": hold.agent,
                "reason": hold.reason,
                "fallback": _fallback_text(hold),
                # The candidate answers: which model, how sure; the console shows the start of
                # each reply from the cost ledger, so the texts stay out of the history.
                "attempts": [a.model_dump() for a in hold.attempts],
            },
        )
        if outcome.status != "approved":
            comment = outcome.decision.comment if outcome.decision else ""
            raise AgentStepStopped(
                outcome.status,
                f"{hold.agent} agent: {hold.reason}"
                + (f"; operator: {comment}" if comment else ""),
            )
        approver = outcome.decision.approver if outcome.decision else "operator"
        controls = controls.model_copy(
            update={
                "use": hold.fallback,
                "use_reason": f"approved by {approver} after: {hold.reason}",
            }
        )
