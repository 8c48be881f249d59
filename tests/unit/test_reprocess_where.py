"""`conveyor reprocess --where`: KEY=VALUE items become a filter of data, never SQL."""

from __future__ import annotations

import pytest

from activities.reprocess import batch_query, filter_conditions
from conveyor_core.types import ReprocessBatchInput, ReprocessFilter
from workers.reprocess import UsageError, parse_where


def test_where_parses_each_key() -> None:
    parsed = parse_where(
        [
            "content_type=image/%",
            "tenant = acme ",
            "created_after=2026-01-01",
            "created_before=2026-02-01T12:00:00+02:00",
        ]
    )

    assert parsed == ReprocessFilter(
        content_type="image/*",
        tenant="acme",
        created_after="2026-01-01T00:00:00+00:00",
        created_before="2026-02-01T12:00:00+02:00",
    )
    assert parse_where([]) == ReprocessFilter()
    assert parse_where(["content_type=image/png"]).content_type == "image/png"


@pytest.mark.parametrize(
    "items",
    [
        ["content_type"],
        ["colour=red"],
        ["tenant="],
        ["tenant=a", "tenant=b"],
        ["content_type=image/*/png*"],
        ["content_type=%png"],
        ["created_after=last tuesday"],
        ["1=1; DROP TABLE blob"],
    ],
)
def test_where_refuses_what_it_does_not_know(items: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_where(items)


def test_where_values_are_bound_never_spliced_into_sql() -> None:
    sneaky = ReprocessFilter(content_type="image/'; DROP TABLE blob; --_*", tenant="x' OR '1'='1")
    query = batch_query(ReprocessBatchInput(filter=sneaky, after_sha256="ab", limit=5))

    sql = str(query)
    assert "DROP" not in sql and "OR '1'" not in sql
    params = query.compile().params
    assert "image/'; DROP TABLE blob; --\\_%" in params.values()  # LIKE specials escaped
    assert "x' OR '1'='1" in params.values()
    assert len(filter_conditions(ReprocessFilter())) == 1  # ready blobs only
