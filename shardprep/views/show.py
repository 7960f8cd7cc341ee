"""Read a finished build back: summary, shard list, mask health and decoded rows (the library side of `prep show`).

Everything is returned as one JSON-ready report dict, which the terminal view, `--json` and the
HTML page all render, so the three never disagree.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shardprep.build.dedup import eval_warnings
from shardprep.encode.decode import Span, decode_spans
from shardprep.encode.special import special_tokens_warning
from shardprep.errors import ManifestError, ShardprepError
from shardprep.packing import PackingPlan, first_trained
from shardprep.store.columns import numpy_view
from shardprep.store.integrity import hash_problems, manifest_shards, shard_problems
from shardprep.store.manifest import no_manifest_error, read_manifest
from shardprep.store.storage import Output
from shardprep.tasks import shard_schema, task_for_schema
from shardprep.tokenizer import LoadedTokenizer, load_tokenizer
from shardprep.views.health import (
    MaskHealth,
    end_of_turn_ids,
    health_columns,
    health_warnings,
    scan_table,
)

__all__ = [
    "Span",
    "decode_spans",
    "inspect_build",
    "load_build_tokenizer",
    "open_build",
    "read_row",
    "summary",
    "weight_stats",
]

# Health checks read at most this many rows per split by default: enough to catch a broken mask,
# bounded for builds of billions of tokens on object stores.
DEFAULT_CHECK_ROWS = 50_000


def open_build(
    url: str, storage_options: dict[str, Any] | None = None
) -> tuple[Output, dict[str, Any]]:
    output = Output(url, storage_options=storage_options)
    manifest = read_manifest(output, filled=True)
    if manifest is None:
        raise no_manifest_error(output, url)
    return output, manifest


def _ratio(trained: int, tokens: int) -> float:
    return round(trained / tokens, 4) if tokens else 0.0


def length_histogram(lengths: Iterable[int]) -> dict[str, list[int]]:
    """Power-of-two buckets as the manifest records them: bucket b holds lengths in (2**(b-1), 2**b]."""
    counts: dict[int, int] = {}
    for n in lengths:
        b = max(0, (int(n) - 1).bit_length())
        counts[b] = counts.get(b, 0) + 1
    if not counts:
        return {"edges": [], "counts": []}
    top = max(counts)
    return {
        "edges": [2**b for b in range(top + 1)],
        "counts": [counts.get(b, 0) for b in range(top + 1)],
    }


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    splits = {}
    for name, info in manifest["splits"].items():
        splits[name] = {
            "rows": info["rows"],
            "tokens": info["tokens"],
            "trained_tokens": info["trained_tokens"],
            "trained_ratio": _ratio(info["trained_tokens"], info["tokens"]),
            "shards": len(info["shards"]),
            "bytes": sum(s["bytes"] for s in info["shards"]),
        }
    recipe = manifest.get("recipe", {})
    every = [shard for info in manifest["splits"].values() for shard in info["shards"]]
    return {
        "kind": "build",
        # What a reader downloads (and decodes into its cache): all splits' shards together.
        "stored": {"shards": len(every), "bytes": sum(s["bytes"] for s in every)},
        "name": recipe.get("name"),
        "fingerprint": manifest["fingerprint"],
        "created_at": manifest.get("created_at"),
        "task": manifest.get("task"),
        # Provenance a hand-written or older build may lack reads as unknown (None), not a crash.
        "tokenizer": manifest["tokenizer"].get("source"),
        "renderer": manifest["renderer"].get("name"),
        "renderer_options": manifest["renderer"].get("options", {}),
        "train_on": manifest["train_on"],
        "max_length": recipe.get("max_length"),
        "splits": splits,
        "sources": [
            {
                "name": s["name"],
                "format": s.get("format"),
                "rows_read": s["rows_read"],
                "examples": s["examples"],
                "tokens": s["tokens"],
                "trained_tokens": s["trained_tokens"],
                "trained_ratio": _ratio(s["trained_tokens"], s["tokens"]),
                "dropped": s["dropped"],
                # Per-source reasons and truncations are recorded by newer builds only.
                "dropped_by_reason": s.get("dropped_by_reason"),
                "truncated": s.get("truncated"),
                # Rows spelling control tokens in message text (newer builds only).
                "special_tokens": s.get("special_tokens"),
                # A few rows of each drop reason (source row, file, line); newer builds only.
                "drop_samples": s.get("drop_samples") or {},
            }
            for s in manifest["sources"]
        ],
        "dropped": manifest["stats"]["dropped"],
        "truncated": manifest["stats"]["truncated"],
        "rows_read": manifest["stats"]["rows_read"],
        "length_histogram": manifest["stats"]["length_histogram"],
        "skipped_sample": manifest.get("skipped_sample"),
        # Per eval file of `decontaminate`: its n-grams and the rows dropped for sharing one.
        "decontamination": manifest.get("decontamination"),
        "shards": [
            {"split": split, **shard}
            for split, info in manifest["splits"].items()
            for shard in info["shards"]
        ],
        "conformance": manifest.get("conformance"),
        "task_counters": manifest["stats"].get("task_counters", {}),
        "task_summary": manifest["stats"].get("task_summary"),
        "special_tokens": manifest["stats"].get("special_tokens"),
    }


def read_row(output: Output, manifest: dict[str, Any], split: str, index: int) -> dict[str, Any]:
    """Row `index` of a split, reading only the row group that holds it."""
    if split not in manifest["splits"]:
        raise ShardprepError(
            f"split {split!r} not in this build (has: {', '.join(manifest['splits'])})"
        )
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
    raise ManifestError(
        f"row not found in shards of split {split!r}: the manifest and shards disagree (run `prep verify`)"
    )


def sample_indices(rows: int, k: int, seed: int) -> list[int]:
    """K distinct row indices, sorted, the same for the same seed (so a shared command shows the same rows)."""
    if k < 1:
        raise ShardprepError("--sample must be at least 1")
    return sorted(random.Random(seed).sample(range(rows), min(k, rows)))


def load_build_tokenizer(
    manifest: dict[str, Any], override: str | None = None
) -> LoadedTokenizer | None:
    """The build's tokenizer, or None when it is not on this machine (show then prints ids)."""
    if override:
        return load_tokenizer(override)  # asked for by name: a failure is the user's to see
    for spec in (manifest["tokenizer"].get("path"), manifest["tokenizer"].get("source")):
        if not spec:
            continue
        try:
            return load_tokenizer(spec)
        except ShardprepError:
            continue
    return None


def weight_stats(row: dict[str, Any]) -> dict[str, Any]:
    w = np.asarray(row["weights"], dtype=np.float32)
    return {"length": len(w), "trained": int(np.count_nonzero(w)), "weight_sum": float(w.sum())}


def scan_split(
    output: Output,
    shards: list[dict[str, Any]],
    health: MaskHealth,
    *,
    max_rows: int | None,
    at_length: int | None,
    sequences: tuple[str, ...] = ("",),
) -> dict[str, int]:
    """Feed up to `max_rows` rows of one split to `health`, one row group at a time (columns only)."""
    checked = at_limit = 0
    if not sequences:
        return {"checked": 0, "at_max_length": 0}
    for shard in shards:
        with output.fs.open(output.path(shard["path"]), "rb") as f:
            pf = pq.ParquetFile(f)
            for rg in range(pf.num_row_groups):
                if max_rows is not None and checked >= max_rows:
                    return {"checked": checked, "at_max_length": at_limit}
                table = pf.read_row_group(rg, columns=health_columns(sequences))
                if max_rows is not None:
                    table = table.slice(0, max_rows - checked)
                at_limit += scan_table(table, health, sequences, at_length)
                checked += table.num_rows
    return {"checked": checked, "at_max_length": at_limit}


def split_lengths(
    output: Output, shards: list[dict[str, Any]], column: str = "length"
) -> np.ndarray:
    """A split's length column, shard by shard (only that column is read)."""
    parts = []
    for shard in shards:
        with output.fs.open(output.path(shard["path"]), "rb") as f:
            col = pq.read_table(f, columns=[column]).column(column).combine_chunks()
        parts.append(numpy_view(col).astype(np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def packing_plans(
    output: Output, manifest: dict[str, Any], split: str, seq_lens: list[int]
) -> list[PackingPlan]:
    """The plan `shardprep.torch.PackedLoader` trains for each seq_len (same lengths, same rules)."""
    schema = shard_schema(manifest.get("schema", "sft/1"))
    if schema.sequences != ("",):
        raise ShardprepError(
            f"--pack needs one token sequence per row (sft/1, pretrain/1); this build is {schema.id}"
        )
    bad = [s for s in seq_lens if s < 2]
    if bad:
        raise ShardprepError(f"--pack {bad[0]}: a pack holds at least 2 positions")
    if split not in manifest["splits"]:
        raise ShardprepError(
            f"split {split!r} not in this build (has: {', '.join(manifest['splits'])})"
        )
    shards = manifest["splits"][split]["shards"]
    lengths = split_lengths(output, shards, schema.length_columns[0])
    check = _shard_trained_prefix(output, shards)
    return [PackingPlan.build(lengths, s, check) for s in seq_lens]


def _shard_trained_prefix(
    output: Output, shards: list[dict[str, Any]]
) -> Callable[[np.ndarray, int], np.ndarray]:
    """PackingPlan.build's `trained_prefix` over a split's shards: the `weights` column of each
    shard that holds one of the rows asked is read once (only truncated rows are asked about),
    whatever the number of seq_lens planned; what is kept is each row's first trained position."""
    starts = np.cumsum([0, *(int(s["rows"]) for s in shards)])
    firsts: dict[int, np.ndarray] = {}

    def check(rows: np.ndarray, n: int) -> np.ndarray:
        found = np.zeros(len(rows), dtype=bool)
        which = np.searchsorted(starts, rows, side="right") - 1
        for k in np.unique(which).tolist():
            if k not in firsts:
                with output.fs.open(output.path(shards[k]["path"]), "rb") as f:
                    col = pq.read_table(f, columns=["weights"]).column("weights").combine_chunks()
                firsts[k] = first_trained(numpy_view(col.values), numpy_view(col.offsets))
            mine = which == k
            found[mine] = firsts[k][rows[mine] - starts[k]] < n
        return found

    return check


@contextlib.contextmanager
def _shards_read(output: Output, manifest: dict[str, Any], url: str) -> Iterator[None]:
    """A shard that cannot be decoded is named, with its hash checked, instead of a crash."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        bad = hash_problems(output, manifest_shards(manifest))
        what = "; ".join(bad[:3]) if bad else f"a shard cannot be read: {exc}"
        raise ManifestError(f"{url}: {what} (run `prep verify`)") from exc


def inspect_build(
    url: str,
    *,
    split: str = "train",
    rows: list[int] | None = None,
    sample: int | None = None,
    seed: int = 0,
    tokenizer: str | None = None,
    check_rows: int | None = DEFAULT_CHECK_ROWS,
    storage_options: dict[str, Any] | None = None,
    pack: list[int] | None = None,
) -> dict[str, Any]:
    """The whole `prep show` report. `rows` (indices) or `sample` (K rows by `seed`) pick rows of `split`.

    `pack`: seq_lens to plan `split`'s packing for (`packing`: one summary, a list for several)."""
    output, manifest = open_build(url, storage_options)
    missing = shard_problems(output, manifest)  # one stat per shard: a damaged build says so first
    if missing:
        raise ManifestError(
            f"{url}: {len(missing)} shard(s) damaged: {'; '.join(missing[:3])} (run `prep verify`)"
        )
    report = summary(manifest)
    report["path"] = url
    tok = load_build_tokenizer(manifest, tokenizer)
    report["decoded"] = tok is not None

    eot = end_of_turn_ids(
        tok, report["renderer"], report["renderer_options"], manifest["tokenizer"].get("eos_id")
    )
    health = MaskHealth(eot)
    max_len = report["max_length"]
    # A truncated example has exactly max_length-1 inputs; so does one that was exactly max_length long.
    at_length = (
        max_len - 1
        if max_len and manifest.get("recipe", {}).get("overlong", "truncate") == "truncate"
        else None
    )
    limit = check_rows if check_rows and check_rows > 0 else None
    schema_id = manifest.get("schema", "sft/1")
    task = task_for_schema(schema_id)
    sequences = shard_schema(schema_id).sequences
    for name, info in manifest["splits"].items():
        with _shards_read(output, manifest, url):
            counts = scan_split(
                output,
                info["shards"],
                health,
                max_rows=limit,
                at_length=at_length,
                sequences=sequences,
            )
        report["splits"][name]["rows_checked"] = counts["checked"]
        report["splits"][name]["at_max_length"] = (
            counts["at_max_length"] if at_length is not None else None
        )
    total = sum(info["rows"] for info in manifest["splits"].values())
    # Health counts sequences: two per pair.
    report["health"] = health.to_json(rows_total=total * len(sequences))
    report["warnings"] = health_warnings(
        report["health"],
        report["sources"],
        report["dropped"],
        report["train_on"],
        report["conformance"],
        judges_masks=task.judges_masks,
        renderer=report["renderer"],
        recipe=manifest.get("recipe", {}),
    ) + task.counter_warnings(report["task_counters"], manifest.get("recipe", {}))
    special = special_tokens_warning(report["special_tokens"])
    if special is not None:
        report["warnings"].append(special)
    report["warnings"] += eval_warnings(manifest)

    if split not in manifest["splits"]:
        raise ShardprepError(
            f"split {split!r} not in this build (has: {', '.join(manifest['splits'])})"
        )
    if pack:
        if seed < 0:  # --sample takes any seed; the packing order's is numpy's, >= 0
            raise ShardprepError(f"--seed {seed}: the packing order (--pack) needs a seed >= 0")
        with _shards_read(output, manifest, url):
            plans = [
                {"split": split, **p.summary(seed)}
                for p in packing_plans(output, manifest, split, pack)
            ]
        report["packing"] = plans[0] if len(plans) == 1 else plans
    n_rows = manifest["splits"][split]["rows"]
    if sample is not None:
        indices = sample_indices(n_rows, sample, seed)
    else:
        indices = rows if rows is not None else ([0] if n_rows else [])
    with _shards_read(output, manifest, url):
        report["rows"] = [
            task.display_row(read_row(output, manifest, split, i), tok, split=split, index=i)
            for i in indices
        ]
    # Every shard present with its size (cheap); the shards rows were shown from, by sha256.
    starts = list(
        itertools.accumulate((s["rows"] for s in manifest["splits"][split]["shards"]), initial=0)
    )
    shown = {
        manifest["splits"][split]["shards"][bisect.bisect_right(starts, i) - 1]["path"]
        for i in indices
    }
    report["warnings"] += [
        {"code": "shard_damaged", "message": f"{p} (run `prep verify`)"}
        for p in hash_problems(output, [s for s in manifest_shards(manifest) if s["path"] in shown])
    ]
    return report
