"""What the console shows, on the real stack: the gate page's document per gate kind, the Edit
form checked as the workflow checks it, runs from visibility, a client's page, attention."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from aios import operations
from aios.config import Settings
from aios.connectors.contract import CheckResult
from aios.errors import InvalidInput
from aios.kernel.commerce import Invoice
from aios.kernel.events import EventDraft
from aios.kernel.models import Event
from aios.kernel.money import LineItem
from aios.operations import console
from aios.operations.messages import WaitingGate
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.checks import SyntheticCheckInput, SyntheticCheckWorkflow
from aios.workflows.gates import GateDecision
from aios.workflows.proposal import ProposalInput, ProposalWorkflow
from tests import test_agents_hosted
from tests.helpers import start_at_gate, wait_for_gate
from tests.money_helpers import bill, fast, known_client, propose
from tests.openai_replay import ModelReplayServer
from tests.test_agents_hosted import gate_named, onboard
from tests.test_connector_fabric import probing

# The replay server and the worker whose agents call it, as the hosted-agent tests use them.
server = test_agents_hosted.server
hosted_worker = test_agents_hosted.hosted_worker

WEBSITE = "A new website for our bakery chain, with online ordering."  # USD 5,600 list


@pytest.fixture(scope="module")
def stack_settings(base_settings: Settings) -> Settings:
    """One task queue and fast money policies for every test here."""
    return fast(base_settings.model_copy(update={"task_queue": f"console-{uuid.uuid4().hex[:8]}"}))


@pytest.fixture(scope="module")
async def stack_worker(
    client: Client, stack_settings: Settings, services: Services, executor: ThreadPoolExecutor
) -> AsyncIterator[Worker]:
    async with build_worker(
        client, stack_settings.task_queue, services.activities(), executor
    ) as worker:
        yield worker


pytestmark = pytest.mark.usefixtures("stack_worker")


async def test_welcome_gate_shows_the_full_draft_and_checks_edits_as_the_workflow(
    client: Client, stack_settings: Settings, services: Services
) -> None:
    store = services.store
    handle, _, _, _ = await start_at_gate(client, stack_settings)
    view = await console.gate_view(client, store, stack_settings, handle.id)

    assert (view.gate.gate, view.gate.status, view.gate.run_status) == (
        "welcome",
        "waiting",
        "running",
    )
    desc = await handle.describe()
    draft = operations.welcome_document(store, handle.id, desc.run_id)
    assert draft is not None
    doc = view.document
    assert isinstance(doc, console.WelcomeGateDocument)
    assert (doc.subject, doc.body, doc.plan) == (draft.subject, draft.body, draft.plan)
    assert len(doc.body) > 200 and doc.plan  # the whole body, not a preview
    assert doc.kickoff_at is not None
    assert {f.name: f.value for f in view.fields} == {"subject": draft.subject, "body": draft.body}
    assert f"/{desc.run_id}/" in view.gate.web_ui_url

    # The Edit form: a multi-line subject is refused as the run would refuse it.
    form = {"subject": "Hello\nBcc: someone@else.example", "body": draft.body}
    edits = console.form_edits(view, form)
    assert edits == {"subject": form["subject"]}  # the unchanged body is no edit
    errors = console.check_edits(view, edits)
    assert errors == {"subject": "contains a line break at position 5; it must be one line"}
    assert console.check_edits(view, {"plan": "x"}) == {
        "plan": "not an editable field (editable: subject, body)"
    }
    assert console.FORM_ERROR in console.check_edits(view, {})
    assert console.check_edits(view, {"body": "  "}) == {
        "body": "must not be empty (the run would keep the current text)"
    }

    # Accepted, and shown as a diff; a browser's CRLF line breaks become plain ones.
    new_body = draft.body.replace("\n", "\r\n", 1) + "\r\nP.S. See you at the kickoff."
    edits = console.form_edits(view, {"subject": draft.subject, "body": new_body})
    assert list(edits) == ["body"] and "\r" not in edits["body"]
    assert console.check_edits(view, edits) == {}
    [diff] = console.edit_diff(view, edits)
    assert diff.field == "body" and "+P.S. See you at the kickoff." in diff.lines
    assert diff.lines[0].startswith("--- body")

    # What the check accepts, the run takes: the gate closes as edited.
    await operations.decide(
        client, handle.id, GateDecision(decision="edit", approver="pat", edits=edits)
    )
    await handle.result()
    after = await console.gate_view(client, store, stack_settings, handle.id)
    assert (after.gate.status, after.gate.approver, after.gate.edited_fields) == (
        "edited",
        "pat",
        ["body"],
    )
    assert isinstance(after.document, console.WelcomeGateDocument)
    assert after.document.body.endswith("P.S. See you at the kickoff.")
    assert console.check_edits(after, edits) == {
        console.FORM_ERROR: "gate 'welcome' is not waiting (edited)"
    }


async def test_proposal_gate_shows_lines_memories_and_pdf_and_checks_edits(
    client: Client, stack_settings: Settings, services: Services
) -> None:
    store = services.store
    _, key, _ = known_client(store)
    # Budget 4,400 against a 5,600 list price: 21.5% off, above the 10% policy: a gate.
    handle = await propose(client, stack_settings, store, key, WEBSITE, budget="4400")
    await wait_for_gate(client, handle.id)
    view = await console.gate_view(client, store, stack_settings, handle.id)

    doc = view.document
    assert isinstance(doc, console.ProposalGateDocument)
    proposal_id = handle.id.split("/", 1)[1]
    [version] = store.proposals.versions(proposal_id)
    assert [(line.description, line.quantity, line.unit_price_minor) for line in doc.lines] == [
        (i.description, i.quantity, i.unit_price_minor) for i in version.line_items
    ]
    assert (doc.total_minor, doc.discount_pct, doc.terms) == (
        version.total_minor,
        version.discount_pct,
        version.terms,
    )
    assert doc.valid_until is not None and doc.scope == WEBSITE and doc.rationale
    assert view.gate.amount == "USD 4,396.00"
    assert {f.name: f.value for f in view.fields}["total"] == "4396.00"

    pdf = await console.gate_pdf(client, store, stack_settings, handle.id)
    assert pdf is not None and pdf.startswith(b"%PDF")

    assert "total" in console.check_edits(view, {"total": "a lot"})
    above = console.check_edits(view, {"total": "9000"})
    assert above == {"total": "above the list price USD 5,600.00"}
    both = console.check_edits(view, {"total": "5000", "discount_pct": "5"})
    assert both == {console.FORM_ERROR: "give total or discount_pct, not both"}
    assert "discount_pct" in console.check_edits(view, {"discount_pct": "150"})
    assert console.check_edits(view, {"total": "5000.00"}) == {}
    [diff] = console.edit_diff(view, {"total": "5000.00"})
    assert diff.lines[-2:] == ["-4396.00", "+5000.00"]
    await client.get_workflow_handle(handle.id).terminate("test done")


async def test_invoice_gate_shows_the_draft_and_its_pdf(
    client: Client, stack_settings: Settings, services: Services
) -> None:
    store = services.store
    _, key, _ = known_client(store)
    handle = await bill(client, stack_settings, store, key, 1_500_000)  # above USD 10,000
    await wait_for_gate(client, handle.id)
    view = await console.gate_view(client, store, stack_settings, handle.id)
    doc = view.document
    assert isinstance(doc, console.InvoiceGateDocument)
    assert (doc.status, doc.number, doc.total) == ("draft", None, "USD 15,000.00")
    assert [line.amount_minor for line in doc.lines] == [1_500_000]
    assert view.fields == [] and console.check_edits(view, {"total": "1"}) == {
        "total": "not an editable field (editable: none)"
    }
    pdf = await console.gate_pdf(client, store, stack_settings, handle.id)
    assert pdf is not None and pdf.startswith(b"%PDF")
    await client.get_workflow_handle(handle.id).terminate("test done")


async def test_unknown_runs_are_not_found(
    client: Client, stack_settings: Settings, services: Services
) -> None:
    with pytest.raises(console.NotFound, match="does not exist"):
        await console.gate_view(client, services.store, stack_settings, "onboarding/nobody-here")


async def _until(check: Any, timeout: float = 30) -> Any:
    """Ask ``check()`` again until it returns something truthy (visibility lags a little)."""
    async with asyncio.timeout(timeout):
        while not (found := await check()):
            await asyncio.sleep(0.2)
    return found


async def test_runs_filter_by_client_process_and_outcome_and_refuse_bad_filters(
    client: Client, stack_settings: Settings
) -> None:
    handle, _, key, _ = await start_at_gate(client, stack_settings)
    await operations.decide(
        client, handle.id, GateDecision(decision="reject", approver="pat", comment="not now")
    )
    await handle.result()

    rows = await _until(
        lambda: console.runs(
            client, stack_settings, client_key=key, process="onboarding", outcome="rejected"
        )
    )
    [row] = rows
    assert (row.workflow_id, row.status, row.outcome, row.client_key) == (
        handle.id,
        "completed",
        "rejected",
        key,
    )
    assert f"/{row.run_id}/" in row.web_ui_url
    assert await console.runs(client, stack_settings, client_key=key, outcome="completed") == []
    assert await console.runs(client, stack_settings, client_key=key, process="proposal") == []
    assert [
        r.workflow_id
        for r in await console.runs(client, stack_settings, status="completed", client_key=key)
    ] == [handle.id]

    bad: list[tuple[str, dict[str, Any]]] = [
        ("process", {"process": "onboarding' OR WorkflowId != '"}),
        ("outcome", {"outcome": "won"}),
        ("status", {"status": "sleeping"}),
        ("client", {"client_key": "Acme Ltd"}),
        ("limit", {"limit": 0}),
    ]
    for name, filters in bad:
        with pytest.raises(InvalidInput, match=f"^{name}: "):
            await console.runs(client, stack_settings, **filters)


async def test_client_view_shows_records_timeline_and_memory_with_provenance(
    client: Client, stack_settings: Settings, services: Services
) -> None:
    handle, _, key, _ = await start_at_gate(client, stack_settings)
    await operations.decide(client, handle.id, GateDecision(decision="approve", approver="pat"))
    await handle.result()

    view = await console.client_view(client, services.store, stack_settings, key)
    assert view.client.key == key
    kinds = [e.kind for e in view.events]
    assert {"gate.requested", "gate.decided", "onboarding.completed"} <= set(kinds)
    assert kinds.index("gate.requested") < kinds.index("onboarding.completed")
    [memory] = view.memories
    assert (memory.kind, memory.version, memory.versions) == ("onboarding_summary", 1, 1)
    assert memory.source_workflow_id == handle.id and memory.entity == f"client:{key}"
    assert "Welcome approved by pat" in memory.text and view.memory_note == ""

    with pytest.raises(console.NotFound, match="no client"):
        await console.client_view(client, services.store, stack_settings, "nobody-at-all")


async def test_attention_lists_a_failed_run_and_an_overdue_invoice(
    client: Client, stack_settings: Settings, services: Services
) -> None:
    store = services.store
    # A proposal for a client the kernel does not know fails at its first step.
    proposal_id = f"ghost-{uuid.uuid4().hex[:8]}"
    failed = await client.start_workflow(
        ProposalWorkflow.run,
        ProposalInput(
            proposal_id=proposal_id,
            client_key=f"ghost-{uuid.uuid4().hex[:8]}",
            scope=WEBSITE,
            currency="USD",
            provider=stack_settings.payment_provider,
            policy=stack_settings.proposal_policy,
            billing_policy=stack_settings.billing_policy,
            gate_policy=stack_settings.gate_policy,
        ),
        id=f"proposal/{proposal_id}",
        task_queue=stack_settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError):
        await failed.result()

    # An invoice issued ten days ago with seven days to pay.
    _, key, _ = known_client(store)
    invoice_id = f"late-{uuid.uuid4().hex[:8]}"
    store.invoices.create(
        Invoice(
            invoice_id=invoice_id,
            client_key=key,
            workflow_id=f"billing/{invoice_id}",
            currency="USD",
            line_items=[LineItem(description="Design", quantity=1, unit_price_minor=120_000)],
            total_minor=120_000,
            status="draft",
        ),
        event=_event(f"{invoice_id}/create", "invoice.created"),
    )
    now = datetime.now(UTC)
    issued = store.invoices.issue(
        invoice_id,
        issued_at=now - timedelta(days=10),
        due_at=now - timedelta(days=3),
        event=_event(f"{invoice_id}/issue", "invoice.issued"),
    )

    async def listed() -> Any:
        report = await console.attention(client, store, stack_settings)
        kinds = {(i.kind, i.workflow_id) for i in report.items}
        wanted = {("failed_run", failed.id), ("overdue_invoice", f"billing/{invoice_id}")}
        return report if wanted <= kinds else None

    report = await _until(listed)
    [run] = [i for i in report.items if i.workflow_id == failed.id]
    assert "no client with key" in run.detail and run.what_to_do and run.web_ui_url
    [late] = [i for i in report.items if i.workflow_id == f"billing/{invoice_id}"]
    assert late.title == f"{issued.display_number} to {key} is overdue by 3 day(s)"
    assert late.detail == "USD 1,200.00 open of USD 1,200.00"
    assert f"aios paid {issued.display_number}" in late.what_to_do
    assert report.notes == []


def _event(key: str, kind: str) -> EventDraft:
    return EventDraft(event_key=key, workflow_id="test", run_id="test", process="test", kind=kind)


async def test_connectors_gate_shows_the_failing_checks_and_is_an_attention_item(
    client: Client, settings: Settings, services: Services, executor: ThreadPoolExecutor
) -> None:
    svc = probing(services, crm=CheckResult(ok=False, detail="not authorised: HTTP 401"))
    workflow_id = f"synthetic-check/console-{uuid.uuid4().hex[:8]}"
    async with build_worker(client, settings.task_queue, svc.activities(), executor):
        handle = await client.start_workflow(
            SyntheticCheckWorkflow.run,
            SyntheticCheckInput(),
            id=workflow_id,
            task_queue=settings.task_queue,
        )
        await wait_for_gate(client, workflow_id)
        view = await console.gate_view(client, services.store, settings, workflow_id)
        assert view.document == console.ConnectorsGateDocument(
            failing=[console.FailingCheck(connector="crm", detail="not authorised: HTTP 401")]
        )
        assert view.gate.details["failing"] == [
            {"connector": "crm", "detail": "not authorised: HTTP 401"}
        ]

        async def listed() -> Any:
            report = await console.attention(client, services.store, settings)
            return [i for i in report.items if i.workflow_id == workflow_id]

        [item] = await _until(listed)
        assert item.kind == "connector_gate" and "not authorised" in item.detail
        assert f"aios approve {workflow_id}" in item.what_to_do
        await handle.signal("decide", GateDecision(decision="approve", approver="ops"))
        await handle.result()
    after = await console.gate_view(client, services.store, settings, workflow_id)
    assert after.gate.status == "approved"
    assert after.gate.answered is not None
    assert after.gate.answered.startswith("already decided by ops at ")


@pytest.mark.hosted(provider="azure")
async def test_agent_gate_shows_the_reason_and_the_candidate_answers(
    client: Client,
    services: Services,
    server: ModelReplayServer,
    hosted_worker: tuple[Settings, Worker],
) -> None:
    s, _ = hosted_worker
    server.queue("azure_content_filter_prompt")
    handle, _ = await onboard(client, s, server)
    await gate_named(client, handle.id, "agent")
    view = await console.gate_view(client, services.store, s, handle.id)
    doc = view.document
    assert isinstance(doc, console.AgentGateDocument)
    assert (doc.agent, "content filter" in doc.reason) == ("intake", True)
    assert "template" in doc.fallback
    [candidate] = doc.candidates
    assert (candidate.model, candidate.outcome) == ("gpt-4o-mini", "refused")
    await handle.terminate("test done")


@pytest.mark.hosted(agent_budgets_usd={"intake": Decimal(0)})
async def test_budget_gate_shows_the_estimate_and_what_it_pays_for(
    client: Client,
    services: Services,
    server: ModelReplayServer,
    hosted_worker: tuple[Settings, Worker],
) -> None:
    s, _ = hosted_worker
    handle, _ = await onboard(client, s, server, "openai_intake_ok", "openai_welcome_ok")
    gate = await gate_named(client, handle.id, "budget")
    view = await console.gate_view(client, services.store, s, handle.id)
    doc = view.document
    assert isinstance(doc, console.BudgetGateDocument)
    assert doc.estimate == gate.amount and doc.agent == "intake"
    assert doc.pays_for.startswith("Intake for ")
    assert "budget exceeded" in doc.reason

    # Once the budget gate is answered the welcome gate waits; the budget gate is still there.
    await handle.signal("decide", GateDecision(decision="approve", approver="pat"))
    await gate_named(client, handle.id, "welcome")
    now = await console.gate_view(client, services.store, s, handle.id)
    assert (now.gate.gate, now.gate.status) == ("welcome", "waiting")
    before = await console.gate_view(client, services.store, s, handle.id, gate_key="gate/budget")
    assert (before.gate.gate, before.gate.status, before.gate.approver) == (
        "budget",
        "approved",
        "pat",
    )
    with pytest.raises(console.NotFound, match="no gate 'gate/invoice'"):
        await console.gate_view(client, services.store, s, handle.id, gate_key="gate/invoice")
    await handle.terminate("test done")


async def test_attention_lists_a_stuck_run(
    client: Client, settings: Settings, services: Services, executor: ThreadPoolExecutor
) -> None:
    from aios.workflows import WORKFLOWS
    from tests.broken_workflows import BrokenOnDecision

    others = [w for w in WORKFLOWS if w.__name__ != "OnboardingWorkflow"]
    async with build_worker(
        client,
        settings.task_queue,
        services.activities(),
        executor,
        workflows=[BrokenOnDecision, *others],
    ):
        handle, _, _, _ = await start_at_gate(client, settings)
        await handle.signal("decide", {"decision": "approve", "approver": "op", "comment": "boom"})

        async def listed() -> Any:
            report = await console.attention(client, services.store, settings)
            return [i for i in report.items if i.workflow_id == handle.id]

        [item] = await _until(listed)
    assert item.kind == "stuck_run" and "deliberate bug in the decide handler" in item.detail
    assert item.what_to_do.startswith("a bug in workflow code")
    await handle.terminate("test done")


def test_a_gate_that_waits_before_its_event_landed_shows_as_waiting_not_as_the_last_decision(
    settings: Settings,
) -> None:
    """The run answers ``pending_gates`` with the welcome gate before the activity recording
    its ``gate.requested`` has run; the budget gate before it was approved. The page must show
    the welcome gate waiting, not the budget gate's decision under the welcome's name."""
    now = datetime.now(UTC)

    def event(n: int, kind: str, payload: dict[str, Any]) -> Event:
        return Event(
            id=n,
            event_key=f"onboarding/x/r1/gate/budget/{kind}",
            workflow_id="onboarding/x",
            run_id="r1",
            process="onboarding",
            kind=kind,
            entity=None,
            payload=payload,
            occurred_at=now,
        )

    events = [
        event(1, "gate.requested", {"gate": "budget", "title": "Budget"}),
        event(2, "gate.decided", {"gate": "budget", "decision": "approve", "approver": "pat"}),
    ]
    waiting = WaitingGate(
        gate="welcome",
        title="Welcome email for X",
        summary="",
        requested_at=now,
        expires_at=now + timedelta(days=7),
    )
    state = console._gate_state(
        settings, "onboarding/x", "r1", "onboarding", "running", events, waiting
    )
    assert state is not None
    assert (state.gate, state.status, state.gate_key) == ("welcome", "waiting", "gate/welcome")
    assert state.approver is None and state.decision is None

    # Once the budget gate's decision is all there is, the page shows that decision.
    done = console._gate_state(
        settings, "onboarding/x", "r1", "onboarding", "running", events, None
    )
    assert done is not None and (done.gate, done.status) == ("budget", "approved")
