"""The ``aios`` command line."""

from aios.cli.app import app, main

__all__ = ["app", "main"]
