"""Faults: every process of the stack SIGKILLed in turn while uploads are in flight, and the
store-event adapter stopped for a while (events dropped); nothing may be lost, doubled or
left stuck. The same code as `python -m bench.chaos`, with fewer uploads.

It runs on a stack of its own (its own ports and state directory, torn down afterwards):
the session stack's teardown rightly refuses any unexpected exit in its supervisord log,
and a SIGKILL is exactly that.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator

import pytest

from bench.chaos import ADAPTER_STOPPED, COMPONENTS, Config, own_stack, render, rows, run
from conveyor_core.settings import Settings

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def chaos_stack() -> Iterator[Settings]:
    # The port block beside the session stack's (21000 + 100 * slot, 24 ports).
    slot = int(os.environ.get("CONVEYOR_TEST_SLOT", "0"))
    keep = os.environ.get("CONVEYOR_TEST_KEEP_STATE") == "1"
    with own_stack(21000 + 100 * slot + 50, keep=keep) as settings:
        yield settings


@pytest.mark.timeout(360)
async def test_every_component_killed_in_turn_loses_nothing(chaos_stack: Settings) -> None:
    config = Config(files=60, clients=8, adapter_stop_s=6, drain_timeout_s=120)
    report = await run(chaos_stack, config)
    table = render(report)
    log.info("chaos run:\n%s", table)

    assert [r.component for r in rows(report)] == [*COMPONENTS, ADAPTER_STOPPED], table
    for fault in report.faults:
        assert fault.back_s is not None and fault.serves_s is not None, table
        assert fault.canary_s is not None, table  # the chain works end to end after each
    assert report.end.problems == [], table
    expected = Counter(u.sample.expect for u in report.uploads)
    assert report.end.statuses == dict(expected), table
    assert expected["quarantined"] >= 1 and expected["failed"] >= 1, table
    # The faults met work in flight (the worker at least the first upload, a PDF whose OCR
    # takes seconds), and files went through retries, timeouts or reconciles.
    by_component = {r.component: r for r in rows(report)}
    assert by_component["worker"].in_flight >= 1, table
    assert sum(r.in_flight for r in by_component.values()) >= len(COMPONENTS), table
    assert report.end.disturbed, table
