"""Where one stack keeps its state, configs, sockets and logs (all under settings.state_path)."""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from conveyor_core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


def venv_bin(name: str) -> Path:
    """A binary installed next to this interpreter (temporal, weed, nats-server)."""
    return Path(sys.executable).parent / name


@dataclass(frozen=True)
class StackLayout:
    state: Path

    @classmethod
    def of(cls, settings: Settings) -> StackLayout:
        return cls(settings.state_path)

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def log(self, program: str) -> Path:
        return self.logs / f"{program}.log"

    @property
    def supervisor(self) -> Path:
        return self.state / "supervisor"

    @property
    def supervisord_conf(self) -> Path:
        return self.supervisor / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.supervisor / "supervisor.sock"

    @property
    def supervisord_pidfile(self) -> Path:
        return self.supervisor / "supervisord.pid"

    @property
    def supervisord_env_digest(self) -> Path:
        return self.supervisor / "environment.sha256"

    @property
    def pg(self) -> Path:
        return self.state / "pg"

    @property
    def pg_data(self) -> Path:
        return self.pg / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg / "sock"

    @property
    def temporal(self) -> Path:
        return self.state / "temporal"

    @property
    def swfs(self) -> Path:
        return self.state / "swfs"

    @property
    def swfs_data(self) -> Path:
        return self.swfs / "data"

    @property
    def swfs_conf(self) -> Path:
        """weed's working directory: it reads notification.toml and security.toml from here."""
        return self.swfs / "conf"

    @property
    def swfs_run(self) -> Path:
        return self.swfs / "run"

    @property
    def swfs_logs(self) -> Path:
        """weed's own log files (-logdir); it exits if the directory is missing."""
        return self.logs / "seaweedfs"

    @property
    def swfs_jwt_keys(self) -> Path:
        return self.swfs / "jwt_keys.json"

    @property
    def nats(self) -> Path:
        return self.state / "nats"

    @property
    def clamav(self) -> Path:
        return self.state / "clamav"

    @property
    def clamav_db(self) -> Path:
        return self.clamav / "db"

    @property
    def clamd_socket(self) -> Path:
        return self.clamav / "clamd.sock"

    @property
    def nginx(self) -> Path:
        return self.state / "nginx"

    @property
    def traces(self) -> Path:
        """The local span store (observability/span_store.py), written by the app programs."""
        return self.state / "traces"

    @property
    def secrets(self) -> Path:
        """Generated passwords (PostgreSQL's); see pg_auth.py."""
        return self.state / "secrets"

    def create_dirs(self) -> None:
        """Every directory, private to the user who runs the stack (postgres's in pg_auth).

        The state dir and the edge's directories are 0711: postgres and nginx's workers
        (nobody) must pass through them to their own directories, but cannot list them.
        """
        self.state.mkdir(parents=True, exist_ok=True)
        for path in (
            self.logs,
            self.swfs_logs,
            self.supervisor,
            self.temporal,
            self.swfs,
            self.swfs_data,
            self.swfs_conf,
            self.swfs_run,
            self.nats,
            self.clamav,
            self.clamav_db,
            self.nginx,
            self.nginx / "cache",
            self.nginx / "tmp",
            self.traces,
            self.secrets,
        ):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o700)
        for path in self._passable:
            path.chmod(0o711)
        # supervisord opens its own log before it applies its umask: make it private first.
        os.close(os.open(self.log("supervisord"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))

    @property
    def _passable(self) -> tuple[Path, ...]:
        # nginx creates its temp dirs below nginx/tmp (then gives them to its workers' user).
        return (self.state, self.nginx, self.nginx / "tmp")

    def restrict_access(self) -> None:
        """Take every permission of others from what an older stack left readable (logs,
        data, configs written 0644); what runs now is started with umask 077."""
        passable = set(self._passable)
        for root, dirs, files in os.walk(self.state):
            for name in dirs + files:
                path = Path(root, name)
                mode = path.lstat().st_mode
                if stat.S_ISLNK(mode) or path in passable:
                    continue
                if mode & 0o007:
                    path.chmod(stat.S_IMODE(mode) & ~0o007)


def write_file(path: Path, text: str, *, mode: int = 0o600) -> bool:
    """Write atomically with `mode` (only the owner reads by default); True if it changed."""
    try:
        unchanged = path.read_text() == text and (path.stat().st_mode & 0o777) == mode
    except FileNotFoundError:
        unchanged = False
    if unchanged:
        return False
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True
