"""Every setting AiOs reads, in one place.

Values come from environment variables with the ``AIOS_`` prefix (``AIOS_TEMPORAL_ADDRESS``,
``AIOS_GATE_REMIND_AFTER``...) or a ``.env`` file in the working directory. Durations accept
seconds (``90``) or ISO 8601 (``PT36H``). Secrets are ``SecretStr`` and never printed.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from aios.errors import InvalidInput
from aios.identity import (
    PLACEHOLDER_DOMAIN,
    PLACEHOLDER_OPERATOR_NAME,
    BankAccount,
    BusinessIdentity,
    check_logo,
    zone,
)
from aios.kernel.money import LineItem, normalize_currency, parse_amount
from aios.kernel.policy import AgentPolicy, BillingPolicy, GatePolicy, ProposalPolicy
from aios.kernel.pricing import DEFAULT_MODEL_PRICES, DEFAULT_RATE_CARD, ModelPrice, Tier
from aios.kernel.text import refuse_unsafe

if TYPE_CHECKING:  # the connector runtime (rate limits, breakers) loads only in workers
    from aios.connectors.payments.statements import CsvLayout
    from aios.connectors.runtime import GuardSettings

__all__ = ["Settings", "get_settings", "identity_warning"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Every agent's ``name`` (aios.agents): the keys AIOS_AGENT_BUDGETS_USD and AIOS_AGENT_TIERS
# accept, and the agent kill switches (tests/test_switches.py keeps it equal to the agents).
# The local part of a mail address (RFC 5321) and what a gate's plus-address token adds to it.
LOCAL_PART_OCTETS = 64
PLUS_TOKEN_OCTETS = 1 + 32 + 1 + 16

AGENT_NAMES = ("intake", "welcome", "proposal", "content", "reply")
# What fits in the letterhead and the page footer of a document.
MAX_IDENTITY_LINES = {"business_address": 6, "invoice_footer": 3}
MAX_IDENTITY_LINE_CHARS = 120


DEFAULT_RATE_LIMIT = "20/second"
_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def _duration(value: Any, handler: ValidatorFunctionWrapHandler) -> timedelta:
    """Seconds (``90``, ``1.5``) or ISO 8601 (``PT36H``, ``P7D``); never negative.

    pydantic alone reads ``"90"`` as a malformed ISO duration, and its message for a bad value
    ("day identifier in duration not correctly formatted") does not say what to write.
    """
    if isinstance(value, str) and _SECONDS.fullmatch(value.strip()):
        value = timedelta(seconds=float(value.strip()))
    try:
        duration = handler(value)
    except ValidationError:
        raise ValueError("not a duration: give seconds (90) or ISO 8601 (PT36H, P7D)") from None
    if duration < timedelta(0):
        raise ValueError("must not be negative")
    return duration


# Every timedelta setting: AIOS_GATE_REMIND_AFTER=90 or =PT36H.
Duration = Annotated[timedelta, WrapValidator(_duration)]


class Settings(BaseSettings):
    """AiOs settings. Each field maps to ``AIOS_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="AIOS_",
        env_file=".env",
        extra="ignore",
        validate_default=True,
        hide_input_in_errors=True,  # a settings error must never echo a key it was given
    )

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "aios"
    temporal_tls: bool = False
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_api_key: SecretStr | None = None
    temporal_ui_url: str | None = Field(
        default=None, description="Web UI base for printed links; unset: the dev server's"
    )
    task_queue: str = "aios"
    # Activities one worker runs at once; its connection pool is sized from this.
    worker_activity_slots: int = Field(default=8, ge=1, le=256)
    # Workflow tasks one worker runs at once, and its pollers per task queue and kind.
    worker_workflow_slots: int = Field(default=50, ge=1, le=1000)
    worker_pollers: int = Field(default=5, ge=1, le=100)
    # Runs a worker keeps in memory between their tasks (Temporal's sticky cache). A run not
    # in it is replayed from its history when it is next woken (a decision, a timer). About
    # 370 KB each once the cache is full (benchmarks/worker_memory.py): 150 keeps a worker
    # with thousands of runs waiting at gates under 400 MB.
    worker_cached_runs: int = Field(default=150, ge=0, le=100_000)
    # On SIGTERM, how long in-flight activities may take to finish before they are handed back
    # to Temporal (cancelled, retried by another worker).
    worker_shutdown_grace: Duration = timedelta(seconds=30)

    # Embedded stack
    state_dir: Path = Path(".aios")
    temporal_dev_config: Path | None = Field(
        default=None,
        description="temporal-dev.yaml to use; default: ./temporal-dev.yaml, else the project's",
    )

    # PostgreSQL: unset means the embedded server under state_dir/postgres
    database_url: SecretStr | None = None

    # Memory: a Qdrant server URL (any worker serves memory), else the embedded Qdrant Edge
    # shard under qdrant_path (default state_dir/qdrant; one process owns it: the memory worker)
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_path: Path | None = None
    qdrant_collection: str = "aios_memory"
    # What `aios worker` runs (`--role` overrides): all = general work plus memory when this
    # process can own the embedded shard; general = everything but memory; memory = memory only
    worker_role: Literal["all", "general", "memory"] = "all"

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
    operator_name: str = PLACEHOLDER_OPERATOR_NAME

    # Business identity: what proposals, invoices, credit notes and emails say about the sender.
    # operator_name is the person who signs emails and prepares proposals; business_name is the
    # name on the documents' letterhead, in email footers and on the bank account (unset: the
    # operator's name). While operator_name, operator_email or mail_from are still the
    # placeholders above, `aios worker` warns and every document says DRAFT
    # (``identity_is_placeholder``). The bank details are the bank_* settings under Money.
    business_name: str = Field(
        default="", max_length=200, description="name on documents; empty: operator_name"
    )
    business_address: str = Field(
        default="", description="postal address, one line per line (a literal \\n also breaks)"
    )
    business_tax_id: str = Field(default="", max_length=64, description="VAT id, EIN, ...")
    business_logo: Path | None = Field(
        default=None, description="a PNG or JPEG file shown at the top of every document"
    )
    business_timezone: str = Field(
        default="UTC", description="IANA zone of dates and times in documents and emails"
    )
    invoice_footer: str = Field(
        default="", description="text at the foot of every invoice and credit note page"
    )
    templates_dir: Path | None = Field(
        default=None,
        description="a folder of email templates that override the defaults (email/*.txt.j2)",
    )

    # Policy
    gate_remind_after: Duration = timedelta(hours=24)
    gate_expire_after: Duration = timedelta(days=7)

    # Money: amounts in settings are major units of `currency` ("5000", "4500.50")
    currency: str = "USD"
    rate_card: dict[str, list[LineItem]] = Field(
        default_factory=lambda: dict(DEFAULT_RATE_CARD),
        description="segment -> line items (JSON) the proposal agent offers from",
    )
    proposal_max_discount_pct: Decimal = Field(default=Decimal(10), ge=0, le=100)
    proposal_auto_approve_max_total: Decimal = Field(default=Decimal(5000), ge=0)
    proposal_follow_up_every: Duration = timedelta(days=3)
    proposal_expire_after: Duration = timedelta(days=14)
    billing_approve_above: Decimal = Field(default=Decimal(10000), ge=0)
    billing_payment_terms: Duration = timedelta(days=14)
    billing_remind_every: Duration = timedelta(days=7)
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

    # Agents. "template" is the deterministic offline provider: no keys, no cost. "openai" and
    # "azure" call hosted models, cheapest tier first (model_tiers: tier name -> model name, or
    # deployment name on Azure), priced from model_prices and capped per month.
    agent_provider: Literal["template", "openai", "azure"] = "template"
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = Field(
        default=None, description="override the OpenAI API address (proxies, tests)"
    )
    azure_openai_endpoint: str | None = None
    azure_openai_api_version: str = "2024-10-21"
    azure_openai_api_key: SecretStr | None = None
    azure_openai_ad_token: SecretStr | None = Field(
        default=None, description="a Microsoft Entra ID token, instead of an API key"
    )
    model_tiers: dict[str, str] = Field(
        default_factory=lambda: {"fast": "gpt-4.1-mini", "strong": "gpt-4.1"}
    )
    agent_tiers: dict[str, list[str]] = Field(
        default_factory=dict, description="agent -> tier names in order, overriding its own"
    )
    model_prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_MODEL_PRICES))
    model_max_output_tokens: int = Field(default=2000, ge=64, le=100_000)
    agent_min_confidence: float = Field(default=0.6, ge=0, le=1)
    agent_monthly_budget_usd: Decimal = Field(default=Decimal(50), ge=0)
    agent_budgets_usd: dict[str, Decimal] = Field(
        default_factory=dict, description="agent -> monthly cap in USD"
    )

    # Connectors: per-worker rate limits ("<n>/<period>", e.g. "100/10 seconds") and circuit
    # breakers; dry run rehearses every effect without performing it.
    connectors_dry_run: bool = False
    connector_rate_limit: str = DEFAULT_RATE_LIMIT
    connector_rate_limits: dict[str, str] = Field(
        default_factory=dict, description="connector -> rate limit, overriding the default"
    )
    connector_breaker_fail_max: int = Field(default=5, ge=1, le=1000)
    connector_breaker_reset_seconds: float = Field(default=60.0, gt=0)
    synthetic_check_every: Duration = timedelta(hours=1)
    caldav_url: str | None = Field(
        default=None, description="a CalDAV server; unset means iCalendar files only"
    )
    caldav_username: str | None = None
    caldav_password: SecretStr | None = None
    caldav_calendar: str = "AiOs"
    hubspot_token: SecretStr | None = Field(
        default=None, description="a HubSpot private app token: mirror clients and deals there"
    )
    hubspot_base_url: str = "https://api.hubapi.com"
    webhook_url: str | None = Field(
        default=None, description="where outgoing webhooks are POSTed (signed, with a delivery id)"
    )
    webhook_secret: SecretStr | None = None

    # The console (`aios serve`) and the signed links in the operator's gate emails
    serve_host: str = Field(
        default="127.0.0.1",
        description="address `aios serve` binds; a non-loopback address needs serve_allow_remote",
    )
    serve_port: int = Field(default=8780, ge=1, le=65535)
    serve_allow_remote: bool = Field(
        default=False, description="allow binding a non-loopback address (put TLS in front)"
    )
    serve_url: str | None = Field(
        default=None,
        description="the console's address as the operator's browser reaches it (links in "
        "emails); unset: http://<serve_host>:<serve_port>",
    )
    serve_secret_key: SecretStr | None = Field(
        default=None,
        description="signs session cookies and email links; unset: a random key kept in "
        "state_dir/serve.key (every worker and console of one stack must share it)",
    )
    operator_token: SecretStr | None = Field(
        default=None,
        description="a token that signs in to the console instead of the password",
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Inbound payments: Stripe webhooks on `aios serve` (POST /hooks/stripe) and bank
    # statements (`aios bank import`). The CSV layout names the header of each column.
    stripe_webhook_secret: SecretStr | None = Field(
        default=None,
        description="the Stripe endpoint's signing secret (whsec_...); unset: /hooks/stripe "
        "refuses every request",
    )
    bank_csv_columns: dict[
        Literal["date", "amount", "currency", "reference", "payer", "id"], str
    ] = Field(
        default_factory=dict,
        description="CSV column -> header name, overriding Date, Amount, Currency, "
        "Reference, Name, Transaction ID",
    )
    bank_csv_delimiter: Literal["", ",", ";", "tab", "|"] = Field(
        default="", description="the CSV delimiter; empty: sniffed from the header"
    )
    bank_csv_decimal: Literal[".", ","] = "."
    bank_csv_date_format: str = Field(default="%Y-%m-%d", min_length=2, max_length=40)

    @property
    def bank_csv_layout(self) -> CsvLayout:
        from aios.connectors.payments.statements import CsvLayout

        return CsvLayout(
            **self.bank_csv_columns,
            delimiter="\t" if self.bank_csv_delimiter == "tab" else self.bank_csv_delimiter,
            decimal=self.bank_csv_decimal,
            date_format=self.bank_csv_date_format,
            default_currency=self.currency,
        )

    # Leads: the public form (GET/POST /lead) and the signed JSON hook (POST /hooks/lead) of
    # `aios serve`. Rate limits count recorded leads per sender address ("<n>/<period>"); the
    # hook is off until lead_webhook_secret is set (header X-Aios-Signature, see README).
    lead_form_rate_limit: str = Field(default="5/hour", description="form leads per address")
    lead_hook_rate_limit: str = Field(default="600/hour", description="hook leads per address")
    lead_max_body_bytes: int = Field(default=64 * 1024, ge=4096, le=4 * 1024 * 1024)
    lead_webhook_secret: SecretStr | None = Field(
        default=None, description="signs POST /hooks/lead (HMAC-SHA256); at least 16 characters"
    )
    lead_signature_tolerance_seconds: int = Field(default=300, ge=5, le=3600)

    @field_validator("lead_form_rate_limit", "lead_hook_rate_limit")
    @classmethod
    def _lead_rate(cls, value: str) -> str:
        if value in ("5/hour", "600/hour"):
            return value  # the defaults: known good, and `limits` is slow to import
        from limits import parse as parse_rate

        try:
            parse_rate(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate like '5/hour' or '20/10 minutes'") from None
        return value

    @field_validator("lead_webhook_secret")
    @classmethod
    def _lead_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    # Kill switches (`aios pause` / `aios resume`): how fresh a worker's view of them is
    switch_cache_seconds: float = Field(
        default=1.0,
        gt=0,
        le=2,
        description="a worker reads the paused switches at most this often (one query)",
    )
    switch_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=2,
        description="a paused step looks again this often (it heartbeats meanwhile)",
    )
    # Policies: the gate, proposal, billing, agent and connector values above (and the one
    # below) are version 1 of the versioned policy (``aios policy``); a later version overrides
    # them (applied by ``operations.policies.pin``, which also sets this version number).
    # Learning from edits: the welcome agent applies the operator's corrections learnt from
    # edits at the gate for similar clients (edits are remembered either way).
    agent_apply_corrections: bool = True
    _policy_version: int | None = PrivateAttr(default=None)
    # Content: planning posts, the novelty check, where published posts are written
    content_novelty_threshold: float = Field(
        default=0.85,
        ge=0.0,
        le=1.0,
        description="a topic whose cosine similarity to a published post reaches this is "
        "flagged as a repeat of that post",
    )
    content_planning_cron: str = Field(
        default="0 8 * * 1",
        description="when schedule aios-content-planning starts a planning run (cron, UTC)",
    )
    content_site_dir: Path | None = Field(
        default=None,
        description="folder of the published pages and the Atom feed; unset: state_dir/site",
    )
    content_site_url: str = Field(
        default="", max_length=300, description="public address of that folder (feed links)"
    )
    content_site_title: str = Field(default="Notes", min_length=1, max_length=200)
    # Subscribers and the newsletter: recipients per batch (one child workflow each) of a send
    newsletter_batch_size: int = Field(default=100, ge=1, le=1000)
    # Inbound mail: the IMAP mailbox clients and the operator write to (aios.connectors.imap)
    imap_host: str | None = Field(
        default=None, description="the IMAP server of the inbound mailbox; unset: no polling"
    )
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_security: Literal["none", "starttls", "tls"] = "tls"
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_folder: str = "INBOX"
    imap_address: str | None = Field(
        default=None,
        description="the mailbox's address; emails AiOs sends then carry Reply-To "
        "<local>+<token>@<domain>, which matches a reply without In-Reply-To",
    )
    imap_poll_every: Duration = timedelta(minutes=1)
    imap_batch: int = Field(default=50, ge=1, le=500, description="messages per poll at most")
    imap_max_attachment_bytes: int = Field(
        default=10_000_000, ge=0, description="a bigger attachment is listed, not kept"
    )
    reply_min_confidence: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="a client reply read with less confidence waits at a gate",
    )

    @field_validator("imap_host", "imap_username", "imap_address", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_imap(self) -> Settings:
        given = [self.imap_host is not None, self.imap_username is not None]
        given.append(self.imap_password is not None)
        if any(given) and not all(given):
            raise ValueError("imap_host, imap_username and imap_password must be set together")
        if self.imap_poll_every < timedelta(seconds=1):
            raise ValueError("imap_poll_every must be at least one second")
        if self.imap_address is not None and "@" not in self.imap_address.strip("@"):
            raise ValueError(f"imap_address: {self.imap_address!r} is not an address")
        if self.imap_address is not None:
            # A gate email's Reply-To is <local>+<32-hex digest>-<16-hex secret>@<domain>, and
            # a mail address's local part holds at most 64 octets (RFC 5321 4.5.3.1.1).
            local = self.imap_address.rpartition("@")[0]
            if len(local.encode()) + PLUS_TOKEN_OCTETS > LOCAL_PART_OCTETS:
                raise ValueError(
                    f"imap_address: the mailbox name {local!r} has {len(local.encode())} "
                    f"octets; with a gate's reply token (+{PLUS_TOKEN_OCTETS}) it passes the "
                    f"{LOCAL_PART_OCTETS} a mail address may have: use a name of at most "
                    f"{LOCAL_PART_OCTETS - PLUS_TOKEN_OCTETS}"
                )
        return self

    @field_validator("business_name", "business_tax_id")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return refuse_unsafe(value, multiline=False)

    @field_validator("business_address", "invoice_footer")
    @classmethod
    def _lines(cls, value: str, info: ValidationInfo) -> str:
        text = refuse_unsafe(value.replace("\\n", "\n"), multiline=True)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        limit = MAX_IDENTITY_LINES[str(info.field_name)]
        if len(lines) > limit:
            raise ValueError(f"has {len(lines)} lines; at most {limit} fit on a document")
        if any(len(line) > MAX_IDENTITY_LINE_CHARS for line in lines):
            raise ValueError(f"a line is longer than {MAX_IDENTITY_LINE_CHARS} characters")
        return "\n".join(lines)

    @field_validator("business_logo")
    @classmethod
    def _logo(cls, value: Path | None) -> Path | None:
        return None if value is None else check_logo(value)

    @field_validator("business_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return zone(value).key

    @field_validator("templates_dir")
    @classmethod
    def _templates_dir(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        path = value.expanduser().resolve()
        if not path.is_dir():
            raise ValueError(f"{path} is not a folder")
        return path

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.gate_remind_after <= timedelta(0) or self.gate_expire_after <= timedelta(0):
            raise ValueError("gate_remind_after and gate_expire_after must be positive")
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("smtp_username and smtp_password must be set together")
        self.currency = normalize_currency(self.currency)
        if self.payment_provider == "stripe" and self.stripe_api_key is None:
            raise ValueError("payment_provider 'stripe' needs stripe_api_key")
        self._check_agents()
        for name, rate in {"*": self.connector_rate_limit, **self.connector_rate_limits}.items():
            if rate == DEFAULT_RATE_LIMIT:
                continue  # known good; `limits` takes a tenth of a second to import
            from limits import parse as parse_rate

            try:
                parse_rate(rate)
            except ValueError:
                where = "connector_rate_limit" if name == "*" else f"connector_rate_limits.{name}"
                raise ValueError(
                    f"{where}: {rate!r} is not a rate like '20/second' or '100/10 seconds'"
                ) from None
        if (self.webhook_url is None) != (self.webhook_secret is None):
            raise ValueError("webhook_url and webhook_secret must be set together")
        self._check_serve()
        if self.synthetic_check_every < timedelta(minutes=1):
            raise ValueError("synthetic_check_every must be at least one minute")
        # Fail at startup, not at the first proposal: the policies must be constructible.
        try:
            _ = self.proposal_policy, self.billing_policy
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
        try:  # and so must the identity every document carries (bank_* are checked here)
            _ = self.business_identity
        except ValidationError as exc:
            raise ValueError(f"business identity: {_problems(exc)}") from None
        return self

    def _check_serve(self) -> None:
        import ipaddress

        host = self.serve_host.strip()
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback and not self.serve_allow_remote:
            raise ValueError(
                f"serve_host {host!r} is not a loopback address; set AIOS_SERVE_ALLOW_REMOTE=true "
                "to serve the console beyond this machine (behind TLS)"
            )
        if self.serve_url is not None:
            url = self.serve_url.strip().rstrip("/")
            if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
                raise ValueError(f"serve_url {self.serve_url!r} is not an http(s) address")
            self.serve_url = url
        if self.operator_token is not None and len(self.operator_token.get_secret_value()) < 24:
            raise ValueError("operator_token must be at least 24 characters")

    def _check_agents(self) -> None:
        if self.agent_provider == "openai" and self.openai_api_key is None:
            raise ValueError("agent_provider 'openai' needs openai_api_key")
        if self.agent_provider == "azure":
            if not self.azure_openai_endpoint:
                raise ValueError("agent_provider 'azure' needs azure_openai_endpoint")
            if (self.azure_openai_api_key is None) == (self.azure_openai_ad_token is None):
                raise ValueError(
                    "agent_provider 'azure' needs exactly one of azure_openai_api_key and "
                    "azure_openai_ad_token"
                )
        if not self.model_tiers:
            raise ValueError("model_tiers must name at least one tier")
        for tier, model in self.model_tiers.items():
            if model not in self.model_prices:
                raise ValueError(
                    f"model_tiers: no price for {model!r} (tier {tier!r}); add it to model_prices"
                )
        for table in ("agent_tiers", "agent_budgets_usd"):
            for agent in getattr(self, table):
                if agent not in AGENT_NAMES:
                    raise ValueError(
                        f"{table}: unknown agent {agent!r} (agents: {', '.join(AGENT_NAMES)})"
                    )
        for agent, names in self.agent_tiers.items():
            if not names:
                raise ValueError(f"agent_tiers: {agent!r} needs at least one tier")
            for name in names:
                if name not in self.model_tiers:
                    raise ValueError(f"agent_tiers: {agent!r} names unknown tier {name!r}")
        for agent, cap in self.agent_budgets_usd.items():
            if cap < 0:
                raise ValueError(f"agent_budgets_usd: {agent!r} must not be negative")

    def guard_settings(self, connector: str) -> GuardSettings:
        from aios.connectors.runtime import GuardSettings

        return GuardSettings(
            rate_limit=self.connector_rate_limits.get(connector, self.connector_rate_limit),
            fail_max=self.connector_breaker_fail_max,
            reset_timeout=self.connector_breaker_reset_seconds,
        )

    @property
    def policy_version(self) -> int | None:
        """The policy version these settings carry (``operations.policies.pin``); None: the
        values are the settings' own."""
        return self._policy_version

    @property
    def agent_policy(self) -> AgentPolicy:
        return AgentPolicy(
            version=self._policy_version,
            min_confidence=self.agent_min_confidence,
            monthly_budget_usd=self.agent_monthly_budget_usd,
            agent_budgets_usd=dict(self.agent_budgets_usd),
        )

    @property
    def tiers(self) -> dict[str, Tier]:
        return {
            name: Tier(name=name, model=model, price=self.model_prices[model])
            for name, model in self.model_tiers.items()
        }

    @property
    def gate_policy(self) -> GatePolicy:
        return GatePolicy(
            version=self._policy_version,
            remind_after=self.gate_remind_after,
            expire_after=self.gate_expire_after,
        )

    @property
    def proposal_policy(self) -> ProposalPolicy:
        return ProposalPolicy(
            version=self._policy_version,
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
            version=self._policy_version,
            approve_above_minor=parse_amount(self.billing_approve_above, self.currency),
            currency=self.currency,
            payment_terms=self.billing_payment_terms,
            remind_every=self.billing_remind_every,
            max_reminders=self.billing_max_reminders,
        )

    @property
    def identity_is_placeholder(self) -> bool:
        """True while the operator's name or mail address is still the one AiOs ships with."""
        return bool(self._placeholder_settings())

    def _placeholder_settings(self) -> list[str]:
        found = []
        if PLACEHOLDER_OPERATOR_NAME in (self.operator_name.strip(), self.business_name.strip()):
            found.append("AIOS_BUSINESS_NAME" if self.business_name else "AIOS_OPERATOR_NAME")
        for setting, address in (
            ("AIOS_OPERATOR_EMAIL", self.operator_email),
            ("AIOS_MAIL_FROM", parseaddr(self.mail_from)[1]),
        ):
            if address.strip().lower().endswith("@" + PLACEHOLDER_DOMAIN):
                found.append(setting)
        return found

    @property
    def business_identity(self) -> BusinessIdentity:
        """The sender every document and email carries (see ``aios.identity``)."""
        name = self.business_name or self.operator_name
        return BusinessIdentity(
            name=name,
            address=self.business_address,
            tax_id=self.business_tax_id,
            email=self.operator_email,
            logo=self.business_logo,
            bank=BankAccount(
                account_name=self.bank_account_name or name,
                iban=self.bank_iban,
                bic=self.bank_bic,
                bank_name=self.bank_name,
            ),
            footer=self.invoice_footer,
            timezone=self.business_timezone,
            placeholder=self.identity_is_placeholder,
        )

    @property
    def console_url(self) -> str:
        """The console's base address in links the operator opens (no trailing slash)."""
        if self.serve_url:
            return self.serve_url
        host = self.serve_host if ":" not in self.serve_host else f"[{self.serve_host}]"
        return f"http://{host}:{self.serve_port}"

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


def identity_warning(settings: Settings) -> str | None:
    """The line ``aios worker`` logs once at start while the identity is the placeholder."""
    found = settings._placeholder_settings()
    if not found:
        return None
    return (
        f"the business identity is still the placeholder ({', '.join(found)}): every proposal, "
        "invoice and credit note is marked DRAFT. Set AIOS_OPERATOR_NAME, AIOS_OPERATOR_EMAIL "
        "and AIOS_MAIL_FROM to your own (and AIOS_BUSINESS_NAME, AIOS_BUSINESS_ADDRESS, "
        "AIOS_BUSINESS_TAX_ID) before sending documents to clients"
    )


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )


def get_settings() -> Settings:
    """Settings from the environment; raises ``pydantic.ValidationError`` naming bad fields."""
    return Settings()
