"""The local stack's exposure: loopback only, SeaweedFS internals locked, CORS from settings,
Postgres behind passwords, state readable by its owner alone."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from fnmatch import fnmatch
from pathlib import Path

import httpx
import psycopg
import pytest

from conveyor_core.settings import Settings
from workers.stack import manage
from workers.stack.layout import StackLayout


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
    preflight = {
        "Access-Control-Request-Method": "POST",
        # What a page with an upload token sends on a create.
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }
    allowed = httpx.options(url, headers={**preflight, "Origin": stack.cors_origins[0]})
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers.get("access-control-allow-origin") == stack.cors_origins[0]
    other = httpx.options(url, headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("user", ["postgres", "conveyor"])
def test_postgres_refuses_logins_without_a_password(stack: Settings, user: str) -> None:
    layout = StackLayout.of(stack)
    for host in ("127.0.0.1", str(layout.pg_socket_dir)):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(
                host=host, port=stack.pg_port, user=user, dbname="postgres", connect_timeout=5
            )
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(
                host=host,
                port=stack.pg_port,
                user=user,
                password="guessed",
                dbname="postgres",
                connect_timeout=5,
            )


def test_the_app_connects_as_a_role_that_is_no_superuser(stack: Settings) -> None:
    with psycopg.connect(stack.libpq_url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT current_user, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls,"
            " pg_get_userbyid(datdba) FROM pg_roles, pg_database"
            " WHERE rolname = current_user AND datname = current_database()"
        ).fetchone()
        assert row == (stack.database_user, False, False, False, False, stack.database_user)
        # The migrations ran as this role: it owns the schema's tables.
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace"
        ).fetchall()
        assert owners == [(stack.database_user,)]
    assert stack.database_user != "postgres"


# What may keep a permission for others under the state dir, and why.
_PASSABLE = {
    # postgres and nginx's workers (nobody) pass through to their own directories (o+x only).
    ".": 0o711,
    "nginx": 0o711,
    "nginx/tmp": 0o711,
}
_SET_BY_THE_PROGRAM = (
    # weed sets its volume files' modes itself, whatever the umask; swfs/ is 0700.
    "swfs/data/*",
    # clamd makes its pid file 0644 itself; clamav/ is 0700.
    "clamav/clamd.pid",
)


def test_nothing_under_the_state_dir_is_open_to_others(stack: Settings) -> None:
    state = stack.state_path
    for name, mode in _PASSABLE.items():
        assert stat.S_IMODE((state / name).stat().st_mode) == mode, name
    open_to_others: list[str] = []
    for root, dirs, files in os.walk(state):
        for entry in dirs + files:
            path = Path(root, entry)
            relative = str(path.relative_to(state))
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) or relative in _PASSABLE or not mode & 0o007:
                continue
            if any(fnmatch(relative, pattern) for pattern in _SET_BY_THE_PROGRAM):
                # Allowed only where no other user can reach it.
                assert stat.S_IMODE((state / relative.split("/")[0]).stat().st_mode) == 0o700
                continue
            open_to_others.append(f"{stat.filemode(mode)} {relative}")
    assert open_to_others == []
    # The directory of each component is its owner's alone.
    for name in ("logs", "supervisor", "temporal", "swfs", "nats", "clamav", "pg", "secrets"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o700, name
    secrets = sorted(p.name for p in (state / "secrets").iterdir())
    assert secrets == ["database_password", "postgres_password"]
    for path in (state / "secrets").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
