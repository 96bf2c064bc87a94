"""Reading and matching bank statements: how long a large statement takes before anything is
settled (the parse and the match are plain Python; settling is one signal per credit).

    .venv/bin/python benchmarks/statements.py                    # 10,000 credits, 2,000 invoices
    .venv/bin/python benchmarks/statements.py --credits 50000 --json

Generates a camt.053 file and a CSV export with ``--credits`` credits (plus one debit every
ten lines), half naming an open invoice by number, and matches them against ``--invoices``
open invoices. Prints the median of ``--runs`` runs of each step and the machine's load
before and after. Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from aios.connectors.payments.statements import (
    CsvLayout,
    OpenInvoice,
    OpenInvoices,
    match_credit,
    read_camt053,
    read_csv,
)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def camt053(credits: int, invoices: int) -> bytes:
    entries = []
    for n in range(credits + credits // 10):
        debit = n % 11 == 10
        reference = f"Invoice INV-{n % invoices + 1:06d}" if n % 2 == 0 else f"Order {n}"
        entries.append(
            f'<Ntry><Amt Ccy="EUR">{100 + n % 900}.50</Amt>'
            f"<CdtDbtInd>{'DBIT' if debit else 'CRDT'}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
            f"<BookgDt><Dt>2026-11-21</Dt></BookgDt><AcctSvcrRef>R-{n}</AcctSvcrRef>"
            f"<NtryDtls><TxDtls><RmtInf><Ustrd>{reference}</Ustrd></RmtInf>"
            f"<RltdPties><Dbtr><Nm>Payer {n}</Nm></Dbtr></RltdPties></TxDtls></NtryDtls></Ntry>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:'
        'camt.053.001.08"><BkToCstmrStmt><Stmt><Acct><Id><IBAN>DE89370400440532013000</IBAN>'
        "</Id></Acct>" + "".join(entries) + "</Stmt></BkToCstmrStmt></Document>"
    ).encode()


def csv_export(credits: int, invoices: int) -> bytes:
    rows = ["Date;Amount;Currency;Reference;Name"]
    for n in range(credits + credits // 10):
        sign = "-" if n % 11 == 10 else ""
        reference = f"INV-{n % invoices + 1:06d}" if n % 2 == 0 else f"Order {n}"
        rows.append(f"2026-11-21;{sign}1.{n % 1000:03d},50;EUR;{reference};Payer {n}")
    return "\n".join(rows).encode("cp1252")


def median_seconds(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--credits", type=int, default=10_000)
    parser.add_argument("--invoices", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    before = load()
    xml, csv = camt053(args.credits, args.invoices), csv_export(args.credits, args.invoices)
    layout = CsvLayout(decimal=",", default_currency="EUR")
    open_invoices = [
        # invoice k is paid exactly by credit k - 1 (when that one names it)
        OpenInvoice(f"i{k}", k, f"billing/i{k}", "EUR", (100 + (k - 1) % 900) * 100 + 50)
        for k in range(1, args.invoices + 1)
    ]
    camt_s, statement = median_seconds(lambda: read_camt053(xml), args.runs)
    csv_s, exported = median_seconds(lambda: read_csv(csv, layout), args.runs)

    def match_all() -> list[Any]:
        index = OpenInvoices(open_invoices)
        return [match_credit(c, index) for c in statement.credits]

    match_s, matches = median_seconds(match_all, args.runs)
    figures = {
        "credits": len(statement.credits),
        "csv_credits": len(exported.credits),
        "open_invoices": len(open_invoices),
        "camt053_bytes": len(xml),
        "camt053_parse_s": round(camt_s, 3),
        "csv_bytes": len(csv),
        "csv_parse_s": round(csv_s, 3),
        "match_s": round(match_s, 3),
        "matched_kinds": {
            k: sum(1 for m in matches if m.kind == k)
            for k in ("exact", "over", "partial", "ambiguous", "unmatched")
        },
        "load_before": before,
        "load_after": load(),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        print(f"{key:>16}: {value}")


if __name__ == "__main__":
    main()
