"""Health activities: probe each configured connector without outside effect, and record it."""

from __future__ import annotations

import time
from collections.abc import Callable

from temporalio import activity

from aios.activities.errors import translating_errors
from aios.activities.models import (
    CheckConnectorsInput,
    CheckConnectorsResult,
    ConnectorCheck,
    ConnectorPlan,
    ConnectorPlanInput,
)
from aios.connectors.contract import CheckResult
from aios.connectors.runtime import ConnectorRuntime
from aios.kernel.store import KernelStore

__all__ = ["HealthActivities"]


class HealthActivities:
    def __init__(
        self,
        store: KernelStore,
        runtime: ConnectorRuntime,
        probes: dict[str, Callable[[], CheckResult]],
    ) -> None:
        self._store = store
        self._runtime = runtime
        self._probes = probes

    @activity.defn(name="connector_plan")
    @translating_errors
    def connector_plan(self, inp: ConnectorPlanInput) -> ConnectorPlan:
        """Which of ``inp.names`` are configured here (each configured connector has a probe).

        A run asks once, as a local activity, and skips the steps of the others instead of
        scheduling activities that would only answer ``skipped``."""
        return ConnectorPlan(configured=sorted(set(inp.names) & set(self._probes)))

    @activity.defn(name="check_connectors")
    @translating_errors
    def check_connectors(self, inp: CheckConnectorsInput) -> CheckConnectorsResult:
        """Run every probe through its connector's guard; an open breaker is a failing check."""
        results: list[ConnectorCheck] = []
        for name, probe in sorted(self._probes.items()):
            activity.heartbeat(name)
            started = time.monotonic()
            found = self._runtime.check(name, probe)  # guarded, failures reported, scrubbed
            results.append(
                ConnectorCheck(
                    connector=name,
                    ok=found.ok,
                    detail=found.detail,
                    latency_ms=round((time.monotonic() - started) * 1000),
                )
            )
        info = activity.info()
        self._store.health.record_checks(
            inp.idempotency_key, info.workflow_id or "", [r.model_dump() for r in results]
        )
        self._runtime.publish()
        return CheckConnectorsResult(results=results)
