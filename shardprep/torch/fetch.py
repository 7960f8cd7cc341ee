"""Whole-shard downloads from any fsspec store: ranged reads, retried and resumed.

A transient error (a dropped connection, a timeout, a 5xx or 429: `sources.retry.is_transient`)
is retried with backoff, continuing from the bytes already on disk; a permanent one (missing,
refused) fails at once naming the shard's URL.
"""

from __future__ import annotations

import os
import time
from typing import Any

from shardprep.errors import ManifestError
from shardprep.sources import retry

CHUNK = 16 << 20  # one ranged GET per 16 MiB


def download(fs: Any, remote: str, local: str, *, size: int, url: str) -> None:
    """Copy `remote` (of `size` bytes) to `local`."""
    attempt = 0
    with open(local, "wb"):
        pass
    while True:
        done = os.path.getsize(local)
        if done >= size:
            return
        try:
            block = fs.cat_file(remote, start=done, end=min(done + CHUNK, size))
            if not block:
                raise ConnectionError(f"no bytes at offset {done} of {size}")
        except Exception as exc:
            if not retry.is_transient(exc) or attempt >= retry.ATTEMPTS - 1:
                raise ManifestError(f"cannot fetch {url}: {retry.describe(exc)}") from exc
            time.sleep(retry.backoff(attempt))
            attempt += 1
            continue
        want = min(CHUNK, size - done)
        if len(block) != want and not (done == 0 and len(block) == size):
            # A server that ignores Range answers with the whole object (or a short read).
            raise ManifestError(
                f"{url}: asked for bytes {done}..{done + want} and got {len(block)} bytes "
                "(does the server honour ranged reads?)"
            )
        with open(local, "ab") as out:
            out.write(block)
        attempt = 0  # progress: the next error starts its own count
