"""Parallel multipart upload: parts read with `os.pread`, each signed with its own checksum
(CRC64NVME or SHA-256), sent by a few threads with per-part retries, URLs asked for on
demand in small batches."""

from __future__ import annotations

import concurrent.futures
import email.utils
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from conveyor_client._checksums import PartChecksum
from conveyor_client._exceptions import StoreError, store_error, transport_error
from conveyor_client._http import API, is_transient, retrying
from conveyor_client._progress import ProgressCounter
from conveyor_client._source import PartRange, Source, b64_digest, part_ranges
from conveyor_client._state import FinishedPart, StateStore, UploadState
from conveyor_client._throttle import Throttle

MAX_PARTS_PER_CALL = 100


@dataclass(frozen=True)
class SignedPart:
    """A pre-signed part URL, the headers to send with it, and when to stop trusting it."""

    url: str
    headers: dict[str, str]
    deadline: float  # time.monotonic() after which the URL is asked for again


@dataclass(frozen=True)
class SignedBatch:
    """Part URLs as an API answer gave them, with when and how it answered."""

    parts: list[dict[str, Any]]
    expires_at: Any
    sent: float  # time.monotonic() when the request went out
    response: httpx.Response


class _Stopped(Exception):
    """Internal: a worker noticed the stop request before taking another part."""


# Parts signed per API call: fewer calls is less work for the API; each batch's checksums
# are computed before its first part goes out.
URL_BATCH = 32


class PartUrls:
    """Hands out part URLs, asking the API for the next few parts at once when one is needed.

    Only parts about to be sent are signed, and a URL near its expiry is never handed out,
    so a long upload never holds a batch of expired URLs.
    """

    def __init__(self, api: API, upload_id: str, checksums: PartChecksums, batch_size: int) -> None:
        self._api = api
        self._path = f"/v1/uploads/{upload_id}/parts"
        self._checksums = checksums
        self._batch_size = max(1, min(batch_size, MAX_PARTS_PER_CALL))
        self._cache: dict[int, SignedPart] = {}
        self._lock = threading.Lock()

    def get(self, part: PartRange, upcoming: list[PartRange]) -> SignedPart:
        """The URL for `part`; a fetch also signs the first not-yet-signed `upcoming` parts."""
        with self._lock:
            signed = self._cache.get(part.number)
            if signed is not None and signed.deadline > time.monotonic():
                return signed
            batch = [part]
            for other in upcoming:
                if len(batch) >= self._batch_size:
                    break
                cached = self._cache.get(other.number)
                if other.number != part.number and (
                    cached is None or cached.deadline <= time.monotonic()
                ):
                    batch.append(other)
            self._fetch(batch)
            return self._cache[part.number]

    def forget(self, number: int) -> None:
        """Drops a part's URL (the store refused it as expired), so the next get signs anew."""
        with self._lock:
            self._cache.pop(number, None)

    def _fetch(self, batch: list[PartRange]) -> None:
        body = {
            "parts": [
                {"part_number": p.number, self._checksums.algorithm: self._checksums.get(p)}
                for p in batch
            ]
        }
        sent = time.monotonic()
        response = self._api.request("POST", self._path, json=body, idempotent=True)
        data: dict[str, Any] = response.json()
        self._keep(SignedBatch(data["parts"], data.get("expires_at"), sent, response))

    def adopt(self, batch: SignedBatch) -> None:
        """Keeps URLs signed elsewhere (the create answer's) for the parts they name."""
        with self._lock:
            self._keep(batch)

    def _keep(self, batch: SignedBatch) -> None:
        """Caches a batch's URLs; the caller holds the lock."""
        deadline = batch.sent + _lifetime(batch.expires_at, batch.response.headers.get("date"))
        for item in batch.parts:
            self._cache[int(item["part_number"])] = SignedPart(
                url=str(item["url"]), headers=dict(item.get("headers") or {}), deadline=deadline
            )


def _lifetime(expires_at: Any, server_date: str | None) -> float:
    """Seconds the URLs stay usable, measured on the server's clock, minus a safety margin."""
    if not isinstance(expires_at, str):
        return 60.0
    expiry = datetime.fromisoformat(expires_at)
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    if server_date:
        try:
            now = email.utils.parsedate_to_datetime(server_date)
        except (TypeError, ValueError):
            pass
    ttl = (expiry - now).total_seconds()
    return max(0.0, ttl - min(30.0, ttl * 0.25))


class PartChecksums:
    """Base64 checksum of each part, computed once from the file (or known from the state)."""

    def __init__(self, source: Source, known: dict[int, str], algorithm: PartChecksum) -> None:
        self.algorithm = algorithm
        self._source = source
        self._known = dict(known)
        self._lock = threading.Lock()
        self.computed = 0  # checksums hashed here, not given: the state is saved when it grows

    def snapshot(self) -> dict[int, str]:
        """Every checksum known so far."""
        with self._lock:
            return dict(self._known)

    def get(self, part: PartRange) -> str:
        """The part's checksum, hashing its bytes the first time."""
        with self._lock:
            known = self._known.get(part.number)
        if known is None:
            known = b64_digest(self._source.digest(self.algorithm, part.start, part.end))
            with self._lock:
                if part.number not in self._known:
                    self._known[part.number] = known
                    self.computed += 1
        return known


class MultipartSender:
    """Sends the parts the store lacks with `concurrency` threads, keeping the resume state
    (saved when checksums were computed and when sending stops, not after every part)."""

    def __init__(
        self,
        *,
        api: API,
        store: httpx.Client,
        source: Source,
        state: UploadState,
        states: StateStore,
        state_key: str | None,
        concurrency: int,
        attempts: int,
        progress: ProgressCounter,
        stop: threading.Event,
        external_stop: threading.Event | None = None,
        signed: SignedBatch | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self._throttle = throttle
        self._api = api
        self._store = store
        self._source = source
        self._state = state
        self._states = states
        self._state_key = state_key
        self._concurrency = max(1, concurrency)
        self._attempts = attempts
        self._progress = progress
        self._stop = stop
        self._external_stop = external_stop
        self._lock = threading.Lock()
        self._queue: list[PartRange] = []
        self._error: BaseException | None = None
        self.ranges = part_ranges(state.size, state.part_size)
        self.checksums = PartChecksums(source, state.checksums, state.part_checksum)
        self._saved_computed = 0
        self._urls = PartUrls(
            api, state.upload_id, self.checksums, max(URL_BATCH, 2 * self._concurrency)
        )
        if signed is not None:
            self._urls.adopt(signed)
        self.puts = 0  # part PUT attempts made, for callers (and tests) that count them

    def adopt_held(self, held: dict[int, str]) -> int:
        """Records parts the store already holds (number → etag); returns how many."""
        by_number = {r.number: r for r in self.ranges}
        kept: dict[int, FinishedPart] = {}
        for number, etag in held.items():
            part = by_number.get(number)
            if part is None:
                continue
            kept[number] = FinishedPart(etag=etag, checksum=self.checksums.get(part))
        self._state.parts = kept
        self._save()
        self._progress.add(sum(by_number[n].size for n in kept))
        return len(kept)

    def send_missing(self) -> None:
        """Sends every part not in the state; raises `_Stopped` if asked to stop first."""
        with self._lock:
            self._queue = [r for r in self.ranges if r.number not in self._state.parts]
        if not self._queue:
            return
        workers = min(self._concurrency, len(self._queue))
        try:
            with concurrent.futures.ThreadPoolExecutor(workers, "conveyor-part") as pool:
                futures = [pool.submit(self._work) for _ in range(workers)]
                _wait_all(futures, self._stop, self._external_stop)
        finally:
            self._save()  # what a resume needs, whether sending finished, paused or failed
        if self._error is not None:
            raise self._error
        if self._stop.is_set():
            raise _Stopped()

    def completion(self) -> dict[str, Any]:
        """What `complete` takes: the parts in order, and the whole file's CRC64NVME."""
        algorithm = self._state.part_checksum
        body: dict[str, Any] = {
            "parts": [
                {"part_number": n, "etag": p.etag, algorithm: p.checksum}
                for n, p in sorted(self._state.parts.items())
            ]
        }
        if algorithm == "crc64nvme" and self._state.crc64nvme is not None:
            body["crc64nvme"] = self._state.crc64nvme
        return body

    def _take(self) -> tuple[PartRange, list[PartRange]] | None:
        if self._external_stop is not None and self._external_stop.is_set():
            self._stop.set()
        with self._lock:
            if not self._queue or self._stop.is_set():
                return None
            return self._queue.pop(0), list(self._queue)

    def _work(self) -> None:
        while (taken := self._take()) is not None:
            part, upcoming = taken
            try:
                etag = self._send(part, upcoming)
            except BaseException as e:
                with self._lock:
                    if self._error is None and not (self._stop.is_set() and is_transient(e)):
                        self._error = e
                self._stop.set()
                return
            with self._lock:
                self._state.parts[part.number] = FinishedPart(
                    etag=etag, checksum=self.checksums.get(part)
                )
            if self.checksums.computed != self._saved_computed:
                self._save()  # checksums hashed on the way: a resume should not hash again

    def _send(self, part: PartRange, upcoming: list[PartRange]) -> str:
        for attempt in retrying(self._attempts, stop_event=self._stop):
            with attempt:
                signed = self._urls.get(part, upcoming)
                try:
                    return self._put(part, signed)
                except StoreError as e:
                    if e.status == 403:  # expired (or clock-skewed) URL: sign again
                        self._urls.forget(part.number)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _put(self, part: PartRange, signed: SignedPart) -> str:
        sent = 0

        def body() -> Iterator[bytes]:
            nonlocal sent
            for chunk in self._source.chunks(part.start, part.end):
                # Paced, a part could take minutes to finish: a stop drops it instead.
                if self._throttle is not None and not self._throttle.take(len(chunk), self._stop):
                    raise _Stopped()
                yield chunk
                sent += len(chunk)
                self._progress.add(len(chunk))

        with self._lock:
            self.puts += 1
        try:
            response = self._store.put(signed.url, content=body(), headers=signed.headers)
        except httpx.TransportError as e:
            self._progress.add(-sent)
            raise transport_error(e, f"PUT part {part.number}") from e
        except _Stopped:
            self._progress.add(-sent)
            raise
        if response.status_code != 200:
            self._progress.add(-sent)
            raise store_error(response.status_code, response.text)
        etag: str = response.headers.get("etag", "")
        return etag

    def _save(self) -> None:
        if self._state_key is None:
            return
        with self._lock:  # the sending threads change the state under this lock
            self._saved_computed = self.checksums.computed
            self._state.checksums = self.checksums.snapshot()
            self._states.save(self._state_key, self._state)


def _wait_all(
    futures: list[concurrent.futures.Future[None]],
    stop: threading.Event,
    external_stop: threading.Event | None,
) -> None:
    """Waits for the workers; Ctrl-C or the caller's event asks them to stop after their
    in-flight parts."""
    pending = set(futures)
    while pending:
        try:
            if external_stop is not None and external_stop.is_set():
                stop.set()
            _, pending = concurrent.futures.wait(pending, timeout=0.2)
        except KeyboardInterrupt:
            stop.set()
