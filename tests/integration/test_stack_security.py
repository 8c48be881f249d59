"""The local stack's exposure: loopback only, SeaweedFS internals locked, CORS from settings."""

from __future__ import annotations

import re
import subprocess

import httpx

from conveyor_core.settings import Settings
from workers.stack import manage


def _stack_pids(stack: Settings) -> set[int]:
    """Every process supervisord runs for this stack, with their children."""
    roots = {int(pid) for pid in re.findall(r"pid (\d+)", manage.supervisorctl(stack, "status"))}
    found, frontier = set(roots), list(roots)
    while frontier:
        children = subprocess.run(
            ["pgrep", "-P", str(frontier.pop())], capture_output=True, text=True
        ).stdout.split()
        for child in map(int, children):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def test_every_stack_server_listens_on_loopback_only(stack: Settings) -> None:
    pids = _stack_pids(stack)
    listeners = subprocess.run(
        ["ss", "-H", "-l", "-t", "-u", "-n", "-p"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    ours = [line for line in listeners if any(f"pid={pid}," in line for pid in pids)]
    assert len(ours) >= 10, listeners  # every server of the stack is listening
    for line in ours:
        local = line.split()[4]
        assert local.startswith(("127.", "[::1]", "[::ffff:127.")), line


def test_seaweedfs_internal_ports_refuse_anonymous_access(stack: Settings) -> None:
    filer = f"http://127.0.0.1:{stack.swfs_filer_port}"
    assert httpx.get(f"{filer}/buckets/{stack.bucket}/").status_code == 401
    assert httpx.post(f"{filer}/probe.txt", files={"file": b"x"}).status_code == 401
    volume = httpx.get(f"http://127.0.0.1:{stack.swfs_volume_port}/1,01637037d6")
    assert volume.status_code == 401
    s3_anonymous = httpx.get(f"{stack.s3_endpoint}/{stack.bucket}/")
    assert s3_anonymous.status_code == 403


def test_store_cors_allows_only_configured_origins(stack: Settings) -> None:
    url = f"{stack.s3_endpoint}/{stack.bucket}/incoming/x"
    preflight = {"Access-Control-Request-Method": "PUT"}
    allowed = httpx.options(url, headers={**preflight, "Origin": stack.cors_origins[0]})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == stack.cors_origins[0]
    other = httpx.options(url, headers={**preflight, "Origin": "https://evil.example"})
    assert other.status_code == 403
    assert "access-control-allow-origin" not in other.headers


def test_api_cors_allows_only_configured_origins(stack: Settings) -> None:
    url = f"{stack.api_url}/v1/uploads"
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = httpx.options(url, headers={**preflight, "Origin": stack.cors_origins[0]})
    assert allowed.headers.get("access-control-allow-origin") == stack.cors_origins[0]
    other = httpx.options(url, headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
