"""task: pretrain — blocks concatenate back to exactly the tokenized documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardprep.errors import RecipeError
from shardprep.recipe import parse_recipe

from ._helpers import LLAMA3, TOY, read_rows, run_build, write_jsonl

DOCS = [
    f"Document {i}: " + " ".join(f"w{i}x{j}" for j in range(3 + 7 * (i % 5))) for i in range(40)
]


def _doc_tokens(
    tokenizer_for: Any, name: str, texts: list[str], bos: int | None, eos: int | None
) -> list[list[int]]:
    tok = tokenizer_for(name).tokenizer
    return [
        ([bos] if bos is not None else [])
        + tok.encode(t, add_special_tokens=False).ids
        + ([eos] if eos is not None else [])
        for t in texts
    ]


@pytest.mark.parametrize("block_size", [16, 61])
def test_blocks_concatenate_back_to_the_documents(
    tmp_path: Path, tokenizer_for: Any, block_size: int
) -> None:
    write_jsonl(tmp_path / "docs.jsonl", [{"body": t} for t in DOCS])
    unit_rows = 15
    res = run_build(
        tmp_path,
        task="pretrain",
        tokenizer=LLAMA3,
        renderer="llama3",
        block_size=block_size,
        work_unit_rows=unit_rows,
        shards={"max_rows": 5},
        sources=[
            {"name": "d", "path": "docs.jsonl", "format": "text", "columns": {"text": "body"}}
        ],
    )
    llama = tokenizer_for("llama3")
    bos, eos = llama.special_id("bos_token"), llama.special_id("eos_token")
    docs = _doc_tokens(tokenizer_for, "llama3", DOCS, bos, eos)
    rows = read_rows(res)
    assert all(
        r["length"] == block_size == len(r["input_ids"]) == len(r["target_ids"]) for r in rows
    )
    assert all(w == 1.0 for r in rows for w in r["weights"])
    remainder = 0
    # Each unit packs its own stream: group blocks by the unit their first document belongs to.
    for u in range(0, len(DOCS), unit_rows):
        stream = [t for d in docs[u : u + unit_rows] for t in d]
        blocks = [r for r in rows if u <= r["source_row"] < u + unit_rows]
        packed = [t for b in blocks for t in b["input_ids"]] + (
            [blocks[-1]["target_ids"][-1]] if blocks else []
        )
        assert packed == stream[: len(packed)]
        for b in blocks:  # consecutive blocks share one token; targets are the inputs shifted
            assert b["target_ids"][:-1] == b["input_ids"][1:]
        # doc_offsets: exactly the document starts inside each block's inputs
        starts = np.cumsum([0] + [len(d) for d in docs[u : u + unit_rows]])[:-1]
        for k, b in enumerate(blocks):
            lo = k * block_size
            expect = [0] + [int(s - lo) for s in starts if lo < s < lo + block_size]
            assert b["doc_offsets"] == expect
        remainder += len(stream) - len(packed) if blocks else len(stream)
    counters = res.manifest["stats"]["task_counters"]
    assert counters == {
        "documents": 40,
        "document_tokens": sum(map(len, docs)),
        "remainder_tokens": remainder,
    }
    assert res.manifest["splits"]["train"]["tokens"] == len(rows) * block_size


def test_bos_eos_policy(tmp_path: Path, tokenizer_for: Any) -> None:
    write_jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in DOCS[:5]])
    src = [{"name": "d", "path": "docs.jsonl", "format": "text"}]
    res = run_build(
        tmp_path,
        task="pretrain",
        tokenizer=LLAMA3,
        renderer="llama3",
        block_size=8,
        add_bos=False,
        sources=src,
    )
    docs = _doc_tokens(
        tokenizer_for, "llama3", DOCS[:5], None, tokenizer_for("llama3").special_id("eos_token")
    )
    rows = read_rows(res)
    packed = [t for r in rows for t in r["input_ids"]] + [rows[-1]["target_ids"][-1]]
    assert packed == [t for d in docs for t in d][: len(packed)]
    # The toy tokenizer names no BOS: asking for one fails before any row is read.
    with pytest.raises(RecipeError, match="add_bos"):
        run_build(tmp_path, task="pretrain", tokenizer=TOY, block_size=8, add_bos=True, sources=src)


def test_special_token_text_stays_text(tmp_path: Path, tokenizer_for: Any) -> None:
    write_jsonl(tmp_path / "docs.jsonl", [{"text": "a <|begin_of_text|> b " * 4}])
    res = run_build(
        tmp_path,
        task="pretrain",
        tokenizer=LLAMA3,
        renderer="llama3",
        block_size=4,
        add_bos=False,
        add_eos=False,
        sources=[{"name": "d", "path": "docs.jsonl", "format": "text"}],
    )
    bos = tokenizer_for("llama3").special_id("bos_token")
    assert all(bos not in r["input_ids"] for r in read_rows(res))


def test_recipe_rules_for_pretrain() -> None:
    base = {"name": "t", "output": "o", "tokenizer": TOY, "renderer": "qwen3", "task": "pretrain"}
    with pytest.raises(RecipeError) as info:
        parse_recipe(
            {**base, "tie": "as_b", "sources": [{"path": "x.jsonl", "format": "messages"}]}
        )
    text = "\n".join(info.value.problems)
    for key in (
        "block_size: required",
        "tie: only for task dpo",
        "sources[0].format: task pretrain reads text",
    ):
        assert key in text, text


def test_reader_and_collate_see_documents(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from shardprep.torch import ShardDataset
    from shardprep.torch.collate import document_segments

    write_jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in DOCS[:12]])
    res = run_build(
        tmp_path,
        task="pretrain",
        tokenizer=LLAMA3,
        renderer="llama3",
        block_size=32,
        shards={"max_rows": 4},
        sources=[{"name": "d", "path": "docs.jsonl", "format": "text"}],
    )
    rows = read_rows(res)
    ds = ShardDataset(res.output, cache_dir=str(tmp_path / "cache"))
    assert len(ds) == len(rows)
    for i, r in enumerate(rows):
        item = ds[i]
        assert np.asarray(item["input_ids"]).tolist() == r["input_ids"]
        assert np.asarray(item["doc_offsets"]).tolist() == r["doc_offsets"]
        segs = document_segments(32, item["doc_offsets"])
        assert segs.sum() == 32 and len(segs) == len(r["doc_offsets"])
