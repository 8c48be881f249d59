"""Secrets that travel in request paths, kept out of logs and traces.

Uppy's plugin calls `<companionEndpoint>/s3/...` with no headers of its own, so an upload
token stands in the path (`/v1/uppy/<token>/s3/...`). Access logs and server spans would
otherwise keep it for as long as they are kept.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from opentelemetry.trace import Span

_TOKEN_IN_PATH = re.compile(r"(/v1/uppy/)[^/?#\s\"]+")
REDACTED = r"\1[token]"
# The server span's attributes that carry the request's path (old and new conventions).
_PATH_ATTRIBUTES = ("http.target", "http.url", "url.path", "url.full")


def redact_path(text: str) -> str:
    return _TOKEN_IN_PATH.sub(REDACTED, text)


class RedactTokens(logging.Filter):
    """Rewrites a record's message and arguments (uvicorn's access line passes the path as
    one) with tokens redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_path(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_path(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_server_span(span: Span, scope: dict[str, Any]) -> None:
    """An ASGI instrumentation request hook: the span keeps the path without the token."""
    if not span.is_recording() or "/v1/uppy/" not in scope.get("path", ""):
        return
    attributes = getattr(span, "attributes", None) or {}
    for name in _PATH_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str):
            span.set_attribute(name, redact_path(value))
