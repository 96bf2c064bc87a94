"""Connector guards per worker and synthetic check results."""

from __future__ import annotations

from typing import Any

from aios.kernel.stores.database import Store

__all__ = ["ConnectorHealth"]


class ConnectorHealth(Store):
    """Connector guards per worker and synthetic check results."""

    def save_guards(self, worker: str, rows: list[dict[str, Any]]) -> None:
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

    def guards(self) -> list[dict[str, Any]]:
        with self.transaction() as conn:
            return conn.execute(
                "SELECT * FROM connector_health ORDER BY connector, updated_at DESC"
            ).fetchall()

    def record_checks(
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

    def last_checks(self) -> list[dict[str, Any]]:
        """The latest result per connector."""
        with self.transaction() as conn:
            return conn.execute(
                """
                SELECT DISTINCT ON (connector) connector, ok, detail, latency_ms, checked_at,
                       workflow_id
                FROM synthetic_checks ORDER BY connector, checked_at DESC, id DESC
                """
            ).fetchall()
