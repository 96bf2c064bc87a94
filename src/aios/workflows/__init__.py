"""Business processes as deterministic Temporal workflows, plus the shared Saga and Gate.

Names load on first use (PEP 562): the workflow sandbox re-runs this file for every new run,
and importing one process must not load the others with their models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aios.workflows.billing import (
        PAYMENT_RECEIVED_SIGNAL,
        BillingInput,
        BillingResult,
        BillingWorkflow,
        PaymentReceived,
        billing_workflow_id,
    )
    from aios.workflows.checks import (
        SyntheticCheckInput,
        SyntheticCheckResult,
        SyntheticCheckWorkflow,
    )
    from aios.workflows.content import (
        RESCHEDULE_SIGNAL,
        ContentInput,
        ContentResult,
        ContentWorkflow,
        Reschedule,
        content_workflow_id,
    )
    from aios.workflows.gates import (
        DECIDE_SIGNAL,
        GateDecision,
        GateHost,
        GateOutcome,
        PendingGate,
    )
    from aios.workflows.inbound_mail import (
        InboundMailInput,
        InboundMailResult,
        InboundMailWorkflow,
        MailPollInput,
        MailPollResult,
        MailPollWorkflow,
        inbound_workflow_id,
    )
    from aios.workflows.onboarding import (
        OnboardingInput,
        OnboardingResult,
        OnboardingWorkflow,
        onboarding_workflow_id,
    )
    from aios.workflows.progress import (
        BillingProgress,
        OnboardingProgress,
        ProposalProgress,
        RunProgress,
    )
    from aios.workflows.proposal import (
        CLIENT_RESPONSE_SIGNAL,
        ClientResponse,
        ProposalInput,
        ProposalResult,
        ProposalWorkflow,
        proposal_workflow_id,
    )
    from aios.workflows.review import (
        ReviewDigestInput,
        ReviewDigestResult,
        ReviewDigestWorkflow,
    )
    from aios.workflows.saga import Saga, SagaReport

    WORKFLOWS: list[type]

# name -> the module (under aios.workflows) that defines it
_HOMES = {
    "billing": [
        "PAYMENT_RECEIVED_SIGNAL",
        "BillingInput",
        "BillingResult",
        "BillingWorkflow",
        "PaymentReceived",
        "billing_workflow_id",
    ],
    "checks": ["SyntheticCheckInput", "SyntheticCheckResult", "SyntheticCheckWorkflow"],
    "gates": ["DECIDE_SIGNAL", "GateDecision", "GateHost", "GateOutcome", "PendingGate"],
    "onboarding": [
        "OnboardingInput",
        "OnboardingResult",
        "OnboardingWorkflow",
        "onboarding_workflow_id",
    ],
    "progress": ["BillingProgress", "OnboardingProgress", "ProposalProgress", "RunProgress"],
    "proposal": [
        "CLIENT_RESPONSE_SIGNAL",
        "ClientResponse",
        "ProposalInput",
        "ProposalResult",
        "ProposalWorkflow",
        "proposal_workflow_id",
    ],
    "saga": ["Saga", "SagaReport"],
    "review": ["ReviewDigestInput", "ReviewDigestResult", "ReviewDigestWorkflow"],
    "content": [
        "RESCHEDULE_SIGNAL",
        "ContentInput",
        "ContentResult",
        "ContentWorkflow",
        "Reschedule",
        "content_workflow_id",
    ],
    "inbound_mail": [
        "InboundMailInput",
        "InboundMailResult",
        "InboundMailWorkflow",
        "MailPollInput",
        "MailPollResult",
        "MailPollWorkflow",
        "inbound_workflow_id",
    ],
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

# Every workflow a worker registers, in this order.
_WORKFLOWS = [
    ("onboarding", "OnboardingWorkflow"),
    ("proposal", "ProposalWorkflow"),
    ("billing", "BillingWorkflow"),
    ("checks", "SyntheticCheckWorkflow"),
    ("review", "ReviewDigestWorkflow"),
    ("content", "ContentWorkflow"),
    ("newsletter", "NewsletterSendWorkflow"),
    ("newsletter_batch", "NewsletterBatchWorkflow"),
    ("inbound_mail", "InboundMailWorkflow"),
    ("inbound_mail", "MailPollWorkflow"),
]


def __getattr__(name: str) -> Any:
    if name == "WORKFLOWS":
        value: Any = [
            getattr(importlib.import_module(f"aios.workflows.{module}"), cls)
            for module, cls in _WORKFLOWS
        ]
    elif name in _MODULE_OF:
        value = getattr(importlib.import_module(f"aios.workflows.{_MODULE_OF[name]}"), name)
    else:
        raise AttributeError(f"module 'aios.workflows' has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "CLIENT_RESPONSE_SIGNAL",
    "DECIDE_SIGNAL",
    "PAYMENT_RECEIVED_SIGNAL",
    "RESCHEDULE_SIGNAL",
    "WORKFLOWS",
    "BillingInput",
    "BillingProgress",
    "BillingResult",
    "BillingWorkflow",
    "ClientResponse",
    "ContentInput",
    "ContentResult",
    "ContentWorkflow",
    "GateDecision",
    "GateHost",
    "GateOutcome",
    "InboundMailInput",
    "InboundMailResult",
    "InboundMailWorkflow",
    "MailPollInput",
    "MailPollResult",
    "MailPollWorkflow",
    "OnboardingInput",
    "OnboardingProgress",
    "OnboardingResult",
    "OnboardingWorkflow",
    "PaymentReceived",
    "PendingGate",
    "ProposalInput",
    "ProposalProgress",
    "ProposalResult",
    "ProposalWorkflow",
    "Reschedule",
    "ReviewDigestInput",
    "ReviewDigestResult",
    "ReviewDigestWorkflow",
    "RunProgress",
    "Saga",
    "SagaReport",
    "SyntheticCheckInput",
    "SyntheticCheckResult",
    "SyntheticCheckWorkflow",
    "billing_workflow_id",
    "content_workflow_id",
    "inbound_workflow_id",
    "onboarding_workflow_id",
    "proposal_workflow_id",
]
