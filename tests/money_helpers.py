"""Helpers for the proposal and billing tests: known clients, fast policies, waiting."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal
from email.message import Message
from typing import Any

from temporalio.client import Client, WorkflowHandle

from aios import operations
from aios.config import Settings
from aios.kernel.events import EventDraft
from aios.kernel.models import Client as ClientRecord
from aios.kernel.money import LineItem
from aios.kernel.store import KernelStore
from aios.workflows.billing import BillingResult
from aios.workflows.progress import RunProgress
from aios.workflows.proposal import ProposalResult
from tests.helpers import RUNS


def known_client(store: KernelStore, segment: str = "web") -> tuple[str, str, str]:
    """A client in the kernel (as onboarding leaves it): name, key, email."""
    tag = uuid.uuid4().hex[:8]
    name, key, email = f"Globex {tag}", f"globex-{tag}", f"ap-{tag}@globex.example"
    store.clients.upsert(
        ClientRecord(key=key, name=name, email=email, segment=segment),
        event=EventDraft(
            event_key=f"test/{key}",
            workflow_id="test",
            run_id="test",
            process="test",
            kind="client.upserted",
        ),
    )
    return name, key, email


def fast(settings: Settings, **overrides: Any) -> Settings:
    """Settings whose money policies run in seconds."""
    values: dict[str, Any] = {
        "proposal_follow_up_every": timedelta(hours=1),
        "proposal_expire_after": timedelta(hours=2),
        "billing_payment_terms": timedelta(hours=1),
        "billing_remind_every": timedelta(hours=1),
        "billing_max_reminders": 2,
    }
    values.update(overrides)
    return settings.model_copy(update=values)


async def propose(
    client: Client,
    settings: Settings,
    store: KernelStore,
    key: str,
    scope: str,
    budget: str | None = None,
) -> WorkflowHandle[Any, ProposalResult]:
    started = await operations.start_proposal(
        client,
        settings,
        store,
        operations.NewProposal(
            client_key=key, scope=scope, budget=Decimal(budget) if budget else None
        ),
    )
    RUNS.append(started.workflow_id)
    return client.get_workflow_handle(
        started.workflow_id, run_id=started.run_id, result_type=ProposalResult
    )


async def bill(
    client: Client, settings: Settings, store: KernelStore, key: str, *amounts_minor: int
) -> WorkflowHandle[Any, BillingResult]:
    started = await operations.start_billing(
        client,
        settings,
        store,
        operations.NewInvoice(
            client_key=key,
            items=[
                LineItem(description=f"Work package {i}", quantity=1, unit_price_minor=a)
                for i, a in enumerate(amounts_minor, 1)
            ],
        ),
    )
    RUNS.append(started.workflow_id)
    return client.get_workflow_handle(
        started.workflow_id, run_id=started.run_id, result_type=BillingResult
    )


async def progress_until(client: Client, workflow_id: str, check: Any, timeout: float = 30) -> Any:
    """Poll the ``progress`` query until ``check(progress)`` holds; returns the process's
    typed progress (``OnboardingProgress``, ``ProposalProgress``, ``BillingProgress``)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                p = await operations.run_progress(client, workflow_id)
                if check(p):
                    return p
            except Exception:  # not started yet, or between workers
                pass
            await asyncio.sleep(0.1)


def waiting_for(signal: str) -> Any:
    return lambda p: p.waiting_for == signal


def gate_open(p: RunProgress) -> bool:
    return bool(p.pending_gates)


async def mails_until(smtp: Any, address: str, count: int, timeout: float = 30) -> list[Message]:
    async with asyncio.timeout(timeout):
        while len(smtp.to(address)) < count:
            await asyncio.sleep(0.1)
    return list(smtp.to(address))


def pdfs(message: Message) -> dict[str, bytes]:
    return {
        str(part.get_filename()): bytes(part.get_payload(decode=True))
        for part in message.walk()
        if part.get_content_type() == "application/pdf"
    }


def pdf_text(data: bytes) -> str:
    import io

    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def body_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return bytes(part.get_payload(decode=True)).decode()
    return ""


async def ends_cancelled(handle: WorkflowHandle[Any, Any], timeout: float = 60) -> None:
    """Await the run and check it ended cancelled (after its compensations)."""
    import pytest
    from temporalio.client import WorkflowFailureError
    from temporalio.exceptions import CancelledError

    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), timeout=timeout)
    assert isinstance(failure.value.cause, CancelledError), repr(failure.value.cause)
