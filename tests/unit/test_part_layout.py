import pytest

from conveyor_client._source import likely_part_size
from conveyor_core.objectstore import MIB, S3_MAX_PARTS, PartLayout, part_layout

GIB = 1024 * MIB


def test_small_multipart_uses_the_preferred_part_size() -> None:
    layout = part_layout(64 * MIB, 8 * MIB)
    assert (layout.part_size, layout.part_count) == (8 * MIB, 8)
    assert layout.part_length(64 * MIB, 8) == 8 * MIB


def test_last_part_is_the_remainder() -> None:
    layout = part_layout(33 * MIB, 8 * MIB)
    assert layout.part_count == 5
    assert layout.part_length(33 * MIB, 5) == MIB
    assert layout.part_length(33 * MIB, 6) == 0


def test_huge_files_grow_the_part_size_to_stay_under_10000_parts() -> None:
    for size in (80 * GIB, 500 * GIB, 5 * 1024 * GIB, 5 * 1024 * GIB - 1):
        layout = part_layout(size, 8 * MIB)
        assert layout.part_count <= S3_MAX_PARTS
        assert layout.part_size % MIB == 0
        assert (
            (layout.part_count - 1) * layout.part_size
            < size
            <= layout.part_count * layout.part_size
        )


def test_parts_are_never_below_the_s3_minimum() -> None:
    assert part_layout(100 * MIB, MIB).part_size == 5 * MIB


def test_large_files_grow_parts_towards_100_per_file() -> None:
    assert part_layout(GIB, 8 * MIB) == PartLayout(part_size=11 * MIB, part_count=94)
    assert part_layout(4 * GIB, 8 * MIB).part_count == 100
    assert part_layout(100 * GIB, 8 * MIB).part_size == 64 * MIB


@pytest.mark.parametrize(
    "size", [32 * MIB, 800 * MIB + 1, GIB, 3 * GIB + 5, 4 * GIB, 100 * GIB, 700 * GIB]
)
def test_the_client_guesses_the_servers_default_layout(size: int) -> None:
    # The SDK hashes parts before the server answers; a wrong guess costs a second pass.
    assert likely_part_size(size) == part_layout(size, 8 * MIB).part_size
