"""The S3 client and the pre-signed URLs Conveyor hands out. Bytes never pass through here."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import boto3
from awscrt.auth import (
    AwsCredentialsProvider,
    AwsSignatureType,
    AwsSignedBodyValue,
    AwsSigningAlgorithm,
    AwsSigningConfig,
    aws_sign_request,
)
from awscrt.http import HttpHeaders, HttpRequest
from botocore.config import Config

from conveyor_core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def make_s3_client(settings: Settings, *, public: bool = False) -> S3Client:
    """A client for the store; `public` signs URLs for the address clients reach."""
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_public_endpoint if public else settings.s3_endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key.get_secret_value(),
        aws_secret_access_key=settings.s3_secret_key.get_secret_value(),
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=32,
        ),
    )


def incoming_key(tenant_id: str, upload_id: str) -> str:
    """Where a user's bytes land and stay (DESIGN.md §5)."""
    return f"incoming/{tenant_id}/{upload_id}"


def hex_to_b64(sha256_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")


@dataclass(frozen=True)
class PresignedPut:
    url: str
    headers: dict[str, str]


def presign_put(
    client: S3Client,
    *,
    bucket: str,
    key: str,
    size: int,
    content_type: str,
    sha256_hex: str | None,
    expires_in: int,
) -> PresignedPut:
    """A PUT URL bound to one key with its length and type (and SHA-256 if declared) signed.

    The store then refuses any other bytes itself; the client must send exactly `headers`.
    """
    params: dict[str, object] = {
        "Bucket": bucket,
        "Key": key,
        "ContentLength": size,
        "ContentType": content_type,
    }
    headers = {"Content-Type": content_type, "Content-Length": str(size)}
    if sha256_hex is not None:
        checksum = hex_to_b64(sha256_hex)
        params["ChecksumSHA256"] = checksum
        headers["x-amz-checksum-sha256"] = checksum
    url = client.generate_presigned_url(
        "put_object", Params=params, ExpiresIn=expires_in, HttpMethod="PUT"
    )
    return PresignedPut(url=url, headers=headers)


S3_MAX_PARTS = 10_000
S3_MIN_PART_SIZE = 5 * 1024 * 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class PartLayout:
    part_size: int
    part_count: int

    def part_length(self, size: int, part_number: int) -> int:
        """Bytes in part `part_number` (1-based) of a file of `size` bytes."""
        start = (part_number - 1) * self.part_size
        return max(0, min(self.part_size, size - start))


# Large files get larger parts (up to 64 MiB) so that one file needs about 64 part URLs:
# signing is most of the API's work per upload.
TARGET_PART_COUNT = 64
MAX_GROWN_PART_SIZE = 64 * MIB


def part_layout(size: int, preferred_part_size: int) -> PartLayout:
    """Parts of `preferred_part_size`, grown (in whole MiB) towards about 64 parts per file
    up to 64 MiB, and further when needed so no file needs more than 10,000 parts; never
    below S3's 5 MiB minimum."""

    def whole_mib(n: int) -> int:
        return -(-n // MIB) * MIB

    toward_target = min(whole_mib(-(-size // TARGET_PART_COUNT)), MAX_GROWN_PART_SIZE)
    required = whole_mib(-(-size // S3_MAX_PARTS))
    part_size = max(preferred_part_size, S3_MIN_PART_SIZE, toward_target, required)
    return PartLayout(part_size=part_size, part_count=max(1, -(-size // part_size)))


class PartSigner:
    """Signs UploadPart URLs with the AWS Common Runtime's SigV4 signer (awscrt, the C
    library botocore itself uses when installed).

    Signing is most of the API's work per upload: `generate_presigned_url` cost 230 us a
    URL, botocore's Python signer alone 96 us, awscrt 18 us for the same URL.
    """

    def __init__(self, settings: Settings) -> None:
        endpoint = urlsplit(settings.s3_public_endpoint)
        self._origin = f"{endpoint.scheme}://{endpoint.netloc}"
        self._host = endpoint.netloc
        self._prefix = endpoint.path.rstrip("/")
        self._region = settings.s3_region
        self._credentials = AwsCredentialsProvider.new_static(
            settings.s3_access_key.get_secret_value(), settings.s3_secret_key.get_secret_value()
        )

    def part(
        self,
        *,
        bucket: str,
        key: str,
        multipart_upload_id: str,
        part_number: int,
        length: int,
        sha256_b64: str | None,
        expires_in: int,
        at: datetime | None = None,
    ) -> PresignedPut:
        """An UploadPart URL bound to one part number and its length (and SHA-256 if given),
        signed now (or `at`)."""
        headers = {"Content-Length": str(length)}
        if sha256_b64 is not None:
            headers["x-amz-checksum-sha256"] = sha256_b64
        path = f"{self._prefix}/{quote(bucket)}/{quote(key, safe='/~')}"
        query = f"partNumber={part_number}&uploadId={quote(multipart_upload_id, safe='~')}"
        request = HttpRequest(
            "PUT", f"{path}?{query}", HttpHeaders([("host", self._host), *headers.items()])
        )
        config = AwsSigningConfig(
            algorithm=AwsSigningAlgorithm.V4,
            signature_type=AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
            credentials_provider=self._credentials,
            region=self._region,
            service="s3",
            date=at or datetime.now(UTC),
            # S3's rules: no double encoding, no path normalisation, the body is not signed.
            use_double_uri_encode=False,
            should_normalize_uri_path=False,
            signed_body_value=AwsSignedBodyValue.UNSIGNED_PAYLOAD,
            expiration_in_seconds=expires_in,
        )
        aws_sign_request(request, config).result()
        return PresignedPut(url=self._origin + request.path, headers=headers)


@dataclass(frozen=True)
class StoredPart:
    part_number: int
    size: int
    etag: str


def list_parts(
    client: S3Client, *, bucket: str, key: str, multipart_upload_id: str
) -> list[StoredPart]:
    """Every part the store holds for a multipart upload (all pages)."""
    parts: list[StoredPart] = []
    marker = 0
    while True:
        page = client.list_parts(
            Bucket=bucket, Key=key, UploadId=multipart_upload_id, PartNumberMarker=marker
        )
        for part in page.get("Parts", []):
            parts.append(StoredPart(part["PartNumber"], part["Size"], part["ETag"].strip('"')))
        if not page.get("IsTruncated"):
            return parts
        marker = page["NextPartNumberMarker"]
