"""Webhook rules as pure logic: event names, endpoint URLs, private addresses, and the
signature the server makes and the SDK checks."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json

import pytest

from conveyor_client import WebhookSignatureError, verify_signature
from conveyor_core.settings import Settings
from conveyor_core.types import FileStatus
from conveyor_core.webhooks import (
    WEBHOOK_EVENTS,
    HostRefused,
    HostUnresolved,
    blocked_address,
    embedded_ipv4,
    event_for,
    new_secret,
    private_host_reason,
    resolve_host,
    sign,
    url_origin,
    validate_events,
    validate_url,
)

SECRET = "whsec_test-secret"
BODY = json.dumps({"id": "d1", "type": "file.ready", "data": {"file_id": "f1"}}).encode()
NOW = 1_780_000_000


def test_events_are_the_terminal_statuses_of_an_ingest() -> None:
    assert WEBHOOK_EVENTS == (
        "file.ready",
        "file.failed",
        "file.quarantined",
        "file.expired",
        "file.cancelled",
    )
    assert event_for(FileStatus.QUARANTINED) == "file.quarantined"
    assert event_for(FileStatus.DELETED) is None
    assert event_for(FileStatus.PROCESSING) is None


def test_validate_events_defaults_to_all_and_keeps_canonical_order() -> None:
    assert validate_events(None) == list(WEBHOOK_EVENTS)
    assert validate_events(["file.failed", "file.ready", "file.failed"]) == [
        "file.ready",
        "file.failed",
    ]


@pytest.mark.parametrize("events", [[], ["file.bogus"], ["file.ready", "ready"], ["FILE.READY"]])
def test_validate_events_rejects_unknown_or_empty(events: list[str]) -> None:
    with pytest.raises(ValueError):
        validate_events(events)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "https://hooks.example.com/conveyor?token=abc",
        "HTTPS://example.com",
        "http://[::1]:8080/",
    ],
)
def test_validate_url_accepts_http_and_https(url: str) -> None:
    assert validate_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "example.com/hook",
        "http://",
        "http:///path",
        "http://example.com:99999/",
        "http://exa mple.com/",
        "http://example.com/\nHost: evil",
        "https://example.com/" + "a" * 2048,
        "",
    ],
)
def test_validate_url_rejects_other_urls(url: str) -> None:
    with pytest.raises(ValueError):
        validate_url(url)


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),  # cloud metadata
        ("100.64.0.1", True),  # carrier-grade NAT
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("::1", True),
        ("fe80::1%eth0", True),
        ("fd00::1", True),
        ("::ffff:127.0.0.1", True),
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_blocked_address(address: str, blocked: bool) -> None:
    assert blocked_address(address) is blocked


@pytest.mark.parametrize(
    "address",
    [
        # IPv6 forms that lead to a private IPv4 address.
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:7f00:1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible
        "::a9fe:a9fe",
        "64:ff9b::7f00:1",  # NAT64 well-known prefix
        "64:ff9b::10.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a00:1",  # local-use NAT64
        "64:ff9b:1::808:808",
        "2002:7f00:1::",  # 6to4
        "2002:a9fe:a9fe::1",
        "2002:c0a8:101::1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo
        "2001:0:7f00:1:0:0:0:1",
        # IPv6 ranges of their own.
        "fec0::1",  # site-local
        "fc00::1",  # unique-local
        "fd12:3456:789a::1",
        "fe80::1",  # link-local
        "fe80::1%eth0",
        "::1",
        "::",
        "ff02::1",  # multicast
        "100::1",  # discard
        "2001:db8::1",  # documentation
        "3fff::1",
        # IPv4 ranges that are not the internet.
        "0.0.0.0",
        "0.1.2.3",
        "100.64.0.1",  # carrier-grade NAT
        "100.127.255.254",
        "192.0.0.8",
        "192.0.2.1",
        "198.18.0.1",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.251",
        "240.0.0.1",
        "255.255.255.255",
    ],
)
def test_blocked_address_unwraps_and_refuses(address: str) -> None:
    assert blocked_address(address) is True


@pytest.mark.parametrize(
    "address",
    ["1.1.1.1", "93.184.215.14", "64:ff9b::808:808", "2a00:1450:4001::200e"],
)
def test_blocked_address_lets_public_ones_through(address: str) -> None:
    # The NAT64 form of a public address is that public address (DNS64 answers so).
    assert blocked_address(address) is False


def test_embedded_ipv4_finds_each_form() -> None:
    v6 = ipaddress.IPv6Address
    v4 = ipaddress.IPv4Address
    loopback = v4("127.0.0.1")
    assert loopback in embedded_ipv4(v6("::ffff:127.0.0.1"))
    assert loopback in embedded_ipv4(v6("::127.0.0.1"))
    assert loopback in embedded_ipv4(v6("64:ff9b::7f00:1"))
    assert loopback in embedded_ipv4(v6("2002:7f00:1::"))
    assert v4("192.0.2.45") in embedded_ipv4(v6("2001:0:4136:e378:8000:63bf:3fff:fdd2"))
    assert embedded_ipv4(v6("2606:4700:4700::1111")) == []


def test_resolve_host_checks_every_address_and_answers_the_first() -> None:
    def resolver(host: str, port: int) -> list[str]:
        assert (host, port) == ("hooks.example.com", 443)
        return ["8.8.8.8", "1.1.1.1"]

    assert resolve_host("hooks.example.com", 443, allow_private=False, resolver=resolver) == (
        "8.8.8.8"
    )
    with pytest.raises(HostRefused, match=r"private address \(10.0.0.1\)"):
        resolve_host(
            "mixed.example.com",
            443,
            allow_private=False,
            resolver=lambda _h, _p: ["8.8.8.8", "10.0.0.1"],
        )
    # Allowed: private addresses pass, and the first one is still the one connected to.
    assert resolve_host("x", 80, allow_private=True, resolver=lambda _h, _p: ["10.0.0.1"]) == (
        "10.0.0.1"
    )
    with pytest.raises(HostUnresolved):
        resolve_host("empty.example", 80, allow_private=True, resolver=lambda _h, _p: [])


def test_resolve_host_takes_a_literal_address_without_dns() -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise AssertionError(f"{host}:{port} is no name to look up")

    assert resolve_host("8.8.8.8", 80, allow_private=False, resolver=resolver) == "8.8.8.8"
    with pytest.raises(HostRefused):
        resolve_host("::ffff:127.0.0.1", 80, allow_private=False, resolver=resolver)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://hooks.example.com/conveyor?token=s3cret", "https://hooks.example.com"),
        ("http://user:pass@Example.com:8080/a/b#frag", "http://example.com:8080"),
        ("http://[::1]:9/hook/tok", "http://[::1]:9"),
        ("http://example.com:99999/", "<invalid url>"),
    ],
)
def test_url_origin_keeps_no_path_query_or_credentials(url: str, origin: str) -> None:
    assert url_origin(url) == origin


def test_private_host_reason_for_literal_addresses() -> None:
    reason = private_host_reason("http://127.0.0.1:8080/hook")
    assert reason is not None and "private address (127.0.0.1)" in reason
    assert private_host_reason("http://[::1]/") is not None
    assert private_host_reason("https://8.8.8.8/hook") is None


def test_private_host_reason_for_a_name_that_does_not_resolve() -> None:
    reason = private_host_reason("http://does-not-exist.invalid/hook")
    assert reason is not None and "does not resolve" in reason


def test_private_urls_are_refused_in_every_environment_unless_told_otherwise() -> None:
    secrets = {
        "s3_access_key": "k" * 20,
        "s3_secret_key": "s" * 20,
        "store_events_token": "t" * 20,
    }
    assert Settings(environment="production", **secrets).webhook_allow_private_urls is False
    assert Settings().webhook_allow_private_urls is False
    assert Settings(environment="test").webhook_allow_private_urls is False
    explicit = Settings(environment="production", webhook_allow_private_urls=True, **secrets)
    assert explicit.webhook_allow_private_urls is True


def test_private_urls_opt_in_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_WEBHOOK_ALLOW_PRIVATE_URLS", "true")
    assert Settings().webhook_allow_private_urls is True


def test_webhook_timeout_stays_under_the_attempt_activity_timeout() -> None:
    with pytest.raises(ValueError):
        Settings(webhook_timeout_seconds=55)
    with pytest.raises(ValueError):
        Settings(webhook_max_in_flight_per_tenant=0)


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    header = sign(SECRET, BODY, NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"


def test_verify_signature_accepts_what_the_server_signs() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret) > 40
    header = sign(secret, BODY, NOW)
    verify_signature(secret, header, BODY, now=NOW + 10)
    verify_signature(secret, header, BODY.decode(), now=NOW - 10)  # str bodies are UTF-8
    # Another v1 (e.g. during a secret rotation) beside the right one is fine.
    verify_signature(secret, f"{header},v1={'0' * 64}", BODY, now=NOW)


@pytest.mark.parametrize(
    ("header", "body", "secret", "now", "code"),
    [
        (None, BODY, SECRET, NOW, "missing_signature"),
        ("", BODY, SECRET, NOW, "missing_signature"),
        ("v1=abc", BODY, SECRET, NOW, "malformed_signature"),
        (f"t={NOW}", BODY, SECRET, NOW, "malformed_signature"),
        ("t=soon,v1=abc", BODY, SECRET, NOW, "malformed_signature"),
        (sign(SECRET, BODY, NOW), BODY + b" ", SECRET, NOW, "signature_mismatch"),
        (sign(SECRET, BODY, NOW), BODY, "whsec_other", NOW, "signature_mismatch"),
        (sign(SECRET, BODY, NOW), BODY, SECRET, NOW + 301, "timestamp_out_of_tolerance"),
        (sign(SECRET, BODY, NOW), BODY, SECRET, NOW - 301, "timestamp_out_of_tolerance"),
        # A replayed signature with its timestamp changed no longer matches.
        (sign(SECRET, BODY, NOW).replace(f"t={NOW}", f"t={NOW + 5}"), BODY, SECRET, NOW, None),
    ],
)
def test_verify_signature_rejects(
    header: str | None, body: bytes, secret: str, now: int, code: str | None
) -> None:
    with pytest.raises(WebhookSignatureError) as caught:
        verify_signature(secret, header, body, now=now)
    assert caught.value.code == (code or "signature_mismatch")


def test_verify_signature_tolerance_is_configurable() -> None:
    header = sign(SECRET, BODY, NOW)
    verify_signature(SECRET, header, BODY, tolerance_s=3600, now=NOW + 3000)
    with pytest.raises(WebhookSignatureError):
        verify_signature(SECRET, header, BODY, tolerance_s=5, now=NOW + 6)
