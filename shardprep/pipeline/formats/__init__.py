"""Format adapters: one source row -> a conversation (`list[Message]`, see docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import alpaca, messages, sharegpt
from ._common import Message

Converter = Callable[..., list[Message]]

FORMATS: dict[str, Converter] = {
    "messages": messages.convert,
    "sharegpt": sharegpt.convert,
    "alpaca": alpaca.convert,
}


def to_conversation(
    row: Mapping[str, Any],
    *,
    format: str,
    columns: Mapping[str, str] | None = None,
    customized: bool = False,
) -> list[Message]:
    """Convert one row; raises `RowError` (reason, field) when the row does not fit the format.

    `columns` maps the format's field names to the row's (dotted paths allowed); for sharegpt it
    may also hold LLaMA-Factory's tag keys (`role_tag`, `content_tag`, `user_tag`, ...).
    """
    try:
        convert = FORMATS[format]
    except KeyError:
        raise ValueError(
            f"unknown format {format!r}; known: {', '.join(sorted(FORMATS))}"
        ) from None
    return convert(row, columns, customized=customized)


__all__ = ["FORMATS", "Message", "to_conversation"]
