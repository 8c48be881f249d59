"""OCR seconds per page, with the stage's own functions (pdfinfo, pdftoppm, tesseract).

Baseline in the same run: Tesseract with OMP_THREAD_LIMIT=1 (what the stage sets) vs unset
(OpenMP picks its own thread count), one page at a time and two at once (two activities on
one worker). Pages are A4 text pages rendered by pdftoppm at 150 dpi; medians over rounds.

    .venv/bin/python -m bench.ocr [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from activities.ocr import TESSERACT_ENV, pdf_info, render_pdf_page, tesseract

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
A4_150DPI = (1240, 1754)
DPI = 150
LANGUAGES = "eng"
TIMEOUT = 120.0
UNSET_ENV = {k: v for k, v in os.environ.items() if k != "OMP_THREAD_LIMIT"}
ENVS = {"omp_thread_limit_1": TESSERACT_ENV, "omp_unset": UNSET_ENV}


def no_beat() -> None:
    pass


def text_page(seed: int) -> Image.Image:
    page = Image.new("L", A4_150DPI, 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, 22)
    for line in range(40):
        words = " ".join(f"word{(seed * 131 + line * 7 + w) % 997}" for w in range(8))
        draw.text((90, 90 + line * 38), f"{line + 1:02d} {words}", fill=0, font=font)
    return page


def write_pdf(path: Path, seeds: list[int]) -> None:
    pages = [text_page(s) for s in seeds]
    out = io.BytesIO()
    pages[0].save(out, format="PDF", save_all=True, append_images=pages[1:], resolution=DPI)
    path.write_bytes(out.getvalue())


def render_pages(work: Path, count: int) -> tuple[list[Path], list[float]]:
    """`count` distinct single-page PDFs, each rendered to PNG the way the stage does it."""
    pngs, seconds = [], []
    for n in range(count):
        pdf = work / f"single-{n}.pdf"
        write_pdf(pdf, [n])
        out = work / f"single-{n}"
        out.mkdir()
        started = time.perf_counter()
        pngs.append(render_pdf_page(pdf, 1, DPI, out, TIMEOUT, no_beat))
        seconds.append(time.perf_counter() - started)
    return pngs, seconds


def ocr_seconds_per_page(pngs: list[Path], env: dict[str, str], parallel: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        texts = list(pool.map(lambda p: tesseract(p, LANGUAGES, TIMEOUT, no_beat, env), pngs))
    assert all("word" in t for t in texts), "OCR lost the text"
    return (time.perf_counter() - started) / len(pngs)


def pdf_seconds_per_page(pdf: Path, work: Path, env: dict[str, str]) -> float:
    """The whole PDF path of the stage: page count, then render and OCR page by page."""
    started = time.perf_counter()
    info = pdf_info(pdf, 20, TIMEOUT, no_beat)
    for page in range(1, info.pages + 1):
        png = render_pdf_page(pdf, page, DPI, work, TIMEOUT, no_beat)
        tesseract(png, LANGUAGES, TIMEOUT, no_beat, env)
        png.unlink()
    return (time.perf_counter() - started) / info.pages


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def run(rounds: int) -> dict[str, object]:
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-ocr-") as tmp:
        work = Path(tmp)
        pngs, render_seconds = render_pages(work, rounds)
        pdf = work / "four-pages.pdf"
        write_pdf(pdf, [11, 12, 13, 14])
        # Configurations alternate inside each round, so a noisy neighbour hits all alike.
        for png in pngs:
            for name, env in ENVS.items():
                samples.setdefault(f"{name}_1_at_once", []).append(
                    ocr_seconds_per_page([png], env, 1)
                )
        for _ in range(rounds):
            for name, env in ENVS.items():
                samples.setdefault(f"{name}_2_at_once", []).append(
                    ocr_seconds_per_page(pngs[:2] * 2, env, 2)
                )
                samples.setdefault(f"{name}_pdf_4_pages", []).append(
                    pdf_seconds_per_page(pdf, work, env)
                )
    return {
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "pdftoppm_render_s_per_page_median": median(render_seconds),
        "ocr_s_per_page_median": {name: median(v) for name, v in samples.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    print(json.dumps(run(parser.parse_args().rounds), indent=2))


if __name__ == "__main__":
    main()
