"""The reader's downloads under faults (issue 25 item 2): transient errors are retried and the
download resumes where it stopped; a permanent error fails naming the shard's URL; bytes that fail
their sha256 are fetched once more, then refused. Nothing wrong is served.

The store is fsspec's in-memory filesystem under another protocol, with faults injected into its
ranged reads (what the reader's downloads use); footers and the manifest are read normally.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.memory import MemoryFileSystem

pytest.importorskip("torch")

from shardprep.build.run import build  # noqa: E402
from shardprep.errors import ManifestError  # noqa: E402
from shardprep.recipe import load_recipe  # noqa: E402
from shardprep.sources import retry  # noqa: E402
from shardprep.torch import ShardDataset, fetch  # noqa: E402

from ._project import jsonl_bytes, write_recipe  # noqa: E402

ROWS = 300


class FaultyStore(MemoryFileSystem):
    """memory:// with faults in `cat_file(path, start, end)`: `fail_every` makes every n-th read
    raise `error`; `corrupt` flips a byte of a shard's first `corrupt` whole downloads."""

    protocol = "faultymem"
    fail_every: ClassVar[int] = 0
    error: ClassVar[type[Exception]] = ConnectionResetError
    corrupt: ClassVar[int] = 0
    reads: ClassVar[int] = 0
    failed: ClassVar[int] = 0
    delivered: ClassVar[Counter[str]] = Counter()  # bytes handed out, per path
    downloads: ClassVar[Counter[str]] = Counter()  # reads from offset 0, per path

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return MemoryFileSystem._strip_protocol(path.removeprefix("faultymem://"))

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kw: Any):
        cls = type(self)
        cls.reads += 1
        if cls.fail_every and cls.reads % cls.fail_every == 0:
            cls.failed += 1
            raise cls.error(f"injected fault on read {cls.reads}")
        data = super().cat_file(path, start=start, end=end, **kw)
        if not start:
            cls.downloads[path] += 1
            if cls.downloads[path] <= cls.corrupt:
                data = bytes([data[0] ^ 1]) + data[1:]
        cls.delivered[path] += len(data)
        return data


fsspec.register_implementation("faultymem", FaultyStore, clobber=True)


@pytest.fixture(scope="module")
def local_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("remote-faults")
    (folder / "rows.jsonl").write_bytes(jsonl_bytes(ROWS))
    recipe, base = load_recipe(write_recipe(folder, "rows.jsonl", shards={"max_rows": 100}))
    build(recipe, base)
    return folder / "out"


@pytest.fixture
def store(local_build: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"/faulty-{os.getpid()}-{id(monkeypatch)}"
    fsspec.filesystem("memory").put(str(local_build) + "/", name, recursive=True)
    monkeypatch.setattr(retry, "BASE_DELAY_S", 0.0)
    monkeypatch.setattr(fetch, "CHUNK", 2048)  # several ranged reads per shard
    for knob, value in (("fail_every", 0), ("corrupt", 0), ("reads", 0), ("failed", 0)):
        monkeypatch.setattr(FaultyStore, knob, value)
    monkeypatch.setattr(FaultyStore, "error", ConnectionResetError)
    monkeypatch.setattr(FaultyStore, "delivered", Counter())
    monkeypatch.setattr(FaultyStore, "downloads", Counter())
    yield f"faultymem://{name}"
    fsspec.filesystem("memory").rm(name, recursive=True)


def expected(out: Path) -> list[list[int]]:
    m = json.loads((out / "manifest.json").read_text())
    return [
        r
        for s in m["splits"]["train"]["shards"]
        for r in pq.read_table(out / s["path"]).column("input_ids").to_pylist()
    ]


def shard_paths(url: str, out: Path) -> list[tuple[str, int]]:
    m = json.loads((out / "manifest.json").read_text())
    root = url.removeprefix("faultymem://")
    return [(f"{root}/{s['path']}", s["bytes"]) for s in m["splits"]["train"]["shards"]]


def test_transient_errors_are_retried_and_resumed(
    store: str, local_build: Path, tmp_path: Path, faults
) -> None:
    FaultyStore.fail_every = 3
    ds = ShardDataset(store, cache_dir=str(tmp_path / "cache"))
    got = [ds[i]["input_ids"].tolist() for i in range(len(ds))]
    faults.fault(FaultyStore.failed)
    assert FaultyStore.failed >= 3
    want = expected(local_build)
    faults.wrong_rows(sum(a != b for a, b in zip(got, want, strict=True)))
    assert got == want
    # Resumed, not restarted: each shard's bytes were handed out once, each download began once.
    for path, size in shard_paths(store, local_build):
        assert FaultyStore.delivered[path] == size and FaultyStore.downloads[path] == 1


def test_a_permanent_error_names_the_shard(store: str, local_build: Path, tmp_path: Path, faults):
    FaultyStore.fail_every = 1
    FaultyStore.error = PermissionError
    ds = ShardDataset(store, cache_dir=str(tmp_path / "cache"))
    faults.fault()
    with pytest.raises(ManifestError, match=r"cannot fetch faultymem://.*\.parquet: access denied"):
        ds[0]
    assert FaultyStore.failed == 1  # not retried


def test_bytes_failing_their_sha256_are_fetched_again_once(
    store: str, local_build: Path, tmp_path: Path, faults
) -> None:
    FaultyStore.corrupt = 1
    ds = ShardDataset(store, cache_dir=str(tmp_path / "cache"))
    got = [ds[i]["input_ids"].tolist() for i in range(len(ds))]
    faults.fault(len(ds.shards))
    assert got == expected(local_build)
    assert all(FaultyStore.downloads[p] == 2 for p, _ in shard_paths(store, local_build))


def test_bytes_failing_their_sha256_twice_are_refused(
    store: str, local_build: Path, tmp_path: Path, faults
) -> None:
    FaultyStore.corrupt = 99
    ds = ShardDataset(store, cache_dir=str(tmp_path / "cache"))
    faults.fault()
    first = ds.shards[0]["path"]
    with pytest.raises(ManifestError, match=f"{first}: sha256 differs from the manifest"):
        ds[0]
    path, _ = shard_paths(store, local_build)[0]
    assert FaultyStore.downloads[path] == 2
    assert not os.path.exists(ds.entry_path(0))
    assert not os.listdir(tmp_path / "cache" / ".work")  # the refused download is gone
