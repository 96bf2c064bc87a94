"""What every operation shares: run ids and links, starting a run, reading a run's state, and
the connections one operator action opens (``Session``).

Nothing here imports ``aios.workflows`` at module level (see ``operations.messages``): the
typed progress models are imported when a progress query is made.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar
from urllib.parse import quote

from pydantic import AfterValidator, BaseModel
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from aios.config import Settings
from aios.errors import InvalidInput, StackError
from aios.kernel.money import LineItem, format_amount
from aios.operations.messages import PROGRESS_QUERY
from aios.temporal import connect

if TYPE_CHECKING:
    from aios.kernel.store import KernelStore
    from aios.kernel.stores.gates import GateStore
    from aios.workflows.progress import RunProgress

T = TypeVar("T")

__all__ = [
    "QUERY_TIMEOUT",
    "DocumentLine",
    "Session",
    "Started",
    "describe_run",
    "document_lines",
    "kernel_store",
    "one_line",
    "require_running",
    "run_progress",
    "start_new",
    "task_failure",
    "unanswered",
    "web_ui_url",
    "workflow_id_for",
]

QUERY_TIMEOUT = timedelta(seconds=5)
ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")


def _new_id(value: str) -> str:
    if not ID_RE.match(value):
        raise ValueError("must be 1-80 lowercase letters, digits or hyphens")
    return value


# An id the operator chooses for a new proposal or invoice.
NewId = Annotated[str, AfterValidator(_new_id)]


@dataclass(frozen=True)
class Started:
    workflow_id: str
    run_id: str
    existing: bool


# --- ids and links ----------------------------------------------------------------------------


def web_ui_url(settings: Settings, workflow_id: str, run_id: str | None = None) -> str:
    """The run's page in the Temporal Web UI (``AIOS_TEMPORAL_UI_URL``, else the dev server's
    ``ui_port`` from ``temporal-dev.yaml``)."""
    from aios.devstack import web_ui_base

    base = f"{web_ui_base(settings).rstrip('/')}/namespaces/{settings.temporal_namespace}"
    url = f"{base}/workflows/{quote(workflow_id, safe='')}"
    return f"{url}/{run_id}/history" if run_id else url


def workflow_id_for(process: str, ref: str) -> str:
    """``acme-20261121-ab12`` -> ``<process>/acme-20261121-ab12``; full ids pass through."""
    ref = ref.strip()
    if not ref:
        raise InvalidInput(f"{process}: an id is required")
    return ref if "/" in ref else f"{process}/{ref}"


def new_id(client_key: str, today: date) -> str:
    """A fresh proposal or invoice id: ``<client key>-<yyyymmdd>-<4 hex>``."""
    return f"{client_key}-{today:%Y%m%d}-{uuid.uuid4().hex[:4]}"[:80]


def one_line(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class DocumentLine(BaseModel):
    """One line of a proposal or an invoice."""

    description: str
    quantity: int
    unit_price: str
    unit_price_minor: int
    amount: str
    amount_minor: int


def document_lines(items: list[LineItem], currency: str) -> list[DocumentLine]:
    return [
        DocumentLine(
            description=item.description,
            quantity=item.quantity,
            unit_price=format_amount(item.unit_price_minor, currency),
            unit_price_minor=item.unit_price_minor,
            amount=format_amount(item.amount_minor, currency),
            amount_minor=item.amount_minor,
        )
        for item in items
    ]


# --- starting and reading runs ------------------------------------------------------------------


async def start_new(
    client: Client,
    workflow_fn: Any,
    arg: BaseModel,
    workflow_id: str,
    settings: Settings,
    summary: str,
    details: str = "",
) -> Started:
    """Start a run under an id never used before (proposals, invoices); ``summary`` and
    ``details`` are what the Web UI shows for it (static user metadata)."""
    try:
        handle = await client.start_workflow(
            workflow_fn,
            arg,
            id=workflow_id,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=summary,
            static_details=details
            or f"See `aios status {workflow_id}` and `aios show {workflow_id}`.",
        )
    except WorkflowAlreadyStartedError:
        raise InvalidInput(f"{workflow_id} already exists; choose another id") from None
    return Started(workflow_id, handle.result_run_id or "", existing=False)


async def describe_run(client: Client, workflow_id: str) -> WorkflowExecutionDescription:
    """The latest run of ``workflow_id``; ``InvalidInput`` when there is none."""
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise InvalidInput(f"workflow {workflow_id!r} does not exist") from exc
        raise


async def require_running(client: Client, workflow_id: str) -> None:
    desc = await describe_run(client, workflow_id)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        status = desc.status.name.lower() if desc.status else "closed"
        raise InvalidInput(f"workflow {workflow_id!r} is {status}")


async def run_progress(client: Client, workflow_id: str) -> RunProgress:
    """The run's answer to query ``progress``, as its process's typed model."""
    from aios.workflows.progress import progress_model

    handle = client.get_workflow_handle(workflow_id)
    model = progress_model(workflow_id)
    return await handle.query(PROGRESS_QUERY, result_type=model, rpc_timeout=QUERY_TIMEOUT)


async def task_failure(client: Client, workflow_id: str) -> str | None:
    """Why the run's workflow task keeps failing, or ``None`` when it does not.

    A failing workflow task (a bug, or a payload the code could not handle) leaves the run
    RUNNING while every attempt fails; Temporal writes the first failure to history and retries
    the task. Queries fail too, so without this a stuck run looks like one no worker serves.
    """
    handle = client.get_workflow_handle(workflow_id)
    desc = await handle.describe()
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return None
    pending = desc.raw_description.pending_workflow_task
    failure: str | None = None
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_task_failed_event_attributes"):
            attrs = event.workflow_task_failed_event_attributes
            failure = attrs.failure.message or "workflow task failed"
        elif event.HasField("workflow_task_completed_event_attributes"):
            failure = None
    if failure is None and pending.attempt > 1:
        failure = f"workflow task failing (attempt {pending.attempt})"
    if failure is None:
        return None
    line = failure.strip().splitlines()[0] if failure.strip() else "workflow task failed"
    return f"stuck: workflow task failing: {line[:300]}"


async def unanswered(client: Client, workflow_id: str) -> str:
    """What to say when a run did not answer a query: stuck, or no worker."""
    try:
        stuck = await task_failure(client, workflow_id)
    except RPCError:
        stuck = None
    return stuck or "no worker answered"


# --- connections ---------------------------------------------------------------------------------


class Session:
    """The connections one operator action needs, each opened on first use and closed at the
    end of the ``with`` block: a Temporal client (``aios.temporal.connect``) and the kernel
    store (PostgreSQL: ``AIOS_DATABASE_URL`` or the embedded server)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Client | None = None
        self._store: KernelStore | None = None

    async def client(self) -> Client:
        if self._client is None:
            self._client = await connect(self.settings)
        return self._client

    def store(self) -> KernelStore:
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# How long an operator action waits for PostgreSQL before it says the database is down.
OPERATOR_DB_WAIT = 5.0


def open_store(
    settings: Settings, *, connect_wait: float = OPERATOR_DB_WAIT, max_size: int = 1
) -> KernelStore:
    """A small kernel store for one operator action; a clear error when PostgreSQL is down."""
    from aios.kernel.store import KernelStore

    return _reach(
        settings, lambda url: KernelStore(url, max_size=max_size, connect_wait=connect_wait)
    )


class HasGates(Protocol):
    """What reads the gate projection: the kernel store, or ``GateKernel`` alone."""

    @property
    def gates(self) -> GateStore: ...


class GateKernel:
    """The gate projection and the notices over one connection: what ``aios inbox``, ``aios
    approve`` and ``aios dismiss`` read, without loading the other stores."""

    def __init__(self, database_url: str, *, connect_wait: float = OPERATOR_DB_WAIT) -> None:
        from aios.kernel.stores.database import Database
        from aios.kernel.stores.gates import GateStore
        from aios.kernel.stores.notices import NoticeStore

        self.db = Database(database_url, max_size=1, connect_wait=connect_wait)
        self.gates = GateStore(self.db)
        self.notices = NoticeStore(self.db)

    def close(self) -> None:
        self.db.close()


def open_gates(settings: Settings, *, connect_wait: float = OPERATOR_DB_WAIT) -> GateKernel:
    """``GateKernel`` for one operator action; a clear error when PostgreSQL is down."""
    return _reach(settings, lambda url: GateKernel(url, connect_wait=connect_wait))


def _reach(settings: Settings, make: Callable[[str], T]) -> T:
    from psycopg_pool import PoolTimeout

    from aios.devstack import database_url

    # Each failed try would print a warning; the one line below says it once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    url = database_url(settings)
    try:
        return make(url)
    except PoolTimeout:
        where = "AIOS_DATABASE_URL" if settings.database_url else "the embedded PostgreSQL"
        raise StackError(
            f"cannot reach the database ({where}); start it with `aios dev up` "
            "or check AIOS_DATABASE_URL"
        ) from None


@contextmanager
def kernel_store(settings: Settings) -> Iterator[KernelStore]:
    """``with kernel_store(settings) as store``: opened here, closed at the end."""
    with Session(settings) as session:
        yield session.store()
