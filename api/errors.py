"""Domain errors and the one error shape: `{"error": {"code", "message"}}`.

Every code is an `ErrorCode`, with one status (`STATUS`):

ConveyorError(message, code=...)
├── Unauthorized             401 missing_api_key | invalid_api_key | upload_token_expired
├── Forbidden                403 file_quarantined | upload_token_not_allowed |
│                                upload_token_used_up | content_type_not_allowed |
│                                visibility_not_allowed
├── NotFound                 404 upload_not_found | file_not_found | text_not_available |
│                                webhook_not_found | upload_token_not_found
├── BadRequest               400 invalid_parts | missing_parts | etag_mismatch | checksum_mismatch |
│                                invalid_cursor | invalid_url | invalid_events |
│                                invalid_last_event_id
├── Conflict                 409 file_not_ready | file_not_finished | upload_not_active |
│                                not_multipart | not_retryable | bytes_gone
├── Gone                     410 file_deleted
├── PayloadTooLarge          413 file_too_large | file_quota_exceeded | storage_quota_exceeded |
│                                request_too_large
├── Unprocessable            422 invalid_request | idempotency_key_reused | invalid_filename |
│                                invalid_content_type
├── TooManyRequests          429 rate_limited | too_many_streams (with Retry-After)
└── ServiceUnavailable       503 dependency_unavailable (a dependency is down; retry later)

Outside the routes: an unknown address answers 404 `not_found`, a method the address does
not take 405 `method_not_allowed`; a request that fails validation or whose body is not
readable JSON 422 `invalid_request` (`invalid_filename`, `invalid_content_type` for those
fields); a value the database refuses (out of range, too long, a NUL) 422 `invalid_request`
too; a body over the size cap 413 `request_too_large`, refused before it is read (see
`api/middleware.py`); anything unexpected 500 `internal_error`, which is always a bug.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError as SQLAlchemyDataError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from observability.metrics import API_ERRORS

log = logging.getLogger(__name__)


class ErrorCode(StrEnum):
    """Every `error.code` the API answers; `STATUS` gives each one's HTTP status."""

    MISSING_API_KEY = "missing_api_key"
    INVALID_API_KEY = "invalid_api_key"
    UPLOAD_TOKEN_EXPIRED = "upload_token_expired"
    FILE_QUARANTINED = "file_quarantined"
    UPLOAD_TOKEN_NOT_ALLOWED = "upload_token_not_allowed"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    UPLOAD_TOKEN_USED_UP = "upload_token_used_up"
    CONTENT_TYPE_NOT_ALLOWED = "content_type_not_allowed"
    VISIBILITY_NOT_ALLOWED = "visibility_not_allowed"
    NOT_FOUND = "not_found"
    UPLOAD_NOT_FOUND = "upload_not_found"
    FILE_NOT_FOUND = "file_not_found"
    TEXT_NOT_AVAILABLE = "text_not_available"
    WEBHOOK_NOT_FOUND = "webhook_not_found"
    UPLOAD_TOKEN_NOT_FOUND = "upload_token_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INVALID_PARTS = "invalid_parts"
    MISSING_PARTS = "missing_parts"
    ETAG_MISMATCH = "etag_mismatch"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    INVALID_CURSOR = "invalid_cursor"
    INVALID_URL = "invalid_url"
    INVALID_EVENTS = "invalid_events"
    INVALID_LAST_EVENT_ID = "invalid_last_event_id"
    FILE_NOT_READY = "file_not_ready"
    FILE_NOT_FINISHED = "file_not_finished"
    UPLOAD_NOT_ACTIVE = "upload_not_active"
    NOT_MULTIPART = "not_multipart"
    NOT_RETRYABLE = "not_retryable"
    BYTES_GONE = "bytes_gone"
    FILE_DELETED = "file_deleted"
    FILE_TOO_LARGE = "file_too_large"
    FILE_QUOTA_EXCEEDED = "file_quota_exceeded"
    STORAGE_QUOTA_EXCEEDED = "storage_quota_exceeded"
    REQUEST_TOO_LARGE = "request_too_large"
    INVALID_REQUEST = "invalid_request"
    INVALID_FILENAME = "invalid_filename"
    INVALID_CONTENT_TYPE = "invalid_content_type"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_STREAMS = "too_many_streams"
    INTERNAL_ERROR = "internal_error"
    DEPENDENCY_UNAVAILABLE = "dependency_unavailable"


STATUS: dict[ErrorCode, int] = {
    ErrorCode.MISSING_API_KEY: 401,
    ErrorCode.INVALID_API_KEY: 401,
    ErrorCode.UPLOAD_TOKEN_EXPIRED: 401,
    ErrorCode.FILE_QUARANTINED: 403,
    ErrorCode.UPLOAD_TOKEN_NOT_ALLOWED: 403,
    ErrorCode.ORIGIN_NOT_ALLOWED: 403,
    ErrorCode.UPLOAD_TOKEN_USED_UP: 403,
    ErrorCode.CONTENT_TYPE_NOT_ALLOWED: 403,
    ErrorCode.VISIBILITY_NOT_ALLOWED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UPLOAD_NOT_FOUND: 404,
    ErrorCode.FILE_NOT_FOUND: 404,
    ErrorCode.TEXT_NOT_AVAILABLE: 404,
    ErrorCode.WEBHOOK_NOT_FOUND: 404,
    ErrorCode.UPLOAD_TOKEN_NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.INVALID_PARTS: 400,
    ErrorCode.MISSING_PARTS: 400,
    ErrorCode.ETAG_MISMATCH: 400,
    ErrorCode.CHECKSUM_MISMATCH: 400,
    ErrorCode.INVALID_CURSOR: 400,
    ErrorCode.INVALID_URL: 400,
    ErrorCode.INVALID_EVENTS: 400,
    ErrorCode.INVALID_LAST_EVENT_ID: 400,
    ErrorCode.FILE_NOT_READY: 409,
    ErrorCode.FILE_NOT_FINISHED: 409,
    ErrorCode.UPLOAD_NOT_ACTIVE: 409,
    ErrorCode.NOT_MULTIPART: 409,
    ErrorCode.NOT_RETRYABLE: 409,
    ErrorCode.BYTES_GONE: 409,
    ErrorCode.FILE_DELETED: 410,
    ErrorCode.FILE_TOO_LARGE: 413,
    ErrorCode.FILE_QUOTA_EXCEEDED: 413,
    ErrorCode.STORAGE_QUOTA_EXCEEDED: 413,
    ErrorCode.REQUEST_TOO_LARGE: 413,
    ErrorCode.INVALID_REQUEST: 422,
    ErrorCode.INVALID_FILENAME: 422,
    ErrorCode.INVALID_CONTENT_TYPE: 422,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: 422,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.TOO_MANY_STREAMS: 429,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.DEPENDENCY_UNAVAILABLE: 503,
}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ConveyorError(Exception):
    """A domain error: its class gives the status, its code says which one (`ErrorCode`).

    The classes with one code set it; the others (NotFound, BadRequest, ...) are raised
    with `code=`.
    """

    status = 400
    code: ErrorCode

    def __init__(
        self, message: str, *, code: ErrorCode | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        if code is not None:
            self.code = code
        if STATUS[self.code] != self.status:  # AttributeError too when no code was given
            raise TypeError(f"{self.code} is a {STATUS[self.code]}, not a {self.status}")


class Unauthorized(ConveyorError):
    status = 401
    code = ErrorCode.INVALID_API_KEY


class NotFound(ConveyorError):
    status = 404


class BadRequest(ConveyorError):
    status = 400


class Forbidden(ConveyorError):
    status = 403


class Conflict(ConveyorError):
    status = 409


class Gone(ConveyorError):
    status = 410


class PayloadTooLarge(ConveyorError):
    status = 413
    code = ErrorCode.FILE_TOO_LARGE


class Unprocessable(ConveyorError):
    status = 422


class TooManyRequests(ConveyorError):
    status = 429
    code = ErrorCode.RATE_LIMITED


class ServiceUnavailable(ConveyorError):
    status = 503
    code = ErrorCode.DEPENDENCY_UNAVAILABLE


def error_response(code: ErrorCode, message: str, **headers: str) -> JSONResponse:
    API_ERRORS.labels(code.value).inc()
    body = ErrorBody(error=ErrorDetail(code=code.value, message=message))
    return JSONResponse(
        status_code=STATUS[code], content=body.model_dump(), headers=headers or None
    )


def responses(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the codes a route can answer: one per status, whose
    description names its codes (`a | b`). Every route may answer 422 `invalid_request` (a
    path, query or body it cannot read) and 413 `request_too_large` (a body over the cap)."""
    by_status: dict[int, list[str]] = {}
    for code in (*codes, ErrorCode.INVALID_REQUEST, ErrorCode.REQUEST_TOO_LARGE):
        named = by_status.setdefault(STATUS[code], [])
        if code.value not in named:
            named.append(code.value)
    return {
        status: {"model": ErrorBody, "description": " | ".join(named)}
        for status, named in sorted(by_status.items())
    }


# What every route behind an API key (or an upload token) may answer, whatever it does.
AUTHENTICATED = responses(
    ErrorCode.MISSING_API_KEY,
    ErrorCode.INVALID_API_KEY,
    ErrorCode.UPLOAD_TOKEN_EXPIRED,
    ErrorCode.UPLOAD_TOKEN_NOT_ALLOWED,
    ErrorCode.ORIGIN_NOT_ALLOWED,
    ErrorCode.RATE_LIMITED,
    ErrorCode.DEPENDENCY_UNAVAILABLE,
)

# Starlette's own errors: no route, no such method, a body that is not readable JSON (such
# as bytes that are not UTF-8), which is as invalid as malformed JSON.
_HTTP_ERRORS = {
    400: (ErrorCode.INVALID_REQUEST, "The request body could not be read as JSON."),
    413: (ErrorCode.REQUEST_TOO_LARGE, "The request body is larger than this API accepts."),
    404: (ErrorCode.NOT_FOUND, "There is nothing at this address."),
    405: (ErrorCode.METHOD_NOT_ALLOWED, "This address does not accept that method."),
}


# Request bodies whose validators answer codes of their own (`validation_answer`): every
# route taking one may answer them.
_BODY_CODES: dict[str, tuple[ErrorCode, ...]] = {
    "UploadCreate": (ErrorCode.INVALID_FILENAME, ErrorCode.INVALID_CONTENT_TYPE),
}


def _document_body_codes(operation: dict[str, Any]) -> None:
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    model = body.get("schema", {}).get("$ref", "").rpartition("/")[2]
    for code in _BODY_CODES.get(model, ()):
        response = operation.setdefault("responses", {}).get(str(STATUS[code]))
        if response is not None and code.value not in response["description"].split(" | "):
            response["description"] += f" | {code.value}"


def document_errors_as_json(app: FastAPI) -> None:
    """FastAPI files a route's error bodies under the route's own media type (text/plain for
    the OCR text, text/event-stream for events); errors are always JSON, so say so. Routes
    taking a body with codes of its own (`_BODY_CODES`) name them too."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            for operations in spec.get("paths", {}).values():
                for operation in operations.values():
                    _document_body_codes(operation)
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        for media in [m for m in content if m != "application/json"]:
                            ref = content[media].get("schema", {}).get("$ref", "")
                            if status[0] in "45" and ref.endswith("/ErrorBody"):
                                content["application/json"] = content.pop(media)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# Validators name these codes as their error type (PydanticCustomError): the answer says
# which field was refused and why with its own code, instead of `invalid_request`.
_VALIDATION_CODES = {ErrorCode.INVALID_FILENAME, ErrorCode.INVALID_CONTENT_TYPE}


def validation_answer(exc: RequestValidationError) -> tuple[ErrorCode, str]:
    """The code and message for a request that failed validation: the first error with a
    code of its own, else the first error, as `invalid_request`."""
    errors = exc.errors()
    if not errors:
        return ErrorCode.INVALID_REQUEST, "The request is not valid."
    coded = [e for e in errors if e.get("type") in _VALIDATION_CODES]
    first = coded[0] if coded else errors[0]
    code = ErrorCode(first["type"]) if coded else ErrorCode.INVALID_REQUEST
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    return code, f"{where or 'request'}: {first.get('msg', 'invalid value')}."


def is_data_error(exc: BaseException) -> bool:
    """A value Postgres (or psycopg, before sending it) refuses: SQLSTATE class 22, such as
    a number out of range, a string too long, bytes not in the encoding or a NUL in text.
    The request's fault, not the database's."""
    return isinstance(exc, SQLAlchemyDataError) or isinstance(
        getattr(exc, "orig", None), psycopg.DataError
    )


def answer_for(exc: Exception) -> JSONResponse:
    """The error answer for an exception raised outside the routes (the middleware),
    as the handlers below would give it."""
    if isinstance(exc, ConveyorError):
        return error_response(exc.code, exc.message, **exc.headers)
    if isinstance(exc, DBAPIError | BotoCoreError | RPCError) and not is_data_error(exc):
        return _unavailable(exc)
    log.exception("unhandled error", exc_info=exc)
    return error_response(ErrorCode.INTERNAL_ERROR, "An unexpected error occurred.")


def _unavailable(exc: Exception) -> JSONResponse:
    # A dependency being down is not a bug: say so, and let the client retry.
    log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
    return error_response(
        ErrorCode.DEPENDENCY_UNAVAILABLE,
        "A service Conveyor depends on is unavailable; try again shortly.",
        **{"Retry-After": "5"},
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ConveyorError)
    async def _conveyor(_: Request, exc: ConveyorError) -> JSONResponse:
        return error_response(exc.code, exc.message, **exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(*validation_answer(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        known = _HTTP_ERRORS.get(exc.status_code)
        if known is None:  # no route raises HTTPException itself: map any new one above
            log.error("unmapped HTTP error %s: %s", exc.status_code, exc.detail)
            return error_response(ErrorCode.INTERNAL_ERROR, "An unexpected error occurred.")
        return error_response(*known)

    @app.exception_handler(DBAPIError)
    @app.exception_handler(BotoCoreError)
    @app.exception_handler(RPCError)
    async def _dependency(_: Request, exc: Exception) -> JSONResponse:
        if is_data_error(exc):
            # A value no route checked and the database refused: the request's fault.
            log.info("database refused a value: %s", exc)
            return error_response(
                ErrorCode.INVALID_REQUEST, "A value in the request is out of the range allowed."
            )
        return _unavailable(exc)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(ErrorCode.INTERNAL_ERROR, "An unexpected error occurred.")
