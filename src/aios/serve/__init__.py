"""The operator's console (``aios serve``): a small server-rendered web application.

``create_app(settings)`` (``serve.app``) builds the FastAPI application: the inbox of waiting
gates, each gate with its full document and the decision buttons, runs, clients and what needs
attention; sign-in with a password (``aios operator set-password``) or ``AIOS_OPERATOR_TOKEN``;
signed one-click links from the operator's emails (``serve.links``). Names load on first use,
so importing ``aios.serve.links`` (as workers do) does not load the web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aios.serve.app import create_app, run_console

__all__ = ["create_app", "run_console"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from aios.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'aios.serve' has no attribute {name!r}")
