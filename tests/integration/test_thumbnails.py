"""The make_thumbnails activity against the real object store (SeaweedFS of the test stack).

Every fixture is generated here; its content type is sniffed from its bytes by the same
function the verify stage uses, as the workflow would pass it.
"""

from __future__ import annotations

import io
import struct
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from PIL import ExifTags, Image
from pillow_heif import register_heif_opener
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.thumbnails import CACHE_CONTROL, ThumbnailActivities
from conveyor_core.types import (
    INVALID_IMAGE_ERROR,
    BlobRef,
    Thumbnail,
    ThumbnailsInput,
    ThumbnailsResult,
)

register_heif_opener()

SIZES = [256, 1024]


def _run(activities: ThumbnailActivities, blob: BlobRef, sizes: list[int]) -> ThumbnailsResult:
    result = ActivityEnvironment().run(activities.make_thumbnails, ThumbnailsInput(blob, sizes))
    assert isinstance(result, ThumbnailsResult)
    return result


def _fetch(s3: Any, thumb: Thumbnail) -> Image.Image:
    body = s3.get_object(Bucket=thumb.bucket, Key=thumb.key)["Body"].read()
    im = Image.open(io.BytesIO(body))
    im.load()
    return im


def _noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Realistic, distinct bytes per call: noise over a gradient."""
    base = Image.linear_gradient("L").resize(size)
    noise = Image.effect_noise(size, 40)
    grey = Image.blend(base, noise, 0.5)
    return Image.merge("RGB", (grey, noise, base)).convert(mode)


def _encoded(im: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def _assert_thumbnails(
    s3: Any, result: ThumbnailsResult, blob: BlobRef, expected: list[tuple[int, int]]
) -> list[Image.Image]:
    """Checks keys, reported and real dimensions, format and headers; returns the images."""
    assert result.skipped_reason is None and result.detail == f"{len(SIZES)} sizes"
    assert [t.size for t in result.thumbnails] == SIZES
    images = []
    for thumb, (width, height) in zip(result.thumbnails, expected, strict=True):
        assert thumb.key == f"derivatives/{blob.sha256}/thumb-{thumb.size}.webp"
        assert thumb.bucket == blob.bucket and thumb.content_type == "image/webp"
        assert (thumb.width, thumb.height) == (width, height)
        head = s3.head_object(Bucket=thumb.bucket, Key=thumb.key)
        assert head["ContentType"] == "image/webp" and head["CacheControl"] == CACHE_CONTROL
        im = _fetch(s3, thumb)
        assert im.format == "WEBP" and im.size == (width, height)
        images.append(im)
    return images


CASES: dict[str, tuple[Callable[[], bytes], str, list[tuple[int, int]]]] = {
    "jpeg": (
        lambda: _encoded(_noise((4000, 3000)), "JPEG", quality=85),
        "image/jpeg",
        [(256, 192), (1024, 768)],
    ),
    "cmyk-jpeg": (
        lambda: _encoded(_noise((1200, 1600), "CMYK"), "JPEG"),
        "image/jpeg",
        [(192, 256), (768, 1024)],
    ),
    "gif": (
        lambda: _encoded(
            _noise((500, 250)).convert("P"),
            "GIF",
            save_all=True,
            append_images=[Image.new("P", (500, 250), 3)],
        ),
        "image/gif",
        [(256, 128), (500, 250)],
    ),
    "webp": (lambda: _encoded(_noise((2000, 500)), "WEBP"), "image/webp", [(256, 64), (1024, 256)]),
    "tiff": (
        lambda: _encoded(_noise((1500, 1500)), "TIFF"),
        "image/tiff",
        [(256, 256), (1024, 1024)],
    ),
    "bmp": (lambda: _encoded(_noise((300, 600)), "BMP"), "image/bmp", [(128, 256), (300, 600)]),
    "heic": (
        lambda: _encoded(_noise((1280, 960)), "HEIF"),
        "image/heic",
        [(256, 192), (1024, 768)],
    ),
    "avif": (
        lambda: _encoded(_noise((1280, 720)), "AVIF"),
        "image/avif",
        [(256, 144), (1024, 576)],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_make_thumbnails_of_each_image_format(
    name: str,
    thumbnails: ThumbnailActivities,
    blob_in_store: Callable[..., BlobRef],
    s3: Any,
) -> None:
    make, sniffed, expected = CASES[name]
    blob = blob_in_store(make())
    # libmagic names BMP differently across versions; the activity accepts both.
    assert blob.content_type == sniffed or {blob.content_type, sniffed} == {
        "image/bmp",
        "image/x-ms-bmp",
    }
    result = _run(thumbnails, blob, SIZES)
    images = _assert_thumbnails(s3, result, blob, expected)
    assert all(im.mode == "RGB" for im in images)


def test_make_thumbnails_keeps_png_alpha(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef], s3: Any
) -> None:
    im = _noise((2048, 1024), "RGBA")
    im.putalpha(Image.linear_gradient("L").rotate(90).resize((2048, 1024)))
    blob = blob_in_store(_encoded(im, "PNG"))
    assert blob.content_type == "image/png"
    images = _assert_thumbnails(s3, _run(thumbnails, blob, SIZES), blob, [(256, 128), (1024, 512)])
    alpha = images[0].getchannel("A")
    assert images[0].mode == "RGBA"
    assert alpha.getpixel((5, 64)) < 15 and alpha.getpixel((250, 64)) > 240  # type: ignore[operator]


def test_make_thumbnails_of_animated_gif_uses_first_frame(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef], s3: Any
) -> None:
    frames = [Image.new("RGB", (400, 400), color) for color in ("red", "blue", "lime")]
    data = _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    result = _run(thumbnails, blob_in_store(data), [256])
    red, green, blue = _fetch(s3, result.thumbnails[0]).getpixel((128, 128))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60


def test_make_thumbnails_turns_exif_rotated_jpeg_upright(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef], s3: Any
) -> None:
    im = _noise((400, 200))
    exif = im.getexif()
    exif[0x0112] = 6  # the camera was held upright: rotate 90° clockwise to display
    blob = blob_in_store(_encoded(im, "JPEG", exif=exif))
    images = _assert_thumbnails(s3, _run(thumbnails, blob, SIZES), blob, [(128, 256), (200, 400)])
    assert images[1].size == (200, 400)  # never upscaled, portrait


def test_make_thumbnails_of_pdf_first_page(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef], s3: Any
) -> None:
    first, second = Image.new("RGB", (595, 842), "red"), Image.new("RGB", (595, 842), "blue")
    blob = blob_in_store(
        _encoded(first, "PDF", save_all=True, append_images=[second], resolution=72)
    )
    assert blob.content_type == "application/pdf"
    images = _assert_thumbnails(s3, _run(thumbnails, blob, SIZES), blob, [(181, 256), (724, 1024)])
    red, green, blue = images[0].getpixel((90, 128))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60  # page 1 (red), not page 2 (blue)


def _invalid(activities: ThumbnailActivities, blob: BlobRef) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        _run(activities, blob, SIZES)
    assert caught.value.type == INVALID_IMAGE_ERROR and caught.value.non_retryable
    return caught.value


def test_make_thumbnails_refuses_pixel_bomb(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef]
) -> None:
    data = _encoded(Image.new("1", (20000, 20000)), "PNG")
    assert len(data) < 100_000  # 400 Mpx declared in a few kB
    error = _invalid(thumbnails, blob_in_store(data))
    assert error.message == "image is larger than the 64000000-pixel limit (400000000 pixels)"


def test_make_thumbnails_refuses_image_just_over_the_limit(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef]
) -> None:
    error = _invalid(thumbnails, blob_in_store(_encoded(Image.new("1", (9000, 8000)), "PNG")))
    assert error.message == "image is larger than the 64000000-pixel limit (72000000 pixels)"


def test_make_thumbnails_refuses_truncated_jpeg(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef]
) -> None:
    data = _encoded(_noise((1600, 1200)), "JPEG")
    blob = blob_in_store(data[: len(data) // 2])
    assert blob.content_type == "image/jpeg"
    assert _invalid(thumbnails, blob).message == "image data is truncated"


def test_make_thumbnails_refuses_pdf_bytes_typed_as_png(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef]
) -> None:
    data = _encoded(Image.new("RGB", (300, 300), "red"), "PDF")
    error = _invalid(thumbnails, blob_in_store(data, content_type="image/png"))
    assert error.message == "the data is not a valid PNG image"


def test_make_thumbnails_refuses_unrenderable_pdf(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef]
) -> None:
    blob = blob_in_store(b"%PDF-1.7\n" + uuid.uuid4().bytes * 100)
    assert blob.content_type == "application/pdf"
    assert _invalid(thumbnails, blob).message.startswith("the PDF could not be rendered: ")


def test_make_thumbnails_skips_text(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef], s3: Any
) -> None:
    blob = blob_in_store(f"hello {uuid.uuid4()}\n".encode())
    result = _run(thumbnails, blob, SIZES)
    assert result == ThumbnailsResult(skipped_reason="no thumbnails for text/plain")
    listed = s3.list_objects_v2(Bucket=blob.bucket, Prefix=f"derivatives/{blob.sha256}/")
    assert listed.get("KeyCount", 0) == 0


def test_make_thumbnails_reuses_stored_thumbnails(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef], s3: Any
) -> None:
    data = _encoded(_noise((1000, 800)), "JPEG")
    first = _run(thumbnails, blob_in_store(data), SIZES)
    # The same bytes uploaded again (another file, same blob hash)...
    again = blob_in_store(data)
    # ...and a marker in place of one stored thumbnail shows whether it is encoded again.
    marker = first.thumbnails[0]
    s3.put_object(
        Bucket=marker.bucket,
        Key=marker.key,
        Body=b"marker",
        Metadata={"width": str(marker.width), "height": str(marker.height)},
    )
    second = _run(thumbnails, again, SIZES)
    assert (second.thumbnails, second.detail) == (first.thumbnails, first.detail)
    assert first.metadata == {"width": 1000, "height": 800}
    assert second.metadata == {}  # nothing was decoded: the stored thumbnails were enough
    assert [(t.width, t.height) for t in second.thumbnails] == [(256, 205), (1000, 800)]
    body = s3.get_object(Bucket=marker.bucket, Key=marker.key)["Body"].read()
    assert body == b"marker"


def test_make_thumbnails_remakes_a_thumbnail_without_dimensions(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef], s3: Any
) -> None:
    blob = blob_in_store(_encoded(_noise((640, 480)), "PNG"))
    key = f"derivatives/{blob.sha256}/thumb-256.webp"
    s3.put_object(Bucket=blob.bucket, Key=key, Body=b"not ours")
    result = _run(thumbnails, blob, [256])
    assert (result.thumbnails[0].width, result.thumbnails[0].height) == (256, 192)
    assert _fetch(s3, result.thumbnails[0]).size == (256, 192)


def _psd(size: tuple[int, int]) -> bytes:
    """A flat 8-bit RGB Photoshop file (Pillow reads PSD but does not write it)."""
    width, height = size
    header = (
        b"8BPS" + struct.pack(">H", 1) + bytes(6) + struct.pack(">HIIHH", 3, height, width, 8, 3)
    )
    planes = b"".join(bytes([value]) * (width * height) for value in (200, 40, 90))
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + planes


def _xpm() -> bytes:
    rows = ['"' + ("ab" * 20) + '",' for _ in range(30)]
    return (
        '/* XPM */\nstatic char *x[] = {\n"40 30 2 1",\n"a c #ff0000",\n"b c #0000ff",\n'
        + "\n".join(rows)[:-1]
        + "};\n"
    ).encode()


# Formats Pillow decodes beyond the common ones: each sniffed type opens with its own
# decoder only (stage_rules.IMAGE_DECODERS).
MORE_FORMATS: dict[str, tuple[Callable[[], bytes], str]] = {
    "tga": (lambda: _encoded(_noise((600, 300)), "TGA"), "image/x-tga"),
    "ico": (lambda: _encoded(_noise((256, 256)), "ICO"), "image/vnd.microsoft.icon"),
    "icns": (lambda: _encoded(_noise((512, 512)), "ICNS"), "image/x-icns"),
    "jp2": (lambda: _encoded(_noise((1500, 1000)), "JPEG2000"), "image/jp2"),
    "j2k": (
        lambda: _encoded(_noise((400, 800)), "JPEG2000", no_jp2=True),
        "image/x-jp2-codestream",
    ),
    "pcx": (lambda: _encoded(_noise((300, 200)), "PCX"), "image/x-pcx"),
    "ppm": (lambda: _encoded(_noise((300, 200)), "PPM"), "image/x-portable-pixmap"),
    "qoi": (lambda: _encoded(_noise((640, 480)).convert("RGBA"), "QOI"), "image/x-qoi"),
    "psd": (lambda: _psd((320, 160)), "image/vnd.adobe.photoshop"),
    "xpm": (_xpm, "image/x-xpixmap"),
}


@pytest.mark.parametrize("name", list(MORE_FORMATS))
def test_make_thumbnails_of_more_pillow_formats(
    name: str, thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef], s3: Any
) -> None:
    make, sniffed = MORE_FORMATS[name]
    data = make()
    blob = blob_in_store(data)
    assert blob.content_type == sniffed
    with Image.open(io.BytesIO(data)) as source:
        width, height = source.size
    expected = []
    for size in SIZES:
        scale = min(1.0, size / max(width, height))
        expected.append((max(1, round(width * scale)), max(1, round(height * scale))))
    result = _run(thumbnails, blob, SIZES)
    _assert_thumbnails(s3, result, blob, expected)


def test_make_thumbnails_skips_postscript_with_a_reason(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef]
) -> None:
    # Pillow would hand an EPS to Ghostscript, a PostScript interpreter: never run here.
    blob = blob_in_store(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    assert blob.content_type == "application/postscript"
    result = _run(thumbnails, blob, SIZES)
    assert result.skipped_reason == "no thumbnails for application/postscript"
    assert result.thumbnails == []


def _photo_with_exif() -> bytes:
    """A JPEG as a phone writes it: taken date, camera, GPS, rotated (orientation 6)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Fairphone"
    exif[ExifTags.Base.Model] = "FP5"
    exif[ExifTags.Base.Orientation] = 6
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2024:05:17 14:03:22"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 29.6)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (2.0, 17.0, 40.2)
    return _encoded(_noise((800, 600)), "JPEG", exif=exif.tobytes())


def test_make_thumbnails_reads_exif_and_keeps_gps_out_of_the_thumbnails(
    thumbnails: ThumbnailActivities, blob_in_store: Callable[..., BlobRef], s3: Any
) -> None:
    blob = blob_in_store(_photo_with_exif())
    result = _run(thumbnails, blob, SIZES)

    assert result.metadata == {
        "width": 600,  # as shown: orientation 6 turns 800x600 upright
        "height": 800,
        "taken_at": "2024-05-17T14:03:22",
        "camera": "Fairphone FP5",
        "gps": {"latitude": 48.858222, "longitude": -2.294500},
    }
    for thumb in result.thumbnails:
        body = s3.get_object(Bucket=thumb.bucket, Key=thumb.key)["Body"].read()
        derived = Image.open(io.BytesIO(body))
        assert not derived.getexif(), derived.getexif()  # no GPS, no camera, nothing
        assert b"Exif" not in body and b"Fairphone" not in body
        assert derived.height > derived.width  # upright, as the photo is shown
