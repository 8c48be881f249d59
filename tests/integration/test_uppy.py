"""`/v1/uppy/<token>/s3/...`: the calls `@uppy/aws-s3` 6.x makes in companion mode (read from
its `lib/s3-client/CompanionS3.js`), made here as the plugin makes them, against the real API
and store: a form upload (POST policy), a multipart upload resumed from the parts the store
lists, an abort, and what a hostile page tries."""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

import httpx
import pytest

from conveyor_core.settings import Settings
from tests.integration import samples
from tests.integration.uploads import auth, mint, wait_until_terminal

MIB = 1024 * 1024


class Uppy:
    """What CompanionS3 does, call for call: `fetch(<endpoint>/s3<path>)` with no headers but
    a JSON content type, then the store requests it signs."""

    def __init__(self, api: httpx.AsyncClient, token: str) -> None:
        self.api = api
        self.endpoint = f"/v1/uppy/{token}"
        self.token = token

    async def fetch(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.api.request(method, f"{self.endpoint}/s3{path}", **kwargs)

    async def put_object(self, name: str, content_type: str, data: bytes) -> dict[str, Any]:
        params = {"filename": name, "type": content_type, "metadata[name]": name}
        signed = await self.fetch("GET", "/params", params=params)
        assert signed.status_code == 200, signed.text
        url, fields = signed.json()["url"], signed.json()["fields"]
        async with httpx.AsyncClient(timeout=60) as store:
            posted = await store.post(url, data=fields, files={"file": (name, data)})
        return {"status": posted.status_code, "text": posted.text, "key": fields["key"]}

    async def create_multipart(self, name: str, content_type: str) -> dict[str, str]:
        body = {"filename": name, "type": content_type, "metadata": {"name": name}}
        created = await self.fetch("POST", "/multipart", json=body)
        assert created.status_code == 200, created.text
        return {"key": created.json()["key"], "uploadId": created.json()["uploadId"]}

    async def upload_part(self, up: dict[str, str], number: int, data: bytes) -> str:
        signed = await self.fetch(
            "GET", f"/multipart/{up['uploadId']}/{number}", params={"key": up["key"]}
        )
        assert signed.status_code == 200, signed.text
        async with httpx.AsyncClient(timeout=60) as store:
            sent = await store.put(signed.json()["url"], content=data)
        assert sent.status_code == 200, sent.text
        return sent.headers["etag"]

    async def list_parts(self, up: dict[str, str]) -> list[dict[str, Any]]:
        listed = await self.fetch("GET", f"/multipart/{up['uploadId']}", params={"key": up["key"]})
        assert listed.status_code == 200, listed.text
        parts: list[dict[str, Any]] = listed.json()
        return parts

    async def complete(self, up: dict[str, str], parts: list[dict[str, Any]]) -> httpx.Response:
        return await self.fetch(
            "POST",
            f"/multipart/{up['uploadId']}/complete",
            params={"key": up["key"]},
            json={"parts": parts},
        )


async def _file_of(api: httpx.AsyncClient, token: str, key: str) -> str:
    """How the page finds the file of an upload: the upload id ends its key."""
    upload = await api.get(f"/v1/uploads/{key.rsplit('/', 1)[1]}", headers=auth(token))
    assert upload.status_code == 200, upload.text
    file_id: str = upload.json()["file_id"]
    return file_id


async def _content(api: httpx.AsyncClient, token: str, file_id: str) -> bytes:
    redirect = await api.get(f"/v1/files/{file_id}/content", headers=auth(token))
    assert redirect.status_code == 307, redirect.text
    async with httpx.AsyncClient(timeout=60) as store:
        return (await store.get(redirect.headers["location"])).content


async def test_a_small_file_goes_up_by_form_and_is_processed(
    api: httpx.AsyncClient, key_a: str
) -> None:
    token = (await mint(api, key_a, max_file_size=4 * MIB))["token"]
    uppy = Uppy(api, token)
    image = samples.text_image("FROM THE BROWSER")
    posted = await uppy.put_object("photo.png", "image/png", image)
    assert posted["status"] == 204, posted["text"]
    file_id = await _file_of(api, token, posted["key"])
    file = await wait_until_terminal(api, token, file_id)
    assert file["status"] == "ready", file
    # The size the widget never said is the bytes' own; nothing was refused for it.
    assert file["size"] == len(image) and file["sha256"] == hashlib.sha256(image).hexdigest()
    assert file["thumbnails"] and file["stages"]["verify"]["status"] == "succeeded"
    assert await _content(api, token, file_id) == image


async def test_the_form_takes_no_more_than_the_tokens_largest_file(
    api: httpx.AsyncClient, key_a: str
) -> None:
    token = (await mint(api, key_a, max_file_size=1000))["token"]
    posted = await Uppy(api, token).put_object("big.bin", "application/octet-stream", b"x" * 2000)
    assert posted["status"] == 400 and "EntityTooLarge" in posted["text"], posted
    # A form with another type than the one signed is refused by the store too.
    uppy = Uppy(api, token)
    signed = await uppy.fetch("GET", "/params", params={"filename": "a.txt", "type": "text/plain"})
    fields = signed.json()["fields"] | {"Content-Type": "text/html"}
    async with httpx.AsyncClient() as store:
        posted_html = await store.post(
            signed.json()["url"], data=fields, files={"file": ("a.txt", b"<script>")}
        )
    assert posted_html.status_code == 403, posted_html.text


async def test_a_large_file_resumes_from_the_parts_the_store_lists(
    api: httpx.AsyncClient, key_a: str
) -> None:
    token = (await mint(api, key_a, max_file_size=64 * MIB))["token"]
    uppy = Uppy(api, token)
    data = os.urandom(12 * MIB + 123)
    chunks = [data[i : i + 5 * MIB] for i in range(0, len(data), 5 * MIB)]
    up = await uppy.create_multipart("video.bin", "application/octet-stream")
    assert up["key"].endswith(up["uploadId"])
    await uppy.upload_part(up, 1, chunks[0])
    await uppy.upload_part(up, 2, chunks[1])
    # The tab closed here. Reopened, the widget asks what the store holds and sends the rest.
    held = await uppy.list_parts(up)
    assert [p["PartNumber"] for p in held] == [1, 2]
    assert [p["Size"] for p in held] == [5 * MIB, 5 * MIB]
    etag3 = await uppy.upload_part(up, 3, chunks[2])
    parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in held]
    parts.append({"PartNumber": 3, "ETag": etag3})
    done = await uppy.complete(up, parts)
    assert done.status_code == 200, done.text
    answer = done.json()
    assert answer["key"] == up["key"] and answer["location"].endswith(
        f"/v1/files/{answer['fileId']}"
    )
    file = await wait_until_terminal(api, token, answer["fileId"])
    assert file["status"] == "ready" and file["size"] == len(data), file
    assert file["sha256"] == hashlib.sha256(data).hexdigest()
    # Completing again (its answer lost) answers the same.
    again = await uppy.complete(up, parts)
    assert again.status_code == 200 and again.json() == answer


async def test_an_aborted_upload_ends_cancelled(api: httpx.AsyncClient, key_a: str) -> None:
    token = (await mint(api, key_a))["token"]
    uppy = Uppy(api, token)
    up = await uppy.create_multipart("gone.bin", "application/octet-stream")
    await uppy.upload_part(up, 1, os.urandom(5 * MIB))
    aborted = await uppy.fetch("DELETE", f"/multipart/{up['uploadId']}", params={"key": up["key"]})
    assert aborted.status_code == 204, aborted.text
    file = await wait_until_terminal(api, token, await _file_of(api, token, up["key"]))
    assert file["status"] == "cancelled"


async def test_what_a_hostile_page_tries(api: httpx.AsyncClient, key_a: str, key_b: str) -> None:
    token = (await mint(api, key_a, max_file_size=6 * MIB))["token"]
    other = (await mint(api, key_b))["token"]
    uppy = Uppy(api, token)
    up = await uppy.create_multipart("a.bin", "application/octet-stream")

    # An API key never stands in the address; neither does a made-up or revoked token.
    for credential, code in ((key_a, "invalid_api_key"), ("cvu_" + "x" * 43, "invalid_api_key")):
        refused = await Uppy(api, credential).fetch("POST", "/multipart", json={"filename": "a"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, code)
    # Another tenant's token, another key, or the plain parts route: nothing of this upload.
    theirs = await Uppy(api, other).fetch("GET", f"/multipart/{up['uploadId']}/1")
    assert (theirs.status_code, theirs.json()["error"]["code"]) == (404, "upload_not_found")
    wrong_key = await uppy.fetch(
        "GET", f"/multipart/{up['uploadId']}/1", params={"key": f"incoming/{uuid.uuid4()}/x"}
    )
    assert wrong_key.status_code == 400
    plain = await api.post(
        f"/v1/uploads/{up['uploadId']}/parts", json={"part_numbers": [1]}, headers=auth(token)
    )
    assert (plain.status_code, plain.json()["error"]["code"]) == (409, "not_multipart")
    # More bytes than the token allows: the parts go up (the store cannot count them across
    # parts), but the upload is never completed.
    etags = [await uppy.upload_part(up, n, os.urandom(5 * MIB)) for n in (1, 2)]
    both = [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]
    over = await uppy.complete(up, both)
    assert (over.status_code, over.json()["error"]["code"]) == (413, "file_too_large")
    # A part the store does not hold, or under another ETag.
    missing = await uppy.complete(up, [{"PartNumber": 3, "ETag": etags[0]}])
    assert missing.json()["error"]["code"] == "missing_parts"
    forged = await uppy.complete(up, [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}])
    assert forged.json()["error"]["code"] == "etag_mismatch"
    await uppy.fetch("DELETE", f"/multipart/{up['uploadId']}", params={"key": up["key"]})


@pytest.mark.parametrize("name", ["../etc/passwd", "evil\u202egpj.exe"])
async def test_a_bad_file_name_is_refused_with_a_reason(
    api: httpx.AsyncClient, key_a: str, name: str
) -> None:
    token = (await mint(api, key_a))["token"]
    refused = await Uppy(api, token).fetch("POST", "/multipart", json={"filename": name})
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_filename")


async def test_the_token_in_the_address_stays_out_of_logs_and_traces(
    api: httpx.AsyncClient, key_a: str, stack: Settings
) -> None:
    token = (await mint(api, key_a))["token"]
    uppy = Uppy(api, token)
    sent = await uppy.put_object("quiet.txt", "text/plain", b"not in the logs\n")
    assert sent["status"] == 204, sent["text"]
    await wait_until_terminal(api, token, await _file_of(api, token, sent["key"]))
    logs = (stack.state_path / "logs" / "api.log").read_text()
    traces = "".join(p.read_text() for p in (stack.state_path / "traces").glob("*"))
    assert "/v1/uppy/[token]/s3/params" in logs  # the access line is there, without it
    assert "/v1/uppy/[token]/s3/params" in traces
    assert token not in logs and token not in traces
