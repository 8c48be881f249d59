"""Intake: a landed upload sealed and then verified in one activity task.

Sealing is a rename (or a copy where the store has none) and verifying a read of the sealed
object: running both in one task costs the workflow one activity and one workflow task
fewer per file, and loses no retry boundary, since a retried seal finds its sealed object
and never moves again.
"""

from __future__ import annotations

from temporalio import activity

from activities.seal import SealActivities
from activities.verify import VerifyActivities
from conveyor_core.types import SealAndVerifyInput, VerifyResult


class IntakeActivities:
    def __init__(self, seal: SealActivities, verify: VerifyActivities) -> None:
        self._seal = seal
        self._verify = verify

    @activity.defn(name="seal_and_verify")
    def seal_and_verify(self, inp: SealAndVerifyInput) -> VerifyResult:
        if not self._seal.seal_upload(inp.seal).landed:
            # Nothing under either key yet: an event came before its object.
            return VerifyResult(ok=False, detail=None, missing=True)
        return self._verify.verify_object(inp.verify)
