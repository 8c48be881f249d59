"""The two store calls on every large upload's path, create and complete a multipart
upload: one urllib3 request each, signed by conveyor_core.sigv4, in a worker thread.

Through boto3 each call cost the API about 3 ms of CPU (botocore's event hooks, request
building and XML parsing in Python); through awscrt's S3 client 2.5 ms, most of it on its
own event-loop and host-resolver threads, which also kept waking while idle; this way
about 1 ms. The store's rarer calls stay on boto3.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import urllib3

from conveyor_core import sigv4
from conveyor_core.objectstore import (
    S3_CHECKSUM_NAME,
    S3_CHECKSUM_TYPE,
    Checksum,
    ChecksumAlgorithm,
)
from conveyor_core.settings import Settings

S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
# boto3's "standard" retries: three attempts, on broken connections and on the answers a
# busy or restarting store gives.
RETRIES = urllib3.Retry(
    total=3,
    backoff_factor=0.2,
    status_forcelist=(500, 502, 503, 504),
    allowed_methods=None,  # POST too: both calls are safe to repeat
    raise_on_status=False,
)
TIMEOUT = urllib3.Timeout(connect=5.0, read=60.0)


class StoreCallError(Exception):
    """The store refused (`code` is its error code, e.g. NoSuchUpload) or was not reached
    (`code` is None)."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class UploadedPart:
    part_number: int
    etag: str  # without quotes
    checksum: Checksum | None = None


class MultipartCalls:
    """CreateMultipartUpload and CompleteMultipartUpload against the store's internal
    endpoint, path-style."""

    def __init__(self, settings: Settings) -> None:
        endpoint = urlsplit(settings.s3_endpoint)
        self._host = endpoint.netloc
        self._prefix = endpoint.path.rstrip("/")
        self._region = settings.s3_region
        self._access_key = settings.s3_access_key.get_secret_value()
        self._secret_key = settings.s3_secret_key.get_secret_value()
        self._pool = urllib3.connection_from_url(
            f"{endpoint.scheme}://{endpoint.netloc}", maxsize=16, retries=RETRIES, timeout=TIMEOUT
        )

    async def create(
        self,
        *,
        bucket: str,
        key: str,
        content_type: str,
        checksum_algorithm: ChecksumAlgorithm | None = None,
    ) -> str:
        """Starts a multipart upload; returns its upload id. With `checksum_algorithm`, the
        store expects that checksum on every part (and checks CRC64NVME's whole object)."""
        extra = {}
        if checksum_algorithm is not None:
            extra = {
                "x-amz-checksum-algorithm": S3_CHECKSUM_NAME[checksum_algorithm],
                "x-amz-checksum-type": S3_CHECKSUM_TYPE[checksum_algorithm],
            }
        answer = await self._call(
            "CreateMultipartUpload",
            sigv4.object_path(self._prefix, bucket, key),
            "uploads=",
            content_type,
            extra=extra,
        )
        try:
            upload_id = _text(ElementTree.fromstring(answer), "UploadId")
        except ElementTree.ParseError:
            upload_id = None
        if not upload_id:
            raise StoreCallError("the store answered CreateMultipartUpload without an UploadId")
        return upload_id

    async def complete(
        self,
        *,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[UploadedPart],
        whole: Checksum | None = None,
    ) -> None:
        """Completes a multipart upload from its parts, in part-number order; the store
        refuses (BadDigest) when the object it assembles does not match `whole`."""
        extra = {}
        if whole is not None:
            extra = {whole.header: whole.value, "x-amz-checksum-type": "FULL_OBJECT"}
        await self._call(
            "CompleteMultipartUpload",
            sigv4.object_path(self._prefix, bucket, key),
            f"uploadId={sigv4.uri_encode(upload_id)}",
            "application/xml",
            completion_xml(parts).encode(),
            extra=extra,
        )

    async def _call(
        self,
        operation: str,
        path: str,
        query: str,
        content_type: str,
        body: bytes = b"",
        *,
        extra: dict[str, str] | None = None,
    ) -> bytes:
        # A thread: urllib3 blocks, and an asyncio HTTP client cost twice its CPU here.
        return await asyncio.to_thread(
            self._post, operation, path, query, content_type, body, extra or {}
        )

    def _post(
        self,
        operation: str,
        path: str,
        query: str,
        content_type: str,
        body: bytes,
        extra: dict[str, str],
    ) -> bytes:
        headers = sigv4.signed_headers(
            method="POST",
            path=path,
            query=query,
            headers={"host": self._host, "content-type": content_type, **extra},
            body=body,
            access_key=self._access_key,
            secret_key=self._secret_key,
            region=self._region,
            amz_date=datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        )
        try:
            answer = self._pool.request(
                "POST", f"{path}?{query}", body=body, headers=headers, assert_same_host=False
            )
        except urllib3.exceptions.HTTPError as e:
            raise StoreCallError(f"{operation} failed: {e}") from e
        # S3 may answer 200 and still have failed (CompleteMultipartUpload): the error is
        # then in the body.
        refusal = store_error(answer.data)
        if refusal is not None:
            raise StoreCallError(refusal[1], code=refusal[0])
        if answer.status >= 300:
            raise StoreCallError(f"{operation} answered {answer.status}")
        return bytes(answer.data)


def completion_xml(parts: list[UploadedPart]) -> str:
    entries = []
    for part in sorted(parts, key=lambda p: p.part_number):
        checksum = ""
        if part.checksum is not None:
            element = part.checksum.element
            checksum = f"<{element}>{escape(part.checksum.value)}</{element}>"
        entries.append(
            f"<Part><PartNumber>{part.part_number}</PartNumber>"
            f'<ETag>"{escape(part.etag)}"</ETag>{checksum}</Part>'
        )
    return (
        f'<CompleteMultipartUpload xmlns="{S3_XMLNS}">{"".join(entries)}</CompleteMultipartUpload>'
    )


def store_error(body: bytes) -> tuple[str, str] | None:
    """(code, message) of an S3 `<Error>` document; None when `body` is not one."""
    if b"<Error" not in body:
        return None
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None
    if root.tag.rsplit("}", 1)[-1] != "Error":
        return None
    code = _text(root, "Code") or "UnknownError"
    return code, _text(root, "Message") or code


def _text(element: ElementTree.Element, tag: str) -> str | None:
    found = element.find(f"{{*}}{tag}")
    return found.text if found is not None else None
