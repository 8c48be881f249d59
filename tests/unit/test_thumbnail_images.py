"""The image logic of the thumbnails stage, on files in a temp dir (no store)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from activities.thumbnails import (
    InvalidImageData,
    RenderedThumbnail,
    fit,
    render_pdf_first_page,
    render_thumbnails,
    thumbnail_key,
)

LIMIT = 64_000_000


def _open(thumb: RenderedThumbnail) -> Image.Image:
    im = Image.open(io.BytesIO(thumb.data))
    im.load()
    return im


def _render(path: Path, sizes: list[int], fmt: str) -> list[RenderedThumbnail]:
    return render_thumbnails(path, sizes, formats=[fmt], max_pixels=LIMIT)


def test_fit_keeps_aspect_and_never_upscales() -> None:
    assert fit((4000, 3000), 256) == (256, 192)
    assert fit((3000, 4000), 1024) == (768, 1024)
    assert fit((100, 50), 256) == (100, 50)
    assert fit((10000, 1), 256) == (256, 1)


def test_thumbnail_key_is_content_addressed() -> None:
    assert thumbnail_key("ab" * 32, 256) == f"derivatives/{'ab' * 32}/thumb-256.webp"


def test_render_jpeg_every_size_as_webp(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.linear_gradient("L").resize((4000, 3000)).convert("RGB").save(path, quality=90)
    thumbs = _render(path, [1024, 256], "JPEG")
    assert [(t.size, t.width, t.height) for t in thumbs] == [(1024, 1024, 768), (256, 256, 192)]
    for thumb in thumbs:
        im = _open(thumb)
        assert im.format == "WEBP" and im.size == (thumb.width, thumb.height)


def test_render_applies_exif_orientation(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    im = Image.new("RGB", (400, 200), "red")
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    im.save(path, exif=exif)
    (thumb,) = _render(path, [256], "JPEG")
    assert (thumb.width, thumb.height) == (128, 256)  # portrait


def test_render_cmyk_jpeg_to_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (600, 300), (0, 255, 255, 0)).save(path, quality=95)  # red in CMYK
    (thumb,) = _render(path, [256], "JPEG")
    im = _open(thumb)
    assert im.mode == "RGB" and im.size == (256, 128)
    red, green, blue = im.getpixel((128, 64))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60


def test_render_png_keeps_alpha(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    im = Image.new("RGBA", (512, 512), (0, 0, 255, 255))
    im.paste((0, 0, 0, 0), (0, 0, 256, 512))  # left half transparent
    im.save(path)
    (thumb,) = _render(path, [128], "PNG")
    out = _open(thumb)
    assert out.mode == "RGBA" and out.size == (128, 128)
    assert out.getpixel((10, 64))[3] == 0  # type: ignore[index]
    assert out.getpixel((118, 64))[3] == 255  # type: ignore[index]


def test_render_palette_transparency_becomes_alpha(tmp_path: Path) -> None:
    path = tmp_path / "palette.gif"
    im = Image.new("P", (300, 300), 0)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.paste(1, (150, 0, 300, 300))
    im.save(path, transparency=1)
    (thumb,) = _render(path, [100], "GIF")
    out = _open(thumb)
    assert out.mode == "RGBA"
    red, green, blue, alpha = out.getpixel((5, 50))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60 and alpha == 255
    assert out.getpixel((95, 50))[3] == 0  # type: ignore[index]


def test_render_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (200, 100), color) for color in ("red", "lime", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    (thumb,) = _render(path, [64], "GIF")
    red, green, blue = _open(thumb).convert("RGB").getpixel((32, 16))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60


def test_render_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "grey16.png"
    Image.new("I;16", (200, 200), 32768).save(path)
    (thumb,) = _render(path, [64], "PNG")
    red, _, _ = _open(thumb).getpixel((32, 32))  # type: ignore[misc]
    assert 120 <= red <= 136


def test_render_small_image_keeps_its_size(tmp_path: Path) -> None:
    path = tmp_path / "small.webp"
    Image.new("RGB", (120, 80), "white").save(path)
    thumbs = _render(path, [1024, 256], "WEBP")
    assert [(t.width, t.height) for t in thumbs] == [(120, 80), (120, 80)]


def test_render_refuses_pixel_bomb_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    Image.new("1", (9000, 8000)).save(path)  # 72 Mpx, a few kB on disk
    # Pillow's own limit may answer first (once a worker has set it process-wide), giving
    # the pixel count instead of the dimensions: both are the same reason.
    with pytest.raises(InvalidImageData) as caught:
        render_thumbnails(path, [256], formats=["PNG"], max_pixels=LIMIT)
    assert str(caught.value) in (
        "image is larger than the 64000000-pixel limit (9000x8000)",
        "image is larger than the 64000000-pixel limit (72000000 pixels)",
    )


def test_render_refuses_truncated_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "truncated.jpg"
    buffer = io.BytesIO()
    Image.effect_noise((800, 600), 50).convert("RGB").save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InvalidImageData, match="^image data is truncated$"):
        _render(path, [256], "JPEG")


def test_render_refuses_bytes_of_another_format(tmp_path: Path) -> None:
    path = tmp_path / "lies.png"
    Image.new("RGB", (50, 50)).save(path, "GIF")  # a valid GIF, sniffed as PNG
    with pytest.raises(InvalidImageData, match="^the data is not a valid PNG image$"):
        _render(path, [256], "PNG")


def _two_page_pdf(path: Path) -> None:
    first, second = Image.new("RGB", (600, 800), "red"), Image.new("RGB", (600, 800), "blue")
    first.save(path, "PDF", save_all=True, append_images=[second], resolution=72)


def test_pdf_first_page_is_rendered_to_the_largest_size(tmp_path: Path) -> None:
    pdf = tmp_path / "doc.pdf"
    _two_page_pdf(pdf)
    page = render_pdf_first_page(pdf, 400, timeout=30)
    with Image.open(page) as im:
        assert im.format == "PNG" and max(im.size) == 400
        red, green, blue = im.convert("RGB").getpixel((150, 200))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60  # page 1, not page 2


def test_pdf_that_poppler_cannot_read_fails_with_reason(tmp_path: Path) -> None:
    pdf = tmp_path / "broken.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n")
    with pytest.raises(InvalidImageData, match="^the PDF could not be rendered: "):
        render_pdf_first_page(pdf, 256, timeout=30)


def test_pdf_render_timeout_fails_with_reason(tmp_path: Path) -> None:
    pdf = tmp_path / "doc.pdf"
    _two_page_pdf(pdf)
    with pytest.raises(InvalidImageData, match="^rendering the PDF's first page took over"):
        render_pdf_first_page(pdf, 256, timeout=0.001)
