"""The `aios` command as an operator runs it: a subprocess, one line per error, exit codes."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from temporalio.client import Client
from typer.testing import CliRunner, Result

from aios import operations
from aios.cli.app import app
from aios.config import Settings
from aios.devstack import temporal_binary
from aios.kernel.money import format_amount
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.onboarding import OnboardingResult
from tests.conftest import subprocess_env, unique_client
from tests.fresh_db import fresh_database
from tests.helpers import RUNS, start_at_gate, wait_for_gate


async def aios(settings: Settings, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aios.cli",
        *args,
        env=subprocess_env(settings, COLUMNS="200"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_bad_input_is_one_clear_line_and_starts_nothing(settings: Settings) -> None:
    name, key, _ = unique_client()
    code, _, err = await aios(settings, "onboard", "--name", name, "--email", "not-an-email")
    assert code == 1, err
    assert err.startswith("error: email:"), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err

    code, _, err = await aios(settings, "onboard", "--name", "  ", "--email", "a@b.example")
    assert code == 1 and "name:" in err, err

    code, _, err = await aios(settings, "status", f"onboarding/{key}")
    assert code == 1 and "does not exist" in err, err

    code, _, err = await aios(settings, "approve", f"onboarding/{key}")
    assert code == 1 and "does not exist" in err, err


async def test_invalid_settings_are_named(settings: Settings) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aios.cli",
        "inbox",
        env=subprocess_env(settings, AIOS_SMTP_PORT="seventy"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert "AIOS_SMTP_PORT" in err.decode()


async def test_onboard_inbox_approve_status(client: Client, settings: Settings, worker) -> None:
    name, key, email = unique_client()
    workflow_id = f"onboarding/{key}"
    args = ("onboard", "--name", name, "--key", key, "--email", email, "--notes", "A logo")
    code, out, _ = await aios(settings, *args)
    assert code == 0 and f"Onboarding started: {workflow_id}" in out
    RUNS.append(workflow_id)
    code, out, _ = await aios(settings, *args)
    assert code == 0 and f"Onboarding already running: {workflow_id}" in out

    await wait_for_gate(client, workflow_id)
    code, out, _ = await aios(settings, "inbox")
    assert code == 0 and workflow_id in out and "welcome" in out

    code, out, _ = await aios(
        settings, "approve", workflow_id, "--comment", "ok", "--approver", "sam"
    )
    assert code == 0 and f"Approved gate 'welcome' of {workflow_id} as sam" in out
    handle = client.get_workflow_handle(workflow_id, result_type=OnboardingResult)
    assert (await handle.result()).status == "completed"

    code, out, _ = await aios(settings, "status", workflow_id)
    assert code == 0 and "completed" in out
    for kind in ("gate.decided", "email.sent", "memory.stored", "onboarding.completed"):
        assert kind in out

    code, _, err = await aios(settings, "reject", workflow_id)
    assert code == 1 and "is completed; nothing waits for a decision" in err


async def test_plain_temporal_workflow_signal_approves(
    client: Client, settings: Settings, worker
) -> None:
    """The exact command README.md documents, with this test's server address."""
    name, key, email = unique_client()
    code, _, _ = await aios(settings, "onboard", "--name", name, "--key", key, "--email", email)
    assert code == 0
    workflow_id = f"onboarding/{key}"
    RUNS.append(workflow_id)
    await wait_for_gate(client, workflow_id)
    payload = {"decision": "approve", "approver": "you", "comment": "ok"}
    proc = await asyncio.create_subprocess_exec(
        str(temporal_binary()),
        "workflow",
        "signal",
        "--address",
        settings.temporal_address,
        "--namespace",
        "aios",
        "--workflow-id",
        workflow_id,
        "--name",
        "decide",
        "--input",
        json.dumps(payload),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    handle = client.get_workflow_handle(workflow_id, result_type=OnboardingResult)
    assert (await handle.result()).status == "completed"


async def test_approval_sent_while_no_worker_runs_applies_when_one_starts(
    client: Client, settings: Settings, services: Services, executor: ThreadPoolExecutor
) -> None:
    async with build_worker(client, settings.task_queue, services.activities(), executor):
        handle, _, _, _ = await start_at_gate(client, settings)

    code, out, _ = await aios(settings, "approve", handle.id, "--approver", "sam")
    assert code == 0
    assert "unconfirmed: no worker answered" in " ".join(out.split())

    async with build_worker(client, settings.task_queue, services.activities(), executor):
        result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.status == "completed"
    events = services.store.events.for_run(handle.id, handle.run_id)
    decided = [e for e in events if e.kind == "gate.decided"]
    assert [e.payload["approver"] for e in decided] == ["sam"]


async def test_money_commands_reject_bad_input_and_start_nothing(
    client: Client, settings: Settings, services: Services
) -> None:
    from tests.money_helpers import known_client

    _, key, _ = known_client(services.store)
    cases = [
        (["propose", "--client", "nobody-here", "--scope", "x"], "no client with key"),
        (["propose", "--client", key, "--scope", "   "], "scope:"),
        (["propose", "--client", key, "--scope", "site", "--budget", "-5"], "budget:"),
        (["propose", "--client", key, "--scope", "site", "--budget", "1.234"], "decimal"),
        (["propose", "--client", key, "--scope", "site", "--deadline", "2001-01-01"], "past"),
        (["propose", "--client", key, "--scope", "site", "--currency", "dollars"], "currency"),
        (["bill", "--client", key, "--item", "Design"], "DESCRIPTION=AMOUNT"),
        (["bill", "--client", key, "--item", "Design=abc"], "not a number"),
        (["bill", "--client", key, "--item", "Design=1.5x100"], "whole number"),
        (["respond", "ghost-proposal", "accept"], "does not exist"),
        (["respond", "ghost-proposal", "counter"], "proposed_total"),
        (["respond", "ghost-proposal", "maybe"], "response:"),
        (["paid", "INV-999999"], "does not exist"),
        (["paid", "ghost", "--amount", "-3"], "--amount"),
        (["cancel", "ghost", "--yes"], "full workflow id"),
    ]
    for args, expected in cases:
        code, _, err = await aios(settings, *args)
        assert code == 1, (args, err)
        assert expected in err, (args, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (args, err)
    started = [e async for e in client.list_workflows(f"AiosClient = '{key}'")]
    assert started == []


async def test_propose_respond_and_paid_from_the_command_line(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    smtp: object,
) -> None:
    from tests.money_helpers import known_client, progress_until, waiting_for

    _, key, _ = known_client(services.store, segment="consulting")
    async with build_worker(client, settings.task_queue, services.activities(), executor):
        code, out, err = await aios(
            settings,
            "propose",
            "--client",
            key,
            "--scope",
            "A strategy workshop",
            "--id",
            f"{key}-p1",
        )
        assert code == 0, err
        proposal = f"proposal/{key}-p1"
        assert proposal in out
        RUNS.append(proposal)
        await progress_until(client, proposal, waiting_for("client_response"))
        code, out, err = await aios(settings, "respond", f"{key}-p1", "accept", "--note", "ok")
        assert code == 0 and "Recorded 'accept'" in out, err

        billing = f"billing/{key}-p1"
        progress = await progress_until(client, billing, waiting_for("payment_received"))
        RUNS.append(billing)
        number = progress.number
        code, out, err = await aios(settings, "status", billing)
        assert code == 0 and f"Number: {number}" in out and "payment_received" in out, err
        code, out, err = await aios(settings, "paid", number, "--reference", "SEPA 42")
        assert code == 0 and "Recorded payment of USD 2,200.00" in out, err
        result = await client.get_workflow_handle(billing).result()
    assert result["status"] == "paid"
    [entry] = services.store.invoices.ledger(f"{key}-p1")
    assert (entry.amount_minor, entry.reference) == (220_000, "SEPA 42")


# --- output a person can use ---------------------------------------------------------------------

runner = CliRunner()
HEAVY = ("openai", "qdrant_client", "fpdf", "caldav")


async def invoke(settings: Settings, *args: str, columns: int = 200, **env: str) -> Result:
    """The command in this process (Typer's CliRunner), in a thread: the test's worker keeps
    running on the event loop meanwhile."""
    environment = subprocess_env(
        settings, COLUMNS=str(columns), AIOS_TEMPORAL_UI_URL=settings.temporal_ui_url or "", **env
    )
    return await asyncio.to_thread(lambda: runner.invoke(app, list(args), env=environment))


async def aios_at(settings: Settings, columns: int, *args: str) -> tuple[int, str, str]:
    """The command as a subprocess in a terminal ``columns`` wide."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aios.cli",
        *args,
        env=subprocess_env(
            settings, COLUMNS=str(columns), AIOS_TEMPORAL_UI_URL=settings.temporal_ui_url or ""
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def imported_by(settings: Settings, *args: str) -> set[str]:
    """Every module ``aios <args>`` imports, from ``python -X importtime``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "aios.cli",
        *args,
        env=subprocess_env(settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    found = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", err.decode(), re.MULTILINE)
    assert "aios.cli.app" in found
    return set(found)


async def test_help_inbox_and_approve_import_no_heavy_library(
    client: Client, settings: Settings, worker
) -> None:
    """What keeps them fast (benchmarks/cli_start.py measures it): no model SDK, vector store,
    PDF or calendar library, and no workflow code (the gate contract aside), is imported to
    list or answer gates."""
    handle, _, _, _ = await start_at_gate(client, settings)
    contract = {"aios.workflows", "aios.workflows.contract"}
    for args in (["--help"], ["inbox"], ["approve", handle.id, "--approver", "sam"]):
        modules = await imported_by(settings, *args)
        heavy = {m for m in modules if m.split(".")[0] in HEAVY or m.startswith("aios.workflows")}
        assert heavy - contract == set(), (args, sorted(heavy))
    assert (await handle.result()).status == "completed"  # the approve above really decided


async def test_ids_and_links_are_whole_at_any_width(
    client: Client, settings: Settings, worker
) -> None:
    tag = uuid.uuid4().hex[:8]
    key = f"a-client-with-a-rather-long-name-{tag}-ltd"
    workflow_id = f"onboarding/{key}"
    code, out, err = await aios_at(
        settings, 50, "onboard", "--name", f"Client {tag}", "--key", key, "--email", "a@b.example"
    )
    assert code == 0, err
    RUNS.append(workflow_id)
    await wait_for_gate(client, workflow_id)
    run_id = (await client.get_workflow_handle(workflow_id).describe()).run_id
    url = operations.web_ui_url(settings, workflow_id, run_id)
    assert len(url) > 100
    assert any(url in line for line in out.splitlines()), out
    for columns in (50, 60, 200):
        for args in (["inbox"], ["status", workflow_id], ["show", workflow_id]):
            code, out, err = await aios_at(settings, columns, *args)
            assert code == 0, (columns, args, err)
            lines = out.splitlines()
            assert any(workflow_id in line for line in lines), (columns, args, out)
            assert not any(f"{key[:12]}…" in line or "onboardin…" in line for line in lines)
            if args[0] != "inbox":
                assert any(url in line for line in lines), (columns, args, out)
    code, out, _ = await aios_at(settings, 50, "inbox")
    mine = out.split(workflow_id, 1)[1].split("\n\n", 1)[0]
    assert "  summary: " in mine and "…" in mine  # a summary is cut to the width, an id never


async def test_json_documents_for_scripts(
    client: Client, settings: Settings, services: Services, worker
) -> None:
    handle, gate, _, _ = await start_at_gate(client, settings)

    result = await invoke(settings, "inbox", "--json")
    assert result.exit_code == 0, result.stderr
    [item] = [i for i in json.loads(result.stdout)["items"] if i["workflow_id"] == handle.id]
    assert (item["process"], item["gate"]["gate"], item["note"]) == ("onboarding", "welcome", "")
    assert item["gate"]["summary"] == gate.summary
    assert isinstance(item["waiting_seconds"], int)
    assert datetime.fromisoformat(item["waiting_since"]) == gate.requested_at

    result = await invoke(settings, "status", handle.id, "--json")
    assert result.exit_code == 0, result.stderr
    status = json.loads(result.stdout)
    assert (status["workflow_id"], status["run_id"]) == (handle.id, handle.run_id)
    assert status["status"] == "running" and status["gates"][0]["gate"] == "welcome"
    assert status["web_ui"] == operations.web_ui_url(settings, handle.id, handle.run_id)
    assert "gate.requested" in [e["kind"] for e in status["events"]]
    assert all(isinstance(e["id"], str) and e["occurred_at"] for e in status["events"])

    result = await invoke(settings, "show", handle.id, "--json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["gate"]["gate"] == "welcome" and shown["document"]["kind"] == "welcome"
    draft = services.store.drafts.get(shown["document"]["draft_id"])
    assert draft is not None and shown["document"]["body"] == draft.body

    result = await invoke(settings, "costs", "--json")
    assert result.exit_code == 0, result.stderr
    costs = json.loads(result.stdout)
    assert costs["month"] == f"{datetime.now(UTC):%Y-%m}" and costs["provider"] == "template"
    assert isinstance(costs["total_usd"], str) and costs["budgets"][0]["scope"] == "all agents"

    result = await invoke(settings, "health", "--json")
    assert result.exit_code == 0, result.stderr
    assert set(json.loads(result.stdout)) == {"checks", "guards", "in_doubt"}

    # Errors stay one line on stderr with exit code 1; stdout stays empty for the script.
    code, out, err = await aios(settings, "status", "onboarding/nobody-here-at-all", "--json")
    assert (code, out) == (1, "") and err.startswith("error: workflow 'onboarding/nobody")
    await operations.decide(client, handle.id, operations.Decision(decision="reject", approver="t"))


async def test_show_prints_the_proposal_and_the_invoice_a_gate_asks_about(
    client: Client, settings: Settings, services: Services, worker
) -> None:
    from tests.money_helpers import known_client, progress_until

    _, key, _ = known_client(services.store)
    result = await invoke(
        settings, "propose", "--client", key, "--scope", "A website", "--id", f"{key}-p"
    )
    assert result.exit_code == 0, result.stderr
    proposal = f"proposal/{key}-p"
    RUNS.append(proposal)
    await progress_until(client, proposal, lambda p: bool(p.pending_gates))
    result = await invoke(settings, "show", proposal, columns=60)
    assert result.exit_code == 0, result.stderr
    [version] = services.store.proposals.versions(f"{key}-p")
    for item in version.line_items:
        assert item.description.split()[0] in result.stdout
    assert f"Total: {format_amount(version.total_minor, version.currency)}" in result.stdout
    assert f"Discount: {version.discount_pct}%" in result.stdout
    assert version.terms.split()[0] in result.stdout and "Waiting at gate proposal" in result.stdout
    assert f"aios approve {proposal}" in result.stdout

    # aios bill says the number once issued, or that it waits at the invoice gate.
    result = await invoke(settings, "bill", "--client", key, "--item", "Design=300")
    assert result.exit_code == 0, result.stderr
    number = re.search(r"Invoice (INV-\d{6}) issued \(USD 300\.00\)", result.stdout)
    assert number, result.stdout
    found = services.store.invoices.by_number(int(number.group(1)[4:]))
    assert found is not None and found.client_key == key
    RUNS.append(found.workflow_id)

    result = await invoke(settings, "bill", "--client", key, "--item", "Platform=2x9000")
    assert result.exit_code == 0, result.stderr
    billing = re.search(r"Billing started: (billing/\S+)", result.stdout)
    assert billing, result.stdout
    wid = billing.group(1)
    RUNS.append(wid)
    assert "Waiting at gate 'invoice' (USD 18,000.00): it gets its number when approved." in (
        result.stdout
    )
    assert f"aios show {wid}" in result.stdout and f"aios approve {wid}" in result.stdout
    result = await invoke(settings, "show", wid, "--json")
    invoice = json.loads(result.stdout)["document"]
    assert (invoice["kind"], invoice["number"], invoice["status"]) == ("invoice", None, "draft")
    assert (invoice["total_minor"], invoice["balance"]) == (1_800_000, "USD 18,000.00")
    assert invoice["lines"][0] == {
        "description": "Platform",
        "quantity": 2,
        "unit_price": "USD 9,000.00",
        "unit_price_minor": 900_000,
        "amount": "USD 18,000.00",
        "amount_minor": 1_800_000,
    }
    result = await invoke(settings, "approve", wid, "--approver", "sam")
    assert result.exit_code == 0, result.stderr
    progress = await progress_until(client, wid, lambda p: bool(p.number))
    result = await invoke(settings, "show", progress.number or "", "--json")
    issued = json.loads(result.stdout)
    assert (issued["workflow_id"], issued["document"]["number"]) == (wid, progress.number)
    assert issued["document"]["status"] == "issued" and issued["document"]["due_at"]
    for run in (proposal, wid):
        await client.get_workflow_handle(run).terminate("test done")


def test_the_demo_sends_to_an_address_derived_from_the_name() -> None:
    from aios.cli.demo import sample_email

    assert sample_email("Northwind Studio") == "hello@northwind-studio.example"
    assert sample_email("Café Zürich & Co") == "hello@cafe-zurich-co.example"
    assert sample_email("Москва") == "hello@client.example"
    result = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert "--email" in result.stdout and "hello@<client-key>.example" in result.stdout


def test_a_database_older_than_the_code_is_one_clear_line_naming_the_fix(
    settings: Settings,
) -> None:
    """An operator command against a database that has not had this version's migrations (an
    upgrade before any worker or `aios dev up` ran) says so and how to fix it, exit code 1."""
    with fresh_database(migrate=False) as url:
        env = subprocess_env(settings, AIOS_DATABASE_URL=url)
        done = subprocess.run(
            [sys.executable, "-m", "aios.cli", "pause", "process", "content"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert "the database is older than this version of AiOs" in done.stderr
    assert 'relation "switches" does not exist' in done.stderr
    assert "`aios dev up` or starting `aios worker` applies its migrations" in done.stderr
    assert "Traceback" not in done.stderr
