"""The clients every activity needs, built once per worker from settings.

Email templates: ``email_templates(settings)`` loads them from ``AIOS_TEMPLATES_DIR`` and the
package's defaults; ``Services.from_settings`` renders each once with sample values, so a broken
template stops the worker at start instead of failing the first email.

Secrets: ``scrubber(settings)`` is the ``aios.secrets.Scrubber`` of the settings (every
``SecretStr``, URL passwords, key-shaped strings). It is handed to the components that stand at
a boundary (the model provider, the connector runtime) through their constructors, and
installed as the process-wide scrubber, which the log processor and the activity error
translation use, when services are built and again when activities are assembled (a test may
assemble activities for other settings than the services were built with).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aios.activities import AgentActivities, ConnectorActivities, KernelActivities, MemoryActivities
from aios.activities.billing import BillingActivities
from aios.activities.content import ContentActivities, site_folder
from aios.activities.context import cancel_shield, pause_waiter
from aios.activities.crm import CrmActivities
from aios.activities.health import HealthActivities
from aios.activities.inbound import InboundActivities
from aios.activities.proposals import ProposalActivities
from aios.activities.review import ReviewActivities
from aios.agents.providers import ChatModel, OpenAIChat
from aios.agents.runner import AgentRunner
from aios.config import Settings
from aios.connectors.caldav import CalDavConfig, CalDavConnector
from aios.connectors.contract import CheckResult
from aios.connectors.email import SmtpConfig, SmtpEmailConnector
from aios.connectors.hubspot import HubSpotConfig, HubSpotConnector
from aios.connectors.imap import ImapConfig, ImapMailbox
from aios.connectors.payments.bank import BankDetails, BankTransferProvider
from aios.connectors.payments.base import PaymentProvider
from aios.connectors.runtime import ConnectorRuntime
from aios.connectors.webhooks import WebhookConfig, WebhookConnector
from aios.documents.feed import SiteInfo
from aios.identity import BusinessIdentity
from aios.kernel.pause import PauseGate
from aios.kernel.store import KernelStore, apply_migrations
from aios.kernel.stores import SwitchReader, pool_size_for
from aios.memory.backends import open_memory
from aios.memory.store import MemoryStore
from aios.secrets import Scrubber, install
from aios.serve.links import GateLinks
from aios.templates import EmailTemplates
from aios.workers.memory import DeferredMemory

__all__ = [
    "Services",
    "agent_runner",
    "caldav_connector",
    "chat_model",
    "connector_runtime",
    "email_templates",
    "hubspot_connector",
    "imap_mailbox",
    "newsletter_activities",
    "pause_gate",
    "payment_providers",
    "scrubber",
    "smtp_connector",
    "webhook_connector",
]


@dataclass
class Services:
    settings: Settings
    store: KernelStore
    memory: MemoryStore
    email: SmtpEmailConnector
    providers: dict[str, PaymentProvider]
    runtime: ConnectorRuntime
    webhook: WebhookConnector | None = None
    calendar: CalDavConnector | None = None
    crm: HubSpotConnector | None = None
    pause: PauseGate | None = None  # the kill switches, shared by the runner and the runtime

    @classmethod
    def from_settings(
        cls, settings: Settings, *, migrate: bool = True, with_memory: bool = True
    ) -> Services:
        from aios.devstack import database_url

        scrub = scrubber(settings)
        email_templates(settings).check()  # a broken template stops the worker here
        url = database_url(settings)
        if migrate:
            apply_migrations(url)
        store = KernelStore(url, max_size=pool_size_for(settings.worker_activity_slots))
        memory: MemoryStore = DeferredMemory()  # until this process takes memory over
        if with_memory:  # this process owns memory (embedded), or memory is a Qdrant server
            try:
                memory = open_memory(settings)
            except BaseException:
                store.close()
                raise
        email = smtp_connector(settings)
        pause = pause_gate(settings, store)
        return cls(
            settings=settings,
            store=store,
            memory=memory,
            email=email,
            providers=payment_providers(settings),
            runtime=connector_runtime(settings, store, scrub, pause=pause),
            webhook=webhook_connector(settings),
            calendar=caldav_connector(settings),
            crm=hubspot_connector(settings),
            pause=pause,
        )

    def activities(self) -> list[Callable[..., Any]]:
        s = self.settings
        scrub = scrubber(s)
        kernel = KernelActivities(self.store)
        runner = agent_runner(s, self.store, scrub, pause=self.pause)
        agents = AgentActivities(
            self.store, runner, operator_name=s.operator_name, timezone=s.business_timezone
        )
        memory = MemoryActivities(self.memory, self.store)
        identity = s.business_identity
        connectors = ConnectorActivities(
            self.store,
            self.email,
            self.runtime,
            operator_name=s.operator_name,
            operator_email=s.operator_email,
            identity=identity,
            templates=email_templates(s, identity),
            webhook=self.webhook,
            calendar=self.calendar,
            gate_links=GateLinks.from_settings(s),
            reply_address=s.imap_address if s.imap_host else None,
        )
        crm = CrmActivities(self.store, self.runtime, self.crm)
        proposals = ProposalActivities(
            self.store,
            runner,
            operator_name=s.operator_name,
            rate_card=s.rate_card,
            payment_provider=s.payment_provider,
        )
        billing = BillingActivities(self.store, self.providers, self.runtime)
        health = HealthActivities(self.store, self.runtime, self.probes())
        review = ReviewActivities(
            self.store, self.email, self.runtime, operator_email=s.operator_email
        )
        content = ContentActivities(
            self.store,
            runner,
            operator_name=s.operator_name,
            site_dir=site_folder(s.state_path, s.content_site_dir),
            site=SiteInfo(
                title=s.content_site_title,
                author=s.business_name or s.operator_name,
                base_url=s.content_site_url,
            ),
        )
        inbound = InboundActivities(
            self.store,
            runner,
            mailbox=imap_mailbox(s),
            email=self.email,
            runtime=self.runtime,
            operator_email=s.operator_email,
            signing_key=GateLinks.from_settings(s).key,
            imap_address=s.imap_address,
            max_attachment_bytes=s.imap_max_attachment_bytes,
            pause=self.pause,
        )
        return [
            proposals.open_proposal,
            proposals.draft_proposal,
            proposals.revise_proposal,
            proposals.check_proposal_policy,
            billing.create_invoice,
            billing.check_invoice_policy,
            billing.issue_invoice,
            billing.void_invoice,
            billing.record_payment,
            billing.issue_credit_note,
            billing.provider_create_invoice,
            billing.provider_void_invoice,
            billing.provider_mark_paid,
            connectors.send_proposal,
            connectors.retract_proposal,
            connectors.send_invoice_email,
            kernel.upsert_client,
            kernel.record_event,
            kernel.open_notice,
            kernel.resolve_notice,
            kernel.cancel_effect,
            agents.classify_intake,
            agents.draft_welcome,
            agents.revise_draft,
            memory.recall_memory,
            memory.remember,
            memory.lookup_memory,
            connectors.send_welcome,
            connectors.cancel_kickoff,
            connectors.send_gate_reminder,
            connectors.deliver_webhook,
            connectors.kickoff_event,
            crm.mirror_client,
            crm.mirror_deal,
            health.check_connectors,
            health.connector_plan,
            billing.record_refund,
            review.send_review_digest,
            memory.remember_correction,
            memory.recall_corrections,
            memory.recall_for_draft,
            content.plan_topics,
            content.check_topic_novelty,
            content.open_post,
            content.draft_post,
            content.revise_post,
            content.fact_check_post,
            content.set_post_status,
            content.publish_post,
            content.stage_newsletter_issue,
            content.audience_size,
            *newsletter_activities(self.store, self.email, self.runtime, s),
            inbound.fetch_inbound,
            inbound.mark_inbound_seen,
            inbound.match_inbound,
            inbound.classify_reply,
            inbound.send_reply_answer,
            inbound.inbound_handled,
        ]

    def probes(self) -> dict[str, Callable[[], CheckResult]]:
        """The synthetic-check probe of every configured connector (no outside effect)."""
        probes: dict[str, Callable[[], CheckResult]] = {"email": self.email.check}
        if self.webhook is not None:
            probes["webhook"] = self.webhook.check
        if self.calendar is not None:
            probes["caldav"] = self.calendar.check
        if self.crm is not None:
            probes["hubspot"] = self.crm.check
        if (mailbox := imap_mailbox(self.settings)) is not None:
            probes["imap"] = mailbox.check
        return probes

    def close(self) -> None:
        if self.webhook is not None:
            self.webhook.close()
        if self.crm is not None:
            self.crm.close()
        self.memory.close()
        self.store.close()


def payment_providers(settings: Settings) -> dict[str, PaymentProvider]:
    """Bank transfer always; Stripe when an API key is configured."""
    providers: dict[str, PaymentProvider] = {
        "bank_transfer": BankTransferProvider(
            BankDetails(
                account_name=settings.bank_account_name
                or settings.business_name
                or settings.operator_name,
                iban=settings.bank_iban,
                bic=settings.bank_bic,
                bank_name=settings.bank_name,
                contact_email=settings.operator_email,
            )
        )
    }
    if settings.stripe_api_key is not None:
        from aios.connectors.payments.stripe import StripeProvider

        providers["stripe"] = StripeProvider(
            settings.stripe_api_key, api_base=settings.stripe_api_base
        )
    return providers


def email_templates(settings: Settings, identity: BusinessIdentity | None = None) -> EmailTemplates:
    """The email templates of the settings: ``AIOS_TEMPLATES_DIR`` first, then the defaults."""
    return EmailTemplates(
        identity or settings.business_identity,
        operator_name=settings.operator_name,
        folder=settings.templates_dir,
    )


def scrubber(settings: Settings) -> Scrubber:
    """The settings' scrubber, also installed process-wide (see the module docstring)."""
    scrub = Scrubber.from_settings(settings)
    install(scrub)
    return scrub


def chat_model(settings: Settings, scrub: Scrubber | None = None) -> ChatModel | None:
    """The hosted model provider, or None for the template provider (the offline default)."""
    import openai

    from aios.workflows.timeouts import MODEL_REQUEST_TIMEOUT

    timeout = MODEL_REQUEST_TIMEOUT.total_seconds()
    if settings.agent_provider == "openai":
        assert settings.openai_api_key is not None  # checked by Settings
        return OpenAIChat(
            openai.OpenAI(
                api_key=settings.openai_api_key.get_secret_value(),
                base_url=settings.openai_base_url,
                max_retries=0,  # Temporal's retry policy decides
                timeout=timeout,
            ),
            name="openai",
            scrubber=scrub or scrubber(settings),
        )
    if settings.agent_provider == "azure":
        key, token = settings.azure_openai_api_key, settings.azure_openai_ad_token
        assert settings.azure_openai_endpoint is not None  # checked by Settings
        return OpenAIChat(
            openai.AzureOpenAI(
                azure_endpoint=settings.azure_openai_endpoint,
                api_version=settings.azure_openai_api_version,
                api_key=key.get_secret_value() if key else None,
                azure_ad_token=token.get_secret_value() if token else None,
                max_retries=0,
                timeout=timeout,
            ),
            name="azure",
            scrubber=scrub or scrubber(settings),
        )
    return None


def pause_gate(settings: Settings, store: KernelStore) -> PauseGate:
    """The kill switches as this worker's steps see them (``aios.kernel.pause``)."""
    return PauseGate(
        SwitchReader(store.switches, ttl=settings.switch_cache_seconds),
        store.notices,
        current=pause_waiter,
        poll_seconds=settings.switch_poll_seconds,
    )


def agent_runner(
    settings: Settings,
    store: KernelStore,
    scrub: Scrubber | None = None,
    *,
    pause: PauseGate | None = None,
) -> AgentRunner:
    return AgentRunner(
        store.costs,
        chat=chat_model(settings, scrub),
        tiers=settings.tiers,
        agent_tiers=settings.agent_tiers,
        policy=settings.agent_policy,
        max_output_tokens=settings.model_max_output_tokens,
        pause=pause,
    )


def smtp_connector(settings: Settings) -> SmtpEmailConnector:
    """The SMTP connector of ``settings`` (``AIOS_SMTP_*``, sender ``AIOS_MAIL_FROM``)."""
    return SmtpEmailConnector(
        SmtpConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout_seconds=settings.smtp_timeout_seconds,
            sender=settings.mail_from,
        )
    )


def connector_runtime(
    settings: Settings,
    store: KernelStore,
    scrub: Scrubber | None = None,
    *,
    pause: PauseGate | None = None,
) -> ConnectorRuntime:
    names = {"email", "caldav", "hubspot", "webhook", *settings.connector_rate_limits}
    return ConnectorRuntime(
        store,
        guards={name: settings.guard_settings(name) for name in names},
        default=settings.guard_settings("*"),
        dry_run=settings.connectors_dry_run,
        scrubber=scrub or scrubber(settings),
        pause=pause,
        shield=cancel_shield,
    )


def webhook_connector(settings: Settings) -> WebhookConnector | None:
    if settings.webhook_url is None or settings.webhook_secret is None:
        return None
    return WebhookConnector(WebhookConfig(url=settings.webhook_url, secret=settings.webhook_secret))


def caldav_connector(settings: Settings) -> CalDavConnector | None:
    if settings.caldav_url is None:
        return None
    return CalDavConnector(
        CalDavConfig(
            url=settings.caldav_url,
            username=settings.caldav_username,
            password=settings.caldav_password,
            calendar=settings.caldav_calendar,
            create_missing=True,
        )
    )


def imap_mailbox(settings: Settings) -> ImapMailbox | None:
    """The inbound mailbox, when ``AIOS_IMAP_HOST`` is set."""
    if settings.imap_host is None or settings.imap_username is None:
        return None
    assert settings.imap_password is not None  # checked by Settings
    return ImapMailbox(
        ImapConfig(
            host=settings.imap_host,
            port=settings.imap_port,
            security=settings.imap_security,
            username=settings.imap_username,
            password=settings.imap_password,
            folder=settings.imap_folder,
        )
    )


def hubspot_connector(settings: Settings) -> HubSpotConnector | None:
    if settings.hubspot_token is None:
        return None
    return HubSpotConnector(
        HubSpotConfig(token=settings.hubspot_token, base_url=settings.hubspot_base_url)
    )


def newsletter_activities(
    store: KernelStore, email: SmtpEmailConnector, runtime: ConnectorRuntime, settings: Settings
) -> list[Callable[..., Any]]:
    """The newsletter's activities (``activities.newsletter``)."""
    from aios.activities.newsletter import NewsletterActivities
    from aios.serve.subscriber_links import SubscriberLinks

    news = NewsletterActivities(
        store,
        email,
        runtime,
        SubscriberLinks.from_settings(settings),
        sender_name=settings.business_identity.name,
        batch_size=settings.newsletter_batch_size,
    )
    return [news.next_batch, news.send_batch, news.tally]
