"""Domain errors and the one error shape: `{"error": {"code", "message"}}`.

ConveyorError(code, message, status)
├── Unauthorized             401 missing_api_key | invalid_api_key
├── Forbidden                403 file_quarantined
├── NotFound                 404 upload_not_found | file_not_found | text_not_available |
│                                webhook_not_found
├── BadRequest               400 invalid_parts | missing_parts | etag_mismatch | invalid_cursor |
│                                invalid_url | invalid_events
├── Conflict                 409 file_not_ready | file_not_finished | upload_not_active |
│                                not_multipart | not_retryable | bytes_gone
├── Gone                     410 file_deleted
├── PayloadTooLarge          413 file_too_large | file_quota_exceeded | storage_quota_exceeded
├── TooManyRequests          429 rate_limited (with Retry-After)
└── ServiceUnavailable       503 dependency_unavailable (a dependency is down; retry later)

Validation failures answer 422 `invalid_request`; anything unexpected answers 500
`internal_error`, which is always a bug.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from observability.metrics import API_ERRORS

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ConveyorError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        if code is not None:
            self.code = code


class Unauthorized(ConveyorError):
    status = 401
    code = "invalid_api_key"


class NotFound(ConveyorError):
    status = 404
    code = "not_found"


class BadRequest(ConveyorError):
    status = 400
    code = "bad_request"


class Forbidden(ConveyorError):
    status = 403
    code = "forbidden"


class Conflict(ConveyorError):
    status = 409
    code = "conflict"


class Gone(ConveyorError):
    status = 410
    code = "gone"


class PayloadTooLarge(ConveyorError):
    status = 413
    code = "file_too_large"


class TooManyRequests(ConveyorError):
    status = 429
    code = "rate_limited"


class ServiceUnavailable(ConveyorError):
    status = 503
    code = "dependency_unavailable"


def error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    API_ERRORS.labels(code).inc()
    body = ErrorBody(error=ErrorDetail(code=code, message=message))
    return JSONResponse(status_code=status, content=body.model_dump(), headers=headers or None)


def responses(*errors: type[ConveyorError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the errors a route can answer."""
    documented: dict[int | str, dict[str, Any]] = {
        422: {"model": ErrorBody, "description": "invalid_request"}
    }
    for error in errors:
        documented[error.status] = {"model": ErrorBody, "description": error.code}
    return documented


_HTTP_ERRORS = {
    404: ("not_found", "There is nothing at this address."),
    405: ("method_not_allowed", "This address does not accept that method."),
}


def _first_validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "The request is not valid."
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    return f"{where or 'request'}: {first.get('msg', 'invalid value')}."


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ConveyorError)
    async def _conveyor(_: Request, exc: ConveyorError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, **exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _first_validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = _HTTP_ERRORS.get(
            exc.status_code, (f"http_{exc.status_code}", f"{str(exc.detail).rstrip('.')}.")
        )
        return error_response(exc.status_code, code, message)

    @app.exception_handler(DBAPIError)
    @app.exception_handler(BotoCoreError)
    @app.exception_handler(RPCError)
    async def _dependency(_: Request, exc: Exception) -> JSONResponse:
        # A dependency being down is not a bug: say so, and let the client retry.
        log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
        return error_response(
            503,
            ServiceUnavailable.code,
            "A service Conveyor depends on is unavailable; try again shortly.",
            **{"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "An unexpected error occurred.")
