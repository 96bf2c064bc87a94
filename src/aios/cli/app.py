"""The ``aios`` command. Each command is thin: typed options, an input model, one call."""

from __future__ import annotations

import asyncio
import atexit
import getpass
import logging
import os
import sys
import warnings
from collections.abc import Callable, Coroutine
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from temporalio.service import RPCError

from aios import devstack, operations
from aios.config import Settings, get_settings
from aios.errors import AiosError, InvalidInput
from aios.kernel.models import ClientIntake
from aios.kernel.money import LineItem, normalize_currency, parse_amount
from aios.temporal import connect
from aios.workflows.gates import GateDecision
from aios.workflows.proposal import ClientResponse

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

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def describe_validation(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def command(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn expected errors into one line on stderr and exit code 1."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except ValidationError as exc:
            raise fail(describe_validation(exc)) from None
        except AiosError as exc:
            raise fail(str(exc)) from None
        except RPCError as exc:
            raise fail(f"Temporal: {exc.message}") from None

    return wrapper


def settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        problems = [
            f"AIOS_{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: {e['msg']}"
            for e in exc.errors()
        ]
        raise fail("invalid settings: " + "; ".join(problems)) from None


def run(coro: Coroutine[Any, Any, R]) -> R:
    return asyncio.run(coro)


def age(delta: timedelta | None) -> str:
    if delta is None:
        return "?"
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


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
    intake = ClientIntake(name=name, email=email, notes=notes, key=key)
    s = settings()

    async def go() -> operations.Started:
        client = await connect(s)
        return await operations.start_onboarding(client, s, intake, again=again)

    started = run(go())
    verb = "already running" if started.existing else "started"
    out.print(f"Onboarding {verb}: [bold]{started.workflow_id}[/] (run {started.run_id})")
    out.print(f"Web UI: {operations.web_ui_url(s, started.workflow_id, started.run_id)}")
    if not started.existing:
        out.print(
            f"When the draft is ready it waits in `aios inbox` for `aios approve "
            f"{started.workflow_id}`.",
            highlight=False,
        )


@app.command()
@command
def inbox() -> None:
    """Every gate waiting for your decision, across workflows."""
    s = settings()

    async def go() -> list[operations.InboxItem]:
        return await operations.inbox(await connect(s))

    items = run(go())
    if not items:
        out.print("Inbox empty: nothing waits for your decision.")
        return
    table = Table("workflow", "gate", "amount", "waiting", "summary", "drafted by", "reminders")
    for item in items:
        gate = item.gate
        table.add_row(
            item.workflow_id,
            gate.gate if gate else "?",
            (gate.amount or "") if gate else "",
            age(item.age),
            gate.summary[:90] if gate else item.note,
            (gate.drafted_by or "") if gate else "",
            str(gate.reminders_sent) if gate else "",
        )
    out.print(table)


def _decide(
    workflow_id: str, decision: str, approver: str | None, comment: str, edits: dict[str, str]
) -> None:
    s = settings()
    payload = GateDecision(
        decision=decision,
        approver=approver or os.environ.get("USER") or getpass.getuser() or s.operator_name,
        comment=comment,
        edits=edits,
    )

    async def go() -> str:
        return await operations.decide(await connect(s), workflow_id, payload)

    gate = run(go())
    verb = {"approve": "Approved", "reject": "Rejected", "edit": "Edited and approved"}[decision]
    if gate:
        out.print(f"{verb} gate {gate!r} of {workflow_id} as {payload.approver}.")
    else:
        out.print(
            f"Sent '{decision}' to {workflow_id} as {payload.approver}, unconfirmed: no worker "
            "answered. It is kept in the workflow's history and applied to the waiting gate when "
            "`aios worker` runs; if no gate was waiting it is rejected (see `aios status`)."
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
def status(workflow_id: Annotated[str, typer.Argument(help="e.g. onboarding/acme-ltd")]) -> None:
    """Steps done, gate state and the event log of a run."""
    s = settings()

    async def go() -> operations.RunStatus:
        return await operations.describe(await connect(s), workflow_id)

    st = run(go())
    out.print(f"[bold]{st.workflow_id}[/] run {st.run_id}: [bold]{st.status}[/]")
    out.print(f"Web UI: {operations.web_ui_url(s, st.workflow_id, st.run_id)}")
    if st.steps_done:
        out.print("Steps done: " + ", ".join(st.steps_done))
    for k, v in st.details.items():
        out.print(f"{k.replace('_', ' ').capitalize()}: {v}", highlight=False)
    if st.waiting_for:
        out.print(f"Waiting for signal [bold]{st.waiting_for}[/]")
    for g in st.gates:
        if g.drafted_by:
            out.print(f"Drafted by: {g.drafted_by}", highlight=False)
        out.print(
            f"Waiting at gate [bold]{g.gate}[/] since {g.requested_at:%Y-%m-%d %H:%M} UTC "
            f"(expires {g.expires_at:%Y-%m-%d %H:%M} UTC, {g.reminders_sent} reminder(s)"
            + (
                f", {g.rejected_signals} rejected signal(s): {g.last_rejection}"
                if g.rejected_signals
                else ""
            )
            + ")"
        )
    if st.note:
        out.print(f"[yellow]{st.note}[/]")
    from aios.kernel.store import KernelStore

    store = KernelStore(devstack.database_url(s), max_size=1)
    try:
        events = store.events(workflow_id, st.run_id)
    finally:
        store.close()
    table = Table("#", "time (UTC)", "event", "details")
    for e in events:
        details = ", ".join(f"{k}={v}" for k, v in e.payload.items() if v not in (None, "", []))
        table.add_row(str(e.id), f"{e.occurred_at:%H:%M:%S}", e.kind, details[:110])
    out.print(table)


@app.command()
@command
def costs(
    month: Annotated[
        str | None, typer.Option(help="calendar month (UTC) as YYYY-MM; default: this month")
    ] = None,
) -> None:
    """Model spend by process, agent and day, and the budget left this month."""
    s = settings()
    store = _store(s)
    try:
        report = operations.cost_report(store, s, month)
    finally:
        store.close()
    provider = (
        "template (offline, no model calls)" if report.provider == "template" else report.provider
    )
    out.print(
        f"Model spend in [bold]{report.month}[/] (UTC): [bold]${report.total_usd:.4f}[/]; "
        f"agent provider: {provider}",
        highlight=False,
    )
    for title, lines in (
        ("process", report.by_process),
        ("agent", report.by_agent),
        ("day", report.by_day),
    ):
        table = Table(title, "calls", "model calls", "tokens", "USD", title=f"By {title}")
        for line in lines:
            table.add_row(
                line.key,
                str(line.calls),
                str(line.model_calls),
                str(line.tokens),
                f"{line.usd:.4f}",
            )
        if not lines:
            table.add_row("(no calls)", "", "", "", "")
        out.print(table)
    budget = Table("budget", "monthly cap", "spent", "remaining", title="Budget")
    for b in report.budgets:
        budget.add_row(
            b.scope, f"${b.cap_usd:.2f}", f"${b.spent_usd:.4f}", f"${b.remaining_usd:.4f}"
        )
    out.print(budget)


@checks_app.command("schedule")
@command
def checks_schedule() -> None:
    """Create or update the hourly synthetic-check schedule (AIOS_SYNTHETIC_CHECK_EVERY)."""
    s = settings()

    async def go() -> str:
        return await operations.ensure_check_schedule(await connect(s), s)

    done = run(go())
    out.print(
        f"Schedule {operations.CHECK_SCHEDULE_ID} {done}: every {age(s.synthetic_check_every)} "
        f"on task queue {s.task_queue}"
    )


@checks_app.command("run")
@command
def checks_run() -> None:
    """Run one round of synthetic checks now (a worker must be running)."""
    s = settings()

    async def go() -> None:
        await operations.run_checks_now(await connect(s), s)

    run(go())
    out.print("Triggered a synthetic check; results appear in `aios health`.")


@app.command()
@command
def health() -> None:
    """Connector health: last synthetic checks, circuit breakers, rate limits, effects in doubt."""
    s = settings()
    store = _store(s)
    try:
        report = operations.health_report(store)
    finally:
        store.close()
    checks = Table(
        "connector", "ok", "detail", "latency", "checked (UTC)", title="Synthetic checks"
    )
    for c in report.checks:
        checks.add_row(
            c["connector"],
            "yes" if c["ok"] else "[red]NO[/]",
            str(c["detail"])[:80],
            f"{c['latency_ms']} ms",
            f"{c['checked_at']:%Y-%m-%d %H:%M}",
        )
    if not report.checks:
        checks.add_row("(none yet)", "", "run `aios checks run` with a worker up", "", "")
    out.print(checks)
    guards = Table(
        "connector",
        "worker",
        "breaker",
        "failures",
        "rate limit",
        "used",
        "updated (UTC)",
        title="Circuit breakers and rate limits (per worker)",
    )
    for g in report.guards:
        state = g["breaker_state"]
        guards.add_row(
            g["connector"],
            g["worker"],
            state if state == "closed" else f"[red]{state}[/]",
            str(g["failures"]),
            g["rate_limit"],
            f"{g['rate_used']} (left {g['rate_remaining']})",
            f"{g['updated_at']:%Y-%m-%d %H:%M:%S}",
        )
    if not report.guards:
        guards.add_row("(no worker has reported yet)", "", "", "", "", "", "")
    out.print(guards)
    if report.in_doubt:
        out.print(
            f"[yellow]{len(report.in_doubt)} effect(s) started but not finished "
            "(a worker stopped mid-call); their steps retry them:[/]"
        )
        for d in report.in_doubt[:10]:
            out.print(f"  {d['connector']}.{d['operation']} {d['idempotency_key']}")


# --- money ---------------------------------------------------------------------------------


def _store(s: Settings) -> Any:
    from aios.kernel.store import KernelStore

    return KernelStore(devstack.database_url(s), max_size=1)


def _who(approver: str | None, s: Settings) -> str:
    return approver or os.environ.get("USER") or getpass.getuser() or s.operator_name


def parse_item(text: str, currency: str) -> LineItem:
    """``"Website build=4500"`` or ``"Hosting (months)=12x25.50"`` -> a line item."""
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
    new = operations.NewProposal.model_validate(
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

    async def go() -> operations.Started:
        store = _store(s)
        try:
            return await operations.start_proposal(await connect(s), s, store, new, again=again)
        finally:
            store.close()

    started = run(go())
    out.print(f"Proposal started: [bold]{started.workflow_id}[/] (run {started.run_id})")
    out.print(f"Web UI: {operations.web_ui_url(s, started.workflow_id, started.run_id)}")
    out.print(
        "If policy needs you, it waits in `aios inbox`; the client's answer goes in with "
        f"`aios respond {started.workflow_id.split('/', 1)[1]} accept|decline|counter`.",
        highlight=False,
    )


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
    payload = ClientResponse.model_validate(
        {"response": response, "note": note, "proposed_total": total, "version": version}
    )
    s = settings()

    async def go() -> bool:
        return await operations.respond(await connect(s), proposal, payload)

    confirmed = run(go())
    wid = operations.workflow_id_for("proposal", proposal)
    if confirmed:
        out.print(f"Recorded '{response}' for {wid}.")
    else:
        out.print(
            f"Sent '{response}' to {wid}, unconfirmed: no worker answered. It is applied when "
            "`aios worker` runs; if the proposal is not waiting for an answer it is rejected "
            "(see `aios status`)."
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
    s = settings()
    cur = normalize_currency(currency or s.currency)
    items = [parse_item(text, cur) for text in item]
    new = operations.NewInvoice(
        client_key=client_key, items=items, currency=cur, invoice_id=invoice_id
    )

    async def go() -> operations.Started:
        store = _store(s)
        try:
            return await operations.start_billing(await connect(s), s, store, new)
        finally:
            store.close()

    started = run(go())
    out.print(f"Billing started: [bold]{started.workflow_id}[/] (run {started.run_id})")
    out.print(f"Web UI: {operations.web_ui_url(s, started.workflow_id, started.run_id)}")


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
    s = settings()
    value: Decimal | None = None
    if amount is not None:
        try:
            value = Decimal(amount.replace(",", ""))
        except InvalidOperation:
            raise fail(f"--amount: {amount!r} is not a number") from None
        if not value.is_finite() or value <= 0:
            raise fail(f"--amount: {amount!r} must be a positive number")

    async def go() -> operations.PaymentSent:
        store = _store(s)
        try:
            return await operations.record_payment(
                await connect(s),
                store,
                invoice,
                amount=value,
                reference=reference,
                recorded_by=_who(approver, s),
            )
        finally:
            store.close()

    sent = run(go())
    tail = "" if sent.confirmed else " (unconfirmed: no worker answered; applied when one runs)"
    out.print(f"Recorded payment of {sent.amount} for {sent.workflow_id}{tail}.", highlight=False)


@app.command()
@command
def cancel(
    workflow_id: Annotated[str, typer.Argument(help="e.g. billing/acme-20261121-ab12")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Cancel a run; its compensations (void, cancellation email, credit note) run first."""
    s = settings()
    if "/" not in workflow_id:
        raise fail("give the full workflow id, e.g. billing/<id> or proposal/<id>")
    if not yes and not typer.confirm(
        f"Cancel {workflow_id}? Compensations will undo what it did (emails go out).", default=False
    ):
        raise fail("not cancelled")

    async def go() -> None:
        await operations.cancel(await connect(s), workflow_id)

    run(go())
    out.print(
        f"Cancellation requested for {workflow_id}; it runs its compensations and ends "
        f"cancelled. Follow it with `aios status {workflow_id}`."
    )


@app.command()
@command
def worker() -> None:
    """Run a worker for every workflow and activity until SIGINT/SIGTERM."""
    from aios.logs import configure_logging
    from aios.workers import run_worker

    s = settings()
    configure_logging(s.log_level)
    run(run_worker(s))


@app.command()
@command
def demo(
    client_name: Annotated[str, typer.Option("--name", help="Sample client name")] = (
        "Northwind Studio"
    ),
) -> None:
    """Bring the stack up, run a worker, onboard a sample client, approve it, show the result."""
    from aios.cli.demo import run_demo
    from aios.logs import configure_logging

    s = settings()
    log_file = s.state_path / "logs" / "demo.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    stream = log_file.open("a")  # stays open until exit: atexit handlers log too
    configure_logging(s.log_level, stream=stream)
    out.print(f"(worker logs go to {log_file})", style="dim")
    run(run_demo(s, client_name, out))


# --- dev stack -----------------------------------------------------------------------------


def _print_status(rows: list[devstack.ComponentStatus]) -> None:
    table = Table("component", "state", "pid", "where")
    for c in rows:
        state = "[green]running[/]" if c.running else "[red]stopped[/]"
        table.add_row(c.name, state, str(c.pid or ""), c.detail)
    out.print(table)


@dev_app.command("up")
@command
def dev_up() -> None:
    """Start the embedded stack in the background (harmless if it already runs)."""
    s = settings()
    with out.status("starting the embedded stack..."):
        rows = devstack.up(s)
    _print_status(rows)
    out.print(f"State folder: {s.state_path}")

    async def schedule() -> str:
        return await operations.ensure_check_schedule(await connect(s), s)

    done = run(schedule())
    out.print(
        f"Synthetic connector checks: schedule {done}, every {age(s.synthetic_check_every)} "
        "(`aios health`)"
    )


@dev_app.command("status")
@command
def dev_status() -> None:
    """Show what runs and where the data is."""
    _print_status(devstack.status(settings()))


@dev_app.command("down")
@command
def dev_down() -> None:
    """Stop the embedded stack; data stays in the state folder."""
    stopped = devstack.down(settings())
    out.print("Stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def main() -> None:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    code: int = 0
    try:
        app()
    except SystemExit as exc:
        if isinstance(exc.code, str):  # sys.exit("message"): print it, as Python would
            err.print(exc.code, highlight=False)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        err.print("interrupted")
        code = 130
    except Exception as exc:  # last resort: one line, never a traceback
        if os.environ.get("AIOS_DEBUG"):
            raise
        err.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", highlight=False)
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


__all__ = ["app", "main"]
