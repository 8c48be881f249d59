"""docker-compose.yml cannot run here (no Docker engine): check its syntax and that it
refers to real code and real settings."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import make_url

from conveyor_core.settings import Settings
from workers.stack.layout import StackLayout
from workers.stack.programs import stack_programs

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
                from_secret = variable.endswith("_FILE") and value.startswith("/run/secrets/")
                assert "${" in value or from_secret, f"{name}: {variable} is hard-coded"


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


DATABASE_SERVICES = {
    "migrate",
    "api",
    "worker-ingest",
    "worker-scan",
    "worker-media",
    "worker-webhooks",
    "relay",
}


def test_the_app_connects_as_a_role_that_is_no_superuser() -> None:
    compose = _compose()
    postgres = _environment(compose["services"]["postgres"])
    superuser = postgres["POSTGRES_USER"]
    script = compose["configs"]["postgres-app-role"]["content"]
    for name in DATABASE_SERVICES:
        env = _environment(compose["services"][name])
        url = make_url(env["CONVEYOR_DATABASE_URL"])
        assert url.username == "conveyor" != superuser, name
        assert url.password is None, f"{name}: the password belongs in a secret"
        assert env["CONVEYOR_DATABASE_PASSWORD_FILE"] == "/run/secrets/postgres_app_password"
    assert "CREATE ROLE conveyor LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE" in script
    assert "CREATE DATABASE conveyor OWNER conveyor" in script
    assert "cat /run/secrets/postgres_app_password" in script
    mounted = compose["services"]["postgres"]["configs"]
    assert {
        "source": "postgres-app-role",
        "target": "/docker-entrypoint-initdb.d/10-app-role.sh",
    } in mounted
    assert postgres["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_superuser_password"
    # The settings take the URL and the password file as compose gives them.
    settings = Settings(
        database_url="postgresql+psycopg://conveyor@postgres:5432/conveyor",
        database_password_file=REPO / "README.md",  # any readable file: its first line
    )
    assert (
        make_url(settings.sqlalchemy_url).password
        == (REPO / "README.md").read_text().splitlines()[0]
    )


def test_each_service_gets_only_the_secrets_it_needs() -> None:
    compose = _compose()
    defined = compose["secrets"]
    for name, secret in defined.items():
        assert set(secret) == {"environment"}, f"{name}: a secret comes from the environment"
    granted = {name: set(s.get("secrets", [])) for name, s in compose["services"].items()}
    assert granted.pop("postgres") == {"postgres_superuser_password", "postgres_app_password"}
    for name in DATABASE_SERVICES:
        assert granted.pop(name) == {"postgres_app_password"}, name
    assert all(not secrets for secrets in granted.values()), granted
    # The store's internal JWT keys go to the store alone.
    for name, service in compose["services"].items():
        if name != "seaweedfs":
            assert not any(v.startswith("WEED_") for v in _environment(service)), name


def test_only_the_client_facing_ports_are_published() -> None:
    published = {
        name: service["ports"]
        for name, service in _compose()["services"].items()
        if service.get("ports")
    }
    assert published == {
        "api": ["8000:8000"],
        "edge": ["8080:80"],
        "seaweedfs": ["8333:8333"],  # S3 only: clients PUT and GET through pre-signed URLs
        "temporal": ["127.0.0.1:8233:8233"],  # the UI, which has no auth: loopback only
    }
    for name in ("postgres", "nats", "clamav", "adapter", "relay"):
        assert "expose" not in _compose()["services"][name]


def test_the_edge_sends_the_same_security_headers_as_the_local_one() -> None:
    compose_edge = _compose()["configs"]["edge-nginx"]["content"].replace("$$", "$")
    local_edge = (REPO / "workers/stack/templates/nginx.conf").read_text().replace("$$", "$")
    for config in (compose_edge, local_edge):
        assert config.count("add_header X-Content-Type-Options nosniff always;") >= 2
        assert config.count("add_header Content-Security-Policy sandbox always;") >= 2
        assert "proxy_hide_header Content-Type;" in config
        assert "map $upstream_http_content_type $edge_content_type" in config
    inline = sorted(re.findall(r'"~\*\^([a-z/.+-]+)\\s\*\(;\|\$\)"', local_edge))
    assert inline == sorted(re.findall(r'"~\*\^([a-z/.+-]+)\\s\*\(;\|\$\)"', compose_edge))
    assert "text/html" not in inline and "image/svg+xml" not in inline
    assert {"image/png", "application/pdf", "text/plain"} <= set(inline)


def test_temporal_runs_with_the_local_stacks_dynamic_config() -> None:
    # The dev server's defaults add ~40 ms to each dispatch: the Docker stack must not lose
    # what the local one sets.
    settings = Settings()
    [temporal] = [
        p for p in stack_programs(settings, StackLayout.of(settings), {}) if p.name == "temporal"
    ]
    local = {
        value
        for flag, value in zip(temporal.command, temporal.command[1:], strict=False)
        if flag == "--dynamic-config-value"
    }
    compose = {
        arg.removeprefix("--dynamic-config-value=")
        for arg in _compose()["services"]["temporal"]["command"]
        if arg.startswith("--dynamic-config-value=")
    }
    assert local and local == compose
