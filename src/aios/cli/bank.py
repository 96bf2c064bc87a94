"""``aios bank import FILE``: read a bank statement, pay the invoices its credits match.

Registered by ``cli.app``; everything past Typer loads inside the command. The work is
``operations.inbound.import_statement``: the file is read whole first (a bad file is refused
with the line or entry and field, and nothing is recorded), then each credit is settled once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from aios.operations.inbound import ImportReport, Settled

__all__ = ["bank_app"]

bank_app = typer.Typer(help="Bank transfers: import statements (CSV, camt.053).")

_SHOWN = {
    "signalled": "paid",
    "notice": "to the inbox",
    "refused": "refused",
    "ignored": "ignored",
    "received": "not settled",
}


@bank_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="The statement: a CSV export or camt.053 XML")],
    format: Annotated[
        Literal["auto", "csv", "camt053"],
        typer.Option("--format", help="auto: XML is camt.053, anything else CSV"),
    ] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON document for scripts (see README)")
    ] = False,
) -> None:
    """Match the statement's credits to open invoices (invoice number in the reference, and
    the open balance) and record the payments; part payments, ambiguous and unmatched
    credits go to the inbox, overpayments are refused. Importing a file again records
    nothing new. Exits 1 when a credit was refused."""
    from aios.cli.app import command

    command(_import)(file, format, as_json)


def _import(file: Path, format: Literal["auto", "csv", "camt053"], as_json: bool) -> None:
    from aios.cli.app import fail, run, settings
    from aios.cli.render import emit_json
    from aios.operations.inbound import import_statement

    s = settings()
    report = run(import_statement(s, file, format=format))
    if as_json:
        emit_json(_document(report))
    else:
        _print(report)
    refused = report.refused
    if refused:
        raise fail(
            f"{len(refused)} credit(s) refused: "
            + "; ".join(f"{r.item.where}: {r.message}" for r in refused)
        )


def _document(report: ImportReport) -> dict[str, object]:
    return {
        "file": report.file,
        "format": report.format,
        "account": report.account,
        "skipped": report.skipped,
        "new": report.new,
        "credits": [_row(r) for r in report.results],
    }


def _row(r: Settled) -> dict[str, object]:
    from aios.kernel.money import format_amount

    return {
        "where": r.item.where,
        "line_id": r.item.external_id,
        "amount": format_amount(r.item.amount_minor, r.item.currency),
        "amount_minor": r.item.amount_minor,
        "currency": r.item.currency,
        "reference": r.item.reference,
        "outcome": r.outcome,
        "duplicate": r.duplicate,
        "workflow_id": r.workflow_id,
        "message": r.message,
    }


def _print(report: ImportReport) -> None:
    from aios.cli.render import line
    from aios.kernel.money import format_amount

    line(
        f"{report.file} ({report.format}{', ' + report.account if report.account else ''}): "
        f"{len(report.results)} credit(s), {report.skipped} other line(s) skipped, "
        f"{report.new} new."
    )
    for r in report.results:
        amount = format_amount(r.item.amount_minor, r.item.currency)
        state = "already imported" if r.duplicate else _SHOWN[r.outcome]
        target = f" -> {r.workflow_id}" if r.workflow_id else ""
        why = f": {r.message}" if r.message and r.outcome != "signalled" else ""
        line(f"  {r.item.where}: {amount} {state}{target}{why}")
