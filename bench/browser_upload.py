"""Browser uploads through the upload page (`/ui`, Uppy in Debian's Chromium) against the SDK,
same stack, same sizes, same run; medians of several runs:

- throughput: a large file dropped on the page (Uppy's multipart: the page's part size, 6
  at a time, each signed by the API) until Uppy says it uploaded, against the Python SDK's
  `upload` of a file of the same size until it returns (the bytes are in the store);
- the browser's own ceiling, in the same page: the same parts sent by bare `fetch` PUTs, 6
  at a time, signed beforehand (no Uppy, no signing on the way);
- drop to thumbnail: a photo dropped on the page until its thumbnail shows on the page,
  against the SDK's upload of the same kind of photo until the file is ready (the same pipeline
  without a browser).

Each measurement starts once the files before it are processed (a 256 MiB file's scan
would otherwise run beside the next upload). Needs the stack `make up` started and
Chromium (`make bench` installs it).

    .venv/bin/python -m bench.browser_upload [--size-mib 256] [--runs 3] [--photos 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from PIL import Image, ImageDraw
from playwright.async_api import Browser, Page, async_playwright

from api.routes.ui import MAX_PART_SIZE, PART_SIZE
from bench.upload import random_file
from conveyor_client import Client
from conveyor_core.settings import Settings, get_settings
from workers.cli import create_key

MIB = 1024 * 1024
CHROMIUM = os.environ.get("CONVEYOR_CHROMIUM", "/usr/bin/chromium")


def photo(path: Path, seed: int) -> Path:
    """A 3000x2000 JPEG with gradients and shapes: about what a phone sends. Its comment makes
    it unique: a repeat of earlier bytes would be a duplicate, not a first upload."""
    image = Image.new("RGB", (3000, 2000))
    draw = ImageDraw.Draw(image)
    for y in range(0, 2000, 4):
        draw.rectangle((0, y, 3000, y + 4), fill=((y * 7 + seed) % 256, (y // 8) % 256, 120))
    for i in range(60):
        x, y = (i * 97 + seed * 13) % 2800, (i * 53 + seed) % 1800
        draw.ellipse((x, y, x + 200, y + 150), fill=((i * 40) % 256, 200, (i * 17) % 256))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, comment=os.urandom(16).hex())
    path.write_bytes(buffer.getvalue())
    return path


@contextlib.asynccontextmanager
async def _ui_page(browser: Browser, settings: Settings, token: str) -> AsyncIterator[Page]:
    """The upload page holding the token, in a fresh browser profile (no cache, no state)."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(f"{settings.api_url}/ui#token={token}")
        await page.wait_for_selector("#workspace:not([hidden]) .uppy-Dashboard")
        yield page
    finally:
        await context.close()


async def _page_upload(browser: Browser, settings: Settings, token: str, path: Path) -> float:
    """Seconds from the drop to Uppy's upload-success, in a fresh browser profile."""
    async with _ui_page(browser, settings, token) as page:
        await page.evaluate(
            "() => { window.benchDone = new Promise((done, failed) => {"
            " window.conveyorUppy.once('upload-success', done);"
            " window.conveyorUppy.once('upload-error', (f, e) => failed(String(e))) }) }"
        )
        started = time.perf_counter()
        await page.locator("input.uppy-Dashboard-input").first.set_input_files(path)
        await page.evaluate("() => window.benchDone.then(() => true)")
        return time.perf_counter() - started


# Bytes only, from the same page: the parts signed first, then PUT 6 at a time (Chromium's
# connections per host) with fetch; the upload is aborted after, not processed.
_BARE_PARTS = """async ({token, partSize}) => {
  const file = document.getElementById('bench-file').files[0]
  const base = `/v1/uppy/${token}/s3/multipart`
  const created = await (await fetch(base, {method: 'POST',
    headers: {'content-type': 'application/json'},
    body: JSON.stringify({filename: file.name, type: 'application/octet-stream'})})).json()
  const query = `?key=${encodeURIComponent(created.key)}`
  const count = Math.ceil(file.size / partSize)
  const urls = []
  for (let n = 1; n <= count; n++) {
    urls.push((await (await fetch(`${base}/${created.uploadId}/${n}${query}`)).json()).url)
  }
  const started = performance.now()
  let next = 0
  const sender = async () => {
    while (next < count) {
      const i = next++
      const sent = await fetch(urls[i], {method: 'PUT',
        body: file.slice(i * partSize, Math.min(file.size, (i + 1) * partSize))})
      if (!sent.ok) throw new Error(`part ${i + 1}: ${sent.status}`)
    }
  }
  await Promise.all(Array.from({length: 6}, sender))
  const seconds = (performance.now() - started) / 1000
  await fetch(`${base}/${created.uploadId}${query}`, {method: 'DELETE'})
  return seconds
}"""


async def _page_bare_parts(
    browser: Browser, settings: Settings, token: str, path: Path, part_size: int
) -> float:
    """Seconds the page's browser takes to send the file's parts with nothing but fetch."""
    async with _ui_page(browser, settings, token) as page:
        await page.evaluate(
            "() => document.body.append(Object.assign(document.createElement('input'),"
            " {type: 'file', id: 'bench-file'}))"
        )
        await page.locator("#bench-file").set_input_files(path)
        seconds: float = await page.evaluate(_BARE_PARTS, {"token": token, "partSize": part_size})
        return seconds


async def _page_thumbnail(browser: Browser, settings: Settings, token: str, path: Path) -> float:
    """Seconds from the drop to the file's thumbnail loaded on the page."""
    async with _ui_page(browser, settings, token) as page:
        started = time.perf_counter()
        await page.locator("input.uppy-Dashboard-input").first.set_input_files(path)
        await page.wait_for_function(
            "() => [...document.querySelectorAll('li.file .thumb img')]"
            ".some(img => img.complete && img.naturalWidth > 0)",
            timeout=120_000,
        )
        return time.perf_counter() - started


def _settle(client: Client, timeout: float = 300) -> None:
    """Waits until no file of the tenant is still processing: each measurement starts on an
    idle stack, not beside the scan of the file before it."""
    deadline = time.monotonic() + timeout
    while any(True for _ in client.search(status="processing", limit=1)):
        if time.monotonic() > deadline:
            raise TimeoutError("files still processing after the timeout")
        time.sleep(0.2)


def _sdk_upload(client: Client, path: Path) -> float:
    started = time.perf_counter()
    client.upload(path)
    return time.perf_counter() - started


def _sdk_ready(client: Client, path: Path) -> float:
    started = time.perf_counter()
    uploaded = client.upload(path)
    client.wait_until_ready(uploaded.id, timeout=120)
    return time.perf_counter() - started


async def run(size_mib: int, runs: int, photos: int) -> dict[str, object]:
    settings = get_settings()
    key = create_key(settings, "bench-browser")
    page_s: list[float] = []
    bare_s: list[float] = []
    part = min(max(size_mib * MIB // 16, PART_SIZE), MAX_PART_SIZE)  # the page's own
    sdk_s: list[float] = []
    thumb_s: list[float] = []
    ready_s: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, Client(settings.api_url, key) as client:
        directory = Path(tmp)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox"]
            )
            for i in range(runs):
                # A new file each run: the same bytes again would be a duplicate.
                big = random_file(directory, size_mib * MIB)
                token = client.create_upload_token(max_files=10).token
                await asyncio.to_thread(_settle, client)
                page_s.append(await _page_upload(browser, settings, token, big))
                await asyncio.to_thread(_settle, client)
                bare_s.append(await _page_bare_parts(browser, settings, token, big, part))
                big.unlink()
                big = random_file(directory, size_mib * MIB)
                await asyncio.to_thread(_settle, client)
                sdk_s.append(await asyncio.to_thread(_sdk_upload, client, big))
                big.unlink()
                print(
                    f"run {i + 1}: page {page_s[-1]:.2f} s, bare parts {bare_s[-1]:.2f} s, "
                    f"sdk {sdk_s[-1]:.2f} s",
                    flush=True,
                )
            for i in range(photos):
                token = client.create_upload_token(max_files=10).token
                shot = photo(directory / f"photo-{i}.jpg", seed=2 * i)
                await asyncio.to_thread(_settle, client)
                thumb_s.append(await _page_thumbnail(browser, settings, token, shot))
                shot = photo(directory / f"photo-sdk-{i}.jpg", seed=2 * i + 1)
                await asyncio.to_thread(_settle, client)
                ready_s.append(await asyncio.to_thread(_sdk_ready, client, shot))
            await browser.close()
    page_rate = size_mib / statistics.median(page_s)
    bare_rate = size_mib / statistics.median(bare_s)
    sdk_rate = size_mib / statistics.median(sdk_s)
    return {
        "file_mib": size_mib,
        "part_mib": part // MIB,
        "runs": runs,
        "page_mib_s_median": round(page_rate, 1),
        "browser_bare_parts_mib_s_median": round(bare_rate, 1),
        "sdk_mib_s_median": round(sdk_rate, 1),
        "page_over_sdk": round(page_rate / sdk_rate, 2),
        "page_over_browser_bare_parts": round(page_rate / bare_rate, 2),
        "photos": photos,
        "photo_drop_to_thumbnail_ms_median": round(statistics.median(thumb_s) * 1000),
        "photo_sdk_upload_to_ready_ms_median": round(statistics.median(ready_s) * 1000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--photos", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.size_mib, args.runs, args.photos)), indent=2))


if __name__ == "__main__":
    main()
