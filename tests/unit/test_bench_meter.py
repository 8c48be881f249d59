import hashlib
import os

from bench.meter import Meter


def test_meter_counts_the_work_done_in_its_block() -> None:
    # This process stands in for the store, so both CPU figures see the same work.
    with Meter(os.getpid()) as meter:
        digest = hashlib.sha256()
        for _ in range(64):
            digest.update(b"\0" * 1024 * 1024)
    sample = meter.sample
    assert sample is not None
    assert sample.client_cpu > 0.01
    assert abs(sample.store_cpu - sample.client_cpu) < 0.01
    assert sample.seconds >= sample.client_cpu * 0.9
    assert 0 < sample.machine_busy <= 1
