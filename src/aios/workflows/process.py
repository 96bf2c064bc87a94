"""The platform half of every business process; each workflow keeps only its business steps.

``Process`` (a ``GateHost``, so a ``SignalHost``) owns what every process does the same way:

- **search attributes**: ``AiosProcess`` and ``AiosClient`` at the start (``begin``),
  ``AiosCostUsd`` as agent spend grows (``set_cost``), ``AiosAwaitingApproval`` while a gate
  waits (``GateHost``) and ``AiosOutcome`` when the run ends (``completed``, ``rejected``,
  ``expired``, ``accepted``, ``declined``, ``paid``, ``cancelled``, ``failed``), so a rejected
  onboarding never looks like a plain "completed" in the Web UI or ``aios status``;
- **user metadata**: ``workflow.set_current_details`` says what the run is doing or waits for
  and the exact command that answers it (the Web UI shows it on the run's page); every activity
  gets a summary (``steps.step``);
- **progress**: the steps done and the compensations pending, for the typed ``progress`` query
  (``workflows.progress``);
- **the end**: one end event ``<process>.<outcome>`` (``end``), the outcome attribute, rejected
  signals written out, and ``all_handlers_finished`` before the run returns (``close``);
- **the saga rule**: ``guard`` runs the business steps; on an exception that really ends the
  run (cancellation, a failure that fails the workflow) it runs the compensations and records
  the end; on a bug in workflow code it does nothing, so the workflow task fails and Temporal
  retries it (``saga.ends_run``).

Commands that runs started before this base did not issue (the outcome attribute, writing late
signal rejections at the end) are behind ``versions.patched(PROCESS_BASE)``, so their histories
replay unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from aios.activities.health import HealthActivities
    from aios.activities.models import ConnectorPlanInput
    from aios.workflows import versions
    from aios.workflows.attributes import CLIENT, COST_USD, OUTCOME, PROCESS
    from aios.workflows.gates import GateHost
    from aios.workflows.saga import Saga
    from aios.workflows.steps import record, step
    from aios.workflows.timeouts import CONNECTOR_PLAN

__all__ = ["PROCESS_BASE", "Process"]

PROCESS_BASE = "process-base"
T = TypeVar("T")


class Process(GateHost):
    """Base of every business-process workflow (see the module docstring)."""

    NAME: ClassVar[str] = ""
    # The idempotency step name of the end event; ``{outcome}`` is filled in.
    END_KEY: ClassVar[str] = "{process}.{outcome}"

    def __init__(self) -> None:
        super().__init__()
        self._steps: list[str] = []
        self._saga = Saga()
        self._cost = 0.0
        self._outcome: str | None = None
        self._connectors: list[str] | None = None
        self._cost_shown: float | None = None  # what AiosCostUsd holds

    # --- start ---------------------------------------------------------------------------

    def begin(self, client_key: str, *, tracks_cost: bool = False) -> None:
        attributes: list[SearchAttributeUpdate[Any]] = [
            PROCESS.value_set(self.NAME),
            CLIENT.value_set(client_key),
        ]
        if tracks_cost:
            attributes.append(COST_USD.value_set(0.0))
            self._cost_shown = 0.0
        workflow.upsert_search_attributes(attributes)
        self.set_details("Working: no decision is needed from you yet.")

    # --- while running -------------------------------------------------------------------

    def _done(self, name: str) -> None:
        self._steps.append(name)

    def set_cost(self, run_cost_usd: float) -> None:
        """Keep ``AiosCostUsd`` equal to the run's model spend (written when it changes)."""
        self._cost = round(run_cost_usd, 6)
        if self._cost == self._cost_shown and versions.fewer_round_trips():
            return
        self._cost_shown = self._cost
        workflow.upsert_search_attributes([COST_USD.value_set(self._cost)])

    async def connector_configured(self, name: str) -> bool:
        """Whether optional connector ``name`` (``webhook``, ``caldav``, ``hubspot``) is
        configured. The run asks the worker once (a local activity, so the answer is in its
        history) and keeps the answer; runs started before that always answer yes, so they
        schedule the connector's activity as their histories hold."""
        if not versions.fewer_round_trips():
            return True
        if self._connectors is None:
            plan = await step(HealthActivities.connector_plan, ConnectorPlanInput(), CONNECTOR_PLAN)
            self._connectors = plan.configured
        return name in self._connectors

    def set_details(self, text: str) -> None:
        """What the Web UI shows as the run's current details (Markdown)."""
        workflow.set_current_details(text)

    # --- the end -------------------------------------------------------------------------

    async def end(
        self, outcome: str, entity: str | None, payload: dict[str, Any] | None = None
    ) -> None:
        """Record the end event ``<process>.<outcome>`` (once) and the outcome attribute."""
        key = self.END_KEY.format(process=self.NAME, outcome=outcome)
        await record(f"{self.NAME}.{outcome}", entity, payload or {}, key=key)
        self._done(outcome)
        self._outcome = outcome
        if versions.patched(PROCESS_BASE):
            workflow.upsert_search_attributes([OUTCOME.value_set(outcome)])
        reason = (payload or {}).get("reason")
        self.set_details(f"Ended: **{outcome}**" + (f". {reason}" if reason else ""))

    async def close(self, result: T) -> T:
        """Write out late signal rejections, let signal handlers finish, return ``result``."""
        if versions.patched(PROCESS_BASE):
            await self.signal_log.flush()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def guard(self, body: Callable[[], Awaitable[T]], *, entity: str) -> T:
        """Run ``body``; if it raises an exception that ends the run, compensate first and
        record the end (``cancelled`` or ``failed``), then re-raise."""
        try:
            return await body()
        except BaseException as exc:  # Saga.unwind decides whether this ends the run
            await self._saga.unwind(exc, lambda status, details: self.end(status, entity, details))
            raise
