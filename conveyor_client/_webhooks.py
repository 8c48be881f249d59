"""Checking the signature of a webhook Conveyor sent (imports no server code)."""

from __future__ import annotations

import hashlib
import hmac
import time

from conveyor_client._exceptions import ConveyorError

DEFAULT_TOLERANCE_S = 300.0


class WebhookSignatureError(ConveyorError):
    """A webhook's `Conveyor-Signature` does not match its body, or is too old.

    `code` says which: `missing_signature`, `malformed_signature`, `timestamp_out_of_tolerance`
    or `signature_mismatch`.
    """


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes | str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> None:
    """Checks that a webhook came from Conveyor and was not replayed later.

    Conveyor signs each delivery attempt with the endpoint's secret:
    `Conveyor-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.
    Pass the raw request body, exactly the bytes received (not re-serialised JSON).

    Args:
        secret: The endpoint's secret, as `POST /v1/webhooks` returned it (`whsec_...`).
        header: The `Conveyor-Signature` header value.
        body: The raw request body; a `str` is encoded as UTF-8.
        tolerance_s: How far the signed timestamp may be from now, in seconds; this
            bounds how long a captured request can be replayed.
        now: The current unix time (for tests); defaults to `time.time()`.

    Raises:
        WebhookSignatureError: The header is missing or malformed, its timestamp is outside
            the tolerance, or no `v1` signature matches.
    """
    if not header:
        raise WebhookSignatureError("missing_signature", "The request has no Conveyor-Signature.")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                timestamp = None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise WebhookSignatureError(
            "malformed_signature", "Conveyor-Signature must read t=<seconds>,v1=<hex>."
        )
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookSignatureError(
            "timestamp_out_of_tolerance",
            f"The signature's timestamp is {abs(current - timestamp):.0f} s from now, "
            f"more than the {tolerance_s:.0f} s allowed.",
        )
    raw = body.encode() if isinstance(body, str) else body
    expected = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + raw, hashlib.sha256
    ).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise WebhookSignatureError(
            "signature_mismatch", "The signature does not match the body and the secret."
        )
