"""The API's own create/complete multipart calls (urllib3, signed by conveyor_core.sigv4)
against the real store: what they make, and the store's refusals as error codes."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import pytest

from conveyor_core.multipart_calls import MultipartCalls, StoreCallError, UploadedPart
from conveyor_core.objectstore import Checksum, ChecksumAlgorithm
from conveyor_core.settings import Settings
from tests.integration.uploads import b64_crc64, b64_sha256

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def calls(stack: Settings) -> MultipartCalls:
    return MultipartCalls(stack)


def checksum(algorithm: ChecksumAlgorithm, data: bytes) -> Checksum:
    return Checksum(algorithm, b64_sha256(data) if algorithm == "sha256" else b64_crc64(data))


def put_part(
    s3: S3Client,
    stack: Settings,
    key: str,
    upload_id: str,
    number: int,
    data: bytes,
    algorithm: ChecksumAlgorithm = "sha256",
) -> str:
    signed = checksum(algorithm, data)
    etag: str = s3.upload_part(  # type: ignore[call-overload]
        Bucket=stack.bucket,
        Key=key,
        UploadId=upload_id,
        PartNumber=number,
        Body=data,
        **{signed.element: signed.value},
    )["ETag"]
    return etag.strip('"')


@pytest.mark.parametrize("algorithm", ["sha256", "crc64nvme"])
async def test_created_and_completed_upload_holds_the_parts_bytes(
    stack: Settings, calls: MultipartCalls, s3: S3Client, algorithm: ChecksumAlgorithm
) -> None:
    key = f"test/calls/{uuid.uuid4()}"
    upload_id = await calls.create(
        bucket=stack.bucket, key=key, content_type="text/plain", checksum_algorithm=algorithm
    )
    first, last = os.urandom(5 * MIB), os.urandom(1000)
    parts = [
        UploadedPart(
            1, put_part(s3, stack, key, upload_id, 1, first, algorithm), checksum(algorithm, first)
        ),
        UploadedPart(
            2, put_part(s3, stack, key, upload_id, 2, last, algorithm), checksum(algorithm, last)
        ),
    ]
    whole = Checksum("crc64nvme", b64_crc64(first + last)) if algorithm == "crc64nvme" else None

    await calls.complete(
        bucket=stack.bucket, key=key, upload_id=upload_id, parts=parts[::-1], whole=whole
    )

    stored = s3.get_object(Bucket=stack.bucket, Key=key)
    assert stored["Body"].read() == first + last
    assert stored["ContentType"] == "text/plain"


async def test_a_whole_object_crc_that_does_not_match_is_refused_as_bad_digest(
    stack: Settings, calls: MultipartCalls, s3: S3Client
) -> None:
    key = f"test/calls/{uuid.uuid4()}"
    upload_id = await calls.create(
        bucket=stack.bucket, key=key, content_type="text/plain", checksum_algorithm="crc64nvme"
    )
    first, last = os.urandom(5 * MIB), os.urandom(1000)
    parts = [
        UploadedPart(1, put_part(s3, stack, key, upload_id, 1, first, "crc64nvme")),
        UploadedPart(2, put_part(s3, stack, key, upload_id, 2, last, "crc64nvme")),
    ]
    with pytest.raises(StoreCallError) as refused:
        await calls.complete(
            bucket=stack.bucket,
            key=key,
            upload_id=upload_id,
            parts=parts,
            whole=Checksum("crc64nvme", b64_crc64(last + first)),
        )
    assert refused.value.code == "BadDigest"


async def test_an_unknown_upload_is_refused_as_no_such_upload(
    stack: Settings, calls: MultipartCalls
) -> None:
    with pytest.raises(StoreCallError) as refused:
        await calls.complete(
            bucket=stack.bucket,
            key=f"test/calls/{uuid.uuid4()}",
            upload_id="no-such-upload",
            parts=[UploadedPart(1, "0" * 32)],
        )
    assert refused.value.code == "NoSuchUpload"


async def test_a_wrong_etag_is_refused_as_invalid_part(
    stack: Settings, calls: MultipartCalls, s3: S3Client
) -> None:
    key = f"test/calls/{uuid.uuid4()}"
    upload_id = await calls.create(bucket=stack.bucket, key=key, content_type="text/plain")
    put_part(s3, stack, key, upload_id, 1, b"only part")

    with pytest.raises(StoreCallError) as refused:
        await calls.complete(
            bucket=stack.bucket, key=key, upload_id=upload_id, parts=[UploadedPart(1, "f" * 32)]
        )
    assert refused.value.code == "InvalidPart"


async def test_an_unreachable_store_is_an_error_without_a_code(stack: Settings) -> None:
    unreachable = stack.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:9"})
    with pytest.raises(StoreCallError) as failed:
        await MultipartCalls(unreachable).create(
            bucket=stack.bucket, key="test/calls/nowhere", content_type="text/plain"
        )
    assert failed.value.code is None
