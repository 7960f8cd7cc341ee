"""make_golden.py reproduces a committed golden file from the repo alone (issue 13 point 6).

All of it runs under `make test-reference` (the line-assembly checks need no oracle, but this
folder's tests run only there).
"""

from __future__ import annotations

import gzip
from typing import Any

import pytest

from reference import make_golden
from reference.oracle import Oracle

pytestmark = pytest.mark.reference

MODES = ["a", "b", "c"]


def test_regenerates_committed_golden_file_byte_for_byte(oracle: Oracle) -> None:
    # gpt-oss: the date option, a real tokenizer, and `customized` refused on every conversation.
    stem = "gpt_oss_medium_reasoning__gpt_oss"
    committed = (make_golden.GOLDEN / f"{stem}.jsonl.gz").read_bytes()
    lines = make_golden.make(oracle, *stem.split("__"))
    want = make_golden.read_jsonl_gz(make_golden.GOLDEN / f"{stem}.jsonl.gz")
    assert len(lines) == len(want)
    bad = [(w["id"], k) for g, w in zip(lines, want, strict=True) for k in w if g.get(k) != w[k]]
    assert not bad, f"{len(bad)} differing (conversation, field), first: {bad[:5]}"
    assert make_golden.encode(lines) == committed


def _built(tokens: list[int], weights: list[float], chunks: list[list[int]]) -> dict[str, Any]:
    return {"tokens": tokens, "weights": weights, "chunks": chunks}


def test_golden_line_fields() -> None:
    result = {
        "modes": {
            "a": {"error": "RendererError: no"},
            "b": _built([1, 2, 3], [0.0, 1.0, 1.0], [[0, 1], [1, 2]]),
            "c": _built([1, 2, 3], [1.0, 1.0, 0.0], [[0, 1], [1, 2]]),
        },
        "prompt": {"tokens": [1, 2]},
    }
    line = make_golden.golden_line("x#0", result, MODES)
    assert line == {
        "id": "x#0",
        "tokens": [1, 2, 3],
        "weights": {"b": [[0.0, 1], [1.0, 2]], "c": [[1.0, 2], [0.0, 1]]},
        "errors": {"a": "RendererError: no"},
        "chunks": [[0, 1], [1, 2]],
        "prompt_tokens": [1, 2],
    }
    assert list(line) == ["id", "tokens", "weights", "errors", "chunks", "prompt_tokens"]


def test_golden_line_modes_that_differ_and_all_refused() -> None:
    result = {
        "modes": {
            "a": _built([1, 2], [0.0, 1.0], [[0, 2]]),
            "b": _built([1, 5, 2], [0.0, 0.0, 1.0], [[0, 1], [1, 2]]),
            "c": {"error": "E: c"},
        },
        "prompt": {"error": "E: prompt"},
    }
    line = make_golden.golden_line("x#1", result, MODES)
    assert line["tokens"] == [1, 2] and line["chunks"] == [[0, 2]]
    assert line["tokens_by_mode"] == {"b": [1, 5, 2]}
    assert line["chunks_by_mode"] == {"b": [[0, 1], [1, 2]]}
    assert line["errors"] == {"c": "E: c", "prompt": "E: prompt"}
    assert line["prompt_tokens"] is None

    refused = {"modes": {m: {"error": f"E: {m}"} for m in MODES}, "prompt": {"tokens": [1]}}
    line = make_golden.golden_line("x#2", refused, MODES)
    assert line["tokens"] is None and line["chunks"] is None and line["weights"] == {}
    assert "tokens_by_mode" not in line and "chunks_by_mode" not in line


def test_encode_is_deterministic_gzip() -> None:
    lines = [{"id": "é", "tokens": [1], "weights": {"a": [[1.0, 1]]}}]
    data = make_golden.encode(lines)
    assert data == make_golden.encode(lines)
    assert data[4:8] == b"\0\0\0\0" and data[3] == 0  # mtime 0, no file name
    assert gzip.decompress(data) == '{"id":"é","tokens":[1],"weights":{"a":[[1.0,1]]}}\n'.encode()
