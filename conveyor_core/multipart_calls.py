"""The two store calls on every large upload's path, create and complete a multipart
upload, through the AWS Common Runtime's S3 client (awscrt, which signs, pools connections
and retries in C on its own threads).

Through boto3 each call cost the API about 3 ms of CPU (botocore's event hooks, request
building and XML parsing in Python, plus a thread hop), as much as the rest of an upload's
two requests; here about 0.9 ms. The store's rarer calls stay on boto3.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from awscrt.auth import AwsCredentialsProvider
from awscrt.http import HttpHeaders, HttpRequest
from awscrt.io import ClientBootstrap, DefaultHostResolver, EventLoopGroup
from awscrt.s3 import S3Client, S3RequestTlsMode, S3RequestType

from conveyor_core.settings import Settings

# No store answers these calls in seconds unless something is wrong; the client's own
# retries (5xx, throttling, broken connections) happen within this.
CALL_TIMEOUT_SECONDS = 60.0
S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


class StoreCallError(Exception):
    """The store refused (`code` is its error code, e.g. NoSuchUpload) or was not reached
    (`code` is None)."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class UploadedPart:
    part_number: int
    etag: str  # without quotes
    sha256_b64: str | None = None


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes


class MultipartCalls:
    """CreateMultipartUpload and CompleteMultipartUpload against the store's internal
    endpoint, path-style, awaited on the running event loop."""

    def __init__(self, settings: Settings) -> None:
        endpoint = urlsplit(settings.s3_endpoint)
        self._host = endpoint.netloc
        self._prefix = endpoint.path.rstrip("/")
        event_loops = EventLoopGroup(1)
        self._client = S3Client(
            bootstrap=ClientBootstrap(event_loops, DefaultHostResolver(event_loops)),
            region=settings.s3_region,
            tls_mode=(
                S3RequestTlsMode.ENABLED
                if endpoint.scheme == "https"
                else S3RequestTlsMode.DISABLED
            ),
            credential_provider=AwsCredentialsProvider.new_static(
                settings.s3_access_key.get_secret_value(),
                settings.s3_secret_key.get_secret_value(),
            ),
            connect_timeout_ms=5000,
        )

    async def create(self, *, bucket: str, key: str, content_type: str) -> str:
        """Starts a multipart upload; returns its upload id."""
        answer = await self._call(
            "CreateMultipartUpload",
            "POST",
            f"{self._path(bucket, key)}?uploads",
            [("content-type", content_type)],
        )
        try:
            upload_id = _text(ElementTree.fromstring(answer.body), "UploadId")
        except ElementTree.ParseError:
            upload_id = None
        if not upload_id:
            raise StoreCallError("the store answered CreateMultipartUpload without an UploadId")
        return upload_id

    async def complete(
        self, *, bucket: str, key: str, upload_id: str, parts: list[UploadedPart]
    ) -> None:
        """Completes a multipart upload from its parts, in part-number order."""
        body = completion_xml(parts).encode()
        await self._call(
            "CompleteMultipartUpload",
            "POST",
            f"{self._path(bucket, key)}?uploadId={quote(upload_id, safe='~')}",
            [("content-type", "application/xml")],
            body,
        )

    def _path(self, bucket: str, key: str) -> str:
        return f"{self._prefix}/{quote(bucket)}/{quote(key, safe='/~')}"

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
    ) -> _Answer:
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[_Answer] = loop.create_future()
        chunks: list[bytes] = []

        def settle(outcome: _Answer | StoreCallError) -> None:
            if answered.done():
                return
            if isinstance(outcome, StoreCallError):
                answered.set_exception(outcome)
            else:
                answered.set_result(outcome)

        def on_body(chunk: bytes, **_: Any) -> None:
            chunks.append(chunk)

        def on_done(
            error: Exception | None,
            error_body: bytes | None = None,
            status_code: int | None = None,
            **_: Any,
        ) -> None:  # on the client's own thread
            outcome: _Answer | StoreCallError
            answer = b"".join(chunks) if error is None else error_body or b""
            # S3 may answer 200 and still have failed (CompleteMultipartUpload): the error
            # is then in the body.
            refusal = store_error(answer)
            if refusal is not None:
                outcome = StoreCallError(refusal[1], code=refusal[0], status=status_code)
            elif error is not None:
                outcome = StoreCallError(f"{operation} failed: {error}", status=status_code)
            else:
                outcome = _Answer(status_code or 200, answer)
            try:
                loop.call_soon_threadsafe(settle, outcome)
            except RuntimeError:  # the loop has closed: nobody waits any more
                pass

        request = HttpRequest(
            method,
            path,
            HttpHeaders([("host", self._host), ("content-length", str(len(body))), *headers]),
            io.BytesIO(body) if body else None,
        )
        call = self._client.make_request(
            type=S3RequestType.DEFAULT,
            request=request,
            operation_name=operation,
            on_body=on_body,
            on_done=on_done,
        )
        try:
            return await asyncio.wait_for(answered, CALL_TIMEOUT_SECONDS)
        except TimeoutError as e:
            call.cancel()
            raise StoreCallError(
                f"{operation} had no answer within {CALL_TIMEOUT_SECONDS} s"
            ) from e
        except asyncio.CancelledError:
            call.cancel()
            raise


def completion_xml(parts: list[UploadedPart]) -> str:
    entries = []
    for part in sorted(parts, key=lambda p: p.part_number):
        checksum = (
            f"<ChecksumSHA256>{escape(part.sha256_b64)}</ChecksumSHA256>" if part.sha256_b64 else ""
        )
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
