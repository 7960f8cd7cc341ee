"""Parquet (`.parquet`, `.pq`): counted from the footer; rows in row groups wholly below the
skip are never read, only counted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shardprep.errors import SourceError
from shardprep.sources import retry
from shardprep.sources.base import DEFAULT_MAX_ROW_BYTES, Count, FileFormat, FileRow, Seek
from shardprep.sources.opening import open_binary


def rows(
    url: str,
    storage_options: dict[str, Any] | None,
    skip: int,
    batch_size: int = 1024,
    seek: Seek | None = None,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,  # rows come decoded from row groups, not lines
) -> Iterator[FileRow]:
    import pyarrow.parquet as pq

    # Parquet compresses inside the file; a codec suffix does not apply.
    with open_binary(url, storage_options, decompress=False) as f:
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


def count(
    url: str,
    storage_options: dict[str, Any] | None,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,  # rows, not lines
) -> Count:
    import pyarrow.parquet as pq

    with open_binary(url, storage_options, decompress=False) as f:
        try:
            return Count(int(pq.ParquetFile(f).metadata.num_rows))
        except Exception as e:  # see rows()
            if retry.is_transient(e):
                raise
            raise SourceError(f"cannot read Parquet file {url}: {e}") from e


FORMAT = FileFormat("parquet", (".parquet", ".pq"), rows, count, unit="row")
