"""Reading a build from object storage: ShardDataset from a loopback S3 server (moto), next to
MosaicML streaming reading the same tokens converted to MDS from the same server.

Data: bench_reader's synthetic sft/1 shards (rows of 3072..4096 tokens, zstd Parquet), --tokens
(default 4 M) in shards of --rows-per-shard rows (default 32, so that a cache a tenth of the data
holds a few shards); the same rows written with streaming's MDSWriter (zstd, shards of a seventh of
the tenth: streaming refuses a cache limit under four times its largest shard). Both are uploaded
to one moto S3 server on 127.0.0.1 (its speed bounds both readers).

Measured, rows/s over one epoch in order (batches of 8 rows, a collate that counts them, no
DataLoader workers), each from a fresh reader object:
  cold       an empty cache folder, no limit (every shard downloaded and decoded once)
  warm       the same cache folder again (nothing downloaded)
  tenth      an empty cache folder limited to a tenth of the decoded data (evicting as it goes)
shardprep reads through ResumableLoader (which prefetches ahead of the sampler); streaming through
StreamingDataset + DataLoader with its own predownload. Prints a table and writes
bench/results/remote.json.

  python bench/bench_remote.py [--tokens 4000000] [--rows-per-shard 32]

mosaicml-streaming 0.13 wants torch 2.14 and torchvision; it is installed without its
dependencies (`pip install --no-deps mosaicml-streaming brotli python-snappy zstd xxhash
catalogue pillow`). Its package imports its vision module, which imports torchvision, on every
import; no CPU build of torchvision for this torch is reachable here, so this script gives that
import an empty module (streaming's text datasets use none of it). Without streaming installed,
its rows are left out and the report says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_reader import write_shards  # noqa: E402

BATCH = 8
BUCKET = "bench"


def start_s3() -> tuple[Any, dict[str, str]]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    opts = {"key": "testing", "secret": "testing", "endpoint_url": f"http://{host}:{port}"}
    fsspec.filesystem("s3", **opts).mkdir(BUCKET)
    return server, opts


def tree_bytes(folder: Path) -> int:
    total = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                total += os.path.getsize(os.path.join(parent, name))
    return total


class Peak:
    """The most bytes a folder held, sampled every 10 ms on a thread (outside the timed loop)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.peak, self._stop = folder, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, tree_bytes(self.folder))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, tree_bytes(self.folder))


def count_rows(rows: list[Any]) -> int:
    return len(rows)


def shardprep_epoch(url: str, opts: dict[str, str], cache: Path, limit: int | None) -> dict:
    from shardprep.torch import EpochSampler, ResumableLoader, ShardDataset

    start = time.perf_counter()
    ds = ShardDataset(url, storage_options=opts, cache_dir=str(cache), cache_limit=limit)
    opened = time.perf_counter() - start
    loader = ResumableLoader(
        ds,
        sampler=EpochSampler(len(ds), shuffle=False),
        batch_size=BATCH,
        collate_fn=count_rows,
        prefetch=True,
    )
    rows = 0
    peak = Peak(cache)
    for n in loader:
        rows += n
    seconds = time.perf_counter() - start
    peak_bytes = peak.stop()
    ds.close()
    return {
        "rows": rows,
        "seconds": round(seconds, 3),
        "open_s": round(opened, 3),
        "rows_per_s": round(rows / seconds, 1),
        "misses": ds.stats.misses,
        "made": ds.stats.made,
        "evictions": ds.cache().evictions,
        "peak_cache_bytes": peak_bytes,
    }


def import_streaming() -> Any:
    # transformers (which streaming imports) asks whether torchvision is installed while it loads:
    # let it find none before the empty module exists.
    import transformers.feature_extraction_utils  # noqa: F401

    try:
        import torchvision  # noqa: F401
    except Exception:
        # See the module docstring: an empty torchvision for streaming's vision import only.
        tv = types.ModuleType("torchvision")
        tv.datasets = types.ModuleType("torchvision.datasets")  # type: ignore[attr-defined]
        tv.datasets.VisionDataset = object  # type: ignore[attr-defined]
        tv.transforms = types.ModuleType("torchvision.transforms")  # type: ignore[attr-defined]
        tv.transforms.functional = types.ModuleType("torchvision.transforms.functional")  # type: ignore[attr-defined]
        tv.transforms.functional.to_tensor = None  # type: ignore[attr-defined]
        for name, mod in {
            "torchvision": tv,
            "torchvision.datasets": tv.datasets,  # type: ignore[attr-defined]
            "torchvision.transforms": tv.transforms,  # type: ignore[attr-defined]
            "torchvision.transforms.functional": tv.transforms.functional,  # type: ignore[attr-defined]
        }.items():
            sys.modules[name] = mod
    import streaming

    return streaming


def write_mds(files: list[str], out: Path, size_limit: int) -> None:
    from streaming import MDSWriter

    columns = {
        "input_ids": "ndarray:int32",
        "target_ids": "ndarray:int32",
        "weights": "ndarray:float32",
        "length": "int32",
    }
    with MDSWriter(out=str(out), columns=columns, compression="zstd", size_limit=size_limit) as w:
        for f in files:
            table = pq.read_table(f)
            ids = table.column("input_ids").to_pylist()
            tgt = table.column("target_ids").to_pylist()
            wts = table.column("weights").to_pylist()
            lens = table.column("length").to_pylist()
            for a, b, c, n in zip(ids, tgt, wts, lens, strict=True):
                w.write(
                    {
                        "input_ids": np.asarray(a, np.int32),
                        "target_ids": np.asarray(b, np.int32),
                        "weights": np.asarray(c, np.float32),
                        "length": np.int32(n),
                    }
                )


def streaming_epoch(remote: str, cache: Path, limit: int | None) -> dict:
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory
    from torch.utils.data import DataLoader

    clean_stale_shared_memory()
    start = time.perf_counter()
    ds = StreamingDataset(
        remote=remote,
        local=str(cache),
        shuffle=False,
        batch_size=BATCH,
        cache_limit=limit,
    )
    opened = time.perf_counter() - start
    rows = 0
    tokens = 0
    peak = Peak(cache)
    for batch in DataLoader(ds, batch_size=BATCH, num_workers=0, collate_fn=lambda r: r):
        rows += len(batch)
        tokens += sum(int(r["length"]) for r in batch)
    seconds = time.perf_counter() - start
    peak_bytes = peak.stop()
    return {
        "rows": rows,
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "open_s": round(opened, 3),
        "rows_per_s": round(rows / seconds, 1),
        "peak_cache_bytes": peak_bytes,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=4_000_000)
    ap.add_argument("--rows-per-shard", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "remote.json"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    server, opts = start_s3()
    try:
        build = work / "build"
        files = write_shards(build, args.tokens, rows_per_shard=args.rows_per_shard)
        fs = fsspec.filesystem("s3", **opts)
        fs.put(str(build) + "/", f"{BUCKET}/build", recursive=True)
        url = f"s3://{BUCKET}/build"

        from shardprep.torch import ShardDataset

        probe = ShardDataset(str(build), cache_dir=str(work / "probe")).prepare()
        decoded = tree_bytes(work / "probe")
        rows = len(probe)
        tokens = int(probe.lengths.sum())
        probe.close()
        tenth = decoded // 10
        print(
            f"data: {rows} rows, {tokens:,} tokens, {len(files)} shards, "
            f"{tree_bytes(build) / 1e6:.1f} MB Parquet, {decoded / 1e6:.1f} MB decoded; "
            f"tenth = {tenth / 1e6:.1f} MB",
            flush=True,
        )
        results: dict[str, Any] = {"shardprep": {}}
        cache = work / "sp-cache"
        results["shardprep"]["cold"] = shardprep_epoch(url, opts, cache, None)
        results["shardprep"]["warm"] = shardprep_epoch(url, opts, cache, None)
        results["shardprep"]["tenth"] = shardprep_epoch(url, opts, work / "sp-tenth", tenth)
        for k, v in results["shardprep"].items():
            print(f"  shardprep {k}: {v}", flush=True)

        try:
            import_streaming()
            have_streaming = True
        except ImportError as exc:
            have_streaming = False
            results["streaming"] = f"not installed here ({exc})"
            print(f"  streaming: {results['streaming']}")
        if have_streaming:
            import streaming

            mds = work / "mds"
            # streaming refuses a cache_limit under four times its largest shard (raw + zip):
            # MDS shards small enough that the same tenth is allowed.
            write_mds(files, mds, size_limit=tenth // 7)
            fs.put(str(mds) + "/", f"{BUCKET}/mds", recursive=True)
            os.environ["S3_ENDPOINT_URL"] = opts["endpoint_url"]
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
            remote = f"s3://{BUCKET}/mds"
            st: dict[str, Any] = {"version": streaming.__version__}
            cache = work / "st-cache"
            st["cold"] = streaming_epoch(remote, cache, None)
            st["warm"] = streaming_epoch(remote, cache, None)
            st["tenth"] = streaming_epoch(remote, work / "st-tenth", tenth)
            st["mds_shards"] = len(list(mds.glob("*.mds*")))
            results["streaming"] = st
            for k, v in st.items():
                print(f"  streaming {k}: {v}", flush=True)
            assert all(st[k]["tokens"] == tokens for k in ("cold", "warm", "tenth"))

        print(f"\n{'rows/s':10} {'cold':>10} {'warm':>10} {'tenth':>10}")
        for name, r in results.items():
            if isinstance(r, dict):
                print(
                    f"{name:10} "
                    + " ".join(f"{r[k]['rows_per_s']:10,.0f}" for k in ("cold", "warm", "tenth"))
                )
        report = {
            "data": {
                "rows": rows,
                "tokens": tokens,
                "shards": len(files),
                "parquet_bytes": tree_bytes(build),
                "decoded_bytes": decoded,
                "tenth_limit_bytes": tenth,
                "kind": "synthetic sft/1 via pyarrow (bench_reader.write_shards)",
            },
            "store": "moto S3 server on 127.0.0.1 (in-process, threaded)",
            "batch_rows": BATCH,
            "results": results,
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
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
