"""``aios demo``: the whole spine on the embedded stack, as a newcomer sees it."""

from __future__ import annotations

import asyncio
import email
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.text import Text
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from aios import devstack, operations
from aios.config import Settings
from aios.errors import StackError
from aios.kernel.models import ClientIntake, client_key_for
from aios.operations.common import one_line
from aios.operations.policies import pin_from_database
from aios.temporal import connect
from aios.workers.main import ACTIVITY_THREADS, build_worker
from aios.workers.services import Services
from aios.workflows.gates import GateDecision
from aios.workflows.onboarding import OnboardingResult

__all__ = ["find_stored_email", "run_demo", "sample_email"]

SAMPLE_NOTES = (
    "We need a new website with a small webshop before our spring launch, by March 15. "
    "Budget around €8k. Please keep it simple to update ourselves."
)
WAIT_FOR_GATE = 60.0


def sample_email(client_name: str) -> str:
    """The sample client's address: ``hello@<client key>.example`` (``.example`` is reserved:
    no such mailbox exists, and the embedded SMTP sink keeps the message anyway)."""
    domain = client_key_for(client_name)[:63].strip("-") or "client"
    return f"hello@{domain}.example"


def find_stored_email(maildir: Path, message_id: str) -> Path | None:
    """The file the embedded SMTP sink stored for ``message_id``."""
    for path in sorted((maildir / "new").glob("*")):
        with path.open("rb") as fh:
            if email.message_from_binary_file(fh).get("Message-ID") == message_id:
                return path
    return None


async def run_demo(
    settings: Settings, client_name: str, out: Console, *, email: str | None = None
) -> None:
    out.print(
        "[bold]1.[/] Bringing up the embedded stack (Temporal, PostgreSQL, SMTP sink, console)..."
    )
    await asyncio.to_thread(devstack.up, settings)
    # The run pins the latest policy version at its start, as `aios onboard` does (and the
    # in-process worker reads its agent and connector values from it, as `aios worker` does).
    settings = await asyncio.to_thread(pin_from_database, settings)
    address = email or sample_email(client_name)
    if devstack.worker_running(settings):  # `aios dev up --worker`: it owns the memory folder
        out.print("   Using the worker `aios dev up --worker` runs.")
        result, started = await _onboard_and_approve(settings, client_name, address, out)
    else:
        client = await connect(settings)
        services = await asyncio.to_thread(Services.from_settings, settings)
        try:
            with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
                worker = build_worker(client, settings.task_queue, services.activities(), executor)
                async with worker:
                    result, started = await _onboard_and_approve(
                        settings, client_name, address, out
                    )
        finally:
            services.close()

    done = Text(f"\nOnboarding {result.status}", style="bold green")
    out.print(Text.assemble(done, f" for {client_name}."))
    links = [
        ("Web UI", operations.web_ui_url(settings, started.workflow_id, started.run_id)),
        ("Status", f"aios status {started.workflow_id}"),
        ("Welcome", f"aios show {started.workflow_id}"),
    ]
    if result.message_id and settings.smtp_embedded:
        stored = find_stored_email(settings.mail_dir, result.message_id)
        links.append(("Email", str(stored or f"not found in {settings.mail_dir}")))
    links.append(("Memory", f"point {result.memory_id} in {settings.resolved_qdrant_path}"))
    links.append(("Console", f"{settings.console_url} (sign in: `aios operator set-password`)"))
    for label, value in links:  # whole at any width: a link is never broken by a newline
        out.print(Text(f"  {label + ':':<9} {value}"), soft_wrap=True)
    out.print("The stack keeps running for you to look around; stop it with `aios dev down`.")


async def _onboard_and_approve(
    settings: Settings, client_name: str, email: str, out: Console
) -> tuple[OnboardingResult, operations.Started]:
    client = await connect(settings)
    intake = ClientIntake(name=client_name, email=email, notes=SAMPLE_NOTES)
    # The sample client may have been onboarded by an earlier demo: run it again on purpose.
    started = await operations.start_onboarding(client, settings, intake, again=True)
    verb = "Found the running" if started.existing else "Started"
    out.print(
        Text.assemble(
            ("2.", "bold"),
            f" {verb} ",
            (started.workflow_id, "bold"),
            f" (run {started.run_id}).",
        ),
        soft_wrap=True,
    )
    handle = client.get_workflow_handle(
        started.workflow_id, run_id=started.run_id, result_type=OnboardingResult
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_FOR_GATE
    approved = False
    while not approved:
        desc = await handle.describe()
        if desc.status != WorkflowExecutionStatus.RUNNING:
            break
        gates = await operations.pending_gates(client, started.workflow_id)
        if gates:
            out.print(
                Text.assemble(
                    ("3.", "bold"),
                    f" Waiting for approval at gate '{gates[0].gate}': "
                    f"{one_line(gates[0].summary, 100)}",
                )
            )
            await operations.decide(
                client,
                started.workflow_id,
                GateDecision(decision="approve", approver="demo", comment="approved by aios demo"),
            )
            out.print(
                "[bold]4.[/] Approved through signal 'decide' (the path `aios approve` uses)."
            )
            approved = True
        elif loop.time() > deadline:
            raise StackError(
                f"no approval gate appeared within {WAIT_FOR_GATE:.0f}s; "
                f"see `aios status {started.workflow_id}`"
            )
        else:
            await asyncio.sleep(0.25)
    try:
        result = await handle.result()
    except WorkflowFailureError as exc:
        cause = exc.cause.message if hasattr(exc.cause, "message") else str(exc.cause)
        raise StackError(f"{started.workflow_id} failed: {cause}") from None
    return result, started
