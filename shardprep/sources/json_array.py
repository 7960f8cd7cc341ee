"""JSON (`.json`): one top-level array of objects (or a single object), parsed incrementally.

`json.JSONDecoder.raw_decode` parses one element at a time from a sliding text buffer; consumed
text is dropped, so memory is bounded by the largest element plus one read block. An element
whose text runs past `max_row_bytes` characters (at least that many bytes) is passed over by a
scan that keeps nothing of it, and reported as `row_too_large`.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import IO, Any

from shardprep.errors import SourceError
from shardprep.sources.base import DEFAULT_MAX_ROW_BYTES, Count, FileFormat, FileRow, Seek, bad_row
from shardprep.sources.opening import open_binary
from shardprep.sources.rowcheck import TOO_DEEP, object_problem, row_too_large

_READ_BLOCK = 1 << 20
# Lone surrogates that `surrogateescape` puts in place of undecodable bytes.
_ESCAPED_BYTES = re.compile("[\udc80-\udcff]")
_WS = " \t\n\r"
_TOO_DEEP_VALUE = object()  # stands for an element too deep to parse
_TOO_LARGE_VALUE = object()  # stands for an element past the row bound
# What ends a run of ordinary characters inside a string, and outside one within a container.
_IN_STRING = re.compile(r'["\\]')
_STRUCTURE = re.compile(r'["\[\]{}]')
_SCALAR_END = re.compile(r"[,\]}\s]")


class _JsonArrayReader:
    """Incremental parser of one top-level JSON array (or single object) over a text buffer."""

    def __init__(self, f: IO[bytes], url: str, limit: int = DEFAULT_MAX_ROW_BYTES) -> None:
        self.f = f
        self.url = url
        self.limit = limit
        # surrogateescape keeps undecodable bytes as lone surrogates, so one bad element can be
        # reported as invalid_utf8 without losing the rest of the file.
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.decode = json.JSONDecoder().raw_decode

    def _fill(self, want: int = 0) -> bool:
        if self.eof:
            return False
        if self.pos:
            self.buf = self.buf[self.pos :]
            self.pos = 0
        block = self.f.read(want or _READ_BLOCK)
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

    def _grow(self, want: int) -> int:
        """Read more of a cut element; the next read's size (doubling, so that a large element
        costs O(n log n) parse retries, not O(n^2); at most the row bound)."""
        self._fill(want)
        return min(max(want * 2, len(self.buf)), self.limit + 1)

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
                    if len(self.buf) - self.pos > self.limit:
                        return self._pass_over(element)
                    want = self._grow(want)
                    continue
                if stop is None:
                    raise SourceError(
                        f"{self.url}: element {element} is cut by the end of the file"
                    ) from None
                self.pos = stop
                return _TOO_DEEP_VALUE, ""
            except json.JSONDecodeError as e:
                if not self.eof:
                    # Most likely the element is cut by the buffer end: read more and retry.
                    if len(self.buf) - self.pos > self.limit:
                        return self._pass_over(element)
                    want = self._grow(want)
                    continue
                raise SourceError(
                    f"{self.url}: malformed JSON in element {element}: {e.msg} "
                    f"(the rest of the file cannot be read)"
                ) from e
            if end == len(self.buf) and not self.eof:
                # A number at the buffer end may continue in the next block; make sure it ended.
                if end - self.pos > self.limit:
                    return self._pass_over(element)
                want = self._grow(want)
                continue
            if end - self.pos > self.limit:  # read whole within a block: refused all the same
                self.pos = end
                return _TOO_LARGE_VALUE, ""
            text = self.buf[self.pos : end]
            self.pos = end
            return value, text

    def _pass_over(self, element: int) -> tuple[Any, str]:
        """Move past the element at pos, which is longer than the row bound, keeping none of it:
        `_nested_end`'s scan carried across blocks, jumping by regular expression to the next
        quote, backslash or bracket (a 1.5 GB string is scanned at C speed)."""
        depth = 0
        in_string = False
        scalar = self.buf[self.pos] not in '[{"'
        i = self.pos
        while True:
            buf, n = self.buf, len(self.buf)
            while i < n:
                if scalar:
                    m = _SCALAR_END.search(buf, i)
                    if m is None:
                        i = n
                        break
                    self.pos = m.start()
                    return _TOO_LARGE_VALUE, ""
                m = (_IN_STRING if in_string else _STRUCTURE).search(buf, i)
                if m is None:
                    i = n
                    break
                i, c = m.start(), m.group()
                if c == "\\":
                    if i + 1 >= n:
                        break  # the escaped character is in the next block
                    i += 2
                    continue
                if c == '"':
                    in_string = not in_string
                elif c in "[{":
                    depth += 1
                else:
                    depth -= 1
                i += 1
                if depth == 0 and not in_string:
                    self.pos = i
                    return _TOO_LARGE_VALUE, ""
            self.pos = i  # what was scanned is dropped by the next fill
            if not self._fill():
                if scalar:  # a lone top-level scalar ends with the file
                    self.pos = len(self.buf)
                    return _TOO_LARGE_VALUE, ""
                raise SourceError(f"{self.url}: element {element} is cut by the end of the file")
            i = self.pos

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
                    f"{self.url}: malformed JSON array after element {element - 1}: "
                    f"expected ',' or ']', found {found}"
                )
        if self._skip_ws() != "":
            raise SourceError(f"{self.url}: extra data after the top-level JSON array")


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


def rows(
    url: str,
    storage_options: dict[str, Any] | None,
    skip: int,
    batch_size: int = 0,
    seek: Seek | None = None,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
) -> Iterator[FileRow]:
    """(element, data, error) per element; an array has no row positions to seek to."""
    with open_binary(url, storage_options) as f:
        for element, value, text in _JsonArrayReader(f, url, max_row_bytes).values(skip):
            if element < skip:
                yield element, None, None
                continue
            if value is _TOO_LARGE_VALUE:
                yield bad_row(url, element, *row_too_large("element", max_row_bytes))
                continue
            if value is _TOO_DEEP_VALUE:
                yield bad_row(url, element, "too_deeply_nested", TOO_DEEP)
                continue
            if _ESCAPED_BYTES.search(text):
                yield bad_row(url, element, "invalid_utf8", "invalid UTF-8 in this element")
                continue
            problem = object_problem(value, text)
            if problem is not None:
                yield bad_row(url, element, *problem)
                continue
            yield element, value, None


def count(
    url: str,
    storage_options: dict[str, Any] | None,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,  # an element is one however long
) -> Count:
    """Elements, by one pass of the same parser (an array's length is nowhere else)."""
    with open_binary(url, storage_options) as f:
        return Count(sum(1 for _ in _JsonArrayReader(f, url).values(skip=1 << 62)))


FORMAT = FileFormat("json", (".json",), rows, count, unit="element")
