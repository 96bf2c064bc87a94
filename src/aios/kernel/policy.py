"""Policies: plain values that decide how long gates wait and what needs a human.

Policies travel into workflows as part of their input, so a run keeps the policy it started
with even if the operator changes settings later. Client text never reaches this module.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aios.kernel.money import format_amount

__all__ = [
    "AgentPolicy",
    "BillingPolicy",
    "GatePolicy",
    "PolicyVerdict",
    "ProposalPolicy",
    "evaluate_invoice",
    "evaluate_proposal",
    "kickoff_time",
    "known_timezone",
]


class GatePolicy(BaseModel):
    """A gate reminds the operator every ``remind_after`` and expires at ``expire_after``."""

    model_config = ConfigDict(frozen=True)

    # The policy version (``aios policy history``) these values come from; None: settings.
    version: int | None = Field(default=None, ge=1)
    remind_after: timedelta = timedelta(hours=24)
    expire_after: timedelta = timedelta(days=7)

    @model_validator(mode="after")
    def _positive(self) -> GatePolicy:
        if self.remind_after <= timedelta(0) or self.expire_after <= timedelta(0):
            raise ValueError("remind_after and expire_after must be positive durations")
        return self

    def reminder_times(self) -> list[timedelta]:
        """Offsets from the request at which reminders go out, all before expiry."""
        times: list[timedelta] = []
        at = self.remind_after
        while at < self.expire_after:
            times.append(at)
            at += self.remind_after
        return times


def _positive(*durations: timedelta) -> None:
    if any(d <= timedelta(0) for d in durations):
        raise ValueError("durations must be positive")


class ProposalPolicy(BaseModel):
    """When a proposal needs the operator, and how long the client has to answer.

    A proposal is auto-approved only if its discount is at most ``max_discount_pct`` and its
    total at most ``auto_approve_max_total_minor`` in ``currency``; otherwise it waits at a gate.
    The client gets a follow-up every ``follow_up_every`` until the offer expires.
    """

    model_config = ConfigDict(frozen=True)

    # The policy version (``aios policy history``) these values come from; None: settings.
    version: int | None = Field(default=None, ge=1)
    max_discount_pct: Decimal = Field(default=Decimal(10), ge=0, le=100)
    auto_approve_max_total_minor: int = Field(default=500_000, ge=0)
    currency: str = "USD"
    follow_up_every: timedelta = timedelta(days=3)
    expire_after: timedelta = timedelta(days=14)

    @model_validator(mode="after")
    def _check(self) -> ProposalPolicy:
        _positive(self.follow_up_every, self.expire_after)
        return self

    def follow_up_times(self, sent_at: datetime) -> list[datetime]:
        times: list[datetime] = []
        at = self.follow_up_every
        while at < self.expire_after:
            times.append(sent_at + at)
            at += self.follow_up_every
        return times


class BillingPolicy(BaseModel):
    """Payment terms, reminders and which invoices need the operator's approval.

    An invoice above ``approve_above_minor`` (or in another currency than ``currency``) waits at
    a gate before it is issued. Payment is due ``payment_terms`` after issue; the client is
    reminded at the due date and every ``remind_every`` after it, ``max_reminders`` times.
    """

    model_config = ConfigDict(frozen=True)

    # The policy version (``aios policy history``) these values come from; None: settings.
    version: int | None = Field(default=None, ge=1)
    approve_above_minor: int = Field(default=1_000_000, ge=0)
    currency: str = "USD"
    payment_terms: timedelta = timedelta(days=14)
    remind_every: timedelta = timedelta(days=7)
    max_reminders: int = Field(default=3, ge=0, le=20)

    @model_validator(mode="after")
    def _check(self) -> BillingPolicy:
        _positive(self.payment_terms, self.remind_every)
        return self

    def reminder_times(self, issued_at: datetime) -> list[datetime]:
        due = issued_at + self.payment_terms
        return [due + self.remind_every * n for n in range(self.max_reminders)]


class AgentPolicy(BaseModel):
    """How far the operator trusts model output and how much it may cost.

    A model answer below ``min_confidence`` escalates to the next tier. Spend on model calls is
    capped per calendar month (UTC): ``monthly_budget_usd`` for all agents together and
    ``agent_budgets_usd`` per agent. The cap is checked before a call with the call's estimated
    cost; a call that would exceed it is not made and waits for the operator instead.
    """

    model_config = ConfigDict(frozen=True)

    # The policy version (``aios policy history``) these values come from; None: settings.
    version: int | None = Field(default=None, ge=1)
    min_confidence: float = Field(default=0.6, ge=0, le=1)
    monthly_budget_usd: Decimal = Field(default=Decimal(50), ge=0)
    agent_budgets_usd: dict[str, Decimal] = Field(default_factory=dict)

    def budget_problem(
        self, *, agent: str, estimate_usd: Decimal, spent_usd: Decimal, agent_spent_usd: Decimal
    ) -> str | None:
        """Why a call estimated at ``estimate_usd`` may not be made this month, if it may not."""
        cap = self.agent_budgets_usd.get(agent)
        if cap is not None and agent_spent_usd + estimate_usd > cap:
            return (
                f"agent {agent!r} has spent ${agent_spent_usd:.4f} of its ${cap:.2f} monthly "
                "budget (agent_budgets_usd)"
            )
        if spent_usd + estimate_usd > self.monthly_budget_usd:
            return (
                f"agents have spent ${spent_usd:.4f} of the ${self.monthly_budget_usd:.2f} "
                "monthly budget (agent_monthly_budget_usd)"
            )
        return None

    def remaining(
        self, *, spent_usd: Decimal, agent_spent: dict[str, Decimal]
    ) -> dict[str, Decimal]:
        """Budget left this month: ``"*"`` for all agents, then each capped agent."""
        left = {"*": max(self.monthly_budget_usd - spent_usd, Decimal(0))}
        for agent, cap in sorted(self.agent_budgets_usd.items()):
            left[agent] = max(cap - agent_spent.get(agent, Decimal(0)), Decimal(0))
        return left


class PolicyVerdict(BaseModel):
    """What a policy decided and which rule decided it, as the event log records it."""

    needs_approval: bool
    rule: str
    reasons: list[str] = Field(default_factory=list)
    policy_version: int | None = None  # the policy version that decided


def evaluate_proposal(
    *, total_minor: int, discount_pct: Decimal, currency: str, policy: ProposalPolicy
) -> PolicyVerdict:
    reasons: list[str] = []
    if discount_pct > policy.max_discount_pct:
        reasons.append(
            f"discount {discount_pct}% is above the {policy.max_discount_pct}% limit "
            "(proposal.max_discount_pct)"
        )
    if currency != policy.currency:
        reasons.append(
            f"currency {currency} has no auto-approval limit (limits are in {policy.currency})"
        )
    elif total_minor > policy.auto_approve_max_total_minor:
        reasons.append(
            f"total {format_amount(total_minor, currency)} is above the auto-approval limit "
            f"{format_amount(policy.auto_approve_max_total_minor, currency)} "
            "(proposal.auto_approve_max_total)"
        )
    if reasons:
        return PolicyVerdict(
            needs_approval=True,
            rule="proposal.needs_approval",
            reasons=reasons,
            policy_version=policy.version,
        )
    return PolicyVerdict(
        needs_approval=False,
        rule="proposal.auto_approve",
        policy_version=policy.version,
        reasons=[
            f"discount {discount_pct}% is within the {policy.max_discount_pct}% limit",
            f"total {format_amount(total_minor, currency)} is within the auto-approval limit "
            f"{format_amount(policy.auto_approve_max_total_minor, currency)}",
        ],
    )


def evaluate_invoice(*, total_minor: int, currency: str, policy: BillingPolicy) -> PolicyVerdict:
    if currency != policy.currency:
        return PolicyVerdict(
            needs_approval=True,
            rule="invoice.needs_approval",
            policy_version=policy.version,
            reasons=[
                f"currency {currency} has no approval limit (limits are in {policy.currency})"
            ],
        )
    limit = format_amount(policy.approve_above_minor, currency)
    if total_minor > policy.approve_above_minor:
        return PolicyVerdict(
            needs_approval=True,
            rule="invoice.needs_approval",
            policy_version=policy.version,
            reasons=[
                f"total {format_amount(total_minor, currency)} is above {limit} "
                "(billing.approve_above)"
            ],
        )
    return PolicyVerdict(
        needs_approval=False,
        rule="invoice.auto_issue",
        policy_version=policy.version,
        reasons=[f"total {format_amount(total_minor, currency)} is within {limit}"],
    )


# --- the kickoff -------------------------------------------------------------------------------

KICKOFF_LEAD = timedelta(days=3)
KICKOFF_AT = time(10, 0)


def known_timezone(value: str) -> str:
    """``value`` if it names an IANA timezone (``Europe/Berlin``), else ``ValueError``."""
    try:
        ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(f"not a known IANA timezone: {value[:60]!r}") from None
    return value


def kickoff_time(now: datetime, timezone: str = "UTC") -> datetime:
    """10:00 in ``timezone`` on the first weekday at least three calendar days after ``now``'s
    date there, as a UTC datetime. Pure: the same inputs and tz database give the same time,
    so workflow code may call it (this module is passed through the sandbox)."""
    zone = ZoneInfo(timezone)
    day = (now.astimezone(zone) + KICKOFF_LEAD).date()
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime.combine(day, KICKOFF_AT, tzinfo=zone).astimezone(UTC)
