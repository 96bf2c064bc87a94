"""The outbox: each outside effect at most once per key.

An effect is handed a ``CommitPoint``. Most effects ignore it: the row is marked ``done`` after
they return, so a worker that dies in between leaves the effect in doubt and the next attempt
runs it again (connectors make that safe with their own natural keys: an event UID, a
delivery id). An effect whose outside system has a last irrevocable step it can hold back
calls ``commit(provisional)`` just before that step: the row is ``done`` (with the provisional
result) and COMMIT is sent to PostgreSQL, which commits it even if the worker dies the next
moment; the effect takes the last step at once, ``commit.confirm()`` reads PostgreSQL's
answer, and what the effect returns replaces the provisional result. SMTP is such a system:
the server delivers a message only once it has read the terminating ``<CRLF>.<CRLF>`` of DATA
(RFC 5321 4.1.1.4), so the email connector commits just before it sends that dot
(``aios.connectors.email``). Killed before the COMMIT left, the server never got the dot and
discarded the message, and the retry sends it once; killed after, the row is done and the
retry sends nothing. The one window left is between sending COMMIT and sending the dot: a
message recorded as sent that never left (never a duplicate).

A run that no longer needs an effect it asked for (a gate's email once the gate is decided)
cancels it (``cancel``): a row not done becomes ``cancelled`` and no later attempt runs it.
Temporal does not retry an activity whose cancel was requested, so without this an attempt
that died before the commit point would stay in doubt for good.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Callable
from typing import Any, cast

import psycopg
from psycopg import pq
from psycopg.types.json import Jsonb

from aios.errors import EffectCancelled
from aios.kernel.events import EventDraft
from aios.kernel.stores.database import OutboxResult, Store

__all__ = ["CommitPoint", "Outbox"]


class CommitPoint:
    """What ``Outbox.run_once`` hands its effect: mark the effect done before its last step.

    ``commit(provisional)`` marks the row ``done`` with ``provisional`` as its result, appends
    the effect's event, and sends COMMIT without waiting for the answer (``confirm`` waits;
    the outbox confirms after the effect if the effect did not): from then on a retry or a
    concurrent attempt sees the effect as done and does not run it. ``revert(reason)`` undoes
    that, only when the outside system said no to the last step while the worker is alive
    (an SMTP server that rejects the message after its end): the row is pending again with
    ``reason`` as its last error, and an ``outbox.reverted`` event says so (an attempt that
    later succeeds appends the effect's event again, keyed ``<event key>/attempt-<n>``). An
    effect that never calls ``commit`` is
    recorded done after it returns, as before.
    """

    def __init__(
        self,
        outbox: Outbox,
        conn: psycopg.Connection[dict[str, Any]],
        key: str,
        event: EventDraft | None,
    ) -> None:
        self._outbox = outbox
        self._conn = conn
        self._key = key
        self._event = event
        self.committed = False
        self.reverted = False
        self._awaiting = False

    def __call__(self, provisional: OutboxResult) -> None:
        if self.committed:
            raise RuntimeError(f"outbox {self._key}: the commit point was already passed")
        event = self._event
        if (
            event is not None
            and self._conn.execute(
                "SELECT 1 FROM events WHERE event_key = %s", (event.event_key,)
            ).fetchone()
        ):  # an earlier attempt was reverted: this one is a new fact
            number = self._attempts()
            event = event.model_copy(update={"event_key": f"{event.event_key}/attempt-{number}"})
        self._outbox._mark_done(self._conn, self._key, provisional, event)
        self._event = event
        # COMMIT is sent and not awaited: PostgreSQL commits what it received even if this
        # process dies now, so the effect's last step can go out at once; ``confirm`` reads
        # the answer. Then the row lock is released and a concurrent attempt sees 'done'.
        self._conn.pgconn.send_query(b"COMMIT")
        self._awaiting = True
        self.committed = True

    def confirm(self) -> None:
        """Wait for PostgreSQL's answer to the COMMIT; raises if the commit failed."""
        if not self._awaiting:
            return
        self._awaiting = False
        pgconn = self._conn.pgconn
        while True:
            pgconn.consume_input()
            if not pgconn.is_busy():
                break
            select.select([pgconn.socket], [], [], 1.0)
        results = []
        while (res := pgconn.get_result()) is not None:
            results.append(res)
        failed = [r for r in results if r.status != pq.ExecStatus.COMMAND_OK]
        if failed or not results:
            message = failed[0].error_message.decode(errors="replace") if failed else "no answer"
            self.committed = False
            raise psycopg.OperationalError(f"outbox {self._key}: COMMIT failed: {message}")

    def revert(self, reason: str) -> None:
        self.confirm()
        if not self.committed or self.reverted:
            raise RuntimeError(f"outbox {self._key}: nothing committed to revert")
        self._conn.execute(
            """
            UPDATE outbox SET status = 'pending', result = NULL, finished_at = NULL,
                              last_error = %s, updated_at = now()
            WHERE idempotency_key = %s
            """,
            (reason[:2000], self._key),
        )
        if self._event is not None:
            number = self._attempts()
            self._outbox._append(
                self._conn,
                EventDraft(
                    event_key=f"outbox.reverted/{self._key}/{number}",
                    workflow_id=self._event.workflow_id,
                    run_id=self._event.run_id,
                    process=self._event.process,
                    kind="outbox.reverted",
                    entity=self._event.entity,
                    payload={
                        "idempotency_key": self._key,
                        "undoes": self._event.event_key,
                        "reason": reason[:500],
                    },
                ),
            )
        self._conn.commit()
        self.reverted = True

    def _attempts(self) -> int:
        row = self._conn.execute(
            "SELECT attempts FROM outbox WHERE idempotency_key = %s", (self._key,)
        ).fetchone()
        return int(row["attempts"]) if row else 0


class Outbox(Store):
    """The outbox: each outside effect at most once per key."""

    def run_once(
        self,
        key: str,
        *,
        connector: str,
        operation: str,
        effect: Callable[[CommitPoint], OutboxResult],
        event: EventDraft | None = None,
    ) -> tuple[OutboxResult, bool]:
        """Run ``effect`` at most once for ``key``; returns (result, whether it ran now).

        Before the effect, the attempt is committed to the outbox (``attempts``,
        ``started_at``); after it, the row is ``done`` with the result. A worker that dies in
        between leaves a row that is started but not done: an effect in doubt, which
        ``in_doubt`` lists and the next attempt runs again. The row is locked for the
        duration of the effect, so a concurrent attempt of the same step (an activity retried
        while its first attempt still runs) waits and then sees the first one's result. If
        the effect raises, nothing is recorded as done and the error is kept on the row for
        inspection.

        ``effect`` gets a ``CommitPoint`` (see the module docstring): an effect that calls it
        is done from that moment, the lock is released, and a concurrent attempt returns the
        provisional result without running; what the effect returns then replaces it. An
        error after the commit point leaves the row done (the effect may have happened; the
        error is kept as ``last_error``) unless the effect reverted it.
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
            if row["status"] == "cancelled":
                reason = (row["result"] or {}).get("cancelled", "")
                raise EffectCancelled(f"{operation} {key} was cancelled by its run: {reason}")
            point = CommitPoint(self, conn, key, event)
            try:
                result = effect(point)
            except BaseException as exc:
                with contextlib.suppress(psycopg.Error):
                    point.confirm()  # a COMMIT in flight still counts: read its answer
                conn.rollback()
                self._record_failure(key, exc)
                raise
            point.confirm()
            if point.committed:  # after the last step: its final result
                conn.execute(
                    """
                    UPDATE outbox SET result = %s, finished_at = now(), updated_at = now()
                    WHERE idempotency_key = %s AND status = 'done'
                    """,
                    (Jsonb(result), key),
                )
            else:  # after: done, with the result a repeat will get
                self._mark_done(conn, key, result, event)
        return result, True

    def _mark_done(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        key: str,
        result: OutboxResult,
        event: EventDraft | None,
    ) -> None:
        conn.execute(
            """
            UPDATE outbox SET status = 'done', result = %s, last_error = NULL,
                              finished_at = now(), updated_at = now()
            WHERE idempotency_key = %s
            """,
            (Jsonb(result), key),
        )
        if event is not None:
            self._append(conn, event)

    def cancel(
        self,
        key: str,
        *,
        connector: str,
        operation: str,
        reason: str,
        event: EventDraft | None = None,
    ) -> bool:
        """Cancel the effect of ``key`` unless it is done; returns whether this cancelled it.

        A row that is pending (never started, or started by an attempt that died before it
        finished) or missing (the step never started) becomes ``cancelled`` with ``reason``
        as its result, ``event`` is appended in the same transaction, and ``run_once`` for the
        key raises ``EffectCancelled`` from then on. An attempt running the effect holds the
        row's lock, so this waits for it and finds the row done. For a connector that marks
        the row done at its commit point (email), a pending row is an effect that did not
        happen, so the cancel is exact; for any other it is a decision not to try again.
        """
        with self.transaction() as conn:
            row = conn.execute(
                """
                INSERT INTO outbox (idempotency_key, connector, operation, status, result,
                                    finished_at)
                VALUES (%(key)s, %(connector)s, %(operation)s, 'cancelled', %(result)s, now())
                ON CONFLICT (idempotency_key) DO UPDATE
                    SET status = 'cancelled', result = EXCLUDED.result, finished_at = now(),
                        updated_at = now()
                    WHERE outbox.status = 'pending'
                RETURNING attempts
                """,
                {
                    "key": key,
                    "connector": connector,
                    "operation": operation,
                    "result": Jsonb({"cancelled": reason[:500]}),
                },
            ).fetchone()
            if row is None:
                return False
            if event is not None:
                self._append(conn, event)
            return True

    def entry(self, key: str) -> dict[str, Any] | None:
        with self.transaction() as conn:
            return conn.execute(
                "SELECT * FROM outbox WHERE idempotency_key = %s", (key,)
            ).fetchone()

    def in_doubt(self, older_than_seconds: float = 300) -> list[dict[str, Any]]:
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

    def _record_failure(self, key: str, exc: BaseException) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET last_error = %s, updated_at = now() WHERE idempotency_key = %s",
                (f"{type(exc).__name__}: {exc}"[:2000], key),
            )
