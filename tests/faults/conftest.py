"""Fault-injection suite: each test damages something (a file, a shard, a cache entry, a server, a
process) and checks the damage is detected, never served. The `faults` fixture tallies what was
injected; the session's summary prints the totals (see README "Trust under faults")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

_TALLY: Counter[str] = Counter()
KINDS = ("fault", "kill_point", "bad_input", "rows_lost", "wrong_rows")


class Faults:
    """Counts what a test injected: faults (damaged files, stopped servers), kill points (SIGKILL
    moments), bad inputs (hostile rows or recipes), rows lost and wrong rows served (both must stay
    0)."""

    def fault(self, n: int = 1) -> None:
        _TALLY["fault"] += n

    def kill_point(self, n: int = 1) -> None:
        _TALLY["kill_point"] += n

    def bad_input(self, n: int = 1) -> None:
        _TALLY["bad_input"] += n

    def rows_lost(self, n: int) -> None:
        _TALLY["rows_lost"] += n

    def wrong_rows(self, n: int) -> None:
        """Rows a reader served that differ from the rows written at their index."""
        _TALLY["wrong_rows"] += n


@pytest.fixture
def faults() -> Iterator[Faults]:
    yield Faults()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if any(_TALLY.values()):
        terminalreporter.write_line(
            "fault suite: {fault} faults injected, {kill_point} kill points, {bad_input} bad inputs "
            "tried, {rows_lost} rows lost, {wrong_rows} wrong rows served".format(
                **{k: _TALLY[k] for k in KINDS}
            )
        )
