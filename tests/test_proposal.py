"""ProposalWorkflow and the BillingWorkflow it starts, on the real stack."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from aios import operations
from aios.config import Settings
from aios.workers.services import Services
from aios.workflows.billing import BillingResult
from aios.workflows.gates import GateDecision
from aios.workflows.proposal import ClientResponse
from tests.conftest import RecordingSmtp
from tests.helpers import RUNS, save_history
from tests.money_helpers import (
    body_text,
    ends_cancelled,
    fast,
    gate_open,
    known_client,
    mails_until,
    pdf_text,
    pdfs,
    progress_until,
    propose,
    waiting_for,
)

pytestmark = pytest.mark.usefixtures("worker")

WEBSITE = "A new website for our bakery chain, with online ordering."  # USD 5,600 list
WORKSHOP = "A strategy workshop for the leadership team."  # USD 2,200 list


def accept(note: str = "") -> ClientResponse:
    return ClientResponse(response="accept", note=note)


async def test_accepted_proposal_starts_billing_which_ends_paid_with_one_invoice_and_entry(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp
) -> None:
    s = fast(settings, proposal_auto_approve_max_total=Decimal(10000))
    store = services.store
    name, key, email = known_client(store)
    handle = await propose(client, s, store, key, WEBSITE)

    await progress_until(client, handle.id, waiting_for("client_response"))
    [sent] = await mails_until(smtp, email, 1)
    assert sent["Subject"].startswith("Proposal: A new website")
    [(filename, document)] = pdfs(sent).items()
    assert filename.endswith("-v1.pdf")
    text = pdf_text(document)
    assert "USD 5,600.00" in text and name in text

    assert await operations.respond(client, handle.id, accept("Looks great"))
    result = await handle.result()
    await save_history(handle, "proposal_accepted")
    assert (result.status, result.version, result.total) == ("accepted", 1, "USD 5,600.00")
    assert result.billing_workflow_id == f"billing/{result.proposal_id}"
    assert result.memory_id is not None
    outcome = services.memory.get(result.memory_id)
    assert outcome is not None and "Outcome: accepted" in outcome.text
    # The real outcome comes before any client text (reason, scope) that could mimic it.
    assert outcome.text.split(". ")[1] == "Outcome: accepted"
    assert outcome.provenance.source_workflow_id == handle.id

    billing = client.get_workflow_handle(result.billing_workflow_id, result_type=BillingResult)
    RUNS.append(billing.id)
    progress = await progress_until(client, billing.id, waiting_for("payment_received"))
    assert progress.balance == "USD 5,600.00"
    # The proposal run has ended; the billing child it started runs on (parent-close ABANDON).
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    child = await billing.describe()
    assert child.status == WorkflowExecutionStatus.RUNNING
    assert child.parent_id == handle.id
    mails = await mails_until(smtp, email, 2)
    invoice_mail = mails[1]
    number = progress.number
    assert invoice_mail["Subject"] == f"Invoice {number}: USD 5,600.00"
    [invoice_pdf] = pdfs(invoice_mail).values()
    assert number in pdf_text(invoice_pdf)
    assert "bank transfer" in body_text(invoice_mail)

    # The operator records the transfer with no amount: the open balance is paid.
    sent_payment = await operations.record_payment(
        client, store, number, amount=None, reference="BANK-REF-1", recorded_by="pat"
    )
    assert sent_payment.amount == "USD 5,600.00" and sent_payment.confirmed
    paid = await billing.result()
    await save_history(billing, "billing_paid")
    assert (paid.status, paid.number, paid.paid) == ("paid", number, "USD 5,600.00")

    assert len(smtp.to(email)) == 2  # one proposal, one invoice; nothing else
    invoice = store.invoices.get(result.proposal_id)
    assert invoice is not None and invoice.status == "paid"
    [entry] = store.invoices.ledger(invoice.invoice_id)
    assert (entry.kind, entry.amount_minor, entry.reference) == ("payment", 560_000, "BANK-REF-1")
    assert paid.memory_id is not None and services.memory.get(paid.memory_id) is not None
    kinds = [e.kind for e in store.events.for_run(billing.id)]
    assert kinds.count("invoice.sent") == 1 and kinds.count("payment.recorded") == 1
    assert kinds[-1] == "billing.paid"


async def test_small_proposal_is_auto_approved_and_the_rule_is_recorded(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp
) -> None:
    store = services.store
    _, key, email = known_client(store, segment="consulting")
    handle = await propose(client, fast(settings), store, key, WORKSHOP)
    await progress_until(client, handle.id, waiting_for("client_response"))
    events = store.events.for_run(handle.id)
    [verdict] = [e for e in events if e.kind == "proposal.auto_approved"]
    assert verdict.payload["rule"] == "proposal.auto_approve"
    assert any("USD 2,200.00" in reason for reason in verdict.payload["reasons"])
    assert not [e for e in events if e.kind.startswith("gate.")]
    await operations.respond(client, handle.id, ClientResponse(response="decline", note="later"))
    result = await handle.result()
    assert (result.status, result.reason) == ("declined", "later")
    assert len(smtp.to(email)) == 1


async def test_a_discount_above_policy_waits_at_the_gate_with_the_amount_in_the_inbox(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp
) -> None:
    store = services.store
    _, key, email = known_client(store)
    # Budget 4,400 against a 5,600 list price: the agent offers 21.5% off; policy allows 10%.
    handle = await propose(client, fast(settings), store, key, WEBSITE, budget="4400")
    progress = await progress_until(client, handle.id, gate_open)
    [gate] = progress.pending_gates
    assert gate.gate == "proposal" and gate.amount == "USD 4,396.00"
    assert "proposal.max_discount_pct" in gate.summary
    assert set(gate.editable_fields) == {"total", "discount_pct", "terms"}
    inbox = await operations.inbox(client)
    [item] = [i for i in inbox if i.workflow_id == handle.id]
    assert item.gate is not None and item.gate.amount == "USD 4,396.00"
    assert smtp.to(email) == []  # nothing goes out before the decision

    [needs] = [e for e in store.events.for_run(handle.id) if e.kind == "proposal.needs_approval"]
    assert needs.payload["rule"] == "proposal.needs_approval"

    # An edit that cannot be applied is rejected; the gate keeps waiting.
    raw = client.get_workflow_handle(handle.id)
    for edits in ({"total": "abc"}, {"total": "9999"}, {"discount_pct": "150"}):
        await raw.signal("decide", {"decision": "edit", "approver": "pat", "edits": edits})
    progress = await progress_until(
        client, handle.id, lambda p: p.pending_gates and p.pending_gates[0].rejected_signals == 3
    )
    assert "edits.discount_pct: must be between 0 and 100" in (
        progress.pending_gates[0].last_rejection or ""
    )

    # An edit (a smaller discount) makes version 2, and that is what the client receives.
    await operations.decide(
        client,
        handle.id,
        GateDecision(decision="edit", approver="pat", edits={"total": "4800"}, comment="meet"),
    )
    await progress_until(client, handle.id, waiting_for("client_response"))
    [mail] = await mails_until(smtp, email, 1)
    assert "(version 2)" in mail["Subject"]
    assert "USD 4,800.00" in pdf_text(next(iter(pdfs(mail).values())))
    versions = store.proposals.versions(handle.id.split("/", 1)[1])
    assert [(v.version, v.source, v.total_minor) for v in versions] == [
        (1, "agent", 439_600),
        (2, "edit", 480_000),
    ]
    assert versions[1].author == "pat" and versions[1].based_on == versions[0].id
    await handle.cancel()
    await ends_cancelled(handle)
    # Cancelled after sending: the client is told the offer is withdrawn (saga).
    retraction = (await mails_until(smtp, email, 2))[1]
    assert retraction["Subject"].startswith("Withdrawn: proposal")


async def test_counter_offer_makes_version_2_which_goes_through_policy_again(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp
) -> None:
    store = services.store
    _, key, email = known_client(store, segment="consulting")
    handle = await propose(client, fast(settings), store, key, WORKSHOP)
    await progress_until(client, handle.id, waiting_for("client_response"))

    # A counter at or above the current total is not a counter: rejected, still waiting.
    with pytest.raises(Exception, match="not below the current total"):
        await operations.respond(
            client,
            handle.id,
            ClientResponse(response="counter", proposed_total=Decimal(2500)),
        )

    await operations.respond(
        client,
        handle.id,
        ClientResponse(response="counter", proposed_total=Decimal(1500), note="too pricey"),
    )
    progress = await progress_until(client, handle.id, gate_open)
    [gate] = progress.pending_gates
    assert gate.amount == "USD 1,500.00"
    assert "31.82%" in gate.summary  # 700 off the 2,200 list price

    await operations.decide(client, handle.id, GateDecision(decision="approve", approver="pat"))
    await progress_until(
        client,
        handle.id,
        lambda p: p.waiting_for == "client_response" and p.version == 2,
    )
    await operations.respond(client, handle.id, accept())
    result = await handle.result()
    await save_history(handle, "proposal_countered")
    assert (result.status, result.version, result.total) == ("accepted", 2, "USD 1,500.00")

    versions = store.proposals.versions(handle.id.split("/", 1)[1])
    assert [(v.version, v.source, v.total_minor, str(v.discount_pct)) for v in versions] == [
        (1, "agent", 220_000, "0.00"),
        (2, "counter", 150_000, "31.82"),
    ]
    kinds = [e.kind for e in store.events.for_run(handle.id)]
    assert kinds.count("proposal.auto_approved") == 1  # v1
    assert kinds.count("proposal.needs_approval") == 1  # v2, above the discount limit
    assert kinds.count("proposal.sent") == 2
    outcome = services.memory.get(result.memory_id or "")
    assert outcome is not None and "countered at USD 1,500.00" in outcome.text
    assert [" ".join(str(m["Subject"]).split()) for m in smtp.to(email)] == [
        "Proposal: A strategy workshop for the leadership team.",
        "Proposal: A strategy workshop for the leadership team. (version 2)",
    ]

    # The invoice bills exactly the accepted total.
    assert result.billing_workflow_id is not None
    billing = client.get_workflow_handle(result.billing_workflow_id, result_type=BillingResult)
    RUNS.append(billing.id)
    progress = await progress_until(client, billing.id, waiting_for("payment_received"))
    assert progress.total == "USD 1,500.00"
    await billing.cancel()
    await ends_cancelled(billing)


async def test_follow_ups_fire_on_schedule_and_expiry_closes_the_proposal(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp
) -> None:
    store = services.store
    _, key, email = known_client(store, segment="consulting")
    s = fast(
        settings,
        proposal_follow_up_every=timedelta(seconds=1),
        proposal_expire_after=timedelta(seconds=3.5),
    )
    handle = await propose(client, s, store, key, WORKSHOP)
    result = await asyncio.wait_for(handle.result(), timeout=60)
    await save_history(handle, "proposal_expired")
    assert result.status == "expired"
    mails = smtp.to(email)
    kinds = [" ".join(str(m["Subject"]).split()).split(":")[0] for m in mails]
    [expired] = [e for e in store.events.for_run(handle.id) if e.kind == "proposal.no_answer"]
    follow_ups = expired.payload["follow_ups_sent"]
    # Every second until the offer lapses at 3.5 s: two or three, depending on send time.
    assert follow_ups in (2, 3)
    assert kinds == ["Proposal"] + ["Following up"] * follow_ups
    assert len({m["Message-ID"] for m in mails}) == 1 + follow_ups
    outcome = services.memory.get(result.memory_id or "")
    assert outcome is not None and "Outcome: expired" in outcome.text


async def test_malformed_client_responses_are_rejected_and_the_proposal_keeps_waiting(
    client: Client, settings: Settings, services: Services
) -> None:
    store = services.store
    _, key, _ = known_client(store, segment="consulting")
    handle = await propose(client, fast(settings), store, key, WORKSHOP)
    await progress_until(client, handle.id, waiting_for("client_response"))
    raw = client.get_workflow_handle(handle.id)
    await raw.signal("client_response", {"response": "counter"})
    await raw.signal("client_response", {"response": "accept", "version": 7})
    await raw.signal("client_response", {"response": "maybe"})
    progress = await progress_until(client, handle.id, lambda p: p.rejected_signals == 3)
    assert progress.waiting_for == "client_response"
    reasons = [
        e.payload["reason"] for e in store.events.for_run(handle.id) if e.kind == "signal.rejected"
    ]
    await progress_until(client, handle.id, lambda p: True)
    async with asyncio.timeout(10):
        while len(reasons) < 3:
            await asyncio.sleep(0.1)
            reasons = [
                e.payload["reason"]
                for e in store.events.for_run(handle.id)
                if e.kind == "signal.rejected"
            ]
    assert "proposed_total: a counter needs a proposed total" in reasons[0]
    assert "version: 7 is not the version out (v1)" in reasons[1]
    assert reasons[2].startswith("response:")
    await raw.signal("client_response", {"response": "decline", "note": "not now"})
    assert (await handle.result()).status == "declined"
