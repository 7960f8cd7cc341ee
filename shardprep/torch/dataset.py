"""ShardDataset: map-style access to one split of a shardprep build, local or on any fsspec URL."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from torch.utils.data import Dataset

from shardprep.errors import ManifestError, ShardprepError
from shardprep.sizes import human_bytes
from shardprep.store.integrity import escapes_output
from shardprep.store.manifest import no_manifest_error, read_manifest
from shardprep.store.storage import Output
from shardprep.tasks import shard_schema
from shardprep.torch.cache import (
    META_NAME,
    CacheDamaged,
    FlatShard,
    ShardBytesDiffer,
    ShardSource,
    build_flat_cache,
    default_cache_dir,
    discard_entry,
    entry_bytes,
    entry_estimate,
    load_flat,
    read_meta,
    shard_cache_path,
)
from shardprep.torch.fetch import download
from shardprep.torch.lru import BoundedCache, limit_too_small, resolve_limit

if TYPE_CHECKING:
    from shardprep.torch.prefetch import Prefetcher

log = logging.getLogger("shardprep.reader")
MAX_OPEN_SHARDS = 128  # entries one process keeps mapped (reopening one costs a fraction of a ms)


@dataclass
class CacheStats:
    """What this process's reader found in the cache when it needed a shard."""

    hits: int = 0  # the entry was there (made earlier, or ahead of use by a Prefetcher)
    misses: int = 0  # the reader had to make it, or wait while another process made it
    wait_s: float = 0.0  # seconds spent on those misses
    made: int = 0  # entries this process made (by the reader or its Prefetcher)


class ShardDataset(Dataset[dict[str, Any]]):
    """One split of a finished build. `ds[i]` is a dict of numpy views (list columns) and scalars.

    Shards are decoded once into a memory-mappable cache (see `cache.py`) on first touch, in
    whichever process touches them; `prepare()` does all of them up front, and a `Prefetcher`
    (`prefetcher()`, driven by `ResumableLoader`) does them ahead of use in the order they will be
    read. The cache folder holds at most `cache_limit` bytes (`lru.py`: "20GB", "50%", a byte
    count; default $SHARDPREP_CACHE_LIMIT, else 75% of the disk's free space) plus the entries
    in use, evicting the least recently used. This process keeps entries open (mapped) while they
    take at most half the limit. Pickling carries only the manifest's shard list, so DataLoader
    workers (fork or spawn) start cheaply and open their own maps.
    """

    def __init__(
        self,
        path_or_url: str,
        split: str = "train",
        *,
        verify_hashes: bool = False,
        cache_dir: str | None = None,
        cache_limit: int | str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = str(path_or_url)
        self.split = split
        self.storage_options = storage_options or {}
        self.cache_dir = os.path.abspath(cache_dir or default_cache_dir())
        # Resolved once, here: every worker this dataset is pickled into keeps the same limit.
        self.cache_limit = resolve_limit(cache_limit, self.cache_dir)
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
        self.data_dir: str | None = manifest.get("data_dir")
        rows = [s["rows"] for s in self.shards]
        if sum(rows) != info["rows"]:
            raise ManifestError(
                f"{self.url}: split {split!r} lists {info['rows']} rows but its shards hold {sum(rows)}"
            )
        self._starts = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(rows, out=self._starts[1:])
        # What a cache entry is bound to: this build (where it is, which fingerprint) and, per
        # shard, its path in the build and its bytes (cache.py).
        where = output.root if output.is_local else output.fs.unstrip_protocol(output.root)
        endpoint = self.storage_options.get("endpoint_url") or ""
        self.build_id = f"{where}|{endpoint}|{self.fingerprint}"
        self._validate_shards(output)
        if verify_hashes:
            self._verify_hashes(output)
        biggest = max((s["estimate"] for s in self.shards), default=0)
        if biggest > self.cache_limit:
            raise limit_too_small(self.cache_limit, biggest)
        self._output: Output | None = output
        self._pid = os.getpid()
        self.remote = not output.is_local
        self._init_process_state()

    def _init_process_state(self) -> None:
        # Entries this process has open: shard -> (columns, pin, bytes), least recently used first.
        self._flat: OrderedDict[int, tuple[FlatShard, int, int]] = OrderedDict()
        self._checked: set[tuple[str, int, int]] = set()  # entries whose CRCs matched here
        self._bcache: BoundedCache | None = None
        self._lengths: np.ndarray | None = None
        self.stats = CacheStats()
        # Entries a running Prefetcher made for the coming reads: not evicted to make room.
        self.upcoming: frozenset[str] = frozenset()

    # -- validation -------------------------------------------------------------------------

    def _validate_shards(self, output: Output) -> None:
        """Footers only: row counts and columns agree with the manifest (a few KB per shard).

        From an object store the footers are read on several threads: each costs a round trip."""
        for shard in self.shards:
            if escapes_output(output, shard["path"]):
                raise ManifestError(
                    f"{shard['path']} resolves outside {self.url} (a symlink?): refused"
                )
        needed = self.shard_schema.required_columns
        # A shard whose entry is in the cache was read and checked when the entry was made: its
        # rows, columns and size are in the entry, bound to this build, path and sha256.
        todo = []
        for k, shard in enumerate(self.shards):
            known = self._entry_facts(k, needed)
            if known is None:
                todo.append(shard)
            else:
                shard["size"], shard["estimate"] = known
        if output.is_local or len(todo) < 2:
            footers = [_footer(output, s["path"]) for s in todo]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(16, len(todo))) as pool:
                footers = list(pool.map(lambda s: _footer(output, s["path"]), todo))
        for shard, (meta, size) in zip(todo, footers, strict=True):
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
            shard["size"] = size
            shard["estimate"] = entry_estimate(meta)

    def _entry_facts(self, k: int, needed: Iterable[str]) -> tuple[int, int] | None:
        """(shard size, entry bytes) from shard k's cache entry when it has one made from this
        build's shard k with its rows and columns; else None."""
        target = self.entry_path(k)
        try:
            meta = read_meta(target)
            made = meta["source"]
            bound = (made["build"], made["path"], made["sha256"]) == (
                self.build_id,
                self.shards[k]["path"],
                self.shards[k]["sha256"],
            )
            if not bound or int(meta["rows"]) != self.shards[k]["rows"]:
                return None
            if any(c not in meta["columns"] for c in needed):
                return None
            # What the entry's checksums say it holds (a damaged copy is remade at that size).
            held = sum(int(f["size"]) for f in meta["files"].values()) + (1 << 12)
            return int(made["size"]), max(held, entry_bytes(target))
        except (CacheDamaged, KeyError, TypeError, ValueError, OSError):
            return None

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
        for key in ("_output", "_flat", "_checked", "_bcache", "_lengths", "stats", "upcoming"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._output = None
        self._init_process_state()

    def close(self) -> None:
        """Close this process's maps of cache entries (they become evictable)."""
        while self._flat:
            _, (_, pin, _) = self._flat.popitem(last=False)
            BoundedCache.unpin(pin)

    def __del__(self) -> None:
        try:
            if "_flat" in self.__dict__:
                self.close()
        except Exception:  # at interpreter exit modules may be gone; the fds close with it
            pass

    def _out(self) -> Output:
        # A forked DataLoader worker inherits the parent's filesystem object, whose connections
        # and event loop thread stay behind in the parent: it opens its own.
        if self._output is None or self._pid != os.getpid():
            self._output = Output(self.url, storage_options=self.storage_options)
            self._pid = os.getpid()
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

    def shard_of(self, rows: Iterable[int] | np.ndarray) -> np.ndarray:
        """The shard holding each row index (non-negative indices)."""
        return np.searchsorted(self._starts, np.asarray(rows, dtype=np.int64), side="right") - 1

    @property
    def shard_starts(self) -> np.ndarray:
        """Row index where each shard begins, and the total at the end (len(shards) + 1)."""
        return self._starts

    def source(self, k: int) -> ShardSource:
        shard = self.shards[k]
        return ShardSource(self.build_id, shard["path"], shard["sha256"])

    def entry_path(self, k: int) -> str:
        """Where shard k's decoded copy lives in the cache folder."""
        return shard_cache_path(self.cache_dir, self.source(k))

    def cache(self) -> BoundedCache:
        if self._bcache is None:
            self._bcache = BoundedCache(self.cache_dir, self.cache_limit)
        return self._bcache

    def _shard(self, k: int) -> FlatShard:
        got = self._flat.get(k)
        if got is not None:
            self._flat.move_to_end(k)
            return got[0]
        flat, pin = self._load(k)
        target = self.entry_path(k)
        self._flat[k] = (flat, pin, entry_bytes(target))
        # Keep maps while they take at most half the limit (always the newest): the rest of the
        # limit is for entries made ahead of use, and an entry held open cannot be evicted. Each
        # open entry holds a file descriptor per column: at most MAX_OPEN_SHARDS of them.
        budget = self.cache_limit // 2
        while len(self._flat) > 1 and (
            len(self._flat) > MAX_OPEN_SHARDS or sum(v[2] for v in self._flat.values()) > budget
        ):
            _, (_, old_pin, _) = self._flat.popitem(last=False)
            BoundedCache.unpin(old_pin)
        return flat

    def _load(self, k: int) -> tuple[FlatShard, int]:
        """Shard k's entry, opened and pinned; made (or waited for) when absent, rebuilt once when
        damaged or made from anything but this shard's bytes."""
        cache = self.cache()
        target = self.entry_path(k)
        for attempt in range(3):
            pin = cache.pin(target)
            if pin is None:
                self.stats.misses += 1
                log.debug("reader cache: miss %s (%s)", self.shards[k]["path"], target)
                start = time.perf_counter()
                pin = self._fetch_pinned(k)
                self.stats.wait_s += time.perf_counter() - start
            else:
                self.stats.hits += 1
                log.debug("reader cache: hit %s", self.shards[k]["path"])
            try:
                st = os.stat(os.path.join(target, META_NAME))
                seen = (target, st.st_ino, st.st_mtime_ns)
                flat = load_flat(
                    target,
                    self.source(k),
                    size=self.shards[k]["size"],
                    checked=seen in self._checked,
                )
            except (CacheDamaged, FileNotFoundError) as exc:
                BoundedCache.unpin(pin)
                log.debug("reader cache: %s; rebuilding it", exc)
                discard_entry(target)
                if attempt == 2:
                    raise
                continue
            self._checked.add(seen)
            return flat, pin
        raise ManifestError(f"{self.shards[k]['path']}: its reader cache entry kept disappearing")

    def fetch(self, k: int, *, required: bool = True, keep: frozenset[str] = frozenset()) -> bool:
        """Make shard k's cache entry unless it exists (waiting while another process makes it).

        Not `required` (ahead of use): only when the cache has room after evicting what is not
        in use nor in `keep`; returns False if it has none."""
        cache = self.cache()
        target = self.entry_path(k)
        if os.path.exists(os.path.join(target, META_NAME)):
            return True
        with cache.making(target):
            if os.path.exists(os.path.join(target, META_NAME)):
                return True  # another process made it while this one waited
            shard = self.shards[k]
            out = self._out()
            need = shard["estimate"] + (0 if out.is_local else shard["size"])
            room = cache.reserve(need, keep=keep, required=required)
            if room is None:
                return False
            try:
                self._make(k, target, room.work)
                self.stats.made += 1
            finally:
                room.release()
        return True

    def _fetch_pinned(self, k: int) -> int:
        """Shard k's entry, pinned: the one there, else made here and pinned from the moment it
        appears. Opening an entry after making it left a moment where another process (a worker
        short of room, every other entry in use) evicted it first, again and again."""
        cache = self.cache()
        target = self.entry_path(k)
        with cache.making(target):  # no other process makes it meanwhile
            pin = cache.pin(target)
            if pin is not None:
                return pin  # made by another process while this one waited
            shard = self.shards[k]
            need = shard["estimate"] + (0 if self._out().is_local else shard["size"])
            room = cache.reserve(need, keep=self.upcoming, required=True)
            assert room is not None  # a required entry always gets its room
            try:
                pin = self._make(k, target, room.work, pin=True)
                self.stats.made += 1
            finally:
                room.release()
            return pin if pin is not None else self._pin_made(target)

    def _pin_made(self, target: str) -> int:
        pin = self.cache().pin(target)
        if pin is None:
            raise ManifestError(f"{target}: the reader cache entry just made is gone")
        return pin

    def _make(self, k: int, target: str, work: str, *, pin: bool = False) -> int | None:
        try:
            return self._make_from(k, target, work, pin=pin)
        except (FileNotFoundError, ManifestError) as exc:
            replaced = self._replaced()
            if replaced is None:
                raise
            raise ManifestError(
                f"{self.shards[k]['path']} is gone: the build at {self.url} was replaced since "
                f"this reader opened it ({replaced}); open it again, e.g. ShardDataset({self.url!r})"
            ) from exc

    def _replaced(self) -> str | None:
        """How the build now differs from the one this reader opened (a `prep build --force` or a
        rebuild swapped its manifest and removed the old shards), or None where it does not."""
        try:
            now = read_manifest(self._out())
        except ShardprepError as exc:
            return f"its manifest now reads: {exc}"
        if now is None:
            return "it has no manifest now"
        if now.get("fingerprint") != self.fingerprint or now.get("data_dir") != self.data_dir:
            return (
                f"data folder {now.get('data_dir')}, fingerprint {str(now.get('fingerprint'))[:12]}"
            )
        return None

    def _make_from(self, k: int, target: str, work: str, *, pin: bool = False) -> int | None:
        shard = self.shards[k]
        out = self._out()
        remote = out.path(shard["path"])
        for attempt in range(2):
            start = time.perf_counter()
            if out.is_local:
                parquet = remote
            else:
                parquet = os.path.join(work, "shard.parquet")
                download(
                    out.fs,
                    remote,
                    parquet,
                    size=shard["size"],
                    url=out.fs.unstrip_protocol(remote),
                )
            try:
                held = build_flat_cache(
                    parquet,
                    target,
                    expected_rows=shard["rows"],
                    source=self.source(k),
                    work_dir=work,
                    pin=pin,
                )
            except ShardBytesDiffer:
                if attempt == 1 or out.is_local:
                    raise
                log.debug("reader cache: %s differs from its sha256; fetching it again", remote)
                continue
            log.debug(
                "reader cache: made %s from %s in %.2fs",
                os.path.basename(target),
                shard["path"],
                time.perf_counter() - start,
            )
            return held
        return None

    def needed_bytes(self) -> int:
        """An upper bound of the cache space every shard of this split takes at once."""
        return sum(s["estimate"] for s in self.shards)

    def prepare(self) -> ShardDataset:
        """Decode every shard into the cache now (do it before starting workers to do it once).

        A split larger than the cache limit cannot be: read it with a `Prefetcher`
        (`ResumableLoader` starts one) instead."""
        if self.needed_bytes() > self.cache_limit:
            raise ShardprepError(
                f"{self.url}: split {self.split!r} needs up to {human_bytes(self.needed_bytes())} of "
                f"reader cache, more than its limit {human_bytes(self.cache_limit)}: read it in order "
                "with ResumableLoader (it fetches shards ahead of use) or raise cache_limit"
            )
        for k in range(len(self.shards)):
            self.fetch(k, required=True)
        return self

    def prefetcher(self, order: Iterable[int] | np.ndarray, *, threads: int = 4) -> Prefetcher:
        """A Prefetcher for rows read in `order` (call its `start()`, `advance()`, `close()`)."""
        from shardprep.torch.prefetch import Prefetcher

        return Prefetcher(self, order, threads=threads)

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


def _footer(output: Output, rel: str) -> tuple[pq.FileMetaData, int]:
    """A shard's Parquet footer and its size in bytes."""
    try:
        with output.fs.open(output.path(rel), "rb") as f:
            meta = pq.read_metadata(f)
            size = getattr(f, "size", None)
        if not isinstance(size, int):
            size = int(output.fs.size(output.path(rel)))
    except FileNotFoundError:
        raise ManifestError(
            f"{rel} is listed in the manifest but missing (run `prep verify`)"
        ) from None
    except pa.ArrowException as exc:
        raise ManifestError(f"{rel} is not a readable Parquet file: {exc}") from exc
    return meta, size


def _open(url: str, storage_options: dict[str, Any]) -> tuple[Output, dict[str, Any]]:
    """The build's storage and its validated manifest (format version, shard paths inside it)."""
    output = Output(url, storage_options=storage_options)
    manifest = read_manifest(output)
    if manifest is None:
        raise no_manifest_error(output, url)
    return output, manifest
