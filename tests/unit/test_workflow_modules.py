"""The workflow modules are passed through the sandbox (workers/temporal_worker.py), so one
module serves every run: none may hold state a run could change for the next."""

from __future__ import annotations
import __future__

import importlib
import pkgutil
import types
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.common import RetryPolicy, SearchAttributeKey

import workflows
from workers.temporal_worker import WORKFLOW_RESTRICTIONS

IMMUTABLE = (str, bytes, int, float, bool, type(None), tuple, frozenset, timedelta, TypeVar)
# Shared by every run, read only: Temporal copies a retry policy into each command.
SHARED_READ_ONLY = (RetryPolicy, type(SearchAttributeKey.for_keyword("x")), __future__._Feature)
CODE = (types.ModuleType, types.FunctionType, type, staticmethod, classmethod, property)


def _workflow_modules() -> list[types.ModuleType]:
    return [
        importlib.import_module(f"workflows.{m.name}")
        for m in pkgutil.iter_modules(workflows.__path__)
    ]


def _stateful(value: Any) -> bool:
    return not isinstance(value, IMMUTABLE + SHARED_READ_ONLY + CODE)


def test_the_worker_passes_the_workflow_modules_through_the_sandbox() -> None:
    assert "workflows" in WORKFLOW_RESTRICTIONS.passthrough_modules
    assert not WORKFLOW_RESTRICTIONS.passthrough_all_modules  # the rest keeps the default


def test_workflow_modules_hold_no_state_between_runs() -> None:
    found = []
    for module in _workflow_modules():
        for name, value in vars(module).items():
            if name.startswith("__"):
                continue
            if _stateful(value):
                found.append(f"{module.__name__}.{name}: {type(value).__name__}")
            if isinstance(value, type) and value.__module__ == module.__name__:
                for attr, member in vars(value).items():
                    if not attr.startswith("__") and _stateful(member):
                        found.append(f"{module.__name__}.{name}.{attr}: {type(member).__name__}")
    assert found == []


def test_the_check_finds_a_module_level_list() -> None:
    assert _stateful([]) and _stateful({}) and _stateful(set())
    assert not _stateful(RetryPolicy()) and not _stateful(timedelta(seconds=1))
