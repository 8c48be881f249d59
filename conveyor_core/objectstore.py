"""The S3 client and the pre-signed URLs Conveyor hands out. Bytes never pass through here."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from conveyor_core import sigv4
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


def hex_to_b64(sha256_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")


ChecksumAlgorithm = Literal["sha256", "crc64nvme"]
# S3's names: x-amz-checksum-algorithm values and the <Part> element of a completion.
S3_CHECKSUM_NAME: dict[ChecksumAlgorithm, str] = {"sha256": "SHA256", "crc64nvme": "CRC64NVME"}
# SHA-256 of a multipart object is a checksum of the parts' checksums; CRC64NVME combines
# into the whole object's own CRC, which the store checks when the upload is completed.
S3_CHECKSUM_TYPE: dict[ChecksumAlgorithm, str] = {"sha256": "COMPOSITE", "crc64nvme": "FULL_OBJECT"}


@dataclass(frozen=True)
class Checksum:
    """A base64 checksum the store verifies: of one part, or of a whole object."""

    algorithm: ChecksumAlgorithm
    value: str

    @property
    def header(self) -> str:
        return f"x-amz-checksum-{self.algorithm}"

    @property
    def element(self) -> str:
        return f"Checksum{S3_CHECKSUM_NAME[self.algorithm]}"


@dataclass(frozen=True)
class PresignedPut:
    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class PresignedPost:
    url: str
    fields: dict[str, str]


def presign_post(
    client: S3Client, *, bucket: str, key: str, max_size: int, content_type: str, expires_in: int
) -> PresignedPost:
    """A browser form upload (S3 POST policy) bound to one key and type, of at most
    `max_size` bytes: the store refuses anything else itself (400 EntityTooLarge)."""
    post = client.generate_presigned_post(
        Bucket=bucket,
        Key=key,
        Fields={"Content-Type": content_type},
        Conditions=[
            {"Content-Type": content_type},
            ["content-length-range", 0, max_size],
        ],
        ExpiresIn=expires_in,
    )
    return PresignedPost(url=post["url"], fields={k: str(v) for k, v in post["fields"].items()})


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


# Large files get larger parts (up to 64 MiB) so that one file needs at most about 100 part
# URLs, what one signing call answers: the create call can sign them all. A 1 GiB file goes
# in 11 MiB parts; parts of 16 MiB and more were 15% slower through SeaweedFS here.
TARGET_PART_COUNT = 100
MAX_GROWN_PART_SIZE = 64 * MIB


def part_layout(size: int, preferred_part_size: int) -> PartLayout:
    """Parts of `preferred_part_size`, grown (in whole MiB) towards about 100 parts per file
    up to 64 MiB, and further when needed so no file needs more than 10,000 parts; never
    below S3's 5 MiB minimum."""

    def whole_mib(n: int) -> int:
        return -(-n // MIB) * MIB

    toward_target = min(whole_mib(-(-size // TARGET_PART_COUNT)), MAX_GROWN_PART_SIZE)
    required = whole_mib(-(-size // S3_MAX_PARTS))
    part_size = max(preferred_part_size, S3_MIN_PART_SIZE, toward_target, required)
    return PartLayout(part_size=part_size, part_count=max(1, -(-size // part_size)))


class PartSigner:
    """Signs UploadPart URLs (SigV4 in the query, as every S3 pre-signed URL is). Signing is
    most of the API's work for a large upload (94 URLs for 1 GiB): the day's key is derived
    once per batch, and a URL then costs one SHA-256 and one HMAC, about 6 us."""

    def __init__(self, settings: Settings) -> None:
        endpoint = urlsplit(settings.s3_public_endpoint)
        self._origin = f"{endpoint.scheme}://{endpoint.netloc}"
        # What a client sends as Host: no port when it is the scheme's own.
        default_port = {"http": 80, "https": 443}.get(endpoint.scheme)
        self._host = (
            endpoint.hostname or ""
            if endpoint.port is None or endpoint.port == default_port
            else f"{endpoint.hostname}:{endpoint.port}"
        )
        self._prefix = endpoint.path.rstrip("/")
        self._region = settings.s3_region
        self._access_key = settings.s3_access_key.get_secret_value()
        self._secret_key = settings.s3_secret_key.get_secret_value()

    def parts(
        self,
        *,
        bucket: str,
        key: str,
        multipart_upload_id: str,
        parts: list[PartToSign],
        expires_in: int,
        at: datetime | None = None,
    ) -> list[PresignedPut]:
        """UploadPart URLs for several parts of one upload, signed at one instant."""
        amz_date = (at or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        key_of_day = sigv4.signing_key(self._secret_key, amz_date[:8], self._region)
        path = sigv4.object_path(self._prefix, bucket, key)
        credential = sigv4.uri_encode(f"{self._access_key}/{sigv4.scope(amz_date, self._region)}")
        upload = sigv4.uri_encode(multipart_upload_id)
        signed = []
        for part in parts:
            headers = {"Content-Length": str(part.length)}
            canonical_headers = f"content-length:{part.length}\nhost:{self._host}\n"
            signed_headers = "content-length;host"
            if part.checksum is not None:
                headers[part.checksum.header] = part.checksum.value
                canonical_headers += f"{part.checksum.header}:{part.checksum.value.strip()}\n"
                signed_headers += f";{part.checksum.header}"
            # Parameters in byte order of their names: upper-case X before lower-case.
            query = (
                "X-Amz-Algorithm=AWS4-HMAC-SHA256"
                f"&X-Amz-Credential={credential}"
                f"&X-Amz-Date={amz_date}"
                f"&X-Amz-Expires={expires_in}"
                f"&X-Amz-SignedHeaders={sigv4.uri_encode(signed_headers)}"
                f"&partNumber={part.part_number}"
                f"&uploadId={upload}"
            )
            canonical_request = (
                f"PUT\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n"
                + sigv4.UNSIGNED_PAYLOAD
            )
            signature = sigv4.signature(key_of_day, amz_date, self._region, canonical_request)
            signed.append(
                PresignedPut(
                    url=f"{self._origin}{path}?{query}&X-Amz-Signature={signature}",
                    headers=headers,
                )
            )
        return signed


@dataclass(frozen=True)
class PartToSign:
    part_number: int
    length: int
    checksum: Checksum | None = None


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
