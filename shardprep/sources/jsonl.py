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
from typing import Any

from shardprep.errors import SourceError
from shardprep.sources.base import Count, FileFormat, FileRow, Seek, bad_row
from shardprep.sources.opening import compression_of, open_binary
from shardprep.sources.rowcheck import (
    SURROGATE_ESCAPE_BYTES,
    TOO_DEEP,
    might_nest_deep,
    row_problem,
)

SEEK_EVERY = 128
_READ_BLOCK = 1 << 20


_NOT_PARSED = object()
# orjson reads ints beyond 64 bits as floats; the standard parser keeps them exact. A row with a
# run of 19 digits goes to the standard parser: found with translate + a substring search (two
# passes in C), as a regex costs more than the parse itself on digit-heavy text.
_DIGIT_MASK = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_RUN = b"0" * 19

try:
    import orjson

    def _fast_loads(raw: bytes) -> Any:
        """orjson's parse where it equals `json.loads` (it is several times faster), else
        _NOT_PARSED: anything orjson refuses (NaN, lone surrogates, 1e400, invalid UTF-8, deep
        nesting) and any long digit run go to the standard parser, which decides the value or
        the error exactly as before."""
        if _LONG_RUN in raw.translate(_DIGIT_MASK):
            return _NOT_PARSED
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _NOT_PARSED

except ImportError:  # pragma: no cover - orjson is a dependency; the standard parser is exact

    def _fast_loads(raw: bytes) -> Any:
        return _NOT_PARSED


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


def rows(
    url: str,
    storage_options: dict[str, Any] | None,
    skip: int,
    batch_size: int = 0,
    seek: Seek | None = None,
) -> Iterator[FileRow]:
    """(line, data, error) per non-blank line; the first `skip` rows are counted but not parsed.

    With `seek`, reading starts at that recorded position: rows before it are not yielded at all.
    """
    seen = seek[0] if seek else 0
    with open_binary(url, storage_options) as f:
        if seek:
            f.seek(seek[2])
        for lineno, raw in enumerate(f, start=seek[1] if seek else 1):
            if not raw.strip():
                continue
            if lineno == 1:  # checked by whichever unit reads the file's top, skipped or not
                foreign = _not_json_lines(url, raw)
                if foreign is not None:
                    raise foreign
            seen += 1
            if seen <= skip:
                yield lineno, None, None
                continue
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            data = _fast_loads(raw)
            if data is _NOT_PARSED:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield bad_row(url, lineno, "invalid_utf8", f"invalid UTF-8 at byte {e.start}")
                    continue
            try:
                if data is _NOT_PARSED:
                    data = json.loads(text)
            except json.JSONDecodeError as e:
                yield bad_row(
                    url, lineno, "malformed_json", f"malformed JSON: {e.msg} at column {e.colno}"
                )
                continue
            except RecursionError:
                yield bad_row(url, lineno, "too_deeply_nested", TOO_DEEP)
                continue
            if not isinstance(data, dict):
                kind = type(data).__name__
                yield bad_row(url, lineno, "not_an_object", f"expected a JSON object, got {kind}")
                continue
            surrogates = bool(SURROGATE_ESCAPE_BYTES.search(raw))
            deep = might_nest_deep(raw)
            if surrogates or deep:
                problem = row_problem(data, surrogates=surrogates, depth=deep)
                if problem is not None:
                    yield bad_row(url, lineno, *problem)
                    continue
            yield lineno, data, None


def count(url: str, storage_options: dict[str, Any] | None) -> Count:
    """Non-blank lines, by the same bytes-level test the reader uses, without decoding anything;
    for an uncompressed file, with seek positions recorded on the way."""
    n = 0
    lineno = 0
    pos = 0  # byte offset of the current line
    seeks: list[Seek] = []
    record = compression_of(url) is None  # a decompressed stream cannot seek
    tail = b""
    with open_binary(url, storage_options) as f:
        while True:
            block = f.read(_READ_BLOCK)
            if not block:
                break
            lines = (tail + block).split(b"\n")
            tail = lines.pop()
            for ln in lines:
                lineno += 1
                if ln.strip():
                    if record and n % SEEK_EVERY == 0:
                        seeks.append((n, lineno, pos))
                    n += 1
                pos += len(ln) + 1
    if tail.strip():
        n += 1
    return Count(n, tuple(seeks))


FORMAT = FileFormat("jsonl", (".jsonl", ".ndjson"), rows, count)
