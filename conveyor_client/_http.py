"""HTTP plumbing: API requests with the error shape mapped, and retry policies."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import tenacity

from conveyor_client._exceptions import (
    ConveyorError,
    ServerError,
    StoreError,
    TransportError,
    from_response,
    transport_error,
)

USER_AGENT = "conveyor-client/0.1"


def is_transient(error: BaseException) -> bool:
    """Worth retrying: no answer, a 5xx, or a store 403 (an expired URL: ask for a fresh one)."""
    if isinstance(error, TransportError | httpx.TransportError):
        return True
    if isinstance(error, ServerError):
        return True
    if isinstance(error, StoreError) and error.status is not None:
        return error.status >= 500 or error.status in (403, 408, 429)
    return False


def retrying(
    attempts: int,
    *,
    stop_event: threading.Event | None = None,
    max_wait: float = 20.0,
    retry_on: Callable[[BaseException], bool] = is_transient,
) -> tenacity.Retrying:
    """Exponential backoff with jitter; a set `stop_event` cuts the waits short and ends it."""
    stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(attempts)
    sleep: Callable[[float], None] = tenacity.nap.sleep
    if stop_event is not None:
        event = stop_event
        stop = stop | tenacity.stop_when_event_set(event)

        def sleep(seconds: float) -> None:
            event.wait(seconds)

    return tenacity.Retrying(
        stop=stop,
        wait=tenacity.wait_exponential(multiplier=0.5, max=max_wait) + tenacity.wait_random(0, 0.5),
        retry=tenacity.retry_if_exception(retry_on),
        sleep=sleep,
        reraise=True,
    )


class API:
    """The REST API: bearer auth, JSON in and out, `{"error": ...}` mapped to exceptions."""

    def __init__(self, api_url: str, api_key: str, timeout: float, retries: int = 4) -> None:
        self.api_url = api_url.rstrip("/")
        self.retries = retries
        self.http = httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT},
            timeout=timeout,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Sends one request; GET-like (idempotent) ones are retried on transient failures."""
        if idempotent is None:
            idempotent = method in ("GET", "DELETE")
        for attempt in retrying(self.retries if idempotent else 1):
            with attempt:
                return self._send(
                    method, path, json=json, params=params, headers=headers, timeout=timeout
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        timeout: float | None = None,
    ) -> httpx.Response:
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            response = self.http.request(
                method, path, json=json, params=params, headers=headers, **extra
            )
        except httpx.TransportError as e:
            raise transport_error(e, f"{method} {path}") from e
        if response.status_code >= 400:
            raise from_response(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Sends a request and decodes its JSON answer."""
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as e:
            raise ConveyorError(
                "invalid_response", f"{method} {path} did not answer JSON", response.status_code
            ) from e

    def close(self) -> None:
        """Closes the connection pool."""
        self.http.close()
