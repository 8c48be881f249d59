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
from collections.abc import Callable, Sequence
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


# Refused whatever Python's `ipaddress` thinks of them (its tables change between versions:
# 3.11 calls fec0::/10, 64:ff9b:1::/48 and 2002::/16 global).
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
        "::/128",  # unspecified
        "::1/128",  # loopback
        "100::/64",  # discard
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "64:ff9b:1::/48",  # local-use NAT64: translates into the operator's own network
        "fc00::/7",  # unique-local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still routed inside some networks)
        "ff00::/8",  # multicast
    )
)
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: IPv4-mapped, IPv4-compatible, NAT64
    (64:ff9b::/96), 6to4 (2002::/16) and both ends of Teredo (2001::/32)."""
    found: list[ipaddress.IPv4Address] = []
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip in _IPV4_COMPATIBLE or ip in _NAT64:
        found.append(low32)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def _refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if any(ip in network for network in _BLOCKED_NETWORKS if network.version == ip.version):
        return True
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


def blocked_address(address: str) -> bool:
    """True for an address a webhook must not reach when private URLs are refused:
    loopback, private, unique/site/link-local (cloud metadata), shared, reserved,
    documentation, multicast, and an IPv6 address carrying any of those in IPv4 form."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64:
        # DNS64 answers an IPv6-only worker this way for every IPv4-only host: judged by
        # the IPv4 address inside (the prefix itself sits in what `ipaddress` calls reserved).
        return _refused(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if _refused(ip):
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        return any(_refused(v4) for v4 in embedded_ipv4(ip))
    return False


# host, port -> the addresses it resolves to. Injected in tests (e.g. a DNS-rebinding one).
Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the system resolver's order (blocking DNS).

    Raises:
        OSError: the name does not resolve (`socket.gaierror`).
        UnicodeError: the name cannot be encoded for DNS.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class HostUnresolved(Exception):
    """The endpoint's host resolves to no address (perhaps for now: retried)."""


class HostRefused(Exception):
    """The endpoint's host resolves to an address webhooks must not reach (for good)."""


def resolve_host(
    host: str, port: int, *, allow_private: bool, resolver: Resolver = system_resolver
) -> str:
    """The one address to connect to for `host`, resolved once: the caller connects to this
    address and never resolves the name again, so a DNS answer that changes between the
    check and the connection (rebinding) cannot lead it elsewhere.

    Unless `allow_private`, every address the name has must be public, so a name with one
    private address among public ones is refused too.

    Raises:
        HostUnresolved: the name has no address.
        HostRefused: one of its addresses is private.
    """
    try:
        addresses = [str(ipaddress.ip_address(host))]  # a literal address: no DNS
    except ValueError:
        try:
            addresses = list(resolver(host, port))
        except (OSError, UnicodeError) as e:
            raise HostUnresolved(f"its host {host} does not resolve ({e})") from e
    if not addresses:
        raise HostUnresolved(f"its host {host} does not resolve")
    if not allow_private:
        for address in addresses:
            try:
                blocked = blocked_address(address)
            except ValueError:
                blocked = True
            if blocked:
                raise HostRefused(f"its host {host} resolves to a private address ({address})")
    return addresses[0].split("%", 1)[0]


def private_host_reason(url: str, resolver: Resolver = system_resolver) -> str | None:
    """Why `url`'s host is refused when private URLs are not allowed, or None if it is public.

    Resolves the host (blocking DNS): every address it resolves to must be public.
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        resolve_host(parts.hostname or "", port, allow_private=False, resolver=resolver)
    except (HostUnresolved, HostRefused) as e:
        return str(e)
    return None


def url_origin(url: str) -> str:
    """`scheme://host[:port]` of a webhook URL, the only part of it that may be logged or
    shown beside an error: its path, query and user info may hold the receiver's tokens."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Conveyor-Signature` value: `t=<unix seconds>,v1=<hex HMAC-SHA256>` where the
    HMAC key is the endpoint's secret and the message is `<t>.` followed by the body."""
    message = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
