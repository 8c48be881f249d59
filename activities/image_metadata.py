"""What an image says about itself: its size as shown, when and with what it was taken, and
where (EXIF). Read from the header only, with the decoders of the image's sniffed type.

GPS goes to the file's metadata (its owner's to see) and never into a thumbnail: thumbnails
are encoded from pixels alone, with no EXIF.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image

MAX_TEXT = 100  # a camera name longer than this is not a camera name
ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def read_image_metadata(path: Path, formats: Sequence[str]) -> dict[str, Any]:
    """width/height (as displayed), and taken_at, camera and gps where the EXIF has them.
    Bytes that do not open as an image give nothing: the caller has its own reason."""
    try:
        with Image.open(path, formats=list(formats)) as im:
            width, height = im.size
            exif = im.getexif()
    except Exception:  # noqa: BLE001 - metadata is best effort; decoding is judged elsewhere
        return {}
    if exif.get(ExifTags.Base.Orientation) in ROTATED:
        width, height = height, width
    found: dict[str, Any] = {"width": width, "height": height}
    taken = exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.DateTimeOriginal)
    if taken_at := _exif_time(taken or exif.get(ExifTags.Base.DateTime)):
        found["taken_at"] = taken_at
    if camera := _camera(exif.get(ExifTags.Base.Make), exif.get(ExifTags.Base.Model)):
        found["camera"] = camera
    if gps := _gps(exif.get_ifd(ExifTags.IFD.GPSInfo)):
        found["gps"] = gps
    return found


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return ""
    return value.replace("\x00", "").strip()[:MAX_TEXT]


def _exif_time(value: object) -> str | None:
    """EXIF's "2024:05:17 14:03:22" as ISO 8601 (no zone: EXIF gives none)."""
    text = _text(value)
    if len(text) < 19 or text[4] != ":" or text[7] != ":":
        return None
    iso = f"{text[0:4]}-{text[5:7]}-{text[8:10]}T{text[11:19]}"
    return iso if iso[:4].isdigit() and iso[:4] != "0000" else None


def _camera(make: object, model: object) -> str | None:
    make_text, model_text = _text(make), _text(model)
    if model_text.lower().startswith(make_text.lower()):
        make_text = ""  # "Canon" + "Canon EOS 5D": the model says it already
    return " ".join(p for p in (make_text, model_text) if p) or None


def _degrees(dms: object, ref: object, negative: str) -> float | None:
    try:
        degrees, minutes, seconds = (float(part) for part in dms)  # type: ignore[attr-defined]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = degrees + minutes / 60 + seconds / 3600
    return round(-value if _text(ref).upper() == negative else value, 6)


def _gps(gps: dict[int, Any]) -> dict[str, float] | None:
    latitude = _degrees(
        gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef), "S"
    )
    longitude = _degrees(
        gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef), "W"
    )
    if latitude is None or longitude is None:
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    return {"latitude": latitude, "longitude": longitude}
