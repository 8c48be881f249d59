from activities.verify import _mismatch, sniff_content_type
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
