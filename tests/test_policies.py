"""Policies as versioned data, and learning from the operator's edits, on the real stack:
the `aios policy` command, PostgreSQL, the dev server, Qdrant local mode and SMTP."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client

from aios import operations
from aios.agents.corrections import (
    CorrectionHint,
    Replacement,
    apply_corrections,
    replacements_from_edit,
)
from aios.agents.intake import IntakeFacts
from aios.agents.welcome import WelcomeAgent, WelcomeDraft, WelcomeRequest
from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.models import ClientIntake
from aios.kernel.money import LineItem
from aios.kernel.store import KernelStore
from aios.kernel.stores.policies import PolicyVersion
from aios.memory.backends import open_memory
from aios.operations import console
from aios.operations.onboarding import welcome_document
from aios.operations.policies import POLICY_KEYS, current_policy, pin, set_policy
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.gates import GateDecision
from aios.workflows.onboarding import OnboardingResult
from aios.workflows.proposal import ClientResponse
from tests.conftest import subprocess_env, unique_client
from tests.helpers import RUNS, save_history, wait_for_gate
from tests.money_helpers import fast, gate_open, known_client, progress_until, propose, waiting_for

SIGN_OFF = "Best regards,\nJo Operator\n"
BODY = "Hello {name},\n\nThank you for choosing to work with me.\n\n" + SIGN_OFF


# --- what a test changes stays in the test ---------------------------------------------------


@pytest.fixture
def policy_kept(settings: Settings, services: Services) -> Iterator[PolicyVersion]:
    """The latest policy version before the test. Policies are versions in the session's
    database, so whatever the test sets, and whether it passes or fails, the values it found
    are set again afterwards (a new version): a later test sees the policy it would have
    seen had this test not run."""
    store = services.store
    before = current_policy(settings, store)
    yield before
    latest = current_policy(settings, store)
    changed = [k for k in POLICY_KEYS if latest.values.get(k) != before.values.get(k)]
    if changed:
        store.policies.add(
            before.values, after=latest.version, changed=changed, by="tests", reason="test over"
        )


@pytest.fixture
async def learning_worker(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> AsyncIterator[Services]:
    """The real worker on this test's task queue, with a memory of its own (a fresh embedded
    Qdrant shard): the corrections its runs recall are the ones this test taught, never those
    other tests' gate edits left in the session's memory for clients with similar notes."""
    memory = open_memory(settings.model_copy(update={"qdrant_path": tmp_path / "qdrant"}))
    own = dataclasses.replace(services, memory=memory)
    try:
        async with build_worker(client, settings.task_queue, own.activities(), executor):
            yield own
    finally:
        memory.close()


# --- what an edit teaches (pure) ---------------------------------------------------------------


def test_an_edited_sign_off_and_greeting_apply_to_another_clients_draft() -> None:
    before = {"subject": "Welcome aboard, Acme Ltd", "body": BODY.format(name="Acme Ltd")}
    after = {
        "subject": "Welcome aboard, Acme Ltd",
        "body": BODY.format(name="Acme Ltd")
        .replace("Hello Acme Ltd,", "Dear Acme Ltd team,")
        .replace("Best regards,", "Warm wishes from the studio,")
        .strip(),  # a gate edit arrives stripped
    }
    found = replacements_from_edit(before, after, client_name="Acme Ltd")
    assert found == [
        Replacement(field="body", before="Hello {client},\n", after="Dear {client} team,\n"),
        Replacement(field="body", before="Best regards,\n", after="Warm wishes from the studio,\n"),
    ]
    fields, applied = apply_corrections(
        {"subject": "Welcome aboard, Beta GmbH", "body": BODY.format(name="Beta GmbH")},
        [CorrectionHint(id="c1", replacements=found)],
        client_name="Beta GmbH",
    )
    assert applied == ["c1"]
    assert fields["subject"] == "Welcome aboard, Beta GmbH"
    assert fields["body"] == (
        "Dear Beta GmbH team,\n\nThank you for choosing to work with me.\n\n"
        "Warm wishes from the studio,\nJo Operator\n"
    )


def test_a_correction_that_does_not_fit_changes_nothing_and_is_not_cited() -> None:
    subject = [Replacement(field="subject", before="Welcome aboard, {client}\n", after="Hi\n")]
    other = [Replacement(field="body", before="Kind regards,\n", after="Cheers,\n")]
    fields, applied = apply_corrections(
        {"subject": "Welcome aboard, Beta GmbH", "body": BODY.format(name="Beta GmbH")},
        [
            CorrectionHint(id="fits", replacements=subject),
            CorrectionHint(id="no", replacements=other),
        ],
        client_name="Beta GmbH",
    )
    assert applied == ["fits"]
    assert fields["subject"] == "Hi"  # a one-line field stays one line
    assert fields["body"] == BODY.format(name="Beta GmbH")


def test_a_model_gets_corrections_fenced_with_ids_and_may_cite_only_those() -> None:
    hint = CorrectionHint(
        id="corr-1",
        client_name="Acme Ltd",
        score=0.7,
        replacements=[Replacement(field="body", before="Best regards,\n", after="Cheers,\n")],
    )
    request = WelcomeRequest(
        client_name="Beta GmbH",
        facts=IntakeFacts(segment="web", summary="A new website", urgency="normal"),
        kickoff_at=datetime(2030, 4, 1, 10, tzinfo=UTC),
        operator_name="Jo Operator",
        corrections=[hint],
    )
    agent = WelcomeAgent()
    prompt = agent.render_prompt(request)
    assert "corr-1 (for a client similar to this one, score 0.70):" in prompt
    assert "in body: replace <client_text id=" in prompt and "\nCheers,\n\n</client_text" in prompt
    assert "corrections_used" in prompt
    assert "corrections_used" not in agent.render_prompt(
        request.model_copy(update={"corrections": []})
    )
    draft = WelcomeDraft(subject="Hi", body="Hello", plan=["Call"], corrections_used=["corr-9"])
    assert agent.check(draft, request) == (
        "corrections_used: 'corr-9' is not one of the corrections given"
    )
    raw, _ = agent.template(request)
    assert raw["corrections_used"] == ["corr-1"] and raw["body"].endswith("Cheers,\nJo Operator\n")


# --- aios policy ------------------------------------------------------------------------------


async def aios(settings: Settings, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        ".venv/bin/aios",
        *args,
        env=subprocess_env(settings, COLUMNS="200"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_policy_show_set_history_and_refusals_from_the_cli(
    settings: Settings, services: Services, policy_kept: PolicyVersion
) -> None:
    store = services.store
    code, out, _ = await aios(settings, "policy", "show", "--json")
    assert code == 0
    shown = json.loads(out)
    start = shown["version"]
    values = {e["key"]: e["value"] for e in shown["entries"]}
    original = values["gate_remind_after"]
    events_before = len(store.events.for_entities(["policy"], limit=1000))

    # On the command line: one line naming the key and the reason, exit code 1.
    code, out, err = await aios(
        settings, "policy", "set", "--reason", "try", "--", "gate_remind_after", "-PT5M"
    )
    assert (code, out, err) == (1, "", "error: policy: gate_remind_after: must not be negative\n")
    refused = [
        (("gate_remind_after", "soon", "try"), "gate_remind_after: not a duration"),
        (("proposal_max_discount_pct", "120", "try"), "proposal_max_discount_pct: Input should"),
        (("agent_budgets_usd", '{"nobody": "5"}', "try"), "unknown agent 'nobody'"),
        (("agent_budgets_usd", "5", "try"), "agent_budgets_usd: give a JSON object"),
        (("smtp_port", "25", "try"), "unknown key 'smtp_port'"),
        (("gate_remind_after", original, "try"), "nothing changed"),
        (("gate_remind_after", "PT12H", " "), "reason: say why"),
    ]
    for (key, value, reason), problem in refused:
        with pytest.raises(InvalidInput, match=re.escape(problem)):
            set_policy(settings, store, key, value, by="pat", reason=reason)
    assert current_policy(settings, store).version == start  # nothing was written

    code, out, err = await aios(
        settings, "policy", "set", "AIOS_GATE_REMIND_AFTER", "PT12H",
        "--reason", "clients answer within a day", "--by", "pat",
    )  # fmt: skip
    assert code == 0, err
    assert f"Policy version {start + 1}: gate_remind_after = PT12H (by pat)." in out
    code, out, _ = await aios(settings, "policy", "history", "--json")
    newest = json.loads(out)[0]
    assert (newest["version"], newest["changed"], newest["set_by"], newest["reason"]) == (
        start + 1,
        ["gate_remind_after"],
        "pat",
        "clients answer within a day",
    )
    assert newest["values"] == {**values, "gate_remind_after": "PT12H"}  # a full snapshot
    events = store.events.for_entities(["policy"], limit=1000)
    assert len(events) == events_before + 1
    [event] = [e for e in events if e.payload.get("version") == start + 1]
    assert event.kind == "policy.set"
    assert event.payload["changed"] == {"gate_remind_after": "PT12H"}
    assert (event.payload["by"], event.payload["reason"]) == ("pat", "clients answer within a day")
    assert pin(settings, store).gate_policy.remind_after.total_seconds() == 12 * 3600

    # A setting given with another value than the policy's has no effect, and show says so.
    proc = await asyncio.create_subprocess_exec(
        ".venv/bin/aios",
        "policy",
        "show",
        env=subprocess_env(settings, COLUMNS="200", AIOS_GATE_REMIND_AFTER="P2D"),
        stdout=asyncio.subprocess.PIPE,
    )
    out = (await proc.communicate())[0].decode()
    assert f"Policy version {start + 1}, set by pat" in out
    assert "│ gate_remind_after " in out and "│ PT12H " in out
    assert (
        "Note: AIOS_GATE_REMIND_AFTER set to another value in the environment has no effect: "
        f"policy version {start + 1} decides." in out
    )

    restored = set_policy(settings, store, "gate_remind_after", original, by="pat", reason="back")
    assert restored.values == values


# --- a run pins the version it started with ---------------------------------------------------


async def bill_once(settings: Settings, key: str, amount_minor: int) -> operations.Billed:
    new = operations.NewInvoice(
        client_key=key,
        items=[LineItem(description="Work", quantity=1, unit_price_minor=amount_minor)],
    )
    billed = await operations.bill(settings, new, wait_seconds=30)
    RUNS.append(billed.started.workflow_id)
    return billed


def decisions(store: KernelStore, workflow_id: str) -> dict[str, dict]:
    return {e.kind: e.payload for e in store.events.for_run(workflow_id)}


async def test_a_run_keeps_the_policy_version_it_started_with_and_its_decisions_name_it(
    client: Client, settings: Settings, services: Services, worker: object, policy_kept: object
) -> None:
    store = services.store
    s = fast(settings)
    _, key, _ = known_client(store)
    strict = set_policy(s, store, "billing_approve_above", "100", by="pat", reason="audit month")

    first = await bill_once(s, key, 200_00)  # USD 200 > 100: waits for the operator
    assert first.invoice.gate == "invoice"
    lenient = set_policy(s, store, "billing_approve_above", "1000", by="pat", reason="done")
    second = await bill_once(s, key, 200_00)  # started after the change: issued at once
    assert second.invoice.number is not None

    held = decisions(store, first.started.workflow_id)
    assert held["invoice.needs_approval"]["policy_version"] == strict.version
    assert held["gate.requested"]["policy_version"] == strict.version
    issued = decisions(store, second.started.workflow_id)
    assert issued["invoice.auto_approved"]["policy_version"] == lenient.version
    assert "gate.requested" not in issued

    # The first run still waits under the version it started with.
    progress = await progress_until(client, first.started.workflow_id, lambda p: p.pending_gates)
    assert progress.pending_gates[0].gate == "invoice"
    await operations.decide(
        client,
        first.started.workflow_id,
        GateDecision(decision="reject", approver="pat", comment="test over"),
    )


# --- learning from the operator's edits -------------------------------------------------------


async def test_an_edit_at_the_welcome_gate_teaches_the_next_welcome_for_a_similar_client(
    client: Client,
    settings: Settings,
    learning_worker: Services,
    policy_kept: PolicyVersion,
) -> None:
    store = learning_worker.store
    assert policy_kept.values["agent_apply_corrections"] is False
    set_policy(settings, store, "agent_apply_corrections", "true", by="pat", reason="learn")
    learning = pin(settings, store)
    assert learning.agent_apply_corrections and learning.policy_version is not None
    notes = "Needs a new website for the bakery chain by May 3, budget $5k."

    async def onboard(prefix: str, notes: str = notes) -> tuple[str, str, str]:
        name, key, email = unique_client(prefix)
        started = await operations.start_onboarding(
            client,
            learning,
            ClientIntake(name=name, key=key, email=email, notes=notes),
        )
        RUNS.append(started.workflow_id)
        await wait_for_gate(client, started.workflow_id)
        return name, started.workflow_id, started.run_id

    _, first_id, first_run = await onboard("crumb")
    drafted = welcome_document(store, first_id, first_run)
    assert drafted is not None and "Best regards," in drafted.body
    edited = drafted.body.replace("Best regards,", "Warm wishes from the studio,")
    await operations.decide(
        client,
        first_id,
        GateDecision(decision="edit", approver="pat", edits={"body": edited}),
    )
    handle = client.get_workflow_handle(first_id, result_type=OnboardingResult)
    assert (await handle.result()).status == "completed"
    await save_history(handle, "onboarding_correction_learnt")
    [stored] = [e for e in store.events.for_run(first_id) if e.kind == "correction.stored"]
    correction = stored.payload["correction_id"]
    assert (stored.payload["gate"], stored.payload["approver"]) == ("welcome", "pat")
    memory = learning_worker.memory.get(correction)
    assert memory is not None
    assert memory.provenance.kind == "operator_correction"
    assert memory.provenance.source_workflow_id == first_id

    second_name, second_id, second_run = await onboard("loaf")
    welcome = welcome_document(store, second_id, second_run)
    assert welcome is not None
    assert welcome.body.startswith(f"Hello {second_name},")
    assert "Warm wishes from the studio,\n" in welcome.body
    assert "Best regards" not in welcome.body
    assert welcome.corrections == [correction]  # the draft cites it
    [called] = [e for e in store.events.for_run(second_id) if e.kind == "agent.called"
                and e.payload.get("agent") == "welcome"]  # fmt: skip
    assert called.payload["corrections"] == [correction]
    # The gate shows the correction it was given, what it replaces, and that it applied.
    view = await console.gate_view(client, store, settings, second_id)
    assert view.document is not None
    [cited] = view.document.model_dump()["cited_corrections"]
    assert (cited["id"], cited["used"], cited["approver"]) == (correction, True, "pat")
    assert cited["replacements"] == [
        {
            "field": "body",
            "before": "Best regards,\n",
            "after": "Warm wishes from the studio,\n",
        }
    ]
    # A client unlike the first one gets the welcome as the agent writes it.
    _, other_id, other_run = await onboard(
        "dewey", "Wants advice on restructuring the partnership and its tax questions."
    )
    other = welcome_document(store, other_id, other_run)
    assert other is not None and "Best regards," in other.body and other.corrections == []
    for workflow_id in (second_id, other_id):
        await operations.decide(
            client, workflow_id, GateDecision(decision="reject", approver="pat", comment="t")
        )
    applied = client.get_workflow_handle(second_id, result_type=OnboardingResult)
    assert (await applied.result()).status == "rejected"
    await save_history(applied, "onboarding_correction_applied")


WEBSITE = "A new website for our bakery chain, with online ordering."  # USD 5,600: a gate
FIXED = "Prices are fixed for the scope described; changes to the scope are quoted separately."
REVISIONS = "Prices include two rounds of revisions; further changes are quoted separately."


async def test_an_edit_to_the_proposal_terms_applies_to_the_next_proposal_for_a_similar_client(
    client: Client, settings: Settings, learning_worker: Services
) -> None:
    store = learning_worker.store
    learning = fast(settings, agent_apply_corrections=True)

    async def at_gate(key: str) -> tuple[str, str]:
        handle = await propose(client, learning, store, key, WEBSITE)
        await progress_until(client, handle.id, gate_open)
        return handle.id, handle.id.split("/", 1)[1]

    _, first_key, _ = known_client(store)
    first_id, first_proposal = await at_gate(first_key)
    [drafted] = store.proposals.versions(first_proposal)
    assert FIXED in drafted.terms
    await operations.decide(
        client,
        first_id,
        GateDecision(
            decision="edit",
            approver="pat",
            edits={"terms": drafted.terms.replace(FIXED, REVISIONS)},
        ),
    )
    await progress_until(client, first_id, waiting_for("client_response"))
    [stored] = [e for e in store.events.for_run(first_id) if e.kind == "correction.stored"]
    correction = stored.payload["correction_id"]
    assert (stored.payload["agent"], stored.payload["gate"]) == ("proposal", "proposal")
    assert stored.payload["fields"] == ["terms"]
    await operations.respond(client, first_id, ClientResponse(response="decline", note="t"))
    learnt = client.get_workflow_handle(first_id)
    await learnt.result()
    await save_history(learnt, "proposal_correction_learnt")

    _, second_key, _ = known_client(store)
    second_id, second_proposal = await at_gate(second_key)
    [offered] = store.proposals.versions(second_proposal)
    assert REVISIONS in offered.terms and FIXED not in offered.terms
    [called] = [e for e in store.events.for_run(second_id) if e.kind == "agent.called"]
    assert called.payload["corrections"] == [correction]
    view = await console.gate_view(client, store, settings, second_id)
    assert view.document is not None
    [cited] = view.document.model_dump()["cited_corrections"]
    assert (cited["id"], cited["used"]) == (correction, True)
    await operations.decide(
        client, second_id, GateDecision(decision="reject", approver="pat", comment="t")
    )
