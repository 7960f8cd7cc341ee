"""Read a finished build back: summary numbers and decoded rows (the library side of `prep show`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from shardprep.errors import ManifestError, ShardprepError
from shardprep.pipeline.manifest import MANIFEST_NAME, read_manifest
from shardprep.pipeline.storage import Output
from shardprep.pipeline.tokenizer import LoadedTokenizer, load_tokenizer


def open_build(url: str) -> tuple[Output, dict[str, Any]]:
    output = Output(url)
    manifest = read_manifest(output)
    if manifest is None:
        raise ManifestError(
            f"{output.path(MANIFEST_NAME)} not found: {url} is not a finished build (run `prep build` first)"
        )
    return output, manifest


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    splits = {}
    for name, info in manifest["splits"].items():
        tokens = info["tokens"]
        splits[name] = {
            "rows": info["rows"],
            "tokens": tokens,
            "trained_tokens": info["trained_tokens"],
            "trained_ratio": round(info["trained_tokens"] / tokens, 4) if tokens else 0.0,
            "shards": len(info["shards"]),
            "bytes": sum(s["bytes"] for s in info["shards"]),
        }
    return {
        "name": manifest["recipe"]["name"],
        "fingerprint": manifest["fingerprint"],
        "created_at": manifest["created_at"],
        "task": manifest["task"],
        "tokenizer": manifest["tokenizer"]["source"],
        "renderer": manifest["renderer"]["name"],
        "train_on": manifest["train_on"],
        "splits": splits,
        "sources": [
            {k: s[k] for k in ("name", "rows_read", "examples", "tokens", "trained_tokens", "dropped")}
            for s in manifest["sources"]
        ],
        "dropped": manifest["stats"]["dropped"],
        "truncated": manifest["stats"]["truncated"],
        "rows_read": manifest["stats"]["rows_read"],
        "length_histogram": manifest["stats"]["length_histogram"],
        "skipped_sample": manifest.get("skipped_sample"),
    }


def read_row(output: Output, manifest: dict[str, Any], split: str, index: int) -> dict[str, Any]:
    """Row `index` of a split, reading only the row group that holds it."""
    if split not in manifest["splits"]:
        raise ShardprepError(f"split {split!r} not in this build (has: {', '.join(manifest['splits'])})")
    info = manifest["splits"][split]
    if not 0 <= index < info["rows"]:
        raise ShardprepError(f"row {index} out of range: split {split!r} has {info['rows']} rows")
    for shard in info["shards"]:
        if index >= shard["rows"]:
            index -= shard["rows"]
            continue
        with output.fs.open(output.path(shard["path"]), "rb") as f:
            pf = pq.ParquetFile(f)
            for rg in range(pf.num_row_groups):
                n = pf.metadata.row_group(rg).num_rows
                if index < n:
                    row = pf.read_row_group(rg).slice(index, 1).to_pylist()[0]
                    row["shard"] = shard["path"]
                    return row
                index -= n
    raise ManifestError(f"row not found in shards of split {split!r}: the manifest and shards disagree (run `prep verify`)")


@dataclass(frozen=True)
class Span:
    text: str
    trained: bool
    special: bool
    n_tokens: int


def load_build_tokenizer(manifest: dict[str, Any], override: str | None = None) -> LoadedTokenizer | None:
    spec = override or manifest["tokenizer"].get("path") or manifest["tokenizer"]["source"]
    try:
        return load_tokenizer(spec)
    except ShardprepError:
        return None


def decode_spans(tok: LoadedTokenizer, row: dict[str, Any]) -> list[Span]:
    """Split the full token sequence into spans of equal trained-ness, special tokens on their own.

    Spans are decoded whole so multi-byte characters that BPE splits over tokens come out intact.
    """
    tokens = [*row["input_ids"][:1], *row["target_ids"]]
    trained = [False, *(w > 0 for w in row["weights"])]
    special_ids = {
        tok.tokenizer.token_to_id(t.content)
        for t in tok.tokenizer.get_added_tokens_decoder().values()
        if t.special
    }
    spans: list[Span] = []
    start = 0
    for i in range(1, len(tokens) + 1):
        boundary = (
            i == len(tokens)
            or trained[i] != trained[start]
            or tokens[i] in special_ids
            or tokens[i - 1] in special_ids
        )
        if boundary:
            ids = tokens[start:i]
            text = tok.tokenizer.decode(ids, skip_special_tokens=False)
            spans.append(Span(text, trained[start], ids[0] in special_ids, len(ids)))
            start = i
    return spans


def weight_stats(row: dict[str, Any]) -> dict[str, Any]:
    w = np.asarray(row["weights"], dtype=np.float32)
    return {"length": len(w), "trained": int(np.count_nonzero(w)), "weight_sum": float(w.sum())}
