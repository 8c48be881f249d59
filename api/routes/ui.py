"""`/ui`: the upload page. Uppy's Dashboard sends files straight to the store through the Uppy
routes (api/routes/uppy.py) with an upload token; the page then follows each file's events
and searches the token's files. Plain HTML and the prebuilt Uppy bundle (api/ui/vendor),
nothing to build.

The token comes in the address's fragment (`/ui#token=cvu_...`), which browsers never send
to a server; the page keeps it in the tab's session storage and drops it from the address.
"""

from __future__ import annotations

import json
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from conveyor_core.settings import Settings

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
ASSETS_PATH = "/ui/assets"
# A multipart upload's parts: a sixteenth of the file, from 8 MiB (S3's smallest is 5 MiB)
# to 64 MiB. Small parts lose little to a pause; Chromium sends large files faster in large
# parts (bench.browser_upload: 256 MiB went at 89 MiB/s in 8 MiB parts, 104 in 16, 115 in 64).
PART_SIZE = 8 * 1024**2
MAX_PART_SIZE = 64 * 1024**2
# Past this a file goes up in parts (pausable, resumable after a reload); below it, one
# form POST.
MULTIPART_FROM = 16 * 1024**2
# What the widget keeps in the browser (IndexedDB) to resume after the tab closed.
RESUMABLE_UP_TO = 1024**3


def _origin(url: str) -> str:
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc}"


def _page(settings: Settings) -> str:
    config = {
        "origins": settings.browser_origins,
        "maxFileSize": settings.max_file_size,
        "partSize": PART_SIZE,
        "maxPartSize": MAX_PART_SIZE,
        "multipartFrom": MULTIPART_FROM,
        "resumableUpTo": RESUMABLE_UP_TO,
    }
    # `</` cannot end the script element the JSON sits in.
    embedded = json.dumps(config).replace("</", "<\\/")
    return Template((UI_DIR / "index.html").read_text()).substitute(
        config=embedded, assets=ASSETS_PATH
    )


def _policy(settings: Settings) -> str:
    """The page runs only its own scripts; it talks to the API, and to the store (uploads,
    thumbnails) and the edge (public files), nothing else."""
    store = _origin(settings.s3_public_endpoint)
    edge = _origin(settings.edge_public_url or settings.edge)
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            # Uppy's Dashboard sets style attributes.
            "style-src 'self' 'unsafe-inline'",
            f"img-src 'self' blob: data: {store} {edge}",
            f"connect-src 'self' {store}",
            "font-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def ui_router(settings: Settings) -> APIRouter:
    """`GET /ui`, its page rendered once for these settings."""
    router = APIRouter(tags=["ui"], include_in_schema=False)
    page = _page(settings)
    headers = {
        "Content-Security-Policy": _policy(settings),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }

    @router.get("/ui")
    async def upload_page() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    return router


def assets() -> StaticFiles:
    """The page's script, style and the vendored Uppy bundle."""
    return StaticFiles(directory=UI_DIR / "assets")
