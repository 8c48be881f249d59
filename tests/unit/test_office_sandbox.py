"""The sandbox LibreOffice runs in (bubblewrap, real): what a program inside can and cannot
reach. Each test is what a hostile document would have LibreOffice do."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from activities.extract import ExtractionFailed, office_to_pdf, sandbox
from activities.thumbnails import _draw_legacy_office
from tests.extract_samples import make_rtf


def _inside(
    command: list[str], writable: Path, *readable: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sandbox.sandboxed(command, writable=writable, readable=list(readable)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    folder = tmp_path / "scratch"
    folder.mkdir()
    return folder


def test_the_sandbox_is_available_on_this_machine() -> None:
    # `make test` installs bubblewrap: were it missing, old office formats would get no preview.
    assert sandbox.available()


def test_a_program_inside_reads_the_document_and_writes_its_scratch_folder(
    tmp_path: Path, scratch: Path
) -> None:
    document = tmp_path / "document.doc"
    document.write_text("the document's words")
    done = _inside(["sh", "-c", f"cat {document} > out.txt"], scratch, document)
    assert done.returncode == 0, done.stderr
    assert (scratch / "out.txt").read_text() == "the document's words"


def test_a_program_inside_sees_no_other_file_of_the_machine(tmp_path: Path, scratch: Path) -> None:
    # Another upload the worker holds, beside the document, and the project's own files.
    neighbour = tmp_path / "another-upload.png"
    neighbour.write_bytes(b"\x89PNG another tenant's picture")
    document = tmp_path / "document.rtf"
    document.write_text("{\\rtf1 hi}")
    project_file = Path(__file__).resolve()
    for secret in (neighbour, project_file, Path(sys.executable).resolve()):
        done = _inside(["cat", str(secret)], scratch, document)
        assert done.returncode != 0 and "No such file" in done.stderr, (secret, done)
    assert _inside(["ls", "/root"], scratch).returncode != 0


def test_a_program_inside_cannot_write_outside_its_scratch_folder(
    tmp_path: Path, scratch: Path
) -> None:
    document = tmp_path / "document.doc"
    document.write_text("original")
    done = _inside(["sh", "-c", f"echo changed > {document}"], scratch, document)
    assert done.returncode != 0 and "Read-only file system" in done.stderr, done
    assert document.read_text() == "original"
    done = _inside(["touch", "/usr/planted"], scratch)
    assert done.returncode != 0 and not Path("/usr/planted").exists()


def test_a_program_inside_reaches_no_network(scratch: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        connect = ["bash", "-c", f"echo hi > /dev/tcp/127.0.0.1/{port}"]
        done = _inside(connect, scratch)
        assert done.returncode != 0, done
        server.settimeout(0.5)
        with pytest.raises(TimeoutError):
            server.accept()
        # The same connection, made outside, arrives: the refusal above is the sandbox's.
        assert subprocess.run(connect, timeout=30, check=False).returncode == 0
        server.accept()[0].close()


def test_without_bubblewrap_there_is_no_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    sandbox.available.cache_clear()
    try:
        assert not sandbox.available()
    finally:
        monkeypatch.undo()
        sandbox.available.cache_clear()
    assert sandbox.available()


def test_without_the_sandbox_an_old_format_gets_no_preview_and_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = tmp_path / "source"
    document.write_bytes(make_rtf("words"))
    monkeypatch.setattr(sandbox, "available", lambda: False)
    drawn = _draw_legacy_office("text/rtf", document, 256, lambda: None)
    assert drawn.source is None
    assert drawn.skipped_reason == (
        "no preview: LibreOffice draws this format only in a sandbox (bubblewrap), "
        "which this worker cannot make"
    )
    with pytest.raises(ExtractionFailed, match="only in a sandbox"):
        office_to_pdf(document, tmp_path, 60, lambda: None, sandbox_only=True)
    assert list(tmp_path.iterdir()) == [document]  # no LibreOffice ran, nothing left behind


def test_an_ole_file_that_is_no_office_document_gets_no_preview(tmp_path: Path) -> None:
    document = tmp_path / "source"
    document.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096))
    drawn = _draw_legacy_office("application/x-ole-storage", document, 256, lambda: None)
    assert drawn.skipped_reason == (
        "no thumbnails for application/x-ole-storage: not an office document"
    )
