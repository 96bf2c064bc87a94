"""The kernel store against the real PostgreSQL server: event log, clients, outbox, migrations."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from aios.errors import EffectCancelled
from aios.kernel.events import EventDraft
from aios.kernel.models import Client
from aios.kernel.store import KernelStore, OutboxResult, apply_migrations
from aios.kernel.stores.outbox import CommitPoint
from tests.conftest import unique


def draft_event(workflow_id: str, kind: str = "test.happened", **payload: object) -> EventDraft:
    return EventDraft(
        event_key=unique("event"),
        workflow_id=workflow_id,
        run_id="run-1",
        process="test",
        kind=kind,
        entity="entity-1",
        payload=dict(payload),
    )


# --- the event log ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET kind = 'tampered' WHERE event_key = %(key)s",
        "DELETE FROM events WHERE event_key = %(key)s",
        "TRUNCATE events",
    ],
    ids=["update", "delete", "truncate"],
)
def test_event_log_refuses_update_delete_and_truncate(
    store: KernelStore, database_url: str, statement: str
):
    workflow_id = unique("wf")
    event = draft_event(workflow_id, kind="original", n=1)
    store.events.append(event)

    with (
        psycopg.connect(database_url) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
    ):
        conn.execute(statement, {"key": event.event_key})

    [stored] = store.events.for_run(workflow_id)
    assert stored.event_key == event.event_key
    assert stored.kind == "original"
    assert stored.payload == {"n": 1}


def test_append_event_with_same_key_stores_one_event(store: KernelStore):
    workflow_id = unique("wf")
    event = draft_event(workflow_id, kind="first")
    store.events.append(event)
    store.events.append(event)
    # A retry with the same key but a different body is still the same event.
    store.events.append(event.model_copy(update={"kind": "retried"}))

    events = store.events.for_run(workflow_id)
    assert [e.event_key for e in events] == [event.event_key]
    assert events[0].kind == "first"


def test_events_come_back_in_insertion_order(store: KernelStore):
    workflow_id = unique("wf")
    drafts = [draft_event(workflow_id, kind=f"step.{i}", i=i) for i in range(5)]
    for d in drafts:
        store.events.append(d)
    # Another workflow's events do not leak in.
    store.events.append(draft_event(unique("other-wf")))

    events = store.events.for_run(workflow_id)
    assert [e.event_key for e in events] == [d.event_key for d in drafts]
    assert [e.payload["i"] for e in events] == list(range(5))
    assert [e.id for e in events] == sorted(e.id for e in events)


# --- clients ---------------------------------------------------------------------------------


def test_upsert_client_twice_keeps_one_row_with_new_email(store: KernelStore, database_url: str):
    key = unique("client")
    workflow_id = unique("wf")
    first = store.clients.upsert(
        Client(key=key, name="Acme Ltd", email="old@acme.example"),
        event=draft_event(workflow_id, kind="client.created"),
    )
    second = store.clients.upsert(
        Client(key=key, name="Acme Ltd", email="new@acme.example"),
        event=draft_event(workflow_id, kind="client.updated"),
    )

    assert first.email == "old@acme.example"
    assert second.email == "new@acme.example"
    stored = store.clients.get(key)
    assert stored is not None
    assert stored.email == "new@acme.example"
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM clients WHERE client_key = %s", (key,)).fetchone()
    assert row is not None
    assert row[0] == 1
    # Each upsert also appended its event, in the same transaction.
    assert [e.kind for e in store.events.for_run(workflow_id)] == [
        "client.created",
        "client.updated",
    ]


# --- the outbox ------------------------------------------------------------------------------


class Counter:
    def __init__(self, result: OutboxResult, delay: float = 0.0) -> None:
        self.calls = 0
        self.result = result
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, commit: CommitPoint) -> OutboxResult:  # the commit point unused
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return self.result


def test_run_once_runs_effect_once_and_returns_stored_result(store: KernelStore):
    key = unique("outbox")
    effect = Counter({"message_id": "<abc@aios>"})

    result, ran = store.outbox.run_once(key, connector="email", operation="send", effect=effect)
    assert (result, ran) == ({"message_id": "<abc@aios>"}, True)
    assert effect.calls == 1

    other = Counter({"message_id": "<different@aios>"})
    again, ran_again = store.outbox.run_once(key, connector="email", operation="send", effect=other)
    assert again == {"message_id": "<abc@aios>"}
    assert ran_again is False
    assert other.calls == 0

    entry = store.outbox.entry(key)
    assert entry is not None
    assert entry["status"] == "done"
    assert entry["result"] == {"message_id": "<abc@aios>"}


def test_run_once_appends_its_event_only_when_the_effect_runs(store: KernelStore):
    key = unique("outbox")
    workflow_id = unique("wf")
    event = draft_event(workflow_id, kind="email.sent")
    store.outbox.run_once(key, connector="email", operation="send", effect=Counter({}), event=event)
    store.outbox.run_once(
        key,
        connector="email",
        operation="send",
        effect=Counter({}),
        event=draft_event(workflow_id, kind="email.sent.again"),
    )
    assert [e.kind for e in store.events.for_run(workflow_id)] == ["email.sent"]


def test_run_once_failure_is_recorded_and_retried(store: KernelStore):
    key = unique("outbox")
    workflow_id = unique("wf")

    def broken(commit: CommitPoint) -> OutboxResult:
        raise ConnectionError("smtp down")

    with pytest.raises(ConnectionError, match="smtp down"):
        store.outbox.run_once(
            key,
            connector="email",
            operation="send",
            effect=broken,
            event=draft_event(workflow_id, kind="never"),
        )

    entry = store.outbox.entry(key)
    assert entry is not None
    assert entry["status"] != "done"
    assert entry["last_error"] is not None
    assert "ConnectionError" in entry["last_error"]
    assert "smtp down" in entry["last_error"]
    assert store.events.for_run(workflow_id) == []

    effect = Counter({"ok": True})
    result, ran = store.outbox.run_once(key, connector="email", operation="send", effect=effect)
    assert (result, ran) == ({"ok": True}, True)
    assert effect.calls == 1
    entry = store.outbox.entry(key)
    assert entry is not None
    assert entry["status"] == "done"
    assert entry["last_error"] is None


def test_run_once_concurrent_callers_run_the_effect_exactly_once(store: KernelStore):
    key = unique("outbox")
    effect = Counter({"sent": 1}, delay=0.3)
    outcomes: list[tuple[OutboxResult, bool]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def attempt() -> None:
        try:
            start.wait(timeout=5)
            outcomes.append(
                store.outbox.run_once(key, connector="email", operation="send", effect=effect)
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert errors == []
    assert effect.calls == 1
    assert len(outcomes) == 2
    assert sorted(ran for _, ran in outcomes) == [False, True]
    assert all(result == {"sent": 1} for result, _ in outcomes)


def cancel(store: KernelStore, key: str, workflow_id: str) -> bool:
    return store.outbox.cancel(
        key,
        connector="email",
        operation="send",
        reason="the gate was decided",
        event=draft_event(workflow_id, kind="outbox.cancelled"),
    )


def test_a_cancelled_effect_never_runs_and_a_done_one_stays_done(store: KernelStore):
    workflow_id = unique("wf")
    # Never started (no row yet): cancelled, and a late attempt runs nothing.
    never = unique("outbox")
    assert cancel(store, never, workflow_id) is True
    late = Counter({"sent": 1})
    with pytest.raises(EffectCancelled, match="cancelled by its run: the gate was decided"):
        store.outbox.run_once(never, connector="email", operation="send", effect=late)
    assert late.calls == 0
    assert cancel(store, never, workflow_id) is False  # once
    # Started by an attempt that failed (the row a dead worker leaves looks the same).
    failed = unique("outbox")

    def broken(commit: CommitPoint) -> OutboxResult:
        raise ConnectionError("smtp down")

    with pytest.raises(ConnectionError):
        store.outbox.run_once(failed, connector="email", operation="send", effect=broken)
    assert [e["idempotency_key"] for e in store.outbox.in_doubt(0)].count(failed) == 1
    assert cancel(store, failed, workflow_id) is True
    entry = store.outbox.entry(failed)
    assert entry is not None and (entry["status"], entry["attempts"]) == ("cancelled", 1)
    assert failed not in [e["idempotency_key"] for e in store.outbox.in_doubt(0)]
    # Done: the cancel changes nothing.
    done = unique("outbox")
    store.outbox.run_once(done, connector="email", operation="send", effect=Counter({"ok": 1}))
    assert cancel(store, done, workflow_id) is False
    entry = store.outbox.entry(done)
    assert entry is not None and (entry["status"], entry["result"]) == ("done", {"ok": 1})
    assert [e.kind for e in store.events.for_run(workflow_id)] == ["outbox.cancelled"] * 2


def test_a_cancel_during_the_effect_waits_for_it_and_leaves_it_done(store: KernelStore):
    key = unique("outbox")
    running = threading.Event()
    finish = threading.Event()

    def effect(commit: CommitPoint) -> OutboxResult:
        running.set()
        finish.wait(10)
        return {"sent": 1}

    attempt = threading.Thread(
        target=store.outbox.run_once,
        args=(key,),
        kwargs={"connector": "email", "operation": "send", "effect": effect},
    )
    attempt.start()
    assert running.wait(10)
    cancelled: list[bool] = []
    canceller = threading.Thread(target=lambda: cancelled.append(cancel(store, key, unique("wf"))))
    canceller.start()
    canceller.join(0.5)
    assert canceller.is_alive()  # held by the row lock while the effect runs
    finish.set()
    attempt.join(10)
    canceller.join(10)
    assert cancelled == [False]
    entry = store.outbox.entry(key)
    assert entry is not None and entry["status"] == "done"


# --- migrations ------------------------------------------------------------------------------


def test_apply_migrations_again_applies_nothing(database_url: str):
    assert apply_migrations(database_url) == 0


def test_a_nul_that_reaches_the_database_is_a_clear_error_that_is_not_retried(
    store: KernelStore,
) -> None:
    """Behind the text boundary, the last guard: PostgreSQL refuses NUL, and the activity
    error says so as a non-retryable ``InvalidInput`` instead of retrying until it times out."""
    from temporalio.exceptions import ApplicationError

    from aios.activities.errors import translating_errors

    @translating_errors
    def write() -> None:
        store.events.append(
            EventDraft(
                event_key=f"test/{uuid.uuid4()}",
                workflow_id="test",
                run_id="test",
                process="test",
                kind="test.nul",
                payload={"comment": "a\x00b"},
            )
        )

    with pytest.raises(ApplicationError) as info:
        write()
    assert info.value.type == "InvalidInput" and info.value.non_retryable
    assert info.value.message.startswith("the database refused a value: ")


def test_model_text_is_cleaned_and_a_subject_with_a_line_break_is_refused() -> None:
    from pydantic import ValidationError

    from aios.agents.welcome import WelcomeDraft

    draft = WelcomeDraft.model_validate(
        {"subject": "Welcome", "body": "Hi\x00 there\u202e", "plan": ["Call\x07"]}
    )
    assert (draft.body, draft.plan) == ("Hi there", ["Call"])
    with pytest.raises(ValidationError, match=r"subject\n.*a line break"):
        WelcomeDraft.model_validate(
            {"subject": "Hi\nBcc: x@evil.example", "body": "b", "plan": ["p"]}
        )
