"""What query ``progress`` returns, one typed model per process, shared with ``operations``.

Every process answers ``progress`` with a ``RunProgress`` subclass; ``operations`` reads it
with ``progress_model(workflow_id)``, so both sides name the same fields and nobody reads
string keys. Fields only ever get added (with defaults), so an older worker's answer still
decodes.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from aios.workflows.gates import PendingGate

__all__ = [
    "BillingProgress",
    "ContentProgress",
    "OnboardingProgress",
    "ProposalProgress",
    "RunProgress",
    "progress_model",
]


class RunProgress(BaseModel):
    """What every process reports: steps, the gate waiting, the signal waited for, the end."""

    process: str = ""
    steps_done: list[str] = Field(default_factory=list)
    pending_gates: list[PendingGate] = Field(default_factory=list)
    compensations_pending: list[str] = Field(default_factory=list)
    # The signal the run waits for outside a gate (``client_response``, ``payment_received``).
    waiting_for: str | None = None
    rejected_signals: int = 0
    last_rejection: str | None = None

    def details(self) -> dict[str, str]:
        """The process's own figures, for ``aios status``: label -> value, empty ones left out."""
        return {}


class OnboardingProgress(RunProgress):
    client_key: str = ""

    def details(self) -> dict[str, str]:
        return _shown({"client key": self.client_key})


class ProposalProgress(RunProgress):
    proposal_id: str = ""
    version: int = 0
    total: str = ""
    total_minor: int | None = None
    currency: str = ""
    # The client's answer is taken now: while the run waits for it, and while the version is
    # being sent (its email may be out before the run hears the send finished).
    takes_answer: bool = False

    def details(self) -> dict[str, str]:
        return _shown({"version": str(self.version) if self.version else "", "total": self.total})


class BillingProgress(RunProgress):
    invoice_id: str = ""
    number: str | None = None
    total: str = ""
    # Still to pay once the payments already received are recorded (None before issue).
    balance: str = ""
    balance_minor: int | None = None
    currency: str = ""
    reminders_sent: int = 0

    def details(self) -> dict[str, str]:
        return _shown(
            {
                "number": self.number or "",
                "total": self.total,
                "balance": self.balance,
                "reminders sent": str(self.reminders_sent) if self.reminders_sent else "",
            }
        )


class ContentProgress(RunProgress):
    post_id: str = ""
    # planning, drafting, review, scheduled, publishing, published, ended
    stage: str = ""
    version: int = 0
    publish_at: datetime | None = None

    def details(self) -> dict[str, str]:
        return _shown(
            {
                "post": self.post_id,
                "stage": self.stage,
                "version": str(self.version) if self.version else "",
                "publish at": f"{self.publish_at:%Y-%m-%d %H:%M} UTC" if self.publish_at else "",
            }
        )


def _shown(values: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


_BY_PROCESS: dict[str, type[RunProgress]] = {
    "onboarding": OnboardingProgress,
    "proposal": ProposalProgress,
    "billing": BillingProgress,
    "content": ContentProgress,
}


def progress_model(workflow_id: str) -> type[RunProgress]:
    """The progress model of a run, from its id (``<process>/<key>``); ``RunProgress`` for any
    other."""
    return _BY_PROCESS.get(workflow_id.split("/", 1)[0], RunProgress)
