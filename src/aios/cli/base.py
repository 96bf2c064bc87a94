"""What every group of `aios` commands shares: the ``--json`` option and ``command``, the
wrapper that turns expected errors into one line on stderr and exit code 1.

The command groups (``aios memory``, ``aios policy``...) live in their own modules, which
``cli.app`` imports to register them; ``command`` therefore loads ``cli.app`` only when a
command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Annotated, ParamSpec, TypeVar

import typer

__all__ = ["JsonOpt", "command"]

P = ParamSpec("P")
R = TypeVar("R")

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print a JSON document for scripts (see README)")
]


def command(fn: Callable[P, R]) -> Callable[P, R]:
    """``cli.app.command`` for a group's command: expected errors become one line on stderr
    and exit code 1."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from aios.cli.app import command as app_command

        return app_command(fn)(*args, **kwargs)

    return wrapper
