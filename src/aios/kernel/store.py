"""PostgreSQL access for the kernel: plain SQL over a psycopg 3 connection pool.

Every write is idempotent: clients upsert by key, drafts and events insert by a deterministic
id and ignore a repeat, and the outbox runs an outside effect at most once per key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from aios.errors import InvalidInput
from aios.kernel.commerce import (
    CreditNote,
    Invoice,
    LedgerEntry,
    Proposal,
    ProposalVersion,
    credit_note_number,
)
from aios.kernel.events import EventDraft
from aios.kernel.models import Client, Draft, Event, ModelCall

__all__ = ["KernelStore", "OutboxResult", "apply_migrations"]

MIGRATIONS = Path(__file__).parent / "migrations"

OutboxResult = dict[str, Any]


def apply_migrations(database_url: str) -> int:
    """Apply pending versioned migrations under a lock; returns how many were applied."""
    from yoyo import get_backend, read_migrations

    url = database_url
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    backend = get_backend(url)
    try:
        migrations = read_migrations(str(MIGRATIONS))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return len(pending)
    finally:
        backend.connection.close()


class KernelStore:
    """Canonical records, drafts, the event log and the outbox, in PostgreSQL."""

    def __init__(self, database_url: str, *, max_size: int = 4) -> None:
        self._pool = ConnectionPool(
            database_url,
            min_size=1,
            max_size=max_size,
            kwargs={"row_factory": dict_row, "autocommit": False},
            open=True,
            name="aios-kernel",
        )
        self._pool.wait(timeout=15)

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        with self._pool.connection() as conn:
            yield cast("psycopg.Connection[dict[str, Any]]", conn)

    # --- clients -----------------------------------------------------------------------

    def upsert_client(self, client: Client, *, event: EventDraft) -> Client:
        """Create or update the client by key and append ``event``, in one transaction."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                INSERT INTO clients (client_key, name, email, notes, segment, facts)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (client_key) DO UPDATE SET
                    name = EXCLUDED.name, email = EXCLUDED.email, notes = EXCLUDED.notes,
                    segment = EXCLUDED.segment, facts = EXCLUDED.facts, updated_at = now()
                RETURNING *
                """,
                (
                    client.key,
                    client.name,
                    client.email,
                    client.notes,
                    client.segment,
                    Jsonb(client.facts),
                ),
            ).fetchone()
            self._append(conn, event)
        assert row is not None
        return _client(row)

    def get_client(self, key: str) -> Client | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM clients WHERE client_key = %s", (key,)).fetchone()
        return _client(row) if row else None

    # --- drafts ------------------------------------------------------------------------

    def save_draft(self, draft: Draft, *, event: EventDraft) -> Draft:
        """Store a draft version; a repeat with the same id returns the stored one unchanged."""
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO drafts (id, workflow_id, run_id, kind, version, subject, body,
                                    plan, meta)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (id) DO NOTHING
                """,
                (
                    draft.id,
                    draft.workflow_id,
                    draft.run_id,
                    draft.kind,
                    draft.version,
                    draft.subject,
                    draft.body,
                    Jsonb(draft.plan),
                    Jsonb(draft.meta),
                ),
            )
            self._append(conn, event)
            row = conn.execute("SELECT * FROM drafts WHERE id = %s", (draft.id,)).fetchone()
        assert row is not None
        return Draft.model_validate(row)

    def get_draft(self, draft_id: str) -> Draft | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM drafts WHERE id = %s", (draft_id,)).fetchone()
        return Draft.model_validate(row) if row else None

    # --- events ------------------------------------------------------------------------

    def append_event(self, event: EventDraft) -> None:
        """Append one event; a repeat of the same ``event_key`` is ignored."""
        with self.transaction() as conn:
            self._append(conn, event)

    def events(self, workflow_id: str, run_id: str | None = None) -> list[Event]:
        query = "SELECT * FROM events WHERE workflow_id = %s"
        params: list[str] = [workflow_id]
        if run_id:
            query += " AND run_id = %s"
            params.append(run_id)
        with self.transaction() as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        return [Event.model_validate(r) for r in rows]

    def last_event(self, entity: str, kinds: list[str]) -> Event | None:
        """The newest event about ``entity`` of one of ``kinds``."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM events WHERE entity = %s AND kind = ANY(%s) "
                "ORDER BY id DESC LIMIT 1",
                (entity, kinds),
            ).fetchone()
        return Event.model_validate(row) if row else None

    def event_by_key(self, event_key: str) -> Event | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM events WHERE event_key = %s", (event_key,)).fetchone()
        return Event.model_validate(row) if row else None

    @staticmethod
    def _append(conn: psycopg.Connection[dict[str, Any]], event: EventDraft) -> None:
        conn.execute(
            """
            INSERT INTO events (event_key, workflow_id, run_id, process, kind, entity, payload)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (event_key) DO NOTHING
            """,
            (
                event.event_key,
                event.workflow_id,
                event.run_id,
                event.process,
                event.kind,
                event.entity,
                Jsonb(event.payload),
            ),
        )

    # --- cost ledger of model calls ----------------------------------------------------

    def record_model_call(self, call: ModelCall) -> ModelCall:
        """Append a call to the cost ledger; a repeat of the same ``call_key`` is ignored and
        the stored row is returned."""
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO model_calls (call_key, agent, prompt_version, workflow_id, run_id,
                    process, tier, provider, model, input_tokens, output_tokens, cost_usd,
                    confidence, outcome, reason, content, over_budget)
                VALUES (%(call_key)s, %(agent)s, %(prompt_version)s, %(workflow_id)s,
                    %(run_id)s, %(process)s, %(tier)s, %(provider)s, %(model)s, %(input_tokens)s,
                    %(output_tokens)s, %(cost_usd)s, %(confidence)s, %(outcome)s, %(reason)s,
                    %(content)s, %(over_budget)s)
                ON CONFLICT (call_key) DO NOTHING
                """,
                call.model_dump(exclude={"created_at"}),
            )
            row = conn.execute(
                "SELECT * FROM model_calls WHERE call_key = %s", (call.call_key,)
            ).fetchone()
        return ModelCall.model_validate(row)

    def model_call(self, call_key: str) -> ModelCall | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM model_calls WHERE call_key = %s", (call_key,)
            ).fetchone()
        return ModelCall.model_validate(row) if row else None

    def model_calls(self, workflow_id: str) -> list[ModelCall]:
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM model_calls WHERE workflow_id = %s ORDER BY created_at, call_key",
                (workflow_id,),
            ).fetchall()
        return [ModelCall.model_validate(r) for r in rows]

    def run_cost(self, workflow_id: str, run_id: str) -> Decimal:
        """USD spent on model calls by one workflow run."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(cost_usd), 0) AS usd FROM model_calls "
                "WHERE workflow_id = %s AND run_id = %s",
                (workflow_id, run_id),
            ).fetchone()
        return Decimal(row["usd"]) if row else Decimal(0)

    def model_spend(self, since: datetime, *, agent: str | None = None) -> Decimal:
        """USD spent on model calls since ``since`` (all agents, or one)."""
        query = "SELECT COALESCE(SUM(cost_usd), 0) AS usd FROM model_calls WHERE created_at >= %s"
        params: list[Any] = [since]
        if agent is not None:
            query += " AND agent = %s"
            params.append(agent)
        with self.transaction() as conn:
            row = conn.execute(query, params).fetchone()
        return Decimal(row["usd"]) if row else Decimal(0)

    def cost_report(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Spend in [since, until) grouped by day, process and agent."""
        with self.transaction() as conn:
            return conn.execute(
                """
                SELECT (created_at AT TIME ZONE 'UTC')::date AS day, process, agent,
                       count(*) AS calls,
                       count(*) FILTER (WHERE provider <> 'template') AS model_calls,
                       SUM(input_tokens + output_tokens) AS tokens,
                       SUM(cost_usd) AS usd
                FROM model_calls
                WHERE created_at >= %s AND created_at < %s
                GROUP BY 1, 2, 3
                ORDER BY 1, 2, 3
                """,
                (since, until),
            ).fetchall()

    # --- outbox ------------------------------------------------------------------------

    def run_once(
        self,
        key: str,
        *,
        connector: str,
        operation: str,
        effect: Callable[[], OutboxResult],
        event: EventDraft | None = None,
    ) -> tuple[OutboxResult, bool]:
        """Run ``effect`` at most once for ``key``; returns (result, whether it ran now).

        Before the effect, the attempt is committed to the outbox (``attempts``,
        ``started_at``); after it, the row is ``done`` with the result. A worker that dies in
        between leaves a row that is started but not done: an effect in doubt, which
        ``in_doubt_effects`` lists and the next attempt runs again (connectors make that safe
        with their own natural keys: a Message-ID, an event UID, a delivery id).
        The row is locked for the duration of the effect, so a concurrent attempt of the same
        step (an activity retried while its first attempt still runs) waits and then sees the
        first one's result. If the effect raises, nothing is recorded as done and the error is
        kept on the row for inspection.
        """
        with self.transaction() as conn:  # before: the attempt is on record, committed
            conn.execute(
                """
                INSERT INTO outbox (idempotency_key, connector, operation, status)
                VALUES (%s, %s, %s, 'pending') ON CONFLICT (idempotency_key) DO NOTHING
                """,
                (key, connector, operation),
            )
            conn.execute(
                """
                UPDATE outbox SET attempts = attempts + 1, started_at = now(), updated_at = now()
                WHERE idempotency_key = %s AND status = 'pending'
                """,
                (key,),
            )
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT status, result FROM outbox WHERE idempotency_key = %s FOR UPDATE", (key,)
            ).fetchone()
            assert row is not None
            if row["status"] == "done":
                return cast(OutboxResult, row["result"] or {}), False
            try:
                result = effect()
            except BaseException as exc:
                conn.rollback()
                self._record_failure(key, exc)
                raise
            conn.execute(  # after: done, with the result a repeat will get
                """
                UPDATE outbox SET status = 'done', result = %s, last_error = NULL,
                                  finished_at = now(), updated_at = now()
                WHERE idempotency_key = %s
                """,
                (Jsonb(result), key),
            )
            if event is not None:
                self._append(conn, event)
        return result, True

    def _record_failure(self, key: str, exc: BaseException) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET last_error = %s, updated_at = now() WHERE idempotency_key = %s",
                (f"{type(exc).__name__}: {exc}"[:2000], key),
            )

    def outbox_entry(self, key: str) -> dict[str, Any] | None:
        with self.transaction() as conn:
            return conn.execute(
                "SELECT * FROM outbox WHERE idempotency_key = %s", (key,)
            ).fetchone()

    def in_doubt_effects(self, older_than_seconds: float = 300) -> list[dict[str, Any]]:
        """Effects that started but never finished (a worker died in between)."""
        with self.transaction() as conn:
            return conn.execute(
                """
                SELECT idempotency_key, connector, operation, attempts, started_at, last_error
                FROM outbox
                WHERE status = 'pending' AND started_at IS NOT NULL
                  AND started_at < now() - make_interval(secs => %s)
                ORDER BY started_at
                """,
                (older_than_seconds,),
            ).fetchall()

    # --- links to mirrors in outside systems ---------------------------------------------

    def link_external(self, entity: str, system: str, external_id: str) -> None:
        """Remember that ``entity`` is mirrored in ``system`` as ``external_id`` (upsert)."""
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO external_refs (entity, system, external_id) VALUES (%s, %s, %s)
                ON CONFLICT (entity, system) DO UPDATE
                SET external_id = EXCLUDED.external_id, updated_at = now()
                """,
                (entity, system, external_id),
            )

    def external_id(self, entity: str, system: str) -> str | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT external_id FROM external_refs WHERE entity = %s AND system = %s",
                (entity, system),
            ).fetchone()
        return None if row is None else str(row["external_id"])

    # --- connector health and synthetic checks -------------------------------------------

    def save_connector_health(self, worker: str, rows: list[dict[str, Any]]) -> None:
        """What one worker's circuit breakers and rate limiters look like now."""
        with self.transaction() as conn:
            for row in rows:
                conn.execute(
                    """
                    INSERT INTO connector_health (worker, connector, breaker_state, failures,
                        opened_at, rate_limit, rate_used, rate_remaining, updated_at)
                    VALUES (%(worker)s, %(connector)s, %(breaker_state)s, %(failures)s,
                        %(opened_at)s, %(rate_limit)s, %(rate_used)s, %(rate_remaining)s, now())
                    ON CONFLICT (worker, connector) DO UPDATE SET
                        breaker_state = EXCLUDED.breaker_state, failures = EXCLUDED.failures,
                        opened_at = EXCLUDED.opened_at, rate_limit = EXCLUDED.rate_limit,
                        rate_used = EXCLUDED.rate_used,
                        rate_remaining = EXCLUDED.rate_remaining, updated_at = now()
                    """,
                    {"worker": worker, **row},
                )

    def connector_health(self) -> list[dict[str, Any]]:
        with self.transaction() as conn:
            return conn.execute(
                "SELECT * FROM connector_health ORDER BY connector, updated_at DESC"
            ).fetchall()

    def record_synthetic_checks(
        self, check_key: str, workflow_id: str, results: list[dict[str, Any]]
    ) -> None:
        """Append one run's results; a repeat of the same run is ignored."""
        with self.transaction() as conn:
            for r in results:
                conn.execute(
                    """
                    INSERT INTO synthetic_checks (check_key, workflow_id, connector, ok, detail,
                        latency_ms)
                    VALUES (%s, %s, %s, %s, %s, %s)
                    ON CONFLICT (check_key, connector) DO NOTHING
                    """,
                    (check_key, workflow_id, r["connector"], r["ok"], r["detail"], r["latency_ms"]),
                )

    def last_synthetic_checks(self) -> list[dict[str, Any]]:
        """The latest result per connector."""
        with self.transaction() as conn:
            return conn.execute(
                """
                SELECT DISTINCT ON (connector) connector, ok, detail, latency_ms, checked_at,
                       workflow_id
                FROM synthetic_checks ORDER BY connector, checked_at DESC, id DESC
                """
            ).fetchall()

    # --- proposals ---------------------------------------------------------------------

    def open_proposal(self, proposal: Proposal, *, event: EventDraft) -> Proposal:
        """Record a new proposal; a repeat with the same id returns the stored one."""
        with self.transaction() as conn:
            if not conn.execute(
                "SELECT 1 FROM clients WHERE client_key = %s", (proposal.client_key,)
            ).fetchone():
                raise InvalidInput(f"client: no client with key {proposal.client_key!r}")
            conn.execute(
                """
                INSERT INTO proposals (proposal_id, client_key, workflow_id, scope, currency,
                                       budget_hint_minor, deadline)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (proposal_id) DO NOTHING
                """,
                (
                    proposal.proposal_id,
                    proposal.client_key,
                    proposal.workflow_id,
                    proposal.scope,
                    proposal.currency,
                    proposal.budget_hint_minor,
                    proposal.deadline,
                ),
            )
            self._append(conn, event)
            row = conn.execute(
                "SELECT * FROM proposals WHERE proposal_id = %s", (proposal.proposal_id,)
            ).fetchone()
        assert row is not None
        return Proposal.model_validate(row)

    def get_proposal(self, proposal_id: str) -> Proposal | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM proposals WHERE proposal_id = %s", (proposal_id,)
            ).fetchone()
        return Proposal.model_validate(row) if row else None

    def save_proposal_version(
        self, version: ProposalVersion, *, event: EventDraft
    ) -> ProposalVersion:
        """Store a new immutable version; a repeat with the same id returns the stored one."""
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO proposal_versions (id, proposal_id, version, source, author, currency,
                    line_items, subtotal_minor, discount_pct, total_minor, terms, rationale, note,
                    memory_ids, based_on)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT DO NOTHING
                """,
                (
                    version.id,
                    version.proposal_id,
                    version.version,
                    version.source,
                    version.author,
                    version.currency,
                    Jsonb([item.model_dump() for item in version.line_items]),
                    version.subtotal_minor,
                    version.discount_pct,
                    version.total_minor,
                    version.terms,
                    version.rationale,
                    version.note,
                    Jsonb(version.memory_ids),
                    version.based_on,
                ),
            )
            row = conn.execute(
                "SELECT * FROM proposal_versions WHERE id = %s", (version.id,)
            ).fetchone()
            if row is None:
                raise InvalidInput(
                    f"proposal {version.proposal_id!r} already has a version {version.version}"
                )
            self._append(conn, event)
        return ProposalVersion.model_validate(row)

    def get_proposal_version(self, version_id: str) -> ProposalVersion | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM proposal_versions WHERE id = %s", (version_id,)
            ).fetchone()
        return ProposalVersion.model_validate(row) if row else None

    def proposal_versions(self, proposal_id: str) -> list[ProposalVersion]:
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM proposal_versions WHERE proposal_id = %s ORDER BY version",
                (proposal_id,),
            ).fetchall()
        return [ProposalVersion.model_validate(r) for r in rows]

    # --- invoices, credit notes, ledger -------------------------------------------------

    def create_invoice(self, invoice: Invoice, *, event: EventDraft) -> Invoice:
        """Record a draft invoice (no number yet); a repeat returns the stored one."""
        with self.transaction() as conn:
            if not conn.execute(
                "SELECT 1 FROM clients WHERE client_key = %s", (invoice.client_key,)
            ).fetchone():
                raise InvalidInput(f"client: no client with key {invoice.client_key!r}")
            conn.execute(
                """
                INSERT INTO invoices (invoice_id, client_key, proposal_id, workflow_id, currency,
                                      line_items, total_minor, status)
                VALUES (%s, %s, %s, %s, %s, %s, %s, 'draft')
                ON CONFLICT (invoice_id) DO NOTHING
                """,
                (
                    invoice.invoice_id,
                    invoice.client_key,
                    invoice.proposal_id,
                    invoice.workflow_id,
                    invoice.currency,
                    Jsonb([item.model_dump() for item in invoice.line_items]),
                    invoice.total_minor,
                ),
            )
            self._append(conn, event)
            row = self._invoice_row(conn, invoice.invoice_id)
        return Invoice.model_validate(row)

    def issue_invoice(
        self, invoice_id: str, *, issued_at: datetime, due_at: datetime, event: EventDraft
    ) -> Invoice:
        """Give a draft invoice the next number of the gap-free series; a repeat is a no-op.

        The counter row is locked until the invoice carrying the number commits, so concurrent
        issues queue, and a failed transaction gives its number back.
        """
        with self.transaction() as conn:
            row: dict[str, Any] | None = self._invoice_row(conn, invoice_id, lock=True)
            assert row is not None
            if row["status"] == "draft":
                number = self._next_number(conn, "INV")
                row = conn.execute(
                    """
                    UPDATE invoices SET number = %s, status = 'issued', issued_at = %s,
                                        due_at = %s, updated_at = now()
                    WHERE invoice_id = %s RETURNING *
                    """,
                    (number, issued_at, due_at, invoice_id),
                ).fetchone()
                assert row is not None
                self._append(
                    conn, event.model_copy(update={"payload": {**event.payload, "number": number}})
                )
        return Invoice.model_validate(row)

    def attach_provider(
        self,
        invoice_id: str,
        *,
        provider: str,
        reference: str,
        payment_instructions: str,
        hosted_url: str | None,
        event: EventDraft,
    ) -> Invoice:
        with self.transaction() as conn:
            self._invoice_row(conn, invoice_id, lock=True)
            conn.execute(
                """
                UPDATE invoices SET provider = %s, provider_reference = %s,
                                    payment_instructions = %s, hosted_url = %s, updated_at = now()
                WHERE invoice_id = %s
                """,
                (provider, reference, payment_instructions, hosted_url, invoice_id),
            )
            self._append(conn, event)
            row = self._invoice_row(conn, invoice_id)
        return Invoice.model_validate(row)

    def void_invoice(self, invoice_id: str, *, event: EventDraft) -> Invoice:
        """Mark the invoice void (it keeps its number); voiding a void invoice is a no-op."""
        with self.transaction() as conn:
            row: dict[str, Any] | None = self._invoice_row(conn, invoice_id, lock=True)
            assert row is not None
            if row["status"] != "void":
                row = conn.execute(
                    """
                    UPDATE invoices SET status = 'void', voided_at = now(), updated_at = now()
                    WHERE invoice_id = %s RETURNING *
                    """,
                    (invoice_id,),
                ).fetchone()
                assert row is not None
                self._append(conn, event)
        return Invoice.model_validate(row)

    def record_payment(
        self,
        invoice_id: str,
        *,
        entry_key: str,
        amount_minor: int,
        currency: str,
        reference: str,
        paid_at: datetime,
        event: EventDraft,
    ) -> tuple[Invoice, int]:
        """Add a payment to the ledger (once per ``entry_key``); returns invoice and balance.

        The invoice becomes ``paid`` when the payments cover its total.
        """
        if amount_minor <= 0:
            raise InvalidInput("payment: amount must be positive")
        with self.transaction() as conn:
            row: dict[str, Any] | None = self._invoice_row(conn, invoice_id, lock=True)
            assert row is not None
            if row["currency"] != currency:
                raise InvalidInput(
                    f"payment: currency {currency} does not match the invoice's {row['currency']}"
                )
            seen = conn.execute(
                "SELECT 1 FROM ledger_entries WHERE entry_key = %s", (entry_key,)
            ).fetchone()
            if not seen:
                if row["status"] not in ("issued", "paid"):
                    raise InvalidInput(
                        f"payment: invoice {invoice_id!r} is {row['status']}, it cannot be paid"
                    )
                conn.execute(
                    """
                    INSERT INTO ledger_entries (entry_key, invoice_id, kind, amount_minor,
                                                currency, reference, occurred_at)
                    VALUES (%s, %s, 'payment', %s, %s, %s, %s)
                    """,
                    (entry_key, invoice_id, amount_minor, currency, reference, paid_at),
                )
                self._append(conn, event)
            balance = self._balance(conn, invoice_id, int(row["total_minor"]))
            if balance <= 0 and row["status"] == "issued":
                row = conn.execute(
                    """
                    UPDATE invoices SET status = 'paid', paid_at = %s, updated_at = now()
                    WHERE invoice_id = %s RETURNING *
                    """,
                    (paid_at, invoice_id),
                ).fetchone()
                assert row is not None
        return Invoice.model_validate(row), balance

    def issue_credit_note(
        self,
        credit_note_id: str,
        invoice_id: str,
        *,
        amount_minor: int,
        reason: str,
        event: EventDraft,
    ) -> CreditNote:
        """Credit ``amount_minor`` against the invoice with a numbered credit note, once per id."""
        if amount_minor <= 0:
            raise InvalidInput("credit note: amount must be positive")
        with self.transaction() as conn:
            row = self._invoice_row(conn, invoice_id, lock=True)
            note = conn.execute(
                "SELECT * FROM credit_notes WHERE credit_note_id = %s", (credit_note_id,)
            ).fetchone()
            if note is None:
                number = self._next_number(conn, "CN")
                note = conn.execute(
                    """
                    INSERT INTO credit_notes (credit_note_id, number, invoice_id, currency,
                                              amount_minor, reason)
                    VALUES (%s, %s, %s, %s, %s, %s) RETURNING *
                    """,
                    (credit_note_id, number, invoice_id, row["currency"], amount_minor, reason),
                ).fetchone()
                conn.execute(
                    """
                    INSERT INTO ledger_entries (entry_key, invoice_id, kind, amount_minor,
                                                currency, reference)
                    VALUES (%s, %s, 'credit_note', %s, %s, %s)
                    """,
                    (
                        credit_note_id,
                        invoice_id,
                        -amount_minor,
                        row["currency"],
                        credit_note_number(number),
                    ),
                )
                self._append(
                    conn,
                    event.model_copy(
                        update={"payload": {**event.payload, "number": credit_note_number(number)}}
                    ),
                )
        assert note is not None
        return CreditNote.model_validate(note)

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM invoices WHERE invoice_id = %s", (invoice_id,)
            ).fetchone()
        return Invoice.model_validate(row) if row else None

    def invoice_by_number(self, number: int) -> Invoice | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM invoices WHERE number = %s", (number,)).fetchone()
        return Invoice.model_validate(row) if row else None

    def ledger(self, invoice_id: str) -> list[LedgerEntry]:
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM ledger_entries WHERE invoice_id = %s ORDER BY id", (invoice_id,)
            ).fetchall()
        return [LedgerEntry.model_validate(r) for r in rows]

    def credit_notes(self, invoice_id: str) -> list[CreditNote]:
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM credit_notes WHERE invoice_id = %s ORDER BY number", (invoice_id,)
            ).fetchall()
        return [CreditNote.model_validate(r) for r in rows]

    def invoice_numbers(self) -> list[int]:
        """Every issued invoice number, ascending (for audits and tests of the series)."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT number FROM invoices WHERE number IS NOT NULL ORDER BY number"
            ).fetchall()
        return [int(r["number"]) for r in rows]

    @staticmethod
    def _invoice_row(
        conn: psycopg.Connection[dict[str, Any]], invoice_id: str, *, lock: bool = False
    ) -> dict[str, Any]:
        locked = "SELECT * FROM invoices WHERE invoice_id = %s FOR UPDATE"
        plain = "SELECT * FROM invoices WHERE invoice_id = %s"
        row = conn.execute(locked if lock else plain, (invoice_id,)).fetchone()
        if row is None:
            raise InvalidInput(f"invoice: no invoice with id {invoice_id!r}")
        return row

    @staticmethod
    def _next_number(conn: psycopg.Connection[dict[str, Any]], series: str) -> int:
        row = conn.execute(
            """
            UPDATE document_counters SET last_number = last_number + 1
            WHERE series = %s RETURNING last_number
            """,
            (series,),
        ).fetchone()
        assert row is not None, f"no counter for series {series}"
        return int(row["last_number"])

    @staticmethod
    def _balance(conn: psycopg.Connection[dict[str, Any]], invoice_id: str, total: int) -> int:
        row = conn.execute(
            "SELECT coalesce(sum(amount_minor), 0) AS paid FROM ledger_entries "
            "WHERE invoice_id = %s",
            (invoice_id,),
        ).fetchone()
        assert row is not None
        return total - int(row["paid"])

    def balance(self, invoice_id: str) -> int:
        with self.transaction() as conn:
            row = self._invoice_row(conn, invoice_id)
            return self._balance(conn, invoice_id, int(row["total_minor"]))


def _client(row: dict[str, Any]) -> Client:
    return Client(
        key=row["client_key"],
        name=row["name"],
        email=row["email"],
        notes=row["notes"],
        segment=row["segment"],
        facts=row["facts"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
