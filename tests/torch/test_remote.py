"""ShardDataset from object stores: every store gives the local read's rows in the same order, an
epoch of a build ten times the cache limit stays within the limit plus one shard, and prefetching
ahead of the sampler hides the store's latency.

The stores are real servers on loopback: moto's S3 (with a per-request delay where latency is the
point), gcp-storage-emulator, and an HTTP server that serves byte ranges. `hf://` needs the Hub's
API (a repo's revision and file listing), which no loopback server here provides: not tested.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pytest

from shardprep.errors import ShardprepError
from shardprep.tasks.sft import SCHEMA
from shardprep.torch import EpochSampler, ResumableLoader, ShardDataset
from shardprep.torch.cache import META_NAME

from .conftest import write_build

BUCKET = "reader"


def sft_tables(shards: int, rows: int, *, seed: int = 0) -> list[pa.Table]:
    rng = np.random.default_rng(seed)
    tables = []
    for s in range(shards):
        out = []
        for r in range(rows):
            n = int(rng.integers(20, 60))
            ids = rng.integers(0, 1000, n + 1).astype(np.int32)
            out.append(
                {
                    "input_ids": ids[:-1].tolist(),
                    "target_ids": ids[1:].tolist(),
                    "weights": (rng.random(n) < 0.5).astype(np.float32).tolist(),
                    "length": n,
                    "source": "synthetic",
                    "source_row": s * rows + r,
                }
            )
        tables.append(pa.Table.from_pylist(out, schema=SCHEMA.arrow()))
    return tables


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 shards of 24 rows."""
    return write_build(tmp_path_factory.mktemp("remote") / "many", "sft/1", sft_tables(40, 24))


def rows_of(ds: ShardDataset, order: Any = None) -> list[tuple[list[int], list[float], int]]:
    order = range(len(ds)) if order is None else order
    return [
        (r["input_ids"].tolist(), r["weights"].tolist(), r["source_row"])
        for r in (ds[int(i)] for i in order)
    ]


# -- the stores ------------------------------------------------------------------------------


class SlowMoto:
    """moto's S3 server on loopback; `delay` seconds are added to every request."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        self.delay = 0.0
        self.requests = 0
        inner = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            self.requests += 1
            if self.delay:
                time.sleep(self.delay)
            return inner(environ, start_response)

        self.server = make_server("127.0.0.1", 0, app, True, request_handler=MotoRequestHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        host, port = self.server.server_address[:2]
        self.opts = {"key": "testing", "secret": "testing", "endpoint_url": f"http://{host}:{port}"}

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()


@pytest.fixture(scope="module")
def s3() -> Iterator[SlowMoto]:
    server = SlowMoto()
    fsspec.filesystem("s3", **server.opts).mkdir(BUCKET)
    yield server
    server.stop()


def upload_s3(server: SlowMoto, build: Path) -> str:
    fs = fsspec.filesystem("s3", **server.opts)
    path = f"{BUCKET}/{uuid.uuid4().hex[:8]}"
    fs.put(str(build) + "/", path, recursive=True)
    fs.invalidate_cache()
    return f"s3://{path}"


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with `Range: bytes=a-b` answered 206 (what fsspec's HTTP reads need)."""

    def log_message(self, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng or not os.path.isfile(path):
            return super().send_head()
        start_s, _, end_s = rng.removeprefix("bytes=").partition("-")
        size = os.path.getsize(path)
        start, end = int(start_s), min(int(end_s) if end_s else size - 1, size - 1)
        f = open(path, "rb")  # noqa: SIM115 - closed by copyfile's caller
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        import io

        return io.BytesIO(f.read(end - start + 1))


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("http")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(RangeHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def gcs() -> Iterator[dict[str, Any]]:
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    from gcp_storage_emulator.server import create_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    opts = {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon", "project": "test"}
    fsspec.filesystem("gs", **opts).mkdir(BUCKET)
    yield opts
    server.stop()


STORES = ["local", "memory", "s3", "gcs", "http"]


@pytest.fixture
def store_url(
    request: pytest.FixtureRequest, many_shards: Path, tmp_path: Path
) -> tuple[str, dict[str, Any]]:
    import shutil

    kind = request.param
    if kind == "local":
        return str(many_shards), {}
    if kind == "memory":
        path = f"/reader-{uuid.uuid4().hex[:8]}"
        fsspec.filesystem("memory").put(str(many_shards) + "/", path, recursive=True)
        return f"memory://{path}", {}
    if kind == "s3":
        server = request.getfixturevalue("s3")
        return upload_s3(server, many_shards), server.opts
    if kind == "gcs":
        opts = request.getfixturevalue("gcs")
        fs = fsspec.filesystem("gs", **opts)
        path = f"{BUCKET}/{uuid.uuid4().hex[:8]}"
        fs.put(str(many_shards) + "/", path, recursive=True)
        fs.invalidate_cache()
        return f"gs://{path}", opts
    root, base = request.getfixturevalue("http_root")
    name = uuid.uuid4().hex[:8]
    shutil.copytree(many_shards, root / name)
    return f"{base}/{name}", {}


@pytest.mark.s3
@pytest.mark.gcs
@pytest.mark.parametrize("store_url", STORES, indirect=True)
def test_every_store_reads_the_local_rows_in_the_local_order(
    store_url: tuple[str, dict[str, Any]], many_shards: Path, tmp_path: Path
) -> None:
    url, opts = store_url
    local = ShardDataset(str(many_shards), cache_dir=str(tmp_path / "local"))
    ds = ShardDataset(url, storage_options=opts, cache_dir=str(tmp_path / "cache"))
    assert len(ds) == len(local) and ds.remote == (not url.startswith("/"))
    assert rows_of(ds) == rows_of(local)
    # Through the loader with a shuffled sampler (prefetching when remote): the same batches.
    sampler = EpochSampler(len(ds), seed=3)
    got = [
        b
        for batch in ResumableLoader(
            ds, sampler=sampler, batch_size=16, collate_fn=lambda x: [r["source_row"] for r in x]
        )
        for b in batch
    ]  # noqa: E501
    order = EpochSampler(len(local), seed=3).indices()
    assert got == [local[int(i)]["source_row"] for i in order]


# -- a bounded cache over an epoch ten times its size --------------------------------------------


def cache_usage(cache: Path) -> int:
    """Every byte under the cache folder: entries, downloads and half-made entries."""
    total = 0
    for folder, _, files in os.walk(cache):
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.path.getsize(os.path.join(folder, f))
    return total


class PeakUsage:
    """The most bytes the cache folder held, sampled on a thread every millisecond (so a download
    or a half-written entry between two steps is seen too)."""

    def __init__(self, cache: Path) -> None:
        self.cache, self.peak, self.samples = cache, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, cache_usage(self.cache))
            self.samples += 1

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


@pytest.mark.s3
def test_one_epoch_of_a_build_ten_times_the_cache_limit(
    s3: SlowMoto, many_shards: Path, tmp_path: Path
) -> None:
    local = ShardDataset(str(many_shards), cache_dir=str(tmp_path / "local")).prepare()
    entry = max(
        cache_usage(Path(local.entry_path(k))) for k in range(len(local.shards))
    )  # the largest decoded shard
    data = sum(cache_usage(Path(local.entry_path(k))) for k in range(len(local.shards)))
    limit = data // 10
    url = upload_s3(s3, many_shards)
    cache = tmp_path / "cache"
    ds = ShardDataset(url, storage_options=s3.opts, cache_dir=str(cache), cache_limit=limit)
    assert ds.needed_bytes() > limit  # prepare() could not hold it
    with pytest.raises(ShardprepError, match="more than its limit"):
        ds.prepare()
    loader = ResumableLoader(
        ds, sampler=EpochSampler(len(ds), shuffle=False), batch_size=8, collate_fn=list
    )
    assert loader.prefetch
    seen: list[tuple[list[int], list[float], int]] = []
    usage = PeakUsage(cache)
    for batch in loader:
        seen.extend(
            (r["input_ids"].tolist(), r["weights"].tolist(), r["source_row"]) for r in batch
        )
    peak = usage.stop()
    assert usage.samples > 20
    assert seen == rows_of(local)
    assert peak <= limit + entry, (peak, limit, entry)
    assert ds.cache().evictions >= 30
    assert ds.stats.made == len(ds.shards)  # each shard fetched and decoded once


@pytest.mark.s3
def test_a_shuffled_epoch_by_windows_of_shards_under_a_limit(
    s3: SlowMoto, many_shards: Path, tmp_path: Path
) -> None:
    """EpochSampler(shard_window=2): rows shuffled within pairs of shards, each pair read once;
    with a limit of a few shards the epoch still reads each shard once and stays bounded."""
    local = ShardDataset(str(many_shards), cache_dir=str(tmp_path / "local"))
    biggest = max(s["estimate"] for s in local.shards)
    limit = 6 * biggest
    url = upload_s3(s3, many_shards)
    cache = tmp_path / "cache"
    ds = ShardDataset(url, storage_options=s3.opts, cache_dir=str(cache), cache_limit=limit)
    sampler = EpochSampler(ds, seed=7, shard_window=2)
    loader = ResumableLoader(ds, sampler=sampler, batch_size=8, collate_fn=list)
    seen = []
    usage = PeakUsage(cache)
    for batch in loader:
        seen.extend(
            (r["input_ids"].tolist(), r["weights"].tolist(), r["source_row"]) for r in batch
        )
    peak = usage.stop()
    assert seen == rows_of(local, EpochSampler(local, seed=7, shard_window=2).indices())
    assert peak <= limit + biggest
    assert ds.stats.made == len(ds.shards)


def _train_until_made(ds: ShardDataset, row: int) -> None:
    """A training step that lasts until the cache entry of the shard holding `row` (the next
    batch's) is complete: made ahead of the reader by its prefetcher, never by this thread. How
    long that takes on this machine changes nothing below; a prefetcher that never makes it
    fails here."""
    if row >= len(ds):
        return
    k = int(ds.shard_of([row])[0])
    meta = os.path.join(ds.entry_path(k), META_NAME)
    deadline = time.monotonic() + 60  # a hang guard: it takes a few tenths of a second
    while not os.path.exists(meta) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.path.exists(meta), f"the prefetcher never made shard {k}'s entry"


@pytest.mark.s3
def test_prefetch_hides_store_latency(s3: SlowMoto, tmp_path: Path) -> None:
    """100 ms per request: with prefetch the loop never waits on a shard after the first (each is
    made in the background while the loop trains on the one before); without, it waits at every
    shard it enters. Each training step lasts until the next batch's shard is made by the
    prefetcher (without one, it does nothing), so the counts do not depend on this machine's
    speed or load, as they did with a fixed 50 ms step that a busy machine's prefetch could lag."""
    build = write_build(tmp_path / "b", "sft/1", sft_tables(12, 32, seed=1))
    url = upload_s3(s3, build)
    stalls = {}
    s3.delay = 0.1
    try:
        for prefetch in (True, False):
            ds = ShardDataset(
                url, storage_options=s3.opts, cache_dir=str(tmp_path / f"c{prefetch}")
            )
            loader = ResumableLoader(
                ds,
                sampler=EpochSampler(len(ds), shuffle=False),
                batch_size=8,
                collate_fn=list,
                prefetch=prefetch,
            )
            steps = 0
            for _ in loader:
                if steps == 0:
                    before = ds.stats.misses
                steps += 1
                if prefetch:
                    _train_until_made(ds, steps * 8)  # the training step
            stalls[prefetch] = (ds.stats.misses - before, steps - 1)
    finally:
        s3.delay = 0.0
    assert stalls[True] == (0, 47), stalls
    assert stalls[False] == (11, 47), stalls  # every shard after the first one


# Every process of a node (ranks, DataLoader workers) shares one cache folder: a shard is made by
# one of them while the others wait for it, and each reads the local rows.
READER = """
import hashlib, json, sys
from shardprep.torch import ShardDataset
url, opts, cache, limit = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
ds = ShardDataset(url, storage_options=opts, cache_dir=cache, cache_limit=limit or None)
h = hashlib.sha256()
for i in range(len(ds)):
    h.update(ds[i]["input_ids"].tobytes())
print(json.dumps({"made": ds.stats.made, "rows": h.hexdigest()}))
"""


def _digest(ds: ShardDataset) -> str:
    import hashlib

    h = hashlib.sha256()
    for i in range(len(ds)):
        h.update(ds[i]["input_ids"].tobytes())
    return h.hexdigest()


@pytest.mark.s3
def test_processes_share_one_cache_folder(s3: SlowMoto, many_shards: Path, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    want = _digest(ShardDataset(str(many_shards), cache_dir=str(tmp_path / "local")))
    url = upload_s3(s3, many_shards)
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", READER, url, json.dumps(s3.opts), str(cache), ""],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert [r["rows"] for r in results] == [want, want]
    assert sum(r["made"] for r in results) == 40  # each shard made once, by one of the two


@pytest.mark.s3
def test_readers_sharing_a_limited_cache(s3: SlowMoto, many_shards: Path, tmp_path: Path) -> None:
    """Three readers (threads: each its own file descriptors, so the same locks as processes)
    through one folder limited to a quarter of the data: each reads the local rows, and the
    folder ends within the limit plus the entries they still hold open."""
    local = ShardDataset(str(many_shards), cache_dir=str(tmp_path / "local"))
    want = _digest(local)
    url = upload_s3(s3, many_shards)
    cache = tmp_path / "cache"
    limit = local.needed_bytes() // 4
    readers = [
        ShardDataset(url, storage_options=s3.opts, cache_dir=str(cache), cache_limit=limit)
        for _ in range(3)
    ]
    got: list[str] = []
    threads = [threading.Thread(target=lambda d=d: got.append(_digest(d))) for d in readers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [want] * 3
    held = sum(v[2] for d in readers for v in d._flat.values())
    assert cache_usage(cache) <= limit + held


@pytest.mark.s3
def test_dataloader_workers_with_prefetch_under_a_limit(
    s3: SlowMoto, many_shards: Path, tmp_path: Path
) -> None:
    local = ShardDataset(str(many_shards), cache_dir=str(tmp_path / "local"))
    url = upload_s3(s3, many_shards)
    ds = ShardDataset(
        url,
        storage_options=s3.opts,
        cache_dir=str(tmp_path / "cache"),
        cache_limit=local.needed_bytes() // 5,
    )
    loader = ResumableLoader(
        ds,
        sampler=EpochSampler(len(ds), shuffle=False),
        batch_size=8,
        num_workers=2,
        collate_fn=lambda rows: [r["source_row"] for r in rows],
    )
    assert loader.prefetch
    got = [r for batch in loader for r in batch]
    assert got == [local[i]["source_row"] for i in range(len(local))]
