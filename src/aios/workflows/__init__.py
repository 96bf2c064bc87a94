"""Business processes as deterministic Temporal workflows, plus the shared Saga and Gate."""

from aios.workflows.billing import (
    PAYMENT_RECEIVED_SIGNAL,
    BillingInput,
    BillingResult,
    BillingWorkflow,
    PaymentReceived,
    billing_workflow_id,
)
from aios.workflows.checks import SyntheticCheckInput, SyntheticCheckResult, SyntheticCheckWorkflow
from aios.workflows.gates import DECIDE_SIGNAL, GateDecision, GateHost, GateOutcome, PendingGate
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
from aios.workflows.saga import Saga, SagaReport

WORKFLOWS = [OnboardingWorkflow, ProposalWorkflow, BillingWorkflow, SyntheticCheckWorkflow]

__all__ = [
    "CLIENT_RESPONSE_SIGNAL",
    "DECIDE_SIGNAL",
    "PAYMENT_RECEIVED_SIGNAL",
    "WORKFLOWS",
    "BillingInput",
    "BillingProgress",
    "BillingResult",
    "BillingWorkflow",
    "ClientResponse",
    "GateDecision",
    "GateHost",
    "GateOutcome",
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
    "RunProgress",
    "Saga",
    "SagaReport",
    "SyntheticCheckInput",
    "SyntheticCheckResult",
    "SyntheticCheckWorkflow",
    "billing_workflow_id",
    "onboarding_workflow_id",
    "proposal_workflow_id",
]
