"""Checks on a parsed row that the JSON parser does not make, but every later stage relies on.

JSON accepts `"\\ud800"` (a lone surrogate escape), which is no Unicode text: the tokenizer then
fails on the whole batch. And a row nested a thousand levels deep parses, but exhausts Python's
stack in whichever stage walks it next. Both are bad rows, found here with their file and line.
The checks cost nothing for ordinary rows: each runs only when a cheap scan of the raw text says
it could find something.
"""

from __future__ import annotations

import re
from typing import Any

# Nesting deeper than this is refused: far beyond any chat row, far below Python's stack limit.
MAX_DEPTH = 64
TOO_DEEP = f"the row nests lists/objects more than {MAX_DEPTH} levels deep"
# A JSON escape of a UTF-16 surrogate (high or low); a valid pair decodes to one character.
SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
SURROGATE_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")
_OPENERS = re.compile(rb"[\[{]")


def row_too_large(what: str, limit: int) -> tuple[str, str]:
    """(reason, message) for a line, element or record longer than `max_row_bytes`."""
    return (
        "row_too_large",
        f"the {what} is longer than max_row_bytes ({limit:,} bytes); raise `max_row_bytes` in "
        "the recipe if such rows are meant to be read",
    )


def object_problem(value: Any, raw: bytes | str) -> tuple[str, str] | None:
    """(reason, message) when a parsed JSON row, read from `raw`, is not an object or fails
    `row_problem`; the scans of `raw` keep that walk off ordinary rows."""
    if not isinstance(value, dict):
        return "not_an_object", f"expected a JSON object, got {type(value).__name__}"
    if isinstance(raw, str):
        surrogates = bool(SURROGATE_ESCAPE_TEXT.search(raw))
    else:
        surrogates = bool(SURROGATE_ESCAPE_BYTES.search(raw))
    deep = might_nest_deep(raw)
    if surrogates or deep:
        return row_problem(value, surrogates=surrogates, depth=deep)
    return None


def might_nest_deep(raw: bytes | str) -> bool:
    """False when the text holds too few brackets to nest past MAX_DEPTH."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{") > MAX_DEPTH
    return raw.count(b"[") + raw.count(b"{") > MAX_DEPTH


def row_problem(value: Any, *, surrogates: bool, depth: bool) -> tuple[str, str] | None:
    """(reason, message) for a lone surrogate in any string or key, or nesting past MAX_DEPTH."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, level = stack.pop()
        if isinstance(v, str):
            if surrogates and _lone_surrogate(v):
                return (
                    "invalid_utf8",
                    f"a string holds a lone surrogate ({_lone_surrogate(v)}), which is not text",
                )
            continue
        if isinstance(v, dict):
            items: Any = v.values()
            if surrogates:
                stack.extend((k, level) for k in v)
        elif isinstance(v, list):
            items = v
        else:
            continue
        if depth and level > MAX_DEPTH:
            return "too_deeply_nested", TOO_DEEP
        stack.extend((x, level + 1) for x in items)
    return None


def _lone_surrogate(s: str) -> str:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"\\u{ord(s[e.start]):04x}"
    return ""
