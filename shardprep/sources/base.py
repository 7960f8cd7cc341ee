"""What every reader shares: the row as read (`RawRow`), one file's rows as a format yields them,
and the recorded positions a JSONL reader can start at. A leaf: imports nothing of shardprep's
but the errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from shardprep.errors import RowError


@dataclass
class RawRow:
    """One row as read. `line`: 1-based line (JSONL, CSV), 0-based element (JSON array) or row
    (Parquet, the Hub); `unit` names which, for messages."""

    index: int
    file: str
    line: int | None
    data: dict[str, Any] | None
    error: RowError | None = None
    unit: str = "line"
    # Build-level ordinal among selected rows (set by the unit reader; used by the test split).
    ordinal: int | None = None


# A row's bytes at most (the recipe's `max_row_bytes`): a longer JSON Lines line, JSON array
# element or CSV line is a bad row (`row_too_large`), passed over without being held in memory.
# Large for any real conversation, small enough that one row of a hostile file (1.5 GB from a
# 6.6 MB .gz) cannot exhaust memory.
DEFAULT_MAX_ROW_BYTES = 64 * 1024 * 1024

# (line, data, error) as a file format's reader yields it; data is None for rows counted but skipped.
FileRow = tuple[int | None, dict[str, Any] | None, RowError | None]

Seek = tuple[int, int, int]  # (row index in the file, 1-based line number, byte offset)


@dataclass(frozen=True)
class Count:
    """A file's rows (bad rows included: they take an index too), and for a plain JSONL file the
    positions recorded on the way, so a reader of a later row range need not scan from the top."""

    rows: int
    seeks: tuple[Seek, ...] = ()


@dataclass(frozen=True)
class Identity:
    """What the fingerprint and the manifest record about a source's version: each file's
    identity, and for a Hub source the dataset, split and resolved commit."""

    files: list[dict[str, Any]]
    hub: dict[str, Any] | None = None


@dataclass(frozen=True)
class Piece:
    """A part of a source that work units are cut from (a file, a Hub shard), as counting found it.

    A unit carries its piece (narrowed by `from_row`), so a worker reads it with nothing else
    recorded anywhere: each kind of source subclasses Piece with what its reader needs.
    """

    label: str  # what rows read from it name as their file
    rows: int
    whole: bool = False  # True: read by one unit (rows past k are reached only through rows < k)

    def from_row(self, row: int) -> Piece:
        """This piece as a unit reading from `row` on carries it (drops what that unit needs not)."""
        return self


def bad_row(url: str, line: int, reason: str, message: str) -> FileRow:
    return line, None, RowError(reason, message, file=url, line=line)


@dataclass(frozen=True)
class FileFormat:
    """One file format's reader, as the format table (`readers.FORMATS`) holds it.

    `rows(url, storage_options, skip, batch_size, seek, max_row_bytes)` yields every row of the
    file in order, the first `skip` as (line, None, None) (counted, not parsed); with `seek` (a
    position `count` recorded) it starts there instead of at the top; a row whose bytes exceed
    `max_row_bytes` is a `row_too_large` bad row where the format can tell without reading it
    whole (JSON Lines, JSON arrays, CSV). `count(url, storage_options, max_row_bytes)` counts rows
    as `rows` would yield them under the same bound.
    """

    name: str
    extensions: tuple[str, ...]  # suffixes that name the format (before any compression suffix)
    rows: Callable[[str, dict[str, Any] | None, int, int, Seek | None, int], Iterator[FileRow]]
    count: Callable[[str, dict[str, Any] | None, int], Count]
    unit: str = "line"  # what its row positions count, as messages name them (RowError.unit)
