"""Token-exact parity with tinker-cookbook 0.6.1 (tests/fixtures/golden, see its README)."""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardprep.encode.tokenize import (
    BatchEncoder,
    RenderedExample,
    render_prompt_batch,
    render_supervised_batch,
)
from shardprep.errors import RowError
from shardprep.renderers import Renderer, TrainOnWhat, get_renderer
from shardprep.tokenizer import LoadedTokenizer, load_tokenizer

FIXTURES = Path(__file__).parent.parent / "fixtures"
GOLDEN = FIXTURES / "golden"
FILES = sorted(p.name.removesuffix(".jsonl.gz") for p in GOLDEN.glob("*__*.jsonl.gz"))
MODES = [m.value for m in TrainOnWhat]


def _read_jsonl_gz(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@functools.cache
def conversations(customized: bool) -> dict[str, list[dict[str, Any]]]:
    name = "conversations_customized" if customized else "conversations"
    return {row["id"]: row["messages"] for row in _read_jsonl_gz(GOLDEN / f"{name}.jsonl.gz")}


@functools.cache
def golden(stem: str) -> list[dict[str, Any]]:
    return _read_jsonl_gz(GOLDEN / f"{stem}.jsonl.gz")


@functools.cache
def _tokenizer(name: str) -> LoadedTokenizer:
    return load_tokenizer(str(FIXTURES / "tokenizers" / name))


@functools.cache
def renderer_and_encoder(stem: str) -> tuple[Renderer, BatchEncoder]:
    name, tok = stem.split("__")
    tokenizer = _tokenizer(tok)
    renderer = get_renderer(name, tokenizer)
    renderer.check_tokenizer()
    encoder = BatchEncoder(tokenizer)
    # Every mode renders the same strings: remember all of them, so each file is encoded once
    # (the toy tokenizer's tiny vocabulary makes encoding the slow part of this suite).
    encoder.memo_max_chars = encoder.memo_max_entries = 1 << 30
    return renderer, encoder


def expand(rle: list[list[float]]) -> np.ndarray:
    values, counts = zip(*rle, strict=True) if rle else ((), ())
    return np.repeat(np.asarray(values, dtype=np.float32), np.asarray(counts, dtype=np.int64))


@functools.cache
def golden_tokens(stem: str, index: int, mode: str) -> np.ndarray:
    rec = golden(stem)[index]
    return np.asarray(rec.get("tokens_by_mode", {}).get(mode, rec["tokens"]), dtype=np.int64)


def compare(stem: str, index: int, mode: str, got: RenderedExample | RowError) -> str | None:
    """None when `got` matches golden record `index` for `mode`, else what differs."""
    rec = golden(stem)[index]
    if mode in rec["errors"]:
        return None if isinstance(got, RowError) else f"expected error {rec['errors'][mode]!r}"
    if isinstance(got, RowError):
        return f"unexpected error {got}"
    if not np.array_equal(got.tokens, golden_tokens(stem, index, mode)):
        return "tokens differ"
    # Weights are exactly 0.0/1.0, so float32 comparison is exact.
    if not np.array_equal(got.weights, expand(rec["weights"][mode])):
        return "weights differ"
    if got.tokens.dtype != np.int32 or got.weights.dtype != np.float32:
        return "wrong dtype"
    return None


@functools.cache
def render_file(stem: str, mode: str) -> list[RenderedExample | RowError]:
    renderer, encoder = renderer_and_encoder(stem)
    convs = conversations(mode == "customized")
    batch = [convs[rec["id"]] for rec in golden(stem)]
    return render_supervised_batch(renderer, encoder, batch, TrainOnWhat(mode))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stem", FILES)
def test_supervised_matches_golden(stem: str, mode: str) -> None:
    results = render_file(stem, mode)
    records = golden(stem)
    bad = [
        (records[i]["id"], why)
        for i, got in enumerate(results)
        if (why := compare(stem, i, mode, got))
    ]
    assert len(results) == len(records)
    assert not bad, f"{len(bad)} mismatching conversations, first: {bad[:5]}"


def _prompt_cut(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last]


@pytest.mark.parametrize("stem", FILES)
def test_prompt_matches_golden(stem: str) -> None:
    renderer, encoder = renderer_and_encoder(stem)
    convs = conversations(False)
    records = golden(stem)
    results = render_prompt_batch(renderer, encoder, [_prompt_cut(convs[r["id"]]) for r in records])
    bad = []
    for rec, got in zip(records, results, strict=True):
        if "prompt" in rec["errors"]:
            if not isinstance(got, RowError):
                bad.append((rec["id"], "expected error"))
        elif isinstance(got, RowError):
            bad.append((rec["id"], f"unexpected error {got}"))
        elif got.tolist() != rec["prompt_tokens"]:
            bad.append((rec["id"], "prompt tokens differ"))
    assert not bad, f"{len(bad)} mismatching prompts, first: {bad[:5]}"


@pytest.mark.parametrize(
    "stem",
    ["qwen3_disable_thinking__qwen3", "deepseekv3_thinking__deepseek_v3", "role_colon__llama3"],
)
def test_one_at_a_time_equals_batch(stem: str) -> None:
    renderer, _ = renderer_and_encoder(stem)
    encoder = BatchEncoder(renderer.tokenizer)  # fresh: no memo carried over from the batch
    for mode in MODES:
        batched = render_file(stem, mode)
        convs = conversations(mode == "customized")
        for rec, want in zip(golden(stem), batched, strict=True):
            [got] = render_supervised_batch(
                renderer, encoder, [convs[rec["id"]]], TrainOnWhat(mode)
            )
            if isinstance(want, RowError):
                assert isinstance(got, RowError), (rec["id"], mode)
            else:
                assert isinstance(got, RenderedExample), (rec["id"], mode)
                assert np.array_equal(got.tokens, want.tokens), (rec["id"], mode)
                assert np.array_equal(got.weights, want.weights), (rec["id"], mode)
