"""`/ui` in a real browser (Debian's Chromium, driven by Playwright) against the suite's own
stack: the page's Uppy uploads through the Uppy routes to the real store, and the page shows
what the API and the event stream say. A failed test leaves a screenshot of the page (and
its console) in test-results/screenshots/."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Request, Route, async_playwright
from playwright.async_api import Error as PlaywrightError
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from conveyor_core.db.models import UploadToken
from conveyor_core.settings import Settings
from tests.helpers import assert_eventually
from tests.integration import samples
from tests.integration.conftest import REPO, run_cli
from tests.integration.uploads import auth, mint
from workers.stack.signatures import eicar

CHROMIUM = os.environ.get("CONVEYOR_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO / "test-results" / "screenshots"
MIB = 1024 * 1024

pytestmark = pytest.mark.timeout(240)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs chromium"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1100, "height": 1400})
    opened = await context.new_page()
    console: list[str] = []
    opened.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    opened.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    yield opened
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]", "_", request.node.name)
        for shown in context.pages:
            await shown.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
        (SCREENSHOTS / f"{name}.console.txt").write_text("\n".join(console))
    await context.close()


async def open_page(page: Page, stack: Settings, token: str, host: str | None = None) -> None:
    base = stack.api_url if host is None else f"http://{host}:{stack.api_port}"
    await open_address(page, f"{base}/ui#token={token}")


async def open_address(page: Page, address: str) -> None:
    await page.goto(address)
    await page.wait_for_selector("#workspace:not([hidden]) .uppy-Dashboard")


async def drop(page: Page, path: Path) -> None:
    """What a drop on the Dashboard does: the files go to its file input."""
    await page.locator("input.uppy-Dashboard-input").first.set_input_files(path)


def file_card(page: Page, name: str, status: str | None = None) -> Any:
    selector = "li.file" + (f'[data-status="{status}"]' if status else "")
    return page.locator(selector).filter(has_text=name)


async def token_files(api: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    listed = await api.get("/v1/files", headers=auth(token))
    assert listed.status_code == 200, listed.text
    files: list[dict[str, Any]] = listed.json()["files"]
    return files


def part_number(url: str) -> int | None:
    numbers = parse_qs(urlsplit(url).query).get("partNumber")
    return int(numbers[0]) if numbers else None


class PartGate:
    """Lets the store take the parts `passes` says yes to and holds the others until
    `release()`; records every part the browser sends."""

    def __init__(self, passes: Callable[[int], bool]) -> None:
        self.passes = passes
        self.sent: list[int] = []
        self.opened = asyncio.Event()

    async def install(self, page: Page) -> None:
        await page.route(lambda url: part_number(url) is not None, self._handle)

    async def _handle(self, route: Route, request: Request) -> None:
        if request.method != "PUT":
            await route.continue_()
            return
        number = part_number(request.url)
        assert number is not None
        self.sent.append(number)
        if not self.passes(number):
            await self.opened.wait()
        # The page may have paused or gone meanwhile, taking the request with it.
        try:
            await route.continue_()
        except PlaywrightError:
            pass

    def release(self) -> None:
        self.opened.set()


async def held_parts(api: httpx.AsyncClient, token: str, upload_id: str) -> list[int]:
    state = await api.get(f"/v1/uploads/{upload_id}", headers=auth(token))
    assert state.status_code == 200, state.text
    return sorted(p["part_number"] for p in state.json()["parts"])


async def drop_multipart(page: Page, path: Path) -> str:
    """Drops a file Uppy sends in parts; returns the id its `POST .../s3/multipart` got."""
    async with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/s3/multipart")
    ) as created:
        await drop(page, path)
    body = await (await created.value).json()
    return str(body["uploadId"])


async def start_gated_upload(
    page: Page, api: httpx.AsyncClient, token: str, path: Path, landed: int
) -> tuple[PartGate, str]:
    """Drops the file, lets the store take its first `landed` parts and holds the others;
    returns once the store holds exactly those, with the gate and the upload's id."""
    gate = PartGate(passes=lambda n: n <= landed)
    await gate.install(page)
    upload_id = await drop_multipart(page, path)

    async def first_parts_held() -> None:
        assert await held_parts(api, token, upload_id) == list(range(1, landed + 1))

    await assert_eventually(first_parts_held, timeout=30, interval=0.2)
    return gate, upload_id


def pause_button(page: Page, title: str) -> Any:
    return page.locator(f'button[data-cy="togglePauseResume"][title="{title}"]')


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


async def test_a_photo_goes_up_by_form_post_and_its_thumbnail_shows(
    page: Page, stack: Settings, api: httpx.AsyncClient, key_a: str, tmp_path: Path
) -> None:
    # As the README says: one command prints the page's address with a fresh token.
    link = run_cli(stack, "token", "--ui", "--api-url", stack.api_url, "--api-key", key_a)
    address = link.stdout.strip()
    assert address.startswith(f"{stack.api_url}/ui#token=cvu_"), address
    token = address.split("#token=")[1]
    await open_address(page, address)
    assert "#token" not in page.url  # out of the address bar once read
    photo = write(tmp_path, "harbour.jpg", samples.text_image("harbour at dawn", fmt="JPEG"))
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)

    await drop(page, photo)
    card = file_card(page, "harbour.jpg", "ready")
    await card.locator(".thumb img").wait_for(timeout=60_000)

    assert await card.locator('[data-stage="scan"]').inner_text() == "scan: succeeded"
    loaded = await card.locator(".thumb img").evaluate("img => img.complete && img.naturalWidth")
    assert loaded > 0
    [file] = await token_files(api, token)
    assert file["status"] == "ready" and file["filename"] == "harbour.jpg"
    assert file["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    # One form POST straight to the store: no multipart, no byte through the API.
    store_posts = [u for u in posted if u.startswith(stack.s3_public_endpoint)]
    assert len(store_posts) == 1


async def test_a_large_file_goes_up_in_parts_pauses_and_resumes(
    page: Page, stack: Settings, api: httpx.AsyncClient, key_a: str, tmp_path: Path
) -> None:
    token = (await mint(api, key_a))["token"]
    await open_page(page, stack, token)
    content = os.urandom(40 * MIB)
    big = write(tmp_path, "forty.bin", content)
    gate, upload_id = await start_gated_upload(page, api, token, big, landed=2)
    await pause_button(page, "Pause").click()
    await pause_button(page, "Resume").wait_for()
    # From here the store takes every part the page sends (the held requests were aborted
    # by the pause; they stay held).
    resumed = PartGate(passes=lambda n: True)
    await resumed.install(page)
    await asyncio.sleep(1.5)
    assert await held_parts(api, token, upload_id) == [1, 2]  # paused: nothing more went up
    assert resumed.sent == []

    await pause_button(page, "Resume").click()
    card = file_card(page, "forty.bin", "ready")
    await card.wait_for(timeout=90_000)
    gate.release()
    assert resumed.sent and not {1, 2} & set(resumed.sent), resumed.sent
    [file] = await token_files(api, token)
    assert file["sha256"] == hashlib.sha256(content).hexdigest()
    assert file["size"] == len(content)


@pytest.mark.parametrize("interruption", ["reload", "closed tab"])
async def test_an_interrupted_upload_resumes_without_resending_held_parts(
    interruption: str,
    page: Page,
    stack: Settings,
    api: httpx.AsyncClient,
    key_a: str,
    tmp_path: Path,
) -> None:
    token = (await mint(api, key_a))["token"]
    await open_page(page, stack, token)
    content = os.urandom(40 * MIB)
    big = write(tmp_path, "interrupted.bin", content)
    gate, _ = await start_gated_upload(page, api, token, big, landed=3)
    await asyncio.sleep(1.5)  # Golden Retriever writes its state at most every second or so
    resumed = PartGate(passes=lambda n: True)
    if interruption == "reload":
        await resumed.install(page)  # the newest route handles the page's requests
        await page.reload()
        shown = page
    else:  # the tab goes, then the user opens the page's address again
        await page.close()
        shown = await page.context.new_page()
        await resumed.install(shown)
        await open_page(shown, stack, token)
    card = file_card(shown, "interrupted.bin", "ready")
    await card.wait_for(timeout=90_000)
    assert resumed.sent, "the upload did not go on"
    assert not {1, 2, 3} & set(resumed.sent), resumed.sent
    assert sorted({1, 2, 3, *resumed.sent}) == list(range(1, 6))
    gate.release()
    [file] = await token_files(api, token)
    assert file["sha256"] == hashlib.sha256(content).hexdigest()
    assert "Resuming 1 upload" in await shown.locator("#notice").inner_text()


async def test_an_infected_file_shows_quarantined_with_the_reason(
    page: Page, stack: Settings, api: httpx.AsyncClient, key_a: str, tmp_path: Path
) -> None:
    token = (await mint(api, key_a))["token"]
    await open_page(page, stack, token)
    await drop(page, write(tmp_path, "invoice.com", eicar()))
    card = file_card(page, "invoice.com", "quarantined")
    await card.wait_for(timeout=60_000)
    detail = await card.locator(".detail").inner_text()
    assert detail.startswith("infected:") and "EICAR" in detail, detail
    assert await card.locator(".status").inner_text() == "QUARANTINED"
    assert await card.locator(".thumb img").count() == 0


async def test_the_search_box_finds_a_word_of_a_scanned_page(
    page: Page, stack: Settings, api: httpx.AsyncClient, key_a: str, tmp_path: Path
) -> None:
    token = (await mint(api, key_a))["token"]
    await open_page(page, stack, token)
    memo = write(tmp_path, "memo.png", samples.text_image("quarterly pelican report"))
    other = write(tmp_path, "other.png", samples.text_image("nothing to see"))
    await page.locator("input.uppy-Dashboard-input").first.set_input_files([memo, other])
    await file_card(page, "memo.png", "ready").wait_for(timeout=90_000)
    await file_card(page, "other.png", "ready").wait_for(timeout=90_000)

    await page.fill("#search-input", "pelican")
    await page.press("#search-input", "Enter")
    results = page.locator("#results li.result")
    await results.first.wait_for()
    assert await results.count() == 1
    assert await results.first.locator(".name").inner_text() == "memo.png"
    assert await results.first.locator("img").count() == 1


async def test_a_page_of_another_origin_is_refused_with_a_clear_message(
    page: Page, stack: Settings, api: httpx.AsyncClient, key_a: str, tmp_path: Path
) -> None:
    token = (await mint(api, key_a))["token"]
    # The same API under a name that is not one of its origins (settings say 127.0.0.1).
    await open_page(page, stack, token, host="localhost")
    await drop(page, write(tmp_path, "note.txt", b"from the wrong place\n"))
    notice = page.locator("#notice")
    await notice.wait_for()
    message = await notice.inner_text()
    assert "http://localhost" in message and "CONVEYOR_CORS_ORIGINS" in message, message
    # Nothing was created, and the API refuses the page's own calls too.
    await asyncio.sleep(1)
    assert await token_files(api, token) == []
    status = await page.evaluate(
        """async (token) => (await fetch('/v1/uppy/' + token + '/s3/multipart', {
            method: 'POST',
            headers: {'content-type': 'application/json'},
            body: JSON.stringify({filename: 'x.bin', type: 'application/octet-stream'}),
        })).status""",
        token,
    )
    assert status == 403


@pytest.mark.parametrize("ended", ["expired", "revoked"])
async def test_a_token_that_ended_is_refused_and_the_page_says_so(
    ended: str,
    page: Page,
    stack: Settings,
    api: httpx.AsyncClient,
    key_a: str,
    sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    minted = await mint(api, key_a)
    await open_page(page, stack, minted["token"])
    if ended == "expired":  # as if its hour had passed while the page stayed open
        with sessions.begin() as session:
            session.execute(
                update(UploadToken)
                .where(UploadToken.id == uuid.UUID(minted["id"]))
                .values(expires_at=UploadToken.created_at)
            )
    else:
        revoked = await api.delete(f"/v1/upload-tokens/{minted['id']}", headers=auth(key_a))
        assert revoked.status_code == 204
    name = f"late-{uuid.uuid4().hex}.txt"  # no other test's file has this name
    await drop(page, write(tmp_path, name, b"too late\n"))
    notice = page.locator("#notice")
    await notice.wait_for()
    await page.wait_for_function(
        "() => document.querySelector('#notice').textContent.includes('expired')"
    )
    assert await page.locator("#sign-in").is_visible()
    assert all(f["filename"] != name for f in await token_files(api, key_a))
