"""Which version of its process a run follows: the patch ids, in one place.

Runs wait days at gates, so a new worker build meets runs an older build started. Every change
to the commands a process issues goes behind ``workflow.patched(<id>)``: a new run records the
patch's marker and takes the new path; a run whose history lacks the marker replays, and goes
on, the old way. The ids, oldest first, with where they branch:

- ``connector-fabric`` (``mirrors``): calendar, CRM and webhook steps;
- ``process-base`` (``process``): the outcome attribute, late signal rejections written out;
- ``gate-email`` (``gates``): the gate email to the operator;
- ``early-client-answer`` (``proposal``): a client's answer that comes while the proposal is
  still being sent;
- ``operator-corrections`` (``onboarding``, ``proposal``): learning from edits at gates;
- ``billing-refunds``, ``billing-inbound-notices`` (``billing``);
- ``fewer-round-trips`` (``FEWER_ROUND_TRIPS``, newest): kernel writes nobody answers (events,
  notices, client records, draft revisions) and the connector plan as local activities, the
  steps of unconfigured optional connectors skipped, all recalls of a draft in one memory step,
  an unchanged cost not written again, a gate's first email sent beside the wait for the
  decision (``gates``) instead of before it, and reminders (a gate's, a proposal's follow-ups,
  an invoice's) sent beside the wait (``waiting``) instead of holding it; either is cancelled,
  outbox row and all, when the wait ends first.

A run that has the newest patch was started by a build that has all the older ones, so
``patched`` answers yes for those without asking Temporal: a new run records one marker (and
one ``TemporalChangeVersion`` upsert) instead of one per patch. A run without the newest patch
asks for each as before. A patch added after ``fewer-round-trips`` calls ``workflow.patched``
itself (and, once it is the newest, takes this role).
"""

from __future__ import annotations

from temporalio import workflow

__all__ = ["EARLIER_PATCHES", "FEWER_ROUND_TRIPS", "fewer_round_trips", "patched"]

FEWER_ROUND_TRIPS = "fewer-round-trips"
EARLIER_PATCHES = frozenset(
    {
        "connector-fabric",
        "process-base",
        "gate-email",
        "early-client-answer",
        "operator-corrections",
        "billing-refunds",
        "billing-inbound-notices",
    }
)


def fewer_round_trips() -> bool:
    """Whether this run takes the ``fewer-round-trips`` path (recorded on first use)."""
    return workflow.patched(FEWER_ROUND_TRIPS)


def patched(patch_id: str) -> bool:
    """``workflow.patched(patch_id)`` for a patch older than ``fewer-round-trips``."""
    if patch_id not in EARLIER_PATCHES:
        raise ValueError(f"{patch_id!r} is not a patch older than {FEWER_ROUND_TRIPS!r}")
    return fewer_round_trips() or workflow.patched(patch_id)
