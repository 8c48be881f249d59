"""Each server's config files, rendered from templates/ into the state dir on every `up`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from string import Template

from conveyor_core.settings import Settings
from workers.stack.errors import StackError
from workers.stack.jwt_keys import load_or_create
from workers.stack.layout import StackLayout, write_file

TEMPLATES = Path(__file__).parent / "templates"
# libclamav scans at most this many bytes of one file (or stream).
CLAMAV_MAX_SCAN_BYTES = 2**31 - 1
# clamd's MaxScanSize counts what it extracts as well (archive members, and types it finds
# embedded in high-entropy data): twice the file limit keeps ordinary files well inside it.
CLAMAV_MAX_TOTAL_SCAN_BYTES = 4000 * 1024 * 1024


def _render(template: str, **values: object) -> str:
    return Template((TEMPLATES / template).read_text()).substitute(values)


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string.
    return json.dumps(value)


def _s3_identities(settings: Settings) -> str:
    identity = {
        "name": "conveyor",
        "credentials": [
            {
                "accessKey": settings.s3_access_key.get_secret_value(),
                "secretKey": settings.s3_secret_key.get_secret_value(),
            }
        ],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    return json.dumps({"identities": [identity]}, indent=2) + "\n"


def s3_config_path(layout: StackLayout) -> Path:
    return layout.swfs_conf / "s3.json"


def nats_config_path(layout: StackLayout) -> Path:
    return layout.nats / "nats.conf"


def clamd_config_path(layout: StackLayout) -> Path:
    return layout.clamav / "clamd.conf"


def nginx_config_path(layout: StackLayout) -> Path:
    return layout.nginx / "nginx.conf"


def _scan_max_bytes(settings: Settings) -> int:
    limit = settings.scan_max_bytes
    if not 0 < limit <= CLAMAV_MAX_SCAN_BYTES:
        raise StackError(
            f"CONVEYOR_SCAN_MAX_BYTES must be between 1 and {CLAMAV_MAX_SCAN_BYTES} "
            f"(the most clamd scans of one file), not {limit}"
        )
    return limit


def write_server_configs(settings: Settings, layout: StackLayout) -> dict[str, str]:
    """Write every server's config; returns program -> digest of what it reads.

    The digest goes into the program's supervisor section, so that `supervisorctl update`
    restarts a server whose config changed and leaves the others alone.
    """
    keys = load_or_create(layout.swfs_jwt_keys)
    files: dict[str, list[tuple[Path, str, int]]] = {
        "seaweedfs": [
            (s3_config_path(layout), _s3_identities(settings), 0o600),
            (
                layout.swfs_conf / "notification.toml",
                _render(
                    "notification.toml",
                    endpoint=_toml_string(
                        f"http://127.0.0.1:{settings.adapter_port}/seaweedfs/events"
                    ),
                    bearer_token=_toml_string(settings.store_events_token.get_secret_value()),
                ),
                0o600,
            ),
            (
                layout.swfs_conf / "security.toml",
                _render(
                    "security.toml",
                    jwt_signing=_toml_string(keys["jwt.signing"]),
                    jwt_signing_read=_toml_string(keys["jwt.signing.read"]),
                    jwt_filer_signing=_toml_string(keys["jwt.filer_signing"]),
                    jwt_filer_signing_read=_toml_string(keys["jwt.filer_signing.read"]),
                ),
                0o600,
            ),
        ],
        "nats": [
            (
                nats_config_path(layout),
                _render(
                    "nats.conf",
                    nats_port=settings.nats_port,
                    monitor_port=settings.nats_monitor_port,
                    store_dir=layout.nats,
                ),
                0o600,
            )
        ],
        "clamd": [
            (
                clamd_config_path(layout),
                _render(
                    "clamd.conf",
                    pid_file=layout.clamav / "clamd.pid",
                    db_dir=layout.clamav_db,
                    socket=layout.clamd_socket,
                    port=settings.clamd_port,
                    scan_max_bytes=_scan_max_bytes(settings),
                    scan_max_total_bytes=min(
                        2 * _scan_max_bytes(settings), CLAMAV_MAX_TOTAL_SCAN_BYTES
                    ),
                ),
                0o600,
            )
        ],
        "edge": [
            (
                nginx_config_path(layout),
                _render(
                    "nginx.conf",
                    prefix=layout.nginx,
                    edge_port=settings.edge_port,
                    s3_port=settings.s3_port,
                    public_bucket=settings.public_bucket,
                    cache_max_size=settings.edge_cache_max_bytes,
                ),
                0o600,
            )
        ],
    }
    digests: dict[str, str] = {}
    for program, program_files in files.items():
        digest = hashlib.sha256()
        for path, text, mode in program_files:
            write_file(path, text, mode=mode)
            digest.update(text.encode())
        digests[program] = digest.hexdigest()[:16]
    return digests
