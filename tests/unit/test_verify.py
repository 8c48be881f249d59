from activities.verify import _is_transport_stream, _mismatch, sniff_content_type
from conveyor_core.types import VerifyInput


def _declared(size: int, sha256: str | None = None) -> VerifyInput:
    return VerifyInput(bucket="b", key="k", declared_size=size, declared_sha256=sha256)


def test_mismatch_names_size_first() -> None:
    assert _mismatch(_declared(10, "a" * 64), 9, "b" * 64) == (
        "size mismatch: declared 10 bytes, the object has 9"
    )


def test_mismatch_names_sha256() -> None:
    detail = _mismatch(_declared(3, "a" * 64), 3, "b" * 64)
    assert detail == f"sha256 mismatch: declared {'a' * 64}, the object hashes to {'b' * 64}"


def test_no_mismatch_without_declared_sha256() -> None:
    assert _mismatch(_declared(3), 3, "b" * 64) is None


def test_type_is_sniffed_from_the_bytes() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 17
    assert sniff_content_type(png) == "image/png"
    assert sniff_content_type(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n") == "application/pdf"
    assert sniff_content_type(b"hello world\n") == "text/plain"
    assert sniff_content_type(b"") == "application/x-empty"


def _packets(size: int, offset: int, count: int) -> bytes:
    packet = bytearray(size)
    packet[offset] = 0x47
    return bytes(packet) * count


def test_an_mpeg_transport_stream_is_told_by_its_sync_bytes() -> None:
    # (Real streams, which libmagic calls octet-stream: tests/integration/test_previews.py.)
    assert _is_transport_stream(_packets(188, 0, 12))
    assert _is_transport_stream(_packets(192, 4, 12))  # M2TS: a 4-byte timestamp first
    assert not _is_transport_stream(_packets(188, 0, 9))  # too few packets to tell
    broken = bytearray(_packets(188, 0, 12))
    broken[188 * 5] = 0x00
    assert not _is_transport_stream(bytes(broken))
    assert not _is_transport_stream(b"\x47" + bytes(4000))
