"""``aios policy``: show the policy values, set one as a new version, list the versions.

Registered by ``cli.app``; like the other commands, everything past Typer loads inside them.
The logic lives in ``operations.policies``.
"""

from __future__ import annotations

import getpass
import os
from typing import Annotated, ParamSpec, TypeVar

import typer

from aios.cli.base import JsonOpt, command

__all__ = ["policy_app"]

P = ParamSpec("P")
R = TypeVar("R")

policy_app = typer.Typer(
    help="Policies as versioned data: show them, set one (a new version, with why), history."
)


def _shown(value: object) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


@policy_app.command("show")
@command
def show(as_json: JsonOpt = False) -> None:
    """The latest policy version: every key, its value and who reads it (run or worker)."""
    from aios.cli.app import settings
    from aios.cli.render import Col, emit_json, line, records
    from aios.operations.common import open_store
    from aios.operations.policies import current_policy, policy_view

    s = settings()
    store = open_store(s)
    try:
        view = policy_view(current_policy(s, store), s)
    finally:
        store.close()
    if as_json:
        emit_json(view.model_dump(mode="json"))
        return
    line(
        f"Policy version {view.version}, set by {view.set_by} at {view.created_at[:19]} UTC: "
        f"{view.reason}"
    )
    records(
        [Col("key", key=True), Col("value", key=True), Col("read by", key=True)],
        [[e.key, _shown(e.value), f"each new {e.scope}"] for e in view.entries],
    )
    if view.unheeded_settings:
        line(
            f"Note: {', '.join(view.unheeded_settings)} set to another value in the environment "
            f"has no effect: policy version {view.version} decides."
        )
    line("Change one (a new version): aios policy set KEY VALUE --reason '...'")


@policy_app.command("set")
@command
def set_(
    key: Annotated[str, typer.Argument(metavar="KEY", help="A policy key, e.g. gate_expire_after")],
    value: Annotated[
        str,
        typer.Argument(
            metavar="VALUE",
            help="The new value, as its AIOS_ setting takes it (PT36H, 5000); a negative one "
            "after --",
        ),
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why it changes (kept with it)")],
    by: Annotated[
        str | None, typer.Option("--by", help="Who changes it (default: your user name)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set KEY to VALUE as the next policy version; new runs start with it."""
    from aios.cli.app import settings
    from aios.cli.render import emit_json, line
    from aios.operations.common import open_store
    from aios.operations.policies import POLICY_KEYS, set_policy

    s = settings()
    who = by or os.environ.get("USER") or getpass.getuser() or s.operator_name
    store = open_store(s)
    try:
        added = set_policy(s, store, key, value, by=who, reason=reason)
    finally:
        store.close()
    if as_json:
        emit_json(added.model_dump(mode="json"))
        return
    name = added.changed[0]
    line(f"Policy version {added.version}: {name} = {_shown(added.values[name])} (by {who}).")
    if POLICY_KEYS[name] == "run":
        line("Runs started from now on use it; running ones keep the version they started with.")
    else:
        line("Workers read it when they start: restart `aios worker` to apply it.")


@policy_app.command("history")
@command
def history(
    limit: Annotated[int, typer.Option(help="At most this many versions, newest first")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Every policy version, newest first: who, when, why, and the keys it changed."""
    from aios.cli.app import settings
    from aios.cli.render import Col, emit_json, records
    from aios.errors import InvalidInput
    from aios.operations.common import open_store
    from aios.operations.policies import current_policy

    if not 1 <= limit <= 1000:
        raise InvalidInput("--limit: give 1 to 1000")
    s = settings()
    store = open_store(s)
    try:
        current_policy(s, store)  # version 1 exists once anyone looks
        versions = store.policies.history(limit)
    finally:
        store.close()
    if as_json:
        emit_json([v.model_dump(mode="json") for v in versions])
        return
    records(
        [
            Col("version", key=True),
            Col("at (UTC)", key=True),
            Col("by", key=True),
            Col("changed", key=True),
            Col("why", min_width=20, max_width=80),
        ],
        [
            [
                str(v.version),
                f"{v.created_at:%Y-%m-%d %H:%M:%S}",
                v.set_by,
                ", ".join(f"{k} = {_shown(v.values.get(k))}" for k in v.changed) or "(seed)",
                v.reason,
            ]
            for v in versions
        ],
    )
