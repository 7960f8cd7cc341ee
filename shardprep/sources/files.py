"""Streaming rows of the files a source path names (local paths, globs, any fsspec URL).

Every reader holds at most one batch of rows plus a bounded read buffer, so a source of any size
streams in constant memory. A bad row becomes a `RawRow` carrying a `RowError` instead of stopping
the stream; the caller decides between failing and skipping (`on_error`). Each file is read by its
format's reader (`readers.FORMATS`); network calls are retried on transient errors, and a read cut
mid-file reopens the file and resumes at the row after the last one delivered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shardprep.errors import SourceError
from shardprep.sources.base import DEFAULT_MAX_ROW_BYTES, Identity, Piece, RawRow, Seek
from shardprep.sources.paths import expand_paths, file_identity, resolve_path

# The readers (every file format's module) load where rows are counted or read: naming a source
# and taking its identity (an up-to-date build) needs `paths` only.
if TYPE_CHECKING:
    from shardprep.recipe import SourceSpec


@dataclass(frozen=True, kw_only=True)
class FilePiece(Piece):
    """One file: its format, for a plain JSONL file the positions counting recorded, and the
    recipe's `max_row_bytes` (a unit reads with what its piece carries)."""

    file_format: str
    seeks: tuple[Seek, ...] = ()
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES

    def seek(self, row: int) -> Seek | None:
        from shardprep.sources import jsonl

        return jsonl.seek_at(self.seeks, row)

    def from_row(self, row: int) -> FilePiece:
        # A unit needs one position, not the file's whole table.
        at = self.seek(row)
        return dataclasses.replace(self, seeks=(at,) if at else ())


class FileSource:
    """A recipe source with `path:`: local files, a glob, or any fsspec URL."""

    def __init__(
        self, spec: SourceSpec, base_dir: Path, *, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES
    ) -> None:
        self.spec = spec
        self.base_dir = base_dir
        self.max_row_bytes = max_row_bytes

    @property
    def path(self) -> str:
        return self.spec.path

    @property
    def _url(self) -> str:
        return resolve_path(self.spec.path, self.base_dir)

    def check(self) -> None:
        expand_paths(
            self.spec.path, base_dir=self.base_dir, storage_options=self.spec.storage_options
        )

    def identity(self) -> Identity:
        # The path as written, joined to the recipe's folder but not normalized: recorded
        # fingerprints hold it so.
        opts = self.spec.storage_options
        urls = expand_paths(self.spec.path, base_dir=self.base_dir, storage_options=opts)
        return Identity([file_identity(u, opts) for u in urls])

    def pieces(self) -> list[Piece]:
        from shardprep.sources.readers import count_file, detect_format

        opts = self.spec.storage_options
        pieces: list[Piece] = []
        for url in expand_paths(self._url, base_dir=self.base_dir, storage_options=opts):
            fmt = detect_format(url, self.spec.file_format)
            counted = count_file(url, fmt, opts, self.max_row_bytes)
            pieces.append(
                FilePiece(
                    label=url,
                    rows=counted.rows,
                    file_format=fmt,
                    seeks=counted.seeks,
                    max_row_bytes=self.max_row_bytes,
                )
            )
        return pieces

    def batches(
        self, piece: Piece, start: int, stop: int, batch_size: int
    ) -> Iterator[list[RawRow]]:
        assert isinstance(piece, FilePiece), piece
        return file_batches(
            [(piece.label, piece.file_format)],
            storage_options=self.spec.storage_options,
            batch_size=batch_size,
            start=start,
            stop=stop,
            seek=piece.seek(start),
            max_row_bytes=piece.max_row_bytes,
        )

    def first_rows(self, n: int) -> list[RawRow]:
        try:
            batches = iter_source_batches(
                self._url,
                base_dir=self.base_dir,
                storage_options=self.spec.storage_options,
                batch_size=n,
                file_format=self.spec.file_format,
                stop=n,
                max_row_bytes=self.max_row_bytes,
            )
            return next(iter(batches), [])
        except FileNotFoundError as exc:
            raise SourceError(f"source {self.spec.resolved_name!r}: {exc}") from exc


def file_batches(
    files: list[tuple[str, str]],
    *,
    storage_options: dict[str, Any] | None = None,
    batch_size: int = 1024,
    start: int = 0,
    stop: int | None = None,
    seek: Seek | None = None,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
) -> Iterator[list[RawRow]]:
    """Rows [start, stop) of `files` ((url, file format) in order), as lists of at most
    `batch_size` RawRows whose `index` counts rows across the files; see `iter_source_batches`."""
    from shardprep.sources.readers import FORMATS, read_file

    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if seek is not None and (len(files) != 1 or files[0][1] != "jsonl" or seek[0] > start):
        seek = None  # only meaningful for the one JSONL file it was recorded for
    batch: list[RawRow] = []
    index = seek[0] if seek else 0
    for url, fmt in files:
        if stop is not None and index >= stop:
            break
        unit = FORMATS[fmt].unit
        skip = start if seek else max(0, start - index)  # with a seek, rows count from the file top
        rows = read_file(url, fmt, storage_options, skip, batch_size, seek, max_row_bytes)
        for line, data, error in rows:
            if stop is not None and index >= stop:
                break
            if index >= start:
                if error is not None:
                    error.unit = unit
                    error.located()  # its message again, with the unit
                batch.append(
                    RawRow(index=index, file=url, line=line, data=data, error=error, unit=unit)
                )
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
            index += 1
    if batch:
        yield batch


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
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
) -> Iterator[list[RawRow]]:
    """Rows of every file `path` names, in order, as lists of at most `batch_size` RawRows.

    `seek` (a position counting recorded (`Count.seeks`), for a path naming one plain JSONL file)
    starts reading there, at or before `start`, instead of at the top of the file.

    `index` counts rows across the files of the source. `start`/`stop` select a row range (a work
    unit): rows before `start` are counted without building rows (Parquet skips whole row groups),
    and reading stops at `stop`. A batch may hold rows of several files.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    from shardprep.sources.readers import detect_format

    urls = expand_paths(path, base_dir=base_dir, storage_options=storage_options)
    files = [(u, detect_format(u, file_format)) for u in urls]
    yield from file_batches(
        files,
        storage_options=storage_options,
        batch_size=batch_size,
        start=start,
        stop=stop,
        seek=seek,
        max_row_bytes=max_row_bytes,
    )


def iter_source_rows(
    path: str,
    *,
    base_dir: Path | None = None,
    storage_options: dict[str, Any] | None = None,
    file_format: str = "auto",
    start: int = 0,
    stop: int | None = None,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
) -> Iterator[RawRow]:
    """`iter_source_batches`, one row at a time."""
    for batch in iter_source_batches(
        path,
        base_dir=base_dir,
        storage_options=storage_options,
        file_format=file_format,
        start=start,
        stop=stop,
        max_row_bytes=max_row_bytes,
    ):
        yield from batch


def count_rows(
    path: str,
    *,
    base_dir: Path | None = None,
    storage_options: dict[str, Any] | None = None,
    file_format: str = "auto",
) -> int:
    """Rows the source holds (bad rows included: they take an index too)."""
    return sum(
        n
        for _, n in count_rows_per_file(
            path, base_dir=base_dir, storage_options=storage_options, file_format=file_format
        )
    )


def count_rows_per_file(
    path: str,
    *,
    base_dir: Path | None = None,
    storage_options: dict[str, Any] | None = None,
    file_format: str = "auto",
) -> list[tuple[str, int]]:
    """(url, rows) per file, in source order."""
    from shardprep.sources.readers import count_file, detect_format

    return [
        (u, count_file(u, detect_format(u, file_format), storage_options).rows)
        for u in expand_paths(path, base_dir=base_dir, storage_options=storage_options)
    ]
