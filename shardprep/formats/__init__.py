"""Format adapters: one source row -> a conversation (`list[Message]`, see docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import alpaca, messages, prompt_completion, sharegpt
from ._common import Message

Converter = Callable[..., list[Message]]

# Which source formats each kind of task reads (tasks name one of these tuples).
CONVERSATION_FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion")
PAIR_FORMATS = ("tinker_comparison", "sharegpt_pair", "messages_pair", "text_pair", "hh_rlhf")
TEXT_FORMATS = ("text",)
ALL_FORMATS = (*CONVERSATION_FORMATS, *PAIR_FORMATS, *TEXT_FORMATS)

FORMATS: dict[str, Converter] = {
    "messages": messages.convert,
    "sharegpt": sharegpt.convert,
    "alpaca": alpaca.convert,
    "prompt_completion": prompt_completion.convert,
}


def normalizations(format: str) -> tuple[str, ...]:
    """What a format changes in a row before any renderer sees it (recorded in the manifest)."""
    return messages.NORMALIZATIONS if format == "messages" else ()


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


# Pair formats (task dpo) and plain text (task pretrain) live in their own modules.
from .comparison import COMPARISON_FORMATS, Comparison, LabeledComparison, to_comparison  # noqa: E402
from .text import to_text  # noqa: E402
from .tools import declare_tools, tools_of  # noqa: E402

__all__ = [
    "ALL_FORMATS",
    "COMPARISON_FORMATS",
    "CONVERSATION_FORMATS",
    "PAIR_FORMATS",
    "TEXT_FORMATS",
    "FORMATS",
    "Comparison",
    "LabeledComparison",
    "Message",
    "declare_tools",
    "to_comparison",
    "to_conversation",
    "to_text",
    "tools_of",
]
