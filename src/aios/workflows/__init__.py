"""Business processes as deterministic Temporal workflows, plus the shared Saga and Gate."""

from aios.workflows.gates import DECIDE_SIGNAL, GateDecision, GateHost, GateOutcome, PendingGate
from aios.workflows.onboarding import (
    OnboardingInput,
    OnboardingProgress,
    OnboardingResult,
    OnboardingWorkflow,
    onboarding_workflow_id,
)
from aios.workflows.saga import Saga, SagaReport

WORKFLOWS = [OnboardingWorkflow]

__all__ = [
    "DECIDE_SIGNAL",
    "WORKFLOWS",
    "GateDecision",
    "GateHost",
    "GateOutcome",
    "OnboardingInput",
    "OnboardingProgress",
    "OnboardingResult",
    "OnboardingWorkflow",
    "PendingGate",
    "Saga",
    "SagaReport",
    "onboarding_workflow_id",
]
