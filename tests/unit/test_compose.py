"""docker-compose.yml cannot run here (no Docker engine): check its syntax and that it
refers to real code and real settings."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import yaml

from conveyor_core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
OFFICIAL = ("temporalio/", "postgres:", "chrislusf/seaweedfs:", "nats:", "clamav/clamav:", "nginx:")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return {str(k): str(v) for k, v in env.items()}


def test_app_services_run_modules_that_exist() -> None:
    services = _compose()["services"]
    modules = {
        name: service["command"][2]
        for name, service in services.items()
        if service.get("command", [None])[:2] == ["python", "-m"]
    }
    assert {
        "api",
        "relay",
        "adapter",
        "migrate",
        "worker-ingest",
        "worker-scan",
        "worker-media",
        "worker-webhooks",
    } <= set(modules)
    for name, module in modules.items():
        assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"


def test_every_conveyor_variable_is_a_setting() -> None:
    fields = {f"CONVEYOR_{name.upper()}" for name in Settings.model_fields}
    for name, service in _compose()["services"].items():
        for variable in _environment(service):
            if variable.startswith("CONVEYOR_"):
                assert variable in fields, f"{name}: {variable} is not a setting"


def test_infrastructure_uses_official_images_and_secrets_come_from_the_environment() -> None:
    services = _compose()["services"]
    for name in ("temporal", "postgres", "seaweedfs", "nats", "clamav", "edge"):
        assert services[name]["image"].startswith(OFFICIAL), name
    for name, service in services.items():
        for variable, value in _environment(service).items():
            if re.search(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY)", variable):
                assert "${" in value, f"{name}: {variable} is hard-coded"


def test_each_stage_queue_has_its_own_worker_service() -> None:
    services = _compose()["services"]
    queues = {
        name: yaml.safe_load(_environment(services[name])["CONVEYOR_WORKER_QUEUES"])
        for name in ("worker-ingest", "worker-scan", "worker-media", "worker-webhooks")
    }
    assert queues == {
        "worker-ingest": ["ingest"],
        "worker-scan": ["scan"],
        "worker-media": ["media"],
        "worker-webhooks": ["webhooks"],
    }
    for name in queues:
        Settings(worker_queues=queues[name])  # a value the settings accept


def test_the_image_holds_every_package_the_project_installs() -> None:
    """The Dockerfile the app services build copies each package pyproject.toml ships."""
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) \1$", dockerfile, re.M))
    pyproject = (REPO / "pyproject.toml").read_text()
    included = re.search(r"^include = \[(.*?)\]", pyproject, re.M)
    assert included is not None
    packages = {name.strip(' "*') for name in included.group(1).split(",")}
    assert packages <= copied, packages - copied
    for path in copied:
        assert (REPO / path).is_dir(), path
    assert "RUN pip install --no-cache-dir ." in dockerfile
    assert _compose()["x-conveyor-app"]["build"] == "."
