"""Decoded rows of the non-SFT schemas for `prep show`: a pair's two sides, a block's documents, a prompt.

Each payload keeps the keys of an SFT row payload (the chosen side, the whole block, the prompt),
so the JSON, HTML and terminal views that know only SFT rows still work; the extra key (`pair`,
`documents`, `prompt`) is what the terminal view shows side by side or split at boundaries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shardprep.encode.decode import decode_pieces, example_tokens, row_payload, spans_of
from shardprep.tokenizer import LoadedTokenizer

_PAIR_SIDES = ("chosen", "rejected")


def _nested(payload: dict[str, Any]) -> dict[str, Any]:
    # Per-token pieces feed only the HTML page of the top-level row; nested copies would not be JSON.
    return {k: v for k, v in payload.items() if k != "pieces"}


def pair_payload(row: dict[str, Any], tok: LoadedTokenizer | None, *, split: str, index: int) -> dict[str, Any]:
    sides = {}
    for side in _PAIR_SIDES:
        sub = {
            "input_ids": row[f"{side}_input_ids"],
            "target_ids": row[f"{side}_target_ids"],
            "weights": row[f"{side}_weights"],
            "source": row.get("source"),
            "source_row": row.get("source_row"),
            "shard": row.get("shard"),
        }
        sides[side] = row_payload(sub, tok, split=split, index=index)
    out = dict(sides["chosen"])
    out["pair"] = {side: _nested(p) for side, p in sides.items()}
    return out


def block_payload(row: dict[str, Any], tok: LoadedTokenizer | None, *, split: str, index: int) -> dict[str, Any]:
    out = row_payload(row, tok, split=split, index=index)
    offsets = [int(o) for o in row["doc_offsets"]]
    out["doc_offsets"] = offsets
    docs = []
    # Token i of the unshifted sequence is input i (and the last target); documents cut at offsets.
    tokens, trained = example_tokens(row)
    bounds = [*offsets, len(tokens)] if offsets and offsets[0] == 0 else [0, *offsets, len(tokens)]
    for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        doc: dict[str, Any] = {"document": k, "offset": lo, "tokens": hi - lo, "spans": None}
        if tok is not None:
            doc["spans"] = [s.to_json() for s in spans_of(decode_pieces(tok, tokens[lo:hi], trained[lo:hi]))]
        docs.append(doc)
    out["documents"] = docs
    return out


def prompt_payload(row: dict[str, Any], tok: LoadedTokenizer | None, *, split: str, index: int) -> dict[str, Any]:
    ids = np.asarray(row["prompt_ids"], dtype=np.int32)
    sub = {
        "input_ids": ids[:1].tolist(),
        "target_ids": ids[1:].tolist(),
        "weights": [0.0] * max(0, len(ids) - 1),
        "source": row.get("source"),
        "source_row": row.get("source_row"),
        "shard": row.get("shard"),
    }
    out = row_payload(sub, tok, split=split, index=index)
    out["prompt"] = {k: v for k, v in row.items() if k not in ("prompt_ids", "length", "source", "source_row", "shard")}
    return out


def task_row_payload(
    schema: str, row: dict[str, Any], tok: LoadedTokenizer | None, *, split: str, index: int
) -> dict[str, Any]:
    if schema == "dpo/1":
        return pair_payload(row, tok, split=split, index=index)
    if schema == "pretrain/1":
        return block_payload(row, tok, split=split, index=index)
    if schema == "rl_prompts/1":
        return prompt_payload(row, tok, split=split, index=index)
    return row_payload(row, tok, split=split, index=index)
