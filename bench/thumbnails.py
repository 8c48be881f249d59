"""Thumbnail time per image: the thumbnails stage's own function vs pyvips and vipsthumbnail.

One 4000x3000 JPEG (noise over gradients, so it compresses like a photo) to a 256 px WebP,
each contender on the same file in the same run; medians of several runs after a warm-up.

    .venv/bin/python -m bench.thumbnails [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyvips
from PIL import Image

from activities.thumbnails import WEBP_QUALITY, render_thumbnails

SIZE = 256
SOURCE = (4000, 3000)
Contender = Callable[[Path, Path], tuple[int, int]]


@dataclass(frozen=True)
class Figure:
    median_ms: float
    output: str  # the thumbnail's dimensions, to show every contender made the same thing


def make_photo(path: Path) -> None:
    across = Image.linear_gradient("L").rotate(90).resize(SOURCE)
    down = Image.linear_gradient("L").resize(SOURCE)
    noise = Image.effect_noise(SOURCE, 48)
    channels = (
        Image.blend(across, noise, 0.35),
        Image.blend(down, noise, 0.35),
        Image.blend(Image.blend(across, down, 0.5), noise, 0.2),
    )
    Image.merge("RGB", channels).save(path, "JPEG", quality=90)


def ours(path: Path, _out: Path) -> tuple[int, int]:
    (thumb,) = render_thumbnails(path, [SIZE], formats=["JPEG"], max_pixels=64_000_000)
    return thumb.width, thumb.height


def with_pyvips(path: Path, _out: Path) -> tuple[int, int]:
    image = pyvips.Image.thumbnail(str(path), SIZE, height=SIZE)
    image.write_to_buffer(".webp", Q=WEBP_QUALITY)
    return int(image.width), int(image.height)


def with_vipsthumbnail(path: Path, out: Path) -> tuple[int, int]:
    target = out / "thumb.webp"
    command = ["vipsthumbnail", str(path), "-s", str(SIZE), "-o", f"{target}[Q={WEBP_QUALITY}]"]
    subprocess.run(command, check=True, capture_output=True)
    with Image.open(target) as im:
        return im.size


def timed(fn: Contender, path: Path, runs: int) -> Figure:
    width, height = fn(path, path.parent)  # warm-up: libraries loaded, file in the page cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn(path, path.parent)
        times.append((time.perf_counter() - started) * 1000)
    return Figure(median_ms=round(statistics.median(times), 1), output=f"{width}x{height}")


def run(runs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-thumbs-") as tmp:
        path = Path(tmp) / "photo.jpg"
        make_photo(path)
        conveyor = timed(ours, path, runs)
        pyvips_figure = timed(with_pyvips, path, runs)
        cli = timed(with_vipsthumbnail, path, runs)
        source_bytes = path.stat().st_size
    return {
        "source": f"{SOURCE[0]}x{SOURCE[1]} JPEG, {source_bytes} bytes",
        "target": f"{SIZE} px WebP Q{WEBP_QUALITY}",
        "runs": runs,
        "conveyor_pillow": asdict(conveyor),
        "pyvips_thumbnail": asdict(pyvips_figure),
        "vipsthumbnail_cli": asdict(cli),
        "ratio_ours_to_pyvips": round(conveyor.median_ms / pyvips_figure.median_ms, 2),
        "ratio_ours_to_vipsthumbnail": round(conveyor.median_ms / cli.median_ms, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    print(json.dumps(run(parser.parse_args().runs), indent=2))


if __name__ == "__main__":
    main()
