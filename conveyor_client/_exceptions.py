"""The errors the client raises: every one is a `ConveyorError`.

ConveyorError(code, message, status)
├── APIError                   the API answered 4xx/5xx with `{"error": {"code", "message"}}`
│   ├── ValidationError        400, 422 (invalid_request, missing_parts, etag_mismatch, ...)
│   │   └── PayloadTooLargeError   413 file_too_large
│   ├── AuthenticationError    401 missing_api_key | invalid_api_key
│   ├── PermissionDeniedError  403 file_quarantined
│   ├── NotFoundError          404 file_not_found | upload_not_found | text_not_available
│   │   └── GoneError          410 file_deleted
│   ├── ConflictError          409 file_not_ready | file_not_finished
│   └── ServerError            5xx (a 503 means a dependency is down: retry later)
├── StoreError                 the object store refused bytes (code is the store's, e.g. BadDigest)
├── TransportError             no answer at all: connection refused or reset, timeout
├── IntegrityError             downloaded bytes did not match the file's size and SHA-256
├── WaitTimeout                a file did not reach a terminal status in time
├── WebhookSignatureError      a received webhook's signature is missing, stale or wrong
└── UploadPaused               an upload stopped on request; its state is kept for resuming
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from conveyor_client._models import UploadProgress


class ConveyorError(Exception):
    """Base of every error the client raises.

    Attributes:
        code: A stable snake_case code (the API's own code for API errors).
        message: One human sentence.
        status: The HTTP status that carried the error, if any.
    """

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __str__(self) -> str:
        where = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.code}: {self.message}{where}"


class APIError(ConveyorError):
    """The API answered with an error status."""


class ValidationError(APIError):
    """The API refused the request as invalid (400 or 422)."""


class PayloadTooLargeError(ValidationError):
    """The declared file is larger than the API accepts (413)."""


class AuthenticationError(APIError):
    """The API key is missing or not valid (401)."""


class PermissionDeniedError(APIError):
    """The request is not allowed, e.g. the bytes of a quarantined file (403)."""


class NotFoundError(APIError):
    """No such file or upload for this API key's tenant (404)."""


class GoneError(NotFoundError):
    """The file was deleted (410)."""


class ConflictError(APIError):
    """The resource is not in a state that allows the request (409)."""


class ServerError(APIError):
    """The API failed (5xx); a 503 means one of its dependencies is down."""


class StoreError(ConveyorError):
    """The object store refused a pre-signed request; `code` is the store's (e.g. BadDigest)."""


class TransportError(ConveyorError):
    """No HTTP answer: the connection failed, was reset, or timed out."""


class IntegrityError(ConveyorError):
    """Downloaded bytes did not match the file's size and SHA-256 (`checksum_mismatch`)."""


class WaitTimeout(ConveyorError):
    """A file did not reach a terminal status within the time given."""


class UploadPaused(ConveyorError):
    """An upload stopped on request (stop event or Ctrl-C) after its in-flight parts.

    A path's multipart upload keeps its state: calling `Client.upload` again with the same
    path resumes it from the parts the store holds (a single PUT starts again). A file
    object's upload cannot be resumed, nothing says the next object holds the same bytes, so
    it was cancelled instead.

    Attributes:
        progress: Where the upload stood when it stopped.
        resumable: False for a file object's upload, which was cancelled.
    """

    def __init__(self, progress: UploadProgress, *, resumable: bool = True) -> None:
        at = f"at {progress.bytes_done} of {progress.bytes_total} bytes"
        super().__init__(
            "upload_paused",
            f"Upload paused {at}; upload the same file again to resume."
            if resumable
            else f"Upload stopped {at} and cancelled: a file object cannot be resumed.",
        )
        self.progress = progress
        self.resumable = resumable


_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    413: PayloadTooLargeError,
    422: ValidationError,
}


def error_class(status: int) -> type[APIError]:
    """The exception class for an API error status."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, APIError)


def api_error(status: int, body: Any, text: str = "") -> APIError:
    """Builds the exception for an API error answer from its status and decoded JSON body."""
    code, message = f"http_{status}", text.strip()[:500] or f"HTTP {status}"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
    return error_class(status)(code, message, status)


def from_response(response: httpx.Response) -> APIError:
    """Builds the exception for an API error response (whose body has been read)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    return api_error(response.status_code, body, response.text)


_S3_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]{0,500})</Message>")


def store_error(status: int, text: str) -> StoreError:
    """Builds the exception for an object-store error answer (S3 XML) to a pre-signed URL."""
    code = _S3_CODE.search(text)
    message = _S3_MESSAGE.search(text)
    return StoreError(
        code.group(1) if code else f"http_{status}",
        message.group(1) if message and message.group(1) else f"the store answered {status}",
        status,
    )


def transport_error(error: httpx.TransportError, what: str) -> TransportError:
    """Wraps an httpx transport failure with what was being done."""
    kind = "timeout" if isinstance(error, httpx.TimeoutException) else "connection_error"
    return TransportError(kind, f"{what}: {error.__class__.__name__}: {error}".rstrip(": "))
