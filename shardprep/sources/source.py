"""`Source`: one recipe source, files or a Hub dataset, behind the interface the build and the
views use — identity for the fingerprint, pieces for planning units, a unit's rows, first rows.

`open_source` is the one place that tells the kinds apart; it does no I/O (a worker opens the
source of each unit it runs), and everything a unit needs to read is in the piece it carries.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from shardprep.sources.base import DEFAULT_MAX_ROW_BYTES, Identity, Piece, RawRow
from shardprep.sources.files import FileSource

if TYPE_CHECKING:
    from shardprep.recipe import SourceSpec


class Source(Protocol):
    @property
    def path(self) -> str:
        """The source as the manifest names it: the recipe's path, or hf:<dataset>."""
        ...

    def check(self) -> None:
        """Raise SourceError for what is known wrong before planning (a path naming no file)."""
        ...

    def identity(self) -> Identity:
        """This version of the input (file sizes and mtimes / etags, the Hub commit)."""
        ...

    def pieces(self) -> list[Piece]:
        """The source's pieces in order, counted (bad rows included: they take an index too)."""
        ...

    def batches(
        self, piece: Piece, start: int, stop: int, batch_size: int
    ) -> Iterator[list[RawRow]]:
        """Rows [start, stop) of `piece` (a piece of this source, as `pieces` made it or
        `from_row` narrowed it), in batches; `index` counts rows within the piece."""
        ...

    def first_rows(self, n: int) -> list[RawRow]:
        """The source's first `n` rows at most (what `prep preview` shows)."""
        ...


# Why a source gives no rows at all: the build refuses it (exit 2), validate reports it and
# preview warns about it, all in these words.
NO_ROWS = (
    "gives no rows: its files are empty or hold only whitespace, or skip/take/fraction select none"
)


def open_source(
    spec: SourceSpec, base_dir: Path, *, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES
) -> Source:
    """`max_row_bytes`: the recipe's; file pieces carry it to the units that read them. A Hub
    source's rows arrive decoded by `datasets`, with no line to bound."""
    if spec.hf:
        from shardprep.sources.hub import HubSource  # loaded for Hub sources only

        return HubSource(spec, base_dir)
    return FileSource(spec, base_dir, max_row_bytes=max_row_bytes)
