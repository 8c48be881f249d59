"""clamd's INSTREAM replies, as the scan stage reads them."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.scan import ClamdError, verdict
from conveyor_core.types import SCAN_TOO_LARGE_ERROR, SCAN_UNSCANNABLE_ERROR


def test_clean_and_infected() -> None:
    assert verdict("stream: OK", 10, 100).detail == "clean"
    found = verdict("stream: Win.Test.EICAR_HDB-1 FOUND", 10, 100)
    assert found.infected and found.signature == "Win.Test.EICAR_HDB-1"


def test_an_archive_past_the_limits_fails_with_its_reason_and_is_not_called_infected() -> None:
    reply = "stream: Heuristics.Limits.Exceeded.MaxScanSize FOUND"
    for archive in ("application/zip", "application/x-7z-compressed", "application/gzip"):
        with pytest.raises(ApplicationError) as raised:
            verdict(reply, 10, 100, archive)
        assert raised.value.type == SCAN_UNSCANNABLE_ERROR and raised.value.non_retryable
        assert "MaxScanSize" in raised.value.message and "archive bomb" in raised.value.message


def test_other_files_past_a_limit_on_what_looked_embedded_stay_clean() -> None:
    # Random-looking bytes (encrypted, compressed media) make clamd see embedded types.
    result = verdict(
        "stream: Heuristics.Limits.Exceeded.MaxScanSize FOUND", 10, 100, "application/octet-stream"
    )
    assert not result.infected and result.detail == "clean (clamd reached MaxScanSize)"


def test_size_limit_and_nonsense() -> None:
    with pytest.raises(ApplicationError) as raised:
        verdict("INSTREAM size limit exceeded. ERROR", 200, 100)
    assert raised.value.type == SCAN_TOO_LARGE_ERROR
    with pytest.raises(ClamdError):
        verdict("something else", 10, 100)
