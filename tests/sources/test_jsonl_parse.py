"""sources/jsonl.py parses with orjson where it equals the standard parser: same values, same types,
same bad-row reasons, on real fixtures and on the inputs where the two parsers differ."""

from __future__ import annotations

import gzip
import random
from pathlib import Path
from typing import Any

import pytest

from shardprep import jsonparse
from shardprep.sources import jsonl

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

EDGE_LINES = [
    b'{"a": 1, "a": 2}',
    b'{"a": 1e400}',
    b'{"a": NaN, "b": -Infinity}',
    b'{"big": 18446744073709551616, "neg": -9223372036854775809}',
    b'{"u64": 18446744073709551615, "i": 9223372036854775807}',
    b'{"x": "\\ud800"}',
    b'{"x": "\\ud83d\\ude00 \\u00e9"}',
    b'{"x": "a\x01b"}',
    b'  {"a": [1, 2.50, -0.0, 1E5, 5e-324, 0.1]}\r',
    b'{"x": "\xff\xfe"}',
    b"[1, 2]",
    b'"just a string"',
    b'{"deep": ' + b"[" * 70 + b"]" * 70 + b"}",
    b'{"deeper": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    b'{"k": {"nested": [{"role": "user", "content": "hi"}], "n": null, "t": true}}',
    b'{"trailing": 1} x',
    b"{",
]


def _typed(value: Any) -> Any:
    """A value with every scalar's type made part of it (1 == 1.0 == True otherwise)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, repr(value))


def _read(path: Path, *, fast: bool, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(jsonl, "fast_loads", lambda raw: jsonparse.NOT_PARSED)
        out = []
        for line, data, error in jsonl.rows(str(path), None, 0):
            out.append((line, _typed(data), error.reason if error else None))
        return out


def _lines() -> list[bytes]:
    found = [*EDGE_LINES]
    for p in sorted(FIXTURES.rglob("*.jsonl.gz")):
        found += gzip.decompress(p.read_bytes()).splitlines()[:200]
    return found


def test_orjson_reads_exactly_what_json_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _lines()
    assert len(lines) > 500
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    fast = _read(path, fast=True, monkeypatch=monkeypatch)
    plain = _read(path, fast=False, monkeypatch=monkeypatch)
    assert fast == plain
    reasons = {r for _, _, r in fast if r}
    # The edge lines reach the bad-row reasons they should, by either parser.
    assert {"malformed_json", "invalid_utf8", "not_an_object", "too_deeply_nested"} <= reasons


def test_orjson_matches_on_shuffled_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(7)
    lines = []
    for _ in range(400):
        digits = rng.randint(1, 25)
        n = (
            rng.choice(["", "-"])
            + str(rng.randint(1, 9))
            + "".join(str(rng.randint(0, 9)) for _ in range(digits - 1))
        )
        frac = rng.choice(["", "." + str(rng.randint(0, 10**6)), "e" + str(rng.randint(-330, 330))])
        lines.append(f'{{"n": {n}{frac}, "s": "{n}"}}'.encode())
    path = tmp_path / "numbers.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert _read(path, fast=True, monkeypatch=monkeypatch) == _read(
        path, fast=False, monkeypatch=monkeypatch
    )
