"""jsonparse.loads is json.loads: the same values with the same types, the same errors, on text
(str) where orjson and the standard parser differ and on real rows."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from shardprep import jsonparse
from tests.sources.test_jsonl_parse import EDGE_LINES, _lines, _typed


def _outcome(f: Any, text: str) -> Any:
    try:
        return ("value", _typed(f(text)))
    except json.JSONDecodeError as e:
        return ("error", e.msg, e.pos)
    except RecursionError:
        return ("recursion",)


def _texts() -> list[str]:
    rng = random.Random(11)
    lines = [*EDGE_LINES, *rng.sample(_lines(), 400)]  # real rows too (not all: a second each)
    texts = [line.decode("utf-8", errors="surrogateescape") for line in lines]
    texts += [
        '{"s": "\u4e2d\u6587 1234567890123456789012 \u00ff"}',  # a long digit run inside a string
        '{"n": 12345678901234567890123}',
        '[{"name": "f", "parameters": {"type": "object"}}]',
        '{"x": "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669" }',  # Arabic digits
        '"\udc80"',
        "",
        "  ",
    ]
    for _ in range(300):
        digits = "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(1, 24)))
        texts.append(
            f'{{"a": [{digits}, "{digits}", {rng.random()!r}, -{digits}e{rng.randint(-9, 9)}]}}'
        )
    return texts


def test_loads_is_json_loads() -> None:
    texts = _texts()
    assert len(texts) > 700
    for text in texts:
        assert _outcome(jsonparse.loads, text) == _outcome(json.loads, text), text[:80]


@pytest.mark.parametrize("text", ['{"n": 123456789012345678901}', '{"s": "x", "n": NaN}'])
def test_what_orjson_would_change_goes_to_the_standard_parser(text: str) -> None:
    assert jsonparse.fast_loads(text) is jsonparse.NOT_PARSED
    assert jsonparse.fast_loads(text.encode()) is jsonparse.NOT_PARSED
