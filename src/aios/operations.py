"""What the operator does, independent of the surface: start work, list and answer gates.

The CLI is a thin layer over these functions; tests call them directly too.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_validator
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.models import ClientIntake
from aios.kernel.money import (
    LineItem,
    currency_exponent,
    format_amount,
    normalize_currency,
    parse_amount,
)
from aios.kernel.policy import GatePolicy
from aios.kernel.store import KernelStore
from aios.kernel.text import PastedText
from aios.workflows.attributes import PROCESS
from aios.workflows.billing import (
    PAYMENT_RECEIVED_SIGNAL,
    BillingInput,
    BillingWorkflow,
    PaymentReceived,
    billing_workflow_id,
)
from aios.workflows.checks import (
    CHECK_SCHEDULE_ID,
    CHECK_WORKFLOW_ID,
    SyntheticCheckInput,
    SyntheticCheckWorkflow,
)
from aios.workflows.gates import DECIDE_SIGNAL, PENDING_GATES_QUERY, GateDecision, PendingGate
from aios.workflows.onboarding import (
    OnboardingInput,
    OnboardingResult,
    OnboardingWorkflow,
    onboarding_workflow_id,
)
from aios.workflows.progress import (
    BillingProgress,
    ProposalProgress,
    RunProgress,
    progress_model,
)
from aios.workflows.proposal import (
    CLIENT_RESPONSE_SIGNAL,
    ClientResponse,
    ProposalInput,
    ProposalWorkflow,
    proposal_workflow_id,
)

__all__ = [
    "CostReport",
    "HealthReport",
    "InboxItem",
    "NewInvoice",
    "NewProposal",
    "RunProgress",
    "RunStatus",
    "Started",
    "cancel",
    "decide",
    "describe",
    "ensure_check_schedule",
    "health_report",
    "inbox",
    "pending_gates",
    "record_payment",
    "respond",
    "run_checks_now",
    "start_billing",
    "start_onboarding",
    "start_proposal",
    "web_ui_url",
]

QUERY_TIMEOUT = timedelta(seconds=5)


@dataclass(frozen=True)
class Started:
    workflow_id: str
    run_id: str
    existing: bool


@dataclass(frozen=True)
class InboxItem:
    workflow_id: str
    process: str
    started_at: datetime | None
    gate: PendingGate | None
    note: str = ""

    @property
    def age(self) -> timedelta | None:
        since = self.gate.requested_at if self.gate else self.started_at
        return datetime.now(UTC) - since if since else None


@dataclass(frozen=True)
class RunStatus:
    workflow_id: str
    run_id: str
    status: str
    started_at: datetime | None
    closed_at: datetime | None
    steps_done: list[str]
    gates: list[PendingGate]
    note: str = ""
    waiting_for: str | None = None
    details: dict[str, str] = field(default_factory=dict)


def web_ui_url(settings: Settings, workflow_id: str, run_id: str | None = None) -> str:
    base = f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{settings.temporal_namespace}"
    url = f"{base}/workflows/{quote(workflow_id, safe='')}"
    return f"{url}/{run_id}/history" if run_id else url


async def earlier_onboarding(client: Client, workflow_id: str) -> str | None:
    """How the client's last onboarding ended ("completed on 2026-11-21"), or ``None`` when
    there is none or it is still running."""
    handle = client.get_workflow_handle(workflow_id, result_type=OnboardingResult)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if desc.status == WorkflowExecutionStatus.RUNNING:
        return None
    when = f"{desc.close_time:%Y-%m-%d}" if desc.close_time else "earlier"
    outcome = desc.status.name.lower() if desc.status else "closed"
    reason = ""
    if desc.status == WorkflowExecutionStatus.COMPLETED:
        try:
            result = await handle.result(follow_runs=False)
        except Exception:  # an unreadable old result still counts as an earlier run
            result = None
        if result is not None:
            outcome = result.status
            reason = result.reason if result.status != "completed" else "welcome sent"
    return f"{outcome} on {when}" + (f" ({_one_line(reason)})" if reason else "")


def _one_line(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


async def start_onboarding(
    client: Client, settings: Settings, intake: ClientIntake, *, again: bool = False
) -> Started:
    """Start onboarding for ``intake``; if one is running for this client, return that one.

    The server decides (id conflict policy FAIL), so two concurrent starts give one run.
    A client whose onboarding already ended (completed, rejected, expired, failed, cancelled)
    is onboarded again only with ``again``: otherwise ``InvalidInput`` names the earlier
    outcome and nothing starts. The new run has new idempotency keys.
    """
    workflow_id = onboarding_workflow_id(intake.key)
    if not again:
        earlier = await earlier_onboarding(client, workflow_id)
        if earlier is not None:
            raise InvalidInput(
                f"{intake.key}: onboarded before, {earlier}; "
                "to onboard again (a new welcome email), add --again"
            )
    try:
        handle = await client.start_workflow(
            OnboardingWorkflow.run,
            OnboardingInput(client=intake, gate_policy=settings.gate_policy),
            id=workflow_id,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=f"Onboard {intake.name}",
        )
    except WorkflowAlreadyStartedError as exc:
        return Started(workflow_id, exc.run_id or "", existing=True)
    return Started(workflow_id, handle.result_run_id or "", existing=False)


async def pending_gates(client: Client, workflow_id: str) -> list[PendingGate]:
    handle = client.get_workflow_handle(workflow_id)
    return await handle.query(
        PENDING_GATES_QUERY, result_type=list[PendingGate], rpc_timeout=QUERY_TIMEOUT
    )


async def decide(client: Client, workflow_id: str, decision: GateDecision) -> str:
    """Send ``decide`` to a running workflow; returns the gate it answers.

    Returns ``""`` when no worker answered the gate query: the signal is still recorded in the
    workflow's history and is validated when a worker runs it.
    """
    handle = client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise InvalidInput(f"workflow {workflow_id!r} does not exist") from exc
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        status = desc.status.name.lower() if desc.status else "closed"
        raise InvalidInput(f"workflow {workflow_id!r} is {status}; nothing waits for a decision")
    gate_name = ""
    try:
        gates = await pending_gates(client, workflow_id)
    except (RPCError, WorkflowQueryFailedError):
        gates = None  # no worker to answer the query; the signal still waits in history
    if gates is not None:
        if not gates:
            raise InvalidInput(f"workflow {workflow_id!r} has no gate waiting for a decision")
        gate_name = gates[0].gate
        unknown = sorted(set(decision.edits) - set(gates[0].editable_fields))
        if unknown:
            allowed = ", ".join(gates[0].editable_fields) or "none"
            raise InvalidInput(f"cannot edit {unknown[0]!r} at this gate (editable: {allowed})")
    await handle.signal(DECIDE_SIGNAL, decision)
    return gate_name


async def task_failure(client: Client, workflow_id: str) -> str | None:
    """Why the run's workflow task keeps failing, or ``None`` when it does not.

    A failing workflow task (a bug, or a payload the code could not handle) leaves the run
    RUNNING while every attempt fails; Temporal writes the first failure to history and retries
    the task. Queries fail too, so without this a stuck run looks like one no worker serves.
    """
    handle = client.get_workflow_handle(workflow_id)
    desc = await handle.describe()
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return None
    pending = desc.raw_description.pending_workflow_task
    failure: str | None = None
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_task_failed_event_attributes"):
            attrs = event.workflow_task_failed_event_attributes
            failure = attrs.failure.message or "workflow task failed"
        elif event.HasField("workflow_task_completed_event_attributes"):
            failure = None
    if failure is None and pending.attempt > 1:
        failure = f"workflow task failing (attempt {pending.attempt})"
    if failure is None:
        return None
    line = failure.strip().splitlines()[0] if failure.strip() else "workflow task failed"
    return f"stuck: workflow task failing: {line[:300]}"


async def _unanswered(client: Client, workflow_id: str) -> str:
    """What to say when a run did not answer a query: stuck, or no worker."""
    try:
        stuck = await task_failure(client, workflow_id)
    except RPCError:
        stuck = None
    return stuck or "no worker answered"


async def inbox(client: Client) -> list[InboxItem]:
    """Every waiting gate across workflows, oldest first."""
    items: list[InboxItem] = []
    query = "AiosAwaitingApproval = true AND ExecutionStatus = 'Running'"
    executions = [e async for e in client.list_workflows(query)]

    async def item(execution_id: str, process: str, started: datetime | None) -> None:
        try:
            gates = await pending_gates(client, execution_id)
        except (RPCError, WorkflowQueryFailedError):
            note = await _unanswered(client, execution_id)
            items.append(InboxItem(execution_id, process, started, None, note))
            return
        items.extend(InboxItem(execution_id, process, started, g) for g in gates)

    await asyncio.gather(
        *(
            item(e.id, (e.typed_search_attributes.get(PROCESS) or e.workflow_type), e.start_time)
            for e in executions
        )
    )
    return sorted(items, key=lambda i: i.age or timedelta(0), reverse=True)


async def describe(client: Client, workflow_id: str) -> RunStatus:
    handle = client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise InvalidInput(f"workflow {workflow_id!r} does not exist") from exc
        raise
    steps: list[str] = []
    gates: list[PendingGate] = []
    note = ""
    waiting_for: str | None = None
    details: dict[str, str] = {}
    if desc.status == WorkflowExecutionStatus.RUNNING:
        stuck = None
        if desc.raw_description.pending_workflow_task.attempt > 1:
            stuck = await task_failure(client, workflow_id)
        try:
            progress = await run_progress(client, workflow_id)
            steps, gates = progress.steps_done, progress.pending_gates
            waiting_for = progress.waiting_for
            details = progress.details()
        except (RPCError, WorkflowQueryFailedError):
            note = await _unanswered(client, workflow_id)
            if note == "no worker answered":
                note = "no worker answered the query; start one with `aios worker`"
        if stuck:
            note = stuck
    return RunStatus(
        waiting_for=waiting_for,
        details=details,
        workflow_id=workflow_id,
        run_id=desc.run_id,
        status=desc.status.name.lower() if desc.status else "unknown",
        started_at=desc.start_time,
        closed_at=desc.close_time,
        steps_done=steps,
        gates=gates,
        note=note,
    )


# --- proposals and billing ----------------------------------------------------------------

_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")


async def run_progress(client: Client, workflow_id: str) -> RunProgress:
    """The run's answer to query ``progress``, as its process's typed model."""
    handle = client.get_workflow_handle(workflow_id)
    model = progress_model(workflow_id)
    return await handle.query("progress", result_type=model, rpc_timeout=QUERY_TIMEOUT)


async def proposal_progress(client: Client, workflow_id: str) -> ProposalProgress | None:
    """The proposal run's progress, or ``None`` when no worker answered."""
    try:
        progress = await run_progress(client, workflow_id)
    except (RPCError, WorkflowQueryFailedError):
        return None
    assert isinstance(progress, ProposalProgress)
    return progress


async def billing_progress(client: Client, workflow_id: str) -> BillingProgress | None:
    """The billing run's progress, or ``None`` when no worker answered."""
    try:
        progress = await run_progress(client, workflow_id)
    except (RPCError, WorkflowQueryFailedError):
        return None
    assert isinstance(progress, BillingProgress)
    return progress


def _new_id(client_key: str, today: date) -> str:
    return f"{client_key}-{today:%Y%m%d}-{uuid.uuid4().hex[:4]}"[:80]


class NewProposal(BaseModel):
    """What the operator gives ``aios propose``. Validated before anything starts."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    client_key: str = Field(min_length=1, max_length=64)
    scope: PastedText = Field(min_length=1, max_length=20_000)
    budget: Decimal | None = Field(default=None, description="major units")
    deadline: date | None = None
    currency: str | None = None
    proposal_id: str | None = None

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value < 0:
            raise ValueError("budget must not be negative")
        return value

    @field_validator("proposal_id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not _ID_RE.match(value):
            raise ValueError("must be 1-80 lowercase letters, digits or hyphens")
        return value


class NewInvoice(BaseModel):
    """What the operator gives ``aios bill``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    client_key: str = Field(min_length=1, max_length=64)
    items: list[LineItem] = Field(min_length=1, max_length=100)
    currency: str | None = None
    invoice_id: str | None = None

    @field_validator("invoice_id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not _ID_RE.match(value):
            raise ValueError("must be 1-80 lowercase letters, digits or hyphens")
        return value


ONBOARDING_ENDS = [
    f"onboarding.{end}" for end in ("completed", "rejected", "expired", "failed", "cancelled")
]


def _require_client(store: KernelStore, key: str, *, again: bool = False) -> None:
    """The client exists; unless ``again``, their last onboarding was not turned down."""
    if store.get_client(key) is None:
        raise InvalidInput(
            f"client: no client with key {key!r}; onboard them first with `aios onboard`"
        )
    if again:
        return
    last = store.last_event(f"client:{key}", ONBOARDING_ENDS)
    if last is not None and last.kind in ("onboarding.rejected", "onboarding.expired"):
        outcome = last.kind.removeprefix("onboarding.")
        reason = _one_line(str(last.payload.get("reason") or ""))
        raise InvalidInput(
            f"client: {key}'s onboarding was {outcome} on {last.occurred_at:%Y-%m-%d}"
            + (f" ({reason})" if reason else "")
            + "; to go ahead anyway, add --again"
        )


async def _start_new(
    client: Client,
    workflow_fn: Any,
    arg: BaseModel,
    workflow_id: str,
    settings: Settings,
    summary: str,
) -> Started:
    try:
        handle = await client.start_workflow(
            workflow_fn,
            arg,
            id=workflow_id,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=summary,
        )
    except WorkflowAlreadyStartedError:
        raise InvalidInput(f"{workflow_id} already exists; choose another id") from None
    return Started(workflow_id, handle.result_run_id or "", existing=False)


async def start_proposal(
    client: Client, settings: Settings, store: KernelStore, new: NewProposal, *, again: bool = False
) -> Started:
    """Start ``ProposalWorkflow`` for a known client; bad input raises and starts nothing.

    A client whose onboarding was rejected or expired gets a proposal only with ``again``."""
    currency = normalize_currency(new.currency or settings.currency)
    budget = parse_amount(new.budget, currency) if new.budget is not None else None
    if new.deadline is not None and new.deadline < datetime.now(UTC).date():
        raise InvalidInput(f"deadline: {new.deadline} is in the past")
    _require_client(store, new.client_key, again=again)
    proposal_id = new.proposal_id or _new_id(new.client_key, datetime.now(UTC).date())
    return await _start_new(
        client,
        ProposalWorkflow.run,
        ProposalInput(
            proposal_id=proposal_id,
            client_key=new.client_key,
            scope=new.scope,
            currency=currency,
            budget_hint_minor=budget,
            deadline=new.deadline,
            provider=settings.payment_provider,
            policy=settings.proposal_policy,
            billing_policy=settings.billing_policy,
            gate_policy=settings.gate_policy,
        ),
        proposal_workflow_id(proposal_id),
        settings,
        f"Proposal for {new.client_key}",
    )


async def start_billing(
    client: Client, settings: Settings, store: KernelStore, new: NewInvoice
) -> Started:
    """Start ``BillingWorkflow`` for a known client; bad input raises and starts nothing."""
    currency = normalize_currency(new.currency or settings.currency)
    _require_client(store, new.client_key)
    invoice_id = new.invoice_id or _new_id(new.client_key, datetime.now(UTC).date())
    total = sum(item.amount_minor for item in new.items)
    if total <= 0:
        raise InvalidInput("items: the invoice total must be more than zero")
    return await _start_new(
        client,
        BillingWorkflow.run,
        BillingInput(
            invoice_id=invoice_id,
            client_key=new.client_key,
            currency=currency,
            line_items=new.items,
            provider=settings.payment_provider,
            policy=settings.billing_policy,
            gate_policy=settings.gate_policy,
        ),
        billing_workflow_id(invoice_id),
        settings,
        f"Bill {new.client_key}: {format_amount(total, currency)}",
    )


def workflow_id_for(process: str, ref: str) -> str:
    """``acme-20261121-ab12`` -> ``<process>/acme-20261121-ab12``; full ids pass through."""
    ref = ref.strip()
    if not ref:
        raise InvalidInput(f"{process}: an id is required")
    return ref if "/" in ref else f"{process}/{ref}"


async def _running(client: Client, workflow_id: str) -> None:
    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise InvalidInput(f"workflow {workflow_id!r} does not exist") from exc
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        status = desc.status.name.lower() if desc.status else "closed"
        raise InvalidInput(f"workflow {workflow_id!r} is {status}")


async def respond(client: Client, proposal_ref: str, response: ClientResponse) -> bool:
    """Send the client's answer; returns False when no worker confirmed a proposal waits."""
    workflow_id = workflow_id_for("proposal", proposal_ref)
    await _running(client, workflow_id)
    progress = await proposal_progress(client, workflow_id)
    if progress is not None:
        if progress.waiting_for != CLIENT_RESPONSE_SIGNAL:
            where = progress.steps_done[-1] if progress.steps_done else "starting"
            raise InvalidInput(
                f"{workflow_id} is not waiting for the client's answer (last step: {where})"
            )
        version = progress.version
        if response.version is not None and version and response.version != version:
            raise InvalidInput(f"version: v{response.version} is not the version out (v{version})")
        total, currency = progress.total_minor, progress.currency
        if response.proposed_total is not None and total is not None and currency:
            proposed = parse_amount(response.proposed_total, currency)
            if proposed <= 0 or proposed >= total:
                raise InvalidInput(
                    f"total: {format_amount(proposed, currency)} is not below the current total "
                    f"{format_amount(total, currency)}; to agree, send accept"
                )
    await client.get_workflow_handle(workflow_id).signal(CLIENT_RESPONSE_SIGNAL, response)
    return progress is not None


@dataclass(frozen=True)
class PaymentSent:
    workflow_id: str
    amount: str
    confirmed: bool


async def record_payment(
    client: Client,
    store: KernelStore,
    invoice_ref: str,
    *,
    amount: Decimal | None,
    reference: str,
    recorded_by: str,
    paid_at: datetime | None = None,
) -> PaymentSent:
    """Tell a billing run that money arrived. ``invoice_ref`` is the invoice id, its workflow
    id or its number (``INV-000042``); without ``amount`` the open balance is paid."""
    ref = invoice_ref.strip()
    if re.fullmatch(r"(?i)INV-\d+", ref):
        number = int(ref.split("-", 1)[1])
        found = store.invoice_by_number(number)
        if found is None:
            raise InvalidInput(f"invoice {ref.upper()} does not exist")
        ref = found.workflow_id
    workflow_id = workflow_id_for("billing", ref)
    await _running(client, workflow_id)
    progress = await billing_progress(client, workflow_id)
    currency = progress.currency if progress else ""
    balance = progress.balance_minor if progress else None
    if amount is None:
        if progress is None or balance is None or not currency:
            raise InvalidInput(
                "amount: no worker answered with the open balance; give --amount explicitly"
            )
        if balance <= 0:
            raise InvalidInput(f"{workflow_id} has nothing left to pay")
        amount = Decimal(balance).scaleb(-currency_exponent(currency))
    if amount <= 0:
        raise InvalidInput("amount: must be more than zero")
    if currency:
        minor = parse_amount(amount, currency)  # the right number of decimals for the currency
        if balance is not None and minor > balance:
            raise InvalidInput(
                f"amount: {format_amount(minor, currency)} is more than the open balance "
                f"{format_amount(balance, currency)} of {workflow_id}"
            )
    payment = PaymentReceived(
        amount=amount, reference=reference, recorded_by=recorded_by, paid_at=paid_at
    )
    await client.get_workflow_handle(workflow_id).signal(PAYMENT_RECEIVED_SIGNAL, payment)
    shown = format_amount(parse_amount(amount, currency), currency) if currency else str(amount)
    return PaymentSent(workflow_id, shown, confirmed=progress is not None)


async def cancel(client: Client, workflow_id: str) -> None:
    """Request cancellation; the workflow runs its compensations before it ends."""
    await _running(client, workflow_id)
    await client.get_workflow_handle(workflow_id).cancel()


# --- model spend ----------------------------------------------------------------------------

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class CostLine(BaseModel):
    key: str
    calls: int
    model_calls: int
    tokens: int
    usd: Decimal


class BudgetLine(BaseModel):
    scope: str  # "all agents" or an agent name
    cap_usd: Decimal
    spent_usd: Decimal
    remaining_usd: Decimal


class CostReport(BaseModel):
    """Model spend in one calendar month (UTC), as ``aios costs`` shows it."""

    month: str
    provider: str
    total_usd: Decimal
    by_process: list[CostLine]
    by_agent: list[CostLine]
    by_day: list[CostLine]
    budgets: list[BudgetLine]


def month_bounds(month: str | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """``"2026-11"`` (or the current month) as [start, end) in UTC."""
    if month is None:
        today = (now or datetime.now(UTC)).astimezone(UTC)
        year, number = today.year, today.month
    else:
        match = _MONTH.match(month.strip())
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise InvalidInput(f"month: {month!r} is not a month like 2026-11")
        year, number = int(match.group(1)), int(match.group(2))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=UTC)
    return start, end


def cost_report(store: KernelStore, settings: Settings, month: str | None = None) -> CostReport:
    start, end = month_bounds(month)
    rows = store.cost_report(start, end)

    def group(field_name: str) -> list[CostLine]:
        lines: dict[str, CostLine] = {}
        for row in rows:
            key = str(row[field_name])
            line = lines.setdefault(key, CostLine(key=key, calls=0, model_calls=0, tokens=0, usd=0))
            line.calls += int(row["calls"])
            line.model_calls += int(row["model_calls"])
            line.tokens += int(row["tokens"] or 0)
            line.usd += Decimal(row["usd"])
        return sorted(lines.values(), key=lambda line: line.key)

    by_agent = group("agent")
    total = sum((line.usd for line in by_agent), Decimal(0))
    spent = {line.key: line.usd for line in by_agent}
    policy = settings.agent_policy
    budgets = [
        BudgetLine(
            scope="all agents",
            cap_usd=policy.monthly_budget_usd,
            spent_usd=total,
            remaining_usd=max(policy.monthly_budget_usd - total, Decimal(0)),
        )
    ]
    for agent, cap in sorted(policy.agent_budgets_usd.items()):
        used = spent.get(agent, Decimal(0))
        budgets.append(
            BudgetLine(
                scope=agent, cap_usd=cap, spent_usd=used, remaining_usd=max(cap - used, Decimal(0))
            )
        )
    return CostReport(
        month=f"{start:%Y-%m}",
        provider=settings.agent_provider,
        total_usd=total,
        by_process=group("process"),
        by_agent=by_agent,
        by_day=group("day"),
        budgets=budgets,
    )


# --- connector health -------------------------------------------------------------------------


def check_schedule(settings: Settings) -> Schedule:
    every = settings.synthetic_check_every
    # The gate of a failing round expires before the next round starts (which then reports
    # afresh); overlapping rounds are skipped.
    window = max(every * 0.9, every - timedelta(minutes=5))
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SyntheticCheckWorkflow.run,
            SyntheticCheckInput(gate_policy=GatePolicy(remind_after=window, expire_after=window)),
            id=CHECK_WORKFLOW_ID,
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="AiOs synthetic connector checks"),
    )


async def ensure_check_schedule(client: Client, settings: Settings) -> str:
    """Create the synthetic-check schedule, or bring it up to date; returns what it did."""
    schedule = check_schedule(settings)
    try:
        await client.create_schedule(CHECK_SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(CHECK_SCHEDULE_ID)
        await handle.update(lambda _: ScheduleUpdate(schedule=schedule))
        return "updated"


async def run_checks_now(client: Client, settings: Settings) -> None:
    """Trigger one round now (creating the schedule first if it is missing)."""
    await ensure_check_schedule(client, settings)
    await client.get_schedule_handle(CHECK_SCHEDULE_ID).trigger()


class HealthReport(BaseModel):
    checks: list[dict[str, Any]]
    guards: list[dict[str, Any]]
    in_doubt: list[dict[str, Any]]


def health_report(store: KernelStore) -> HealthReport:
    return HealthReport(
        checks=store.last_synthetic_checks(),
        guards=store.connector_health(),
        in_doubt=store.in_doubt_effects(),
    )
