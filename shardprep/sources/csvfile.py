"""CSV (`.csv`): one dict per record, every value a string (no type guessing: "007" stays "007"),
with every problem kept to its own row.

A strict parser reports a malformed record instead of guessing. The hard case is a quote that is
never closed: the parser reads on to the end of the file as one field, and every later row would
vanish into it. Here that record is reported on the line where its quote opened, and reading
resumes on the next line, so the rows after it are kept. Undecodable bytes are kept as lone
surrogates (`surrogateescape`) and reported per record instead of ending the file. A physical
line longer than `max_row_bytes` is passed over in blocks, never held whole, and its record is
`row_too_large`; a long line holding quotes, or a quoted field spanning lines past the bound (the
csv module's field limit is set to it), stops the file: where that field ends, and so where the
next record starts, cannot be known without reading it.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import IO, Any

from shardprep.errors import SourceError
from shardprep.sources.base import DEFAULT_MAX_ROW_BYTES, Count, FileFormat, FileRow, Seek, bad_row
from shardprep.sources.opening import open_binary
from shardprep.sources.rowcheck import row_too_large

_ESCAPED_BYTES = re.compile("[\udc80-\udcff]")
_BLOCK = 1 << 20
# Stands in for a physical line past the bound, inside whatever record holds it (private-use
# characters: no real file spells this).
_TOO_LONG = "\ue000shardprep: a line past max_row_bytes\ue000"
_FIELD_LIMIT = "field larger than field limit"

# (first line of the record, values by header name, or None with (reason, message))
Record = tuple[int, dict[str, Any] | None, tuple[str, str] | None]


def _text(f: IO[bytes]) -> io.TextIOWrapper:
    # utf-8-sig drops a BOM; newline="" lets the csv module handle quoted line breaks.
    return io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _bounded_lines(text: io.TextIOWrapper, limit: int, url: str) -> Iterator[str]:
    """Physical lines; one longer than `limit` characters is passed over in blocks and given as
    _TOO_LONG, so that the record holding it is reported (line numbers stay true). A long line
    holding a quote cannot be passed over: where its quoted field ends decides where the next
    record starts, so it stops the file."""
    lineno = 0
    while True:
        line = text.readline(limit + 1)
        if not line:
            return
        lineno += 1
        if len(line) <= limit or line.endswith(("\n", "\r")):
            yield line
            continue
        quoted = '"' in line
        while True:
            rest = text.readline(_BLOCK)
            quoted = quoted or '"' in rest
            if not rest or rest.endswith(("\n", "\r")):
                break
        if quoted:
            raise SourceError(
                f"{url}: line {lineno} is longer than max_row_bytes ({limit:,} bytes) and holds "
                "quoted fields, so the records after it cannot be found without reading it; raise "
                "`max_row_bytes` in the recipe to read it"
            )
        yield _TOO_LONG + "\n"


def csv_records(
    url: str,
    open_binary: Callable[[], AbstractContextManager[IO[bytes]]],
    limit: int = DEFAULT_MAX_ROW_BYTES,
) -> Iterator[Record]:
    """Every non-blank record after the header, in order, each with its first line number."""
    too_large = row_too_large("record", limit)
    # The csv module's own bound on a field (128 KiB by default) is the recipe's for a row.
    csv.field_size_limit(limit)
    header: list[str] | None = None
    resume_after = 0  # physical lines to pass over after a record whose quote never closed
    while True:
        with open_binary() as f:
            text = _text(f)
            bounded = _bounded_lines(text, limit, url)
            lines = itertools.islice(bounded, resume_after, None) if resume_after else bounded
            reader = csv.reader(lines, strict=True)
            base = resume_after
            unterminated_at = None
            while True:
                start = base + reader.line_num + 1
                try:
                    rec = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    if "unexpected end of data" in str(e):
                        unterminated_at = start
                        break
                    if _FIELD_LIMIT in str(e):
                        # A quoted field spanning lines, past the bound: the csv module drops the
                        # rest of the line it stopped in, so where the field ends is unknown.
                        raise SourceError(
                            f"{url}: line {start}: a quoted field is longer than max_row_bytes "
                            f"({limit:,} bytes), so the records after it cannot be found; raise "
                            "`max_row_bytes` in the recipe to read it"
                        ) from None
                    yield start, None, ("malformed_csv", f"malformed CSV record: {e}")
                    continue
                if not rec:
                    continue  # a blank line
                joined = "".join(rec)
                if header is None:
                    if _ESCAPED_BYTES.search(joined):
                        raise SourceError(f"{url}: the CSV header line is not valid UTF-8")
                    if _TOO_LONG in joined:
                        raise SourceError(
                            f"{url}: the CSV header line is longer than max_row_bytes "
                            f"({limit:,} bytes)"
                        )
                    header = rec
                    continue
                if _TOO_LONG in joined:
                    yield start, None, too_large
                elif _ESCAPED_BYTES.search(joined):
                    yield start, None, ("invalid_utf8", "invalid UTF-8 in this record")
                elif len(rec) > len(header):
                    yield (
                        start,
                        None,
                        ("malformed_csv", "the record has more fields than the header"),
                    )
                else:
                    # As csv.DictReader: a short record leaves the missing fields None.
                    yield start, dict(itertools.zip_longest(header, rec)), None
        if unterminated_at is None:
            return
        if header is None:
            raise SourceError(f"{url}: line {unterminated_at}: the header's quote is never closed")
        yield (
            unterminated_at,
            None,
            (
                "malformed_csv",
                "a quoted field opens on this line and is never closed (the rest of the file was read "
                "from the next line on)",
            ),
        )
        resume_after = unterminated_at


def rows(
    url: str,
    storage_options: dict[str, Any] | None,
    skip: int,
    batch_size: int = 0,
    seek: Seek | None = None,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
) -> Iterator[FileRow]:
    """(first line of the record, data, error) per record after the header."""
    records = csv_records(url, lambda: open_binary(url, storage_options), max_row_bytes)
    for i, (line, data, problem) in enumerate(records):
        if i < skip:
            yield line, None, None
        elif problem is not None:
            yield bad_row(url, line, *problem)
        else:
            yield line, data, None


def count(
    url: str, storage_options: dict[str, Any] | None, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES
) -> Count:
    # The reader's own records (bad ones included) under the same bound, so counts match the
    # reader: a line passed over can change where a quoted field ends.
    records = csv_records(url, lambda: open_binary(url, storage_options), max_row_bytes)
    return Count(sum(1 for _ in records))


FORMAT = FileFormat("csv", (".csv",), rows, count)
