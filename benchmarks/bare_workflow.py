"""The bare baseline of benchmarks/engine.py: a Temporal workflow with onboarding's shape and
no business in it (12 no-op activities, 6 search-attribute writes, one signal wait)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import SearchAttributeKey

PROCESS = SearchAttributeKey.for_keyword("AiosProcess")
CLIENT = SearchAttributeKey.for_keyword("AiosClient")
AWAITING = SearchAttributeKey.for_bool("AiosAwaitingApproval")
COST = SearchAttributeKey.for_float("AiosCostUsd")
OUTCOME = SearchAttributeKey.for_keyword("AiosOutcome")
TASK_QUEUE = "aios-bench-bare"


@activity.defn(name="bare_step")
async def bare_step(n: int) -> int:
    return n


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    def __init__(self) -> None:
        self._decided = False

    @workflow.signal(name="decide")
    def decide(self, payload: dict) -> None:
        self._decided = True

    @workflow.run
    async def run(self, client: str) -> str:
        async def step(n: int) -> None:
            await workflow.execute_activity(
                bare_step, n, start_to_close_timeout=timedelta(seconds=30)
            )

        workflow.upsert_search_attributes([PROCESS.value_set("bare"), CLIENT.value_set(client)])
        for n in range(4):
            await step(n)
        workflow.upsert_search_attributes([COST.value_set(0.0)])
        await step(4)
        workflow.upsert_search_attributes([AWAITING.value_set(True)])
        await workflow.wait_condition(lambda: self._decided)
        workflow.upsert_search_attributes([AWAITING.value_set(False)])
        for n in range(5, 11):
            await step(n)
        workflow.upsert_search_attributes([COST.value_set(0.0)])
        await step(11)
        workflow.upsert_search_attributes([OUTCOME.value_set("completed")])
        return "completed"
