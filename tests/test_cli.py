"""The `aios` command as an operator runs it: a subprocess, one line per error, exit codes."""

from __future__ import annotations

import asyncio
import json
import sys
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client

from aios.config import Settings
from aios.devstack import temporal_binary
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.onboarding import OnboardingResult
from tests.conftest import subprocess_env, unique_client
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
    decided = [
        e for e in services.store.events(handle.id, handle.run_id) if e.kind == "gate.decided"
    ]
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
    [entry] = services.store.ledger(f"{key}-p1")
    assert (entry.amount_minor, entry.reference) == (220_000, "SEPA 42")
