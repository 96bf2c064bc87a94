"""Policies as versioned data: show, set and list versions; pin the latest on a new run.

The policy values are settings fields (``POLICY_KEYS``): the settings seed version 1, and from
then on the ``policies`` table decides (``aios policy set`` adds version N+1, a full snapshot).
Values are validated by ``Settings`` itself, so a value ``aios policy set`` refuses is one the
settings would refuse too, with the same reason, naming the key.

``pin`` gives the settings a new run starts with: the latest version's values applied, and its
number, which the run's policies (``GatePolicy``, ``ProposalPolicy``, ``BillingPolicy``) carry
into the events that record their decisions as ``policy_version``. Gate, proposal and billing
values are pinned per run; agent and connector values are read by a worker when it starts.
"""

from __future__ import annotations

import json
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ValidationError

from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.store import KernelStore
from aios.kernel.stores.policies import PolicyVersion
from aios.kernel.text import refuse_unsafe

__all__ = [
    "POLICY_KEYS",
    "PolicyEntry",
    "PolicyView",
    "current_policy",
    "pin",
    "pin_from_database",
    "policy_key",
    "policy_values",
    "policy_view",
    "set_policy",
    "unheeded_settings",
]

Scope = Literal["run", "worker"]

# Each policy key, and who reads it: "run" values are pinned by a run when it starts (the
# version it started with decides to its end); "worker" values by a worker when it starts.
POLICY_KEYS: dict[str, Scope] = {
    "gate_remind_after": "run",
    "gate_expire_after": "run",
    "proposal_max_discount_pct": "run",
    "proposal_auto_approve_max_total": "run",
    "proposal_follow_up_every": "run",
    "proposal_expire_after": "run",
    "billing_approve_above": "run",
    "billing_payment_terms": "run",
    "billing_remind_every": "run",
    "billing_max_reminders": "run",
    "agent_apply_corrections": "run",
    "agent_min_confidence": "worker",
    "agent_monthly_budget_usd": "worker",
    "agent_budgets_usd": "worker",
    "connector_rate_limit": "worker",
    "connector_rate_limits": "worker",
    "connector_breaker_fail_max": "worker",
    "connector_breaker_reset_seconds": "worker",
}
MAX_REASON = 500


def policy_values(settings: Settings) -> dict[str, Any]:
    """The policy values of ``settings`` as stored (JSON: durations ISO 8601, amounts text)."""
    return settings.model_dump(mode="json", include=set(POLICY_KEYS))


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _checked(settings: Settings, values: dict[str, Any], *, what: str) -> Settings:
    """``settings`` with ``values`` validated by ``Settings`` (every field and cross-check)."""
    try:
        return type(settings).model_validate({**settings.model_dump(), **values})
    except ValidationError as exc:
        raise InvalidInput(f"{what}: {_problem(exc)}") from None


def _apply(settings: Settings, version: PolicyVersion) -> Settings:
    checked = _checked(settings, version.values, what=f"policy version {version.version}")
    pinned = settings.model_copy(update={key: getattr(checked, key) for key in POLICY_KEYS})
    pinned._policy_version = version.version
    return pinned


def current_policy(settings: Settings, store: KernelStore) -> PolicyVersion:
    """The latest version; version 1 is seeded from ``settings`` when there is none."""
    latest = store.policies.latest()
    if latest is not None:
        return latest
    return store.policies.seed(policy_values(settings), by="settings")


def pin(settings: Settings, store: KernelStore) -> Settings:
    """``settings`` with the latest policy version applied and named (``policy_version``)."""
    return _apply(settings, current_policy(settings, store))


def unheeded_settings(settings: Settings, values: dict[str, Any]) -> list[str]:
    """The policy settings given explicitly (``AIOS_...``, ``.env``) whose value differs from
    a version's ``values``: the version decides, so the operator is told the setting has no
    effect."""
    given = settings.model_dump(mode="json", include=set(POLICY_KEYS) & settings.model_fields_set)
    return [
        f"AIOS_{key.upper()}"
        for key in POLICY_KEYS
        if key in given and given[key] != values.get(key)
    ]


def pin_from_database(settings: Settings, *, migrate: bool = False) -> Settings:
    """``pin`` over a connection of its own (``aios onboard``; ``aios worker`` at start, with
    ``migrate``: the kernel's migrations first)."""
    from aios.operations.common import open_store

    if migrate:
        from aios.devstack import database_url
        from aios.kernel.store import apply_migrations

        apply_migrations(database_url(settings))

    store = open_store(settings)
    try:
        return pin(settings, store)
    finally:
        store.close()


def policy_key(key: str) -> str:
    """``key`` as a policy key (``AIOS_GATE_EXPIRE_AFTER`` and ``gate-expire-after`` too)."""
    name = key.strip().lower().replace("-", "_").removeprefix("aios_")
    if name not in POLICY_KEYS:
        raise InvalidInput(
            f"policy: unknown key {key.strip()[:60]!r}; keys: {', '.join(POLICY_KEYS)}"
        )
    return name


def _parsed(key: str, raw: str) -> Any:
    annotation = Settings.model_fields[key].annotation
    if get_origin(annotation) is dict:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise InvalidInput(f'{key}: give a JSON object, e.g. {{"welcome": "5"}}')
        return value
    return raw.strip()


def set_policy(
    settings: Settings, store: KernelStore, key: str, raw: str, *, by: str, reason: str
) -> PolicyVersion:
    """Set ``key`` to ``raw`` as version N+1 (event ``policy.set`` with who and why).

    A value ``Settings`` refuses, an empty reason or an unchanged value raise ``InvalidInput``
    naming the key, and nothing is written."""
    name = policy_key(key)
    try:
        why = refuse_unsafe(reason, multiline=False)
        who = refuse_unsafe(by, multiline=False)
    except ValueError as exc:
        raise InvalidInput(f"reason: {exc}") from None
    if not why:
        raise InvalidInput("reason: say why the policy changes (--reason)")
    if len(why) > MAX_REASON:
        raise InvalidInput(f"reason: at most {MAX_REASON} characters")
    if not who:
        raise InvalidInput("by: who sets the policy must not be empty")
    latest = current_policy(settings, store)
    checked = _checked(settings, {**latest.values, name: _parsed(name, raw)}, what="policy")
    values = policy_values(checked)
    if values[name] == latest.values.get(name):
        raise InvalidInput(
            f"{name} is already {_shown(values[name])} (version {latest.version}); nothing changed"
        )
    return store.policies.add(values, after=latest.version, changed=[name], by=who, reason=why)


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


class PolicyEntry(BaseModel):
    key: str
    value: Any
    scope: Scope
    setting: str  # the environment variable that seeded version 1


class PolicyView(BaseModel):
    """The latest version as ``aios policy show`` prints it."""

    version: int
    set_by: str
    reason: str
    created_at: str
    entries: list[PolicyEntry]
    # Settings given with another value than this version's: they have no effect.
    unheeded_settings: list[str] = []


def policy_view(version: PolicyVersion, settings: Settings | None = None) -> PolicyView:
    return PolicyView(
        unheeded_settings=unheeded_settings(settings, version.values) if settings else [],
        version=version.version,
        set_by=version.set_by,
        reason=version.reason,
        created_at=version.created_at.isoformat(),
        entries=[
            PolicyEntry(
                key=key,
                value=version.values.get(key),
                scope=scope,
                setting=f"AIOS_{key.upper()}",
            )
            for key, scope in POLICY_KEYS.items()
        ],
    )
