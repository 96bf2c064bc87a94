"""Notices: the inbox's items that are not gates, kept once per key, with their events."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import pytest
from pydantic import ValidationError
from temporalio.client import Client

from aios.config import Settings
from aios.kernel.store import KernelStore
from aios.kernel.stores.notices import NoticeDraft
from aios.serve.auth import set_password
from tests.conftest import subprocess_env
from tests.test_serve import PASSWORD, csrf_of, http_client, sign_in


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


# --- the operator's side: `aios inbox`, `aios dismiss` and the console's inbox -------------


async def aios(settings: Settings, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aios.cli",
        *args,
        env=subprocess_env(settings, COLUMNS="200"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_inbox_lists_open_notices_and_dismiss_resolves_one_once(
    store: KernelStore, settings: Settings
) -> None:
    key = f"payment/bank/{uuid.uuid4().hex[:12]}"
    store.notices.open(draft(key, title="EUR 120.00 from Acme Ltd matches no invoice"))

    code, out, err = await aios(settings, "inbox", "--json")
    assert code == 0, err
    listed = {n["key"]: n for n in json.loads(out)["notices"]}
    assert listed[key]["kind"] == "unmatched_payment"
    assert listed[key]["title"] == "EUR 120.00 from Acme Ltd matches no invoice"

    code, out, err = await aios(settings, "inbox")
    assert code == 0, err
    assert "Needs a look" in out and key in out

    code, out, err = await aios(settings, "dismiss", key, "--reason", "paid in cash", "--by", "sam")
    assert code == 0, err
    assert f"Dismissed {key} (dismissed: paid in cash)" in out
    resolved = store.notices.get(key)
    assert resolved is not None
    assert (resolved.status, resolved.resolved_by) == ("resolved", "sam")

    code, out, err = await aios(settings, "dismiss", key, "--by", "alex")
    assert code == 0, err
    assert "Already resolved by sam" in out
    assert events_for(store, key) == ["notice.opened", "notice.resolved"]

    code, out, err = await aios(settings, "inbox", "--json")
    assert key not in {n["key"] for n in json.loads(out)["notices"]}


async def test_dismissing_an_unknown_notice_is_a_clear_error(settings: Settings) -> None:
    code, _out, err = await aios(settings, "dismiss", "no/such/notice")
    assert code != 0
    assert "no notice with key 'no/such/notice'" in err
    code, _out, err = await aios(settings, "dismiss", "   ")
    assert code != 0
    assert "notice key: empty" in err


async def test_the_console_shows_a_notice_and_dismisses_it_with_the_signed_in_operator(
    store: KernelStore, settings: Settings, client: Client
) -> None:
    operator = f"Sam {uuid.uuid4().hex[:6]}"
    console_settings = settings.model_copy(update={"operator_token": None})
    set_password(store.operators, operator, PASSWORD)
    key = f"email/{uuid.uuid4().hex[:10]}@mail.example"
    store.notices.open(
        draft(key, kind="suspicious_email", title="A reply <b>from</b> a stranger", suspicious=True)
    )
    async with http_client(console_settings, client, store) as http:
        assert (await sign_in(http, operator, PASSWORD)).status_code == 303
        page = await http.get("/inbox")
        assert page.status_code == 200
        assert key in page.text
        assert "A reply &lt;b&gt;from&lt;/b&gt; a stranger" in page.text  # escaped
        assert "suspicious" in page.text

        refused = await http.post("/notices/dismiss", data={"key": key, "csrf": "wrong"})
        assert refused.status_code == 403
        assert store.notices.get(key).status == "open"  # type: ignore[union-attr]

        csrf = await csrf_of(http)
        done = await http.post(
            "/notices/dismiss", data={"key": key, "reason": "spam", "csrf": csrf}
        )
        assert done.status_code == 303
        after = await http.get(done.headers["location"])
        assert f"{key}: dismissed: spam by {operator}." in after.text
        assert f'name="key" value="{key}"' not in after.text
        notice = store.notices.get(key)
        assert notice is not None and notice.resolved_by == operator

        unknown = await http.post("/notices/dismiss", data={"key": "no/such", "csrf": csrf})
        assert unknown.status_code == 400
        assert "no notice with key" in unknown.text

        # The confirmation is read from the record, never echoed from the address.
        forged = await http.get("/inbox", params={"dismissed": "Click evil.example now"})
        assert "Click evil.example now" not in forged.text
