"""The edge (nginx) as the CDN in front of the public bucket, and the publish stage, against
the real store and nginx of the test stack."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.publish import (
    PUBLIC_CACHE_CONTROL,
    SOURCE_CHANGED_ERROR,
    PublishActivities,
    edge_purge_url,
)
from conveyor_core.settings import Settings
from conveyor_core.types import BlobRef, PublishInput, PublishResult, UnpublishInput
from tests.integration.uploads import upload
from workers.stack import provision

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration


def put_blob(s3: S3Client, settings: Settings, data: bytes, content_type: str) -> BlobRef:
    key = f"tests/edge/{uuid.uuid4()}"
    s3.put_object(Bucket=settings.bucket, Key=key, Body=data, ContentType=content_type)
    return BlobRef(
        bucket=settings.bucket,
        key=key,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        content_type=content_type,
    )


@functools.cache
def _sessions(database_url: str) -> sessionmaker[Session]:
    return sessionmaker(create_engine(database_url, pool_size=1))


def _activities(s3: S3Client, settings: Settings, **kwargs: int) -> PublishActivities:
    return PublishActivities(s3, settings, _sessions(settings.sqlalchemy_url), **kwargs)


def publish(s3: S3Client, settings: Settings, blob: BlobRef, **kwargs: int) -> PublishResult:
    activities = _activities(s3, settings, **kwargs)
    result: PublishResult = ActivityEnvironment().run(
        activities.publish_blob, PublishInput(blob=blob)
    )
    return result


def unpublish(s3: S3Client, settings: Settings, sha256: str) -> None:
    ActivityEnvironment().run(
        _activities(s3, settings).unpublish_blob, UnpublishInput(sha256=sha256)
    )


def test_only_the_public_bucket_is_readable_anonymously(stack: Settings, s3: S3Client) -> None:
    key = f"tests/edge/{uuid.uuid4()}"
    for bucket in (stack.bucket, stack.quarantine_bucket, stack.public_bucket):
        s3.put_object(Bucket=bucket, Key=key, Body=b"anonymous probe")
    store = stack.s3_endpoint
    assert httpx.get(f"{store}/{stack.bucket}/{key}").status_code == 403
    assert httpx.get(f"{store}/{stack.quarantine_bucket}/{key}").status_code == 403
    public = httpx.get(f"{store}/{stack.public_bucket}/{key}")
    assert (public.status_code, public.content) == (200, b"anonymous probe")
    # Reading one object is all: no listing, no writes, no deletes, no ACLs.
    for bucket in (stack.bucket, stack.quarantine_bucket, stack.public_bucket):
        assert httpx.get(f"{store}/{bucket}/").status_code == 403
        assert httpx.get(f"{store}/{bucket}?list-type=2").status_code == 403
        assert httpx.put(f"{store}/{bucket}/{key}-anon", content=b"x").status_code == 403
        assert httpx.delete(f"{store}/{bucket}/{key}").status_code == 403
    assert httpx.get(f"{store}/{stack.public_bucket}/{key}?acl").status_code == 403
    assert httpx.get(f"{store}/").status_code == 403
    for bucket in (stack.bucket, stack.quarantine_bucket, stack.public_bucket):
        s3.delete_object(Bucket=bucket, Key=key)


def test_provisioning_buckets_again_changes_nothing(stack: Settings, s3: S3Client) -> None:
    provision.create_buckets(stack)
    provision.create_buckets(stack)
    policy = s3.get_bucket_policy(Bucket=stack.public_bucket)["Policy"]
    assert f"arn:aws:s3:::{stack.public_bucket}/*" in policy
    assert httpx.get(f"{stack.s3_endpoint}/{stack.bucket}/x").status_code == 403


def test_publish_serves_through_the_edge_cache(stack: Settings, s3: S3Client) -> None:
    data = os.urandom(100_000)
    blob = put_blob(s3, stack, data, "image/png")
    result = publish(s3, stack, blob)
    assert result.public_key == blob.sha256
    assert result.cdn_url == f"{stack.edge_public}/{blob.sha256}"

    head = s3.head_object(Bucket=stack.public_bucket, Key=blob.sha256)
    assert head["ContentType"] == "image/png"
    assert head["CacheControl"] == PUBLIC_CACHE_CONTROL
    direct = httpx.get(f"{stack.s3_endpoint}/{stack.public_bucket}/{blob.sha256}")
    assert (direct.status_code, direct.content) == (200, data)

    first = httpx.get(result.cdn_url)
    second = httpx.get(result.cdn_url)
    for response in (first, second):
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["content-type"] == "image/png"
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert first.headers["x-cache-status"] == "MISS"
    assert second.headers["x-cache-status"] == "HIT"
    # A query string can neither bypass the cache nor change what is served.
    queried = httpx.get(result.cdn_url, params={"response-content-type": "text/html"})
    assert queried.headers["x-cache-status"] == "HIT"
    assert queried.headers["content-type"] == "image/png"
    assert httpx.head(result.cdn_url).headers["x-cache-status"] == "HIT"
    # The original upload is untouched: publishing copies, never moves.
    assert s3.head_object(Bucket=blob.bucket, Key=blob.key)["ContentLength"] == len(data)


def test_publishing_twice_is_harmless(stack: Settings, s3: S3Client) -> None:
    data = os.urandom(5000)
    blob = put_blob(s3, stack, data, "application/pdf")
    first = publish(s3, stack, blob)
    etag = s3.head_object(Bucket=stack.public_bucket, Key=first.public_key)["ETag"]
    modified = s3.head_object(Bucket=stack.public_bucket, Key=first.public_key)["LastModified"]
    # Another upload of the same bytes publishes to the same key, without a second copy.
    again = publish(s3, stack, put_blob(s3, stack, data, "application/pdf"))
    assert again == first
    head = s3.head_object(Bucket=stack.public_bucket, Key=first.public_key)
    assert (head["ETag"], head["LastModified"]) == (etag, modified)
    assert httpx.get(first.cdn_url).content == data


def test_large_objects_are_copied_in_parts(stack: Settings, s3: S3Client) -> None:
    data = os.urandom(11 * 1024 * 1024 + 17)
    blob = put_blob(s3, stack, data, "video/mp4")
    small_limits = {"copy_object_max_bytes": 1024, "copy_part_min_bytes": 5 * 1024 * 1024}
    result = publish(s3, stack, blob, **small_limits)
    head = s3.head_object(Bucket=stack.public_bucket, Key=result.public_key)
    assert head["ContentLength"] == len(data)
    # Not on the inline list: stored (so served) as a download, in parts as in one copy.
    assert head["ContentType"] == "application/octet-stream"
    assert head["ContentDisposition"] == "attachment"
    assert head["CacheControl"] == PUBLIC_CACHE_CONTROL
    assert hashlib.sha256(httpx.get(result.cdn_url).content).hexdigest() == blob.sha256


def test_the_edge_refuses_writes_and_private_buckets(stack: Settings, s3: S3Client) -> None:
    blob = put_blob(s3, stack, b"read only", "text/plain")
    result = publish(s3, stack, blob)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = httpx.request(method, result.cdn_url, content=b"x")
        assert response.status_code == 405, method
        assert response.headers["allow"] == "GET, HEAD"
    assert httpx.get(result.cdn_url).content == b"read only"
    # Only the public bucket is its origin: nothing reaches another bucket's objects.
    for path in (
        f"/{stack.bucket}/{blob.key}",
        f"/../{stack.bucket}/{blob.key}",
        f"/%2e%2e/{stack.bucket}/{blob.key}",
        f"/..%2f{stack.bucket}%2f{blob.key}",
    ):
        response = httpx.get(httpx.URL(stack.edge + path))
        assert response.status_code in (400, 404), (path, response.status_code)
        assert b"read only" not in response.content
    # Credentials given to the edge are not passed on, and no listing is served.
    signed = httpx.get(
        f"{stack.edge}/{blob.key}", headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x"}
    )
    assert signed.status_code == 404
    assert httpx.get(f"{stack.edge}/").status_code == 404
    assert httpx.get(f"{stack.edge}/?list-type=2").status_code == 404


def test_unpublish_purges_the_edge(stack: Settings, s3: S3Client) -> None:
    data = os.urandom(4096)
    blob = put_blob(s3, stack, data, "image/jpeg")
    result = publish(s3, stack, blob)
    assert httpx.get(result.cdn_url).headers["x-cache-status"] == "MISS"
    assert httpx.get(result.cdn_url).headers["x-cache-status"] == "HIT"

    unpublish(s3, stack, blob.sha256)
    after = httpx.get(result.cdn_url)
    assert after.status_code == 404
    assert after.headers["x-cache-status"] == "MISS"
    assert data not in after.content
    assert "immutable" not in after.headers["cache-control"]
    # A miss is cached only briefly, and shows as a cached 404, never the old bytes.
    cached_miss = httpx.get(result.cdn_url)
    assert (cached_miss.status_code, cached_miss.headers["x-cache-status"]) == (404, "HIT")

    # Again: nothing left to delete, a cached 404 to purge; then nothing cached at all.
    unpublish(s3, stack, blob.sha256)
    unpublish(s3, stack, blob.sha256)
    assert httpx.get(result.cdn_url).headers["x-cache-status"] == "MISS"
    # The original upload stays; publishing it again serves it again.
    assert publish(s3, stack, blob) == result
    again = httpx.get(result.cdn_url)
    assert (again.status_code, again.content, again.headers["x-cache-status"]) == (
        200,
        data,
        "MISS",
    )


def test_purge_is_refused_except_as_delete(stack: Settings, s3: S3Client) -> None:
    blob = put_blob(s3, stack, b"purge me", "text/plain")
    result = publish(s3, stack, blob)
    httpx.get(result.cdn_url)
    purge = edge_purge_url(stack, blob.sha256)
    assert httpx.get(purge).status_code == 403
    assert httpx.post(purge).status_code == 403
    assert httpx.get(result.cdn_url).headers["x-cache-status"] == "HIT"
    assert httpx.delete(purge).status_code == 204
    assert httpx.delete(purge).status_code == 404
    assert httpx.get(result.cdn_url).headers["x-cache-status"] == "MISS"


async def test_unpublish_keeps_the_copy_a_live_public_file_holds(
    stack: Settings, s3: S3Client, api: httpx.AsyncClient, key_a: str
) -> None:
    """An unpublish that comes late (a public duplicate claimed the bytes meanwhile) must not
    leave that file with a dead CDN URL."""
    content = f"still public {uuid.uuid4()}\n".encode()
    file = await upload(api, key_a, content, content_type="text/plain", visibility="public")
    assert file["status"] == "ready" and file["cdn_url"]
    unpublish(s3, stack, file["sha256"])
    served = httpx.get(file["cdn_url"])
    assert served.status_code == 200 and served.content == content
    assert s3.head_object(Bucket=stack.public_bucket, Key=file["sha256"])["ContentLength"] == len(
        content
    )


def test_publish_copies_only_the_object_verify_saw(stack: Settings, s3: S3Client) -> None:
    """Bytes that changed at the key after verify (its ETag differs) are never published."""
    data = f"verified {uuid.uuid4()}\n".encode()
    verified = put_blob(s3, stack, data, "text/plain")
    etag = s3.head_object(Bucket=verified.bucket, Key=verified.key)["ETag"]
    s3.put_object(Bucket=verified.bucket, Key=verified.key, Body=b"<script>swapped</script>")
    with pytest.raises(ApplicationError) as raised:
        publish(s3, stack, dataclasses.replace(verified, etag=etag))
    assert raised.value.type == SOURCE_CHANGED_ERROR and raised.value.non_retryable
    with pytest.raises(ClientError):
        s3.head_object(Bucket=stack.public_bucket, Key=verified.sha256)
