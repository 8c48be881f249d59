"""Error mapping of the client: the API's shape and codes, the store's XML, retry decisions."""

from __future__ import annotations

import httpx
import pytest

from conveyor_client import (
    APIError,
    AuthenticationError,
    ConflictError,
    ConveyorError,
    GoneError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ServerError,
    StoreError,
    TransportError,
    UploadPaused,
    UploadProgress,
    ValidationError,
)
from conveyor_client._exceptions import api_error, from_response, store_error, transport_error
from conveyor_client._http import is_transient


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ValidationError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (410, GoneError),
        (413, PayloadTooLargeError),
        (422, ValidationError),
        (418, APIError),
        (500, ServerError),
        (503, ServerError),
    ],
)
def test_status_maps_to_its_exception(status: int, cls: type[APIError]) -> None:
    error = api_error(status, {"error": {"code": "some_code", "message": "One sentence."}})
    assert type(error) is cls
    assert isinstance(error, ConveyorError)
    assert (error.code, error.message, error.status) == ("some_code", "One sentence.", status)


def test_gone_is_a_not_found() -> None:
    assert isinstance(api_error(410, None), NotFoundError)


def test_error_without_the_api_shape_keeps_status_and_text() -> None:
    response = httpx.Response(502, text="Bad Gateway")
    error = from_response(response)
    assert isinstance(error, ServerError)
    assert (error.code, error.message) == ("http_502", "Bad Gateway")


def test_api_error_from_response_reads_the_code() -> None:
    response = httpx.Response(
        400, json={"error": {"code": "missing_parts", "message": "Parts 3, 4 are missing."}}
    )
    error = from_response(response)
    assert isinstance(error, ValidationError)
    assert error.code == "missing_parts"
    assert "missing_parts" in str(error) and "400" in str(error)


def test_store_error_reads_the_s3_xml() -> None:
    xml = (
        '<?xml version="1.0"?><Error><Code>BadDigest</Code>'
        "<Message>The sha256 you specified did not match.</Message></Error>"
    )
    error = store_error(400, xml)
    assert isinstance(error, StoreError)
    assert (error.code, error.status) == ("BadDigest", 400)
    assert "did not match" in error.message
    assert store_error(500, "").code == "http_500"


def test_transport_error_says_what_failed() -> None:
    error = transport_error(httpx.ConnectTimeout("slow"), "PUT part 3")
    assert isinstance(error, TransportError)
    assert error.code == "timeout" and "PUT part 3" in error.message
    assert transport_error(httpx.ConnectError("refused"), "x").code == "connection_error"


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (TransportError("timeout", "t"), True),
        (httpx.ReadError("reset"), True),
        (ServerError("internal_error", "m", 500), True),
        (StoreError("AccessDenied", "expired", 403), True),  # ask for a fresh URL
        (StoreError("SlowDown", "m", 503), True),
        (StoreError("BadDigest", "m", 400), False),
        (ValidationError("invalid_request", "m", 422), False),
        (AuthenticationError("invalid_api_key", "m", 401), False),
        (NotFoundError("upload_not_found", "m", 404), False),
    ],
)
def test_which_failures_are_retried(error: BaseException, retry: bool) -> None:
    assert is_transient(error) is retry


def test_upload_paused_carries_its_progress() -> None:
    paused = UploadPaused(UploadProgress("u", "f", 10, 100, 1, 10, 0))
    assert paused.code == "upload_paused"
    assert paused.progress.bytes_done == 10
    assert paused.resumable and "resume" in paused.message
    cancelled = UploadPaused(UploadProgress("u", "f", 10, 100, 1, 10, 0), resumable=False)
    assert not cancelled.resumable and "cancelled" in cancelled.message
