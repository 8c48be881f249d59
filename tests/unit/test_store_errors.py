"""An S3 `<Error>` document is told apart from an answer, even inside a 200 (S3 may answer
CompleteMultipartUpload 200 and fail in the body)."""

from __future__ import annotations

from conveyor_core.multipart_calls import UploadedPart, completion_xml, store_error
from conveyor_core.objectstore import Checksum

CHECKSUM = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWU1BVyHqQ="


def test_an_error_document_gives_its_code_and_message() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidPart</Code>'
        b"<Message>One or more of the specified parts could not be found.</Message></Error>"
    )
    assert store_error(body) == (
        "InvalidPart",
        "One or more of the specified parts could not be found.",
    )


def test_a_namespaced_error_document_is_one_too() -> None:
    body = b'<Error xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Code>SlowDown</Code></Error>'
    assert store_error(body) == ("SlowDown", "SlowDown")


def test_an_answer_is_not_an_error() -> None:
    answer = (
        b'<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Key>incoming/t/u</Key><ETag>&quot;abc-2&quot;</ETag></CompleteMultipartUploadResult>"
    )
    assert store_error(answer) is None
    assert store_error(b"") is None
    assert store_error(b"<Error><Code>cut off") is None  # not a document: no code to act on


def test_the_completion_lists_parts_in_order_with_their_checksums() -> None:
    xml = completion_xml(
        [
            UploadedPart(2, "b<2", None),
            UploadedPart(1, "a1", Checksum("sha256", CHECKSUM)),
            UploadedPart(3, "c3", Checksum("crc64nvme", "AAECAwQFBgc=")),
        ]
    )
    assert xml.index("<PartNumber>1</PartNumber>") < xml.index("<PartNumber>2</PartNumber>")
    assert f'<ETag>"a1"</ETag><ChecksumSHA256>{CHECKSUM}</ChecksumSHA256>' in xml
    assert '<ETag>"b&lt;2"</ETag></Part>' in xml
    assert '<ETag>"c3"</ETag><ChecksumCRC64NVME>AAECAwQFBgc=</ChecksumCRC64NVME>' in xml
