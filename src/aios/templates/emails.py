"""Email wording as Jinja2 templates: the package's defaults, or the operator's own.

Every email AiOs composes is one template under ``email/`` named after the email
(``email/invoice.txt.j2``), with two blocks: ``subject`` (one line) and ``body`` (plain text).
``EmailTemplates`` loads a template from the operator's folder (``AIOS_TEMPLATES_DIR``) when it
has a file of that name, else from the defaults shipped in this package (a Jinja2
``ChoiceLoader``), and re-reads a file that changed. ``export_defaults`` copies the defaults
out, to edit.

A template sees the variables of its email's context model below (``InvoiceEmail`` for
``invoice``...), plus ``business`` (the sender's ``aios.identity.BusinessIdentity``: ``name``,
``address_lines``, ``tax_id``, ``email``, ``bank.lines()``, ``footer_lines``...) and
``operator_name`` (who signs). The partials ``email/_signature.txt.j2`` and
``email/_footer.txt.j2`` are included by the client emails; overriding one changes them all.
Dates and times arrive already worded in the business's time zone ("Monday 17 March 2025 at
10:00 CET (Europe/Berlin)"); the ``*_at`` variables are the same moments as datetimes in that
zone, for a template that wants its own format.

Rendering is strict: an undefined variable (a typo), a syntax error, a subject that renders
empty or on more than one line is an ``InvalidInput`` naming the template's file, the line and
the problem, so the activity fails without retrying instead of sending a broken email.
``EmailTemplates.check`` renders every template with sample values; the worker runs it at
start, so a broken template stops the worker before any email is composed. Text emails are
not HTML: autoescaping is off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    UndefinedError,
)
from pydantic import BaseModel, ConfigDict

from aios.errors import InvalidInput
from aios.identity import BusinessIdentity

__all__ = [
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


# --- what each email knows ------------------------------------------------------------------


class _Context(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WelcomeEmail(_Context):
    """``welcome``: the approved welcome draft (subject and body as approved) and the kickoff."""

    client_name: str
    subject: str
    body: str
    kickoff: str  # "Monday 17 March 2025 at 10:00 CET (Europe/Berlin)"
    kickoff_at: datetime


class KickoffCancelledEmail(_Context):
    """``kickoff_cancelled``: the welcome was undone; the kickoff invitation is withdrawn."""

    client_name: str
    kickoff: str
    kickoff_at: datetime


class GateReminderEmail(_Context):
    """``gate_reminder``: to the operator, an approval waits: when the gate opens (``reminder``
    0) and at each reminder (1, 2...). The ``*_url`` are signed one-click links to the console
    (``""`` when the worker has none); each opens the gate with that decision pre-selected and
    a confirm button, and expires with the gate."""

    reminder: int
    title: str
    summary: str
    workflow_id: str
    waiting_since: str
    expires: str
    approve_command: str
    reject_command: str
    gate: str = ""
    amount: str = ""  # "USD 4,500.00", or "" when the gate is not about money
    drafted_by: str = ""  # the model that wrote the draft, or "" / the template
    open_url: str = ""
    approve_url: str = ""
    reject_url: str = ""
    # With an inbound mailbox: the secret a reply "approve" / "reject: reason" must carry.
    reply_token: str = ""


class ProposalEmail(_Context):
    """``proposal`` (a new proposal or version) and ``proposal_follow_up`` (a reminder)."""

    client_name: str
    proposal_id: str
    version: int
    what: str  # the scope's first words
    total: str  # "USD 10,080.00"
    discount_pct: str  # "10", or "" without a discount
    discount: str  # "USD 1,120.00", or "" without a discount
    valid_until: str  # "31 March 2025"


class ProposalWithdrawnEmail(_Context):
    """``proposal_withdrawn``: the proposal is retracted."""

    client_name: str
    proposal_id: str
    version: int
    what: str


class InvoiceEmail(_Context):
    """``invoice``: the invoice is attached."""

    client_name: str
    number: str
    total: str
    due: str  # "31 March 2025", or "on receipt"
    payment_instructions: str


class InvoiceReminderEmail(_Context):
    """``invoice_reminder``: the invoice is still (partly) open."""

    client_name: str
    number: str
    total: str
    balance: str
    due: str
    reminder: int
    payment_instructions: str


class InvoiceCancelledEmail(_Context):
    """``invoice_cancelled``: do not pay; a credit note is attached if anything was paid."""

    client_name: str
    number: str
    total: str
    reason: str
    credit_note: bool


# Template name (email/<name>.txt.j2) -> what it is given.
EMAILS: dict[str, type[_Context]] = {
    "welcome": WelcomeEmail,
    "kickoff_cancelled": KickoffCancelledEmail,
    "gate_reminder": GateReminderEmail,
    "proposal": ProposalEmail,
    "proposal_follow_up": ProposalEmail,
    "proposal_withdrawn": ProposalWithdrawnEmail,
    "invoice": InvoiceEmail,
    "invoice_reminder": InvoiceReminderEmail,
    "invoice_cancelled": InvoiceCancelledEmail,
}

_KICKOFF = datetime(2030, 3, 18, 10, 0, tzinfo=UTC)
_SAMPLES: dict[str, _Context] = {
    "welcome": WelcomeEmail(
        client_name="Acme Ltd",
        subject="Welcome aboard, Acme Ltd",
        body="Hello Acme Ltd,\n\nwelcome.\n",
        kickoff="Monday 18 March 2030 at 10:00 UTC",
        kickoff_at=_KICKOFF,
    ),
    "kickoff_cancelled": KickoffCancelledEmail(
        client_name="Acme Ltd", kickoff="Monday 18 March 2030 at 10:00 UTC", kickoff_at=_KICKOFF
    ),
    "gate_reminder": GateReminderEmail(
        reminder=1,
        title="Welcome email for Acme Ltd",
        summary="Welcome aboard",
        workflow_id="onboarding/acme-ltd",
        waiting_since="Monday 11 March 2030 at 10:00 UTC",
        expires="Monday 18 March 2030 at 10:00 UTC",
        approve_command="aios approve onboarding/acme-ltd",
        reject_command='aios reject onboarding/acme-ltd --comment "why"',
        gate="welcome",
        amount="",
        drafted_by="template",
        open_url="http://127.0.0.1:8780/l/sample-open",
        approve_url="http://127.0.0.1:8780/l/sample-approve",
        reject_url="http://127.0.0.1:8780/l/sample-reject",
    ),
    "proposal": ProposalEmail(
        client_name="Acme Ltd",
        proposal_id="p-1",
        version=2,
        what="A new website",
        total="USD 10,080.00",
        discount_pct="10",
        discount="USD 1,120.00",
        valid_until="1 April 2030",
    ),
    "proposal_withdrawn": ProposalWithdrawnEmail(
        client_name="Acme Ltd", proposal_id="p-1", version=2, what="A new website"
    ),
    "invoice": InvoiceEmail(
        client_name="Acme Ltd",
        number="INV-000001",
        total="USD 10,080.00",
        due="1 April 2030",
        payment_instructions="Please pay by bank transfer.",
    ),
    "invoice_reminder": InvoiceReminderEmail(
        client_name="Acme Ltd",
        number="INV-000001",
        total="USD 10,080.00",
        balance="USD 80.00",
        due="1 April 2030",
        reminder=1,
        payment_instructions="Please pay by bank transfer.",
    ),
    "invoice_cancelled": InvoiceCancelledEmail(
        client_name="Acme Ltd",
        number="INV-000001",
        total="USD 10,080.00",
        reason="Ordered twice.",
        credit_note=True,
    ),
}
_SAMPLES["proposal_follow_up"] = _SAMPLES["proposal"]


def template_path(email: str) -> str:
    """The template name of ``email``: ``"invoice"`` -> ``"email/invoice.txt.j2"``."""
    return f"email/{email}.txt.j2"


# --- rendering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    body: str


class EmailTemplates:
    """Renders the emails of one business from the operator's templates or the defaults."""

    def __init__(
        self, business: BusinessIdentity, *, operator_name: str, folder: Path | None = None
    ) -> None:
        self._folder = folder.expanduser().resolve() if folder is not None else None
        loaders: list[Any] = []
        if self._folder is not None:
            loaders.append(FileSystemLoader(self._folder))
        loaders.append(PackageLoader("aios", "templates"))
        self._env = Environment(
            loader=ChoiceLoader(loaders),
            undefined=StrictUndefined,
            autoescape=False,  # noqa: S701 - plain-text emails, not HTML
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=True,
        )
        self._env.globals.update(business=business, operator_name=operator_name)

    @property
    def folder(self) -> Path | None:
        return self._folder

    def render(self, email: str, context: BaseModel) -> RenderedEmail:
        """Subject and body of ``email`` for ``context`` (an instance of ``EMAILS[email]``)."""
        expected = EMAILS.get(email)
        if expected is None:
            raise InvalidInput(f"email template: no email called {email!r}")
        if not isinstance(context, expected):
            raise InvalidInput(
                f"email template {email!r} takes {expected.__name__}, not {type(context).__name__}"
            )
        name = template_path(email)
        values = {key: getattr(context, key) for key in type(context).model_fields}
        try:
            template = self._env.get_template(name)
        except TemplateSyntaxError as exc:
            where = self._where(exc.filename, exc.name or name)
            raise InvalidInput(
                f"email template {where}, line {exc.lineno}: {exc.message}"
            ) from None
        except TemplateError as exc:
            raise InvalidInput(f"email template {name}: {exc}") from None
        where = self._where(template.filename, name)
        subject = self._block(template, "subject", values, where)
        body = self._block(template, "body", values, where)
        subject = subject.strip()
        if not subject:
            raise InvalidInput(f"email template {where}: the subject is empty")
        if "\n" in subject or "\r" in subject:
            raise InvalidInput(
                f"email template {where}: the subject has a line break; it must be one line"
            )
        body = re.sub(r"\n{3,}", "\n\n", body).strip("\n")
        return RenderedEmail(subject=subject, body=body + "\n")

    def check(self) -> None:
        """Render every email with sample values; ``InvalidInput`` naming each one that fails."""
        problems: dict[str, str] = {}  # a broken partial fails many emails: name it once
        for email, sample in _SAMPLES.items():
            try:
                self.render(email, sample)
            except InvalidInput as exc:
                problems.setdefault(str(exc).split(" (it knows:")[0], str(exc))
        if problems:
            raise InvalidInput("; ".join(problems.values()))

    def _block(self, template: Template, block: str, values: dict[str, Any], where: str) -> str:
        render = template.blocks.get(block)
        if render is None:
            raise InvalidInput(
                f"email template {where}: it has no {{% block {block} %}} (every email "
                "template needs a subject block and a body block)"
            )
        try:
            return "".join(render(template.new_context(values)))
        except Exception as exc:  # a template can raise anything its expressions do
            line = _template_line(self._env)
            if line is not None:
                filename, lineno = line
                where = f"{self._where(filename, 'email/' + Path(filename).name)}, line {lineno}"
            if isinstance(exc, UndefinedError):
                known = ", ".join(sorted([*values, "business", "operator_name"]))
                message = f"{exc.message} (it knows: {known})"
            elif isinstance(exc, TemplateError):
                message = str(exc.message)
            else:
                message = f"{type(exc).__name__}: {exc}"
            raise InvalidInput(f"email template {where}: {message}") from None

    def _where(self, filename: str | None, name: str) -> str:
        """The operator's file by its path; a default as ``<name> (package default)``."""
        if filename and self._folder is not None and Path(filename).is_relative_to(self._folder):
            return filename
        return f"{name} (package default)"


def _template_line(env: Environment) -> tuple[str, int] | None:
    """The template file and line of the exception being handled (Jinja rewrites the
    traceback so that its frames are template lines)."""
    try:
        env.handle_exception()  # re-raises the exception being handled, traceback rewritten
    except Exception as rewritten:
        tb = rewritten.__traceback__
    else:  # pragma: no cover - handle_exception always raises
        return None
    found = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


# --- export -------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # already there: not overwritten


def export_defaults(target: Path, *, overwrite: bool = False) -> ExportResult:
    """Copy the default templates into ``target`` (as ``target/email/*.txt.j2``) to edit.

    Point ``AIOS_TEMPLATES_DIR`` at ``target`` afterwards. A file that is already there is kept
    (listed in ``kept``) unless ``overwrite``; ``target`` is created if missing.
    """
    result = ExportResult()
    folder = target.expanduser() / "email"
    folder.mkdir(parents=True, exist_ok=True)
    source = files("aios").joinpath("templates", "email")
    for item in sorted(source.iterdir(), key=lambda i: i.name):
        if not item.name.endswith(".j2"):
            continue
        destination = folder / item.name
        if destination.exists() and not overwrite:
            result.kept.append(destination)
            continue
        destination.write_text(item.read_text(encoding="utf-8"), encoding="utf-8")
        result.written.append(destination)
    return result
