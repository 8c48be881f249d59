"""The servers' config files as the stack renders them from the settings."""

from __future__ import annotations

import re
from pathlib import Path

from conveyor_core.settings import Settings
from workers.stack.layout import StackLayout
from workers.stack.server_configs import nginx_config_path, write_server_configs


def test_the_edge_cache_is_as_large_as_the_settings_say(tmp_path: Path) -> None:
    settings = Settings(state_dir=str(tmp_path), edge_cache_max_bytes=3 * 1024**3)
    layout = StackLayout.of(settings)
    layout.create_dirs()

    write_server_configs(settings, layout)

    config = nginx_config_path(layout).read_text()
    assert re.search(r"proxy_cache_path .* max_size=3221225472\s", config, re.S)


def test_the_default_edge_cache_holds_multi_gib_files() -> None:
    assert Settings().edge_cache_max_bytes == 10 * 1024**3  # as docker-compose.yml's edge


def test_server_configs_are_readable_by_their_owner_alone(tmp_path: Path) -> None:
    settings = Settings(state_dir=str(tmp_path))
    layout = StackLayout.of(settings)
    layout.create_dirs()

    write_server_configs(settings, layout)

    written = [
        p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".conf", ".json", ".toml")
    ]
    assert len(written) >= 5
    for path in written:
        assert path.stat().st_mode & 0o077 == 0, path
