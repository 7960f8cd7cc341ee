"""CSV (`.csv`): one dict per record, every value a string (no type guessing: "007" stays "007"),
with every problem kept to its own row.

A strict parser reports a malformed record instead of guessing. The hard case is a quote that is
never closed: the parser reads on to the end of the file as one field, and every later row would
vanish into it. Here that record is reported on the line where its quote opened, and reading
resumes on the next line, so the rows after it are kept. Undecodable bytes are kept as lone
surrogates (`surrogateescape`) and reported per record instead of ending the file.
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

_ESCAPED_BYTES = re.compile("[\udc80-\udcff]")

# (first line of the record, values by header name, or None with (reason, message))
Record = tuple[int, dict[str, Any] | None, tuple[str, str] | None]


def _text(f: IO[bytes]) -> io.TextIOWrapper:
    # utf-8-sig drops a BOM; newline="" lets the csv module handle quoted line breaks.
    return io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")


def csv_records(
    url: str, open_binary: Callable[[], AbstractContextManager[IO[bytes]]]
) -> Iterator[Record]:
    """Every non-blank record after the header, in order, each with its first line number."""
    header: list[str] | None = None
    resume_after = 0  # physical lines to pass over after a record whose quote never closed
    while True:
        with open_binary() as f:
            text = _text(f)
            lines = itertools.islice(text, resume_after, None) if resume_after else text
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
                    yield start, None, ("malformed_csv", f"malformed CSV record: {e}")
                    continue
                if not rec:
                    continue  # a blank line
                if header is None:
                    if _ESCAPED_BYTES.search("".join(rec)):
                        raise SourceError(f"{url}: the CSV header line is not valid UTF-8")
                    header = rec
                    continue
                if _ESCAPED_BYTES.search("".join(rec)):
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
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,  # not applied yet: the csv module reads a record
) -> Iterator[FileRow]:
    """(first line of the record, data, error) per record after the header."""
    records = csv_records(url, lambda: open_binary(url, storage_options))
    for i, (line, data, problem) in enumerate(records):
        if i < skip:
            yield line, None, None
        elif problem is not None:
            yield bad_row(url, line, *problem)
        else:
            yield line, data, None


def count(url: str, storage_options: dict[str, Any] | None) -> Count:
    # The reader's own records (bad ones included), so counts match the reader.
    return Count(sum(1 for _ in csv_records(url, lambda: open_binary(url, storage_options))))


FORMAT = FileFormat("csv", (".csv",), rows, count)
