"""The Source interface: files and the Hub behind identity / pieces / batches / first rows."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardprep.errors import SourceError
from shardprep.recipe import SourceSpec
from shardprep.sources.base import RawRow
from shardprep.sources.files import FilePiece, FileSource, iter_source_batches
from shardprep.sources.hub import HubSource
from shardprep.sources.source import open_source


def _rows(batches: object) -> list[tuple[int, int | None, object, str | None]]:
    return [
        (r.index, r.line, r.data, r.error and r.error.reason)
        for b in batches  # type: ignore[attr-defined]
        for r in b
    ]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """data/ holds a JSONL file big enough for seek positions, a gzipped one and a Parquet file;
    the recipe lives in recipe/, so its paths go through `..`."""
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "recipe").mkdir()
    lines = [json.dumps({"i": i}) for i in range(700)]
    lines[3] = "{broken"
    (data / "a.jsonl").write_text("\n".join(lines) + "\n")
    with gzip.open(data / "b.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps({"i": i}) + "\n" for i in range(300)))
    pq.write_table(pa.Table.from_pylist([{"i": i} for i in range(50)]), data / "c.parquet")
    return tmp_path


def _spec(**kw: object) -> SourceSpec:
    return SourceSpec.model_validate({"format": "text", **kw})


def test_open_source_picks_the_kind(project: Path) -> None:
    assert isinstance(open_source(_spec(path="../data/a.jsonl"), project / "recipe"), FileSource)
    hub = open_source(_spec(hf="org/name"), project / "recipe")  # no I/O: nothing resolved yet
    assert isinstance(hub, HubSource) and hub.path == "hf:org/name"
    hub.check()  # a Hub revision is checked by planning (network or cache), not here


def test_file_pieces_identity_and_first_rows(project: Path) -> None:
    base = project / "recipe"
    source = open_source(_spec(path="../data/*"), base)
    pieces = source.pieces()
    data = project / "data"
    assert [(p.label, p.rows) for p in pieces] == [
        (str(data / "a.jsonl"), 700),
        (str(data / "b.jsonl.gz"), 300),
        (str(data / "c.parquet"), 50),
    ]
    assert all(isinstance(p, FilePiece) for p in pieces)
    a, b, c = pieces
    assert isinstance(a, FilePiece) and isinstance(b, FilePiece) and isinstance(c, FilePiece)
    assert a.file_format == "jsonl" and [s[0] for s in a.seeks] == [0, 128, 256, 384, 512, 640]
    assert b.seeks == () and c.seeks == ()  # a decompressed stream cannot seek; Parquet needs none
    # The identity keeps the path as written (joined, not normalized): fingerprints hold it so.
    ident = source.identity()
    assert ident.hub is None
    assert [f["uri"] for f in ident.files] == [
        str(base / "../data" / n) for n in ("a.jsonl", "b.jsonl.gz", "c.parquet")
    ]
    assert all(f["size"] > 0 and "mtime" in f for f in ident.files)
    first = source.first_rows(3)
    assert [(r.index, r.file, r.line) for r in first] == [
        (i, str(data / "a.jsonl"), i + 1) for i in range(3)
    ]


def test_a_unit_piece_carries_its_seek_and_reads_what_a_scan_reads(project: Path) -> None:
    """What a worker gets (the piece narrowed to its start, pickled) reads the same rows as a
    scan from the top: no position is kept anywhere but in the piece."""
    source = open_source(_spec(path="../data/a.jsonl"), project / "recipe")
    (piece,) = source.pieces()
    url = str(project / "data" / "a.jsonl")
    for start, stop in [(0, 5), (130, 300), (640, 700), (699, 700)]:
        unit_piece = pickle.loads(pickle.dumps(piece.from_row(start)))
        assert isinstance(unit_piece, FilePiece) and len(unit_piece.seeks) <= 1
        if start >= 128:
            assert unit_piece.seek(start) is not None and unit_piece.seek(start)[0] <= start
        fast = _rows(
            open_source(_spec(path="../data/a.jsonl"), project).batches(unit_piece, start, stop, 64)
        )
        slow = _rows(iter_source_batches(url, start=start, stop=stop))
        assert fast == slow and [r[0] for r in fast] == list(range(start, stop))
    bad = [r for r in _rows(source.batches(piece, 0, 10, 4)) if r[3]]
    assert bad == [(3, 4, None, "malformed_json")]


def test_missing_files_are_source_errors(project: Path) -> None:
    source = open_source(_spec(path="../data/nothing-*.jsonl"), project / "recipe")
    with pytest.raises(SourceError, match="no file matches"):
        source.check()
    with pytest.raises(SourceError, match="no file matches"):
        source.pieces()
    gone = FilePiece(label=str(project / "data" / "gone.jsonl"), rows=1, file_format="jsonl")
    with pytest.raises(SourceError, match="no such file"):
        list(source.batches(gone, 0, 1, 8))


def test_first_rows_of_a_source_smaller_than_n(project: Path) -> None:
    source = open_source(_spec(path="../data/c.parquet"), project / "recipe")
    rows = source.first_rows(100)
    assert len(rows) == 50 and all(isinstance(r, RawRow) and r.data == {"i": r.index} for r in rows)
