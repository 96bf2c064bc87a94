"""Every setting AiOs reads, in one place.

Values come from environment variables with the ``AIOS_`` prefix (``AIOS_TEMPORAL_ADDRESS``,
``AIOS_GATE_REMIND_AFTER``...) or a ``.env`` file in the working directory. Durations accept
seconds (``90``) or ISO 8601 (``PT36H``). Secrets are ``SecretStr`` and never printed.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aios.agents.proposal import DEFAULT_RATE_CARD
from aios.errors import InvalidInput
from aios.kernel.money import LineItem, normalize_currency, parse_amount
from aios.kernel.policy import BillingPolicy, GatePolicy, ProposalPolicy

__all__ = ["Settings", "get_settings"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """AiOs settings. Each field maps to ``AIOS_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="AIOS_", env_file=".env", extra="ignore", validate_default=True
    )

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "aios"
    temporal_tls: bool = False
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_api_key: SecretStr | None = None
    temporal_ui_url: str = "http://localhost:8233"
    task_queue: str = "aios"

    # Embedded stack
    state_dir: Path = Path(".aios")
    temporal_dev_config: Path | None = Field(
        default=None,
        description="temporal-dev.yaml to use; default: ./temporal-dev.yaml, else the project's",
    )

    # PostgreSQL: unset means the embedded server under state_dir/postgres
    database_url: SecretStr | None = None

    # Qdrant: a server URL, else local mode on disk (default state_dir/qdrant)
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_path: Path | None = None
    qdrant_collection: str = "aios_memory"

    # SMTP: the defaults point at the embedded mail sink started by `aios dev up`
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=8025, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=20.0, gt=0)
    smtp_embedded: bool = Field(
        default=True, description="`aios dev up` runs a local SMTP sink on smtp_host:smtp_port"
    )
    mail_from: str = "AiOs Operator <operator@aios.localhost>"
    operator_email: str = "operator@aios.localhost"
    operator_name: str = "Your operator"

    # Policy
    gate_remind_after: timedelta = timedelta(hours=24)
    gate_expire_after: timedelta = timedelta(days=7)

    # Money: amounts in settings are major units of `currency` ("5000", "4500.50")
    currency: str = "USD"
    rate_card: dict[str, list[LineItem]] = Field(
        default_factory=lambda: dict(DEFAULT_RATE_CARD),
        description="segment -> line items (JSON) the proposal agent offers from",
    )
    proposal_max_discount_pct: Decimal = Field(default=Decimal(10), ge=0, le=100)
    proposal_auto_approve_max_total: Decimal = Field(default=Decimal(5000), ge=0)
    proposal_follow_up_every: timedelta = timedelta(days=3)
    proposal_expire_after: timedelta = timedelta(days=14)
    billing_approve_above: Decimal = Field(default=Decimal(10000), ge=0)
    billing_payment_terms: timedelta = timedelta(days=14)
    billing_remind_every: timedelta = timedelta(days=7)
    billing_max_reminders: int = Field(default=3, ge=0, le=20)
    payment_provider: Literal["bank_transfer", "stripe"] = "bank_transfer"
    bank_account_name: str = ""
    bank_iban: str = ""
    bank_bic: str = ""
    bank_name: str = ""
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str | None = Field(
        default=None, description="override the Stripe API address (tests, proxies)"
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.gate_remind_after <= timedelta(0) or self.gate_expire_after <= timedelta(0):
            raise ValueError("gate_remind_after and gate_expire_after must be positive")
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("smtp_username and smtp_password must be set together")
        self.currency = normalize_currency(self.currency)
        if self.payment_provider == "stripe" and self.stripe_api_key is None:
            raise ValueError("payment_provider 'stripe' needs stripe_api_key")
        # Fail at startup, not at the first proposal: the policies must be constructible.
        try:
            _ = self.proposal_policy, self.billing_policy
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def gate_policy(self) -> GatePolicy:
        return GatePolicy(remind_after=self.gate_remind_after, expire_after=self.gate_expire_after)

    @property
    def proposal_policy(self) -> ProposalPolicy:
        return ProposalPolicy(
            max_discount_pct=self.proposal_max_discount_pct,
            auto_approve_max_total_minor=parse_amount(
                self.proposal_auto_approve_max_total, self.currency
            ),
            currency=self.currency,
            follow_up_every=self.proposal_follow_up_every,
            expire_after=self.proposal_expire_after,
        )

    @property
    def billing_policy(self) -> BillingPolicy:
        return BillingPolicy(
            approve_above_minor=parse_amount(self.billing_approve_above, self.currency),
            currency=self.currency,
            payment_terms=self.billing_payment_terms,
            remind_every=self.billing_remind_every,
            max_reminders=self.billing_max_reminders,
        )

    @property
    def state_path(self) -> Path:
        return self.state_dir.expanduser().resolve()

    @property
    def resolved_qdrant_path(self) -> Path:
        return (self.qdrant_path or self.state_path / "qdrant").expanduser().resolve()

    @property
    def mail_dir(self) -> Path:
        """Where the embedded SMTP sink stores what it receives (a Maildir)."""
        return self.state_path / "mail"

    @property
    def dev_config_path(self) -> Path:
        if self.temporal_dev_config is not None:
            return self.temporal_dev_config
        local = Path("temporal-dev.yaml")
        return local if local.exists() else PROJECT_ROOT / "temporal-dev.yaml"


def get_settings() -> Settings:
    """Settings from the environment; raises ``pydantic.ValidationError`` naming bad fields."""
    return Settings()
