"""Thumbnails of what is not an image Pillow decodes, with the real programs: an SVG
(librsvg), an office document's first page (LibreOffice, then poppler), a video's poster
frame and what ffprobe says of video and audio; and the hostile ones: an SVG with an
external entity or a remote image, a document that links a file or address outside itself,
a video whose frames are over the pixel limit, a playlist that points at local files."""

from __future__ import annotations

import io
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import magic
import pytest
from PIL import Image
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.thumbnails import ThumbnailActivities
from conveyor_core.settings import Settings
from conveyor_core.types import INVALID_IMAGE_ERROR, BlobRef, ThumbnailsInput, ThumbnailsResult
from tests import extract_samples
from tests.integration.uploads import upload

pytestmark = pytest.mark.integration

SIZES = [256, 1024]


def _run(activities: ThumbnailActivities, blob: BlobRef) -> ThumbnailsResult:
    result = ActivityEnvironment().run(activities.make_thumbnails, ThumbnailsInput(blob, SIZES))
    assert isinstance(result, ThumbnailsResult)
    return result


def _refused(activities: ThumbnailActivities, blob: BlobRef) -> str:
    with pytest.raises(ApplicationError) as caught:
        _run(activities, blob)
    assert caught.value.type == INVALID_IMAGE_ERROR and caught.value.non_retryable
    return caught.value.message


def _ffmpeg(tmp_path: Path, name: str, *args: str) -> bytes:
    out = tmp_path / name
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", *args, "-t", "2", str(out)],
        check=True,
        timeout=120,
    )
    return out.read_bytes()


VIDEO = ["-f", "lavfi", "-i", "testsrc=size=640x360:rate=10", "-f", "lavfi", "-i", "sine"]
VIDEO += ["-shortest"]


def test_an_svg_is_drawn(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef]
) -> None:
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200">'
        b'<rect width="400" height="200" fill="#3060c0"/><circle cx="200" cy="100" r="80"/></svg>'
    )
    blob = blob_in_store(svg)
    assert blob.content_type == "image/svg+xml"
    result = _run(thumbnails, blob)
    assert [(t.width, t.height) for t in result.thumbnails] == [(256, 128), (1024, 512)]


def test_an_svg_with_an_external_entity_is_refused_with_a_reason(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef]
) -> None:
    svg = (
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY leak SYSTEM "file:///etc/hostname">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100">'
        b'<text x="10" y="50">&leak;</text></svg>'
    )
    message = _refused(thumbnails, blob_in_store(svg))
    assert message.startswith("the SVG could not be drawn"), message
    assert "leak" in message  # librsvg's own words: the entity is not defined


def test_an_svg_with_a_remote_image_fetches_nothing(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef]
) -> None:
    with extract_samples.recording_web_server() as (url, requests):
        svg = (
            '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
            ' width="300" height="300"><rect width="300" height="300" fill="green"/>'
            f'<image x="0" y="0" width="100" height="100" xlink:href="{url}/pixel.png"/>'
            '<image x="0" y="0" width="100" height="100" xlink:href="file:///etc/hostname"/>'
            "</svg>"
        ).encode()
        result = _run(thumbnails, blob_in_store(svg))
    assert [t.size for t in result.thumbnails] == SIZES
    assert requests == []


def test_an_office_document_shows_its_first_page(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef]
) -> None:
    blob = blob_in_store(extract_samples.make_docx(["A heading line", "and a paragraph of words."]))
    assert blob.content_type.endswith("wordprocessingml.document")
    result = _run(thumbnails, blob)
    assert result.skipped_reason is None, result
    width, height = result.thumbnails[-1].width, result.thumbnails[-1].height
    assert height == 1024 and 720 < width < 800, (width, height)  # an A4 or Letter page


def test_a_document_that_links_outside_itself_gets_no_preview(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef]
) -> None:
    with extract_samples.recording_web_server() as (url, requests):
        linked = extract_samples.make_docx(["words"], image_url=f"{url}/tracker.png")
        result = _run(thumbnails, blob_in_store(linked))
        local = extract_samples.make_odt(["words"], image_url="file:///etc/hostname")
        odt = _run(thumbnails, blob_in_store(local))
    assert result.thumbnails == [] and odt.thumbnails == []
    assert result.skipped_reason == (
        "no preview: the document loads something from outside itself "
        "(word/_rels/document.xml.rels)"
    )
    assert odt.skipped_reason == (
        "no preview: the document loads something from outside itself (file:///etc/hostname)"
    )
    assert requests == []


def _legacy(target: str, tmp_path: Path) -> bytes:
    """A .doc, .xls or .ppt as LibreOffice writes it (an RTF by hand)."""
    if target == "rtf":
        return extract_samples.make_rtf("An old format heading and words.")
    source, name = {
        "doc": (extract_samples.make_odt(["An old format heading", "and words."]), "s.odt"),
        "xls": (extract_samples.make_ods({"Sheet": [["cell", "42"]]}), "s.ods"),
        "ppt": (extract_samples.make_odp(["An old slide"]), "s.odp"),
    }[target]
    return extract_samples.convert_with_soffice(source, name, target, tmp_path)


@pytest.mark.parametrize(
    ("target", "sniffed", "shape"),
    [
        ("doc", "application/msword", "portrait"),
        ("rtf", "text/rtf", "portrait"),
        ("xls", "application/vnd.ms-excel", "portrait"),
        ("ppt", "application/x-ole-storage", "landscape"),  # libmagic names no application
    ],
)
def test_an_old_office_format_shows_its_first_page(
    thumbnails: ThumbnailActivities,
    blob_in_store: Callable[..., BlobRef],
    tmp_path: Path,
    target: str,
    sniffed: str,
    shape: str,
) -> None:
    blob = blob_in_store(_legacy(target, tmp_path))
    assert blob.content_type == sniffed
    result = _run(thumbnails, blob)
    assert result.skipped_reason is None, result
    width, height = result.thumbnails[-1].width, result.thumbnails[-1].height
    assert (height > width) == (shape == "portrait"), (width, height)
    assert max(width, height) == 1024


def test_an_old_format_document_cannot_draw_a_picture_of_the_machine(
    thumbnails: ThumbnailActivities,
    blob_in_store: Callable[..., BlobRef],
    s3: Any,
    tmp_path: Path,
) -> None:
    # Another upload the worker happens to hold: a red picture. An RTF links it by path.
    picture = tmp_path / "another-upload.png"
    Image.new("RGB", (400, 200), (255, 0, 0)).save(picture)
    rtf = (
        "{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Helvetica;}}\\f0 Words.\\par"
        f'{{\\field{{\\*\\fldinst INCLUDEPICTURE "{picture}" \\\\d}}{{\\fldrslt }}}}\\par}}'
    ).encode()
    # LibreOffice on its own does draw it into the document: the attack is real.
    plain_pdf = tmp_path / "plain.pdf"
    plain_pdf.write_bytes(extract_samples.convert_with_soffice(rtf, "l.rtf", "pdf", tmp_path))
    listed = subprocess.run(
        ["pdfimages", "-list", str(plain_pdf)], capture_output=True, text=True, check=True
    ).stdout
    assert " 400   200 " in listed, listed

    result = _run(thumbnails, blob_in_store(rtf))
    assert result.skipped_reason is None and len(result.thumbnails) == 2, result
    largest = result.thumbnails[-1]
    body = s3.get_object(Bucket=largest.bucket, Key=largest.key)["Body"].read()
    with Image.open(io.BytesIO(body)) as drawn:
        pixels = list(drawn.convert("RGB").get_flattened_data())
    # A white page with a line of words: not one red pixel.
    assert pixels.count((255, 255, 255)) > len(pixels) // 2
    assert not any(r > 200 and g < 80 and b < 80 for r, g, b in pixels)


def test_a_video_gets_a_poster_and_its_duration_and_codecs(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef], tmp_path: Path
) -> None:
    blob = blob_in_store(_ffmpeg(tmp_path, "clip.mp4", *VIDEO, "-pix_fmt", "yuv420p"))
    assert blob.content_type == "video/mp4"
    result = _run(thumbnails, blob)
    assert [(t.width, t.height) for t in result.thumbnails] == [(256, 144), (640, 360)]
    assert result.metadata["video_codec"] == "h264" and result.metadata["audio_codec"] == "aac"
    assert (result.metadata["width"], result.metadata["height"]) == (640, 360)
    assert 1.9 <= result.metadata["duration"] <= 2.1


@pytest.mark.parametrize("m2ts", [False, True], ids=["ts", "m2ts"])
def test_a_transport_stream_is_named_and_gets_a_poster(
    thumbnails: ThumbnailActivities,
    blob_in_store: Callable[..., BlobRef],
    tmp_path: Path,
    m2ts: bool,
) -> None:
    """What cameras and broadcast recordings write: libmagic calls it octet-stream; the
    verify stage names it by its packets, and its only key frame is its first."""
    mode = ["-mpegts_m2ts_mode", "1"] if m2ts else []
    codecs = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    content = _ffmpeg(tmp_path, "clip.ts", *VIDEO, *codecs, "-f", "mpegts", *mode)
    assert magic.from_buffer(content[:65536], mime=True) == "application/octet-stream"
    blob = blob_in_store(content)
    assert blob.content_type == "video/mp2t"
    result = _run(thumbnails, blob)
    assert [(t.width, t.height) for t in result.thumbnails] == [(256, 144), (640, 360)]
    assert result.metadata["video_codec"] == "h264" and result.metadata["audio_codec"] == "aac"
    assert 1.9 <= result.metadata["duration"] <= 2.2


@pytest.mark.parametrize(
    ("name", "muxer", "audio"),
    [("clip.mpg", "mpeg", "mp2"), ("clip.vob", "vob", "mp2"), ("clip.m2v", "mpeg2video", None)],
)
def test_an_mpeg_program_or_video_stream_gets_a_poster(
    thumbnails: ThumbnailActivities,
    blob_in_store: Callable[..., BlobRef],
    tmp_path: Path,
    name: str,
    muxer: str,
    audio: str | None,
) -> None:
    """DVDs, older cameras and broadcast captures: libmagic calls a program stream and a
    bare MPEG-2 video stream alike video/mpeg; each is read with its own demuxer."""
    codecs = ["-c:v", "mpeg2video", "-r", "25", *(["-c:a", audio] if audio else ["-an"])]
    blob = blob_in_store(_ffmpeg(tmp_path, name, *VIDEO, *codecs, "-f", muxer))
    assert blob.content_type == "video/mpeg"
    result = _run(thumbnails, blob)
    assert [(t.width, t.height) for t in result.thumbnails] == [(256, 144), (640, 360)]
    assert result.metadata["video_codec"] == "mpeg2video"
    assert result.metadata.get("audio_codec") == audio
    if audio:  # a bare video stream has no container to say its duration
        assert 1.9 <= result.metadata["duration"] <= 2.2


def test_audio_gets_its_duration_and_no_picture(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef], tmp_path: Path
) -> None:
    blob = blob_in_store(_ffmpeg(tmp_path, "tone.mp3", "-f", "lavfi", "-i", "sine=frequency=440"))
    assert blob.content_type == "audio/mpeg"
    result = _run(thumbnails, blob)
    assert result.skipped_reason == "no picture in audio/mpeg" and result.thumbnails == []
    assert result.metadata["audio_codec"] == "mp3"
    assert 1.9 <= result.metadata["duration"] <= 2.2


def test_a_video_over_the_pixel_limit_is_refused_before_decoding(
    stack: Settings, s3: Any, blob_in_store: Callable[..., BlobRef], tmp_path: Path
) -> None:
    small_limit = ThumbnailActivities(s3, stack.model_copy(update={"max_image_pixels": 10_000}))
    blob = blob_in_store(_ffmpeg(tmp_path, "wide.webm", *VIDEO))
    message = _refused(small_limit, blob)
    assert message == "The video's frames are 640x360, over the limit of 10000 pixels."


def test_a_playlist_is_never_read_as_media(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef]
) -> None:
    # The classic: an HLS playlist whose segment is a local file, named like a video.
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n"
    blob = blob_in_store(playlist)
    result = _run(thumbnails, blob)
    assert result.thumbnails == []
    assert result.skipped_reason == f"no thumbnails for {blob.content_type}"


async def test_a_video_uploaded_shows_its_poster_and_metadata(
    api: httpx.AsyncClient, key_a: str, tmp_path: Path
) -> None:
    content = _ffmpeg(tmp_path, "movie.webm", *VIDEO, "-metadata", f"title={uuid.uuid4()}")
    file = await upload(api, key_a, content, filename="movie.webm")
    assert file["status"] == "ready", file
    assert file["stages"]["thumbnails"]["detail"] == "2 sizes"
    assert [t["width"] for t in file["thumbnails"]] == [256, 640]
    metadata = file["metadata"]
    assert (metadata["width"], metadata["height"]) == (640, 360)
    assert metadata["video_codec"] == "vp9" and metadata["audio_codec"] == "opus"
    assert file["stages"]["text"]["detail"] == "no text for video/webm"
    assert file["stages"]["ocr"]["detail"] == "no OCR for video/webm"
