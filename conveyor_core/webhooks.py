"""Outgoing webhooks: event names, endpoint URL rules and the signature Conveyor sends.

Pure logic shared by the API (registration) and the delivery activity. A receiver checks
the signature with `conveyor_client.verify_signature`, which must agree with `sign` here.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
from urllib.parse import urlsplit

from conveyor_core.types import FileStatus

# One event per terminal status an ingest can end in (`deleted` is not an ingest outcome).
WEBHOOK_STATUSES = (
    FileStatus.READY,
    FileStatus.FAILED,
    FileStatus.QUARANTINED,
    FileStatus.EXPIRED,
    FileStatus.CANCELLED,
)
WEBHOOK_EVENTS = tuple(f"file.{status.value}" for status in WEBHOOK_STATUSES)
MAX_URL_LENGTH = 2048

SIGNATURE_HEADER = "Conveyor-Signature"
EVENT_HEADER = "Conveyor-Event"
DELIVERY_HEADER = "Conveyor-Delivery"

_UNSAFE_URL_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


def event_for(status: FileStatus) -> str | None:
    """The event a file ending in `status` sends, or None for a status that sends none."""
    return f"file.{status.value}" if status in WEBHOOK_STATUSES else None


def validate_events(events: list[str] | None) -> list[str]:
    """The subscribed events in canonical order; None means all of them.

    Raises:
        ValueError: the list is empty or names an event that does not exist.
    """
    if events is None:
        return list(WEBHOOK_EVENTS)
    if not events:
        raise ValueError(f"name at least one event of {', '.join(WEBHOOK_EVENTS)}")
    unknown = sorted(set(events) - set(WEBHOOK_EVENTS))
    if unknown:
        raise ValueError(
            f"unknown event {', '.join(unknown)}; the events are {', '.join(WEBHOOK_EVENTS)}"
        )
    return [event for event in WEBHOOK_EVENTS if event in events]


def validate_url(url: str) -> str:
    """The URL as given, once it is an absolute http(s) URL with a host.

    Raises:
        ValueError: with the reason.
    """
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"is longer than {MAX_URL_LENGTH} characters")
    if _UNSAFE_URL_CHARS.search(url):
        raise ValueError("must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port raises ValueError when it is not a number
    except ValueError as e:
        raise ValueError(f"is not a valid URL ({e})") from e
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    return url


def blocked_address(address: str) -> bool:
    """True for an address a webhook must not reach when private URLs are refused:
    loopback, private, link-local (cloud metadata), shared, reserved, multicast."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def private_host_reason(url: str) -> str | None:
    """Why `url`'s host is refused when private URLs are not allowed, or None if it is public.

    Resolves the host (blocking DNS): every address it resolves to must be public, so a
    name with one private address among public ones is refused too.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        return f"its host {host} does not resolve ({e})"
    for info in infos:
        address = str(info[4][0])
        if blocked_address(address):
            return f"its host {host} resolves to a private address ({address})"
    return None


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Conveyor-Signature` value: `t=<unix seconds>,v1=<hex HMAC-SHA256>` where the
    HMAC key is the endpoint's secret and the message is `<t>.` followed by the body."""
    message = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
