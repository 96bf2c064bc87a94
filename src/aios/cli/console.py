"""``aios serve`` (the console) and ``aios operator set-password``.

Registered by ``cli.app``; like the other commands, everything past Typer loads inside them.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

__all__ = ["operator_app", "serve"]

operator_app = typer.Typer(help="Operators who may sign in to the console (`aios serve`).")


def serve() -> None:
    """Serve the console: the inbox, each gate with its document, runs, clients, attention.

    Listens on AIOS_SERVE_HOST:AIOS_SERVE_PORT (127.0.0.1:8780); sign in with the password
    from `aios operator set-password` or AIOS_OPERATOR_TOKEN."""
    from aios.cli import render
    from aios.cli.app import line, settings
    from aios.logs import configure_logging
    from aios.serve.app import run_console

    s = settings()
    configure_logging(s.log_level)
    line(f"AiOs console on {s.console_url} (Ctrl-C stops it)", console=render.err())
    run_console(s)


@operator_app.command("set-password")
def set_password(
    name: Annotated[
        str | None,
        typer.Option(help="Operator name (default: AIOS_OPERATOR_NAME); the approver it signs"),
    ] = None,
) -> None:
    """Set (or change) an operator's console password, read from a prompt or from stdin.

    Never from the command line: arguments end up in shell history and process lists.
    Changing it signs that operator's open sessions out."""
    from aios.cli.app import fail, line, settings
    from aios.errors import InvalidInput
    from aios.operations.common import kernel_store
    from aios.serve.auth import MIN_PASSWORD_LENGTH, check_password
    from aios.serve.auth import set_password as store_password

    s = settings()
    who = name or s.operator_name
    if sys.stdin.isatty():
        password = typer.prompt(
            f"New console password for {who} (at least {MIN_PASSWORD_LENGTH} characters)",
            hide_input=True,
            confirmation_prompt=True,
        )
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        check_password(password)
        with kernel_store(s) as store:
            created = store_password(store.operators, who, password)
    except InvalidInput as exc:
        raise fail(str(exc)) from None
    except Exception as exc:
        from aios.cli.app import expected_error

        message = expected_error(exc)
        if message is None:
            raise
        raise fail(message) from None
    line(
        f"{'Added operator' if created else 'Changed the password of'} {who}; "
        f"sign in at {s.console_url}"
    )
