"""JSON text to Python values exactly as `json.loads` makes them, by orjson where that gives the
same value (it is several times faster), for rows and for JSON strings inside rows (tool
declarations and calls).

orjson reads ints beyond 64 bits as floats; the standard parser keeps them exact. Text with a run
of 19 digits goes to the standard parser: found with translate + a substring search (two passes in
C), as a regex costs more than the parse itself on digit-heavy text. Anything orjson refuses (NaN,
lone surrogates, 1e400, invalid UTF-8, deep nesting) goes there too, which decides the value or
the error exactly as before.
"""

from __future__ import annotations

import json
from typing import Any

NOT_PARSED = object()
_DIGIT_MASK = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
# For str: characters past U+00FF are not in the table and stay as they are (never "0").
_DIGIT_MASK_STR = _DIGIT_MASK.decode("latin-1")
_LONG_RUN = b"0" * 19
_LONG_RUN_STR = "0" * 19

try:
    import orjson

    def fast_loads(raw: bytes | str) -> Any:
        """orjson's value where it equals `json.loads`'s, else NOT_PARSED."""
        if isinstance(raw, str):
            if _LONG_RUN_STR in raw.translate(_DIGIT_MASK_STR):
                return NOT_PARSED
        elif _LONG_RUN in raw.translate(_DIGIT_MASK):
            return NOT_PARSED
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return NOT_PARSED

except ImportError:  # pragma: no cover - orjson is a dependency; the standard parser is exact

    def fast_loads(raw: bytes | str) -> Any:
        return NOT_PARSED


def loads(text: str) -> Any:
    """`json.loads(text)`: the same value, the same errors."""
    data = fast_loads(text)
    return json.loads(text) if data is NOT_PARSED else data
