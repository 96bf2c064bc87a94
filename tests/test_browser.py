"""The console in a real browser: Debian's Chromium driven by Playwright against a real uvicorn
serving the app, with a real worker, dev server, PostgreSQL and SMTP server.

1. sign in, open the inbox, edit the welcome body, see the diff, confirm: the client gets
   exactly one welcome email, with the edited body;
2. a proposal gate shows its PDF inline (the frame loads an application/pdf response) and the
   lines on the page are the kernel's;
3. the signed link in the operator's gate email: sign in, back to the link, confirm.

Screenshots of the inbox and a gate page at 1280 px and 375 px go to the test's temporary
folder (printed); with AIOS_DOCS_SCREENSHOTS=1 the 1280 px ones also go to docs/ for the README.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.worker import Worker

from aios.config import Settings
from aios.kernel.money import format_amount
from aios.kernel.stores.notices import NoticeDraft
from aios.serve.app import create_app
from aios.serve.auth import set_password
from aios.workers.main import build_worker
from aios.workers.services import Services
from tests.conftest import ROOT, RecordingSmtp, free_port
from tests.helpers import start_at_gate
from tests.money_helpers import fast, gate_open, known_client, progress_until, propose

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "Debian's chromium is not installed (/usr/bin/chromium); `./run.sh test` installs it",
        allow_module_level=True,
    )

from playwright.async_api import Browser, Page, async_playwright  # noqa: E402

PASSWORD = "browser tests need a password"
WEBSITE = "A new website for our bakery chain, with online ordering."
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}


class ConsoleServer:
    """``create_app`` under a real uvicorn in a thread of its own (its own event loop)."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=settings.serve_port,
            log_config=None,
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="console", daemon=True)

    def __enter__(self) -> ConsoleServer:
        self.thread.start()
        started = threading.Event()
        while not self.server.started and self.thread.is_alive():
            started.wait(0.05)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def console_settings(base_settings: Settings, services: Services) -> Settings:
    settings = base_settings.model_copy(
        update={
            "task_queue": f"browser-{uuid.uuid4().hex[:10]}",
            "serve_port": free_port(),
            "operator_name": f"Robin {uuid.uuid4().hex[:4]}",
        }
    )
    set_password(services.store.operators, settings.operator_name, PASSWORD)
    return settings


@pytest.fixture(scope="module")
def base(console_settings: Settings) -> Iterator[str]:
    with ConsoleServer(console_settings):
        yield console_settings.console_url


@pytest_asyncio.fixture(scope="module")
async def module_worker(
    client: Client, console_settings: Settings, services: Services, executor: ThreadPoolExecutor
) -> AsyncIterator[Worker]:
    activities = services.activities()
    async with build_worker(client, console_settings.task_queue, activities, executor) as w:
        yield w


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=LAPTOP)  # type: ignore[arg-type]
    page = await context.new_page()
    yield page
    await context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("console-screenshots")
    print(f"\nconsole screenshots: {folder}")
    return folder


async def screenshots(page: Page, shots: Path, name: str) -> None:
    """``name``-1280.png and ``name``-375.png of the whole page; with AIOS_DOCS_SCREENSHOTS=1
    the inbox and the gate also go to docs/ (console-inbox.png, console-gate.png and
    console-gate-phone.png, which the README shows)."""
    await page.wait_for_load_state("networkidle")  # the PDF frame too
    await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name} is {width} px wide on a 375 px screen"
    await page.screenshot(path=shots / f"{name}-375.png", full_page=True)
    await page.set_viewport_size(LAPTOP)  # type: ignore[arg-type]
    await page.screenshot(path=shots / f"{name}-1280.png", full_page=True)
    if os.environ.get("AIOS_DOCS_SCREENSHOTS") == "1" and name in ("inbox", "gate"):
        await page.screenshot(path=ROOT / "docs" / f"console-{name}.png", full_page=True)
        if name == "gate":
            shutil.copy(shots / f"{name}-375.png", ROOT / "docs" / "console-gate-phone.png")


async def sign_in(page: Page, settings: Settings) -> None:
    await page.fill("#name", settings.operator_name)
    await page.fill("#password", PASSWORD)
    await page.click("form[action='/signin'] button[type=submit]")


def text_of(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no text part")


async def test_sign_in_edit_the_welcome_body_see_the_diff_and_approve(
    module_worker: Worker,
    services: Services,
    client: Client,
    console_settings: Settings,
    base: str,
    page: Page,
    smtp: RecordingSmtp,
    shots: Path,
) -> None:
    handle, _gate, key, email = await start_at_gate(client, console_settings)
    wid = handle.id
    notice_key = f"email/{uuid.uuid4().hex}.a-long-message-id@mail.client-with-a-long-name.example"
    services.store.notices.open(
        NoticeDraft(
            key=notice_key,
            kind="suspicious_email",
            title="A reply to a gate email from an address that is not the operator's",
            summary="From: someone@elsewhere.example; it decided nothing.",
            suspicious=True,
        )
    )

    await page.goto(f"{base}/inbox")
    await page.wait_for_url(f"{base}/signin?next=/inbox")
    await sign_in(page, console_settings)
    await page.wait_for_url(f"{base}/inbox")
    row = page.locator("table.inbox tbody tr", has_text=wid)
    await row.wait_for()
    assert "welcome" in await row.inner_text()
    notice_row = page.locator("table.notices tbody tr", has_text=notice_key)
    assert "suspicious" in await notice_row.inner_text()
    await screenshots(page, shots, "inbox")

    await row.locator(f"a[href='/gates/{wid}']").click()
    await page.wait_for_url(f"{base}/gates/{wid}")
    assert "Welcome aboard" in await page.locator("[data-field=subject]").inner_text()
    await screenshots(page, shots, "gate")

    await page.click("text=Edit…")
    await page.wait_for_url(f"{base}/gates/{wid}/edit")
    body = await page.input_value("#f-body")
    edited = "Dear team,\n\nThank you for choosing us. Edited in the console.\n\nBest"
    assert body and body != edited
    await page.fill("#f-body", edited)
    await page.click("text=Show the change")
    added = page.locator("pre.diff[data-field=body] ins", has_text="Edited in the console.")
    await added.wait_for()
    assert await page.locator("pre.diff[data-field=body] del").count() > 0
    assert smtp.to(email) == []  # the diff is shown; nothing was sent
    await screenshots(page, shots, "diff")

    await page.click("text=Confirm: send the edit and approve")
    await page.wait_for_url(re.compile(r".*\?sent=gate"))
    notice = await page.locator(".notice").first.inner_text()
    assert console_settings.operator_name in notice
    result = await handle.result()
    assert result.status == "completed"
    [mail] = smtp.to(email)
    assert "Edited in the console." in text_of(mail)

    for name, path in (
        ("runs", "/runs"),
        ("client", f"/clients/{key}"),
        ("attention", "/attention"),
    ):
        await page.goto(base + path)
        await screenshots(page, shots, name)


async def test_a_proposal_gate_shows_its_pdf_and_the_kernels_lines(
    module_worker: Worker,
    client: Client,
    console_settings: Settings,
    services: Services,
    base: str,
    page: Page,
    shots: Path,
) -> None:
    store = services.store
    _, key, _email = known_client(store)
    # Budget 4,400 against a 5,600 list price: the discount is above policy, so it waits.
    handle = await propose(client, fast(console_settings), store, key, WEBSITE, budget="4400")
    await progress_until(client, handle.id, gate_open)
    proposal_id = handle.id.split("/", 1)[1]

    await page.goto(f"{base}/signin?next=/gates/{handle.id}")
    async with page.expect_response(lambda r: r.url.endswith(f"{handle.id}/pdf")) as pdf_info:
        await sign_in(page, console_settings)
    pdf = await pdf_info.value
    assert pdf.status == 200
    assert pdf.headers["content-type"] == "application/pdf"
    # The frame's own body is Chromium's PDF viewer; the bytes the frame loaded are a PDF:
    fetched = await page.request.get(f"{base}/gates/{handle.id}/pdf")
    assert (await fetched.body()).startswith(b"%PDF")
    assert await page.locator(f"iframe.pdf[src='/gates/{handle.id}/pdf']").count() == 1

    version = store.proposals.versions(proposal_id)[-1]
    expected = [
        [
            item.description,
            str(item.quantity),
            format_amount(item.unit_price_minor, version.currency),
            format_amount(item.amount_minor, version.currency),
        ]
        for item in version.line_items
    ]
    rows = page.locator("table.lines tbody tr")
    shown = [
        [cell.strip() for cell in await rows.nth(i).locator("td").all_inner_texts()]
        for i in range(await rows.count())
    ]
    assert shown == expected
    total = await page.locator("[data-field=total]").inner_text()
    assert total.strip() == format_amount(version.total_minor, version.currency)
    await screenshots(page, shots, "proposal")
    await handle.cancel()


async def test_the_signed_link_in_the_gate_email_signs_in_and_confirms(
    module_worker: Worker,
    client: Client,
    console_settings: Settings,
    base: str,
    page: Page,
    smtp: RecordingSmtp,
) -> None:
    handle, _gate, _key, email = await start_at_gate(client, console_settings)
    wid = handle.id
    mail = await gate_email(smtp, console_settings.operator_email, wid)
    found = re.search(r"^Approve:\s+(\S+/l/\S+)\s*$", text_of(mail), re.MULTILINE)
    assert found, text_of(mail)
    path = "/l/" + found.group(1).rsplit("/l/", 1)[1]

    await page.goto(base + path)  # not signed in: via the sign-in page, back to the link
    await page.wait_for_url(re.compile(r".*/signin\?next=/l/.*"))
    await sign_in(page, console_settings)
    await page.wait_for_url(base + path)
    assert await still_waiting(client, wid)  # opening the link decided nothing
    await page.click("text=Confirm: approve")
    await page.wait_for_url(re.compile(r".*\?sent=gate"))
    assert (await handle.result()).status == "completed"
    assert len(smtp.to(email)) == 1

    await page.goto(base + path)  # used: says so and decides nothing
    assert "already used" in await page.locator(".notice").first.inner_text()


async def gate_email(smtp: RecordingSmtp, operator: str, workflow_id: str) -> Message:
    """The operator's email about ``workflow_id``'s gate (sent when the gate opens)."""
    async with asyncio.timeout(30):
        while True:
            for message in smtp.to(operator):
                line = rf"^Workflow: {re.escape(workflow_id)}\s*$"
                if re.search(line, text_of(message), re.MULTILINE):
                    return message
            await asyncio.sleep(0.1)


async def still_waiting(client: Client, workflow_id: str) -> bool:
    from aios import operations

    return bool(await operations.pending_gates(client, workflow_id))
