"""Public files cannot become stored XSS: what the edge serves inline, and the headers on
every answer, for files uploaded through the real API and workflow."""

from __future__ import annotations

import uuid

import httpx
import pytest

from conveyor_core.settings import Settings
from tests.integration import samples
from tests.integration.uploads import upload

pytestmark = pytest.mark.integration

HTML = b"<!DOCTYPE html>\n<html><body><script>alert(1)</script></body></html>\n"
SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<script>alert(1)</script><rect width="10" height="10"/></svg>\n'
)


def _assert_hardened(response: httpx.Response) -> None:
    assert response.headers.get("x-content-type-options") == "nosniff", response.headers
    assert response.headers.get("content-security-policy") == "sandbox", response.headers


def _assert_download(response: httpx.Response) -> None:
    assert response.status_code == 200
    _assert_hardened(response)
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.headers.get_list("content-type") == ["application/octet-stream"]


async def test_edge_serves_html_and_svg_only_as_downloads(
    api: httpx.AsyncClient, key_a: str, stack: Settings
) -> None:
    # Unique bytes, so each run publishes (and the edge caches) an object of its own.
    marker = f"<!-- {uuid.uuid4()} -->\n".encode()
    for content, declared, name in (
        (HTML + marker, "text/html", "page.html"),
        (SVG + marker, "image/svg+xml", "logo.svg"),
    ):
        file = await upload(
            api, key_a, content, content_type=declared, filename=name, visibility="public"
        )
        assert file["status"] == "ready", file
        assert file["cdn_url"], file
        miss = httpx.get(file["cdn_url"])
        hit = httpx.get(file["cdn_url"])
        assert miss.content == hit.content == content
        for response in (miss, hit):  # the cached copy is served as safely as the first
            _assert_download(response)
        # Nor does asking for another type or a range change what the browser is told.
        _assert_download(httpx.get(file["cdn_url"], params={"response-content-type": declared}))
        ranged = httpx.get(file["cdn_url"], headers={"Range": "bytes=0-9"})
        assert ranged.status_code == 206
        _assert_hardened(ranged)
        assert ranged.headers["content-disposition"].startswith("attachment")
        # The edge's origin bucket is anonymous-read on the store's own port: the copy there
        # is stored as a download too, not with the type the page declared.
        direct = httpx.get(f"{stack.s3_public_endpoint}/{stack.public_bucket}/{file['sha256']}")
        assert direct.status_code == 200 and direct.content == content
        assert direct.headers["content-type"] == "application/octet-stream"
        assert direct.headers["content-disposition"] == "attachment"


async def test_edge_serves_images_and_text_inline_with_a_fixed_charset(
    api: httpx.AsyncClient, key_a: str
) -> None:
    png = samples.text_image(f"EDGE {uuid.uuid4().hex[:8]}")
    image = await upload(api, key_a, png, content_type="image/png", visibility="public")
    served = httpx.get(image["cdn_url"])
    assert served.status_code == 200 and served.content == png
    _assert_hardened(served)
    assert served.headers.get_list("content-type") == ["image/png"]
    assert served.headers["content-disposition"] == "inline"

    text = f"plain words {uuid.uuid4()}\nnothing else\n".encode()
    note = await upload(
        api, key_a, text, content_type="text/plain", filename="note.txt", visibility="public"
    )
    served = httpx.get(note["cdn_url"])
    assert served.status_code == 200 and served.content == text
    _assert_hardened(served)
    assert served.headers.get_list("content-type") == ["text/plain; charset=utf-8"]
    assert served.headers["content-disposition"] == "inline"
    revalidated = httpx.get(note["cdn_url"], headers={"If-None-Match": served.headers["etag"]})
    assert revalidated.status_code in (200, 304)
    _assert_hardened(revalidated)


def test_edge_errors_carry_the_security_headers(stack: Settings) -> None:
    missing = httpx.get(f"{stack.edge}/{'0' * 64}")
    assert missing.status_code == 404
    _assert_hardened(missing)
    root = httpx.get(f"{stack.edge}/")
    assert root.status_code == 404
    _assert_hardened(root)
    refused = httpx.post(f"{stack.edge}/{'0' * 64}", content=b"x")
    assert refused.status_code == 405
    _assert_hardened(refused)
    purge = httpx.get(f"{stack.edge}/_purge/{'0' * 32}")
    assert purge.status_code in (403, 405)
    _assert_hardened(purge)
