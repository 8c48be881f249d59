"""Part URLs signed by awscrt are the ones botocore's own SigV4 query signer gives."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conveyor_core.objectstore import PartSigner
from conveyor_core.settings import Settings

SETTINGS = Settings(s3_public_endpoint_url="http://files.example.test:8333/store")


def botocore_url(key: str, upload_id: str, headers: dict[str, str]) -> str:
    request = AWSRequest(
        method="PUT",
        url=f"http://files.example.test:8333/store/conveyor/{quote(key, safe='/~')}",
        params={"partNumber": "7", "uploadId": upload_id},
        headers=headers,
    )
    credentials = Credentials(
        SETTINGS.s3_access_key.get_secret_value(), SETTINGS.s3_secret_key.get_secret_value()
    )
    S3SigV4QueryAuth(credentials, "s3", SETTINGS.s3_region, expires=900).add_auth(request)
    url: str = request.prepare().url
    return url


@pytest.mark.parametrize(
    ("key", "upload_id"),
    [
        ("incoming/tenant/upload", "0f9a1c2e"),
        ("incoming/t/ä file (1)~+=.bin", "id+with/slash=and=padding=="),
    ],
)
@pytest.mark.parametrize("sha256", [None, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWU1BVyHqQ="])
def test_part_url_matches_botocore(key: str, upload_id: str, sha256: str | None) -> None:
    headers = {"Content-Length": "16777216"}
    if sha256:
        headers["x-amz-checksum-sha256"] = sha256
    expected = urlsplit(botocore_url(key, upload_id, dict(headers)))
    signed_at = datetime.strptime(
        parse_qs(expected.query)["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"
    ).replace(tzinfo=UTC)

    signed = PartSigner(SETTINGS).part(
        bucket="conveyor",
        key=key,
        multipart_upload_id=upload_id,
        part_number=7,
        length=16777216,
        sha256_b64=sha256,
        expires_in=900,
        at=signed_at,
    )

    actual = urlsplit(signed.url)
    assert (actual.scheme, actual.netloc, actual.path) == (
        expected.scheme,
        expected.netloc,
        expected.path,
    )
    assert parse_qs(actual.query) == parse_qs(expected.query)
    assert signed.headers == headers
