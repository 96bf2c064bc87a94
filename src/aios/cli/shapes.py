"""The JSON documents ``--json`` prints: one function per command, stable shapes.

Every id (workflow, run, event, draft, invoice) is a string, every time an ISO 8601 string
with its UTC offset, every amount of money a formatted string (``"USD 4,500.00"``) and, where
a script computes with it, an integer of minor units too (``*_minor``); USD figures of model
spend are decimal strings (``"0.0042"``). Fields are only ever added. README.md documents
each shape.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aios.kernel.stores.notices import Notice
    from aios.operations.costs import CostReport
    from aios.operations.gates import InboxItem
    from aios.operations.health import HealthReport
    from aios.operations.runs import RunStatus, Shown

__all__ = ["costs_json", "health_json", "inbox_json", "show_json", "status_json"]


def when(value: datetime | None) -> str | None:
    """As pydantic writes it in the nested models: ``2026-11-21T10:00:00Z`` in UTC."""
    if value is None:
        return None
    text = value.isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def inbox_json(items: list[InboxItem], notices: list[Notice] | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    rows = []
    for item in items:
        since = item.gate.requested_at if item.gate else item.started_at
        rows.append(
            {
                "workflow_id": item.workflow_id,
                "process": item.process,
                "started_at": when(item.started_at),
                "waiting_since": when(since),
                "waiting_seconds": int((now - since).total_seconds()) if since else None,
                "gate": item.gate.model_dump(mode="json") if item.gate else None,
                "note": item.note,
                "run_id": item.run_id,
                "client": item.client,
                "gate_key": item.gate_key,
                "expires_at": when(item.expires_at),
                "amount_minor": item.amount_minor,
                "currency": item.currency,
                "source": item.source,
            }
        )
    listed = None if notices is None else [n.model_dump(mode="json") for n in notices]
    return {"items": rows, "notices": listed}


def status_json(status: RunStatus, web_ui: str) -> dict[str, Any]:
    return {
        "workflow_id": status.workflow_id,
        "run_id": status.run_id,
        "status": status.status,
        "outcome": status.outcome,
        "started_at": when(status.started_at),
        "closed_at": when(status.closed_at),
        "web_ui": web_ui,
        "steps_done": list(status.steps_done),
        "details": dict(status.details),
        "waiting_for": status.waiting_for,
        "gates": [gate.model_dump(mode="json") for gate in status.gates],
        "note": status.note,
        "events": [
            {
                "id": str(event.id),
                "occurred_at": when(event.occurred_at),
                "kind": event.kind,
                "entity": event.entity,
                "payload": event.payload,
            }
            for event in status.events
        ],
    }


def show_json(shown: Shown, web_ui: str) -> dict[str, Any]:
    return {**shown.model_dump(mode="json"), "web_ui": web_ui}


def costs_json(report: CostReport) -> dict[str, Any]:
    return report.model_dump(mode="json")


def health_json(report: HealthReport) -> dict[str, Any]:
    return report.model_dump(mode="json")
