"""Header-signed requests (the API's own multipart calls) carry the Authorization botocore's
S3 signer gives the same request."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conveyor_core import sigv4

ENDPOINT = "http://store.example.test:8333"
ACCESS_KEY, SECRET_KEY, REGION = (
    "AKIDEXAMPLE",
    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "eu-west-3",
)


@pytest.mark.parametrize(
    ("key", "params", "query", "body"),
    [
        ("incoming/t/u", {"uploads": ""}, "uploads=", b""),
        (
            "incoming/t/ä file (1)~+=.bin",
            {"uploadId": "id+with/slash=="},
            "uploadId=id%2Bwith%2Fslash%3D%3D",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part>"
            b"</CompleteMultipartUpload>",
        ),
    ],
)
def test_the_authorization_is_botocores(
    key: str, params: dict[str, str], query: str, body: bytes
) -> None:
    request = AWSRequest(
        method="POST",
        url=f"{ENDPOINT}/conveyor/{quote(key, safe='/~')}",
        params=params,
        headers={"Content-Type": "application/xml"},
        data=body,
    )
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)

    ours = sigv4.signed_headers(
        method="POST",
        path=f"/conveyor/{sigv4.uri_encode(key, safe='/')}",
        query=query,
        headers={"host": "store.example.test:8333", "content-type": "application/xml"},
        body=body,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region=REGION,
        amz_date=request.headers["X-Amz-Date"],
    )

    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-content-sha256"] == request.headers["X-Amz-Content-SHA256"]
