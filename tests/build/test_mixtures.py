"""Mixtures (skip / fraction / take / repeat), CSV and Parquet with column mapping, prompt/completion,
and the hashed test split: the same rows whatever the worker count or resumes."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from shardprep.build.mixture import select
from shardprep.build.run import build
from shardprep.errors import RecipeError
from shardprep.recipe import load_recipe, parse_recipe

ROOT = Path(__file__).parents[2]
QWEN3 = str(ROOT / "tests/fixtures/tokenizers/qwen3")


def _recipe(tmp: Path, sources: list[dict[str, Any]], **extra: Any) -> Path:
    data = {
        "name": "mix",
        "output": "out",
        "tokenizer": QWEN3,
        "renderer": "qwen3",
        "sources": sources,
        **extra,
    }
    p = tmp / "recipe.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _pc(i: int, tag: str) -> dict[str, str]:
    return {"q": f"{tag} question {i}?", "a": f"{tag} answer {i}."}


def _inputs(tmp: Path) -> None:
    with open(tmp / "a.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["q", "a"])
        w.writeheader()
        for i in range(300):
            w.writerow(_pc(i, "csv"))
    rows = [_pc(i, "pq") for i in range(200)]
    pq.write_table(pa.Table.from_pylist(rows), tmp / "b.parquet", row_group_size=64)


def _rows(out: Path, manifest: dict[str, Any]) -> dict[str, list[tuple[str, int]]]:
    got: dict[str, list[tuple[str, int]]] = {}
    for split, info in manifest["splits"].items():
        got[split] = []
        for shard in info["shards"]:
            t = pq.read_table(out / shard["path"], columns=["source", "source_row"])
            got[split] += list(
                zip(t["source"].to_pylist(), t["source_row"].to_pylist(), strict=True)
            )
    return got


SOURCES = [
    {
        "name": "a",
        "path": "a.csv",
        "format": "prompt_completion",
        "columns": {"prompt": "q", "completion": "a"},
        "skip": 10,
        "fraction": 0.5,
        "take": 100,
        "seed": 3,
    },
    {
        "name": "b",
        "path": "b.parquet",
        "format": "prompt_completion",
        "columns": {"prompt": "q", "completion": "a"},
        "take": 50,
        "repeat": 3,
    },
]


def test_mixture_is_deterministic_across_workers_and_units(tmp_path: Path) -> None:
    _inputs(tmp_path)
    results = []
    for workers, unit_rows in ((1, 4096), (2, 37)):
        p = _recipe(
            tmp_path,
            SOURCES,
            split={"test_fraction": 0.1, "seed": 5},
            workers=workers,
            work_unit_rows=unit_rows,
            output=f"out{workers}",
        )
        recipe, base = load_recipe(p)
        res = build(recipe, base)
        results.append(_rows(tmp_path / f"out{workers}", res.manifest))
    first, second = results
    assert {k: sorted(v) for k, v in first.items()} == {k: sorted(v) for k, v in second.items()}
    rows = first["train"] + first.get("test", [])
    a = sorted(r for s, r in rows if s == "a")
    # a: 100 rows kept out of rows >= 10 by the seeded hash, each once
    assert len(a) == 100 and len(set(a)) == 100 and min(a) >= 10
    sel = select(300, name="a", seed=3, skip=10, take=100, fraction=0.5)
    assert a == sorted(int(r) for r in np.flatnonzero(sel.mask(np.arange(300))))
    # b: the first 50 rows, three times over for train rows; held-out rows appear once, in test
    test_b = {r for s, r in first.get("test", []) if s == "b"}
    train_b = [r for s, r in first["train"] if s == "b"]
    assert set(train_b) | test_b == set(range(50)) and not (set(train_b) & test_b)
    assert all(train_b.count(r) == 3 for r in set(train_b))
    assert 0 < len(first.get("test", [])) < 30


def test_test_fraction_is_stable_when_sources_change(tmp_path: Path) -> None:
    _inputs(tmp_path)
    held: list[set[tuple[str, int]]] = []
    for sources in ([SOURCES[1]], SOURCES):
        p = _recipe(tmp_path, sources, split={"test_fraction": 0.2, "seed": 1})
        recipe, base = load_recipe(p)
        res = build(recipe, base)
        held.append(
            {x for x in _rows(tmp_path / "out", res.manifest).get("test", []) if x[0] == "b"}
        )
    assert held[0] and held[0] == held[1]


def test_prompt_completion_csv_content(tmp_path: Path) -> None:
    _inputs(tmp_path)
    recipe, base = load_recipe(_recipe(tmp_path, [dict(SOURCES[0], take=3, fraction=None, skip=0)]))
    res = build(recipe, base)
    m = res.manifest
    assert m["splits"]["train"]["rows"] == 3 and m["sources"][0]["rows_read"] == 3
    from shardprep.tokenizer import load_tokenizer

    tok = load_tokenizer(QWEN3)
    t = pq.read_table(tmp_path / "out" / m["splits"]["train"]["shards"][0]["path"])
    text = tok.tokenizer.decode(t["input_ids"][0].as_py(), skip_special_tokens=False)
    assert "csv question 0?" in text and "csv answer 0." in text and "<|im_start|>user" in text


def test_recipe_rejects_bad_mixture_keys() -> None:
    base = {"name": "r", "output": "o", "tokenizer": "t", "renderer": "qwen3"}
    with pytest.raises(RecipeError, match="exactly one of"):
        parse_recipe({**base, "sources": [{"path": "a.jsonl", "hf": "org/x"}]})
    with pytest.raises(RecipeError, match="fraction"):
        parse_recipe({**base, "sources": [{"path": "a.jsonl", "fraction": 1.5}]})
    with pytest.raises(RecipeError, match="not both"):
        parse_recipe(
            {
                **base,
                "sources": [{"path": "a.jsonl"}],
                "split": {"test_size": 3, "test_fraction": 0.1},
            }
        )


def test_selection_take_after_fraction() -> None:
    sel = select(10_000, name="s", seed=0, skip=100, take=1234, fraction=0.3)
    kept = np.flatnonzero(sel.mask(np.arange(10_000)))
    assert len(kept) == 1234 and kept[0] >= 100 and sel.count(0, 10_000) == 1234
    assert json.dumps(
        select(10_000, name="s", seed=0, skip=100, take=1234, fraction=0.3).__dict__
    ) == json.dumps(sel.__dict__)
