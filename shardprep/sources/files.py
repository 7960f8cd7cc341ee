"""Streaming row readers over local paths and any fsspec URL (JSONL, JSON arrays, Parquet, CSV).

Every reader holds at most one batch of rows plus a bounded read buffer, so a source of any size
streams in constant memory. A bad row becomes a `RawRow` carrying a `RowError` instead of stopping
the stream; the caller decides between failing and skipping (`on_error`). Network calls are
retried on transient errors (`retry.py`); a read cut mid-file reopens the file and resumes at the
row after the last one delivered, so no row is lost or repeated.
"""

from __future__ import annotations

import bisect
import codecs
import io
import itertools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from fsspec.core import url_to_fs
from fsspec.utils import get_protocol, infer_compression

from shardprep.errors import RowError, SourceError
from shardprep.sources import retry
from shardprep.sources.compressed import codec_available, damage_named, decompressor
from shardprep.sources.csvfile import csv_records
from shardprep.sources.rowcheck import (
    MAX_DEPTH,
    SURROGATE_ESCAPE_BYTES,
    SURROGATE_ESCAPE_TEXT,
    might_nest_deep,
    row_problem,
)

FILE_FORMATS = ("jsonl", "json", "parquet", "csv")

_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
}
_CODECS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}
_GLOB_CHARS = re.compile(r"[*?\[]")
# Object-store reads are network round trips; a large buffer turns line iteration into few requests.
_REMOTE_BUFFER = 1 << 20
_READ_BLOCK = 1 << 20
# Lone surrogates that `surrogateescape` puts in place of undecodable bytes.
_ESCAPED_BYTES = re.compile("[\udc80-\udcff]")
_WS = " \t\n\r"
_TOO_DEEP = f"the row nests lists/objects more than {MAX_DEPTH} levels deep"


# (line, data, error) as a file reader yields it; data is None for rows counted but skipped.
_Row = tuple[int | None, dict[str, Any] | None, RowError | None]


@dataclass
class RawRow:
    """One row as read. `line`: 1-based line (JSONL), 0-based element (JSON array) or row (Parquet)."""

    index: int
    file: str
    line: int | None
    data: dict[str, Any] | None
    error: RowError | None = None
    # Build-level ordinal among selected rows (set by the unit reader; used by the test split).
    ordinal: int | None = None


# --------------------------------------------------------------------------------------------- paths


def _is_local(path: str) -> bool:
    return get_protocol(path) in ("file", "local")


def expand_paths(
    path: str, *, base_dir: Path | None = None, storage_options: dict[str, Any] | None = None
) -> list[str]:
    """The files `path` names: relative local paths resolve against `base_dir`; globs are expanded
    and sorted (the order decides global row indices, so it must not depend on listing order)."""
    opts = storage_options or {}
    if _is_local(path):
        local = path[len("file://") :] if path.startswith("file://") else path
        p = Path(local).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        path = str(p)
    try:
        fs, fs_path = url_to_fs(path, **opts)
    except (ImportError, ValueError) as e:
        raise SourceError(f"cannot open {path}: {e}") from e
    local_fs = _is_local(path)

    def full(p: str) -> str:
        return p if local_fs else str(fs.unstrip_protocol(p))

    if _GLOB_CHARS.search(fs_path):
        try:
            matches = retry.call(
                lambda: [m for m in fs.glob(fs_path) if not fs.isdir(m)], url=path, what="list"
            )
        except ValueError as e:
            raise SourceError(f"cannot list {path}: {e}") from e
        if not matches:
            raise SourceError(f"no file matches {path!r}")
        return sorted(full(m) for m in matches)
    if retry.call(lambda: fs.isdir(fs_path), url=path, what="open"):
        raise SourceError(
            f"{path} is a folder; name its files with a glob such as {path.rstrip('/')}/*.jsonl"
        )
    exists = retry.call(lambda: fs.exists(fs_path), url=path, what="open")
    if not exists:
        raise SourceError(f"no such file: {path}")
    return [full(fs_path)]


def detect_format(url: str, file_format: str = "auto") -> str:
    """The file format named by `file_format`, or inferred from the suffix under any compression suffix."""
    if file_format != "auto":
        if file_format not in FILE_FORMATS:
            raise SourceError(
                f"unknown file format {file_format!r}; known: {', '.join(FILE_FORMATS)}"
            )
        return file_format
    name = url.split("?", 1)[0].lower()
    for suffix in _CODECS:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for ext, fmt in _EXTENSIONS.items():
        if name.endswith(ext):
            return fmt
    raise SourceError(
        f"cannot tell the format of {url} from its name; use .jsonl/.ndjson/.json/.parquet "
        "(optionally .gz/.zst) or set the source's file format"
    )


def _compression_of(url: str) -> str | None:
    # Our own table first: fsspec only infers codecs whose library is installed, and a .zst file
    # read as plain bytes would fail with a confusing JSON error instead of "install zstandard".
    name = url.split("?", 1)[0].lower()
    for suffix, codec in _CODECS.items():
        if name.endswith(suffix):
            return codec
    return infer_compression(name)


@contextmanager
def _open_binary(
    url: str, storage_options: dict[str, Any] | None, *, decompress: bool = True
) -> Iterator[IO[bytes]]:
    """A binary stream of the file's (decompressed) bytes; missing files become SourceError."""
    opts = storage_options or {}
    comp = _compression_of(url) if decompress else None
    if comp is not None and not codec_available(comp):
        hint = " (pip install zstandard)" if comp == "zstd" else ""
        raise SourceError(f"cannot decompress {url}: {comp} support is not installed{hint}")
    try:
        fs, fs_path = url_to_fs(url, **opts)
    except (ImportError, ValueError) as e:
        raise SourceError(f"cannot open {url}: {e}") from e
    try:
        raw: Any = retry.call(lambda: fs.open(fs_path, "rb"), url=url, what="open")
    except SourceError as e:
        if isinstance(e.__cause__, FileNotFoundError):
            raise SourceError(f"no such file: {url}") from e.__cause__
        raise
    # Decompressors do not close the file they wrap, so every layer is closed here.
    layers: list[Any] = [raw]
    try:
        if not _is_local(url) and hasattr(raw, "readinto"):
            layers.append(io.BufferedReader(raw, _REMOTE_BUFFER))
        if comp is not None:
            # Our own decompressors: each refuses a truncated file (zstd's stock reader does not).
            layers.append(decompressor(layers[-1], comp, url))
        with damage_named(url, comp):
            yield layers[-1]
    finally:
        for layer in reversed(layers):
            layer.close()


def file_identity(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What identifies this version of the file (size plus mtime / etag / generation) for fingerprints."""
    fs, fs_path = url_to_fs(url, **(storage_options or {}))
    try:
        info = retry.call(lambda: fs.info(fs_path), url=url, what="stat")
    except SourceError as e:
        if isinstance(e.__cause__, FileNotFoundError):
            raise SourceError(f"no such file: {url}") from e.__cause__
        raise
    ident: dict[str, Any] = {"uri": url, "size": info.get("size")}
    for key in (
        "mtime",
        "ETag",
        "etag",
        "md5Hash",
        "generation",
        "LastModified",
        "updated",
        "VersionId",
    ):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (datetime, date)):
            value = value.isoformat()
        elif not isinstance(value, (str, int, float, bool)):
            value = str(value)
        ident[key.lower()] = value
    return ident


# ------------------------------------------------------------------------------------------- readers


def _bad(url: str, line: int, reason: str, message: str) -> _Row:
    return line, None, RowError(reason, message, file=url, line=line)


# Plain JSONL files: every _SEEK_EVERY-th row's (row, line, byte offset), recorded while counting,
# so a work unit in the middle of a large file starts reading there instead of scanning from the
# top (which made a file's units cost O(rows^2) in total).
_SEEK_EVERY = 128
_JSONL_SEEKS: dict[str, list[tuple[int, int, int]]] = {}

Seek = tuple[int, int, int]  # (row index in the file, 1-based line number, byte offset)


def jsonl_seek(url: str, row: int) -> Seek | None:
    """The last recorded position at or before `row` of a plain JSONL file counted in this process."""
    points = _JSONL_SEEKS.get(url)
    if not points:
        return None
    i = bisect.bisect_right(points, (row, 1 << 62, 0)) - 1
    return points[i] if i > 0 else None


def _jsonl_rows(
    url: str, storage_options: dict[str, Any] | None, skip: int, seek: Seek | None = None
) -> Iterator[_Row]:
    """(line, data, error) per non-blank line; the first `skip` rows are counted but not parsed.

    With `seek`, reading starts at that recorded position: rows before it are not yielded at all.
    """
    seen = seek[0] if seek else 0
    with _open_binary(url, storage_options) as f:
        if seek:
            f.seek(seek[2])
        for lineno, raw in enumerate(f, start=seek[1] if seek else 1):
            if not raw.strip():
                continue
            seen += 1
            if seen <= skip:
                yield lineno, None, None
                continue
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield _bad(url, lineno, "invalid_utf8", f"invalid UTF-8 at byte {e.start}")
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                yield _bad(
                    url, lineno, "malformed_json", f"malformed JSON: {e.msg} at column {e.colno}"
                )
                continue
            except RecursionError:
                yield _bad(url, lineno, "too_deeply_nested", _TOO_DEEP)
                continue
            if not isinstance(data, dict):
                kind = type(data).__name__
                yield _bad(url, lineno, "not_an_object", f"expected a JSON object, got {kind}")
                continue
            surrogates = bool(SURROGATE_ESCAPE_BYTES.search(raw))
            deep = might_nest_deep(raw)
            if surrogates or deep:
                problem = row_problem(data, surrogates=surrogates, depth=deep)
                if problem is not None:
                    yield _bad(url, lineno, *problem)
                    continue
            yield lineno, data, None


class _JsonArrayReader:
    """Incremental parser of one top-level JSON array (or single object) over a sliding text buffer.

    `json.JSONDecoder.raw_decode` parses one element at a time from the buffer; consumed text is
    dropped, so memory is bounded by the largest element plus one read block.
    """

    def __init__(self, f: IO[bytes], url: str) -> None:
        self.f = f
        self.url = url
        # surrogateescape keeps undecodable bytes as lone surrogates, so one bad element can be
        # reported as invalid_utf8 without losing the rest of the file.
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.decode = json.JSONDecoder().raw_decode

    def _fill(self, want: int = _READ_BLOCK) -> bool:
        if self.eof:
            return False
        if self.pos:
            self.buf = self.buf[self.pos :]
            self.pos = 0
        block = self.f.read(want)
        if not block:
            self.eof = True
            self.buf += self.decoder.decode(b"", final=True)
            return False
        self.buf += self.decoder.decode(block)
        return True

    def _skip_ws(self) -> str:
        """The next non-whitespace character ('' at end of file), leaving pos on it."""
        while True:
            n = len(self.buf)
            while self.pos < n and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < n:
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def _value(self, element: int) -> tuple[Any, str]:
        """Decode the value at pos; returns it with its source text (for the UTF-8 check)."""
        want = _READ_BLOCK
        while True:
            try:
                value, end = self.decode(self.buf, self.pos)
            except RecursionError:
                # Too deep for the parser: find where the element ends without parsing it, so the
                # elements after it are still read; the row itself is reported as too deep.
                stop = _nested_end(self.buf, self.pos)
                if stop is None and not self.eof:
                    self._fill(want)
                    want = max(want * 2, len(self.buf))
                    continue
                if stop is None:
                    raise SourceError(
                        f"{self.url}: element {element} is cut by the end of the file"
                    ) from None
                self.pos = stop
                return _TOO_DEEP_VALUE, ""
            except json.JSONDecodeError as e:
                if not self.eof:
                    # Most likely the element is cut by the buffer end: read more and retry,
                    # doubling so that a huge element costs O(n log n), not O(n^2).
                    self._fill(want)
                    want = max(want * 2, len(self.buf))
                    continue
                raise SourceError(
                    f"{self.url}: malformed JSON in element {element}: {e.msg} "
                    f"(the rest of the file cannot be read)"
                ) from e
            if end == len(self.buf) and not self.eof:
                # A number at the buffer end may continue in the next block; make sure it ended.
                self._fill(want)
                want = max(want * 2, len(self.buf))
                continue
            text = self.buf[self.pos : end]
            self.pos = end
            return value, text

    def values(self, skip: int = 0) -> Iterator[tuple[int, Any, str]]:
        """(element index, value, its source text) per element (text '' below `skip`: unchecked)."""
        first = self._skip_ws()
        if first == "\ufeff":
            self.pos += 1
            first = self._skip_ws()
        if first == "":
            return
        if first != "[":
            value, text = self._value(0)
            if self._skip_ws() != "":
                raise SourceError(
                    f"{self.url}: extra data after the top-level JSON value; "
                    "if this is JSON Lines, name it .jsonl or set the file format to jsonl"
                )
            yield 0, value, text
            return
        self.pos += 1
        element = 0
        if self._skip_ws() == "]":
            self.pos += 1
        else:
            while True:
                value, text = self._value(element)
                yield element, value, text if element >= skip else ""
                element += 1
                sep = self._skip_ws()
                if sep == ",":
                    self.pos += 1
                    self._skip_ws()
                    continue
                if sep == "]":
                    self.pos += 1
                    break
                found = repr(sep) if sep else "end of file"
                raise SourceError(
                    f"{self.url}: malformed JSON array after element {element - 1}: expected ',' or ']', found {found}"
                )
        if self._skip_ws() != "":
            raise SourceError(f"{self.url}: extra data after the top-level JSON array")


_TOO_DEEP_VALUE = object()  # stands for an element too deep to parse


def _nested_end(buf: str, pos: int) -> int | None:
    """Index after the array/object starting at `pos` (strings honoured); None if `buf` ends first."""
    depth = 0
    i, n = pos, len(buf)
    while i < n:
        c = buf[i]
        if c == '"':
            i += 1
            while i < n and buf[i] != '"':
                i += 2 if buf[i] == "\\" else 1
            if i >= n:
                return None
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _json_rows(url: str, storage_options: dict[str, Any] | None, skip: int) -> Iterator[_Row]:
    with _open_binary(url, storage_options) as f:
        for element, value, text in _JsonArrayReader(f, url).values(skip):
            if element < skip:
                yield element, None, None
                continue
            if value is _TOO_DEEP_VALUE:
                yield _bad(url, element, "too_deeply_nested", _TOO_DEEP)
                continue
            if _ESCAPED_BYTES.search(text):
                yield _bad(url, element, "invalid_utf8", "invalid UTF-8 in this element")
                continue
            if not isinstance(value, dict):
                kind = type(value).__name__
                yield _bad(url, element, "not_an_object", f"expected a JSON object, got {kind}")
                continue
            surrogates = bool(SURROGATE_ESCAPE_TEXT.search(text))
            deep = might_nest_deep(text)
            if surrogates or deep:
                problem = row_problem(value, surrogates=surrogates, depth=deep)
                if problem is not None:
                    yield _bad(url, element, *problem)
                    continue
            yield element, value, None


def _parquet_rows(
    url: str, storage_options: dict[str, Any] | None, skip: int, batch_size: int
) -> Iterator[_Row]:
    import pyarrow.parquet as pq

    with _open_binary(url, storage_options, decompress=False) as f:
        try:
            pf = pq.ParquetFile(f)
        # pyarrow raises ArrowInvalid and friends (no common base) for a file that is not Parquet.
        except Exception as e:
            if retry.is_transient(e):
                raise  # a network hiccup, not a bad file: let the caller retry
            raise SourceError(f"cannot read Parquet file {url}: {e}") from e
        meta = pf.metadata
        groups: list[int] = []
        first_row = offset = 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if offset + n <= skip and not groups:
                offset += n
                continue
            if not groups:
                first_row = offset
            groups.append(g)
        # Row groups wholly below `skip` are never read; their rows are only counted.
        for r in range(first_row if groups else offset):
            yield r, None, None
        row = first_row
        if groups:
            for batch in pf.iter_batches(batch_size=batch_size, row_groups=groups):
                for data in batch.to_pylist():
                    yield row, (data if row >= skip else None), None
                    row += 1


def _count_parquet(url: str, storage_options: dict[str, Any] | None) -> int:
    import pyarrow.parquet as pq

    with _open_binary(url, storage_options, decompress=False) as f:
        try:
            return int(pq.ParquetFile(f).metadata.num_rows)
        except Exception as e:  # see _parquet_rows
            if retry.is_transient(e):
                raise
            raise SourceError(f"cannot read Parquet file {url}: {e}") from e


def _csv_rows(url: str, storage_options: dict[str, Any] | None, skip: int) -> Iterator[_Row]:
    """One dict per CSV record, every value a string (no type guessing: "007" stays "007")."""
    records = csv_records(url, lambda: _open_binary(url, storage_options))
    for i, (line, data, problem) in enumerate(records):
        if i < skip:
            yield line, None, None
        elif problem is not None:
            yield _bad(url, line, *problem)
        else:
            yield line, data, None


def _read_file(
    url: str, fmt: str, storage_options: dict[str, Any] | None, skip: int, batch_size: int,
    seek: Seek | None = None,
) -> Iterator[_Row]:
    if fmt == "jsonl":
        return _jsonl_rows(url, storage_options, skip, seek)
    if fmt == "json":
        return _json_rows(url, storage_options, skip)
    if fmt == "csv":
        return _csv_rows(url, storage_options, skip)
    return _parquet_rows(url, storage_options, skip, batch_size)


def _file_rows(
    url: str, fmt: str, storage_options: dict[str, Any] | None, skip: int, batch_size: int,
    seek: Seek | None = None,
) -> Iterator[_Row]:
    """`_read_file`, resumed after a transient error: the file is reopened and the rows already
    delivered are skipped (counted, not parsed), so the caller sees each row exactly once."""
    first = seek[0] if seek else 0  # the row _read_file starts yielding at
    return retry.resumed(
        lambda done: itertools.islice(
            _read_file(url, fmt, storage_options, max(skip, first + done), batch_size, seek), done, None
        ),
        where=url,
    )


def iter_source_batches(
    path: str,
    *,
    base_dir: Path | None = None,
    storage_options: dict[str, Any] | None = None,
    batch_size: int = 1024,
    file_format: str = "auto",
    start: int = 0,
    stop: int | None = None,
    seek: Seek | None = None,
) -> Iterator[list[RawRow]]:
    """Rows of every file `path` names, in order, as lists of at most `batch_size` RawRows.

    `seek` (from `jsonl_seek`, for a path naming one plain JSONL file) starts reading at a recorded
    position at or before `start` instead of at the top of the file.

    `index` counts rows across the files of the source. `start`/`stop` select a row range (a work
    unit): rows before `start` are counted without building rows (Parquet skips whole row groups),
    and reading stops at `stop`. A batch may hold rows of several files.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    files = expand_paths(path, base_dir=base_dir, storage_options=storage_options)
    formats = [detect_format(u, file_format) for u in files]
    if seek is not None and (len(files) != 1 or formats[0] != "jsonl" or seek[0] > start):
        seek = None  # only meaningful for the one JSONL file it was recorded for
    batch: list[RawRow] = []
    index = seek[0] if seek else 0
    for url, fmt in zip(files, formats, strict=True):
        if stop is not None and index >= stop:
            break
        skip = start if seek else max(0, start - index)  # with a seek, rows count from the file top
        for line, data, error in _file_rows(url, fmt, storage_options, skip, batch_size, seek):
            if stop is not None and index >= stop:
                break
            if index >= start:
                batch.append(RawRow(index=index, file=url, line=line, data=data, error=error))
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
            index += 1
    if batch:
        yield batch


def iter_source_rows(
    path: str,
    *,
    base_dir: Path | None = None,
    storage_options: dict[str, Any] | None = None,
    file_format: str = "auto",
    start: int = 0,
    stop: int | None = None,
) -> Iterator[RawRow]:
    """`iter_source_batches`, one row at a time."""
    for batch in iter_source_batches(
        path,
        base_dir=base_dir,
        storage_options=storage_options,
        file_format=file_format,
        start=start,
        stop=stop,
    ):
        yield from batch


# ------------------------------------------------------------------------------------------ counting


def _count_jsonl(url: str, storage_options: dict[str, Any] | None) -> int:
    """Non-blank lines, by the same bytes-level test the reader uses, without decoding anything.

    For an uncompressed file, seek positions are recorded on the way (see `jsonl_seek`).
    """
    count = 0
    lineno = 0
    pos = 0  # byte offset of the current line
    seeks: list[Seek] = []
    record = _compression_of(url) is None
    tail = b""
    with _open_binary(url, storage_options) as f:
        while True:
            block = f.read(_READ_BLOCK)
            if not block:
                break
            lines = (tail + block).split(b"\n")
            tail = lines.pop()
            for ln in lines:
                lineno += 1
                if ln.strip():
                    if record and count % _SEEK_EVERY == 0:
                        seeks.append((count, lineno, pos))
                    count += 1
                pos += len(ln) + 1
    if tail.strip():
        count += 1
    if record:
        _JSONL_SEEKS[url] = seeks
    return count


def _count_csv(url: str, storage_options: dict[str, Any] | None) -> int:
    # The reader's own records (bad ones included), so counts match the reader.
    return sum(1 for _ in csv_records(url, lambda: _open_binary(url, storage_options)))


def _count_once(url: str, fmt: str, storage_options: dict[str, Any] | None) -> int:
    if fmt == "parquet":
        return _count_parquet(url, storage_options)
    if fmt == "jsonl":
        return _count_jsonl(url, storage_options)
    if fmt == "csv":
        return _count_csv(url, storage_options)
    with _open_binary(url, storage_options) as f:
        return sum(1 for _ in _JsonArrayReader(f, url).values(skip=1 << 62))


def _count_file(url: str, fmt: str, storage_options: dict[str, Any] | None) -> int:
    return retry.call(lambda: _count_once(url, fmt, storage_options), url=url, what="read")


def count_rows(
    path: str,
    *,
    base_dir: Path | None = None,
    storage_options: dict[str, Any] | None = None,
    file_format: str = "auto",
) -> int:
    """Rows the source holds (bad rows included: they take an index too)."""
    files = expand_paths(path, base_dir=base_dir, storage_options=storage_options)
    return sum(_count_file(u, detect_format(u, file_format), storage_options) for u in files)


def count_rows_per_file(
    path: str,
    *,
    base_dir: Path | None = None,
    storage_options: dict[str, Any] | None = None,
    file_format: str = "auto",
) -> list[tuple[str, int]]:
    """(url, rows) per file, in source order: lets a planner cut work units at file boundaries."""
    files = expand_paths(path, base_dir=base_dir, storage_options=storage_options)
    return [(u, _count_file(u, detect_format(u, file_format), storage_options)) for u in files]
