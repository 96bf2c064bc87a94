"""A fresh, migrated PostgreSQL database of its own, for tests that need an empty kernel
(seeded metrics, an import into an empty stack) rather than the session's shared one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import psycopg

from aios.kernel.store import apply_migrations
from tests.conftest import ADMIN_URL


@contextmanager
def fresh_database(*, migrate: bool = True) -> Iterator[str]:
    """The URL of a new database (migrated unless ``migrate`` is false), dropped at the end."""
    name = f"aios_fresh_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl()
    try:
        if migrate:
            apply_migrations(url)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
