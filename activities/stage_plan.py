"""Which installed stages a file runs: planned by the worker from its registry, recorded in
the workflow's history (a local activity), so a replay sees the plan the run saw."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio import activity

from conveyor_core.settings import Settings
from conveyor_core.stages import PlanStagesInput, StagePlan, StageSpec, plan_for


class StagePlanActivities:
    def __init__(self, specs: Sequence[StageSpec], settings: Settings) -> None:
        self._specs = list(specs)
        self._settings = settings

    @activity.defn(name="plan_stages")
    def plan_stages(self, inp: PlanStagesInput) -> StagePlan:
        """Every installed stage (or the named ones), each skipped with a reason where it
        does not apply to the sniffed type."""
        return plan_for(self._specs, inp.content_type, self._settings, inp.names, inp.size)
