"""SeaweedFS JWT signing keys: generated once per state dir, then reused on every `up`.

Without them the filer, volume and master HTTP ports serve and change any object to anyone
who can reach them; with them only S3 (which signs its own requests) gets through.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from workers.stack.layout import write_file

# security.toml section -> key; the env names are WEED_ + section upper-cased with "." -> "_".
SECTIONS = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")


def load_or_create(path: Path) -> dict[str, str]:
    try:
        keys: dict[str, str] = json.loads(path.read_text())
    except FileNotFoundError:
        keys = {}
    missing = [section for section in SECTIONS if not keys.get(section)]
    if missing:
        for section in missing:
            keys[section] = secrets.token_urlsafe(32)
        write_file(path, json.dumps(keys, indent=2, sort_keys=True) + "\n", mode=0o600)
    return keys
