import base64

from conveyor_core.events import (
    ObjectCreated,
    from_seaweedfs_webhook,
    parse_s3_event,
    to_s3_record,
)


def _webhook(key: str, event_type: str = "create", **entry: object) -> dict[str, object]:
    new_entry = {"name": key.rsplit("/", 1)[-1], "attributes": {"file_size": 11, "mtime": 17}}
    new_entry.update(entry)
    return {"key": key, "event_type": event_type, "message": {"new_entry": new_entry}}


def test_seaweedfs_create_becomes_object_created() -> None:
    etag = base64.b64encode(b'"abc123"').decode()
    event = from_seaweedfs_webhook(
        _webhook("/buckets/conveyor/incoming/t/u", extended={"Seaweed-X-Amz-ETag": etag})
    )
    assert event == ObjectCreated(
        bucket="conveyor", key="incoming/t/u", size=11, etag="abc123", sequencer="17"
    )


def test_seaweedfs_etag_falls_back_to_md5() -> None:
    md5 = bytes(range(16))
    event = from_seaweedfs_webhook(
        _webhook("/buckets/b/k", attributes={"md5": base64.b64encode(md5).decode()})
    )
    assert event is not None and event.etag == md5.hex()


def test_seaweedfs_noise_is_filtered() -> None:
    assert from_seaweedfs_webhook(_webhook("/buckets/b/k", event_type="delete")) is None
    assert from_seaweedfs_webhook(_webhook("/buckets/b/k", event_type="rename")) is None
    assert from_seaweedfs_webhook(_webhook("/buckets/b/.uploads/x/0001.part")) is None
    assert from_seaweedfs_webhook(_webhook("/buckets/.system/k")) is None
    assert from_seaweedfs_webhook(_webhook("/buckets/b/dir", is_directory=True)) is None
    assert from_seaweedfs_webhook(_webhook("/topics/x/y")) is None
    assert from_seaweedfs_webhook(_webhook("/buckets/b")) is None
    assert from_seaweedfs_webhook({"key": "/buckets/b/k", "event_type": "create"}) is None


def test_s3_record_round_trip_keeps_awkward_keys() -> None:
    event = ObjectCreated(bucket="b", key="incoming/t/a b+c%d", size=5, etag="e", sequencer="1")
    record = to_s3_record(event, "2026-11-25T00:00:00Z")
    assert record["s3"]["object"]["key"] == "incoming/t/a%20b%2Bc%25d"
    assert parse_s3_event({"Records": [record]}) == [event]


def test_parse_s3_event_skips_what_is_not_object_created() -> None:
    removed = {
        "eventName": "ObjectRemoved:Delete",
        "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}},
    }
    assert parse_s3_event({"Records": [removed, "junk", {"eventName": "ObjectCreated:Put"}]}) == []
    assert parse_s3_event({"no": "records"}) == []


def test_dedup_id_names_the_object_version() -> None:
    a = ObjectCreated(bucket="b", key="k", size=1, etag="e1", sequencer=None)
    b = ObjectCreated(bucket="b", key="k", size=1, etag="e2", sequencer=None)
    assert a.dedup_id != b.dedup_id
    assert (
        a.dedup_id == ObjectCreated(bucket="b", key="k", size=9, etag="e1", sequencer="x").dedup_id
    )
