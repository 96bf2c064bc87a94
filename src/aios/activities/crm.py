"""CRM activities: mirror canonical clients and proposals into HubSpot, when configured.

The kernel is the CRM of record. With ``AIOS_HUBSPOT_TOKEN`` set, onboarding mirrors the client
as a contact (after the operator approved the welcome; an upsert cannot be undone, so the
runtime insists on that approval), and a proposal becomes a deal when it is sent, ``won`` or
``lost`` when the client answers, and is archived if the proposal process fails after sending.
Without HubSpot every activity returns ``skipped`` and changes nothing. Links to the mirrored
objects live in ``external_refs``.
"""

from __future__ import annotations

from temporalio import activity

from aios.activities.context import event_for_step
from aios.activities.errors import translating_errors
from aios.activities.models import (
    NOT_CONFIGURED,
    MirrorClientInput,
    MirrorDealInput,
    MirrorResult,
)
from aios.connectors.hubspot import ContactInput, DealInput, HubSpotConnector
from aios.connectors.runtime import ConnectorRuntime
from aios.errors import InvalidInput
from aios.kernel.store import KernelStore

__all__ = ["CONTACT", "DEAL", "CrmActivities"]

CONTACT = "hubspot.contact"
DEAL = "hubspot.deal"
_NOT_CONFIGURED = NOT_CONFIGURED["hubspot"]


def _deal_name(client_name: str, scope: str) -> str:
    first = " ".join(scope.split())
    what = first[:80] + ("..." if len(first) > 80 else "")
    return f"{client_name}: {what}"[:500]


class CrmActivities:
    def __init__(
        self, store: KernelStore, runtime: ConnectorRuntime, crm: HubSpotConnector | None
    ) -> None:
        self._store = store
        self._runtime = runtime
        self._crm = crm

    @activity.defn(name="mirror_client")
    @translating_errors
    def mirror_client(self, inp: MirrorClientInput) -> MirrorResult:
        """Create or update the client's HubSpot contact (by email); needs ``approval``."""
        crm = self._crm
        if crm is None:
            return MirrorResult(system=CONTACT, skipped=_NOT_CONFIGURED)
        client = self._store.clients.get(inp.client_key)
        if client is None:
            raise InvalidInput(f"client: no client with key {inp.client_key!r}")
        entity = f"client:{client.key}"
        contact = ContactInput(email=client.email, company=client.name)
        result, ran = self._runtime.effect(
            crm.name,
            crm.operations["upsert_contact"],
            inp.idempotency_key,
            lambda dry_run: crm.upsert_contact(
                contact, idempotency_key=inp.idempotency_key, dry_run=dry_run
            ).model_dump(mode="json"),
            step="mirror_client",
            approval=inp.approval,
            event=event_for_step(inp.idempotency_key, "crm.contact_mirrored", entity=entity),
        )
        if result.get("dry_run"):
            return MirrorResult(system=CONTACT, dry_run=True, detail="rehearsed, nothing sent")
        contact_id = str(result["contact"]["id"])
        self._store.refs.link(entity, CONTACT, contact_id)
        verb = "created" if result.get("created") else "updated"
        return MirrorResult(
            system=CONTACT, external_id=contact_id, changed_now=ran, detail=f"contact {verb}"
        )

    @activity.defn(name="mirror_deal")
    @translating_errors
    def mirror_deal(self, inp: MirrorDealInput) -> MirrorResult:
        """Create the proposal's deal, move it to won or lost, or archive it (the undo)."""
        crm = self._crm
        if crm is None:
            return MirrorResult(system=DEAL, skipped=_NOT_CONFIGURED)
        proposal = self._store.proposals.get(inp.proposal_id)
        if proposal is None:
            raise InvalidInput(f"proposal: no proposal with id {inp.proposal_id!r}")
        entity = f"proposal:{proposal.proposal_id}"
        key = inp.idempotency_key
        if inp.action == "create":
            client = self._store.clients.get(proposal.client_key)
            if client is None:
                raise InvalidInput(f"client: no client with key {proposal.client_key!r}")
            versions = self._store.proposals.versions(proposal.proposal_id)
            if not versions:
                raise InvalidInput(f"proposal {proposal.proposal_id!r} has no version yet")
            latest = versions[-1]
            deal = DealInput(
                name=_deal_name(client.name, proposal.scope),
                amount_minor=latest.total_minor,
                currency=latest.currency,
                contact_id=self._store.refs.get(f"client:{client.key}", CONTACT),
            )
            result, ran = self._runtime.effect(
                crm.name,
                crm.operations["create_deal"],
                key,
                lambda dry_run: crm.create_deal(
                    deal, idempotency_key=key, dry_run=dry_run
                ).model_dump(mode="json"),
                step="mirror_deal",
                event=event_for_step(key, "crm.deal_created", entity=entity),
            )
            if result.get("dry_run"):
                return MirrorResult(system=DEAL, dry_run=True, detail="rehearsed, nothing sent")
            deal_id = str(result["deal"]["id"])
            self._store.refs.link(entity, DEAL, deal_id)
            return MirrorResult(
                system=DEAL, external_id=deal_id, changed_now=ran, detail="deal created"
            )

        linked = self._store.refs.get(entity, DEAL)
        if linked is None:
            return MirrorResult(
                system=DEAL, skipped=f"proposal {proposal.proposal_id} has no HubSpot deal"
            )
        deal_id = linked
        if inp.action == "archive":
            result, ran = self._runtime.effect(
                crm.name,
                crm.operations["archive_deal"],
                key,
                lambda dry_run: crm.archive_deal(
                    deal_id, idempotency_key=key, dry_run=dry_run
                ).model_dump(mode="json"),
                step="archive_deal",
                event=event_for_step(key, "compensation.deal_archived", entity=entity),
            )
            detail = "deal archived" if result.get("archived") else "deal was already gone"
        else:
            stage = inp.action
            result, ran = self._runtime.effect(
                crm.name,
                crm.operations["update_deal_stage"],
                key,
                lambda dry_run: crm.update_deal_stage(
                    deal_id, stage, idempotency_key=key, dry_run=dry_run
                ).model_dump(mode="json"),
                step="update_deal_stage",
                event=event_for_step(key, f"crm.deal_{stage}", entity=entity),
            )
            detail = f"deal moved to {stage}" if result.get("changed") else f"deal already {stage}"
        return MirrorResult(
            system=DEAL,
            external_id=deal_id,
            changed_now=ran,
            dry_run=bool(result.get("dry_run")),
            detail=detail,
        )
