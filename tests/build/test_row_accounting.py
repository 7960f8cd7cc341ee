"""Every selected row is written or counted under a reason: selected = train + test + dropped.

`repeat` with a test split used to leave the copies of held-out rows out silently (the summary said
"dropped: none" while hundreds of selected rows were missing); they are `repeat_of_test_row` now.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from shardprep.build.mixture import select
from shardprep.cli.app import app

ROOT = Path(__file__).parents[2]
QWEN3 = ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"
PLAIN_ENV = {"COLUMNS": "200", "NO_COLOR": "1", "FORCE_COLOR": None, "TERM": "dumb"}
runner = CliRunner()


def _write(path: Path, n: int, bad_every: int = 0) -> None:
    lines = []
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            lines.append(json.dumps({"messages": [{"role": "wizard", "content": "x"}]}))
        else:
            lines.append(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": f"q{i}"},
                            {"role": "assistant", "content": f"a{i}"},
                        ]
                    }
                )
            )
    path.write_text("\n".join(lines) + "\n")


def _selected(src: dict[str, Any], total: int) -> int:
    plain = not (src.get("skip") or src.get("take") is not None or src.get("fraction") is not None)
    kept = (
        total
        if plain
        else select(
            total,
            name=src["name"],
            seed=src.get("seed", 0),
            skip=src.get("skip", 0),
            take=src.get("take"),
            fraction=src.get("fraction"),
        ).count(0, total)
    )
    return kept * src.get("repeat", 1)


CASES = [
    ([{"name": "a", "path": "a.jsonl", "repeat": 3}], {"test_fraction": 0.2, "seed": 0}),
    (
        [
            {"name": "a", "path": "a.jsonl", "repeat": 2, "fraction": 0.5, "take": 100, "seed": 4},
            {"name": "b", "path": "b.jsonl"},
        ],
        {"test_size": 30, "seed": 1},
    ),
    (
        [
            {"name": "a", "path": "a.jsonl", "repeat": 4, "skip": 7},
            {"name": "b", "path": "b.jsonl", "repeat": 2},
        ],
        {"test_fraction": 0.1, "seed": 2},
    ),
]


@pytest.mark.parametrize(("sources", "split"), CASES)
def test_selected_rows_are_written_or_counted(
    tmp_path: Path, sources: list[dict[str, Any]], split: dict[str, Any]
) -> None:
    _write(tmp_path / "a.jsonl", 300)
    _write(tmp_path / "b.jsonl", 120, bad_every=10)  # bad rows: skipped and counted
    recipe = {
        "name": "acc",
        "output": str(tmp_path / "out"),
        "tokenizer": str(QWEN3),
        "renderer": "qwen3",
        "sources": sources,
        "split": split,
        "on_error": "skip",
        "workers": 1,
        "work_unit_rows": 64,
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    res = runner.invoke(app, ["build", str(tmp_path / "r.yaml"), "--quiet"], env=PLAIN_ENV)
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    totals = {"a": 300, "b": 120}
    selected = sum(_selected(s, totals[s["name"]]) for s in sources)
    written = sum(info["rows"] for info in m["splits"].values())
    dropped = m["stats"]["dropped"]
    assert written + sum(dropped.values()) == selected == m["stats"]["rows_read"]
    for s, stats in zip(sources, m["sources"], strict=True):
        assert stats["rows_read"] == _selected(s, totals[s["name"]])
    repeats = dropped.get("repeat_of_test_row", 0)
    expected_repeats = 0
    test_rows = m["splits"].get("test", {}).get("rows", 0)
    assert test_rows > 0
    if all(s.get("repeat", 1) > 1 for s in sources) and len(sources) == 1:
        expected_repeats = (sources[0]["repeat"] - 1) * test_rows
        assert repeats == expected_repeats
    assert repeats > 0
    show = runner.invoke(app, ["show", str(tmp_path / "out")], env=PLAIN_ENV)
    assert show.exit_code == 0, show.output
    assert f"repeat_of_test_row {repeats:,}" in show.output  # the summary names it, with its count
