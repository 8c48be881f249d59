"""The supervisor programs of one stack and the supervisord.conf that runs them."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from conveyor_core.settings import Settings
from workers.stack.layout import POSTGRES_BIN, REPO_ROOT, StackLayout, venv_bin
from workers.stack.ports import stack_ports
from workers.stack.server_configs import (
    clamd_config_path,
    nats_config_path,
    nginx_config_path,
    s3_config_path,
)

INFRASTRUCTURE = ("postgres", "temporal", "seaweedfs", "nats", "clamd", "edge")
APPS = ("api", "worker", "adapter", "relay")

# Program -> module run with `python -m` from the repository root.
APP_MODULES = {
    "api": "workers.api_server",
    "worker": "workers.temporal_worker",
    "adapter": "workers.store_events",
    "relay": "workers.relay",
}


@dataclass(frozen=True)
class Program:
    name: str
    command: list[str]
    directory: Path
    autostart: bool = True
    user: str | None = None
    stopsignal: str = "TERM"
    startsecs: int = 1
    # Retries of a start that failed within startsecs; a crash after that always restarts.
    startretries: int = 5
    stopwaitsecs: int = 10
    environment: dict[str, str] = field(default_factory=dict)


def _postgres(settings: Settings, layout: StackLayout) -> Program:
    return Program(
        name="postgres",
        command=[
            str(POSTGRES_BIN / "postgres"),
            "-D",
            str(layout.pg_data),
            "-p",
            str(settings.pg_port),
            "-k",
            str(layout.pg_socket_dir),
            "-c",
            "listen_addresses=127.0.0.1",
            # pg_hba.conf (pg_auth.py) asks every login for a SCRAM proof; passwords set by
            # plain ALTER ROLE are stored as SCRAM verifiers, never MD5.
            "-c",
            "password_encryption=scram-sha-256",
            "-c",
            "unix_socket_permissions=0700",
        ],
        directory=layout.pg,
        user="postgres",
        stopsignal="INT",  # "fast" shutdown: roll back open transactions, then stop
    )


def _temporal(settings: Settings, layout: StackLayout) -> Program:
    ports = stack_ports(settings)
    command = [
        str(venv_bin("temporal")),
        "server",
        "start-dev",
        "--db-filename",
        str(layout.temporal / "temporal.db"),
        "--ip",
        "127.0.0.1",
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        # Left alone, these two are random free ports, which may be one another stack wants.
        "--http-port",
        str(ports.temporal_http),
        "--metrics-port",
        str(ports.temporal_metrics),
        "--ui-disable-news-fetch",
        "--log-level",
        "warn",
        # File-backed SQLite is the bottleneck otherwise (STACK.md: ~3x the throughput).
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        # An activity on the workflow's own task queue goes straight back to the worker
        # that scheduled it, when it has a free slot, instead of through matching.
        "--dynamic-config-value",
        "system.enableActivityEagerExecution=true",
        # The history service loads the tasks that dispatch workflow and activity tasks at
        # most this often per shard (default 20/s): ~40 ms added to each hop, ~100 ms to a
        # small file's PUT -> ready (bench.put_to_ready).
        "--dynamic-config-value",
        "history.transferProcessorMaxPollRPS=1000",
    ]
    if settings.temporal_namespace != "default":
        command += ["--namespace", settings.temporal_namespace]
    return Program(name="temporal", command=command, directory=layout.temporal)


def _seaweedfs(settings: Settings, layout: StackLayout) -> Program:
    ports = stack_ports(settings)
    flags = {
        "dir": layout.swfs_data,
        "ip": "127.0.0.1",
        "ip.bind": "127.0.0.1",
        "master.telemetry": "false",
        "admin.ui": "false",
        "webdav": "false",
        "s3.port.iceberg": 0,
        "s3.port.lance": 0,
        "s3.config": s3_config_path(layout),
        "s3.allowedOrigins": ",".join(settings.browser_origins),
        "s3.port": settings.s3_port,
        "s3.port.grpc": ports.swfs_s3_grpc,
        "master.port": settings.swfs_master_port,
        "master.port.grpc": ports.swfs_master_grpc,
        "volume.port": settings.swfs_volume_port,
        "volume.port.grpc": ports.swfs_volume_grpc,
        "filer.port": settings.swfs_filer_port,
        "filer.port.grpc": ports.swfs_filer_grpc,
        # The admin server listens even with its UI off.
        "admin.port": ports.swfs_admin,
        "admin.port.grpc": ports.swfs_admin_grpc,
        "filer.localSocket": layout.swfs_run / "filer.sock",
        "s3.localSocket": layout.swfs_run / "s3.sock",
    }
    command = [str(venv_bin("weed")), f"-logdir={layout.swfs_logs}", "mini"]
    command += [f"-{name}={value}" for name, value in flags.items()]
    return Program(
        name="seaweedfs",
        command=command,
        # weed reads notification.toml and security.toml from its working directory.
        directory=layout.swfs_conf,
        # As in docker-compose.yml. At 512MiB the Go collector ran almost without pause
        # under uploads: weed spent 10-25% more CPU per GiB (and the store's CPU is what
        # bounds upload speed on a small machine), for about 400 MiB less resident.
        environment={"GOMEMLIMIT": "1GiB"},
    )


def _nats(layout: StackLayout) -> Program:
    return Program(
        name="nats",
        command=[str(venv_bin("nats-server")), "-c", str(nats_config_path(layout))],
        directory=layout.nats,
    )


def _clamd(layout: StackLayout) -> Program:
    return Program(
        name="clamd",
        command=["/usr/sbin/clamd", f"--config-file={clamd_config_path(layout)}"],
        directory=layout.clamav,
    )


def _edge(layout: StackLayout) -> Program:
    nginx = shlex.join(
        [
            "/usr/sbin/nginx",
            "-p",
            str(layout.nginx),
            "-c",
            str(nginx_config_path(layout)),
            "-g",
            "daemon off;",
        ]
    )
    pid_file = shlex.quote(str(layout.nginx / "nginx.pid"))
    # nginx workers outlive a SIGKILLed master and keep the port, so the restarted master
    # could never bind. A pid file left behind names the dead master, whose pid is also
    # the process group (supervisor's setpgrp) of its workers: kill those first.
    script = (
        f'if [ -s {pid_file} ]; then pkill -KILL -g "$(cat {pid_file})" -x nginx; fi; exec {nginx}'
    )
    return Program(name="edge", command=["/bin/sh", "-c", script], directory=layout.nginx)


def _app(name: str) -> Program:
    return Program(
        name=name,
        command=[sys.executable, "-m", APP_MODULES[name]],
        directory=REPO_ROOT,
        # Started by `up` once the infrastructure is provisioned.
        autostart=False,
        # worker and relay have no health endpoint: staying up this long is their readiness.
        startsecs=1 if name in ("api", "adapter") else 3,
        # A module that cannot even start should fail `up` in seconds, not minutes.
        startretries=3,
        stopwaitsecs=15,
        # glibc keeps freed 1 MiB stream chunks in per-thread arenas once its mmap threshold
        # has grown: a worker's peak grew with the file (271-375 MiB for 4 GiB). Two arenas
        # and a fixed threshold (big buffers always mapped, and returned) keep it near flat.
        environment={
            "PYTHONUNBUFFERED": "1",
            # The workflow sandbox imports the workflow modules afresh for each workflow run:
            # without cached bytecode every run compiles them again (bench.orchestration:
            # about 5 ms of the worker's CPU per small file). Empty unsets an inherited "1".
            "PYTHONDONTWRITEBYTECODE": "",
            "MALLOC_ARENA_MAX": "2",
            "MALLOC_MMAP_THRESHOLD_": "131072",
        },
    )


def stack_programs(
    settings: Settings, layout: StackLayout, config_digests: dict[str, str]
) -> list[Program]:
    infrastructure = [
        _postgres(settings, layout),
        _temporal(settings, layout),
        _seaweedfs(settings, layout),
        _nats(layout),
        _clamd(layout),
        _edge(layout),
    ]
    programs = infrastructure + [_app(name) for name in APPS]
    return [
        replace(p, environment={**p.environment, "STACK_CONFIG_DIGEST": config_digests[p.name]})
        if p.name in config_digests
        else p
        for p in programs
    ]


def _value(text: str) -> str:
    # supervisor expands %(name)s in every value.
    return text.replace("%", "%%")


def _program_section(program: Program, layout: StackLayout) -> str:
    lines = [
        f"[program:{program.name}]",
        f"command={_value(shlex.join(program.command))}",
        f"directory={_value(str(program.directory))}",
        f"autostart={str(program.autostart).lower()}",
        # A later test kills servers with SIGKILL and expects them back.
        "autorestart=true",
        f"startsecs={program.startsecs}",
        f"startretries={program.startretries}",
        f"stopsignal={program.stopsignal}",
        f"stopwaitsecs={program.stopwaitsecs}",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={_value(str(layout.log(program.name)))}",
        "stdout_logfile_maxbytes=20MB",
        "stdout_logfile_backups=2",
    ]
    if program.user:
        lines.append(f"user={program.user}")
    if program.environment:
        pairs = ",".join(f'{k}="{_value(v)}"' for k, v in sorted(program.environment.items()))
        lines.append(f"environment={pairs}")
    return "\n".join(lines) + "\n"


def render_supervisord_conf(programs: list[Program], layout: StackLayout) -> str:
    socket = _value(str(layout.supervisor_socket))
    head = f"""\
; Generated by workers/stack on every `up`. The CONVEYOR_* settings reach the programs through
; supervisord's own environment, so no secret is written here.
[unix_http_server]
file={socket}
chmod=0700

[supervisord]
logfile={_value(str(layout.log("supervisord")))}
logfile_maxbytes=10MB
logfile_backups=2
pidfile={_value(str(layout.supervisord_pidfile))}
childlogdir={_value(str(layout.logs))}
directory={_value(str(layout.state))}
minfds=8192
; Logs, data and sockets of every program: the owner's alone.
umask=077

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{socket}
"""
    return head + "".join("\n" + _program_section(p, layout) for p in programs)
