"""Business identity: settings, what the documents carry, DRAFT, the worker's warning, and
the proposal and invoice a client receives on the real stack."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from PIL import Image
from pydantic import ValidationError
from pypdf import PdfReader
from temporalio.client import Client
from temporalio.worker import Worker

from aios import operations
from aios.config import Settings, identity_warning
from aios.connectors.calendar import Invite
from aios.documents import (
    CreditNoteDocument,
    InvoiceDocument,
    ProposalDocument,
    render_credit_note,
    render_invoice,
    render_proposal,
)
from aios.identity import BankAccount, BusinessIdentity, check_logo, zone_label
from aios.kernel.models import ClientIntake
from aios.kernel.money import LineItem, line_items_total
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.gates import GateDecision
from aios.workflows.onboarding import OnboardingInput, OnboardingWorkflow, onboarding_workflow_id
from aios.workflows.proposal import ClientResponse
from tests.conftest import RecordingSmtp, subprocess_env, unique_client
from tests.helpers import RUNS, wait_for_gate
from tests.money_helpers import (
    body_text,
    fast,
    known_client,
    mails_until,
    pdfs,
    progress_until,
    propose,
    waiting_for,
)

HERE = Path(__file__).parent
MINUS = "\u2212"
ISSUED = datetime(2025, 3, 14, 23, 30, tzinfo=UTC)  # already 15 March in Berlin
LINES = [
    LineItem(description="Website design and build", quantity=1, unit_price_minor=800_000),
    LineItem(description="Content migration", quantity=4, unit_price_minor=80_000),
]
LINES_TOTAL = line_items_total(LINES)  # USD 11,200.00
ADDRESS = "Friedrichstraße 123\n10117 Berlin\nGermany"


def logo(tmp_path: Path, kind: str = "PNG", size: tuple[int, int] = (300, 100)) -> Path:
    path = tmp_path / f"logo.{kind.lower()}"
    Image.new("RGB", size, (20, 90, 160)).save(path, format=kind)
    return path


def business(**overrides: Any) -> BusinessIdentity:
    fields: dict[str, Any] = {
        "name": "Northwind Consulting GmbH",
        "address": ADDRESS,
        "tax_id": "DE123456789",
        "email": "jo@northwind.example",
        "bank": BankAccount(
            account_name="Northwind Consulting GmbH",
            iban="DE89370400440532013000",
            bic="COBADEFFXXX",
            bank_name="Commerzbank",
        ),
        "footer": "Amtsgericht Charlottenburg HRB 12345\nThank you for your business.",
        "timezone": "Europe/Berlin",
    }
    fields.update(overrides)
    return BusinessIdentity(**fields)


def proposal(biz: BusinessIdentity, discount_pct: int = 0, **overrides: Any) -> ProposalDocument:
    discount = LINES_TOTAL * discount_pct // 100
    fields: dict[str, Any] = {
        "proposal_id": "p-acme-1",
        "version": 1,
        "client_name": "Acme Ltd",
        "operator_name": "Jo Operator",
        "business": biz,
        "issued_at": ISSUED,
        "valid_until": ISSUED + timedelta(days=14),
        "currency": "USD",
        "scope": "A new website.",
        "line_items": LINES,
        "subtotal_minor": LINES_TOTAL,
        "discount_pct": Decimal(discount_pct),
        "discount_minor": discount,
        "total_minor": LINES_TOTAL - discount,
        "terms": "Payment within 14 days of invoice.",
    }
    fields.update(overrides)
    return ProposalDocument(**fields)


def invoice(biz: BusinessIdentity) -> InvoiceDocument:
    return InvoiceDocument(
        invoice_id="inv-1",
        number="INV-000042",
        client_name="Acme Ltd",
        client_email="ops@acme.example",
        operator_name="Jo Operator",
        business=biz,
        issued_at=ISSUED,
        due_at=ISSUED + timedelta(days=14),
        currency="USD",
        line_items=LINES,
        total_minor=LINES_TOTAL,
        payment_instructions="Please pay by bank transfer.",
    )


def credit_note(biz: BusinessIdentity) -> CreditNoteDocument:
    return CreditNoteDocument(
        number="CN-000001",
        invoice_number="INV-000042",
        client_name="Acme Ltd",
        operator_name="Jo Operator",
        business=biz,
        issued_at=ISSUED,
        currency="USD",
        amount_minor=80_000,
        reason="Training cancelled.",
    )


def pages(pdf: bytes) -> list[str]:
    return [" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(pdf)).pages]


def text(pdf: bytes) -> str:
    return " ".join(pages(pdf))


def image_count(pdf: bytes) -> int:
    return sum(len(page.images) for page in PdfReader(io.BytesIO(pdf)).pages)


def own(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` with the operator's own identity (not the placeholder)."""
    values: dict[str, Any] = {
        "operator_name": "Jo Operator",
        "operator_email": "jo@northwind.example",
        "mail_from": "Jo Operator <jo@northwind.example>",
    }
    values.update(overrides)
    return Settings.model_validate({**settings.model_dump(), **values})


# --- settings ------------------------------------------------------------------------------------


def test_business_name_defaults_to_the_operator_and_names_the_bank_account(
    settings: Settings,
) -> None:
    s = own(settings)
    assert s.business_identity.name == "Jo Operator"
    assert s.business_identity.bank.account_name == "Jo Operator"
    s = own(settings, business_name="Northwind GmbH", bank_account_name="")
    assert s.business_identity.name == "Northwind GmbH"
    assert s.business_identity.bank.account_name == "Northwind GmbH"
    assert s.business_identity.email == "jo@northwind.example"


def test_address_and_footer_keep_their_lines_and_take_a_literal_backslash_n(
    settings: Settings,
) -> None:
    s = own(settings, business_address="Friedrichstraße 123\\n10117 Berlin", invoice_footer="x")
    assert s.business_identity.address_lines == ["Friedrichstraße 123", "10117 Berlin"]
    with pytest.raises(ValidationError) as info:
        own(settings, business_address="\n".join(f"line {i}" for i in range(9)))
    assert info.value.errors()[0]["loc"] == ("business_address",)
    with pytest.raises(ValidationError) as info:
        own(settings, business_name="Northwind\nGmbH")
    assert info.value.errors()[0]["loc"] == ("business_name",)


def test_placeholder_identity_is_detected_setting_by_setting(settings: Settings) -> None:
    default = Settings(_env_file=None)
    assert default.identity_is_placeholder and default.business_identity.placeholder
    assert own(settings).identity_is_placeholder is False
    assert identity_warning(own(settings)) is None
    for setting, value in (
        ("operator_name", "Your operator"),
        ("operator_email", "operator@aios.localhost"),
        ("mail_from", "AiOs Operator <operator@aios.localhost>"),
        ("business_name", "Your operator"),
    ):
        s = own(settings, **{setting: value})
        assert s.identity_is_placeholder, setting
        warning = identity_warning(s)
        assert warning is not None and f"AIOS_{setting.upper()}" in warning, warning
        assert "DRAFT" in warning


def test_unknown_timezone_is_refused_and_a_real_one_is_kept(settings: Settings) -> None:
    with pytest.raises(ValidationError) as info:
        own(settings, business_timezone="Mars/Olympus_Mons")
    [error] = info.value.errors()
    assert error["loc"] == ("business_timezone",)
    assert "IANA time zone" in error["msg"]
    assert own(settings, business_timezone="America/New_York").business_timezone == (
        "America/New_York"
    )


def test_logo_must_be_an_embeddable_png_or_jpeg_of_sensible_size(tmp_path: Path) -> None:
    assert check_logo(logo(tmp_path, "PNG")).suffix == ".png"
    assert check_logo(logo(tmp_path, "JPEG")).suffix == ".jpeg"
    cases = {
        tmp_path / "missing.png": "does not exist",
        tmp_path: "is not a file",
        logo(tmp_path, "GIF"): "GIF image; the logo must be PNG or JPEG",
        logo(tmp_path, "BMP", (6000, 10)): "must be PNG or JPEG",
    }
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    cases[not_an_image] = "not a readable PNG or JPEG image"
    huge = tmp_path / "huge.png"
    Image.new("RGB", (6000, 10)).save(huge)
    cases[huge] = "at most 5000 pixels"
    for path, problem in cases.items():
        with pytest.raises(ValueError, match=re.escape(problem)):
            check_logo(path)


async def aios_worker(settings: Settings, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aios.cli",
        "worker",
        env=subprocess_env(settings, **env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_bad_identity_settings_stop_the_worker_at_start_naming_the_setting(
    settings: Settings, tmp_path: Path
) -> None:
    code, err = await aios_worker(settings, AIOS_BUSINESS_TIMEZONE="Europe/Atlantis")
    assert code == 1, err
    assert "AIOS_BUSINESS_TIMEZONE" in err and "IANA time zone" in err, err
    assert "Traceback" not in err

    missing = tmp_path / "no-such-logo.png"
    code, err = await aios_worker(settings, AIOS_BUSINESS_LOGO=str(missing))
    assert code == 1, err
    assert "AIOS_BUSINESS_LOGO" in err and "does not exist" in err, err
    assert "Traceback" not in err


async def test_worker_warns_once_while_the_identity_is_the_placeholder(
    settings: Settings, tmp_path: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aios.cli",
        "worker",
        env=subprocess_env(settings, AIOS_QDRANT_PATH=str(tmp_path / "qdrant")),
        cwd=HERE.parent,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(90):
            while not any(line.get("event") == "worker started" for line in lines):
                raw = await proc.stderr.readline()
                assert raw, f"the worker ended before it started: {lines}"
                if raw.startswith(b"{"):
                    lines.append(json.loads(raw))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), timeout=30)
    lines += [json.loads(raw) for raw in rest.splitlines() if raw.startswith(b"{")]
    assert any(line.get("event") == "worker stopped" for line in lines), lines
    warnings = [line for line in lines if "placeholder" in str(line.get("event"))]
    assert len(warnings) == 1, lines
    assert warnings[0]["level"] == "warning"
    assert "AIOS_OPERATOR_NAME" in warnings[0]["event"]


# --- documents ---------------------------------------------------------------------------------


def test_proposal_and_invoice_carry_the_business_identity(tmp_path: Path) -> None:
    biz = business(logo=logo(tmp_path))
    proposal_text = text(render_proposal(proposal(biz)))
    invoice_text = text(render_invoice(invoice(biz)))
    for shown in (proposal_text, invoice_text):
        assert "Northwind Consulting GmbH" in shown
        assert "Friedrichstraße 123 10117 Berlin Germany" in shown
        assert "Tax ID: DE123456789" in shown
        assert "jo@northwind.example" in shown
    # The proposal names who prepared it; the invoice carries the bank account and footer.
    assert "PREPARED BY Jo Operator Northwind Consulting GmbH" in proposal_text
    assert "IBAN: DE89 3704 0044 0532 0130 00 · BIC: COBADEFFXXX" in invoice_text
    assert "Account holder: Northwind Consulting GmbH" in invoice_text
    assert "Amtsgericht Charlottenburg HRB 12345 Thank you for your business." in invoice_text
    assert "IBAN" not in proposal_text and "Amtsgericht" not in proposal_text
    credit = text(render_credit_note(credit_note(biz)))
    assert "Amtsgericht Charlottenburg HRB 12345" in credit and "IBAN" not in credit
    reader = PdfReader(io.BytesIO(render_invoice(invoice(biz))))
    assert reader.metadata is not None and reader.metadata.author == "Northwind Consulting GmbH"


def test_the_logo_is_embedded_in_every_document(tmp_path: Path) -> None:
    with_logo = business(logo=logo(tmp_path, "JPEG"))
    assert image_count(render_proposal(proposal(with_logo))) == 1
    assert image_count(render_invoice(invoice(with_logo))) == 1
    assert image_count(render_credit_note(credit_note(with_logo))) == 1
    assert image_count(render_invoice(invoice(business()))) == 0


def test_a_discount_reads_as_a_discount() -> None:
    shown = text(render_proposal(proposal(business(), discount_pct=10)))
    assert f"Subtotal USD 11,200.00 Discount (10%) {MINUS} USD 1,120.00 Total USD 10,080.00" in (
        shown
    )
    assert "USD -" not in shown
    assert "Discount" not in text(render_proposal(proposal(business())))


def test_draft_is_on_every_page_while_the_identity_is_the_placeholder() -> None:
    scope = "\n".join(f"{i}. Review, automate and document process {i}." for i in range(150))
    draft = pages(render_proposal(proposal(business(placeholder=True), scope=scope)))
    assert len(draft) >= 3
    for page in draft:
        assert "DRAFT" in page
    assert "not a document to send" in draft[0]
    for pdf in (
        render_invoice(invoice(business(placeholder=True))),
        render_credit_note(credit_note(business(placeholder=True))),
    ):
        assert "DRAFT" in text(pdf)
    final = render_proposal(proposal(business(), scope=scope))
    assert "DRAFT" not in text(final)
    assert "DRAFT" not in text(render_invoice(invoice(business())))


def test_dates_are_shown_in_the_business_timezone() -> None:
    # 23:30 UTC on 14 March is 15 March in Berlin and still 14 March in New York.
    assert "Issued 15 March 2025" in text(render_invoice(invoice(business())))
    assert "Due 29 March 2025" in text(render_invoice(invoice(business())))
    new_york = text(render_invoice(invoice(business(timezone="America/New_York"))))
    assert "Issued 14 March 2025" in new_york
    utc = text(render_proposal(proposal(business(timezone="UTC"))))
    assert "Issued 14 March 2025" in utc and "Valid until 28 March 2025" in utc


def test_long_names_and_descriptions_wrap_and_stay_whole() -> None:
    name = (
        "The Extraordinarily Long-Named International Holding Company of Widgets, Gadgets "
        "and Assorted Sundries Limited"
    )
    description = (
        "Discovery workshop, two days on site with the operations team, including "
        "preparation, moderation, a written summary and a prioritised backlog"
    )
    lines = [LineItem(description=description, quantity=2, unit_price_minor=150_000)]
    biz = business(
        name="Northwind Consulting GmbH & Co. KG, Digital Process Automation and Advisory"
    )
    doc = proposal(biz, line_items=lines, subtotal_minor=300_000, total_minor=300_000)
    shown = text(render_proposal(doc.model_copy(update={"client_name": name})))
    assert name in shown
    assert description in shown
    assert "Northwind Consulting GmbH & Co. KG, Digital Process Automation and Advisory" in shown


# --- on the real stack -------------------------------------------------------------------------


@pytest.fixture
async def identity_worker(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> AsyncIterator[Settings]:
    """A worker whose activities carry a full business identity, in Berlin time."""
    s = own(
        fast(settings, proposal_auto_approve_max_total=Decimal(10000)),
        business_name="Northwind Consulting GmbH",
        business_address=ADDRESS,
        business_tax_id="DE123456789",
        business_logo=logo(tmp_path),
        business_timezone="Europe/Berlin",
        invoice_footer="Thank you for your business.",
        bank_iban="DE89370400440532013000",
        bank_bic="COBADEFFXXX",
    )
    acts = dataclasses.replace(services, settings=s).activities()
    worker: Worker = build_worker(client, s.task_queue, acts, executor)
    async with worker:
        yield s


async def test_the_client_receives_proposal_and_invoice_with_the_identity(
    client: Client, identity_worker: Settings, services: Services, smtp: RecordingSmtp
) -> None:
    s = identity_worker
    store = services.store
    _, key, email = known_client(store)
    # USD 5,600 at list price; a budget of 5,040 makes the agent offer a discount.
    handle = await propose(client, s, store, key, "A new website for our shop.", budget="5040")
    await progress_until(client, handle.id, waiting_for("client_response"))
    [sent] = await mails_until(smtp, email, 1)
    [document] = pdfs(sent).values()
    shown = text(document)
    versions = store.proposals.versions(handle.id.split("/", 1)[1])
    version = versions[-1]
    assert version.discount_minor > 0
    pct = f"{version.discount_pct.normalize():f}"
    discount = f"USD {Decimal(version.discount_minor) / 100:,.2f}"
    assert f"Discount ({pct}%) {MINUS} {discount}" in shown
    assert "Northwind Consulting GmbH" in shown and "Tax ID: DE123456789" in shown
    assert "DRAFT" not in shown
    assert image_count(document) == 1
    body = body_text(sent).replace("\r\n", "\n")
    total = f"USD {Decimal(version.total_minor) / 100:,.2f}"
    assert "my proposal for: A new website for our shop.\n" in body
    assert f"Total: {total}, after a discount of {pct}% ({discount}).\n" in body
    assert body.rstrip().endswith(
        "Best regards,\nJo Operator\n\n--\nNorthwind Consulting GmbH\nFriedrichstraße 123\n"
        "10117 Berlin\nGermany\nTax ID: DE123456789"
    ), body

    assert await operations.respond(client, handle.id, ClientResponse(response="accept"))
    result = await handle.result()
    assert result.billing_workflow_id is not None
    RUNS.append(result.billing_workflow_id)
    await progress_until(client, result.billing_workflow_id, waiting_for("payment_received"))
    invoice_mail = (await mails_until(smtp, email, 2))[1]
    [invoice_pdf] = pdfs(invoice_mail).values()
    shown = text(invoice_pdf)
    assert "Northwind Consulting GmbH" in shown and "Friedrichstraße 123" in shown
    assert "IBAN: DE89 3704 0044 0532 0130 00" in shown
    assert "Thank you for your business." in shown
    assert "DRAFT" not in shown
    assert "Tax ID: DE123456789" in body_text(invoice_mail)
    await client.get_workflow_handle(result.billing_workflow_id).cancel()


async def test_documents_say_draft_while_the_worker_has_the_placeholder_identity(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, worker: object
) -> None:
    store = services.store
    _, key, email = known_client(store)
    s = fast(settings, proposal_auto_approve_max_total=Decimal(10000))
    assert s.identity_is_placeholder  # the test stack's operator is "Your operator"
    handle = await propose(client, s, store, key, "A new website for our shop.")
    await progress_until(client, handle.id, waiting_for("client_response"))
    [sent] = await mails_until(smtp, email, 1)
    [document] = pdfs(sent).values()
    for page in pages(document):
        assert "DRAFT" in page
    await handle.cancel()


# --- the kickoff -------------------------------------------------------------------------------


def test_an_invite_names_the_zone_it_was_planned_in() -> None:
    start = datetime(2025, 7, 7, 10, 0, tzinfo=ZoneInfo("America/New_York"))
    invite = Invite(
        uid="u@aios",
        summary="Kickoff",
        description="",
        start=start,
        duration=timedelta(minutes=45),
        organizer="jo@northwind.example",
        attendee="ops@acme.example",
    )
    ics = invite.to_ical("REQUEST", sequence=0, stamp=ISSUED).decode().replace("\r\n", "\n")
    assert "DTSTART;TZID=America/New_York:20250707T100000" in ics
    assert "DTEND;TZID=America/New_York:20250707T104500" in ics
    assert "BEGIN:VTIMEZONE\nTZID:America/New_York" in ics and "TZNAME:EDT" in ics
    # Read back by a calendar library, it is the same moment.
    event = Calendar.from_ical(ics).walk("VEVENT")[0]
    assert event.decoded("DTSTART") == start
    utc = Invite(
        uid="u@aios",
        summary="Kickoff",
        description="",
        start=start.astimezone(UTC),
        duration=timedelta(minutes=45),
        organizer="jo@northwind.example",
        attendee="ops@acme.example",
    ).to_ical("REQUEST", sequence=0, stamp=ISSUED)
    assert b"DTSTART:20250707T140000Z" in utc and b"VTIMEZONE" not in utc


async def test_the_welcome_email_and_invite_show_the_kickoff_in_the_business_timezone(
    client: Client, identity_worker: Settings, smtp: RecordingSmtp
) -> None:
    s = identity_worker
    name, key, email = unique_client()
    intake = ClientIntake(name=name, key=key, email=email, notes="A new website, budget $5k.")
    # What `aios onboard` starts: the run is given the business's timezone.
    handle = await client.start_workflow(
        OnboardingWorkflow.run,
        OnboardingInput(client=intake, gate_policy=s.gate_policy, timezone=s.business_timezone),
        id=onboarding_workflow_id(key),
        task_queue=s.task_queue,
    )
    RUNS.append(handle.id)
    await wait_for_gate(client, handle.id)
    await operations.decide(
        client, handle.id, GateDecision(decision="approve", approver="pat", comment="ok")
    )
    assert (await handle.result()).status == "completed"
    [mail] = smtp.to(email)
    [part] = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    ics = bytes(part.get_payload(decode=True)).decode()
    event = Calendar.from_ical(ics).walk("VEVENT")[0]
    start = event.decoded("DTSTART")
    assert getattr(start.tzinfo, "key", None) == "Europe/Berlin"
    assert (start.hour, start.minute) == (10, 0)  # 10:00 where the operator works
    assert f"DTSTART;TZID=Europe/Berlin:{start:%Y%m%d}T100000" in ics
    welcome = body_text(mail).replace("\r\n", "\n")
    assert f"Kickoff call on {start:%A %d %B %Y} at 10:00 {zone_label(start)}" in welcome
    assert "(Europe/Berlin)" in welcome
    # The welcome draft is the agent's; the footer with the identity comes from the template.
    assert welcome.rstrip().endswith(
        "Friedrichstraße 123\n10117 Berlin\nGermany\nTax ID: DE123456789"
    )
