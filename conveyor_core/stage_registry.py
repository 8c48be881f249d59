"""The installed stages: every entry point of the group `conveyor.stages`.

Read once per process (worker, API, CLI) at start; a stage installed later is seen after a
restart. Names are unique: two plugins claiming one name is a deployment error, said at
start rather than guessed at.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from conveyor_core.settings import Settings
from conveyor_core.stages import ENTRY_POINT_GROUP, StagePlugin, StageSpec

log = logging.getLogger(__name__)


class StageRegistryError(Exception):
    pass


def load_stage_plugins(settings: Settings) -> list[StagePlugin]:
    """The installed stages, less those `settings.stages_disabled` names, in plan order."""
    plugins: dict[str, StagePlugin] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = point.load()
        except Exception as e:
            why = f"stage entry point {point.value!r} failed to load: {e}"
            raise StageRegistryError(why) from e
        if not isinstance(plugin, StagePlugin):
            raise StageRegistryError(f"stage entry point {point.value!r} is not a StagePlugin")
        name = plugin.spec.name
        if name != point.name:
            raise StageRegistryError(f"entry point {point.name!r} names a stage {name!r}")
        if name in plugins:
            raise StageRegistryError(f"two installed stages are named {name!r}")
        plugins[name] = plugin
    enabled = [p for n, p in plugins.items() if n not in settings.stages_disabled]
    return sorted(enabled, key=lambda p: (p.spec.order, p.spec.name))


def stage_specs(settings: Settings) -> list[StageSpec]:
    return [p.spec for p in load_stage_plugins(settings)]


def installed_stage_names(settings: Settings) -> list[str]:
    """The enabled stages' names, read from the entry points without importing them (the
    API shows them pending before a file's plan; it does not run stages)."""
    names = {point.name for point in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names - set(settings.stages_disabled))
