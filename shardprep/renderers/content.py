"""Message content helpers shared by the renderer families (tinker-cookbook's base helpers)."""

from __future__ import annotations

import json
from typing import Any

from shardprep.errors import RendererError
from shardprep.messages import Message


def has_thinking(content: Any) -> bool:
    if isinstance(content, str):
        return "<think>" in content
    return any(isinstance(p, dict) and p.get("type") == "thinking" for p in content or ())


def ensure_text(content: Any) -> str:
    """A string, or a list holding exactly one text part; anything else is an error (tinker's rule)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        if len(content) == 1 and isinstance(content[0], dict) and content[0].get("type") == "text":
            return str(content[0].get("text", ""))
        raise RendererError(
            f"Expected text content, got multimodal content with {len(content)} parts",
            field="content",
        )
    raise RendererError(
        f"content must be a string or a list of parts, got {type(content).__name__}",
        field="content",
    )


def text_of(content: Any) -> str:
    """Join the text parts (tinker's get_text_content); other parts contribute nothing."""
    if isinstance(content, str):
        return content
    return "".join(
        str(p.get("text", ""))
        for p in content or ()
        if isinstance(p, dict) and p.get("type") == "text"
    )


def parts(content: Any) -> list[dict[str, Any]]:
    """Content as a part list (tinker's ensure_list)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return content
    raise RendererError(
        f"content must be a string or a list of parts, got {type(content).__name__}",
        field="content",
    )


def split_thinking(content: Any) -> tuple[str, str]:
    """(thinking, text): the concatenated thinking parts and text parts of a message's content."""
    if isinstance(content, str):
        return "", content
    thinking = ""
    body = ""
    for part in parts(content):
        kind = part.get("type")
        if kind == "thinking":
            thinking += str(part.get("thinking", ""))
        elif kind == "text":
            body += str(part.get("text", ""))
        else:
            raise RendererError(f"content part of type {kind!r} is not supported", field="content")
    return thinking, body


def tool_call_fields(call: Any) -> tuple[str, str]:
    """(name, arguments JSON string) of one tool call dict; malformed calls are a row error."""
    fn = call.get("function") if isinstance(call, dict) else None
    if (
        not isinstance(fn, dict)
        or not isinstance(fn.get("name"), str)
        or not isinstance(fn.get("arguments"), str)
    ):
        raise RendererError(
            "tool call must be {'type': 'function', 'function': {'name': str, 'arguments': str}}",
            field="tool_calls",
        )
    return fn["name"], fn["arguments"]


def tool_call_arguments(arguments: str) -> Any:
    """A tool call's arguments string as JSON; text that is not JSON is a bad_tool_call row."""
    try:
        return json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise RendererError(
            f"tool call arguments are not valid JSON: {exc}",
            field="tool_calls",
            reason="bad_tool_call",
        ) from exc


def tool_calls_of(message: Message) -> list[Any] | None:
    """The message's tool calls, or None when the key is absent."""
    if "tool_calls" not in message:
        return None
    calls = message["tool_calls"]
    if not isinstance(calls, list):
        raise RendererError("tool_calls must be a list", field="tool_calls")
    return calls
