"""Streaming readers: formats, bad rows, indices, globs, compression, bounded memory."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardprep.errors import SourceError
from shardprep.sources import json_array
from shardprep.sources.base import RawRow
from shardprep.sources.files import count_rows, iter_source_batches, iter_source_rows
from shardprep.sources.paths import expand_paths, file_identity

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "data"
LF = DATA / "llamafactory"


def rows_of(path: str | Path, **kw: object) -> list[RawRow]:
    return [r for batch in iter_source_batches(str(path), **kw) for r in batch]  # type: ignore[arg-type]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------------ JSONL


def test_jsonl_rows_lines_and_blank_lines(tmp_path: Path) -> None:
    p = write(tmp_path / "a.jsonl", b'{"a": 1}\n\n   \n{"a": 2}\r\n{"a": 3}')
    rows = rows_of(p)
    assert [(r.index, r.line, r.data) for r in rows] == [
        (0, 1, {"a": 1}),
        (1, 4, {"a": 2}),
        (2, 5, {"a": 3}),
    ]
    assert all(r.error is None and r.file == str(p) for r in rows)
    assert count_rows(str(p)) == 3


def test_jsonl_bad_rows_keep_streaming(tmp_path: Path) -> None:
    lines = [
        b'{"ok": 1}',
        b'{"broken": ',
        b'{"text": "caf\xe9"}',  # latin-1 byte, not UTF-8
        b"[1, 2]",
        b"",
        b'"just a string"',
        b'{"ok": 2}',
    ]
    p = write(tmp_path / "bad.jsonl", b"\n".join(lines) + b"\n")
    rows = rows_of(p)
    got = [(r.index, r.line, r.error.reason if r.error else None) for r in rows]
    assert got == [
        (0, 1, None),
        (1, 2, "malformed_json"),
        (2, 3, "invalid_utf8"),
        (3, 4, "not_an_object"),
        (4, 6, "not_an_object"),
        (5, 7, None),
    ]
    err = rows[1].error
    assert err is not None and err.file == str(p) and err.line == 2 and "line 2" in str(err)
    assert rows[1].data is None and rows[5].data == {"ok": 2}
    assert count_rows(str(p)) == 6


def test_jsonl_utf8_bom_and_ndjson(tmp_path: Path) -> None:
    p = write(tmp_path / "a.ndjson", b'\xef\xbb\xbf{"a": "\xc3\xa9"}\n')
    assert [r.data for r in rows_of(p)] == [{"a": "é"}]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("parquet", "is a Parquet file, not JSON Lines: name it .parquet"),
        ("gzip", "is gzip-compressed, not JSON Lines: name it with a .gz suffix"),
        ("zstd", "is zstd-compressed, not JSON Lines: name it with a .zst suffix"),
        ("array", "holds a JSON array, not JSON Lines: name it .json"),
        ("array_one_line", "holds a JSON array, not JSON Lines"),
    ],
)
def test_jsonl_named_file_of_another_format_is_a_source_error(
    tmp_path: Path, content: str, says: str
) -> None:
    # Was every line a bad row (invalid_utf8, not_an_object), which on_error: skip let pass with
    # the whole source dropped; the build of other sources then exited 0.
    import zstandard

    rows = [{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(3)]
    lines = "".join(json.dumps(r) + "\n" for r in rows).encode()
    p = tmp_path / "x.jsonl"
    if content == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), p)
    elif content == "gzip":
        p.write_bytes(gzip.compress(lines))
    elif content == "zstd":
        p.write_bytes(zstandard.ZstdCompressor().compress(lines))
    elif content == "array":
        p.write_text(json.dumps(rows, indent=1))
    else:
        p.write_text(json.dumps(rows))
    for kw in ({}, {"start": 2}):  # a unit that starts past the top checks it too
        with pytest.raises(SourceError, match=says):
            rows_of(p, **kw)


def test_jsonl_first_line_may_be_a_list_row_or_bom(tmp_path: Path) -> None:
    # A row that is a list stays a bad row (not a wrong file) unless it is an array of objects.
    p = write(tmp_path / "a.jsonl", b'[1, 2]\n{"a": 1}\n')
    got = rows_of(p)
    assert got[0].error is not None and got[0].error.reason == "not_an_object"
    assert got[1].data == {"a": 1}
    p = write(tmp_path / "b.jsonl", b'\xef\xbb\xbf{"a": 1}\n')
    assert rows_of(p)[0].data == {"a": 1}


@pytest.mark.parametrize("name", ["reason_tool_use_demo_50.jsonl.gz", "v1_sft_demo.jsonl.gz"])
def test_jsonl_real_files_gzip(name: str) -> None:
    path = LF / name
    with gzip.open(path) as f:
        expected = [json.loads(line) for line in f if line.strip()]
    rows = rows_of(path, batch_size=7)
    assert [r.data for r in rows] == expected
    assert [r.index for r in rows] == list(range(len(expected)))
    assert count_rows(str(path)) == len(expected)


def test_batches_have_requested_size(tmp_path: Path) -> None:
    p = write(tmp_path / "a.jsonl", b"".join(b'{"i": %d}\n' % i for i in range(10)))
    sizes = [len(b) for b in iter_source_batches(str(p), batch_size=4)]
    assert sizes == [4, 4, 2]
    with pytest.raises(ValueError):
        next(iter_source_batches(str(p), batch_size=0))


# ------------------------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    "name",
    [
        "alpaca_en_demo.json.gz",
        "glaive_toolcall_en_demo.json.gz",
        "kto_en_demo.json.gz",
        "identity.json.gz",
    ],
)
def test_json_array_streaming_equals_json_load(name: str) -> None:
    path = LF / name
    with gzip.open(path) as f:
        expected = json.load(f)
    rows = rows_of(path, batch_size=64)
    assert [r.data for r in rows] == expected
    assert [(r.index, r.line) for r in rows] == [(i, i) for i in range(len(expected))]
    assert count_rows(str(path)) == len(expected)


def test_json_array_tiny_read_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Elements, numbers and multi-byte characters cut by block boundaries still parse exactly."""
    monkeypatch.setattr(json_array, "_READ_BLOCK", 3)
    items = [
        {"n": 123456789, "s": "héllo wörld ✓ 你好"},
        {"f": -1.5e10, "l": [1, 22, 333]},
        {},
        {"t": True},
    ]
    p = write(
        tmp_path / "a.json",
        (
            " \n [ " + " ,\n ".join(json.dumps(i, ensure_ascii=False) for i in items) + " ] \n"
        ).encode(),
    )
    assert [r.data for r in rows_of(p)] == items
    assert count_rows(str(p)) == 4


def test_json_array_bad_elements(tmp_path: Path) -> None:
    p = write(tmp_path / "a.json", b'[{"a": 1}, 5, {"b": "\xff\xfe"}, ["x"], {"c": 3}]')
    rows = rows_of(p)
    got = [(r.index, r.line, r.error.reason if r.error else None) for r in rows]
    assert got == [
        (0, 0, None),
        (1, 1, "not_an_object"),
        (2, 2, "invalid_utf8"),
        (3, 3, "not_an_object"),
        (4, 4, None),
    ]
    assert rows[4].data == {"c": 3}


def test_json_array_malformed_is_a_source_error(tmp_path: Path) -> None:
    p = write(tmp_path / "a.json", b'[{"a": 1}, {"b": }, {"c": 3}]')
    with pytest.raises(SourceError, match="element 1"):
        rows_of(p)
    p2 = write(tmp_path / "b.json", b'[{"a": 1} {"b": 2}]')
    with pytest.raises(SourceError, match="expected ','"):
        rows_of(p2)


def test_json_single_object_is_one_row() -> None:
    path = DATA / "axolotl" / "conversation.json"
    rows = rows_of(path)
    assert len(rows) == 1 and rows[0].line == 0 and rows[0].data == json.loads(path.read_text())
    assert count_rows(str(path)) == 1


def test_json_empty_inputs_and_concatenated_objects(tmp_path: Path) -> None:
    assert rows_of(write(tmp_path / "a.json", b" [ ] ")) == []
    assert rows_of(write(tmp_path / "b.json", b"")) == []
    with pytest.raises(SourceError, match="JSON Lines"):
        rows_of(write(tmp_path / "c.json", b'{"a": 1}\n{"a": 2}\n'))


# ---------------------------------------------------------------------------------------- Parquet


def test_parquet_rows_and_ranges(tmp_path: Path) -> None:
    p = tmp_path / "a.parquet"
    table = pa.table({"i": list(range(25)), "text": [f"row {i}" for i in range(25)]})
    pq.write_table(table, p, row_group_size=10)
    rows = rows_of(p, batch_size=8)
    assert [(r.index, r.line, r.data) for r in rows] == [
        (i, i, {"i": i, "text": f"row {i}"}) for i in range(25)
    ]
    assert count_rows(str(p)) == 25
    # A range starting inside the second row group skips the first group unread.
    part = rows_of(p, start=13, stop=22)
    assert [(r.index, r.line, r.data["i"] if r.data else None) for r in part] == [
        (i, i, i) for i in range(13, 22)
    ]


def test_not_parquet_is_a_source_error(tmp_path: Path) -> None:
    p = write(tmp_path / "a.parquet", b"not parquet at all")
    with pytest.raises(SourceError, match="Parquet"):
        rows_of(p)


# ------------------------------------------------------------------------------ paths and globs


def test_glob_keeps_global_indices(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "b.jsonl", b'{"f": "b", "i": 0}\n{"f": "b", "i": 1}\n')
    write(
        tmp_path / "d" / "a.jsonl",
        b'{"f": "a", "i": 0}\n\n{"f": "a", "i": 1}\n{"f": "a", "i": 2}\n',
    )
    pq.write_table(pa.table({"f": ["c", "c"], "i": [0, 1]}), tmp_path / "d" / "c.parquet")
    rows = rows_of("d/*", base_dir=tmp_path, batch_size=2)
    assert [(r.index, Path(r.file).name, r.line, r.data) for r in rows] == [
        (0, "a.jsonl", 1, {"f": "a", "i": 0}),
        (1, "a.jsonl", 3, {"f": "a", "i": 1}),
        (2, "a.jsonl", 4, {"f": "a", "i": 2}),
        (3, "b.jsonl", 1, {"f": "b", "i": 0}),
        (4, "b.jsonl", 2, {"f": "b", "i": 1}),
        (5, "c.parquet", 0, {"f": "c", "i": 0}),
        (6, "c.parquet", 1, {"f": "c", "i": 1}),
    ]
    assert count_rows("d/*", base_dir=tmp_path) == 7
    ranged = rows_of("d/*", base_dir=tmp_path, start=2, stop=6)
    assert [(r.index, Path(r.file).name, r.line) for r in ranged] == [
        (2, "a.jsonl", 4),
        (3, "b.jsonl", 1),
        (4, "b.jsonl", 2),
        (5, "c.parquet", 0),
    ]
    assert [r.index for r in iter_source_rows("d/*", base_dir=tmp_path)] == list(range(7))


def test_expand_paths(tmp_path: Path) -> None:
    write(tmp_path / "x.jsonl", b"{}\n")
    assert expand_paths("x.jsonl", base_dir=tmp_path) == [str(tmp_path / "x.jsonl")]
    assert expand_paths(str(tmp_path / "x.jsonl"), base_dir=Path("/elsewhere")) == [
        str(tmp_path / "x.jsonl")
    ]
    with pytest.raises(SourceError, match=r"no file matches .*nothing\*\.jsonl"):
        expand_paths("nothing*.jsonl", base_dir=tmp_path)
    with pytest.raises(SourceError, match="no such file"):
        expand_paths("missing.jsonl", base_dir=tmp_path)
    with pytest.raises(SourceError, match="missing.jsonl"):
        rows_of("missing.jsonl", base_dir=tmp_path)
    with pytest.raises(SourceError, match="folder"):
        expand_paths(str(tmp_path))


def test_unknown_suffix_and_explicit_format(tmp_path: Path) -> None:
    p = write(tmp_path / "data.txt", b'{"a": 1}\n')
    with pytest.raises(SourceError, match="format"):
        rows_of(p)
    assert [r.data for r in rows_of(p, file_format="jsonl")] == [{"a": 1}]
    assert count_rows(str(p), file_format="jsonl") == 1
    with pytest.raises(SourceError, match="unknown file format"):
        rows_of(p, file_format="xml")


def test_fsspec_url_memory_filesystem() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/shardprep-test/part-1.jsonl.gz", gzip.compress(b'{"i": 0}\n{"i": 1}\n'))
    fs.pipe("/shardprep-test/part-2.jsonl", b'{"i": 2}\n')
    try:
        rows = rows_of("memory://shardprep-test/*.jsonl*")
        assert [(r.index, r.file.split("/")[-1], r.data) for r in rows] == [
            (0, "part-1.jsonl.gz", {"i": 0}),
            (1, "part-1.jsonl.gz", {"i": 1}),
            (2, "part-2.jsonl", {"i": 2}),
        ]
        assert all(r.file.startswith("memory://") for r in rows)
        assert count_rows("memory://shardprep-test/*") == 3
        ident = file_identity(rows[2].file)
        assert ident["uri"] == rows[2].file and ident["size"] == 9
    finally:
        fs.rm("/shardprep-test", recursive=True)


def test_zstd_compression(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl.zst"
    try:
        import zstandard
    except ImportError:
        p.write_bytes(b"\x28\xb5\x2f\xfd")
        with pytest.raises(SourceError, match="zstandard"):
            rows_of(p)
        return
    p.write_bytes(zstandard.ZstdCompressor().compress(b'{"a": 1}\n'))
    assert [r.data for r in rows_of(p)] == [{"a": 1}]


def test_file_identity_local(tmp_path: Path) -> None:
    p = write(tmp_path / "a.jsonl", b"{}\n")
    ident = file_identity(str(p))
    assert ident["uri"] == str(p) and ident["size"] == 3 and isinstance(ident["mtime"], float)
    json.dumps(ident)
    with pytest.raises(SourceError):
        file_identity(str(tmp_path / "nope.jsonl"))


# --------------------------------------------------------------------------------- bounded memory


def test_large_jsonl_streams_in_bounded_memory(tmp_path: Path) -> None:
    p = tmp_path / "big.jsonl"
    line = (json.dumps({"messages": [{"role": "user", "content": "x" * 900}]}) + "\n").encode()
    n = (50 << 20) // len(line) + 1
    with open(p, "wb") as f:
        for _ in range(n // 1000):
            f.write(line * 1000)
        f.write(line * (n % 1000))
    size = p.stat().st_size
    assert size >= 50 << 20
    tracemalloc.start()
    try:
        count = 0
        for batch in iter_source_batches(str(p), batch_size=256):
            count += len(batch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == n
    assert peak < size // 20, f"peak {peak} bytes for a {size}-byte file"
    assert count_rows(str(p)) == n


def test_large_json_array_streams_in_bounded_memory(tmp_path: Path) -> None:
    p = tmp_path / "big.json"
    item = json.dumps({"instruction": "y" * 1000, "output": "z" * 1000}).encode()
    n = (40 << 20) // (len(item) + 2) + 1
    with open(p, "wb") as f:
        f.write(b"[\n")
        f.write(b",\n".join([item] * n))
        f.write(b"\n]\n")
    size = p.stat().st_size
    tracemalloc.start()
    try:
        count = sum(len(b) for b in iter_source_batches(str(p), batch_size=256))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == n
    assert peak < size // 5, f"peak {peak} bytes for a {size}-byte file"


def test_jsonl_seek_positions_read_the_same_rows_as_a_scan(tmp_path: Path) -> None:
    from shardprep.sources import jsonl

    p = tmp_path / "big.jsonl"
    lines = []
    for i in range(1000):
        lines.append(json.dumps({"i": i, "text": "é" * (i % 7)}))
        if i % 97 == 0:
            lines.append("")  # blank lines keep true line numbers
    lines[5] = "{broken"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    counted = jsonl.count(str(p), None)
    assert counted.rows == count_rows(str(p)) == 1000
    for start, stop in [(0, 10), (130, 300), (640, 1000), (999, 1000)]:
        seek = jsonl.seek_at(counted.seeks, start)
        if start >= 128:
            assert seek is not None and seek[0] <= start
        fast = [
            r for b in iter_source_batches(str(p), start=start, stop=stop, seek=seek) for r in b
        ]
        slow = [r for b in iter_source_batches(str(p), start=start, stop=stop) for r in b]
        assert [(r.index, r.line, r.data, r.error and r.error.reason) for r in fast] == [
            (r.index, r.line, r.data, r.error and r.error.reason) for r in slow
        ]
        assert [r.index for r in fast] == list(range(start, stop))


@pytest.mark.parametrize("block", [7, 64, 1 << 20])
def test_jsonl_long_lines_count_and_read_alike(
    tmp_path: Path, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines longer than a read block (carried across blocks by `count`, passed over in blocks
    by the reader past `max_row_bytes`), long blank lines and a last line without a newline: the
    count, the seek positions and the rows agree with a plain scan."""
    from shardprep.sources import jsonl

    monkeypatch.setattr(jsonl, "_READ_BLOCK", block)
    limit = 1024
    lines = []
    for i in range(400):
        if i % 50 == 7:
            lines.append(json.dumps({"i": i, "pad": "x" * 3000}))  # past the limit
        elif i % 50 == 8:
            lines.append(" \t" * 2000)  # blank, however long
        elif i % 50 == 9:
            lines.append(json.dumps({"i": i, "pad": "y" * 900}))  # under it
        else:
            lines.append(json.dumps({"i": i}))
    p = tmp_path / "long.jsonl"
    p.write_text("\n".join(lines))  # no newline after the last line
    expected = [
        (n + 1, json.loads(ln)) for n, ln in enumerate(lines) if ln.strip() and len(ln) <= limit
    ]
    too_large = [n + 1 for n, ln in enumerate(lines) if len(ln) > limit and ln.strip()]
    counted = jsonl.count(str(p), None)
    assert counted.rows == len(expected) + len(too_large)

    def scan(**kw: object) -> list[RawRow]:
        return [r for b in iter_source_batches(str(p), max_row_bytes=limit, **kw) for r in b]  # type: ignore[arg-type]

    rows = scan()
    assert [(r.line, r.data) for r in rows if r.error is None] == expected
    bad = [r for r in rows if r.error is not None]
    assert [r.line for r in bad] == too_large
    assert {r.error.reason for r in bad if r.error} == {"row_too_large"}
    assert f"{p}, line 8: the line is longer than max_row_bytes (1,024 bytes)" in str(bad[0].error)
    for start in (0, 130, 300, counted.rows - 1):
        seek = jsonl.seek_at(counted.seeks, start)
        fast = scan(start=start, seek=seek)
        assert [(r.index, r.line, r.data) for r in fast] == [
            (r.index, r.line, r.data) for r in rows[start:]
        ]


@pytest.mark.parametrize("block", [5, 64, 1 << 20])
def test_json_array_large_elements_are_passed_over(
    tmp_path: Path, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Elements past `max_row_bytes` (objects, a bare string, nested arrays, with quotes,
    backslashes and brackets inside their strings) are row_too_large without being parsed, and
    every element around them reads as json.loads reads it; the count agrees."""
    monkeypatch.setattr(json_array, "_READ_BLOCK", block)
    limit = 1024
    tricky = 'q\\"[{]}\\\\' * 200  # an escaped quote, brackets and a backslash, repeated
    elements: list[object] = []
    for i in range(60):
        if i % 10 == 3:
            elements.append({"i": i, "pad": tricky})  # past the limit
        elif i % 10 == 4:
            elements.append("s" * 3000)  # a bare string past it
        elif i % 10 == 5:
            elements.append({"i": i, "deep": [[[["x" * 50] * 10] * 3]] * 2})  # nested, past it
        elif i % 10 == 6:
            elements.append({"i": i, "pad": "y" * 900})  # under it
        else:
            elements.append({"i": i, "t": "]}\\"})
    p = tmp_path / "big.json"
    texts = [json.dumps(e) for e in elements]
    p.write_text("[\n" + ",\n".join(texts) + "\n]\n")
    assert json_array.count(str(p), None).rows == len(elements)
    rows = [r for b in iter_source_batches(str(p), max_row_bytes=limit, batch_size=7) for r in b]
    too_large = [n for n, t in enumerate(texts) if len(t) > limit]
    assert [r.line for r in rows if r.error and r.error.reason == "row_too_large"] == too_large
    assert [(r.line, r.data) for r in rows if r.error is None] == [
        (n, e) for n, e in enumerate(elements) if n not in too_large and isinstance(e, dict)
    ]
    assert "element 3: the element is longer than max_row_bytes (1,024 bytes)" in str(rows[3].error)


def test_csv_long_lines_are_passed_over(tmp_path: Path) -> None:
    """A physical line past `max_row_bytes` (unquoted, or inside a quoted field without quotes
    of its own) makes its record row_too_large, read in blocks; the records around it read as the
    csv module reads them, and the count under the same bound agrees."""
    from shardprep.sources import csvfile

    limit = 1024
    lines = [
        "id,text",
        "1,one",
        "2," + "y" * 3000,  # line 3: past the bound
        '3,"two\nlines"',  # lines 4-5
        '4,"starts\n' + "z" * 3000 + '\nends"',  # lines 6-8: its middle line past the bound
        "5," + "w" * 900,  # under it
        "6,six",
    ]
    p = tmp_path / "long.csv"
    p.write_text("\n".join(lines) + "\n")
    rows = [r for b in iter_source_batches(str(p), max_row_bytes=limit) for r in b]
    assert [(r.line, r.error and r.error.reason) for r in rows] == [
        (2, None),
        (3, "row_too_large"),
        (4, None),
        (6, "row_too_large"),
        (9, None),
        (10, None),
    ]
    assert [r.data for r in rows if r.data] == [
        {"id": "1", "text": "one"},
        {"id": "3", "text": "two\nlines"},
        {"id": "5", "text": "w" * 900},
        {"id": "6", "text": "six"},
    ]
    assert "line 3: the record is longer than max_row_bytes (1,024 bytes)" in str(rows[1].error)
    assert csvfile.count(str(p), None, limit).rows == len(rows)


@pytest.mark.parametrize(
    "record",
    ['7,"' + "q" * 3000 + '"', '7,"' + ("q" * 500 + "\n") * 4 + '"'],
    ids=["long_quoted_line", "long_multiline_field"],
)
def test_csv_quoted_field_past_the_bound_stops_the_file(tmp_path: Path, record: str) -> None:
    p = tmp_path / "long.csv"
    p.write_text("id,text\n1,one\n" + record + "\n8,eight\n")
    with pytest.raises(SourceError, match=r"long\.csv: line 3.* longer than max_row_bytes"):
        list(iter_source_batches(str(p), max_row_bytes=1024))
