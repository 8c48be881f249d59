"""API keys and upload tokens: random secrets shown once; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "cvk_"
# Upload tokens: short-lived, for browsers (upload, and read back what they uploaded).
TOKEN_PREFIX = "cvu_"


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def generate_upload_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 6]
