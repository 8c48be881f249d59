"""Object-created events: every store's notifications normalised to the S3 event-record shape.

The relay reads only that shape (`Records[].s3.bucket.name`, `s3.object.key`, ...), so it
serves AWS S3, MinIO, Ceph RGW and, through the adapter, SeaweedFS alike. Pure functions.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_plus

CREATED_EVENT_NAME = "ObjectCreated:Put"


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    size: int | None
    etag: str | None
    sequencer: str | None

    @property
    def dedup_id(self) -> str:
        """Identifies this version of the object, for JetStream's duplicate window."""
        return f"{self.bucket}/{self.key}@{self.etag or self.sequencer or ''}"


def to_s3_record(event: ObjectCreated, event_time: str) -> dict[str, Any]:
    """One S3 event record (keys are URL-encoded, as S3 sends them)."""
    obj: dict[str, Any] = {"key": quote(event.key, safe="/")}
    if event.size is not None:
        obj["size"] = event.size
    if event.etag is not None:
        obj["eTag"] = event.etag
    if event.sequencer is not None:
        obj["sequencer"] = event.sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "conveyor:s3",
        "eventTime": event_time,
        "eventName": CREATED_EVENT_NAME,
        "s3": {"bucket": {"name": event.bucket}, "object": obj},
    }


def parse_s3_event(payload: dict[str, Any]) -> list[ObjectCreated]:
    """The object-created records of an S3 event notification; anything else is skipped."""
    found: list[ObjectCreated] = []
    records = payload.get("Records")
    if not isinstance(records, list):
        return found
    for record in records:
        if not isinstance(record, dict):
            continue
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        obj = s3.get("object") or {}
        key = obj.get("key")
        if not isinstance(bucket, str) or not isinstance(key, str):
            continue
        size = obj.get("size")
        found.append(
            ObjectCreated(
                bucket=bucket,
                key=unquote_plus(key),
                size=size if isinstance(size, int) else None,
                etag=obj.get("eTag") if isinstance(obj.get("eTag"), str) else None,
                sequencer=obj.get("sequencer") if isinstance(obj.get("sequencer"), str) else None,
            )
        )
    return found


def from_seaweedfs_webhook(payload: dict[str, Any]) -> ObjectCreated | None:
    """Reads a SeaweedFS filer webhook notification; None for anything but a new object.

    Noise is filtered here: deletes and renames, folders, multipart parts under
    `/buckets/<b>/.uploads/` and anything under a hidden top-level folder.
    """
    if payload.get("event_type") not in ("create", "update"):
        return None
    path = payload.get("key")
    message = payload.get("message") or {}
    entry = message.get("new_entry") or message.get("newEntry")
    if not isinstance(path, str) or not isinstance(entry, dict):
        return None
    if entry.get("is_directory") or entry.get("isDirectory"):
        return None
    parts = path.split("/", 3)  # "", "buckets", bucket, key
    if len(parts) < 4 or parts[1] != "buckets" or not parts[2] or not parts[3]:
        return None
    bucket, key = parts[2], parts[3]
    if bucket.startswith(".") or key.startswith(".uploads/") or key.endswith("/"):
        return None
    attributes = entry.get("attributes") or {}
    size = attributes.get("file_size", attributes.get("fileSize"))
    mtime = attributes.get("mtime")
    return ObjectCreated(
        bucket=bucket,
        key=key,
        size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
        etag=_seaweedfs_etag(entry),
        sequencer=str(mtime) if mtime is not None else None,
    )


def _seaweedfs_etag(entry: dict[str, Any]) -> str | None:
    extended = entry.get("extended") or {}
    raw = extended.get("Seaweed-X-Amz-ETag")
    if isinstance(raw, str):
        try:
            return base64.b64decode(raw, validate=True).decode("ascii").strip('"')
        except (binascii.Error, UnicodeDecodeError):
            return None
    md5 = (entry.get("attributes") or {}).get("md5")
    if isinstance(md5, str):
        try:
            return base64.b64decode(md5, validate=True).hex()
        except binascii.Error:
            return None
    return None
