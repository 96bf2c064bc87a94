"""How ``aios show`` prints a run's document: the welcome email, a proposal version, an
invoice, in full, with the gate waiting and the commands that answer it."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from aios.cli import render
from aios.cli.render import Col, bold, line, records
from aios.operations.billing import InvoiceDocument
from aios.operations.onboarding import WelcomeDocument
from aios.operations.proposals import ProposalDocument
from aios.operations.runs import Shown

__all__ = ["lines_table", "print_shown"]


def print_shown(shown: Shown, web_ui: str) -> None:
    ended = f" ({shown.outcome})" if shown.outcome and shown.outcome != shown.status else ""
    line(bold(shown.workflow_id), f" run {shown.run_id}: ", bold(shown.status + ended))
    line("Web UI: ", web_ui)
    gate = shown.gate
    if gate is not None:
        line(
            "Waiting at gate ",
            bold(gate.gate),
            f" since {gate.requested_at:%Y-%m-%d %H:%M} UTC "
            f"(expires {gate.expires_at:%Y-%m-%d %H:%M} UTC)"
            + (f"; drafted by {gate.drafted_by}" if gate.drafted_by else ""),
        )
    if shown.note:
        line(shown.note, style="yellow")
    out = render.out()
    doc = shown.document
    out.print()
    if doc is None:
        what = {"onboarding": "welcome draft", "proposal": "proposal version"}
        line(f"No {what.get(shown.process, 'invoice')} yet", " (the run has not written one).")
    elif isinstance(doc, WelcomeDocument):
        line(bold("Welcome email"), f", version {doc.version} (draft {doc.draft_id})")
        if doc.drafted_by:
            line(f"Drafted by: {doc.drafted_by}")
        if doc.edited_by:
            line(f"Edited by: {doc.edited_by}")
        if doc.corrections:
            line(f"Applies your corrections: {', '.join(doc.corrections)} (aios memory show ID)")
        line("Subject: ", bold(doc.subject))
        out.print()
        out.print(Text(doc.body))
        if doc.plan:
            out.print()
            line(bold("Kickoff plan"))
            for i, step in enumerate(doc.plan, 1):
                out.print(Text(f"  {i}. {step}"))
    elif isinstance(doc, ProposalDocument):
        line(
            bold(f"Proposal {doc.proposal_id}"),
            f", version {doc.version} of {doc.versions} ({doc.source}, by {doc.author})",
        )
        lines_table(doc.lines)
        line(f"Subtotal: {doc.subtotal}")
        line(f"Discount: {doc.discount_pct}% ({doc.discount})")
        line("Total: ", bold(doc.total))
        out.print(Text(f"Terms: {doc.terms}"))
        if doc.rationale:
            out.print(Text(f"Rationale: {doc.rationale}"))
        if doc.note:
            out.print(Text(f"Note: {doc.note}"))
    elif isinstance(doc, InvoiceDocument):
        if doc.number:
            line(bold(f"Invoice {doc.number}"), f", {doc.status}, client {doc.client_key}")
        else:
            line(bold("Invoice draft"), f" (no number until issued), client {doc.client_key}")
        line(f"Invoice id: {doc.invoice_id}")
        lines_table(doc.lines)
        line("Total: ", bold(doc.total), f"; paid {doc.paid}; balance ", bold(doc.balance))
        if doc.issued_at:
            due = f", due {doc.due_at:%Y-%m-%d}" if doc.due_at else ""
            line(f"Issued {doc.issued_at:%Y-%m-%d}{due}")
        if doc.payment_instructions:
            out.print(Text(f"Payment: {doc.payment_instructions}"))
        if doc.hosted_url:
            line("Pay online: ", doc.hosted_url)
        if doc.ledger:
            records(
                [
                    Col("ledger", key=True),
                    Col("amount", key=True, justify="right"),
                    Col("reference", min_width=10),
                    Col("when (UTC)", key=True),
                ],
                [
                    [e.kind, e.amount, e.reference, f"{e.occurred_at:%Y-%m-%d %H:%M}"]
                    for e in doc.ledger
                ],
            )
    if gate is not None:
        out.print()
        line(f"Approve: aios approve {shown.workflow_id}")
        line(f'Reject:  aios reject {shown.workflow_id} --comment "why"')
        if "subject" in gate.editable_fields or "body" in gate.editable_fields:
            line(f"Edit:    aios approve {shown.workflow_id} --subject ... --body-file body.txt")


def lines_table(lines: list[Any]) -> None:
    table = Table()
    table.add_column("description", overflow="fold")
    table.add_column("qty", justify="right", no_wrap=True)
    table.add_column("unit price", justify="right", no_wrap=True)
    table.add_column("amount", justify="right", no_wrap=True)
    for item in lines:
        table.add_row(Text(item.description), str(item.quantity), item.unit_price, item.amount)
    render.out().print(table)
