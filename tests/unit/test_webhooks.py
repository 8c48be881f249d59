"""Webhook rules as pure logic: event names, endpoint URLs, private addresses, and the
signature the server makes and the SDK checks."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from conveyor_client import WebhookSignatureError, verify_signature
from conveyor_core.settings import Settings
from conveyor_core.types import FileStatus
from conveyor_core.webhooks import (
    WEBHOOK_EVENTS,
    blocked_address,
    event_for,
    new_secret,
    private_host_reason,
    sign,
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


def test_private_host_reason_for_literal_addresses() -> None:
    reason = private_host_reason("http://127.0.0.1:8080/hook")
    assert reason is not None and "private address (127.0.0.1)" in reason
    assert private_host_reason("http://[::1]/") is not None
    assert private_host_reason("https://8.8.8.8/hook") is None


def test_private_host_reason_for_a_name_that_does_not_resolve() -> None:
    reason = private_host_reason("http://does-not-exist.invalid/hook")
    assert reason is not None and "does not resolve" in reason


def test_production_refuses_private_urls_unless_told_otherwise() -> None:
    secrets = {
        "s3_access_key": "k" * 20,
        "s3_secret_key": "s" * 20,
        "store_events_token": "t" * 20,
    }
    assert Settings(environment="production", **secrets).webhook_allow_private_urls is False
    explicit = Settings(environment="production", webhook_allow_private_urls=True, **secrets)
    assert explicit.webhook_allow_private_urls is True
    assert Settings().webhook_allow_private_urls is True


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
