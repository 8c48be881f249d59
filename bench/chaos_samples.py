"""The mixed files of the chaos run, each with the terminal state its content must reach.

Generated here (no binaries are committed): small texts, images (thumbnails and OCR run), a
PDF (OCR), the EICAR test string (quarantined), repeats of earlier bytes (dedup) and uploads
that fail by design (the object is shorter than declared).
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from workers.stack.signatures import eicar

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


@dataclass(frozen=True)
class Sample:
    kind: str  # text | image | pdf | eicar | duplicate | mismatch | canary
    filename: str
    content: bytes
    content_type: str
    expect: str  # the terminal status the content must reach
    visibility: str = "private"
    # mismatch only: the size declared (the object written is `content`, shorter)
    declared_size: int | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def size(self) -> int:
        return len(self.content) if self.declared_size is None else self.declared_size


def text(kind: str = "text") -> Sample:
    marker = os.urandom(8).hex()
    body = f"conveyor chaos {marker}\n".encode() * random.randint(4, 200)
    return Sample(kind, f"{kind}-{marker}.txt", body, "text/plain", "ready")


def image(words: str) -> Sample:
    picture = Image.new("RGB", (900, 300), "white")
    ImageDraw.Draw(picture).text((30, 100), words, fill="black", font=ImageFont.truetype(FONT, 64))
    for i, value in enumerate(os.urandom(12)):  # noise: each picture its own sha256
        picture.putpixel((899 - i, 299), (value, value, value))
    out = io.BytesIO()
    picture.save(out, "PNG")
    return Sample("image", f"{words.lower()}.png", out.getvalue(), "image/png", "ready")


def pdf(words: str, pages: int = 3) -> Sample:
    """A few A4 pages of text: OCR runs for seconds, long enough for a fault to meet it."""
    font = ImageFont.truetype(FONT, 64)
    images = []
    for n in range(pages):
        page = Image.new("RGB", (1240, 1754), "white")
        ImageDraw.Draw(page).text((100, 300), f"{words} PAGE {n + 1}", fill="black", font=font)
        red, green, blue = os.urandom(3)
        page.putpixel((0, 0), (red, green, blue))
        images.append(page)
    out = io.BytesIO()
    images[0].save(out, "PDF", resolution=150, save_all=True, append_images=images[1:])
    return Sample("pdf", f"{words.lower()}.pdf", out.getvalue(), "application/pdf", "ready")


def infected() -> Sample:
    body = eicar() + f"\nchaos {os.urandom(8).hex()}\n".encode()
    return Sample("eicar", "eicar.txt", body, "text/plain", "quarantined")


def mismatch() -> Sample:
    body = f"short {os.urandom(8).hex()}\n".encode() * 10
    return Sample(
        "mismatch", "short.txt", body, "text/plain", "failed", declared_size=len(body) + 100
    )


def duplicate_of(original: Sample) -> Sample:
    return Sample(
        "duplicate",
        f"again-{original.filename}",
        original.content,
        original.content_type,
        original.expect,
        original.visibility,
    )


def mixed(count: int) -> list[Sample]:
    """`count` files: ~4% EICAR, ~8% images, a PDF per 50, ~10% repeats, 1-2 mismatches,
    a few public ones, the rest small texts; shuffled, repeats after their original."""
    specials: list[Sample] = [infected() for _ in range(max(1, count // 25))]
    specials += [image(f"CHAOS {i}") for i in range(max(2, count // 12))]
    specials += [pdf(f"INVOICE {i}") for i in range(max(1, count // 50))]
    specials += [mismatch() for _ in range(1 if count < 100 else 2)]
    repeats = max(2, count // 10)
    texts = [text() for _ in range(max(0, count - len(specials) - repeats))]
    for i in range(0, len(texts), 20):  # some public files: published to the edge
        t = texts[i]
        texts[i] = Sample(t.kind, t.filename, t.content, t.content_type, t.expect, "public")
    originals = specials + texts
    random.shuffle(originals)
    out = list(originals)
    # Repeats of clean texts, images and EICAR: dedup in flight and against finished blobs.
    candidates = [s for s in originals if s.kind in ("text", "image", "eicar")]
    for n in range(repeats):
        original = random.choice(candidates)
        at = out.index(original) + 1 + random.randint(0, max(1, count // 4))
        out.insert(min(at, len(out)), duplicate_of(original))
        if n == 0:  # and one immediately after its original
            out.insert(out.index(original) + 1, duplicate_of(original))
    # Back to `count` by dropping plain texts from the end, never a special: a cut that
    # dropped the mismatch left a run with no file expected to fail (seen in CI).
    for at in range(len(out) - 1, -1, -1):
        if len(out) <= count:
            break
        if out[at].kind == "text":
            del out[at]
    # A PDF first: the first fault (the worker) meets its OCR running.
    first_pdf = next(s for s in out if s.kind == "pdf")
    out.remove(first_pdf)
    return [first_pdf, *out]
