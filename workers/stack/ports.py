"""Every loopback port one stack uses, with the derived ones resolved."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor_core.settings import Settings

# Offsets for ports that only the local stack knows about. The gRPC offset is SeaweedFS's own
# convention; all derived ports move with their base port, so stacks never share one.
_GRPC_OFFSET = 10000


@dataclass(frozen=True)
class StackPorts:
    temporal_http: int
    temporal_metrics: int
    swfs_master_grpc: int
    swfs_volume_grpc: int
    swfs_filer_grpc: int
    swfs_s3_grpc: int
    swfs_admin: int
    swfs_admin_grpc: int


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def stack_ports(settings: Settings) -> StackPorts:
    admin = _or(settings.swfs_admin_port, settings.swfs_master_port + 1)
    return StackPorts(
        temporal_http=_or(settings.temporal_http_port, settings.temporal_port + 10),
        temporal_metrics=_or(settings.temporal_metrics_port, settings.temporal_port + 11),
        swfs_master_grpc=_or(
            settings.swfs_master_grpc_port, settings.swfs_master_port + _GRPC_OFFSET
        ),
        swfs_volume_grpc=_or(
            settings.swfs_volume_grpc_port, settings.swfs_volume_port + _GRPC_OFFSET
        ),
        swfs_filer_grpc=_or(settings.swfs_filer_grpc_port, settings.swfs_filer_port + _GRPC_OFFSET),
        swfs_s3_grpc=_or(settings.swfs_s3_grpc_port, settings.s3_port + _GRPC_OFFSET),
        swfs_admin=admin,
        swfs_admin_grpc=_or(settings.swfs_admin_grpc_port, admin + _GRPC_OFFSET),
    )


def all_ports(settings: Settings) -> dict[str, int]:
    """Setting name -> port, for every port the stack binds (checked for collisions)."""
    ports = {
        name: value
        for name, value in settings.model_dump().items()
        if name.endswith("_port") and isinstance(value, int)
    }
    for name, value in vars(stack_ports(settings)).items():
        ports[name + "_port"] = value
    return ports


def consecutive_ports(base: int) -> dict[str, int]:
    """Every port setting as consecutive numbers from `base`: one Settings(**...) stack that
    sits beside a default stack (and beside another block of ports) without any overlap."""
    names = [
        name
        for name, field in Settings.model_fields.items()
        if name.endswith("_port") and field.annotation in (int, int | None)
    ]
    return {name: base + offset for offset, name in enumerate(names)}
