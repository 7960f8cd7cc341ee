"""JSON Lines (`.jsonl`, `.ndjson`): one object per non-blank line.

Counting a plain (uncompressed) file records every `SEEK_EVERY`-th row's position, returned with
the count; a work unit in the middle of a large file starts reading there instead of scanning from
the top (which made a file's units cost O(rows^2) in total).
"""

from __future__ import annotations

import bisect
import codecs
import json
from collections.abc import Iterator
from typing import IO, Any

from shardprep.errors import SourceError
from shardprep.jsonparse import NOT_PARSED, fast_loads
from shardprep.sources.base import (
    DEFAULT_MAX_ROW_BYTES,
    Count,
    FileFormat,
    FileRow,
    Seek,
    bad_row,
)
from shardprep.sources.opening import compression_of, open_binary
from shardprep.sources.rowcheck import TOO_DEEP, object_problem, row_too_large

SEEK_EVERY = 128
_READ_BLOCK = 1 << 20


def seek_at(seeks: tuple[Seek, ...], row: int) -> Seek | None:
    """The last recorded position at or before `row` (None: the top of the file is as good)."""
    i = bisect.bisect_right(seeks, (row, 1 << 62, 0)) - 1
    return seeks[i] if i >= 0 and seeks[i][0] > 0 else None


# Leading bytes of files that are not JSON Lines whatever their name says.
_FOREIGN = (
    (b"PAR1", "a Parquet file", "name it .parquet or set the source's `file_format: parquet`"),
    (b"\x1f\x8b", "gzip-compressed", "name it with a .gz suffix (x.jsonl.gz)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "name it with a .zst suffix (x.jsonl.zst)"),
)


def _not_json_lines(url: str, first: bytes) -> SourceError | None:
    """The file's first line says it is another format (a wrong name): one error for the file
    instead of every line counted as a bad row, which `on_error: skip` would let pass."""
    for magic, what, fix in _FOREIGN:
        if first.startswith(magic):
            return SourceError(f"{url} is {what}, not JSON Lines: {fix}")
    head = first.lstrip(codecs.BOM_UTF8).strip()
    if head == b"[" or (head.startswith(b"[{") and head.endswith(b"]")):
        return SourceError(
            f"{url} holds a JSON array, not JSON Lines: name it .json or set the source's "
            "`file_format: json`"
        )
    return None


def _lines(f: IO[bytes], first: int, limit: int) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes, False) per non-blank line. A line longer than `limit` bytes (its
    newline not counted) is passed over in blocks, never held whole, and given as (line number,
    its first bytes, True)."""
    lineno = first - 1
    while True:
        raw = f.readline(limit + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) <= limit or raw.endswith(b"\n"):
            if raw.strip():
                yield lineno, raw, False
            continue
        blank = not raw.strip()
        head = raw[:64]
        del raw
        while True:  # the rest of the line
            block = f.readline(_READ_BLOCK)
            blank = blank and not block.strip()
            if not block or block.endswith(b"\n"):
                break
        if not blank:  # a long run of whitespace is a blank line, as `count` sees it
            yield lineno, head, True


def rows(
    url: str,
    storage_options: dict[str, Any] | None,
    skip: int,
    batch_size: int = 0,
    seek: Seek | None = None,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
) -> Iterator[FileRow]:
    """(line, data, error) per non-blank line; the first `skip` rows are counted but not parsed.

    With `seek`, reading starts at that recorded position: rows before it are not yielded at all.
    A line longer than `max_row_bytes` is a `row_too_large` bad row, read in blocks and dropped.
    """
    seen = seek[0] if seek else 0
    with open_binary(url, storage_options) as f:
        if seek:
            f.seek(seek[2])
        for lineno, raw, too_large in _lines(f, seek[1] if seek else 1, max_row_bytes):
            if lineno == 1:  # checked by whichever unit reads the file's top, skipped or not
                foreign = _not_json_lines(url, raw)
                if foreign is not None:
                    raise foreign
            seen += 1
            if seen <= skip:
                yield lineno, None, None
                continue
            if too_large:
                yield bad_row(url, lineno, *row_too_large("line", max_row_bytes))
                continue
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            data = fast_loads(raw)
            if data is NOT_PARSED:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield bad_row(url, lineno, "invalid_utf8", f"invalid UTF-8 at byte {e.start}")
                    continue
            try:
                if data is NOT_PARSED:
                    data = json.loads(text)
            except json.JSONDecodeError as e:
                yield bad_row(
                    url, lineno, "malformed_json", f"malformed JSON: {e.msg} at column {e.colno}"
                )
                continue
            except RecursionError:
                yield bad_row(url, lineno, "too_deeply_nested", TOO_DEEP)
                continue
            problem = object_problem(data, raw)
            if problem is not None:
                yield bad_row(url, lineno, *problem)
                continue
            yield lineno, data, None


def count(
    url: str,
    storage_options: dict[str, Any] | None,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,  # a line is a row however long
) -> Count:
    """Non-blank lines, by the same bytes-level test the reader uses, without decoding anything;
    for an uncompressed file, with seek positions recorded on the way.

    Linear in the file's bytes however long its lines: a line spanning many blocks is carried as
    (length, whether it holds anything but whitespace), never as its bytes (joining a carried
    tail to each new block cost O(line^2): 26 s for one 200 MB line)."""
    n = 0
    lineno = 0
    pos = 0  # byte offset of the current line
    seeks: list[Seek] = []
    record = compression_of(url) is None  # a decompressed stream cannot seek
    carried = 0  # bytes of the current line read so far (before this block)
    carried_text = False  # whether they hold anything but whitespace
    with open_binary(url, storage_options) as f:
        while True:
            block = f.read(_READ_BLOCK)
            if not block:
                break
            lines = block.split(b"\n")
            if len(lines) == 1:  # no line ends in this block
                carried += len(block)
                carried_text = carried_text or bool(block.strip())
                continue
            for i, ln in enumerate(lines[:-1]):
                lineno += 1
                if i == 0:
                    text = carried_text or bool(ln.strip())
                    length = carried + len(ln)
                else:
                    text, length = bool(ln.strip()), len(ln)
                if text:
                    if record and n % SEEK_EVERY == 0:
                        seeks.append((n, lineno, pos))
                    n += 1
                pos += length + 1
            carried, carried_text = len(lines[-1]), bool(lines[-1].strip())
    if carried_text:
        n += 1
    return Count(n, tuple(seeks))


FORMAT = FileFormat("jsonl", (".jsonl", ".ndjson"), rows, count)
