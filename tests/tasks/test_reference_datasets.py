"""Datum-level regression cases of tests/reference/test_datasets.py, replayed without tinker.

tests/fixtures/reference_cases/datasets.jsonl.gz holds, per case, a recipe's options, its rows
and tinker-cookbook 0.6.1's own datum (or exception) per row (`tests/reference/record_datasets.py`
records it). Each case is built for real and read back with the torch reader: every row tinker
makes a datum of is written with identical inputs, targets and float32 weights, or dropped /
refused as RESULTS.md ("Datasets") documents; every row tinker raises on is refused.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `import reference.*`

from reference import datasets_oracle  # noqa: E402


def _records() -> list[dict[str, Any]]:
    with gzip.open(datasets_oracle.REGRESSION_FILE, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


RECORDS = _records()


@pytest.mark.parametrize("record", RECORDS, ids=[r["case"]["id"] for r in RECORDS])
def test_build_matches_recorded_tinker_datums(record: dict[str, Any], tmp_path: Path) -> None:
    out = datasets_oracle.replay(record, tmp_path)
    assert not out.mismatches, "\n".join(out.mismatches[:10])
    assert out.compared >= 1


def test_a_pair_with_a_side_tinker_cannot_render_is_that_sides_error(tmp_path: Path) -> None:
    """tinker renders both sides before it makes either datum: a pair whose other side is
    overlong is still refused (a bad row, failing `on_error: fail`), never dropped as overlong."""
    [record] = [r for r in RECORDS if r["case"]["id"] == "dpo-llama3-error-beats-drop"]
    errors = [i for i, a in enumerate(record["tinker"]) if "error" in a]
    assert errors == [0, 1, 2]  # the recorded answers: tinker raises on the three bad pairs
    case = datasets_oracle.Case(**record["case"])
    got = datasets_oracle.build_case(case, record["rows"], tmp_path)
    assert sorted(got["skipped"]) == errors
    assert {reason for reason, _ in got["skipped"].values()} == {"renderer_error"}
    assert got["dropped"] == {"overlong": 2}
    assert sorted(got["kept"]) == [5]
