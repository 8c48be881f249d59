import pytest
from pydantic import ValidationError

from api.schemas import UploadCreate
from conveyor_core.keys import generate_api_key, hash_api_key
from conveyor_core.objectstore import hex_to_b64
from conveyor_core.settings import Settings
from conveyor_core.types import FileStatus, incoming_key

VALID = {"filename": "invoice.pdf", "size": 10, "content_type": "application/pdf"}


def test_upload_create_accepts_a_plain_declaration() -> None:
    body = UploadCreate.model_validate({**VALID, "sha256": "AB" * 32})
    assert body.sha256 == "ab" * 32
    assert body.visibility == "private"


@pytest.mark.parametrize(
    "change",
    [
        {"filename": ""},
        {"filename": "../etc/passwd"},
        {"filename": "a/b.txt"},
        {"filename": "bell\x07.txt"},
        {"filename": "x" * 256},
        {"size": -1},
        {"size": "big"},
        {"content_type": "nonsense"},
        {"content_type": "image/*"},
        {"sha256": "zz"},
        {"visibility": "secret"},
        {"unknown": 1},
    ],
)
def test_upload_create_rejects_bad_input(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        UploadCreate.model_validate({**VALID, **change})


def test_unicode_filenames_are_kept() -> None:
    assert (
        UploadCreate.model_validate({**VALID, "filename": "Füße 😀.pdf"}).filename == "Füße 😀.pdf"
    )


def test_api_keys_are_random_and_hashed() -> None:
    a, b = generate_api_key(), generate_api_key()
    assert a != b and a.startswith("cvk_")
    assert hash_api_key(a) != hash_api_key(b) and len(hash_api_key(a)) == 64


def test_object_keys_and_checksums() -> None:
    assert incoming_key("t1", "u1") == "incoming/t1/u1"
    assert hex_to_b64("00" * 32) == "A" * 43 + "="


def test_terminal_statuses() -> None:
    assert not FileStatus.AWAITING_UPLOAD.is_terminal
    assert not FileStatus.PROCESSING.is_terminal
    assert all(s.is_terminal for s in FileStatus if s not in ("awaiting_upload", "processing"))


def test_production_refuses_development_secrets() -> None:
    with pytest.raises(ValidationError, match="CONVEYOR_S3_ACCESS_KEY"):
        Settings(environment="production")
