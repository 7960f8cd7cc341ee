"""Reader throughput: shardprep.torch.ShardDataset next to datasets' Parquet loader.

Data: synthetic shards in the SFT schema (sft/1), written with pyarrow (random token ids, rows of
3072..4096 tokens, zstd, 1024-row row groups, as `prep build` writes them) plus a manifest;
--tokens sets the size (default 4 M). Both readers read the same files.

Measured, each for 0 / 1 / 2 DataLoader workers:
  samples/s   random-access rows/s through a DataLoader (random sampler, batch of 8, a collate
              that only counts rows), i.e. the cost of __getitem__ and worker transport
  tokens/s    real tokens/s of padded batches: 8 rows each, padded to 4096 (PadCollate for
              shardprep; the same padding written with torch ops for datasets)
and, without a DataLoader, single-process random __getitem__ rows/s.
  shardprep   ShardDataset(...).prepare() (the one-time decode into the mmap cache is timed apart)
  datasets    load_dataset("parquet", data_files=...) + set_format("torch")
Prints a table and writes bench/results/reader.json.

  python bench/bench_reader.py [--tokens 4000000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, RandomSampler

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 4096
BATCH = 8


def write_shards(folder: Path, tokens: int, rows_per_shard: int = 256) -> list[str]:
    from shardprep.tasks.sft import SCHEMA as SFT_SHARD_SCHEMA

    rng = np.random.default_rng(0)
    lengths: list[int] = []
    while sum(lengths) < tokens:
        lengths.append(int(rng.integers(3072, WIDTH + 1)))
    data = folder / "data-bench"
    data.mkdir(parents=True)
    shards, files = [], []
    for s, start in enumerate(range(0, len(lengths), rows_per_shard)):
        lens = np.array(lengths[start : start + rows_per_shard], dtype=np.int32)
        offsets = np.zeros(len(lens) + 1, dtype=np.int32)
        np.cumsum(lens, out=offsets[1:])
        ids = rng.integers(0, 150_000, offsets[-1] + len(lens), dtype=np.int32)
        inputs = np.delete(ids, offsets[1:] + np.arange(len(lens)))  # drop each row's last token
        targets = np.delete(ids, offsets[:-1] + np.arange(len(lens)))  # drop each row's first token
        weights = (rng.random(offsets[-1]) < 0.7).astype(np.float32)
        table = pa.Table.from_arrays(
            [
                pa.ListArray.from_arrays(pa.array(offsets), pa.array(inputs)),
                pa.ListArray.from_arrays(pa.array(offsets), pa.array(targets)),
                pa.ListArray.from_arrays(pa.array(offsets), pa.array(weights)),
                pa.array(lens),
                pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(len(lens), np.int32)), pa.array(["synthetic"])
                ),
                pa.array(np.arange(start, start + len(lens), dtype=np.int64)),
            ],
            schema=SFT_SHARD_SCHEMA.arrow(),
        )
        rel = f"data-bench/train-{s:05d}.parquet"
        pq.write_table(table, folder / rel, compression="zstd", row_group_size=1024)
        digest = hashlib.sha256((folder / rel).read_bytes()).hexdigest()
        shards.append(
            {
                "path": rel,
                "rows": len(lens),
                "tokens": int(lens.sum()),
                "bytes": (folder / rel).stat().st_size,
                "sha256": digest,
            }
        )
        files.append(str(folder / rel))
    manifest = {
        "format": "shardprep",
        "format_version": 1,
        "schema": "sft/1",
        "fingerprint": "bench",
        "tokenizer": {"pad_id": 0},
        "splits": {
            "train": {
                "rows": len(lengths),
                "tokens": sum(lengths),
                "trained_tokens": 0,
                "shards": shards,
            }
        },
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return files


class CountRows:
    """Collate that does nothing but count: isolates row access + transport from collation."""

    def __call__(self, rows: list[Any]) -> int:
        return len(rows)


class TorchPad:
    """The same padded batch as PadCollate, from rows that datasets already made into tensors."""

    def __call__(self, rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        n = len(rows)
        out = {
            "input_ids": torch.zeros((n, WIDTH), dtype=torch.long),
            "target_ids": torch.full((n, WIDTH), -100, dtype=torch.long),
            "weights": torch.zeros((n, WIDTH), dtype=torch.float32),
        }
        lengths = torch.tensor([len(r["input_ids"]) for r in rows])
        for b, r in enumerate(rows):
            k = len(r["input_ids"])
            out["input_ids"][b, :k] = r["input_ids"]
            out["target_ids"][b, :k] = r["target_ids"]
            out["weights"][b, :k] = r["weights"]
        out["attention_mask"] = (torch.arange(WIDTH)[None, :] < lengths[:, None]).long()
        out["lengths"] = lengths
        return out


def timed(make_iter: Callable[[], Any], count: Callable[[Any], int], seconds: float) -> float:
    """Items per second over about `seconds`, after the first item (worker start-up excluded)."""
    it = make_iter()
    next(it)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        try:
            item = next(it)
        except StopIteration:
            it = make_iter()
            continue
        done += count(item)
    return done / (time.perf_counter() - start)


def loader_rates(ds: Any, pad: Any, workers: int, seconds: float) -> dict[str, float]:
    def rows_iter() -> Any:
        return iter(
            DataLoader(
                ds,
                sampler=RandomSampler(ds),
                batch_size=BATCH,
                collate_fn=CountRows(),
                num_workers=workers,
            )
        )

    def pad_iter() -> Any:
        return iter(
            DataLoader(
                ds, sampler=RandomSampler(ds), batch_size=BATCH, collate_fn=pad, num_workers=workers
            )
        )

    return {
        "samples_per_s": timed(rows_iter, int, seconds),
        "tokens_per_s": timed(pad_iter, lambda b: int(b["lengths"].sum()), seconds),
    }


def getitem_rate(ds: Any, seconds: float) -> float:
    n = len(ds)
    rnd = random.Random(0)

    def it() -> Any:
        while True:
            yield ds[rnd.randrange(n)]

    return timed(it, lambda _: 1, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description="shardprep.torch reader benchmark")
    ap.add_argument("--tokens", type=int, default=4_000_000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "reader.json"))
    args = ap.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    torch.set_num_threads(1)  # collation is memory copies; keep the comparison per core

    from datasets import load_dataset

    from shardprep.torch import PadCollate, ShardDataset

    with tempfile.TemporaryDirectory(prefix="bench-reader-") as tmp:
        root = Path(tmp)
        files = write_shards(root / "shards", args.tokens)
        t0 = time.perf_counter()
        ours = ShardDataset(str(root / "shards"), cache_dir=str(root / "cache")).prepare()
        cache_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        hf = load_dataset("parquet", data_files=files, split="train", cache_dir=str(root / "hf"))
        hf.set_format("torch", columns=["input_ids", "target_ids", "weights"])
        hf_load_s = time.perf_counter() - t0
        tokens = int(ours.lengths.sum())
        print(
            f"{len(ours)} rows, {tokens:,} tokens in {len(files)} shards; "
            f"shardprep cache build {cache_s:.2f}s, datasets load {hf_load_s:.2f}s",
            flush=True,
        )

        readers = {
            "shardprep": (ours, PadCollate(0, fixed_length=WIDTH)),
            "datasets": (hf, TorchPad()),
        }
        results: dict[str, Any] = {}
        for name, (ds, pad) in readers.items():
            results[name] = {"getitem_per_s": getitem_rate(ds, args.seconds)}
            for w in args.workers:
                results[name][f"workers_{w}"] = loader_rates(ds, pad, w, args.seconds)
                print(f"  {name} workers={w}: {results[name][f'workers_{w}']}", flush=True)

    print(
        f"\n{'':12} {'getitem/s':>11}"
        + "".join(
            f" {'w' + str(w) + ' samples/s':>15} {'w' + str(w) + ' Mtok/s':>11}"
            for w in args.workers
        )
    )
    for name, r in results.items():
        line = f"{name:12} {r['getitem_per_s']:11,.0f}"
        for w in args.workers:
            x = r[f"workers_{w}"]
            line += f" {x['samples_per_s']:15,.0f} {x['tokens_per_s'] / 1e6:11.1f}"
        print(line)
    ratios = {
        f"workers_{w}": {
            k: results["shardprep"][f"workers_{w}"][k] / results["datasets"][f"workers_{w}"][k]
            for k in ("samples_per_s", "tokens_per_s")
        }
        for w in args.workers
    }
    ratios["getitem_per_s"] = (
        results["shardprep"]["getitem_per_s"] / results["datasets"]["getitem_per_s"]
    )  # type: ignore[assignment]
    print(
        "shardprep / datasets: "
        + json.dumps(
            {
                k: v if isinstance(v, float) else {a: round(b, 1) for a, b in v.items()}
                for k, v in ratios.items()
            },
            default=lambda v: round(v, 1),
        )
    )

    report = {
        "data": {
            "rows": len(ours),
            "tokens": tokens,
            "shards": len(files),
            "row_tokens": [3072, WIDTH],
            "kind": "synthetic sft/1 via pyarrow",
        },
        "batch": {"rows": BATCH, "padded_to": WIDTH},
        "shardprep_cache_build_s": cache_s,
        "datasets_load_s": hf_load_s,
        "results": results,
        "ratio_shardprep_over_datasets": ratios,
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
