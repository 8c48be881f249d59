"""Start, stop and inspect one local stack: supervisord and every program it runs.

`up` renders every config from the Settings object into its state dir, starts supervisord
(with the settings in its environment, so the app programs see the caller's settings), waits
for each server, provisions database, buckets and stream, then starts the app programs.
"""

from __future__ import annotations

import socket
import time

from pydantic import SecretStr

from conveyor_core.settings import Settings
from workers.stack import pg_auth, provision
from workers.stack.environment import env_digest, supervisord_env
from workers.stack.errors import StackError
from workers.stack.jwt_keys import load_or_create
from workers.stack.layout import StackLayout, write_file
from workers.stack.ports import all_ports
from workers.stack.programs import APPS, INFRASTRUCTURE, render_supervisord_conf, stack_programs
from workers.stack.readiness import readiness_checks, wait_ready
from workers.stack.server_configs import write_server_configs
from workers.stack.signatures import write_database
from workers.stack.supervisor_client import Supervisor

__all__ = ["StackError", "down", "status", "supervisorctl", "up"]


def up(settings: Settings, *, timeout: float = 120.0) -> None:
    """Bring the stack up; idempotent. Returns only once every program answers its readiness."""
    deadline = time.monotonic() + timeout
    layout = StackLayout.of(settings)
    layout.create_dirs()
    layout.restrict_access()
    passwords = pg_auth.load_or_create(settings, layout)
    provision.init_postgres_cluster(layout, passwords.superuser)
    write_database(layout.clamav_db)
    digests = write_server_configs(settings, layout)
    settings = with_filer_key(settings, layout)
    programs = stack_programs(settings, layout, digests)
    write_file(layout.supervisord_conf, render_supervisord_conf(programs, layout))

    supervisor = Supervisor(layout)
    digest = env_digest(settings)
    if supervisor.is_running() and _started_with(layout) != digest:
        # Its programs carry the settings it was started with: restart it with these.
        supervisor.shutdown((APPS, INFRASTRUCTURE))
    if supervisor.is_running():
        supervisor.ctl("update")
        for program, state in supervisor.states().items():
            if program in INFRASTRUCTURE and state not in ("RUNNING", "STARTING", "BACKOFF"):
                supervisor.start_program(program)
    else:
        _check_ports_free(settings)
        supervisor.start(supervisord_env(settings))
        write_file(layout.supervisord_env_digest, digest + "\n")

    checks = readiness_checks(settings, layout)
    wait_ready(INFRASTRUCTURE, checks, supervisor, layout, deadline)

    pg_auth.secure_cluster(settings, layout, passwords)
    provision.create_database(settings, layout)
    from conveyor_core.migrations import upgrade_head  # the app's schema, imported only here

    upgrade_head(settings)
    provision.create_buckets(settings)
    provision.create_stream(settings)
    provision.create_search_attributes(settings)

    for program, state in supervisor.states().items():
        if program in APPS and state not in ("RUNNING", "STARTING", "BACKOFF"):
            supervisor.start_program(program)
    wait_ready(APPS, checks, supervisor, layout, deadline)


def with_filer_key(settings: Settings, layout: StackLayout) -> Settings:
    """The settings the programs run with: the workers seal uploads through the filer, which
    takes only requests signed with the stack's own key."""
    if settings.swfs_filer_jwt_key is not None:
        return settings
    key = load_or_create(layout.swfs_jwt_keys)["jwt.filer_signing"]
    return settings.model_copy(update={"swfs_filer_jwt_key": SecretStr(key)})


def down(settings: Settings) -> None:
    """Stop supervisord and everything it runs; returns once no process of theirs is left."""
    # Apps first: a worker finishing its activities still needs Temporal and the store.
    Supervisor(StackLayout.of(settings)).shutdown((APPS, INFRASTRUCTURE))


def status(settings: Settings) -> dict[str, str]:
    """Program name -> supervisor state ("RUNNING", "STOPPED", ...); {} when nothing runs."""
    supervisor = Supervisor(StackLayout.of(settings))
    if not supervisor.is_running():
        return {}
    return supervisor.states()


def supervisorctl(settings: Settings, *args: str) -> str:
    """Run supervisorctl against this stack (e.g. "stop", "adapter"); returns its output."""
    return Supervisor(StackLayout.of(settings)).ctl(*args)


def _started_with(layout: StackLayout) -> str | None:
    try:
        return layout.supervisord_env_digest.read_text().strip()
    except FileNotFoundError:
        return None


def _check_ports_free(settings: Settings) -> None:
    """Refuse to start on a port someone else holds: readiness would ask the wrong server."""
    ports = all_ports(settings)
    by_port: dict[int, list[str]] = {}
    for name, port in ports.items():
        by_port.setdefault(port, []).append(name)
    shared = {port: names for port, names in by_port.items() if len(names) > 1}
    if shared:
        raise StackError(f"settings give one port to several servers: {shared}")
    taken = [f"{name}={port}" for name, port in sorted(ports.items()) if not _bindable(port)]
    if taken:
        raise StackError(f"ports already in use on 127.0.0.1: {', '.join(taken)}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
