"""``aios pause`` and ``aios resume``: the kill switches (``operations.control``).

Registered on the main app by ``cli.app`` (``register``); like the other commands, everything
past Typer loads inside them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from aios.operations.control import SwitchOutcome

__all__ = ["register"]

ScopeArg = Annotated[
    str | None,
    typer.Argument(help="all, agent, connector or process; none: list the switches"),
]
NameArg = Annotated[
    str | None, typer.Argument(help="The agent, connector or process (e.g. email, proposal)")
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept with the switch)")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who (default: your user name)")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print a JSON document for scripts (see README)")
]


def _show(outcomes: list[SwitchOutcome]) -> None:
    from aios.cli.render import Col, line, records

    if not outcomes:
        line(
            "No switches: nothing was ever paused. Pause with `aios pause all` (or agent, "
            "connector, process NAME)."
        )
        return
    records(
        [
            Col("switch", key=True),
            Col("state"),
            Col("since"),
            Col("by"),
            Col("runs waiting"),
            Col("reason"),
        ],
        [
            [
                o.switch,
                "paused" if o.paused else "running",
                o.changed_at or "",
                o.changed_by or "",
                str(len(o.waiting)),
                o.reason,
            ]
            for o in outcomes
        ],
    )


def _change(
    pause: bool,
    scope: str | None,
    name: str | None,
    reason: str,
    by: str | None,
    as_json: bool,
) -> None:
    from aios.cli.app import _who, settings
    from aios.cli.render import emit_json, line
    from aios.operations.common import open_store
    from aios.operations.control import change_switch, list_switches

    s = settings()
    store = open_store(s)
    try:
        if scope is None:
            if name is not None:  # typer fills scope first; kept for clarity
                raise typer.BadParameter("give the scope before the name")
            listed = list_switches(store)
            if as_json:
                emit_json({"switches": [o.model_dump() for o in listed]})
            else:
                _show(listed)
            return
        done = change_switch(
            store, pause=pause, scope=scope, name=name, by=_who(by, s), reason=reason
        )
    finally:
        store.close()
    if as_json:
        emit_json(done.model_dump())
        return
    verb = "paused" if pause else "resumed"
    if done.changed:
        why = f" ({done.reason})" if done.reason else ""
        line(f"{done.switch} {verb} by {done.changed_by}{why}.")
        if pause:
            line(
                "Steps it covers wait before their next model call or effect (inbox: "
                f"'paused: {done.switch}'); `aios resume {_args(done)}` lets them go on."
            )
    else:
        state = "paused" if done.paused else "running"
        line(f"{done.switch} was already {state}; nothing changed.")


def _args(done: SwitchOutcome) -> str:
    return "all" if done.scope == "all" else f"{done.scope} {done.name}"


def pause(
    scope: ScopeArg = None,
    name: NameArg = None,
    reason: ReasonOpt = "",
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pause everything (all), an agent, a connector or a process NAME; no args: list switches.

    Runs in flight wait before their next model call or outside effect, within seconds, and
    show as 'paused: <switch>' in the inbox. They go on, exactly once, after `aios resume`.
    """
    _change(True, scope, name, reason, by, as_json)


def resume(
    scope: ScopeArg = None,
    name: NameArg = None,
    reason: ReasonOpt = "",
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Resume what `aios pause` paused; waiting runs go on. No args: list switches."""
    _change(False, scope, name, reason, by, as_json)


def register(app: typer.Typer) -> None:
    """Add ``pause`` and ``resume`` to ``app`` (the error handling of ``cli.app.command``)."""
    from aios.cli.app import command

    app.command("pause")(command(pause))
    app.command("resume")(command(resume))
