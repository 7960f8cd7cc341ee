"""ShardDataset: map-style access to one split of a shardprep build, local or on any fsspec URL."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from torch.utils.data import Dataset

from shardprep.errors import ManifestError, ShardprepError
from shardprep.store.integrity import escapes_output
from shardprep.store.manifest import no_manifest_error, read_manifest
from shardprep.store.storage import Output
from shardprep.tasks import shard_schema
from shardprep.torch.cache import (
    FlatShard,
    build_flat_cache,
    default_cache_dir,
    open_flat,
    shard_cache_path,
)


class ShardDataset(Dataset[dict[str, Any]]):
    """One split of a finished build. `ds[i]` is a dict of numpy views (list columns) and scalars.

    Shards are decoded once into a memory-mappable cache (see `cache.py`) on first touch, in
    whichever process touches them; `prepare()` does all of them up front. Nothing is held open
    between calls, and pickling carries only the manifest's shard list, so DataLoader workers
    (fork or spawn) start cheaply and open their own maps.
    """

    def __init__(
        self,
        path_or_url: str,
        split: str = "train",
        *,
        verify_hashes: bool = False,
        cache_dir: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = str(path_or_url)
        self.split = split
        self.storage_options = storage_options or {}
        self.cache_dir = cache_dir or default_cache_dir()
        output, manifest = _open(self.url, self.storage_options)
        if split not in manifest["splits"]:
            raise ShardprepError(
                f"split {split!r} not in {self.url} (has: {', '.join(manifest['splits'])})"
            )
        self.schema: str = manifest.get("schema", "sft/1")
        # The task's own schema says which columns a shard must have (the reader hands all through).
        self.shard_schema = shard_schema(self.schema, where=f"{self.url}: ")
        info = manifest["splits"][split]
        # Only what a worker needs: keeps pickles small however large the manifest's stats are.
        self.shards: list[dict[str, Any]] = [
            {"path": s["path"], "rows": int(s["rows"]), "sha256": s["sha256"]}
            for s in info["shards"]
        ]
        self.pad_id: int | None = manifest.get("tokenizer", {}).get("pad_id")
        self.eos_id: int | None = manifest.get("tokenizer", {}).get("eos_id")
        self.fingerprint: str = manifest.get("fingerprint", "")
        rows = [s["rows"] for s in self.shards]
        if sum(rows) != info["rows"]:
            raise ManifestError(
                f"{self.url}: split {split!r} lists {info['rows']} rows but its shards hold {sum(rows)}"
            )
        self._starts = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(rows, out=self._starts[1:])
        self._validate_shards(output)
        if verify_hashes:
            self._verify_hashes(output)
        self._output: Output | None = output
        self._flat: dict[int, FlatShard] = {}
        self._lengths: np.ndarray | None = None

    # -- validation -------------------------------------------------------------------------

    def _validate_shards(self, output: Output) -> None:
        """Footers only: row counts and columns agree with the manifest (a few KB per shard)."""
        needed = self.shard_schema.required_columns
        for shard in self.shards:
            if escapes_output(output, shard["path"]):
                raise ManifestError(
                    f"{shard['path']} resolves outside {self.url} (a symlink?): refused"
                )
            try:
                with output.fs.open(output.path(shard["path"]), "rb") as f:
                    meta = pq.read_metadata(f)
            except FileNotFoundError:
                raise ManifestError(
                    f"{shard['path']} is listed in the manifest but missing (run `prep verify`)"
                ) from None
            except pa.ArrowException as exc:
                raise ManifestError(
                    f"{shard['path']} is not a readable Parquet file: {exc}"
                ) from exc
            if meta.num_rows != shard["rows"]:
                raise ManifestError(
                    f"{shard['path']} has {meta.num_rows} rows, the manifest says {shard['rows']} (run `prep verify`)"
                )
            names = meta.schema.to_arrow_schema().names
            missing = [c for c in needed if c not in names]
            if missing:
                raise ManifestError(
                    f"{shard['path']} lacks column(s) {missing} of schema {self.schema}"
                )

    def _verify_hashes(self, output: Output) -> None:
        for shard in self.shards:
            h = hashlib.sha256()
            with output.fs.open(output.path(shard["path"]), "rb") as f:
                while block := f.read(1 << 22):
                    h.update(block)
            if h.hexdigest() != shard["sha256"]:
                raise ManifestError(
                    f"{shard['path']}: sha256 differs from the manifest (shard changed or corrupt)"
                )

    # -- pickling: workers re-open lazily --------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_output"] = None
        state["_flat"] = {}
        state["_lengths"] = None
        return state

    def _out(self) -> Output:
        if self._output is None:
            self._output = Output(self.url, storage_options=self.storage_options)
        return self._output

    # -- access -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = int(index)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for {n} rows")
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        row = self._shard(k).row(i - int(self._starts[k]))
        row["index"] = i
        return row

    def _shard(self, k: int) -> FlatShard:
        flat = self._flat.get(k)
        if flat is None:
            # A damaged cache entry is rebuilt from the shard (whose sha256 is checked again).
            target = shard_cache_path(self.cache_dir, self.shards[k]["sha256"])
            flat = self._flat[k] = open_flat(target, lambda: self._ensure_cached(k))
        return flat

    def _ensure_cached(self, k: int) -> str:
        shard = self.shards[k]
        target = shard_cache_path(self.cache_dir, shard["sha256"])
        if os.path.exists(os.path.join(target, "meta.json")):
            return target
        out = self._out()
        if out.is_local:
            build_flat_cache(
                out.path(shard["path"]),
                target,
                expected_rows=shard["rows"],
                expected_sha256=shard["sha256"],
                label=shard["path"],
            )
            return target
        # Object stores: one whole download into the cache's disk, decoded there, then dropped.
        os.makedirs(self.cache_dir, exist_ok=True)
        tmpdir = tempfile.mkdtemp(prefix=".dl-", dir=self.cache_dir)
        try:
            local = os.path.join(tmpdir, "shard.parquet")
            out.fs.get_file(out.path(shard["path"]), local)
            build_flat_cache(
                local,
                target,
                expected_rows=shard["rows"],
                expected_sha256=shard["sha256"],
                label=shard["path"],
            )
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return target

    def prepare(self) -> ShardDataset:
        """Decode every shard into the cache now (do it before starting workers to do it once)."""
        for k in range(len(self.shards)):
            self._ensure_cached(k)
        return self

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per row (chosen + rejected for pairs), from the length column(s).

        Read through the same cache entries as rows, so a shard whose bytes differ from the
        manifest's sha256 is refused here too (a sampler must not batch by another shard's lengths).
        """
        if self._lengths is None:
            cols = self.shard_schema.length_columns
            parts = [
                sum(self._shard(k).scalars[c].astype(np.int64) for c in cols)
                for k in range(len(self.shards))
            ]
            self._lengths = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return self._lengths

    def __repr__(self) -> str:
        return (
            f"ShardDataset({self.url!r}, split={self.split!r}, schema={self.schema!r}, "
            f"rows={len(self)}, shards={len(self.shards)})"
        )


def _open(url: str, storage_options: dict[str, Any]) -> tuple[Output, dict[str, Any]]:
    """The build's storage and its validated manifest (format version, shard paths inside it)."""
    output = Output(url, storage_options=storage_options)
    manifest = read_manifest(output)
    if manifest is None:
        raise no_manifest_error(output, url)
    return output, manifest
