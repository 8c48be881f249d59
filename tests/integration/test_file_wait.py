"""`GET /v1/files/{id}?wait=S`: the answer is held until the file ends, or S seconds (or
until the API process starts to stop).

A client learns the outcome the moment the run closes, with one request the Temporal
server answers (a long poll), instead of polling the status (a workflow query each time).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from conveyor_core.settings import Settings
from tests.helpers import assert_eventually
from tests.integration.uploads import auth, declare, mint, put, sample_bytes
from workers.stack import manage

pytestmark = pytest.mark.integration


async def _get(api: httpx.AsyncClient, key: str, file_id: str, wait: Any) -> httpx.Response:
    return await api.get(
        f"/v1/files/{file_id}", params={"wait": wait}, headers=auth(key), timeout=90
    )


async def test_a_held_answer_comes_when_the_file_is_ready(
    api: httpx.AsyncClient, key_a: str
) -> None:
    content = sample_bytes(700)
    created = await declare(api, key_a, content, filename="held-ready.txt")
    assert (await put(created, content)).status_code == 200
    started = time.monotonic()
    answer = await _get(api, key_a, created["file_id"], 30)
    took = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # Answered as the file became ready, long before the 30 s were up, in one request.
    assert body["status"] == "ready", body
    assert body["stages"]["scan"]["status"] == "succeeded", body
    assert took < 15, took


async def test_a_held_answer_for_a_file_that_does_not_end_comes_after_the_wait(
    api: httpx.AsyncClient, key_a: str
) -> None:
    created = await declare(api, key_a, sample_bytes(300), filename="held-never.txt")
    started = time.monotonic()
    answer = await _get(api, key_a, created["file_id"], 1.5)
    took = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "awaiting_upload"
    assert 1.4 <= took < 10, took


@pytest.mark.parametrize("wait", ["-1", "61", "nan", "inf", "soon"])
async def test_a_wait_out_of_range_is_refused(
    api: httpx.AsyncClient, key_a: str, wait: str
) -> None:
    created = await declare(api, key_a, sample_bytes(100), filename="held-refused.txt")
    answer = await _get(api, key_a, created["file_id"], wait)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and "wait" in error["message"], error


async def test_held_answers_hold_no_database_connection(api: httpx.AsyncClient, key_a: str) -> None:
    # More held answers than the API has database connections (10): were each holding one,
    # the request after them would wait for a connection until they all ended.
    files = [
        (await declare(api, key_a, sample_bytes(200), filename="held-pool.txt"))["file_id"]
        for _ in range(24)
    ]
    held = [asyncio.create_task(_get(api, key_a, f, 6)) for f in files]
    await asyncio.sleep(1.0)
    started = time.monotonic()
    listed = await api.get("/v1/files", params={"limit": 5}, headers=auth(key_a))
    assert listed.status_code == 200, listed.text
    assert time.monotonic() - started < 3
    assert not any(task.done() for task in held)
    answers = await asyncio.gather(*held)
    assert all(a.status_code == 200 and a.json()["status"] == "awaiting_upload" for a in answers)


async def test_an_upload_token_holds_at_most_eight_answers(
    api: httpx.AsyncClient, key_a: str
) -> None:
    # One browser cannot take the held answers of all the others: past eight, its next one
    # is answered at once, as if it had not asked to wait.
    token = (await mint(api, key_a, max_files=9))["token"]
    files = [
        (await declare(api, token, sample_bytes(100), filename="held-token.txt"))["file_id"]
        for _ in range(9)
    ]

    async def timed(file_id: str) -> float:
        started = time.monotonic()
        answer = await _get(api, token, file_id, 3)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "awaiting_upload"
        return time.monotonic() - started

    took = sorted(await asyncio.gather(*(timed(f) for f in files)))
    assert took[0] < 1.5, took
    assert all(t >= 2.9 for t in took[1:]), took


async def test_a_stopping_api_gives_its_held_answers_at_once(
    api: httpx.AsyncClient, key_a: str, stack: Settings
) -> None:
    # A restart must not wait out (or cut off) answers held for up to a minute: each is
    # given as the file stands, and the process stops in seconds.
    created = await declare(api, key_a, sample_bytes(100), filename="held-restart.txt")
    held = asyncio.create_task(_get(api, key_a, created["file_id"], 60))
    await asyncio.sleep(1.0)
    started = time.monotonic()
    await asyncio.to_thread(manage.supervisorctl, stack, "restart", "api")
    restarted_in = time.monotonic() - started
    answer = await asyncio.wait_for(held, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "awaiting_upload"
    assert restarted_in < 10, restarted_in

    async def serving() -> None:
        # supervisord calls it running after 1 s; it listens once its imports are done.
        try:
            answer = await api.get("/healthz")
        except httpx.TransportError as e:
            raise AssertionError(f"the API is not listening yet: {e}") from e
        assert answer.status_code == 200

    await assert_eventually(serving, timeout=30)
