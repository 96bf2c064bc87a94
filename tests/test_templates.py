"""Email templates: the defaults, the operator's own, strict errors, exporting the defaults, and
the activities that send with them (real SMTP server)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import aios.templates as templates
from aios.activities.models import CancelKickoffInput, SendGateReminderInput
from aios.config import Settings
from aios.errors import InvalidInput
from aios.identity import BusinessIdentity
from aios.templates import (
    EMAILS,
    EmailTemplates,
    GateReminderEmail,
    InvoiceEmail,
    ProposalEmail,
    export_defaults,
)
from aios.templates.emails import _SAMPLES
from aios.workers.services import Services
from tests.conftest import RecordingSmtp, subprocess_env

PACKAGE_EMAILS = Path(templates.__file__).parent / "email"
INVOICE = InvoiceEmail(
    client_name="Acme Ltd",
    number="INV-000007",
    total="USD 1,200.00",
    due="1 April 2030",
    payment_instructions="Please pay by bank transfer.",
)


def biz(**overrides: Any) -> BusinessIdentity:
    return BusinessIdentity(**{"name": "Northwind GmbH", **overrides})


def folder_with(tmp_path: Path, **files: str) -> Path:
    """An operator's templates folder holding ``email/<name>.txt.j2`` for each keyword."""
    (tmp_path / "email").mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (tmp_path / "email" / f"{name}.txt.j2").write_text(source, encoding="utf-8")
    return tmp_path


def invalid(render: Callable[[], object]) -> str:
    with pytest.raises(InvalidInput) as info:
        render()
    return str(info.value)


# --- the defaults ------------------------------------------------------------------------------


def test_every_email_has_a_default_template_that_renders_one_line_subjects() -> None:
    shipped = {p.name for p in PACKAGE_EMAILS.glob("*.txt.j2")}
    assert {f"{name}.txt.j2" for name in EMAILS} <= shipped
    rendered = EmailTemplates(biz(), operator_name="Jo Operator")
    rendered.check()
    for name in EMAILS:
        email = rendered.render(name, _SAMPLES[name])
        assert email.subject and "\n" not in email.subject, name
        assert email.body.endswith("\n") and "\n\n\n" not in email.body, name


def test_client_emails_are_signed_and_close_with_the_business_identity() -> None:
    full = biz(address="Friedrichstraße 123\n10117 Berlin", tax_id="DE123456789")
    email = EmailTemplates(full, operator_name="Jo Operator").render("invoice", INVOICE)
    assert email.subject == "Invoice INV-000007: USD 1,200.00"
    assert email.body == (
        "Hello Acme Ltd,\n\nplease find attached invoice INV-000007 for USD 1,200.00, due "
        "1 April 2030.\n\nPlease pay by bank transfer.\n\nBest regards,\nJo Operator\n\n--\n"
        "Northwind GmbH\nFriedrichstraße 123\n10117 Berlin\nTax ID: DE123456789\n"
    )
    # With nothing to add to the signature (the business is the operator), no footer.
    bare = EmailTemplates(biz(name="Jo Operator"), operator_name="Jo Operator")
    assert bare.render("invoice", INVOICE).body.endswith("Best regards,\nJo Operator\n")


def test_a_proposal_email_names_its_discount() -> None:
    rendered = EmailTemplates(biz(), operator_name="Jo").render(
        "proposal",
        ProposalEmail(
            client_name="Acme Ltd",
            proposal_id="p-1",
            version=1,
            what="A new website",
            total="USD 10,080.00",
            discount_pct="10",
            discount="USD 1,120.00",
            valid_until="1 April 2030",
        ),
    )
    assert rendered.subject == "Proposal: A new website"
    assert "my proposal for: A new website\n" in rendered.body
    assert "Total: USD 10,080.00, after a discount of 10% (USD 1,120.00).\n" in rendered.body


# --- the operator's templates ------------------------------------------------------------------


def test_an_operator_template_overrides_its_default_and_only_that_one(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path,
        invoice=(
            "{% block subject %}{{ business.name }} invoice {{ number }}{% endblock %}\n"
            "{% block body %}\nDear {{ client_name }}, {{ total }} please.\n{% endblock %}\n"
        ),
    )
    rendered = EmailTemplates(biz(), operator_name="Jo", folder=folder)
    email = rendered.render("invoice", INVOICE)
    assert email.subject == "Northwind GmbH invoice INV-000007"
    assert email.body == "Dear Acme Ltd, USD 1,200.00 please.\n"
    default = rendered.render("invoice_cancelled", _SAMPLES["invoice_cancelled"])
    assert default.subject == "Cancelled: invoice INV-000001"


def test_an_edited_template_is_used_without_a_restart(tmp_path: Path) -> None:
    source = "{% block subject %}First {{ number }}{% endblock %}{% block body %}x{% endblock %}"
    folder = folder_with(tmp_path, invoice=source)
    rendered = EmailTemplates(biz(), operator_name="Jo", folder=folder)
    assert rendered.render("invoice", INVOICE).subject == "First INV-000007"
    path = folder / "email" / "invoice.txt.j2"
    path.write_text(source.replace("First", "Second"), encoding="utf-8")
    later = path.stat().st_mtime + 5
    os.utime(path, (later, later))
    assert rendered.render("invoice", INVOICE).subject == "Second INV-000007"


def test_an_overridden_partial_changes_every_client_email(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path, _signature="Cheers,\n{{ operator_name }} at {{ business.name }}\n"
    )
    rendered = EmailTemplates(biz(), operator_name="Jo", folder=folder)
    for name in ("invoice", "proposal", "kickoff_cancelled", "proposal_withdrawn"):
        assert "Cheers,\nJo at Northwind GmbH\n" in rendered.render(name, _SAMPLES[name]).body


def test_an_undefined_variable_names_the_template_the_line_and_the_variable(
    tmp_path: Path,
) -> None:
    folder = folder_with(
        tmp_path,
        invoice=(
            "{% block subject %}Invoice {{ number }}{% endblock %}\n"
            "{% block body %}\nHello {{ client_nme }},\n{% endblock %}\n"
        ),
    )
    rendered = EmailTemplates(biz(), operator_name="Jo", folder=folder)
    message = invalid(lambda: rendered.render("invoice", INVOICE))
    assert str(folder / "email" / "invoice.txt.j2") in message
    assert "line 3" in message
    assert "'client_nme' is undefined" in message
    assert "client_name" in message  # the variables it does know, to spot the typo

    folder_with(
        tmp_path,
        invoice=(
            "{% block subject %}{{ business.nmae }}{% endblock %}{% block body %}x{% endblock %}"
        ),
    )
    assert "has no attribute 'nmae'" in invalid(lambda: rendered.render("invoice", INVOICE))


def test_a_typo_in_an_included_partial_names_the_partial(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, _footer="{{ busines.name }}\n")
    rendered = EmailTemplates(biz(), operator_name="Jo", folder=folder)
    message = invalid(lambda: rendered.render("invoice", INVOICE))
    assert str(folder / "email" / "_footer.txt.j2") in message and "line 1" in message
    assert "'busines' is undefined" in message


def test_syntax_errors_missing_blocks_and_bad_subjects_are_clear(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    rendered = EmailTemplates(biz(), operator_name="Jo", folder=folder_with(folder))
    path = folder / "email" / "invoice.txt.j2"
    cases = {
        "{% block subject %}Invoice {{ number }{% endblock %}": "line 1",
        "{% block body %}Hello{% endblock %}": "no {% block subject %}",
        "{% block subject %}Invoice\n{{ number }}{% endblock %}{% block body %}x{% endblock %}": (
            "the subject has a line break"
        ),
        "{% block subject %}  {% endblock %}{% block body %}x{% endblock %}": "subject is empty",
    }
    for source, problem in cases.items():
        path.write_text(source, encoding="utf-8")
        later = path.stat().st_mtime + 5
        os.utime(path, (later, later))
        message = invalid(lambda: rendered.render("invoice", INVOICE))
        assert str(path) in message and problem in message, (source, message)


def test_a_value_with_a_line_break_cannot_split_the_subject() -> None:
    rendered = EmailTemplates(biz(), operator_name="Jo")
    sneaky = INVOICE.model_copy(update={"number": "INV-7\nBcc: everyone@example.com"})
    message = invalid(lambda: rendered.render("invoice", sneaky))
    assert "email/invoice.txt.j2 (package default)" in message
    assert "one line" in message


def test_a_template_is_given_only_its_own_context() -> None:
    rendered = EmailTemplates(biz(), operator_name="Jo")
    assert "takes ProposalEmail" in invalid(lambda: rendered.render("proposal", INVOICE))
    assert "no email called" in invalid(lambda: rendered.render("invoices", INVOICE))


def test_check_names_every_broken_template(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path,
        invoice="{% block subject %}{{ numbr }}{% endblock %}{% block body %}x{% endblock %}",
        proposal="{% block subject %}ok{% endblock %}",
    )
    message = invalid(EmailTemplates(biz(), operator_name="Jo", folder=folder).check)
    assert "invoice.txt.j2" in message and "'numbr' is undefined" in message
    assert "proposal.txt.j2" in message and "no {% block body %}" in message


def test_templates_dir_must_be_a_folder(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        Settings.model_validate({**settings.model_dump(), "templates_dir": tmp_path / "none"})
    [error] = info.value.errors()
    assert error["loc"] == ("templates_dir",) and "is not a folder" in error["msg"]


async def test_a_broken_template_stops_the_worker_at_start(
    settings: Settings, tmp_path: Path
) -> None:
    folder = folder_with(
        tmp_path / "templates",
        gate_reminder="{% block subject %}{{ titel }}{% endblock %}{% block body %}{% endblock %}",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aios.cli",
        "worker",
        env=subprocess_env(
            settings,
            AIOS_TEMPLATES_DIR=str(folder),
            AIOS_QDRANT_PATH=str(tmp_path / "qdrant"),
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    text = err.decode()
    assert proc.returncode == 1, text
    assert "gate_reminder.txt.j2" in text and "'titel' is undefined" in text, text
    assert "Traceback" not in text


# --- export ------------------------------------------------------------------------------------


def test_export_copies_the_defaults_and_keeps_what_the_operator_edited(tmp_path: Path) -> None:
    target = tmp_path / "my-templates"
    first = export_defaults(target)
    names = sorted(p.name for p in first.written)
    assert names == sorted(p.name for p in PACKAGE_EMAILS.glob("*.j2"))
    assert first.kept == []
    for path in first.written:
        assert path.read_text() == (PACKAGE_EMAILS / path.name).read_text()
    # The exported folder, used as AIOS_TEMPLATES_DIR, says exactly what the defaults say.
    exported = EmailTemplates(biz(), operator_name="Jo", folder=target)
    defaults = EmailTemplates(biz(), operator_name="Jo")
    for name in EMAILS:
        assert exported.render(name, _SAMPLES[name]) == defaults.render(name, _SAMPLES[name])

    edited = target / "email" / "invoice.txt.j2"
    edited.write_text("{% block subject %}Mine{% endblock %}{% block body %}x{% endblock %}")
    again = export_defaults(target)
    assert again.written == [] and edited in again.kept
    assert "Mine" in edited.read_text()
    forced = export_defaults(target, overwrite=True)
    assert edited in forced.written and "Mine" not in edited.read_text()


def test_public_surface() -> None:
    assert sorted(templates.__all__) == sorted(
        [
            "EMAILS",
            "EmailTemplates",
            "ExportResult",
            "GateReminderEmail",
            "InvoiceCancelledEmail",
            "InvoiceEmail",
            "InvoiceReminderEmail",
            "KickoffCancelledEmail",
            "ProposalEmail",
            "ProposalWithdrawnEmail",
            "RenderedEmail",
            "WelcomeEmail",
            "export_defaults",
            "template_path",
        ]
    )
    for name in templates.__all__:
        assert getattr(templates, name) is not None
    assert isinstance(_SAMPLES["gate_reminder"], GateReminderEmail)


# --- activities sending with them (real SMTP) --------------------------------------------------


def activity_named(services: Services, settings: Settings, name: str) -> Callable[..., Any]:
    acts = dataclasses.replace(services, settings=settings).activities()
    return next(a for a in acts if a.__name__ == name)


def environment() -> ActivityEnvironment:
    env = ActivityEnvironment()
    run = uuid.uuid4().hex
    env.info = dataclasses.replace(env.info, workflow_id=f"test/{run}", workflow_run_id=run)
    return env


def reminder(key: str) -> SendGateReminderInput:
    return SendGateReminderInput(
        idempotency_key=key,
        gate="welcome",
        title="Welcome email for Acme Ltd",
        summary="Welcome aboard",
        requested_at=datetime(2025, 3, 17, 9, 0, tzinfo=UTC),
        expires_at=datetime(2025, 3, 24, 9, 0, tzinfo=UTC),
        reminder=1,
    )


def own_settings(settings: Settings, operator_email: str, **overrides: Any) -> Settings:
    return Settings.model_validate(
        {
            **settings.model_dump(),
            "operator_name": "Jo Operator",
            "operator_email": operator_email,
            "mail_from": f"Jo Operator <{operator_email}>",
            **overrides,
        }
    )


def body(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return bytes(part.get_payload(decode=True)).decode().replace("\r\n", "\n")
    return ""


def calendar(message: Message) -> str:
    [part] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    return bytes(part.get_payload(decode=True)).decode().replace("\r\n", "\n")


async def test_the_gate_reminder_goes_out_in_the_operators_own_words_and_zone(
    settings: Settings, services: Services, smtp: RecordingSmtp, tmp_path: Path
) -> None:
    operator = f"jo-{uuid.uuid4().hex[:8]}@northwind.example"
    folder = folder_with(
        tmp_path,
        gate_reminder=(
            "{% block subject %}[AiOs] {{ title }} still waits ({{ reminder }}){% endblock %}\n"
            "{% block body %}\nSince {{ waiting_since }}.\n{{ approve_command }}\n{% endblock %}\n"
        ),
    )
    s = own_settings(settings, operator, templates_dir=folder, business_timezone="America/New_York")
    send = activity_named(services, s, "send_gate_reminder")
    environment().run(send, reminder(f"test/{uuid.uuid4().hex}"))
    [mail] = smtp.to(operator)
    assert mail["Subject"] == "[AiOs] Welcome email for Acme Ltd still waits (1)"
    assert body(mail).startswith("Since Monday 17 March 2025 at 05:00 EDT (America/New_York).\n")
    assert "aios approve test/" in body(mail)


async def test_a_typo_in_a_template_fails_the_activity_without_retry_and_sends_nothing(
    settings: Settings, services: Services, smtp: RecordingSmtp, tmp_path: Path
) -> None:
    operator = f"jo-{uuid.uuid4().hex[:8]}@northwind.example"
    s = own_settings(settings, operator)
    # The worker checked the templates at start; the operator breaks one while it runs.
    folder = folder_with(tmp_path)
    s = s.model_copy(update={"templates_dir": folder})
    send = activity_named(services, s, "send_gate_reminder")
    folder_with(
        tmp_path,
        gate_reminder="{% block subject %}{{ titl }}{% endblock %}{% block body %}x{% endblock %}",
    )
    with pytest.raises(ApplicationError) as info:
        environment().run(send, reminder(f"test/{uuid.uuid4().hex}"))
    error = info.value
    assert error.type == "InvalidInput" and error.non_retryable
    assert str(folder / "email" / "gate_reminder.txt.j2") in error.message
    assert "'titl' is undefined" in error.message
    assert smtp.to(operator) == []


async def test_the_cancelled_kickoff_is_worded_and_invited_in_the_business_timezone(
    settings: Settings, services: Services, smtp: RecordingSmtp
) -> None:
    client_email = f"ops-{uuid.uuid4().hex[:8]}@acme.example"
    s = own_settings(settings, "jo@northwind.example", business_timezone="Europe/Berlin")
    cancel = activity_named(services, s, "cancel_kickoff")
    environment().run(
        cancel,
        CancelKickoffInput(
            idempotency_key=f"test/{uuid.uuid4().hex}",
            to=client_email,
            client_name="Acme Ltd",
            kickoff_at=datetime(2025, 3, 17, 9, 0, tzinfo=UTC),  # 10:00 in Berlin
            reason="cancelled",
        ),
    )
    [mail] = smtp.to(client_email)
    assert "planned for Monday 17 March 2025 at 10:00 CET (Europe/Berlin) is cancelled" in (
        body(mail)
    )
    ics = calendar(mail)
    assert "DTSTART;TZID=Europe/Berlin:20250317T100000" in ics
    assert "BEGIN:VTIMEZONE\nTZID:Europe/Berlin" in ics
    assert "METHOD:CANCEL" in ics
