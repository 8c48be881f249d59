"""The Settings object as `CONVEYOR_*` variables, so supervisord's children see the caller's."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pydantic import SecretStr

from conveyor_core.settings import Settings

PREFIX = "CONVEYOR_"


def _as_env_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, sort_keys=True)
    return str(value)


def settings_env(settings: Settings) -> dict[str, str]:
    """One variable per set field; None fields are left out so children see their default."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is not None:
            env[PREFIX + name.upper()] = _as_env_value(value)
    return env


def supervisord_env(settings: Settings) -> dict[str, str]:
    """The caller's environment with every CONVEYOR_* variable replaced by `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env.update(settings_env(settings))
    return env


def env_digest(settings: Settings) -> str:
    """Identifies the settings a running supervisord was started with."""
    serialised = json.dumps(settings_env(settings), sort_keys=True)
    return hashlib.sha256(serialised.encode()).hexdigest()
