"""The file format table: which reader reads a file, and one file's rows read with retries.

Adding a file format is one module providing a `FileFormat` (rows from a skip/seek position, and a
row count) and one entry in `FORMATS`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from shardprep.errors import SourceError
from shardprep.sources import csvfile, json_array, jsonl, parquet, retry
from shardprep.sources.base import DEFAULT_MAX_ROW_BYTES, Count, FileFormat, FileRow, Seek
from shardprep.sources.opening import CODEC_SUFFIXES

# In this order: a name is matched against each format's suffixes in turn, and `.ndjson` must be
# taken as JSON Lines before `.json` could match it.
FORMATS: dict[str, FileFormat] = {
    f.name: f for f in (jsonl.FORMAT, json_array.FORMAT, parquet.FORMAT, csvfile.FORMAT)
}
FILE_FORMATS = tuple(FORMATS)


def detect_format(url: str, file_format: str = "auto") -> str:
    """The file format named by `file_format`, or inferred from the suffix under any compression suffix."""
    if file_format != "auto":
        if file_format not in FORMATS:
            raise SourceError(
                f"unknown file format {file_format!r}; known: {', '.join(FILE_FORMATS)}"
            )
        return file_format
    name = url.split("?", 1)[0].lower()
    for suffix in CODEC_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for fmt in FORMATS.values():
        for ext in fmt.extensions:
            if name.endswith(ext):
                return fmt.name
    raise SourceError(
        f"cannot tell the format of {url} from its name; use .jsonl/.ndjson/.json/.parquet "
        "(optionally .gz/.zst) or set the source's file format"
    )


def read_file(
    url: str,
    fmt: str,
    storage_options: dict[str, Any] | None,
    skip: int,
    batch_size: int,
    seek: Seek | None = None,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
) -> Iterator[FileRow]:
    """The file's rows (`FileFormat.rows`), resumed after a transient error: the file is reopened
    and the rows already delivered are skipped (counted, not parsed), so the caller sees each row
    exactly once."""
    rows = FORMATS[fmt].rows
    first = seek[0] if seek else 0  # the row the reader starts yielding at
    return retry.resumed(
        lambda done: itertools.islice(
            rows(url, storage_options, max(skip, first + done), batch_size, seek, max_row_bytes),
            done,
            None,
        ),
        where=url,
    )


def count_file(
    url: str,
    fmt: str,
    storage_options: dict[str, Any] | None,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
) -> Count:
    """The file's rows counted (`FileFormat.count`), retried as a whole on a transient error."""
    count = FORMATS[fmt].count
    return retry.call(lambda: count(url, storage_options, max_row_bytes), url=url, what="read")
