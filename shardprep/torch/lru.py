"""A reader cache folder with a size limit, shared by every process on a node.

Entries (`cache.py`) are evicted least recently used first so that complete entries plus the work
in progress stay within the limit; only the entries some process has open are exempt (they are
"in use": removing their files would free nothing while they are mapped). Every rule is a file
lock (`fcntl.flock`, so a local file system: not NFS), which the kernel releases when a process
dies, so a killed reader never leaves the cache locked or its space reserved:

  .lock              held briefly while entries are counted, reserved for or evicted
  .locks/<entry>     held while one process makes that entry; the others wait, then reuse it
  .work/<id>.bytes   a reservation: the bytes a maker may write, held while it writes them in
                     .work/<id>/ (a reservation whose lock is free was a dead maker's: swept)
  <entry>/meta.json  held shared by each process that has the entry open; eviction needs it
                     exclusively, so an entry in use is skipped

Recency is the entry folder's mtime, touched when an entry is opened.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from shardprep.errors import ShardprepError
from shardprep.sizes import human_bytes, parse_size
from shardprep.torch.cache import (
    CACHE_VERSION,
    ENTRY_PREFIX,
    META_NAME,
    discard_entry,
    entry_bytes,
)

log = logging.getLogger("shardprep.reader")

LIMIT_ENV = "SHARDPREP_CACHE_LIMIT"
# Of the space free on the cache's disk (plus what the cache already holds) when a dataset opens.
DEFAULT_FRACTION = 0.75
_OLD_ENTRY = re.compile(r"^v([0-9]+)-[0-9a-f]+$")


def parse_limit(value: int | float | str, *, cache_dir: str) -> int:
    """Bytes from 20_000_000, "20GB", "1.5GiB", "512MiB" or "50%" (of the disk's free space plus
    what the cache folder already holds)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # NaN and infinity are not sizes; 0.5 would be a limit of 0 bytes.
        if not math.isfinite(value) or value < 1:
            raise ShardprepError(f"cache_limit must be a positive byte count, got {value!r}")
        return int(value)
    text = str(value).strip()
    if text.endswith("%"):
        try:
            number = float(text[:-1])
        except ValueError:
            number = -1.0
        if not 0 < number <= 100:
            raise ShardprepError(f"cache_limit {value!r}: a percentage is in (0, 100]")
        return int(room(cache_dir) * number / 100)
    try:
        limit = parse_size(text)
    except ValueError:
        raise ShardprepError(
            f"cache_limit {value!r} is not a size (write e.g. 20GB, 512MiB, 50% or a byte count)"
        ) from None
    if limit <= 0:
        raise ShardprepError(f"cache_limit must be positive, got {value!r}")
    return limit


def room(cache_dir: str) -> int:
    """Free bytes on the cache's disk plus the bytes its entries hold."""
    probe = cache_dir
    while not os.path.exists(probe):
        probe = os.path.dirname(probe) or "."
    st = os.statvfs(probe)
    held = sum(e.size for e in _entries(cache_dir)) if os.path.isdir(cache_dir) else 0
    return st.f_bavail * st.f_frsize + held


def resolve_limit(limit: int | float | str | None, cache_dir: str) -> int:
    """`limit`, else $SHARDPREP_CACHE_LIMIT, else DEFAULT_FRACTION of `room(cache_dir)`."""
    if limit is None:
        env = os.environ.get(LIMIT_ENV)
        if env:
            try:
                return parse_limit(env, cache_dir=cache_dir)
            except ShardprepError as exc:  # the user gave no cache_limit: name where it came from
                raise ShardprepError(f"${LIMIT_ENV}: {exc}") from None
        limit = f"{DEFAULT_FRACTION * 100:g}%"
    return parse_limit(limit, cache_dir=cache_dir)


def limit_too_small(limit: int, nbytes: int) -> ShardprepError:
    """The error for a cache limit below one shard's entry of up to `nbytes`."""
    have, need = human_bytes(limit), human_bytes(nbytes)
    if have == need:  # "3.0 MB is smaller than 3.0 MB" would say nothing: exact counts
        have, need = f"{limit:,} bytes", f"{nbytes:,} bytes"
    return ShardprepError(
        f"reader cache limit {have} is smaller than one shard's entry "
        f"(up to {need}): raise cache_limit (or ${LIMIT_ENV})"
    )


@dataclass
class _Entry:
    path: str
    size: int
    used: float


def _entries(cache_dir: str) -> list[_Entry]:
    """Complete entries of this cache version (a folder with its meta.json)."""
    out: list[_Entry] = []
    with os.scandir(cache_dir) as it:
        for e in it:
            if not e.name.startswith(ENTRY_PREFIX) or not e.is_dir(follow_symlinks=False):
                continue
            if not os.path.exists(os.path.join(e.path, META_NAME)):
                continue
            with contextlib.suppress(FileNotFoundError):
                out.append(_Entry(e.path, entry_bytes(e.path), e.stat().st_mtime))
    return out


@contextlib.contextmanager
def _flock(path: str, mode: int) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)  # releases the lock


class Reservation:
    """Room for one entry being made; its folder `work` is where the maker writes."""

    def __init__(self, cache: BoundedCache, nbytes: int) -> None:
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.nbytes = nbytes
        self.ledger = os.path.join(cache.work_dir, f"{self.id}.bytes")
        self.work = os.path.join(cache.work_dir, self.id)
        self._fd = os.open(self.ledger, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.write(self._fd, str(nbytes).encode())
        os.makedirs(self.work)

    def release(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.ledger)
        os.close(self._fd)


class BoundedCache:
    """One cache folder and its limit, as seen from one process (cheap to make; holds no state
    but the pins of the entries this object opened)."""

    def __init__(self, folder: str, limit: int) -> None:
        self.folder = folder
        self.limit = limit
        self.work_dir = os.path.join(folder, ".work")
        self.lock_dir = os.path.join(folder, ".locks")
        os.makedirs(self.work_dir, exist_ok=True)
        os.makedirs(self.lock_dir, exist_ok=True)
        self.evictions = 0
        self._sweep_older_versions()

    def _sweep_older_versions(self) -> None:
        """Remove entries an older reader made (`v<N>-<hex>` holding a meta.json of version N):
        no reader of this version reads or counts them. Anything else in the folder is kept."""
        with self._locked(), os.scandir(self.folder) as it:
            old = []
            for e in it:
                m = _OLD_ENTRY.match(e.name)
                if m is None or int(m.group(1)) >= CACHE_VERSION:
                    continue
                try:
                    with open(os.path.join(e.path, META_NAME), encoding="utf-8") as f:
                        version = json.load(f).get("version")
                except (OSError, ValueError, AttributeError):
                    continue
                if version == int(m.group(1)):
                    old.append(e.path)
        for path in old:
            log.debug("reader cache: removed %s (an older cache version)", os.path.basename(path))
            discard_entry(path)

    # -- the folder-wide lock and what it guards ----------------------------------------------

    def _locked(self) -> contextlib.AbstractContextManager[int]:
        return _flock(os.path.join(self.folder, ".lock"), fcntl.LOCK_EX)

    def _reserved(self) -> int:
        """Bytes reserved by live makers; a dead maker's reservation and work folder are swept."""
        total = 0
        with os.scandir(self.work_dir) as it:
            ledgers = [e.path for e in it if e.name.endswith(".bytes")]
        for ledger in ledgers:
            try:
                fd = os.open(ledger, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    total += int(os.pread(fd, 32, 0) or b"0")
                    continue
                shutil.rmtree(ledger.removesuffix(".bytes"), ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(ledger)
            finally:
                os.close(fd)
        return total

    def usage(self) -> int:
        """Bytes held by complete entries and reserved for entries being made."""
        with self._locked():
            return sum(e.size for e in _entries(self.folder)) + self._reserved()

    def _evict_one(self, entry: _Entry) -> bool:
        """Remove `entry` unless some process has it open (call with the folder lock held)."""
        try:
            fd = os.open(os.path.join(entry.path, META_NAME), os.O_RDONLY)
        except FileNotFoundError:
            return True
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # in use
            discard_entry(entry.path)
        finally:
            os.close(fd)
        self.evictions += 1
        log.debug(
            "reader cache: evicted %s (%s)", os.path.basename(entry.path), human_bytes(entry.size)
        )
        return True

    def reserve(self, nbytes: int, *, keep: frozenset[str], required: bool) -> Reservation | None:
        """Room for an entry of up to `nbytes`, evicting the least recently used entries not in
        use and not in `keep` (entry paths the caller needs soon). A `required` entry (the reader
        needs it now) is made even when nothing more can be evicted: the limit is exceeded by the
        entries in use only. Otherwise None when there is no room."""
        if nbytes > self.limit:
            raise limit_too_small(self.limit, nbytes)
        with self._locked():
            entries = sorted(_entries(self.folder), key=lambda e: e.used)
            used = sum(e.size for e in entries) + self._reserved()
            for entry in entries:
                if used + nbytes <= self.limit:
                    break
                if entry.path in keep:
                    continue
                if self._evict_one(entry):
                    used -= entry.size
            if used + nbytes > self.limit and not required:
                return None
            return Reservation(self, nbytes)

    # -- one entry: made once, opened (pinned) by many ----------------------------------------

    def making(self, entry: str) -> contextlib.AbstractContextManager[int]:
        """Held while `entry` is made: a second maker waits here, then finds it complete."""
        return _flock(os.path.join(self.lock_dir, os.path.basename(entry)), fcntl.LOCK_EX)

    def pin(self, entry: str) -> int | None:
        """Mark `entry` in use by this process (an fd to close to unpin) and as just used; None
        when it is not there (evicted, or never made)."""
        with self._locked():
            try:
                fd = os.open(os.path.join(entry, META_NAME), os.O_RDONLY)
            except FileNotFoundError:
                return None
            # Eviction takes the lock exclusively only while holding the folder lock, held here.
            fcntl.flock(fd, fcntl.LOCK_SH)
            with contextlib.suppress(OSError):
                os.utime(entry)
            return fd

    @staticmethod
    def unpin(fd: int) -> None:
        os.close(fd)

    @staticmethod
    def touch(entry: str) -> None:
        with contextlib.suppress(OSError):
            os.utime(entry, (time.time(), time.time()))
