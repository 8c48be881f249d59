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
from workers.stack.ports import consecutive_ports


def shifted_settings(state_dir: Path) -> Settings:
    return Settings(state_dir=state_dir, **consecutive_ports(22000))


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
