"""The ``aios`` command. Each command is thin: typed options, an input model, one operation.

Everything past Typer is imported inside the commands, so ``aios --help`` loads nothing else
and ``aios inbox`` or ``aios approve`` load the settings, the Temporal client and the gate
operations only (``benchmarks/cli_start.py`` measures it). Output goes through
``cli.render``: ids and links are printed whole at any terminal width.
"""

from __future__ import annotations

import asyncio
import atexit
import getpass
import logging
import os
import sys
import warnings
from collections.abc import Callable, Coroutine
from decimal import Decimal, InvalidOperation
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, ParamSpec, TypeVar

import typer
from rich.text import Text

from aios.cli import bank as bank_commands
from aios.cli import console as console_commands
from aios.cli import content as content_commands
from aios.cli import control as control_commands
from aios.cli import exchange as exchange_commands
from aios.cli import mail as mail_commands
from aios.cli import memory as memory_commands
from aios.cli import policy as policy_commands
from aios.cli import render
from aios.cli import review as review_commands
from aios.cli import subscribers as subscriber_commands
from aios.cli.render import Col, age, bold, line, one_line, records

if TYPE_CHECKING:
    from pydantic import ValidationError

    from aios.config import Settings
    from aios.devstack import ComponentStatus
    from aios.kernel.money import LineItem
    from aios.operations.common import Started

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="aios",
    help="AiOs: your business processes as durable workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
dev_app = typer.Typer(help="The embedded stack: Temporal dev server, PostgreSQL, SMTP sink.")
app.add_typer(dev_app, name="dev")
checks_app = typer.Typer(help="Synthetic connector checks on a Temporal Schedule.")
app.add_typer(checks_app, name="checks")
app.add_typer(console_commands.operator_app, name="operator")
app.add_typer(memory_commands.memory_app, name="memory")
app.add_typer(bank_commands.bank_app, name="bank")
app.add_typer(review_commands.review_app, name="review")
exchange_commands.register(app)
app.add_typer(policy_commands.policy_app, name="policy")
app.add_typer(content_commands.content_app, name="content")
app.add_typer(subscriber_commands.subscribers_app, name="subscribers")
app.add_typer(mail_commands.mail_app, name="mail")

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print a JSON document for scripts (see README)")
]


@app.callback()
def _invocation() -> None:
    render.reset()  # read the terminal width for this invocation


def fail(message: str, code: int = 1) -> typer.Exit:
    line(Text("error: ", style="bold red"), message, console=render.err())
    return typer.Exit(code)


def describe_validation(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def expected_error(exc: Exception) -> str | None:
    """The one line an expected error prints, or ``None`` for a bug (``main`` handles it)."""
    from pydantic import ValidationError

    from aios.errors import AiosError

    if isinstance(exc, ValidationError):
        return describe_validation(exc)
    if isinstance(exc, AiosError):
        return str(exc)
    service = sys.modules.get("temporalio.service")  # not imported: not a Temporal error
    if service is not None and isinstance(exc, service.RPCError):
        return f"Temporal: {exc.message}"
    errors = sys.modules.get("psycopg.errors")
    if errors is not None and isinstance(exc, errors.UndefinedTable | errors.UndefinedColumn):
        return (
            "the database is older than this version of AiOs "
            f"({str(exc).splitlines()[0]}): `aios dev up` or starting `aios worker` applies "
            "its migrations"
        )
    return None


def command(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn expected errors into one line on stderr and exit code 1."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            message = expected_error(exc)
            if message is None:
                raise
            raise fail(message) from None

    return wrapper


def settings() -> Settings:
    from pydantic import ValidationError

    from aios.config import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        problems = [
            f"AIOS_{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        ]
        raise fail("invalid settings: " + "; ".join(problems)) from None


def run(coro: Coroutine[Any, Any, R]) -> R:
    return asyncio.run(coro)


def _who(approver: str | None, s: Settings) -> str:
    return approver or os.environ.get("USER") or getpass.getuser() or s.operator_name


def _started(what: str, s: Settings, started: Started, verb: str = "started") -> None:
    from aios.operations.common import web_ui_url

    line(f"{what} {verb}: ", bold(started.workflow_id), f" (run {started.run_id})")
    line("Web UI: ", web_ui_url(s, started.workflow_id, started.run_id))


# --- work ----------------------------------------------------------------------------------


@app.command()
@command
def onboard(
    name: Annotated[str, typer.Option(help="Client name, e.g. 'Acme Ltd'")],
    email: Annotated[str, typer.Option(help="Client contact email")],
    notes: Annotated[str, typer.Option(help="What the client asked for")] = "",
    key: Annotated[str, typer.Option(help="Client key (default: from the name)")] = "",
    again: Annotated[
        bool, typer.Option("--again", help="Onboard a client whose onboarding already ended")
    ] = False,
) -> None:
    """Start onboarding a client (or show the onboarding already running for them)."""
    from aios.kernel.models import ClientIntake
    from aios.operations.onboarding import start_onboarding
    from aios.temporal import connect

    intake = ClientIntake(name=name, email=email, notes=notes, key=key)
    s = settings()

    async def go() -> Started:
        from aios.operations.policies import pin_from_database  # the run pins the policy

        return await start_onboarding(await connect(s), pin_from_database(s), intake, again=again)

    started = run(go())
    _started("Onboarding", s, started, "already running" if started.existing else "started")
    if not started.existing:
        line("When the draft is ready it waits in `aios inbox`; read it and decide with:")
        line(f"  aios show {started.workflow_id}")
        line(f"  aios approve {started.workflow_id}")


@app.command()
@command
def inbox(as_json: JsonOpt = False) -> None:
    """Every gate waiting for your decision, across workflows, and what needs a look."""
    from aios.operations.gates import inbox_for

    box = run(inbox_for(settings()))
    items, notices = box.items, box.notices
    if as_json:
        from aios.cli.shapes import inbox_json

        render.emit_json(inbox_json(items, notices))
        return
    if not items and not notices:
        line("Inbox empty: nothing waits for your decision.")
        return
    if items:
        _gate_rows(items)
        line(GATES_HINT)
    else:
        line("No gate waits for your decision.")
    if notices:
        _notice_rows(notices)
        line("Dismiss one with `aios dismiss <key> --reason ..` once it is handled.")


GATES_HINT = (
    "Read a draft in full with `aios show <workflow>`; decide with `aios approve` or reject."
)


def _gate_rows(items: list[Any]) -> None:
    rows: list[list[render.Cell]] = []
    for item in items:
        gate = item.gate
        rows.append(
            [
                item.workflow_id,
                item.client or "",
                gate.gate if gate else "?",
                (gate.amount or "") if gate else "",
                age(item.age),
                f"{gate.expires_at:%Y-%m-%d %H:%M}" if gate else "",
                one_line(gate.summary) if gate else item.note,
                (gate.drafted_by or "") if gate else "",
                str(gate.reminders_sent) if gate else "",
            ]
        )
    records(
        [
            Col("workflow", key=True),
            Col("client", key=True),
            Col("gate", key=True),
            Col("amount", key=True),
            Col("waiting", key=True),
            Col("expires (UTC)", key=True),
            Col("summary", min_width=12, max_width=90),
            Col("drafted by", min_width=8, max_width=40),
            Col("reminders", key=True),
        ],
        rows,
    )


def _notice_rows(notices: list[Any]) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    line("")
    line(bold("Needs a look"), f" ({len(notices)})")
    rows: list[list[render.Cell]] = [
        [
            n.key,
            n.kind + (" (suspicious)" if n.suspicious else ""),
            n.client_key or "",
            age(now - n.opened_at),
            one_line(n.title),
        ]
        for n in notices
    ]
    records(
        [
            Col("key", key=True),
            Col("kind", key=True),
            Col("client", key=True),
            Col("waiting", key=True),
            Col("what", min_width=12, max_width=90),
        ],
        rows,
    )


@app.command()
@command
def dismiss(
    key: Annotated[str, typer.Argument(help="The notice's key, as `aios inbox` shows it.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; kept with the notice.")] = "",
    approver: Annotated[
        str | None, typer.Option("--by", help="Who dismisses it (default: you).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Dismiss a notice in the inbox (something that needed a look, not a decision)."""
    from aios.operations.common import open_gates
    from aios.operations.notices import dismiss as dismiss_notice

    s = settings()
    kernel = open_gates(s)
    try:
        done = dismiss_notice(kernel.notices, key, by=_who(approver, s), reason=reason)
    finally:
        kernel.close()
    n = done.notice
    if as_json:
        render.emit_json({"notice": n.model_dump(mode="json"), "already": done.already})
        return
    when = f"{n.resolved_at:%Y-%m-%d %H:%M} UTC" if n.resolved_at else "earlier"
    if done.already:
        line(f"Already resolved by {n.resolved_by} at {when} ({n.resolution}); nothing changed.")
    else:
        line(f"Dismissed {n.key} ({n.resolution}).")


def _decide(
    workflow_id: str, decision: str, approver: str | None, comment: str, edits: dict[str, str]
) -> None:
    from aios.operations.gates import decide
    from aios.operations.messages import Decision
    from aios.temporal import connect

    s = settings()
    payload = Decision.model_validate(
        {
            "decision": decision,
            "approver": _who(approver, s),
            "comment": comment,
            "edits": edits,
        }
    )

    async def go() -> str:
        return await decide(await connect(s), workflow_id, payload, settings=s)

    gate = run(go())
    verb = {"approve": "Approved", "reject": "Rejected", "edit": "Edited and approved"}[decision]
    if gate:
        line(f"{verb} gate {gate!r} of {workflow_id} as {payload.approver}.")
    else:
        line(f"Sent '{decision}' to {workflow_id} as {payload.approver}, unconfirmed:")
        line(
            "no worker answered. It is kept in the workflow's history and applied to the "
            "waiting gate when `aios worker` runs; if no gate was waiting it is rejected "
            "(see `aios status`)."
        )


ApproverOpt = Annotated[str | None, typer.Option(help="Who decides (default: your user name)")]


@app.command()
@command
def approve(
    workflow_id: Annotated[str, typer.Argument(help="e.g. onboarding/acme-ltd")],
    comment: Annotated[str, typer.Option(help="Why, for the record")] = "",
    approver: ApproverOpt = None,
    subject: Annotated[str | None, typer.Option(help="Replace the email subject")] = None,
    body_file: Annotated[
        Path | None, typer.Option(help="Replace the email body with this file's text")
    ] = None,
) -> None:
    """Approve the waiting gate; with --subject/--body-file, approve an edited version."""
    edits: dict[str, str] = {}
    if subject is not None:
        edits["subject"] = subject
    if body_file is not None:
        try:
            edits["body"] = body_file.read_text()
        except OSError as exc:
            raise fail(f"--body-file: cannot read {body_file}: {exc.strerror}") from None
    _decide(workflow_id, "edit" if edits else "approve", approver, comment, edits)


@app.command()
@command
def reject(
    workflow_id: Annotated[str, typer.Argument(help="e.g. onboarding/acme-ltd")],
    comment: Annotated[str, typer.Option(help="The reason, recorded with the decision")] = "",
    approver: ApproverOpt = None,
) -> None:
    """Reject the waiting gate; the run ends as rejected and nothing is sent."""
    _decide(workflow_id, "reject", approver, comment, {})


@app.command()
@command
def status(
    workflow_id: Annotated[str, typer.Argument(help="e.g. onboarding/acme-ltd")],
    as_json: JsonOpt = False,
) -> None:
    """Steps done, gate state and the event log of a run."""
    from aios.operations.common import web_ui_url
    from aios.operations.runs import run_status

    s = settings()
    st = run(run_status(s, workflow_id))
    web_ui = web_ui_url(s, st.workflow_id, st.run_id)
    if as_json:
        from aios.cli.shapes import status_json

        render.emit_json(status_json(st, web_ui))
        return
    ended = f" ({st.outcome})" if st.outcome and st.outcome != st.status else ""
    line(bold(st.workflow_id), f" run {st.run_id}: ", bold(st.status + ended))
    line("Web UI: ", web_ui)
    if st.steps_done:
        line("Steps done: " + ", ".join(st.steps_done))
    for k, v in st.details.items():
        line(f"{k.replace('_', ' ').capitalize()}: {v}")
    if st.waiting_for:
        line("Waiting for signal ", bold(st.waiting_for))
    for g in st.gates:
        if g.drafted_by:
            line(f"Drafted by: {g.drafted_by}")
        line(
            "Waiting at gate ",
            bold(g.gate),
            f" since {g.requested_at:%Y-%m-%d %H:%M} UTC "
            f"(expires {g.expires_at:%Y-%m-%d %H:%M} UTC, {g.reminders_sent} reminder(s)"
            + (
                f", {g.rejected_signals} rejected signal(s): {g.last_rejection}"
                if g.rejected_signals
                else ""
            )
            + ")",
        )
        line(f"Read it with `aios show {st.workflow_id}`.")
    if st.note:
        line(st.note, style="yellow")
    rows: list[list[render.Cell]] = []
    for e in st.events:
        details = ", ".join(f"{k}={v}" for k, v in e.payload.items() if v not in (None, "", []))
        details = one_line(details)
        rows.append([str(e.id), f"{e.occurred_at:%H:%M:%S}", e.kind, details])
    records(
        [
            Col("#", key=True, justify="right"),
            Col("time (UTC)", key=True),
            Col("event", key=True),
            Col("details", min_width=16, max_width=110),
        ],
        rows,
    )


@app.command()
@command
def show(
    ref: Annotated[
        str,
        typer.Argument(
            help="A workflow id (onboarding/acme-ltd, proposal/<id>, billing/<id>) "
            "or an invoice number (INV-000042)"
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """The full document a run's gate is about: welcome email, proposal version, invoice."""
    from aios.operations.common import web_ui_url
    from aios.operations.runs import show as show_run

    s = settings()
    shown = run(show_run(s, ref))
    web_ui = web_ui_url(s, shown.workflow_id, shown.run_id)
    if as_json:
        from aios.cli.shapes import show_json

        render.emit_json(show_json(shown, web_ui))
        return
    from aios.cli.show import print_shown

    print_shown(shown, web_ui)


@app.command()
@command
def costs(
    month: Annotated[
        str | None, typer.Option(help="calendar month (UTC) as YYYY-MM; default: this month")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Model spend by process, agent and day, and the budget left this month."""
    from aios.operations.costs import month_costs

    report = month_costs(settings(), month)
    if as_json:
        from aios.cli.shapes import costs_json

        render.emit_json(costs_json(report))
        return
    provider = (
        "template (offline, no model calls)" if report.provider == "template" else report.provider
    )
    line(
        "Model spend in ",
        bold(report.month),
        " (UTC): ",
        bold(f"${report.total_usd:.4f}"),
        f"; agent provider: {provider}",
    )
    for title, lines in (
        ("process", report.by_process),
        ("agent", report.by_agent),
        ("day", report.by_day),
    ):
        rows: list[list[render.Cell]] = [
            [c.key, str(c.calls), str(c.model_calls), str(c.tokens), f"{c.usd:.4f}"] for c in lines
        ] or [["(no calls)", "", "", "", ""]]
        records(
            [
                Col(title, key=True),
                Col("calls", key=True, justify="right"),
                Col("model calls", key=True, justify="right"),
                Col("tokens", key=True, justify="right"),
                Col("USD", key=True, justify="right"),
            ],
            rows,
            title=f"By {title}",
        )
    records(
        [
            Col("budget", key=True),
            Col("monthly cap", key=True, justify="right"),
            Col("spent", key=True, justify="right"),
            Col("remaining", key=True, justify="right"),
        ],
        [
            [b.scope, f"${b.cap_usd:.2f}", f"${b.spent_usd:.4f}", f"${b.remaining_usd:.4f}"]
            for b in report.budgets
        ],
        title="Budget",
    )


@checks_app.command("schedule")
@command
def checks_schedule() -> None:
    """Create or update the hourly synthetic-check schedule (AIOS_SYNTHETIC_CHECK_EVERY)."""
    from aios.operations.health import CHECK_SCHEDULE_ID, ensure_check_schedule
    from aios.temporal import connect

    s = settings()

    async def go() -> str:
        return await ensure_check_schedule(await connect(s), s)

    done = run(go())
    line(
        f"Schedule {CHECK_SCHEDULE_ID} {done}: every {age(s.synthetic_check_every)} "
        f"on task queue {s.task_queue}"
    )


@checks_app.command("run")
@command
def checks_run() -> None:
    """Run one round of synthetic checks now (a worker must be running)."""
    from aios.operations.health import run_checks_now
    from aios.temporal import connect

    s = settings()

    async def go() -> None:
        await run_checks_now(await connect(s), s)

    run(go())
    line("Triggered a synthetic check; results appear in `aios health`.")


@app.command()
@command
def health(as_json: JsonOpt = False) -> None:
    """Connector health: last synthetic checks, circuit breakers, rate limits, effects in doubt."""
    from aios.operations.health import connector_health

    report = connector_health(settings())
    if as_json:
        from aios.cli.shapes import health_json

        render.emit_json(health_json(report))
        return
    checks: list[list[render.Cell]] = [
        [
            c.connector,
            "yes" if c.ok else Text("NO", style="red"),
            c.detail,
            f"{c.latency_ms} ms",
            f"{c.checked_at:%Y-%m-%d %H:%M}",
        ]
        for c in report.checks
    ] or [["(none yet)", "", "run `aios checks run` with a worker up", "", ""]]
    records(
        [
            Col("connector", key=True),
            Col("ok", key=True),
            Col("detail", min_width=12, max_width=80),
            Col("latency", key=True, justify="right"),
            Col("checked (UTC)", key=True),
        ],
        checks,
        title="Synthetic checks",
    )
    guards: list[list[render.Cell]] = [
        [
            g.connector,
            g.worker,
            g.breaker_state if g.breaker_state == "closed" else Text(g.breaker_state, style="red"),
            str(g.failures),
            g.rate_limit,
            f"{g.rate_used} (left {g.rate_remaining})",
            f"{g.updated_at:%Y-%m-%d %H:%M:%S}",
        ]
        for g in report.guards
    ] or [["(no worker has reported yet)", "", "", "", "", "", ""]]
    records(
        [
            Col("connector", key=True),
            Col("worker", key=True),
            Col("breaker", key=True),
            Col("failures", key=True, justify="right"),
            Col("rate limit", key=True),
            Col("used", key=True),
            Col("updated (UTC)", key=True),
        ],
        guards,
        title="Circuit breakers and rate limits (per worker)",
    )
    if report.in_doubt:
        line(
            f"{len(report.in_doubt)} effect(s) started but not finished "
            "(a worker stopped mid-call); their steps retry them:",
            style="yellow",
        )
        for d in report.in_doubt[:10]:
            line(f"  {d.connector}.{d.operation} {d.idempotency_key}")


# --- money ---------------------------------------------------------------------------------


def parse_item(text: str, currency: str) -> LineItem:
    """``"Website build=4500"`` or ``"Hosting (months)=12x25.50"`` -> a line item."""
    from aios.errors import InvalidInput
    from aios.kernel.money import LineItem, parse_amount

    description, sep, price = text.rpartition("=")
    if not sep or not description.strip() or not price.strip():
        raise InvalidInput(
            f"--item {text!r}: expected DESCRIPTION=AMOUNT or DESCRIPTION=QTYxAMOUNT"
        )
    quantity, x, unit = price.strip().partition("x")
    if not x:
        quantity, unit = "1", price
    if not quantity.strip().isdigit():
        raise InvalidInput(f"--item {text!r}: quantity {quantity.strip()!r} is not a whole number")
    try:
        unit_minor = parse_amount(unit, currency)
    except InvalidInput as exc:
        raise InvalidInput(f"--item {text!r}: {exc}") from None
    return LineItem(description=description, quantity=int(quantity), unit_price_minor=unit_minor)


@app.command()
@command
def propose(
    client_key: Annotated[str, typer.Option("--client", help="Client key, e.g. acme-ltd")],
    scope: Annotated[str, typer.Option(help="What the client wants, in your words or theirs")],
    budget: Annotated[
        str | None, typer.Option(help="The client's budget, e.g. 4500 (currency units)")
    ] = None,
    deadline: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    currency: Annotated[str | None, typer.Option(help="ISO code (default AIOS_CURRENCY)")] = None,
    proposal_id: Annotated[str | None, typer.Option("--id", help="Proposal id")] = None,
    again: Annotated[
        bool,
        typer.Option("--again", help="Propose to a client whose onboarding was rejected"),
    ] = False,
) -> None:
    """Draft a proposal for a client from memory and policy; it is sent when approved."""
    from aios.operations.proposals import NewProposal
    from aios.operations.proposals import propose as start

    new = NewProposal.model_validate(
        {
            "client_key": client_key,
            "scope": scope,
            "budget": budget,
            "deadline": deadline,
            "currency": currency,
            "proposal_id": proposal_id,
        }
    )
    s = settings()
    started = run(start(s, new, again=again))
    _started("Proposal", s, started)
    line("If policy needs you, it waits in `aios inbox`; the client's answer goes in with")
    line(f"  aios respond {started.workflow_id.split('/', 1)[1]} accept|decline|counter")


@app.command()
@command
def respond(
    proposal: Annotated[str, typer.Argument(help="Proposal id or proposal/<id>")],
    response: Annotated[str, typer.Argument(help="accept | decline | counter")],
    note: Annotated[str, typer.Option(help="What the client said")] = "",
    total: Annotated[
        str | None, typer.Option(help="The client's proposed total (counter only)")
    ] = None,
    version: Annotated[int | None, typer.Option(help="The version they answer")] = None,
) -> None:
    """Record the client's answer to a proposal that was sent."""
    from aios.operations.common import workflow_id_for
    from aios.operations.proposals import respond as send_response
    from aios.temporal import connect
    from aios.workflows.proposal import ClientResponse

    payload = ClientResponse.model_validate(
        {"response": response, "note": note, "proposed_total": total, "version": version}
    )
    s = settings()

    async def go() -> bool:
        return await send_response(await connect(s), proposal, payload)

    confirmed = run(go())
    wid = workflow_id_for("proposal", proposal)
    if confirmed:
        line(f"Recorded '{response}' for {wid}.")
    else:
        line(f"Sent '{response}' to {wid}, unconfirmed: no worker answered.")
        line(
            "It is applied when `aios worker` runs; if the proposal is not waiting for an "
            "answer it is rejected (see `aios status`)."
        )


@app.command()
@command
def bill(
    client_key: Annotated[str, typer.Option("--client", help="Client key, e.g. acme-ltd")],
    item: Annotated[
        list[str],
        typer.Option(help="DESCRIPTION=AMOUNT or DESCRIPTION=QTYxAMOUNT; repeat for more lines"),
    ],
    currency: Annotated[str | None, typer.Option(help="ISO code (default AIOS_CURRENCY)")] = None,
    invoice_id: Annotated[str | None, typer.Option("--id", help="Invoice id")] = None,
) -> None:
    """Invoice a client directly (an accepted proposal starts billing by itself)."""
    from aios.kernel.money import normalize_currency
    from aios.operations.billing import NewInvoice
    from aios.operations.billing import bill as start

    s = settings()
    cur = normalize_currency(currency or s.currency)
    items = [parse_item(text, cur) for text in item]
    new = NewInvoice(client_key=client_key, items=items, currency=cur, invoice_id=invoice_id)
    billed = run(start(s, new))
    _started("Billing", s, billed.started)
    wid = billed.started.workflow_id
    invoice = billed.invoice
    if invoice.number:
        line("Invoice ", bold(invoice.number), f" issued ({invoice.total}); it goes to the client.")
        line(f"Payments go in with `aios paid {invoice.number}`.")
    elif invoice.gate:
        amount = f" ({invoice.total})" if invoice.total else ""
        line(f"Waiting at gate '{invoice.gate}'{amount}: it gets its number when approved.")
        line(f"  aios show {wid}")
        line(f"  aios approve {wid}")
    elif not invoice.answered:
        line("No worker answered yet: the invoice gets its number when `aios worker` runs;")
        line(f"  aios status {wid}")
    elif invoice.status != "running":
        line(f"The run ended {invoice.status} before the invoice was issued; see")
        line(f"  aios status {wid}")
    else:
        line("Not issued yet; its number shows in")
        line(f"  aios status {wid}")


@app.command()
@command
def paid(
    invoice: Annotated[str, typer.Argument(help="Invoice id, billing/<id> or number INV-000042")],
    amount: Annotated[
        str | None, typer.Option(help="Amount received (default: the open balance)")
    ] = None,
    reference: Annotated[str, typer.Option(help="Bank or payment reference")] = "",
    approver: ApproverOpt = None,
) -> None:
    """Record a payment received for an invoice (signal payment_received)."""
    from aios.operations.billing import pay

    s = settings()
    value: Decimal | None = None
    if amount is not None:
        try:
            value = Decimal(amount.replace(",", ""))
        except InvalidOperation:
            raise fail(f"--amount: {amount!r} is not a number") from None
        if not value.is_finite() or value <= 0:
            raise fail(f"--amount: {amount!r} must be a positive number")
    sent = run(pay(s, invoice, amount=value, reference=reference, recorded_by=_who(approver, s)))
    tail = "" if sent.confirmed else " (unconfirmed: no worker answered; applied when one runs)"
    line(f"Recorded payment of {sent.amount} for {sent.workflow_id}{tail}.")


@app.command()
@command
def cancel(
    workflow_id: Annotated[str, typer.Argument(help="e.g. billing/acme-20261121-ab12")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Cancel a run; its compensations (void, cancellation email, credit note) run first."""
    from aios.operations.runs import cancel as cancel_run
    from aios.temporal import connect

    s = settings()
    if "/" not in workflow_id:
        raise fail("give the full workflow id, e.g. billing/<id> or proposal/<id>")
    if not yes and not typer.confirm(
        f"Cancel {workflow_id}? Compensations will undo what it did (emails go out).", default=False
    ):
        raise fail("not cancelled")

    async def go() -> None:
        await cancel_run(await connect(s), workflow_id)

    run(go())
    line(f"Cancellation requested for {workflow_id}; it runs its compensations and ends")
    line(f"cancelled. Follow it with `aios status {workflow_id}`.")


@app.command()
@command
def worker(
    role: Annotated[
        Literal["all", "general", "memory"] | None,
        typer.Option(
            "--role",
            help="all: general work, plus memory when this process can own the embedded "
            "memory shard; general: all but memory; memory: memory only "
            "(default: AIOS_WORKER_ROLE, else all)",
        ),
    ] = None,
    count: Annotated[
        int, typer.Option("--count", min=1, max=64, help="Run this many worker processes")
    ] = 1,
) -> None:
    """Run a worker for every workflow and activity until SIGINT/SIGTERM.

    Memory activities run on their own task queue (aios-memory), served by the one process
    that owns the embedded memory shard. While Temporal is not reachable it waits and tries
    again every few seconds."""
    import structlog

    from aios.errors import AiosError
    from aios.logs import configure_logging
    from aios.workers import run_worker

    s = settings()
    configure_logging(s.log_level)
    log = structlog.get_logger("aios.worker")
    chosen = role or s.worker_role
    try:
        if count > 1:
            from aios.workers.pool import run_worker_processes

            run(run_worker_processes(count, chosen))
        else:
            run(run_worker(s, role=chosen))
    except AiosError as exc:  # a JSON line, like everything a worker writes
        log.error(f"worker stopped: {exc}")
        raise typer.Exit(1) from None
    except Exception as exc:
        log.exception(f"worker failed: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None


@app.command()
@command
def demo(
    client_name: Annotated[str, typer.Option("--name", help="Sample client name")] = (
        "Northwind Studio"
    ),
    email: Annotated[
        str | None,
        typer.Option(help="Sample client's email (default: hello@<client-key>.example)"),
    ] = None,
) -> None:
    """Bring the stack up, run a worker, onboard a sample client, approve it, show the result."""
    from aios.cli.demo import run_demo, sample_email
    from aios.logs import configure_logging

    s = settings()
    address = email or sample_email(client_name)
    log_file = s.state_path / "logs" / "demo.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    stream = log_file.open("a")  # stays open until exit: atexit handlers log too
    configure_logging(s.log_level, stream=stream)
    line(f"(worker logs go to {log_file})", style="dim")
    run(run_demo(s, client_name, render.out(), email=address))


# --- dev stack -----------------------------------------------------------------------------


def _print_status(rows: list[ComponentStatus]) -> None:
    records(
        [
            Col("component", key=True),
            Col("state", key=True),
            Col("pid", key=True),
            Col("where", key=True),
        ],
        [
            [
                c.name,
                Text("running", style="green") if c.running else Text("stopped", style="red"),
                str(c.pid or ""),
                c.detail,
            ]
            for c in rows
        ],
    )


@dev_app.command("up")
@command
def dev_up(
    with_worker: Annotated[
        bool,
        typer.Option(
            "--worker", help="Also run one `aios worker`, restarted when it fails (log in state)"
        ),
    ] = False,
) -> None:
    """Start the embedded stack in the background (harmless if it already runs)."""
    from aios import devstack
    from aios.operations.health import CHECK_SCHEDULE_ID, ensure_check_schedule
    from aios.temporal import connect

    s = settings()
    with render.out().status("starting the embedded stack..."):
        rows = devstack.up(s, worker=with_worker)
    _print_status(rows)
    line(f"State folder: {s.state_path}")

    async def schedules() -> None:  # one line each, naming the schedule and what was done
        from aios.operations.content import PLANNING_SCHEDULE_ID, ensure_content_schedule
        from aios.operations.review_digest import REVIEW_SCHEDULE_ID, ensure_review_schedule

        temporal = await connect(s)
        done = await ensure_check_schedule(temporal, s)
        line(
            f"Synthetic connector checks: schedule {CHECK_SCHEDULE_ID} {done}, every "
            f"{age(s.synthetic_check_every)} (`aios health`)"
        )
        done = await ensure_review_schedule(temporal, s)
        line(
            f"Weekly review digest: schedule {REVIEW_SCHEDULE_ID} {done}, Mondays 07:00 "
            f"({s.business_timezone}) to {s.operator_email}"
        )
        done = await ensure_content_schedule(temporal, s)
        line(
            f"Content planning: schedule {PLANNING_SCHEDULE_ID} {done} ({s.content_planning_cron})"
        )
        if s.imap_host:  # inbound mail: the poller
            from aios.operations.mail import MAIL_SCHEDULE_ID, ensure_mail_schedule

            done = await ensure_mail_schedule(temporal, s)
            line(
                f"Inbound mail: schedule {MAIL_SCHEDULE_ID} {done}, a poll every "
                f"{age(s.imap_poll_every)} (`aios mail poll` polls now)"
            )

    run(schedules())


@dev_app.command("status")
@command
def dev_status() -> None:
    """Show what runs, where the data is, and the schedules Temporal runs."""
    from aios import devstack

    s = settings()
    rows = devstack.status(s)
    _print_status(rows)
    if not any(r.name == "temporal" and r.running for r in rows):
        return

    async def schedules() -> None:
        from aios.operations.schedules import list_schedules
        from aios.temporal import connect

        listed = await list_schedules(await connect(s))
        if not listed:
            line("Schedules: none (`aios dev up` creates them)")
            return
        records(
            [
                Col("schedule", key=True),
                Col("starts", key=True),
                Col("state", key=True),
                Col("next run"),
                Col("last run"),
            ],
            [
                [
                    x.id,
                    x.workflow,
                    Text("paused", style="yellow") if x.paused else Text("active", style="green"),
                    f"{x.next_run:%Y-%m-%d %H:%M} UTC" if x.next_run else "",
                    f"{x.last_run:%Y-%m-%d %H:%M} UTC" if x.last_run else "never",
                ]
                for x in listed
            ],
        )

    run(schedules())


@dev_app.command("down")
@command
def dev_down() -> None:
    """Stop the embedded stack (the supervised worker first); data stays in the state folder."""
    from aios import devstack

    stopped = devstack.down(settings())
    line("Stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


app.command("serve")(command(console_commands.serve))


def main() -> None:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    code: int = 0
    try:
        app()
    except SystemExit as exc:
        if isinstance(exc.code, str):  # sys.exit("message"): print it, as Python would
            line(exc.code, console=render.err())
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        line("interrupted", console=render.err())
        code = 130
    except Exception as exc:  # last resort: one line, never a traceback
        if os.environ.get("AIOS_DEBUG"):
            raise
        line(
            Text("error: ", style="bold red"), f"{type(exc).__name__}: {exc}", console=render.err()
        )
        code = 1
    _exit(code)


def _exit(code: int) -> NoReturn:
    """End the process without interpreter finalization.

    The Temporal client's native threads can still be running when Python finalizes, and a
    short-lived client process then sometimes aborts with "PyGILState_Release: thread state
    ... must be current" (temporalio/sdk-python#300) after its work is done. Exit handlers
    and buffered output are flushed first, so nothing is lost; only the teardown is skipped.
    """
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


control_commands.register(app)  # aios pause, aios resume
__all__ = ["app", "main"]
