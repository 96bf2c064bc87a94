"""Notices: the inbox's items that are not gates, kept once per key, with their events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from aios.kernel.store import KernelStore
from aios.kernel.stores.notices import NoticeDraft


@pytest.fixture
def store(database_url: str) -> Iterator[KernelStore]:
    kernel = KernelStore(database_url)
    yield kernel
    kernel.close()


def draft(key: str, **extra: object) -> NoticeDraft:
    fields: dict[str, object] = {
        "key": key,
        "kind": "unmatched_payment",
        "title": "EUR 120.00 from Acme matches no invoice",
        "source": "bank",
        "client_key": "acme",
        "details": {"reference": "INV-9"},
    }
    fields.update(extra)
    return NoticeDraft.model_validate(fields)


def events_for(store: KernelStore, key: str) -> list[str]:
    with store.db.transaction() as conn:
        rows = conn.execute(
            "SELECT kind FROM events WHERE process = 'notices' AND payload->>'key' = %s "
            "ORDER BY id",
            (key,),
        ).fetchall()
    return [r["kind"] for r in rows]


def test_the_same_key_opened_twice_is_one_notice_with_one_event(store: KernelStore) -> None:
    key = f"payment/bank/{uuid.uuid4().hex}"
    first = store.notices.open(draft(key))
    again = store.notices.open(draft(key, title="a different title"))
    assert again.id == first.id
    assert again.title == first.title
    assert [n.key for n in store.notices.open_notices()].count(key) == 1
    assert events_for(store, key) == ["notice.opened"]


def test_resolving_closes_it_once_and_names_who(store: KernelStore) -> None:
    key = f"email/{uuid.uuid4().hex}@example.com"
    store.notices.open(draft(key, kind="suspicious_email", suspicious=True))
    resolved = store.notices.resolve(key, by="operator", resolution="dismissed: spam")
    assert resolved is not None
    assert resolved.status == "resolved"
    assert resolved.resolved_by == "operator"
    again = store.notices.resolve(key, by="someone else", resolution="again")
    assert again is not None and again.resolved_by == "operator"
    assert key not in [n.key for n in store.notices.open_notices()]
    assert events_for(store, key) == ["notice.opened", "notice.resolved"]
    assert store.notices.resolve("no/such/key", by="operator", resolution="x") is None


def test_a_bad_notice_names_the_field() -> None:
    with pytest.raises(ValidationError, match="key"):
        NoticeDraft(key="", kind="paused", title="t")
    with pytest.raises(ValidationError, match="U\\+0000"):
        NoticeDraft(key="k", kind="paused", title="a\x00b")
