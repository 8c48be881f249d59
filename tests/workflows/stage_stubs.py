"""The stage plan a worker with the built-in stages makes, for workflow tests with stubs."""

from __future__ import annotations

from temporalio import activity

from activities.builtin_stages import OCR, SCAN, THUMBNAILS
from conveyor_core.settings import Settings
from conveyor_core.stages import PlanStagesInput, StagePlan, plan_for


@activity.defn(name="plan_stages")
def plan_builtin_stages(inp: PlanStagesInput) -> StagePlan:
    """scan, thumbnails and OCR on the test's own queue (the one this local activity runs
    on, which the tests pass as both scan and media queue)."""
    queue = activity.info().task_queue
    settings = Settings(scan_task_queue=queue, media_task_queue=queue)
    specs = [SCAN.spec, THUMBNAILS.spec, OCR.spec]
    return plan_for(specs, inp.content_type, settings, inp.names, inp.size)
