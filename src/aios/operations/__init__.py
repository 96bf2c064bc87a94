"""What the operator does, independent of the surface: start work, list and answer gates, read
runs, money, spend and connector health. The CLI is a thin layer over these functions; tests
call them directly too.

One module per process or job:

- ``common``: run ids and Web UI links, starting a run, progress, stuck runs, ``Session`` (the
  Temporal client and kernel store one action opens and closes);
- ``messages``: the signal and query contract, light enough for a fast ``aios inbox``;
- ``onboarding``, ``proposals``, ``billing``: start each process, answer it, show its document;
- ``gates``: the inbox and ``decide``; ``runs``: status, ``show``, cancel;
- ``costs``: model spend; ``health``: connector health and the synthetic-check schedule.

Functions that take a ``Client`` (and a ``KernelStore``) leave those to the caller; the ones
that take ``Settings`` (``propose``, ``bill``, ``pay``, ``month_costs``, ``connector_health``,
``run_status``, ``show``) open what they need and close it. Names are loaded on first use
(``from aios import operations`` imports nothing else), so a command imports only the modules
of what it does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aios.operations.billing import (
        Billed,
        InvoiceDocument,
        InvoiceState,
        NewInvoice,
        PaymentSent,
        await_invoice,
        bill,
        billing_progress,
        invoice_document,
        pay,
        record_payment,
        start_billing,
    )
    from aios.operations.common import (
        QUERY_TIMEOUT,
        DocumentLine,
        Session,
        Started,
        kernel_store,
        run_progress,
        task_failure,
        web_ui_url,
        workflow_id_for,
    )
    from aios.operations.costs import (
        BudgetLine,
        CostLine,
        CostReport,
        cost_report,
        month_bounds,
        month_costs,
    )
    from aios.operations.gates import InboxItem, decide, inbox, pending_gates, waiting_gates
    from aios.operations.health import (
        HealthReport,
        check_schedule,
        connector_health,
        ensure_check_schedule,
        health_report,
        run_checks_now,
    )
    from aios.operations.messages import CHECK_SCHEDULE_ID, Decision, WaitingGate
    from aios.operations.onboarding import (
        WelcomeDocument,
        earlier_onboarding,
        start_onboarding,
        welcome_document,
    )
    from aios.operations.proposals import (
        NewProposal,
        ProposalDocument,
        proposal_document,
        proposal_progress,
        propose,
        respond,
        start_proposal,
    )
    from aios.operations.runs import RunStatus, Shown, cancel, describe, run_status, show
    from aios.workflows.progress import RunProgress

# name -> the module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "Billed",
            "InvoiceDocument",
            "InvoiceState",
            "NewInvoice",
            "PaymentSent",
            "await_invoice",
            "bill",
            "billing_progress",
            "invoice_document",
            "pay",
            "record_payment",
            "start_billing",
        ),
        "aios.operations.billing",
    ),
    **dict.fromkeys(
        (
            "QUERY_TIMEOUT",
            "DocumentLine",
            "Session",
            "Started",
            "kernel_store",
            "run_progress",
            "task_failure",
            "web_ui_url",
            "workflow_id_for",
        ),
        "aios.operations.common",
    ),
    **dict.fromkeys(
        (
            "BudgetLine",
            "CostLine",
            "CostReport",
            "cost_report",
            "month_bounds",
            "month_costs",
        ),
        "aios.operations.costs",
    ),
    **dict.fromkeys(
        ("InboxItem", "decide", "inbox", "pending_gates", "waiting_gates"),
        "aios.operations.gates",
    ),
    **dict.fromkeys(
        (
            "HealthReport",
            "check_schedule",
            "connector_health",
            "ensure_check_schedule",
            "health_report",
            "run_checks_now",
        ),
        "aios.operations.health",
    ),
    **dict.fromkeys(("CHECK_SCHEDULE_ID", "Decision", "WaitingGate"), "aios.operations.messages"),
    **dict.fromkeys(
        ("WelcomeDocument", "earlier_onboarding", "start_onboarding", "welcome_document"),
        "aios.operations.onboarding",
    ),
    **dict.fromkeys(
        (
            "NewProposal",
            "ProposalDocument",
            "proposal_document",
            "proposal_progress",
            "propose",
            "respond",
            "start_proposal",
        ),
        "aios.operations.proposals",
    ),
    **dict.fromkeys(
        ("RunStatus", "Shown", "cancel", "describe", "run_status", "show"),
        "aios.operations.runs",
    ),
    "RunProgress": "aios.workflows.progress",
}

__all__ = [
    "CHECK_SCHEDULE_ID",
    "QUERY_TIMEOUT",
    "Billed",
    "BudgetLine",
    "CostLine",
    "CostReport",
    "Decision",
    "DocumentLine",
    "HealthReport",
    "InboxItem",
    "InvoiceDocument",
    "InvoiceState",
    "NewInvoice",
    "NewProposal",
    "PaymentSent",
    "ProposalDocument",
    "RunProgress",
    "RunStatus",
    "Session",
    "Shown",
    "Started",
    "WaitingGate",
    "WelcomeDocument",
    "await_invoice",
    "bill",
    "billing_progress",
    "cancel",
    "check_schedule",
    "connector_health",
    "cost_report",
    "decide",
    "describe",
    "earlier_onboarding",
    "ensure_check_schedule",
    "health_report",
    "inbox",
    "invoice_document",
    "kernel_store",
    "month_bounds",
    "month_costs",
    "pay",
    "pending_gates",
    "proposal_document",
    "proposal_progress",
    "propose",
    "record_payment",
    "respond",
    "run_checks_now",
    "run_progress",
    "run_status",
    "show",
    "start_billing",
    "start_onboarding",
    "start_proposal",
    "task_failure",
    "waiting_gates",
    "web_ui_url",
    "welcome_document",
    "workflow_id_for",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aios.operations' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
