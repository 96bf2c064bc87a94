"""The outbox: each outside effect at most once per key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from psycopg.types.json import Jsonb

from aios.kernel.events import EventDraft
from aios.kernel.stores.database import OutboxResult, Store

__all__ = ["Outbox"]


class Outbox(Store):
    """The outbox: each outside effect at most once per key."""

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
