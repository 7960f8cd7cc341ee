"""`text` rows (task pretrain): one document per row, from the `text` column (mappable via columns)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shardprep.errors import RowError

from ._common import column


def to_text(row: Mapping[str, Any], *, columns: Mapping[str, str] | None = None) -> str:
    value, field = column(row, columns, "text")
    if not isinstance(value, str):
        raise RowError(
            "bad_content", f"{field} must be a string, got {type(value).__name__}", field=field
        )
    return value
