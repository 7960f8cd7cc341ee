"""Deterministic row selection: per-source skip / fraction / take / repeat and the hashed test split.

Every decision is a pure function of (seed, source name, source row index), computed with a
vectorised splitmix64 hash. Nothing depends on worker count, batch size, engine or resumes, and no
per-row state has to be shipped to workers: a unit recomputes the decision for its own rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_SCAN = 1 << 20  # rows hashed per step when looking for the `take` cut-off


def hash_key(*parts: object) -> int:
    """A 64-bit key from the purpose, seed and source name (sha256: stable across Python runs)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def uniform(key: int, rows: np.ndarray) -> np.ndarray:
    """A float in [0, 1) per row index, fixed by `key` (splitmix64; uint64 arithmetic wraps)."""
    with np.errstate(over="ignore"):
        x = rows.astype(np.uint64) ^ np.uint64(key)
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class Selection:
    """Which source rows a source contributes: rows in [lo, hi) kept by the fraction hash."""

    lo: int
    hi: int
    fraction: float | None  # None keeps every row of the range
    key: int
    repeat: int = 1

    def mask(self, rows: np.ndarray) -> np.ndarray:
        keep = (rows >= self.lo) & (rows < self.hi)
        if self.fraction is not None:
            keep &= uniform(self.key, rows) < self.fraction
        return keep

    def count(self, start: int, stop: int) -> int:
        """Selected rows among source rows [start, stop), hashed in bounded chunks."""
        start, stop = max(start, self.lo), min(stop, self.hi)
        if stop <= start:
            return 0
        if self.fraction is None:
            return stop - start
        total = 0
        for a in range(start, stop, _SCAN):
            b = min(stop, a + _SCAN)
            total += int(np.count_nonzero(uniform(self.key, np.arange(a, b)) < self.fraction))
        return total


def select(
    total_rows: int,
    *,
    name: str,
    seed: int,
    skip: int = 0,
    take: int | None = None,
    fraction: float | None = None,
    repeat: int = 1,
) -> Selection:
    """skip the first `skip` rows, keep a seeded `fraction` of the rest, then the first `take` of those."""
    lo = min(skip, total_rows)
    frac = None if fraction is None or fraction >= 1.0 else fraction
    key = hash_key("fraction", seed, name)
    hi = total_rows
    if take is not None:
        if frac is None:
            hi = min(total_rows, lo + take)
        else:
            # Walk the hashes until `take` rows are kept: O(rows up to the cut-off), chunked.
            kept = 0
            hi = total_rows
            for a in range(lo, total_rows, _SCAN):
                b = min(total_rows, a + _SCAN)
                hits = np.flatnonzero(uniform(key, np.arange(a, b)) < frac)
                if kept + len(hits) >= take:
                    hi = a + int(hits[take - kept - 1]) + 1 if take > kept else a
                    break
                kept += len(hits)
    return Selection(lo=lo, hi=hi, fraction=frac, key=key, repeat=repeat)


def test_mask(seed: int, name: str, rows: np.ndarray, fraction: float) -> np.ndarray:
    """`split.test_fraction`: a row is held out when its hash falls below the fraction.

    Keyed by source name and source row, so a row's split never changes when other sources are
    added or the mixture changes, and all repeat copies of a row land in the same split.
    """
    return uniform(hash_key("test", seed, name), rows) < fraction
