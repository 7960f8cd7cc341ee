"""A local, memory-mappable copy of one shard: flat column arrays plus row offsets.

Parquet pages are compressed and must be decoded as whole row groups, so random access straight
from Parquet costs a row-group decode per sample. Instead each shard is decoded once, row group by
row group, into raw little files (one flat array per list column, with int64 offsets; one array per
scalar column; dictionary codes for string columns). Reading row i is then two offset lookups and
a slice of a memory map: O(1), no decode, shared between DataLoader workers through the page cache.

An entry is bound to the shard it was made from: its folder is named after (the build's identity,
the shard's path within the build, the sha256 of its bytes), and its `meta.json` records the three
plus the size of the bytes that were actually read, checked against the manifest's sha256 and
decoded. A manifest that gives one shard another's sha256 therefore finds no entry to reuse (the
bytes it then reads differ from the claim and are refused), and a rebuilt shard never reuses a
stale copy. An entry appears by an atomic rename: a reader sees a complete copy or none. Nothing
wrong is ever cached or served: a shard's bytes are checked before they are decoded (a tampered
shard never enters the cache, so restoring it cannot leave a wrong entry behind), and every file of
an entry carries its size and CRC-32 in `meta.json`, written last; an entry is trusted only when
all of them match and it names the shard asked for, and a damaged one is rebuilt. How many entries
a cache folder keeps, and who may make or remove one, is `lru.py`'s. This module needs numpy and
pyarrow only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import uuid
import zlib
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shardprep.errors import ManifestError
from shardprep.store.columns import numpy_view
from shardprep.store.storage import naming_errors

# Bumped when the layout below changes, so older copies are ignored rather than misread.
# 2: per-file size and CRC-32 in meta.json; shards checked against their sha256 before decoding.
# 3: entries named after and bound to (build, shard path, sha256 + size of the bytes decoded).
CACHE_VERSION = 3
META_NAME = "meta.json"
_CHUNK = 1 << 22


class CacheDamaged(ManifestError):
    """A reader cache entry does not match its own checksums (it is rebuilt from the shard)."""


class ShardBytesDiffer(ManifestError):
    """A shard's bytes do not have the sha256 the manifest gives them (fetched again once)."""


@dataclass(frozen=True)
class ShardSource:
    """What a cache entry is made from: a build (its URL and fingerprint), a shard's path within
    it, and the sha256 the manifest gives its bytes."""

    build: str
    path: str
    sha256: str

    def key(self) -> str:
        blob = json.dumps([self.build, self.path, self.sha256]).encode()
        return hashlib.sha256(blob).hexdigest()[:40]


def _crc_file(path: str) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            crc = zlib.crc32(block, crc)
    return crc


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> str:
    return os.environ.get("SHARDPREP_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "shardprep", "reader"
    )


ENTRY_PREFIX = f"v{CACHE_VERSION}-"


def shard_cache_path(cache_dir: str, source: ShardSource) -> str:
    return os.path.join(cache_dir, ENTRY_PREFIX + source.key())


def _map(path: str, dtype: str, count: int) -> np.ndarray:
    # np.memmap refuses empty files; an empty column is just an empty array.
    if count == 0:
        return np.zeros(0, dtype=dtype)
    # A plain ndarray view of the map: slicing a np.memmap subclass costs more per call.
    return np.asarray(np.memmap(path, dtype=dtype, mode="r", shape=(count,)))


@dataclass
class FlatShard:
    """One shard's columns as flat arrays (memory maps when loaded from the cache)."""

    rows: int
    lists: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # values, offsets
    scalars: dict[str, np.ndarray] = field(default_factory=dict)
    strings: dict[str, tuple[np.ndarray, list[str]]] = field(
        default_factory=dict
    )  # codes, dictionary

    def row(self, i: int) -> dict[str, Any]:
        """Row i: list columns as numpy views (no copy), scalars as Python values."""
        out: dict[str, Any] = {}
        for name, (values, offsets) in self.lists.items():
            out[name] = values[offsets[i] : offsets[i + 1]]
        for name, arr in self.scalars.items():
            out[name] = arr[i].item()
        for name, (codes, dictionary) in self.strings.items():
            out[name] = dictionary[codes[i]]
        return out

    def list_lengths(self, name: str) -> np.ndarray:
        offsets = self.lists[name][1]
        return np.diff(offsets)


def check_entry(path: str, meta: dict[str, Any]) -> None:
    """Every file of the entry has the size and CRC-32 recorded when it was written."""
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise CacheDamaged(f"{path}: reader cache entry lists no checksums")
    for name, want in files.items():
        file = os.path.join(path, name)
        try:
            size = os.path.getsize(file)
        except OSError:
            raise CacheDamaged(f"{file}: missing from the reader cache entry") from None
        if size != want["size"] or _crc_file(file) != want["crc32"]:
            raise CacheDamaged(f"{file}: reader cache file damaged (size or CRC-32 differs)")


def read_meta(path: str) -> dict[str, Any]:
    try:
        with open(os.path.join(path, META_NAME), encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise CacheDamaged(f"{path}: reader cache entry has no meta.json") from None
    except ValueError as exc:
        raise CacheDamaged(f"{path}: reader cache meta.json is damaged ({exc})") from None
    if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION:
        got = meta.get("version") if isinstance(meta, dict) else None
        raise CacheDamaged(f"{path}: reader cache version {got!r}, expected {CACHE_VERSION}")
    return meta


def load_flat(
    path: str, source: ShardSource | None = None, *, size: int | None = None, checked: bool = False
) -> FlatShard:
    """The entry at `path`, refused (CacheDamaged) unless it was made from `source` (and from
    bytes of `size`, when the shard's present size is known). `checked`: this process already
    matched every file's CRC-32 since the entry appeared (reopening it skips that pass)."""
    meta = read_meta(path)
    if source is not None:
        made = meta.get("source")
        want = {"build": source.build, "path": source.path, "sha256": source.sha256}
        if not isinstance(made, dict) or {k: made.get(k) for k in want} != want:
            raise CacheDamaged(f"{path}: reader cache entry was made from another shard")
        if size is not None and made.get("size") != size:
            raise CacheDamaged(f"{path}: reader cache entry was made from bytes of another size")
    if not checked:
        check_entry(path, meta)
    rows = int(meta["rows"])
    flat = FlatShard(rows=rows)
    for name, col in meta["columns"].items():
        kind = col["kind"]
        if kind == "list":
            values = _map(os.path.join(path, f"{name}.values"), col["dtype"], col["values"])
            offsets = _map(os.path.join(path, f"{name}.offsets"), "int64", rows + 1)
            flat.lists[name] = (values, offsets)
        elif kind == "scalar":
            flat.scalars[name] = _map(os.path.join(path, f"{name}.bin"), col["dtype"], rows)
        else:
            codes = _map(os.path.join(path, f"{name}.codes"), "int32", rows)
            flat.strings[name] = (codes, list(col["dictionary"]))
    return flat


def _kind(t: pa.DataType) -> str:
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list"
    if pa.types.is_dictionary(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return "scalar"
    raise ManifestError(f"reader cache: column type {t} is not supported")


def _as_numpy(arr: pa.Array) -> np.ndarray:
    """Zero-copy numpy view of a primitive array without nulls.

    pyarrow's to_numpy() imports pandas on first use (about a second per process); reading the
    data buffer directly avoids that in every DataLoader worker that builds a cache.
    """
    t = arr.type
    if arr.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return numpy_view(arr)
    return arr.to_numpy(zero_copy_only=False)


class _ColumnWriter:
    """Appends one column of successive row groups to its files; keeps only offsets in memory."""

    def __init__(self, folder: str, name: str, t: pa.DataType) -> None:
        self.name = name
        self.kind = _kind(t)
        self.dtype = ""
        self.count = 0  # flat values written (lists) or rows written (others)
        self.offsets: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        self.dictionary: dict[str, int] = {}
        suffix = {"list": "values", "scalar": "bin", "string": "codes"}[self.kind]
        self.file: IO[bytes] = open(os.path.join(folder, f"{name}.{suffix}"), "wb")  # noqa: SIM115
        self.folder = folder

    def add(self, column: pa.ChunkedArray) -> None:
        arr = column.combine_chunks()
        if self.kind == "list":
            offs = _as_numpy(arr.offsets).astype(np.int64)
            # flatten() honours slicing; offsets are rebased onto what was already written.
            values = _as_numpy(arr.flatten())
            self.dtype = self.dtype or values.dtype.str
            self.offsets.append(offs[1:] - offs[0] + self.count)
            self.file.write(np.ascontiguousarray(values).tobytes())
            self.count += len(values)
        elif self.kind == "scalar":
            values = _as_numpy(arr)
            self.dtype = self.dtype or values.dtype.str
            self.file.write(np.ascontiguousarray(values).tobytes())
            self.count += len(values)
        else:
            if not pa.types.is_dictionary(arr.type):
                arr = pc.dictionary_encode(arr)
            local = arr.dictionary.to_pylist()
            # Row groups carry their own dictionaries; map each onto one dictionary per shard.
            remap = np.array(
                [self.dictionary.setdefault(s, len(self.dictionary)) for s in local], dtype=np.int32
            )
            codes = remap[_as_numpy(arr.indices)] if len(local) else np.zeros(len(arr), np.int32)
            self.file.write(codes.astype(np.int32).tobytes())
            self.count += len(codes)

    def close(self) -> dict[str, Any]:
        self.file.close()
        if self.kind == "list":
            offsets = np.concatenate(self.offsets)
            offsets.tofile(os.path.join(self.folder, f"{self.name}.offsets"))
            return {"kind": "list", "dtype": self.dtype or "<i4", "values": self.count}
        if self.kind == "scalar":
            return {"kind": "scalar", "dtype": self.dtype or "<i8"}
        return {"kind": "string", "dictionary": list(self.dictionary)}


def entry_bytes(path: str) -> int:
    """Bytes an entry holds on disk (its files' sizes)."""
    total = 0
    with os.scandir(path) as it:
        for e in it:
            with contextlib.suppress(FileNotFoundError):
                total += e.stat(follow_symlinks=False).st_size
    return total


_WIDTH = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8, "INT96": 12}


def entry_estimate(meta: pq.FileMetaData) -> int:
    """An upper bound of the bytes a shard's cache entry takes, from its Parquet footer alone.

    Each leaf value becomes at most its physical width (a footer's value count includes the slots
    of nulls and empty lists), each list column adds int64 offsets, each string column int32 codes
    plus its distinct strings, JSON-escaped in meta.json (at most six bytes per byte)."""
    rows = meta.num_rows
    total = 1 << 12  # meta.json's own keys and checksums
    lists: set[str] = set()
    for c in range(meta.num_columns):
        col = meta.schema.column(c)
        top = col.path.split(".")[0]
        if col.max_repetition_level > 0:
            lists.add(top)
        values = 0
        uncompressed = 0
        for rg in range(meta.num_row_groups):
            chunk = meta.row_group(rg).column(c)
            values += chunk.num_values
            uncompressed += chunk.total_uncompressed_size
        width = _WIDTH.get(col.physical_type)
        total += values * width if width is not None else 4 * rows + 6 * uncompressed
    return total + sum(8 * (rows + 1) for _ in lists)


def check_shard_bytes(parquet_path: str, expected_sha256: str, label: str) -> int:
    """The shard's size, once its bytes are found to have the manifest's sha256."""
    if sha256_of(parquet_path) != expected_sha256:
        raise ShardBytesDiffer(
            f"{label}: sha256 differs from the manifest (the shard changed or is corrupt; "
            "`prep verify` names every damaged shard, `prep build RECIPE --force` rebuilds: a "
            "plain `prep build` checks shard sizes only and may answer up to date)"
        )
    return os.path.getsize(parquet_path)


def build_flat_cache(
    parquet_path: str,
    target: str,
    *,
    expected_rows: int,
    source: ShardSource,
    work_dir: str | None = None,
    pin: bool = False,
) -> int | None:
    """Decode a local Parquet shard into `target` (atomic: written beside it, then renamed).

    A shard whose bytes differ from `source.sha256` (the manifest's) is refused before any of it
    is decoded. `work_dir` holds the half-written entry (beside `target` by default).

    `pin`: return an fd holding a shared lock on the entry's meta.json, taken before the rename,
    so the entry is in use (`lru.py`: never evicted) from the moment it appears; None when another
    process's copy won the rename (pin that one as usual)."""
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    label = source.path
    size = check_shard_bytes(parquet_path, source.sha256, label)
    tmp = os.path.join(work_dir or parent, f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        # A full disk fails the column writes with an error that names no file: name the entry.
        with naming_errors(tmp):
            pf = pq.ParquetFile(parquet_path)
            if pf.metadata.num_rows != expected_rows:
                raise ManifestError(
                    f"{label} has {pf.metadata.num_rows} rows, the manifest says {expected_rows} (run `prep verify`)"
                )
            schema = pf.schema_arrow
            writers = [_ColumnWriter(tmp, f.name, f.type) for f in schema]
            try:
                for rg in range(pf.num_row_groups):
                    table = pf.read_row_group(rg)
                    for w in writers:
                        w.add(table.column(w.name))
            finally:
                columns = {w.name: w.close() for w in writers}
            # Checksums of what is on disk now, written last: an entry without them is never trusted.
            files = {
                name: {
                    "size": os.path.getsize(os.path.join(tmp, name)),
                    "crc32": _crc_file(os.path.join(tmp, name)),
                }
                for name in sorted(os.listdir(tmp))
            }
            meta = {
                "version": CACHE_VERSION,
                "rows": expected_rows,
                "columns": columns,
                "files": files,
                "source": {
                    "build": source.build,
                    "path": source.path,
                    "sha256": source.sha256,
                    "size": size,
                },
            }
            with open(os.path.join(tmp, META_NAME), "w", encoding="utf-8") as f:
                json.dump(meta, f)
                f.flush()
                os.fsync(f.fileno())
            held = None
            if pin:
                held = os.open(os.path.join(tmp, META_NAME), os.O_RDONLY)
                fcntl.flock(held, fcntl.LOCK_SH)
            try:
                try:
                    os.rename(tmp, target)
                except OSError:
                    # Another process (a DataLoader worker, a second job) finished the shard first.
                    if os.path.exists(os.path.join(target, META_NAME)):
                        if held is not None:
                            os.close(held)
                        return None
                    discard_entry(target)  # a folder without its meta.json is no entry: replace it
                    os.rename(tmp, target)
            except BaseException:
                if held is not None:
                    os.close(held)
                raise
            return held
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)


def discard_entry(target: str) -> None:
    """Move a damaged entry out of the way (atomic), then delete it; readers holding maps of its
    files keep them until they close."""
    aside = f"{target}.damaged-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(target, aside)
    except FileNotFoundError:
        return  # another process discarded it first
    shutil.rmtree(aside, ignore_errors=True)
