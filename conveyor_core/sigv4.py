"""AWS Signature Version 4 for S3, the two shapes Conveyor sends on its hot paths: part URLs
(signed in the query) and the API's own multipart calls (signed in headers).

Signing is done here rather than by botocore (96 us a URL in its generic signer, and about
3 ms of a request's CPU through a boto3 call) or awscrt (40 us a URL within a request,
and event-loop threads that cost more than they saved). tests/unit/test_sigv4.py and
tests/unit/test_part_signer.py hold both shapes to botocore's own signatures.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def uri_encode(value: str, safe: str = "") -> str:
    """SigV4's URI encoding: every byte but A-Z a-z 0-9 - _ . ~ (and `safe`) as %XX."""
    return quote(value, safe=safe)


def object_path(prefix: str, bucket: str, key: str) -> str:
    """An object's path-style URL path, encoded once as S3 signs it (no double encoding,
    no normalisation)."""
    return f"{prefix}/{uri_encode(bucket)}/{uri_encode(key, safe='/')}"


def signing_key(secret_key: str, day: str, region: str) -> bytes:
    """The key of one day (YYYYMMDD), region and the s3 service."""
    key = f"AWS4{secret_key}".encode()
    for step in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, step.encode(), hashlib.sha256).digest()
    return key


def scope(amz_date: str, region: str) -> str:
    return f"{amz_date[:8]}/{region}/s3/aws4_request"


def signature(
    key: bytes,
    amz_date: str,
    region: str,
    canonical_request: str,
) -> str:
    string_to_sign = (
        f"{ALGORITHM}\n{amz_date}\n{scope(amz_date, region)}\n"
        + hashlib.sha256(canonical_request.encode()).hexdigest()
    )
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def signed_headers(
    *,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
    amz_date: str,
) -> dict[str, str]:
    """`headers` plus x-amz-date, x-amz-content-sha256 and the Authorization that signs
    them all. `path` is already URI-encoded; `query` is canonical (sorted, encoded)."""
    signed = {name.lower(): value.strip() for name, value in headers.items()}
    signed["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    signed["x-amz-date"] = amz_date
    names = sorted(signed)
    canonical_request = "\n".join(
        [
            method,
            path,
            query,
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            signed["x-amz-content-sha256"],
        ]
    )
    key = signing_key(secret_key, amz_date[:8], region)
    authorization = (
        f"{ALGORITHM} Credential={access_key}/{scope(amz_date, region)}, "
        f"SignedHeaders={';'.join(names)}, "
        f"Signature={signature(key, amz_date, region, canonical_request)}"
    )
    return {**signed, "authorization": authorization}
