"""The Conveyor client: uploads (single PUT or resumable parallel multipart), files, search."""

from __future__ import annotations

import contextlib
import mimetypes
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import httpx
import httpx_sse

from conveyor_client._checksums import PART_CHECKSUMS, PartChecksum
from conveyor_client._digests import Digests, file_digests
from conveyor_client._download import Download
from conveyor_client._exceptions import (
    ConflictError,
    ConveyorError,
    IntegrityError,
    NotFoundError,
    StoreError,
    UploadPaused,
    ValidationError,
    WaitTimeout,
    from_response,
    store_error,
    transport_error,
)
from conveyor_client._http import API, USER_AGENT, is_transient, retrying
from conveyor_client._models import File, FileEvent, Upload, UploadProgress, UploadToken
from conveyor_client._multipart import (
    MAX_PARTS_PER_CALL,
    MultipartSender,
    SignedBatch,
    _Stopped,
)
from conveyor_client._progress import ProgressCallback, ProgressCounter
from conveyor_client._source import (
    LIKELY_MULTIPART,
    Source,
    likely_part_size,
    part_ranges,
)
from conveyor_client._state import StateStore, UploadState, default_state_dir, state_key
from conveyor_client._throttle import Throttle

DEFAULT_TIMEOUT = 60.0
# How long one request of wait_until_ready asks the server to hold its answer, and the time
# on top of that before the request itself times out.
LONG_POLL_SECONDS = 20.0
LONG_POLL_SLACK_SECONDS = 15.0
RESUMABLE_STATUSES = frozenset({"awaiting_upload"})
COMPLETED_STATUSES = frozenset({"processing", "ready", "quarantined"})
_RETRY_COMPLETE_CODES = frozenset({"missing_parts", "etag_mismatch"})


class Client:
    """A client of one Conveyor API with one API key.

    Example:
        >>> with Client("http://127.0.0.1:8000", key) as client:
        ...     file = client.upload("scan.pdf", wait=True)
        ...     print(file.status)

    Args:
        api_url: The API's base URL, e.g. ``http://127.0.0.1:8000``.
        api_key: A key from ``conveyor keys create``.
        timeout: Seconds to wait for a connection or for any read or write to progress.
        part_concurrency: How many multipart parts are sent at once.
        part_retries: Attempts per part (and per single PUT) before giving up.
        state_dir: Where resume state is kept (default ``~/.cache/conveyor/uploads``, or
            ``$CONVEYOR_CLIENT_STATE_DIR``).
        bandwidth_limit: At most this many bytes per second, up and down; or a `Throttle`
            shared with other clients, so that together they keep to its limit. A limited
            upload that is stopped drops its parts in flight (sent again on resume) rather
            than finishing them at the limited pace.
    """

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        part_concurrency: int = 4,
        part_retries: int = 8,
        state_dir: str | os.PathLike[str] | None = None,
        bandwidth_limit: float | Throttle | None = None,
    ) -> None:
        if part_concurrency < 1:
            raise ValueError("part_concurrency must be at least 1")
        self._throttle = (
            bandwidth_limit
            if isinstance(bandwidth_limit, Throttle) or bandwidth_limit is None
            else Throttle(bandwidth_limit)
        )
        self.api_url = api_url.rstrip("/")
        self.part_concurrency = part_concurrency
        self.part_retries = part_retries
        self._api = API(self.api_url, api_key, timeout)
        # The store gets no Authorization header: pre-signed URLs carry their own signature.
        self._store = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            limits=httpx.Limits(max_connections=part_concurrency + 2),
            headers={"User-Agent": USER_AGENT},
        )
        directory = Path(state_dir).expanduser() if state_dir is not None else None
        self._states = StateStore(directory or default_state_dir())
        self.last_part_puts = 0
        """Part PUT attempts of the most recent upload (held parts are not sent; 0 when it
        went in one PUT or was a duplicate)."""
        self.last_parts_skipped = 0
        """Parts of the most recent upload found held by the store on resume."""
        self.last_download: Download | None = None
        """The most recent download: `resumed_from` and `bytes_received` say what resuming
        saved."""

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the client's connections."""
        self._api.close()
        self._store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- uploads --------------------------------------------------------------------------

    def upload(
        self,
        file: str | os.PathLike[str] | BinaryIO,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        visibility: str = "private",
        sha256: str | None = None,
        part_checksum: PartChecksum = "crc64nvme",
        progress: ProgressCallback | None = None,
        wait: bool = False,
        wait_timeout: float = 600.0,
        stop: threading.Event | None = None,
    ) -> File:
        """Uploads a file and returns it as the API shows it afterwards.

        A file the server asks to send in parts is sent by ``part_concurrency`` threads, each
        part signed with its own checksum so the store refuses corrupted bytes. Uploading the
        same path again after an interruption resumes it: the parts the store holds are not
        sent again.

        A file small enough for one PUT is declared with its SHA-256, so bytes the tenant
        already holds are not sent at all (``DEDUPLICATED``). A larger one's parts carry
        CRC64NVME by default (about 17 times faster than SHA-256 here), the store checks the
        whole file's CRC64NVME when it assembles the object, and the server computes the
        SHA-256 once the bytes land, finding duplicates then. ``part_checksum="sha256"``
        hashes the file with SHA-256 first instead: the upload can end ``DEDUPLICATED``
        before a byte is sent, for about 0.6 s of CPU per GiB before the first part goes.

        Args:
            file: A path, or a binary file object read from its current position. A stream
                that cannot seek (a pipe, ``sys.stdin.buffer``) is first copied to a temporary
                file. Only paths can be resumed: a file object's upload is cancelled when it
                stops.
            filename: The name to declare; defaults to the path's or file object's name.
            content_type: Defaults to a guess from the name, else application/octet-stream.
            visibility: ``private`` or ``public``.
            sha256: The file's hex SHA-256 if known: declared, so a duplicate is found
                before any byte is sent and the server checks the bytes against it.
            part_checksum: ``crc64nvme`` or ``sha256``, what each part is signed with.
            progress: Called as ``progress(bytes_done, bytes_total)`` as bytes reach the store.
            wait: Wait for a terminal status (see `wait_until_ready`) before returning.
            wait_timeout: Seconds to wait when ``wait`` is true.
            stop: Setting this event pauses the upload after its in-flight parts.

        Returns:
            The file; with ``wait``, in a terminal status (check ``file.status``).

        Raises:
            UploadPaused: ``stop`` was set or Ctrl-C was pressed; a path's state is kept
                (``resumable``).
            ConveyorError: The API or the store refused the upload, or the link failed
                beyond the retries (a multipart upload's state is kept; run it again).
        """
        if part_checksum not in PART_CHECKSUMS:
            raise ValueError(f"part_checksum must be one of {', '.join(PART_CHECKSUMS)}")
        self.last_part_puts = self.last_parts_skipped = 0
        with Source(file) as source:
            name = filename or source.name
            ctype = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
            counter = ProgressCounter(source.size, progress)
            key = None
            if source.path is not None:
                key = state_key(source.path, source.size, source.mtime_ns, self.api_url)
            sent = self._resume(source, key, counter, stop) if key is not None else None
            if sent is None and key is not None and source.path is not None:
                self._cancel_superseded(source.path, key)
            if sent is None:
                sent = self._upload_fresh(
                    source, key, name, ctype, visibility, sha256, part_checksum, counter, stop
                )
        file_id, completed = sent
        if wait:
            return self.wait_until_ready(file_id, timeout=wait_timeout)
        return completed or self.get_file(file_id)

    def _cancel_superseded(self, path: Path, key: str) -> None:
        """Cancels the paused uploads of this path made before the file changed: they would
        otherwise wait for bytes until they expire, counting against the tenant's quota."""
        for other, state in self._states.superseded(path, self.api_url, key).items():
            try:
                self._api.request("DELETE", f"/v1/uploads/{state.upload_id}")
            except ConflictError:
                pass  # it ended already: only the state was left
            except ConveyorError:
                # Another key's (tenant's) upload, or the API unreachable for now: neither is
                # a reason to hold up this upload, nor to forget a state someone may resume.
                continue
            self._states.remove(other)

    def _upload_fresh(
        self,
        source: Source,
        key: str | None,
        name: str,
        content_type: str,
        visibility: str,
        sha256: str | None,
        part_checksum: PartChecksum,
        counter: ProgressCounter,
        stop: threading.Event | None,
    ) -> tuple[str, File | None]:
        """Declares and sends the file: its id, and the file as completing it answered.

        A file likely to go in parts is declared with its part size and the first parts'
        checksums (hashed in the same read as the whole file), so the answer carries their
        URLs: two API calls for the whole upload, create and complete.
        """
        part_size = likely_part_size(source.size) if source.size >= LIKELY_MULTIPART else None
        digests = Digests(sha256=sha256.lower() if sha256 else None, crc64nvme=None, parts={})
        if part_size is None or part_checksum == "sha256":
            if not sha256:
                digests = self._hash(source, stop, part_size, "sha256")
        else:
            crcs = self._hash(source, stop, part_size, "crc64nvme")
            digests = Digests(digests.sha256, crcs.crc64nvme, crcs.parts)
        body: dict[str, Any] = {
            "filename": name,
            "size": source.size,
            "content_type": content_type,
            "visibility": visibility,
            "part_checksum": part_checksum,
        }
        if digests.sha256 is not None:
            body["sha256"] = digests.sha256
        if part_size is not None:
            body["part_size"] = part_size
        part_sums = digests.parts if part_size is not None else {}
        if part_sums:
            first = sorted(part_sums)[:MAX_PARTS_PER_CALL]
            body["parts"] = [{"part_number": n, part_checksum: part_sums[n]} for n in first]
        sent = time.monotonic()
        # The key makes the create repeatable: one whose answer was lost is asked again and
        # answers the same upload, rather than making a second that waits for nothing.
        response = self._api.request(
            "POST",
            "/v1/uploads",
            json=body,
            headers={"Idempotency-Key": str(uuid.uuid4())},
            idempotent=True,
        )
        created: dict[str, Any] = response.json()
        file_id = str(created["file_id"])
        method = created["method"]
        completed = None
        if method == "DEDUPLICATED":
            counter.add(source.size)
        elif method == "PUT":
            self._put_single(source, created, counter, stop)
        elif method == "MULTIPART":
            state = UploadState(
                api_url=self.api_url,
                path=str(source.path or ""),
                size=source.size,
                mtime_ns=source.mtime_ns,
                upload_id=str(created["upload_id"]),
                file_id=file_id,
                part_size=int(created["part_size"]),
                part_count=int(created["part_count"]),
                sha256=digests.sha256,
                part_checksum=part_checksum,
                crc64nvme=digests.crc64nvme,
            )
            signed = None
            if state.part_size == part_size:  # else the server chose other parts than hashed
                state.checksums = dict(part_sums)
                if created.get("parts"):
                    signed = SignedBatch(
                        created["parts"], created.get("parts_expire_at"), sent, response
                    )
            if key is not None:
                self._states.save(key, state)
            completed = self._multipart(source, state, key, {}, counter, stop, signed=signed)
        else:
            raise ConveyorError("unknown_method", f"The API asked for upload method {method!r}.")
        return file_id, completed

    def _hash(
        self,
        source: Source,
        stop: threading.Event | None,
        part_size: int | None,
        part_checksum: PartChecksum,
    ) -> Digests:
        """The whole file's checksum and, given a part size, each part's."""
        ranges = part_ranges(source.size, part_size) if part_size is not None else None
        try:
            return file_digests(source, ranges, stop, part_checksum=part_checksum)
        except KeyboardInterrupt:
            progress = UploadProgress(None, None, 0, source.size, 0, 0)
            raise UploadPaused(progress, resumable=source.path is not None) from None

    def _put_single(
        self,
        source: Source,
        created: dict[str, Any],
        counter: ProgressCounter,
        stop: threading.Event | None,
    ) -> None:
        def body() -> Iterator[bytes]:
            for chunk in source.chunks(0, source.size):
                if self._throttle is not None and not self._throttle.take(len(chunk), stop):
                    raise KeyboardInterrupt  # paced, the PUT could take minutes: stop now
                yield chunk
                counter.add(len(chunk))

        try:
            for attempt in retrying(self.part_retries):
                with attempt:
                    counter.add(-counter.done)
                    try:
                        response = self._store.put(
                            created["url"], content=body(), headers=created["headers"]
                        )
                    except httpx.TransportError as e:
                        raise transport_error(e, "PUT the file") from e
                    if response.status_code == 403:  # an expired URL is not retried
                        raise StoreError("url_refused", store_error(403, response.text).message)
                    if response.status_code != 200:
                        raise store_error(response.status_code, response.text)
        except KeyboardInterrupt:
            # A single PUT cannot resume: cancel it so the file does not wait to expire.
            with contextlib.suppress(ConveyorError):
                self.cancel_upload(str(created["upload_id"]))
            progress = UploadProgress(
                str(created["upload_id"]), str(created["file_id"]), 0, source.size
            )
            raise UploadPaused(progress, resumable=source.path is not None) from None

    def _resume(
        self,
        source: Source,
        key: str,
        counter: ProgressCounter,
        stop: threading.Event | None,
    ) -> tuple[str, File | None] | None:
        """Resumes the saved upload of this file; None when there is nothing to resume."""
        state = self._states.load(key)
        if state is None or state.api_url != self.api_url or state.size != source.size:
            return None
        try:
            upload = self.get_upload(state.upload_id)
        except NotFoundError:
            self._states.remove(key)
            return None
        if upload.status in COMPLETED_STATUSES:
            self._states.remove(key)  # completed before the state could be removed
            counter.add(source.size)
            return upload.file_id, None
        expired = upload.expires_at is not None and upload.expires_at <= datetime.now(UTC)
        if upload.status not in RESUMABLE_STATUSES or upload.method != "MULTIPART" or expired:
            self._states.remove(key)
            return None
        if upload.part_size is not None and upload.part_size != state.part_size:
            self._states.remove(key)
            return None
        completed = self._multipart(source, state, key, _held(upload, state), counter, stop)
        return upload.file_id, completed

    def _multipart(
        self,
        source: Source,
        state: UploadState,
        key: str | None,
        held: dict[int, str],
        counter: ProgressCounter,
        stop: threading.Event | None,
        *,
        signed: SignedBatch | None = None,
    ) -> File | None:
        """Sends the missing parts and completes; the file as the completion answered it."""
        sender = MultipartSender(
            api=self._api,
            store=self._store,
            source=source,
            state=state,
            states=self._states,
            state_key=key,
            concurrency=self.part_concurrency,
            attempts=self.part_retries,
            progress=counter,
            stop=threading.Event(),
            external_stop=stop,
            signed=signed,
            throttle=self._throttle,
        )
        skipped = 0
        try:
            for round_ in range(2):
                adopted = sender.adopt_held(held)
                skipped = skipped or adopted
                try:
                    sender.send_missing()
                except _Stopped:
                    raise KeyboardInterrupt from None
                try:
                    # Repeatable: a completion whose answer was lost is asked again.
                    answer = self._api.json(
                        "POST",
                        f"/v1/uploads/{state.upload_id}/complete",
                        json=sender.completion(),
                        idempotent=True,
                    )
                    break
                except ValidationError as e:
                    # The store lost a part the state counted (or holds another): sync, resend.
                    if round_ or e.code not in _RETRY_COMPLETE_CODES:
                        raise
                    held = _held(self.get_upload(state.upload_id), state)
                    counter.add(-counter.done)
        except KeyboardInterrupt:
            done = len(state.parts)
            progress = UploadProgress(
                state.upload_id,
                state.file_id,
                counter.done,
                state.size,
                done,
                state.part_count,
                skipped,
            )
            if key is None:  # a file object's: nothing could resume it, free the store now
                with contextlib.suppress(ConveyorError):
                    self.cancel_upload(state.upload_id)
                raise UploadPaused(progress, resumable=False) from None
            raise UploadPaused(progress) from None
        finally:
            self.last_part_puts = sender.puts
            self.last_parts_skipped = skipped
        if key is not None:
            self._states.remove(key)
        file = answer.get("file") if isinstance(answer, dict) else None
        return File.from_json(file) if isinstance(file, dict) else None

    def get_upload(self, upload_id: str) -> Upload:
        """An upload's state, with the parts the store already holds.

        Raises:
            NotFoundError: No such upload for this key's tenant.
        """
        return Upload.from_json(self._api.json("GET", f"/v1/uploads/{upload_id}"))

    def cancel_upload(self, upload_id: str) -> None:
        """Aborts an upload; its file ends ``cancelled``. Forgets any resume state for it.

        Raises:
            NotFoundError: No such upload for this key's tenant.
        """
        self._api.request("DELETE", f"/v1/uploads/{upload_id}")
        for path in self._states.directory.glob("*.json"):
            state = self._states.load(path.stem)
            if state is not None and state.upload_id == upload_id:
                self._states.remove(path.stem)

    # --- files ----------------------------------------------------------------------------

    def get_file(self, file_id: str) -> File:
        """A file's metadata and status.

        Raises:
            NotFoundError: No such file for this key's tenant (`GoneError` once deleted).
        """
        return File.from_json(self._api.json("GET", f"/v1/files/{file_id}"))

    def events(self, file_id: str, *, after: int = 0) -> Iterator[FileEvent]:
        """The file's progress as it happens (Server-Sent Events), ending with its current
        terminal status (a retried file shows its earlier run first); a dropped connection is
        resumed from the last event seen, so none is missed or repeated.

        Args:
            file_id: The file.
            after: Start after this event number (0: from the first).

        Raises:
            NotFoundError: No such file for this key's tenant (`GoneError` once deleted).
            TransportError: The API stayed unreachable through the retries.
        """
        last, failures = after, 0
        final = False
        while True:
            try:
                for event in self._event_stream(file_id, last):
                    if event is None:  # the server ended this stream early: go on
                        final = False
                        continue
                    last, failures = event.seq, 0
                    final = event.is_terminal
                    yield event
                # A retried file's history holds earlier terminal events: the end is a
                # terminal event the server closes the stream after.
                if final:
                    return
            except ConveyorError as e:
                failures += 1
                if not is_transient(e) or failures >= self._api.retries:
                    raise
                time.sleep(min(0.5 * 2**failures, 10.0))
            # else the server ended the stream after a while: go on from the last event

    def _event_stream(self, file_id: str, after: int) -> Iterator[FileEvent | None]:
        """The events of one stream; None for the server's "reconnect" (a `retry` field)."""
        path = f"/v1/files/{file_id}/events"
        headers = {"Last-Event-ID": str(after)}
        try:
            with httpx_sse.connect_sse(
                self._api.http, "GET", path, headers=headers, timeout=httpx.Timeout(60, read=90)
            ) as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    raise from_response(source.response)
                for sse in source.iter_sse():
                    if sse.data:
                        yield FileEvent.from_json(sse.json())
                    elif sse.retry is not None:
                        yield None
        except httpx.TransportError as e:
            raise transport_error(e, f"GET {path}") from e

    def wait_until_ready(
        self, file_id: str, timeout: float = 600.0, *, interval: float = 0.25
    ) -> File:
        """Waits until the file reaches a terminal status and returns it, whatever that is.

        Each request is held by the server until the file ends (``GET ...?wait=``, up to
        20 s at a time), so the answer comes as soon as it does, without polling.

        Args:
            file_id: The file.
            timeout: Seconds before giving up.
            interval: The first pause between requests a server answered early without the
                file having ended; it grows to 2 s.

        Raises:
            WaitTimeout: The file was still not in a terminal status after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            hold = max(0.0, min(LONG_POLL_SECONDS, deadline - time.monotonic()))
            asked = time.monotonic()
            file = File.from_json(
                self._api.json(
                    "GET",
                    f"/v1/files/{file_id}",
                    params={"wait": round(hold, 3)},
                    timeout=hold + LONG_POLL_SLACK_SECONDS,
                )
            )
            if file.is_terminal:
                return file
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    "wait_timeout", f"File {file_id} is still {file.status} after {timeout:g} s."
                )
            if time.monotonic() - asked < hold / 2:
                # Answered well before the wait was up without the file ending: a new run
                # (a retry) took over, or a server that does not hold answers.
                time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
                interval = min(interval * 1.5, 2.0)

    def download(
        self,
        file_id: str,
        dest: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Downloads a ready file to ``dest``, resumably, and checks its SHA-256.

        The bytes go to a hidden partial file beside ``dest`` that becomes ``dest`` only once
        its size and SHA-256 match the file's. A dropped connection or an expired URL is
        retried from the bytes already received; after an interruption (Ctrl-C, a killed
        process), downloading the same file to the same path goes on where it stopped.

        Args:
            file_id: The file.
            dest: The path to write, or a directory to write the file under its own name.
            progress: Called as ``progress(bytes_done, bytes_total)``.

        Returns:
            The path written.

        Raises:
            ConflictError: The file is not ready.
            PermissionDeniedError: The file is quarantined.
            IntegrityError: The bytes did not match the file's size and SHA-256 (a resumed
                download is first fetched once more from the first byte).
        """
        file = self.get_file(file_id)
        target = Path(dest)
        if target.is_dir():
            name = Path(file.filename).name
            target = target / (name if name not in ("", ".", "..") else file.id)
        download = Download(target, file.id, file.size, file.sha256, progress, self._throttle)
        self.last_download = download
        try:
            for attempt in retrying(self.part_retries):
                with attempt:
                    if not download.complete:
                        download.fetch(self._store, self._content_location(file.id))
                    try:
                        return download.finish()
                    except IntegrityError:
                        if not download.resumed_from:
                            raise
                        # The partial file an earlier attempt left was damaged: once more,
                        # from the first byte.
                        download.resumed_from = 0
                        download.fetch(self._store, self._content_location(file.id))
                        return download.finish()
        except ConveyorError as e:
            if not is_transient(e):
                download.discard()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _content_location(self, file_id: str) -> str:
        """Where the file's bytes are: a short-lived pre-signed URL, or its CDN URL."""
        response = self._api.request("GET", f"/v1/files/{file_id}/content")
        location: str | None = response.headers.get("location")
        if response.status_code not in (301, 302, 303, 307, 308) or not location:
            raise ConveyorError(
                "invalid_response", "The API did not redirect to the content.", response.status_code
            )
        return location

    def text(self, file_id: str) -> str:
        """The OCR text of a ready file.

        Raises:
            NotFoundError: ``text_not_available`` when the file has no text.
        """
        return self._api.request("GET", f"/v1/files/{file_id}/text").text

    def search(
        self,
        q: str | None = None,
        *,
        status: str | None = None,
        content_type: str | None = None,
        limit: int = 50,
    ) -> Iterator[File]:
        """The tenant's files, newest first, fetched page by page as the iterator advances.

        Args:
            q: Full-text search over names and OCR text.
            status: Only files in this status.
            content_type: Only this type, or a family such as ``image/*``.
            limit: Files per page (1 to 100).
        """
        params: dict[str, Any] = {"limit": limit}
        if q:
            params["q"] = q
        if status:
            params["status"] = status
        if content_type:
            params["content_type"] = content_type
        while True:
            page: dict[str, Any] = self._api.json("GET", "/v1/files", params=params)
            for item in page["files"]:
                yield File.from_json(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return
            params["cursor"] = cursor

    def create_upload_token(
        self,
        *,
        expires_in: int = 3600,
        max_file_size: int | None = None,
        max_files: int | None = None,
        content_types: list[str] | None = None,
        allow_public: bool = False,
    ) -> UploadToken:
        """A token a browser uploads with instead of this client's API key: it may upload
        (within these limits) and read back only the files it uploaded, until it expires.

        Args:
            expires_in: Seconds it lasts (at most the deployment's maximum).
            max_file_size: The largest file it may upload, in bytes.
            max_files: How many files it may create.
            content_types: The types it may declare, such as ``image/*``.
            allow_public: Whether its files may be public.

        Raises:
            PermissionDeniedError: The client holds an upload token, not an API key.
        """
        body: dict[str, Any] = {"expires_in": expires_in, "allow_public": allow_public}
        for name, value in (
            ("max_file_size", max_file_size),
            ("max_files", max_files),
            ("content_types", content_types),
        ):
            if value is not None:
                body[name] = value
        return UploadToken.from_json(self._api.json("POST", "/v1/upload-tokens", json=body))

    def delete(self, file_id: str) -> None:
        """Deletes a file (its bytes go when no other file holds them).

        Raises:
            ConflictError: ``file_not_finished`` while the file is still processing.
        """
        self._api.request("DELETE", f"/v1/files/{file_id}")


def _held(upload: Upload, state: UploadState) -> dict[int, str]:
    """The parts the store holds whole (number → etag), per the server's own layout."""
    held: dict[int, str] = {}
    for part in upload.parts:
        expected = min(state.part_size, state.size - (part.part_number - 1) * state.part_size)
        if 1 <= part.part_number <= state.part_count and part.size == expected:
            held[part.part_number] = part.etag
    return held
