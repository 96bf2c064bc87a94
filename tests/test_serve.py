"""The console (`aios serve`) over HTTP: sign-in, sessions, CSRF, the rate limit, deciding a
gate from its page, edits checked on the server, signed links, and GET never deciding.

The application runs in the test's event loop (httpx's ASGI transport) against a real worker,
dev server, PostgreSQL and SMTP server; one worker serves the whole module.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
import structlog
from pydantic import SecretStr
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker
from typer.testing import CliRunner

from aios import operations
from aios.config import Settings
from aios.kernel.store import KernelStore
from aios.serve.app import create_app
from aios.serve.auth import MAX_FAILURES, set_password
from aios.serve.links import GateLinks, LinkClaim, sign, signing_key
from aios.workers.main import build_worker
from aios.workers.services import Services
from tests.conftest import RecordingSmtp
from tests.helpers import start_at_gate

PASSWORD = "correct horse battery staple"
TOKEN = "t" * 32
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def console_settings(base_settings: Settings) -> Settings:
    return base_settings.model_copy(
        update={
            "task_queue": f"serve-{uuid.uuid4().hex[:10]}",
            "operator_token": None,
            "operator_name": f"Sam {uuid.uuid4().hex[:6]}",
        }
    )


@pytest.fixture(scope="module")
def store(console_settings: Settings, database_url: str) -> Iterator[KernelStore]:
    kernel = KernelStore(database_url, max_size=4)
    set_password(kernel.operators, console_settings.operator_name, PASSWORD)
    yield kernel
    kernel.close()


@pytest_asyncio.fixture(scope="module")
async def module_worker(
    client: Client,
    console_settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
) -> AsyncIterator[Worker]:
    activities = services.activities()
    async with build_worker(client, console_settings.task_queue, activities, executor) as w:
        yield w


def http_client(
    settings: Settings, client: Client, store: KernelStore, address: str = "127.0.0.1"
) -> httpx.AsyncClient:
    app = create_app(settings, store=store, client=client)
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url=settings.console_url)


@pytest_asyncio.fixture
async def anonymous(
    console_settings: Settings, client: Client, store: KernelStore
) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(console_settings, client, store) as http:
        yield http


@pytest_asyncio.fixture
async def http(
    console_settings: Settings, client: Client, store: KernelStore
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser signed in as the module's operator."""
    async with http_client(console_settings, client, store) as http:
        response = await sign_in(http, console_settings.operator_name, PASSWORD)
        assert response.status_code == 303, response.text
        yield http


async def sign_in(
    http: httpx.AsyncClient, name: str, secret: str, next: str = ""
) -> httpx.Response:
    page = await http.get("/signin", params={"next": next} if next else None)
    csrf = CSRF.search(page.text)
    assert csrf, page.text
    return await http.post(
        "/signin",
        data={"csrf": csrf.group(1), "name": name, "password": secret, "next": next},
    )


async def csrf_of(http: httpx.AsyncClient, path: str = "/inbox") -> str:
    page = await http.get(path)
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


async def at_gate(client: Client, settings: Settings) -> tuple[WorkflowHandle[Any, Any], str, str]:
    handle, _gate, _key, email = await start_at_gate(client, settings)
    return handle, handle.id, email


async def still_waiting(client: Client, workflow_id: str) -> bool:
    return bool(await operations.pending_gates(client, workflow_id))


# --- sign-in, sessions, CSRF ------------------------------------------------------------------


async def test_pages_need_sign_in_and_the_cookie_is_locked_down(
    anonymous: httpx.AsyncClient, console_settings: Settings
) -> None:
    page = await anonymous.get("/inbox")
    assert page.status_code == 303
    assert page.headers["location"] == "/signin?next=/inbox"
    signin = await anonymous.get("/signin")
    assert signin.status_code == 200
    assert "default-src 'none'" in signin.headers["content-security-policy"]
    assert "script-src 'self'" in signin.headers["content-security-policy"]
    assert signin.headers["referrer-policy"] == "no-referrer"
    assert signin.headers["x-frame-options"] == "SAMEORIGIN"

    done = await sign_in(anonymous, console_settings.operator_name, PASSWORD, next="/runs")
    assert done.status_code == 303 and done.headers["location"] == "/runs"
    cookie = done.headers["set-cookie"]
    assert "aios_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie  # served over plain http on loopback
    assert PASSWORD not in cookie
    inbox = await anonymous.get("/inbox")
    assert inbox.status_code == 200 and "Inbox" in inbox.text
    assert console_settings.operator_name in inbox.text


async def test_sign_in_goes_back_only_to_this_console(
    anonymous: httpx.AsyncClient, console_settings: Settings
) -> None:
    done = await sign_in(
        anonymous, console_settings.operator_name, PASSWORD, next="//evil.example/x"
    )
    assert done.status_code == 303 and done.headers["location"] == "/inbox"


async def test_the_operator_token_signs_in(
    console_settings: Settings, client: Client, store: KernelStore
) -> None:
    with_token = console_settings.model_copy(update={"operator_token": SecretStr(TOKEN)})
    async with http_client(with_token, client, store, address="10.0.9.1") as http:
        wrong = await sign_in(http, "", "x" * 32)
        assert wrong.status_code == 401
        done = await sign_in(http, "", TOKEN)
        assert done.status_code == 303
        assert (await http.get("/inbox")).status_code == 200


async def test_a_wrong_password_is_refused_and_never_logged(
    console_settings: Settings, client: Client, store: KernelStore, caplog: pytest.LogCaptureFixture
) -> None:
    secret = f"wrong-{uuid.uuid4().hex}"
    async with http_client(console_settings, client, store, address="10.0.7.1") as http:
        with structlog.testing.capture_logs() as logs:
            refused = await sign_in(http, console_settings.operator_name, secret)
        assert refused.status_code == 401
        assert "Wrong name or password." in refused.text
        assert secret not in refused.text
        assert "aios_session" not in refused.headers.get("set-cookie", "")
        assert (await http.get("/inbox")).status_code == 303
    refusals = [e for e in logs if "sign-in refused" in e["event"]]
    assert refusals and refusals[0]["address"] == "10.0.7.1"
    assert secret not in repr(logs) and secret not in caplog.text


async def test_sign_in_is_rate_limited_per_address(
    console_settings: Settings, client: Client, store: KernelStore
) -> None:
    address = f"10.0.8.{uuid.uuid4().int % 250 + 1}"
    store.operators.clear_failures(address)
    async with http_client(console_settings, client, store, address=address) as http:
        for _ in range(MAX_FAILURES):
            assert (await sign_in(http, console_settings.operator_name, "nope")).status_code == 401
        limited = await sign_in(http, console_settings.operator_name, PASSWORD)
        assert limited.status_code == 429
        assert "Too many failed sign-ins" in limited.text
        assert int(limited.headers["retry-after"]) > 0
    # another address (another replica's too: the count is in the kernel) is not limited
    async with http_client(console_settings, client, store, address="10.0.6.1") as other:
        assert (await sign_in(other, console_settings.operator_name, PASSWORD)).status_code == 303


async def test_set_password_reads_stdin_and_refuses_short_ones(
    console_settings: Settings, store: KernelStore
) -> None:
    from aios.cli.app import app
    from tests.conftest import subprocess_env

    name = f"Kim {uuid.uuid4().hex[:6]}"
    env = subprocess_env(console_settings)
    runner = CliRunner()
    command = ["operator", "set-password", "--name", name]
    short = runner.invoke(app, command, input="short\n", env=env)
    assert short.exit_code == 1
    assert "password: too short (5 characters)" in short.output
    assert store.operators.password_hash(name) is None
    ok = runner.invoke(app, command, input=f"{PASSWORD}\n", env=env)
    assert ok.exit_code == 0, ok.output
    stored = store.operators.password_hash(name)
    assert stored and stored.startswith("$argon2") and PASSWORD not in stored


# --- deciding ---------------------------------------------------------------------------------


async def test_a_post_without_session_or_csrf_token_is_refused(
    module_worker: Worker,
    client: Client,
    console_settings: Settings,
    anonymous: httpx.AsyncClient,
    http: httpx.AsyncClient,
) -> None:
    _handle, wid, _email = await at_gate(client, console_settings)
    path = f"/gates/{wid}/decide"
    no_session = await anonymous.post(path, data={"decision": "approve", "csrf": "x"})
    assert no_session.status_code == 403 and "not signed in" in no_session.text
    no_token = await http.post(path, data={"decision": "approve"})
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    wrong = await http.post(path, data={"decision": "approve", "csrf": "not-the-token"})
    assert wrong.status_code == 403
    for form in ("/signout", f"/gates/{wid}/edit"):
        assert (await http.post(form, data={"csrf": "nope"})).status_code == 403
    assert await still_waiting(client, wid)


async def test_an_unknown_gate_is_404(http: httpx.AsyncClient) -> None:
    other = f"onboarding/nobody-{uuid.uuid4().hex[:8]}"
    csrf = await csrf_of(http)
    assert (await http.get(f"/gates/{other}")).status_code == 404
    assert (await http.get(f"/gates/{other}/pdf")).status_code == 404
    assert (await http.get(f"/gates/{other}/edit")).status_code == 404
    posted = await http.post(f"/gates/{other}/decide", data={"csrf": csrf, "decision": "approve"})
    assert posted.status_code == 404
    assert "No such gate" in posted.text


async def test_approve_from_the_gate_page_runs_on_and_a_second_click_is_refused(
    module_worker: Worker,
    client: Client,
    console_settings: Settings,
    http: httpx.AsyncClient,
    smtp: RecordingSmtp,
) -> None:
    handle, wid, email = await at_gate(client, console_settings)
    page = await http.get(f"/gates/{wid}")
    assert page.status_code == 200
    assert "Welcome aboard" in page.text and "Approve" in page.text and "Reject" in page.text
    csrf = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    gate_key = re.search(r'name="gate_key" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]

    sent = await http.post(
        f"/gates/{wid}/decide",
        data={"csrf": csrf, "decision": "approve", "gate_key": gate_key, "comment": "good"},
    )
    assert sent.status_code == 303
    shown = await http.get(sent.headers["location"])
    assert f"approved by {console_settings.operator_name}" in shown.text
    result = await handle.result()
    assert result.status == "completed"
    assert len(smtp.to(email)) == 1

    again = await http.post(
        f"/gates/{wid}/decide", data={"csrf": csrf, "decision": "approve", "gate_key": gate_key}
    )
    assert again.status_code == 409
    assert f"already decided by {console_settings.operator_name} at" in again.text
    assert len(smtp.to(email)) == 1


async def test_reject_needs_a_reason(
    module_worker: Worker, client: Client, console_settings: Settings, http: httpx.AsyncClient
) -> None:
    handle, wid, _email = await at_gate(client, console_settings)
    csrf = await csrf_of(http, f"/gates/{wid}")
    empty = await http.post(f"/gates/{wid}/decide", data={"csrf": csrf, "decision": "reject"})
    assert empty.status_code == 400 and "A reason is required to reject." in empty.text
    assert await still_waiting(client, wid)
    done = await http.post(
        f"/gates/{wid}/decide", data={"csrf": csrf, "decision": "reject", "comment": "not a fit"}
    )
    assert done.status_code == 303
    assert (await handle.result()).status == "rejected"


async def test_an_edit_with_a_bad_value_shows_the_field_error_and_sends_nothing(
    module_worker: Worker,
    client: Client,
    console_settings: Settings,
    http: httpx.AsyncClient,
    smtp: RecordingSmtp,
) -> None:
    handle, wid, email = await at_gate(client, console_settings)
    form = await http.get(f"/gates/{wid}/edit")
    assert form.status_code == 200
    assert 'name="subject"' in form.text and 'name="body"' in form.text
    csrf = CSRF.search(form.text).group(1)  # type: ignore[union-attr]
    bad = await http.post(
        f"/gates/{wid}/edit", data={"csrf": csrf, "subject": "Two\nlines", "body": "Hello"}
    )
    assert bad.status_code == 400
    error = re.search(r'<p class="field-error" id="f-subject-error">([^<]+)</p>', bad.text)
    assert error, bad.text
    # the same bad edit posted straight to decide is refused too
    direct = await http.post(
        f"/gates/{wid}/decide",
        data={"csrf": csrf, "decision": "edit", "edit.subject": "Two\nlines"},
    )
    assert direct.status_code == 400
    assert await still_waiting(client, wid)

    good = await http.post(
        f"/gates/{wid}/edit",
        data={"csrf": csrf, "subject": "Welcome, friends", "body": "Edited body.\nSee you."},
    )
    assert good.status_code == 200
    assert "<del>-Welcome aboard" in good.text and "<ins>+Welcome, friends</ins>" in good.text
    assert "Confirm: send the edit and approve" in good.text
    assert await still_waiting(client, wid)  # the diff is shown; nothing was sent
    assert smtp.to(email) == []
    await handle.cancel()


# --- signed links -------------------------------------------------------------------------------


async def test_links_tampered_expired_or_used_say_so_and_decide_nothing(
    module_worker: Worker,
    client: Client,
    console_settings: Settings,
    http: httpx.AsyncClient,
    smtp: RecordingSmtp,
) -> None:
    handle, wid, email = await at_gate(client, console_settings)
    desc = await handle.describe()
    expires = datetime.now(UTC) + timedelta(days=1)
    links = GateLinks.from_settings(console_settings).for_gate(
        wid, desc.run_id, "gate/welcome", expires
    )
    token = links["approve"].rsplit("/l/", 1)[1]
    csrf = await csrf_of(http)

    tampered = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    for method in ("get", "post"):
        response = await getattr(http, method)(f"/l/{tampered}", **_form(method, csrf))
        assert response.status_code == 400 and "not valid" in response.text
    expired_token = sign(
        LinkClaim(
            workflow_id=wid,
            run_id=desc.run_id,
            gate_key="gate/welcome",
            action="approve",
            expires_at=datetime.now(UTC) - timedelta(minutes=1),
        ),
        signing_key(console_settings),
    )
    for method in ("get", "post"):
        response = await getattr(http, method)(f"/l/{expired_token}", **_form(method, csrf))
        assert response.status_code == 410 and "expired" in response.text
    assert await still_waiting(client, wid)

    # GET shows the gate with the decision pre-selected and decides nothing
    shown = await http.get(f"/l/{token}")
    assert shown.status_code == 200 and "Confirm: approve" in shown.text
    assert await still_waiting(client, wid)
    confirmed = await http.post(f"/l/{token}", data={"csrf": csrf})
    assert confirmed.status_code == 303
    assert (await handle.result()).status == "completed"

    used = await http.get(f"/l/{token}")
    assert used.status_code == 409 and "already used" in used.text
    assert f"already decided by {console_settings.operator_name}" in used.text
    again = await http.post(f"/l/{token}", data={"csrf": csrf})
    assert again.status_code == 409
    assert len(smtp.to(email)) == 1


def _form(method: str, csrf: str) -> dict[str, Any]:
    return {"data": {"csrf": csrf}} if method == "post" else {}


async def test_a_link_needs_sign_in_and_returns_to_it(
    module_worker: Worker,
    client: Client,
    console_settings: Settings,
    anonymous: httpx.AsyncClient,
) -> None:
    handle, wid, _email = await at_gate(client, console_settings)
    desc = await handle.describe()
    link = GateLinks.from_settings(console_settings).for_gate(
        wid, desc.run_id, "gate/welcome", datetime.now(UTC) + timedelta(hours=1)
    )["reject"]
    path = "/l/" + link.rsplit("/l/", 1)[1]
    hop = await anonymous.get(path)  # from a mail program: one hop so the cookie is sent
    assert hop.status_code == 200 and 'http-equiv="refresh"' in hop.text
    again = await anonymous.get(path, params={"again": "1"})
    assert again.status_code == 303 and again.headers["location"].startswith("/signin?next=/l/")
    done = await sign_in(anonymous, console_settings.operator_name, PASSWORD, next=path)
    assert done.headers["location"] == path
    page = await anonymous.get(path)
    assert "Confirm: reject" in page.text and "Reason (required)" in page.text
    csrf = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    no_reason = await anonymous.post(path, data={"csrf": csrf})
    assert no_reason.status_code == 400 and "A reason is required" in no_reason.text
    assert await still_waiting(client, wid)
    await handle.cancel()


async def test_get_never_changes_state(
    module_worker: Worker,
    client: Client,
    console_settings: Settings,
    http: httpx.AsyncClient,
    smtp: RecordingSmtp,
) -> None:
    handle, wid, email = await at_gate(client, console_settings)
    desc = await handle.describe()
    links = GateLinks.from_settings(console_settings).for_gate(
        wid, desc.run_id, "gate/welcome", datetime.now(UTC) + timedelta(hours=1)
    )
    paths = [
        "/",
        "/inbox",
        f"/gates/{wid}",
        f"/gates/{wid}/edit",
        f"/gates/{wid}/decide",
        "/signout",
        *("/l/" + url.rsplit("/l/", 1)[1] for url in links.values()),
        f"/gates/{wid}?decision=approve",
    ]
    for path in paths:
        response = await http.get(path)
        assert response.status_code in (200, 303, 404, 405), (path, response.status_code)
    assert await still_waiting(client, wid)
    assert smtp.to(email) == []
    assert (await http.get("/inbox")).status_code == 200  # still signed in
    await handle.cancel()


async def test_runs_client_and_attention_pages(
    module_worker: Worker, client: Client, console_settings: Settings, http: httpx.AsyncClient
) -> None:
    handle, wid, _email = await at_gate(client, console_settings)
    key = wid.split("/", 1)[1]
    runs = await http.get("/runs", params={"client": key})
    assert runs.status_code == 200
    assert wid in runs.text and "/namespaces/aios/workflows/" in runs.text  # Web UI links
    assert "waiting for you: decide" in runs.text
    bad = await http.get("/runs", params={"process": "bogus"})
    assert bad.status_code == 400 and "process: &#39;bogus&#39; is not one of" in bad.text
    page = await http.get(f"/clients/{key}")
    assert page.status_code == 200
    assert "gate.requested" in page.text and wid in page.text
    assert (await http.get("/clients/nobody-at-all")).status_code == 404
    attention = await http.get("/attention")
    assert attention.status_code == 200 and "Attention" in attention.text
    await handle.cancel()


async def test_over_https_the_cookie_is_secure_and_other_hosts_are_refused(
    console_settings: Settings, client: Client, store: KernelStore
) -> None:
    behind_tls = console_settings.model_copy(update={"serve_url": "https://console.example"})
    async with http_client(behind_tls, client, store, address="10.0.5.1") as http:
        done = await sign_in(http, console_settings.operator_name, PASSWORD)
        assert done.status_code == 303
        assert "Secure" in done.headers["set-cookie"]
        other = await http.get("/signin", headers={"host": "rebound.example"})
        assert other.status_code == 400
