"""The console's operators (password hashes) and failed sign-ins per address."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aios.kernel.stores.database import Store

__all__ = ["OperatorStore", "SigninFailures"]

# Failed sign-ins older than this are deleted when a new one is recorded.
KEEP_FAILURES = timedelta(days=1)


@dataclass(frozen=True)
class SigninFailures:
    """Failed sign-ins from one address within a window: how many, and the oldest's time."""

    count: int
    oldest: datetime | None


class OperatorStore(Store):
    """Operators who may sign in to the console, and the sign-in failures it counts."""

    def set_password_hash(self, name: str, password_hash: str) -> bool:
        """Store ``name``'s password hash; ``True`` when the operator is new."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                INSERT INTO operators (name, password_hash) VALUES (%s, %s)
                ON CONFLICT (name) DO UPDATE
                SET password_hash = EXCLUDED.password_hash, updated_at = now()
                RETURNING (xmax = 0) AS created
                """,
                (name, password_hash),
            ).fetchone()
        return bool(row and row["created"])

    def password_hash(self, name: str) -> str | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT password_hash FROM operators WHERE name = %s", (name,)
            ).fetchone()
        return None if row is None else str(row["password_hash"])

    def names(self) -> list[str]:
        with self.transaction() as conn:
            rows = conn.execute("SELECT name FROM operators ORDER BY name").fetchall()
        return [str(r["name"]) for r in rows]

    def record_failure(self, address: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO signin_failures (address) VALUES (%s)", (address,))
            conn.execute(
                "DELETE FROM signin_failures WHERE failed_at < now() - %s", (KEEP_FAILURES,)
            )

    def failures(self, address: str, within: timedelta) -> SigninFailures:
        """Failed sign-ins from ``address`` in the last ``within``."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                SELECT count(*) AS n, min(failed_at) AS oldest FROM signin_failures
                WHERE address = %s AND failed_at > now() - %s
                """,
                (address, within),
            ).fetchone()
        assert row is not None
        return SigninFailures(int(row["n"]), row["oldest"])

    def clear_failures(self, address: str) -> None:
        """Forget ``address``'s failures (after it signed in)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM signin_failures WHERE address = %s", (address,))
