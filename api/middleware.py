"""Cheap rejections first: what a hostile client can send is refused before any route reads,
parses or validates its body.

`Gatekeeper` is plain ASGI (no BaseHTTPMiddleware, which would buffer and re-wrap every
request). For each HTTP request it

1. refuses an API request (`/v1/...`) a browser sent from a page of an origin not in
   `settings.browser_origins` (its `Origin` header) with 403 `origin_not_allowed`: CORS
   only keeps such a page from reading the answer, not the route from running;
2. refuses a declared `Content-Length` over the cap with 413 `request_too_large`;
3. on a route behind an API key (any route whose dependencies include `get_tenancy`; not
   /healthz, /readyz, /docs, /openapi.json, nor an OPTIONS request such as a CORS
   preflight) checks the key (401) and its rate (429) and leaves the tenancy in
   `scope["state"]` for the route's dependency, so the key is looked up once;
4. counts a body sent without a length (chunked) as the route reads it, and refuses it with
   413 once it goes over the cap.

A request refused while its body is still on the way is answered with `Connection: close`:
the server then stops reading instead of draining the rest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import TENANCY_STATE_KEY, AppState, authenticate, get_tenancy, get_uploader
from api.errors import ErrorCode, answer_for, error_response
from conveyor_core.settings import Settings

# The one route whose body may be large: a completion lists up to 10,000 parts.
_COMPLETE = re.compile(r"/v1/uploads/[^/]+/complete|/v1/uppy/[^/]+/s3/multipart/[^/]+/complete")


class BodyTooLarge(StarletteHTTPException):
    """Raised from `receive` once a streamed body goes over the cap. An HTTPException, so
    FastAPI lets it through its body parsing to the 413 handler (api.errors)."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


def _needs_key(dependant: Dependant) -> bool:
    return dependant.call in (get_tenancy, get_uploader) or any(
        _needs_key(d) for d in dependant.dependencies
    )


class Gatekeeper:
    """Checks the body's size and the API key before the app sees the request."""

    def __init__(self, app: ASGIApp, settings: Settings, routers: Sequence[APIRouter]) -> None:
        self.app = app
        self.max_body = settings.api_max_body_bytes
        self.max_complete_body = settings.api_max_complete_body_bytes
        self.origins = frozenset(settings.browser_origins)
        # The routers the app includes (without a prefix of their own: their routes' paths
        # are the paths served).
        self._routers = routers
        self._keyed: list[APIRoute] | None = None

    def _limit(self, path: str) -> int:
        return self.max_complete_body if _COMPLETE.fullmatch(path) else self.max_body

    def _needs_key(self, scope: Scope) -> bool:
        if self._keyed is None:  # once, at the first request: every route is included by then
            self._keyed = [
                route
                for router in self._routers
                for route in router.routes
                if isinstance(route, APIRoute) and _needs_key(route.dependant)
            ]
        # PARTIAL: the path is a keyed route's, the method another (405, once authenticated).
        return any(route.matches(scope)[0] != Match.NONE for route in self._keyed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = self._limit(scope["path"])
        origin = headers.get("origin")
        if (
            origin is not None
            and origin not in self.origins
            and scope["method"] != "OPTIONS"
            and scope["path"].startswith("/v1/")
        ):
            refusal = error_response(
                ErrorCode.ORIGIN_NOT_ALLOWED,
                f"Pages of {origin[:100]} may not call this API; add the origin to "
                "CONVEYOR_CORS_ORIGINS.",
            )
            refusal.headers["Connection"] = "close"
            await refusal(scope, receive, send)
            return
        body_coming = "chunked" in headers.get("transfer-encoding", "").lower()
        declared = headers.get("content-length", "")
        if declared.isdigit():  # the server itself refuses a malformed one
            body_coming = body_coming or int(declared) > 0
            if int(declared) > limit:
                await self._refuse(scope, receive, send, BodyTooLarge(), limit, closing=True)
                return
        if scope["method"] != "OPTIONS" and self._needs_key(scope):
            state: AppState = scope["app"].state.conveyor
            try:
                tenancy = await authenticate(state, headers.get("authorization"))
            except Exception as e:  # 401, 429, or the key store down (503)
                await self._refuse(scope, receive, send, e, limit, closing=body_coming)
                return
            scope.setdefault("state", {})[TENANCY_STATE_KEY] = tenancy

        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if received > limit:  # the rest of the body stays unread: do not drain it
                    message["headers"] = [*message.get("headers", ()), (b"connection", b"close")]
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge as e:  # raised where no handler saw it
            if started:
                raise
            await self._refuse(scope, receive, send, e, limit, closing=True)

    @staticmethod
    async def _refuse(
        scope: Scope, receive: Receive, send: Send, exc: Exception, limit: int, *, closing: bool
    ) -> None:
        if isinstance(exc, BodyTooLarge):
            response = error_response(
                ErrorCode.REQUEST_TOO_LARGE,
                f"The request body is larger than the {limit} bytes this address accepts.",
            )
        else:
            response = answer_for(exc)
        if closing:
            response.headers["Connection"] = "close"
        await response(scope, receive, send)
