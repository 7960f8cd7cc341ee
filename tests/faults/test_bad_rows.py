"""Item 4 (and the CSV part of item 7): every hostile row is one counted reason with its file and
line under `on_error: skip`, and a one-line error naming them under `fail`; the good rows around
it are all built (rows lost: zero)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from shardprep.sources.files import count_rows, iter_source_rows

from ._project import chat_row, prep, write_recipe

GOOD = 12
DEEP = '{"messages": ' + "[" * 5000 + "]" * 5000 + "}"
# Parses (under Python's recursion limit) but nests far deeper than any chat row.
DEEPISH = '{"messages": [{"role": "user", "content": "x", "x": ' + "[" * 200 + "]" * 200 + "}]}"
SURROGATE = (
    '{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "a"}]}'
)
SURROGATE_KEY = '{"messages": [{"role": "user", "content": "q", "\\udfff": 1}, {"role": "assistant", "content": "a"}]}'
BAD_BYTES = b'{"messages": [{"role": "user", "content": "\xff\xfe"}, {"role": "assistant", "content": "a"}]}'
# A valid surrogate pair is one emoji: a good row.
PAIR = '{"messages": [{"role": "user", "content": "\\ud83d\\ude00"}, {"role": "assistant", "content": "a"}]}'

JSONL_BAD: dict[str, tuple[bytes, str]] = {
    "deep": (DEEP.encode(), "too_deeply_nested"),
    "deepish": (DEEPISH.encode(), "too_deeply_nested"),
    "surrogate": (SURROGATE.encode(), "invalid_utf8"),
    "surrogate_key": (SURROGATE_KEY.encode(), "invalid_utf8"),
    "bad_bytes": (BAD_BYTES, "invalid_utf8"),
}


def _good_lines(n: int) -> list[bytes]:
    return [json.dumps(chat_row(i)).encode() for i in range(n)]


def _jsonl(bad: bytes) -> tuple[bytes, int]:
    """GOOD good rows with `bad` in the middle and a surrogate pair row; (file, bad line)."""
    lines = _good_lines(GOOD)
    lines.insert(GOOD // 2, bad)
    lines.append(PAIR.encode())
    return b"\n".join(lines) + b"\n", GOOD // 2 + 1


def _json_array(bad: bytes) -> tuple[bytes, int]:
    lines = _good_lines(GOOD)
    lines.insert(GOOD // 2, bad)
    lines.append(PAIR.encode())
    return b"[\n" + b",\n".join(lines) + b"\n]\n", GOOD // 2


@pytest.mark.parametrize("kind", list(JSONL_BAD))
@pytest.mark.parametrize("layout", ["jsonl", "json"])
def test_reader_reports_the_row_and_keeps_the_rest(
    tmp_path: Path, kind: str, layout: str, faults
) -> None:
    bad, reason = JSONL_BAD[kind]
    blob, where = (_jsonl if layout == "jsonl" else _json_array)(bad)
    path = tmp_path / f"rows.{layout}"
    path.write_bytes(blob)
    faults.bad_input()
    rows = list(iter_source_rows(str(path)))
    assert len(rows) == count_rows(str(path)) == GOOD + 2
    errors = [r for r in rows if r.error is not None]
    assert [(e.error.reason, e.line) for e in errors] == [(reason, where)]  # type: ignore[union-attr]
    assert sum(r.data is not None for r in rows) == GOOD + 1
    faults.rows_lost(GOOD + 1 - sum(r.data is not None for r in rows))


CSV_HEADER = "prompt,completion\n"


def _csv_good(i: int) -> str:
    return f"question {i},answer {i}\n"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ('"unterminated,quote\n', "malformed_csv"),
        ('"closed"junk,x\n', "malformed_csv"),
        ("a,b,c\n", "malformed_csv"),
    ],
    ids=["unterminated_quote", "text_after_quote", "extra_field"],
)
def test_csv_bad_record_is_blamed_on_its_line_and_later_rows_kept(
    tmp_path: Path, bad: str, reason: str, faults
) -> None:
    body = (
        CSV_HEADER
        + "".join(_csv_good(i) for i in range(3))
        + bad
        + "".join(_csv_good(i) for i in range(3, 6))
    )
    path = tmp_path / "rows.csv"
    path.write_text(body)
    faults.bad_input()
    rows = list(iter_source_rows(str(path)))
    assert len(rows) == count_rows(str(path)) == 7
    assert [(r.line, r.error.reason) for r in rows if r.error] == [(5, reason)]
    good = [r for r in rows if r.data is not None]
    assert [r.data["prompt"] for r in good] == [f"question {i}" for i in range(6)]  # type: ignore[index]
    assert [r.line for r in good] == [2, 3, 4, 6, 7, 8]
    faults.rows_lost(6 - len(good))


def test_csv_invalid_bytes_are_one_row(tmp_path: Path, faults) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(CSV_HEADER.encode() + b"ok,fine\n\xff\xfe,bad\nok2,fine2\n")
    faults.bad_input()
    rows = list(iter_source_rows(str(path)))
    assert [(r.line, r.error.reason if r.error else None) for r in rows] == [
        (2, None),
        (3, "invalid_utf8"),
        (4, None),
    ]


def test_csv_multiline_quoted_field_is_one_row(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(CSV_HEADER + '"two\nlines",x\nlast,y\n')
    rows = list(iter_source_rows(str(path)))
    assert [(r.line, r.data) for r in rows] == [
        (2, {"prompt": "two\nlines", "completion": "x"}),
        (4, {"prompt": "last", "completion": "y"}),
    ]


@pytest.mark.parametrize("kind", list(JSONL_BAD))
def test_build_skip_counts_reason_with_file_and_line(tmp_path: Path, kind: str, faults) -> None:
    bad, reason = JSONL_BAD[kind]
    blob, where = _jsonl(bad)
    (tmp_path / "rows.jsonl").write_bytes(blob)
    recipe = write_recipe(tmp_path, "rows.jsonl", on_error="skip")
    faults.bad_input()
    code, out = prep("build", str(recipe), "--quiet")
    assert code == 0, out
    m = json.loads((tmp_path / "out/manifest.json").read_text())
    assert m["stats"]["dropped"] == {reason: 1}
    assert m["splits"]["train"]["rows"] == GOOD + 1
    faults.rows_lost(GOOD + 1 - m["splits"]["train"]["rows"])
    skipped = [
        json.loads(x) for x in (tmp_path / "out" / m["skipped_sample"]).read_text().splitlines()
    ]
    assert [(s["reason"], s["line"], Path(s["file"]).name) for s in skipped] == [
        (reason, where, "rows.jsonl")
    ]
    rows = [
        r
        for s in m["splits"]["train"]["shards"]
        for r in pq.read_table(tmp_path / "out" / s["path"]).to_pylist()
    ]
    assert len(rows) == GOOD + 1


@pytest.mark.parametrize("kind", list(JSONL_BAD))
def test_build_fail_names_file_line_and_reason(tmp_path: Path, kind: str, faults) -> None:
    bad, reason = JSONL_BAD[kind]
    blob, where = _jsonl(bad)
    (tmp_path / "rows.jsonl").write_bytes(blob)
    recipe = write_recipe(tmp_path, "rows.jsonl", on_error="fail")
    faults.bad_input()
    code, out = prep("build", str(recipe), "--quiet")
    assert code == 2, out
    assert "internal error" not in out
    assert f"rows.jsonl, line {where}" in out and f"[{reason}]" in out


def test_unexpected_exception_in_a_row_is_counted_not_internal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults
) -> None:
    """A bug that only one row triggers (here injected into the format) costs that row, not the build."""
    import shardprep.tasks.sft as sft

    real = sft.to_conversation

    def flaky(data: dict, **kwargs: object) -> object:
        if "Question 3:" in json.dumps(data):
            raise TypeError("injected failure")
        return real(data, **kwargs)

    monkeypatch.setattr(sft, "to_conversation", flaky)
    (tmp_path / "rows.jsonl").write_bytes(b"\n".join(_good_lines(GOOD)) + b"\n")
    faults.fault()
    code, out = prep("build", str(write_recipe(tmp_path, "rows.jsonl", on_error="skip")), "--quiet")
    assert code == 0, out
    m = json.loads((tmp_path / "out/manifest.json").read_text())
    assert (
        m["stats"]["dropped"] == {"unexpected_error": 1}
        and m["splits"]["train"]["rows"] == GOOD - 1
    )
    code, out = prep(
        "build", str(write_recipe(tmp_path, "rows.jsonl", name="failing", output="out2")), "--quiet"
    )
    assert code == 2 and "rows.jsonl, line 4" in out and "injected failure" in out, out
    assert "internal error" not in out
