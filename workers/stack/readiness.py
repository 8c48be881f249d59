"""Is each program answering? One cheap check per program, and a wait with a deadline."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

import httpx

from conveyor_core.objectstore import make_s3_client
from conveyor_core.settings import Settings
from workers.stack import pg_auth
from workers.stack.errors import StackError
from workers.stack.layout import StackLayout, venv_bin
from workers.stack.supervisor_client import Supervisor

# States from which supervisor will not bring a program back by itself.
_GIVEN_UP = {"FATAL", "STOPPED"}


def _http_answers(url: str) -> bool:
    httpx.get(url, timeout=2.0)
    return True


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2.0).status_code == 200


def _postgres(settings: Settings, layout: StackLayout) -> bool:
    with pg_auth.superuser_connect(settings, layout, dbname="postgres") as conn:
        conn.execute("SELECT 1")
    return True


def _temporal(settings: Settings) -> bool:
    # The CLI, not the SDK: loading the SDK's native core into the caller is heavy and
    # known to abort short-lived interpreters at exit (temporalio/sdk-python#300).
    result = subprocess.run(
        [
            str(venv_bin("temporal")),
            "operator",
            "cluster",
            "health",
            "--address",
            f"127.0.0.1:{settings.temporal_port}",
            "--command-timeout",
            "2s",
            # The caller's own Temporal profile or TEMPORAL_* variables must not redirect it.
            "--disable-config-file",
            "--disable-config-env",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return result.returncode == 0 and "SERVING" in result.stdout


def _seaweedfs(settings: Settings) -> bool:
    # A cheap probe first: the S3 client retries refused connections with back-off.
    _http_answers(f"http://127.0.0.1:{settings.s3_port}/")
    make_s3_client(settings).list_buckets()
    return True


def _clamd(layout: StackLayout) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        sock.connect(str(layout.clamd_socket))
        sock.sendall(b"zPING\0")
        return sock.recv(16).rstrip(b"\0") == b"PONG"


def readiness_checks(settings: Settings, layout: StackLayout) -> dict[str, Callable[[], bool]]:
    return {
        "postgres": lambda: _postgres(settings, layout),
        "temporal": lambda: _temporal(settings),
        "seaweedfs": lambda: _seaweedfs(settings),
        "nats": lambda: _http_ok(
            f"http://127.0.0.1:{settings.nats_monitor_port}/healthz?js-enabled-only=true"
        ),
        "clamd": lambda: _clamd(layout),
        "edge": lambda: _http_answers(f"http://127.0.0.1:{settings.edge_port}/"),
        "api": lambda: _http_ok(f"http://127.0.0.1:{settings.api_port}/healthz"),
        "adapter": lambda: _http_ok(f"http://127.0.0.1:{settings.adapter_port}/healthz"),
        # No health endpoint: RUNNING (checked for every program) means it stayed up for its
        # startsecs.
        "worker": lambda: True,
        "relay": lambda: True,
    }


def log_tail(layout: StackLayout, program: str, lines: int = 30) -> str:
    try:
        text = layout.log(program).read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {layout.log(program)})"
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(
    programs: tuple[str, ...],
    checks: dict[str, Callable[[], bool]],
    supervisor: Supervisor,
    layout: StackLayout,
    deadline: float,
) -> None:
    """Poll every program until each answers; fail at the deadline or once supervisor gives up."""
    pending = list(programs)
    last_error: dict[str, str] = {}
    while pending:
        for program in list(pending):
            state = supervisor.state(program)
            if state in _GIVEN_UP:
                _fail(program, f"supervisor state {state}", last_error, layout)
            try:
                # RUNNING too, so that status() agrees with `up` once it returns.
                if state == "RUNNING" and checks[program]():
                    pending.remove(program)
            except Exception as exc:  # any failure of a probe just means "not yet"
                last_error[program] = f"{type(exc).__name__}: {exc}"
        if not pending:
            return
        if time.monotonic() > deadline:
            _fail(
                pending[0],
                f"not ready in time (waiting for {', '.join(pending)})",
                last_error,
                layout,
            )
        time.sleep(0.1)


def _fail(program: str, why: str, last_error: dict[str, str], layout: StackLayout) -> None:
    detail = f"; last probe error: {last_error[program]}" if program in last_error else ""
    raise StackError(
        f"{program}: {why}{detail}\n--- tail of {layout.log(program)} ---\n"
        + log_tail(layout, program)
    )
