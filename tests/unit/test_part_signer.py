"""Part URLs signed by our SigV4 query signer are the ones botocore's own signer gives."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conveyor_core.objectstore import Checksum, PartSigner, PartToSign
from conveyor_core.settings import Settings

ENDPOINTS = [
    "http://files.example.test:8333/store",
    "https://files.example.test",
    "https://files.example.test:443",  # the default port is not part of the signed host
]
SHA256 = Checksum("sha256", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWU1BVyHqQ=")
CRC64 = Checksum("crc64nvme", "AAAAAAAAAAA=")


def botocore_url(
    endpoint: str, key: str, upload_id: str, part_number: int, headers: dict[str, str]
) -> str:
    settings = Settings(s3_public_endpoint_url=endpoint)
    request = AWSRequest(
        method="PUT",
        url=f"{endpoint}/conveyor/{quote(key, safe='/~')}",
        params={"partNumber": str(part_number), "uploadId": upload_id},
        headers=headers,
    )
    credentials = Credentials(
        settings.s3_access_key.get_secret_value(), settings.s3_secret_key.get_secret_value()
    )
    S3SigV4QueryAuth(credentials, "s3", settings.s3_region, expires=900).add_auth(request)
    url: str = request.prepare().url
    return url


def assert_same_url(actual_url: str, expected_url: str) -> None:
    actual, expected = urlsplit(actual_url), urlsplit(expected_url)
    assert (actual.scheme, actual.netloc, actual.path) == (
        expected.scheme,
        expected.netloc,
        expected.path,
    )
    assert parse_qs(actual.query) == parse_qs(expected.query)


def signed_at(url: str) -> datetime:
    stamp = parse_qs(urlsplit(url).query)["X-Amz-Date"][0]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    ("key", "upload_id"),
    [
        ("incoming/tenant/upload", "0f9a1c2e"),
        ("incoming/t/ä file (1)~+=.bin", "id+with/slash=and=padding=="),
    ],
)
@pytest.mark.parametrize("checksum", [None, SHA256, CRC64])
def test_part_url_matches_botocore(
    endpoint: str, key: str, upload_id: str, checksum: Checksum | None
) -> None:
    headers = {"Content-Length": "16777216"}
    if checksum:
        headers[f"x-amz-checksum-{checksum.algorithm}"] = checksum.value
    expected = botocore_url(endpoint, key, upload_id, 7, dict(headers))

    [signed] = PartSigner(Settings(s3_public_endpoint_url=endpoint)).parts(
        bucket="conveyor",
        key=key,
        multipart_upload_id=upload_id,
        parts=[PartToSign(7, 16777216, checksum)],
        expires_in=900,
        at=signed_at(expected),
    )

    assert_same_url(signed.url, expected)
    assert signed.headers == headers


def test_a_batch_signs_each_part_as_botocore_does() -> None:
    endpoint = ENDPOINTS[0]
    wanted = [PartToSign(1, 8 << 20, SHA256), PartToSign(2, 8 << 20), PartToSign(10, 123, CRC64)]
    while True:  # botocore signs each URL at its own instant: all within one second
        expected = [
            botocore_url(
                endpoint,
                "incoming/t/u",
                "upload-1",
                part.part_number,
                {"Content-Length": str(part.length)}
                | ({part.checksum.header: part.checksum.value} if part.checksum else {}),
            )
            for part in wanted
        ]
        if len({signed_at(url) for url in expected}) == 1:
            break

    signed = PartSigner(Settings(s3_public_endpoint_url=endpoint)).parts(
        bucket="conveyor",
        key="incoming/t/u",
        multipart_upload_id="upload-1",
        parts=wanted,
        expires_in=900,
        at=signed_at(expected[0]),
    )

    assert len(signed) == len(wanted)
    for url, (part, botocore) in zip(
        [s.url for s in signed], zip(wanted, expected, strict=True), strict=True
    ):
        assert_same_url(url, botocore)
        assert parse_qs(urlsplit(url).query)["partNumber"] == [str(part.part_number)]
