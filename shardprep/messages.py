"""The conversation every format produces and every renderer consumes: one definition.

Keys are absent when not present (never None), except where a row's own layout is kept for the
renderer to judge (tinker refuses some layouts; the renderer says which, with a reason).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from typing_extensions import NotRequired, Required


class ToolCallFunction(TypedDict):
    name: str
    arguments: str  # a JSON *string*, as in OpenAI's format and tinker-cookbook's ToolCall


class ToolCall(TypedDict, total=False):
    type: Literal["function"]
    id: str | None
    function: Required[ToolCallFunction]


class TextPart(TypedDict):
    type: Literal["text"]
    text: str


class ThinkingPart(TypedDict):
    type: Literal["thinking"]
    thinking: str


# Other part types (images, unknown ones) reach the renderer as plain dicts and are refused there.
ContentPart = TextPart | ThinkingPart | dict[str, Any]


class Message(TypedDict, total=False):
    role: Required[str]  # system, user, assistant, tool, ...
    content: str | list[ContentPart]
    tool_calls: list[ToolCall]
    trainable: bool  # only with train_on: customized, then on every message
    name: str  # tool messages
    tool_call_id: str
    thinking: NotRequired[str]


class ToolSpec(TypedDict, total=False):
    """A tool declaration (tinker's ToolSpec); keys beyond these are kept as given."""

    name: Required[str]
    description: str
    parameters: dict[str, Any]
