"""tasks/conformance.py: a build's conformance_rows spread over its work units."""

from __future__ import annotations

import pytest

from shardprep.tasks.conformance import unit_share


@pytest.mark.parametrize(
    ("rows", "units", "share"),
    [(64, 64, 1), (64, 1, 64), (64, 5, 13), (3, 4, 1), (0, 10, 0), (64, 1000, 1), (8, 4, 2)],
)
def test_unit_share(rows: int, units: int, share: int) -> None:
    assert unit_share(rows, units) == share
    if rows:
        assert share * units >= rows  # never fewer rows than asked, where the input has them
