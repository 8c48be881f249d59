"""How long the local stack takes: first `up` on an empty state dir, a second `up` on the
running stack, `down`, and `up` again on kept state. Medians over several rounds, each round
on a fresh state dir and ports of its own (so it runs beside a developer's stack).

    .venv/bin/python -m bench.stack_timings [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from conveyor_core.settings import Settings
from workers.stack import manage

PORT_SHIFT = 30000  # every base port moved by this much, away from the default stack


def shifted_settings(state_dir: Path) -> Settings:
    defaults = Settings()
    ports = {
        name: getattr(defaults, name) + PORT_SHIFT
        for name, field in Settings.model_fields.items()
        if name.endswith("_port") and field.annotation is int
    }
    # SeaweedFS's gRPC ports sit 10000 above their HTTP ports: keep them under 65536.
    for name in ("s3_port", "swfs_master_port", "swfs_volume_port", "swfs_filer_port"):
        ports[name] = getattr(defaults, name) + 12000
    return Settings(state_dir=state_dir, **ports)


def timed(action: Callable[[Settings], None], settings: Settings) -> float:
    started = time.perf_counter()
    action(settings)
    return time.perf_counter() - started


def run(rounds: int) -> dict[str, float]:
    figures: dict[str, list[float]] = {
        "first_up": [],
        "second_up": [],
        "down": [],
        "up_after_down": [],
    }
    for _ in range(rounds):
        state_dir = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
        settings = shifted_settings(state_dir)
        try:
            figures["first_up"].append(timed(manage.up, settings))
            figures["second_up"].append(timed(manage.up, settings))
            figures["down"].append(timed(manage.down, settings))
            figures["up_after_down"].append(timed(manage.up, settings))
        finally:
            manage.down(settings)
            shutil.rmtree(state_dir, ignore_errors=True)
    return {f"{name}_s_median": round(statistics.median(v), 2) for name, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    print(json.dumps(run(parser.parse_args().rounds), indent=2))


if __name__ == "__main__":
    main()
