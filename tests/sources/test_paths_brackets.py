"""A recipe folder whose name holds glob characters: only what the recipe wrote is a pattern."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardprep.errors import SourceError
from shardprep.sources.paths import expand_paths


def test_brackets_in_the_recipe_folder_are_literal(tmp_path: Path) -> None:
    base = tmp_path / "cfg [x]"
    (base / "data").mkdir(parents=True)
    for name in ("a.jsonl", "b.jsonl"):
        (base / "data" / name).write_text("{}\n")
    assert expand_paths("data/a.jsonl", base_dir=base) == [str(base / "data" / "a.jsonl")]
    assert expand_paths("data/*.jsonl", base_dir=base) == [
        str(base / "data" / n) for n in ("a.jsonl", "b.jsonl")
    ]
    with pytest.raises(SourceError, match="no file matches"):
        expand_paths("data/*.csv", base_dir=base)
