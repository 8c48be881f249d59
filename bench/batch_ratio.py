"""A batch of mixed files through Conveyor, against the same stage work in a bare process
pool, in one sitting: the files per second of each and their ratio.

The files (made here, the same every run, each made unique): photos (JPEG), scanned text
(PNG), scanned PDFs of 1-2 pages and plain texts. Conveyor gets them through its REST API
(declare, PUT, then a held `GET ?wait=` until each ends), `--in-flight` at a time, against
the running stack (`make up`). The bare pool (one process per core) does each file's stage
work with the stages' own functions and limits and nothing else: SHA-256 and type sniffing
(verify), clamd INSTREAM (scan, the stack's clamd), thumbnails 256 and 1024 (images and a
PDF's first page), the text stage's extraction (texts, PDFs), Tesseract OCR (images, and
each PDF page without a text layer up to the OCR page limit). No store, no database, no
orchestration.

    .venv/bin/python -m bench.batch_ratio [--files 120] [--in-flight 24]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import random
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image, ImageDraw, ImageFont

from activities.builtin_stages import OCR, TEXT, THUMBNAILS
from activities.extract import TextLimits, extract_text
from activities.ocr import TESSERACT_ENV, image_to_png, ocr_page, pdf_info, render_pdf_page
from activities.scan import CHUNK_SIZE, clamd_instream, verdict
from activities.thumbnails import render_pdf_first_page, render_thumbnails
from activities.verify import sniff_content_type
from bench.orchestration import program_pids, tree_cpu
from conveyor_core.settings import get_settings
from conveyor_core.stage_rules import IMAGE_DECODERS, PDF
from workers.cli import create_key

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
WORDS = (
    "pelican harbour invoice ledger granite orchard lantern meadow copper violet "
    "shipment quarterly receipt balance northern archive"
).split()


@dataclass(frozen=True)
class BatchFile:
    name: str
    content_type: str
    content: bytes


def _photo(rng: random.Random) -> bytes:
    size = (1024, 768)
    across = Image.linear_gradient("L").rotate(90).resize(size)
    down = Image.linear_gradient("L").resize(size)
    noise = Image.effect_noise(size, rng.randint(24, 64))
    image = Image.merge("RGB", (across, down, noise))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _page(rng: random.Random, lines: int) -> Image.Image:
    page = Image.new("L", (1240, 120 + 70 * lines), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, 40)
    for line in range(lines):
        text = " ".join(rng.choice(WORDS) for _ in range(5))
        draw.text((60, 60 + 70 * line), text, fill=0, font=font)
    return page


def _scan_png(rng: random.Random) -> bytes:
    out = io.BytesIO()
    _page(rng, 4).save(out, "PNG")
    return out.getvalue()


def _scan_pdf(rng: random.Random) -> bytes:
    pages = [_page(rng, 8).convert("RGB") for _ in range(rng.randint(1, 2))]
    out = io.BytesIO()
    pages[0].save(out, "PDF", resolution=150, save_all=True, append_images=pages[1:])
    return out.getvalue()


def _text(rng: random.Random) -> bytes:
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(rng.randint(40, 300))]
    return ("\n".join(lines) + "\n").encode()


def make_files(count: int, seed: int = 20) -> list[BatchFile]:
    """A third photos, a sixth scanned PNGs, a sixth scanned PDFs, a third texts; each file
    ends with a random comment so no two runs (or files) share bytes."""
    rng = random.Random(seed)
    kinds = [
        ("photo", "image/jpeg", _photo, 2),
        ("scan", "image/png", _scan_png, 1),
        ("scan", PDF, _scan_pdf, 1),
        ("note", "text/plain", _text, 2),
    ]
    weights = [k[3] for k in kinds]
    files = []
    for i in range(count):
        name, content_type, make, _ = rng.choices(kinds, weights)[0]
        unique = f"\n% {os.urandom(8).hex()}\n".encode()
        extension = {"image/jpeg": "jpg", "image/png": "png", PDF: "pdf"}.get(content_type, "txt")
        files.append(BatchFile(f"{name}-{i}.{extension}", content_type, make(rng) + unique))
    return files


# --- the bare pool --------------------------------------------------------------------------


def stage_work(content: bytes) -> str:
    """One file's stage work, as the workers do it, without store, database or workflow."""
    settings = get_settings()
    hashlib.sha256(content).hexdigest()
    content_type = sniff_content_type(content[:8192])
    chunks = (content[i : i + CHUNK_SIZE] for i in range(0, len(content), CHUNK_SIZE))
    scanned = verdict(
        clamd_instream(settings.clamd_address, chunks, lambda sent: None),
        len(content),
        settings.scan_max_bytes,
        content_type,
    )
    assert not scanned.infected
    with tempfile.TemporaryDirectory(prefix="bare-") as tmp:
        work = Path(tmp)
        source = work / "source"
        source.write_bytes(content)
        beat = lambda: None  # noqa: E731
        only: set[int] | None = None
        if TEXT.spec.skip_reason(content_type) is None:
            limits = TextLimits(settings.text_max_chars, settings.text_max_pages)
            found = extract_text(source, content_type, limits, beat, work)
            only = set(found.pages_without_text) if content_type == PDF else None
        if THUMBNAILS.spec.skip_reason(content_type) is None:
            sizes = settings.thumbnail_sizes
            path, formats = source, IMAGE_DECODERS.get(content_type)
            if formats is None:
                path = render_pdf_first_page(source, max(sizes), timeout=120)
                formats = ("PNG",)
            render_thumbnails(path, sizes, formats=formats, max_pixels=settings.max_image_pixels)
        if OCR.spec.skip_reason(content_type) is None:
            if content_type == PDF:
                info = pdf_info(source, settings.ocr_max_pages, 120, beat)
                for page in range(1, min(info.pages, settings.ocr_max_pages) + 1):
                    if only is not None and page not in only:
                        continue  # a text layer: the text stage read it
                    png = render_pdf_page(source, page, settings.pdf_render_dpi, work, 120, beat)
                    ocr_page(png, page, settings, beat, TESSERACT_ENV)
            else:
                png = work / "image.png"
                image_to_png(source, png, settings.max_image_pixels)
                ocr_page(png, 1, settings, beat, TESSERACT_ENV)
    return content_type


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bare(files: list[BatchFile], processes: int) -> tuple[float, float]:
    """(files per second, CPU ms per file) of the pool: its processes and their Tesseract
    and poppler children, counted once the pool has ended (warm-up included)."""
    cpu_before = _children_cpu()
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(stage_work, [files[0].content]))  # warm: imports, Tesseract's data
        started = time.perf_counter()
        types = list(pool.map(stage_work, [f.content for f in files]))
        elapsed = time.perf_counter() - started
    assert len(types) == len(files)
    return len(files) / elapsed, (_children_cpu() - cpu_before) * 1000 / (len(files) + 1)


# --- Conveyor -------------------------------------------------------------------------------


async def _through_conveyor(files: list[BatchFile], in_flight: int) -> float:
    settings = get_settings()
    key = create_key(settings, f"batch-{time.time_ns()}")
    slots = asyncio.Semaphore(in_flight)
    statuses: dict[str, int] = {}
    async with (
        httpx.AsyncClient(
            base_url=settings.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as api,
        httpx.AsyncClient(timeout=120) as store,
    ):

        async def one(f: BatchFile) -> None:
            async with slots:
                created = await api.post(
                    "/v1/uploads",
                    json={
                        "filename": f.name,
                        "size": len(f.content),
                        "content_type": f.content_type,
                        "sha256": hashlib.sha256(f.content).hexdigest(),
                    },
                )
                created.raise_for_status()
                upload = created.json()
                sent = await store.put(upload["url"], content=f.content, headers=upload["headers"])
                sent.raise_for_status()
                while True:
                    got = await api.get(f"/v1/files/{upload['file_id']}", params={"wait": 60})
                    status = got.json()["status"]
                    if status not in ("awaiting_upload", "processing"):
                        statuses[status] = statuses.get(status, 0) + 1
                        return

        started = time.perf_counter()
        await asyncio.gather(*(one(f) for f in files))
        elapsed = time.perf_counter() - started
    assert statuses == {"ready": len(files)}, statuses
    return len(files) / elapsed


def run(count: int, in_flight: int) -> dict[str, object]:
    processes = os.cpu_count() or 2
    # The same contents for both, made unique again for Conveyor so nothing is deduplicated
    # against an earlier run.
    files = make_files(count)
    bare_rate, bare_cpu = bare(files, processes)
    roots = program_pids(get_settings())
    before = tree_cpu(roots)
    conveyor_rate = asyncio.run(_through_conveyor(make_files(count), in_flight))
    after = tree_cpu(roots)
    per_program = {n: round((after[n] - before[n]) * 1000 / count, 1) for n in sorted(roots)}
    kinds: dict[str, int] = {}
    for f in files:
        kinds[f.content_type] = kinds.get(f.content_type, 0) + 1
    return {
        "files": count,
        "mix": kinds,
        "megabytes": round(sum(len(f.content) for f in files) / 2**20, 1),
        "bare_pool_processes": processes,
        "bare_files_per_s": round(bare_rate, 2),
        "bare_cpu_ms_per_file": round(bare_cpu, 1),
        "conveyor_in_flight": in_flight,
        "conveyor_files_per_s": round(conveyor_rate, 2),
        "conveyor_cpu_ms_per_file": {**per_program, "total": round(sum(per_program.values()), 1)},
        "ratio": round(conveyor_rate / bare_rate, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=120)
    parser.add_argument("--in-flight", type=int, default=24)
    args = parser.parse_args()
    print(json.dumps(run(args.files, args.in_flight), indent=2))


if __name__ == "__main__":
    main()
