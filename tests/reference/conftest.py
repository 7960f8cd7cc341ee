"""The oracle fixture: one tinker-cookbook worker (`.venv-ref`) for the whole session.

They run when asked for (`-m reference`, $SHARDPREP_REF_PYTHON, or `make test-reference`), so plain
`make test` stays fast; without `.venv-ref` they skip, so `make test` passes on a machine that
never installed the oracle. `make test-reference` sets SHARDPREP_REFERENCE_REQUIRED=1: then an
oracle that cannot start fails the run instead of skipping.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `import reference.*`

from reference.oracle import Oracle, OracleError, reference_python  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Plain `make test` leaves the differential to `make test-reference` (minutes of oracle time)."""
    asked = "reference" in (config.getoption("markexpr") or "") or _required()
    if asked or os.environ.get("SHARDPREP_REF_PYTHON"):
        return
    skip = pytest.mark.skip(
        reason="differential tests: `make test-reference` (or pytest -m reference)"
    )
    for item in items:
        if "reference" in item.keywords:
            item.add_marker(skip)


def _required() -> bool:
    return os.environ.get("SHARDPREP_REFERENCE_REQUIRED", "") not in ("", "0")


@pytest.fixture(scope="session")
def oracle() -> Iterator[Oracle]:
    python = reference_python()
    if python is None or not python.exists():
        msg = f"no reference environment ({python or '.venv-ref'}); run `make test-reference`"
        if _required():
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        worker = Oracle(python)
    except (OracleError, OSError) as exc:
        if _required():
            pytest.fail(f"the tinker-cookbook oracle did not start: {exc}")
        pytest.skip(f"the tinker-cookbook oracle did not start: {exc}")
    yield worker
    worker.close()
