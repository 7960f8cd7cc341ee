"""Byte sizes as people write and read them: one syntax for every size a user gives (a recipe's
`max_bytes` and `max_row_bytes`, the reader's `cache_limit`) and one way to print one."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)


def parse_size(value: int | str) -> int:
    """Bytes from a count or a number with a unit: '256MB' -> 256_000_000 (decimal units),
    '256MiB' or '256Mi' -> 268_435_456 (binary ones), '1.5 GB', '4096', 4096. Case is free.
    ValueError for anything else; the caller says which setting it was."""
    if isinstance(value, int):
        return value
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"not a size: {value!r} (use e.g. 256MB, 1GiB or a byte count)")
    number, unit = float(m.group(1)), (m.group(2) or "").upper()
    power = "KMGT".index(unit[0]) + 1 if unit[:1] in ("K", "M", "G", "T") else 0
    return int(number * (1024 if "I" in unit else 1000) ** power)


def human_bytes(n: int) -> str:
    """Decimal units, as storage consoles print them."""
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{n:,} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")
