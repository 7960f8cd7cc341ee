"""ShareGPT `conversations: [{from, value}]`, with LLaMA-Factory's tag options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from shardprep.errors import RowError
from shardprep.messages import ToolCall

from ._common import Message, column, finish, missing_turns, other_layout, parse_call_value

# LLaMA-Factory's dataset_info.json defaults for the `tags` of a sharegpt dataset.
DEFAULT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
TAG_KEYS = frozenset(DEFAULT_TAGS)
# Always understood, whatever the tags say.
_ALIASES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "system": "system",
    "tool": "tool",
    "observation": "tool",
}


def _role_map(tags: Mapping[str, str]) -> dict[str, str]:
    roles = dict(_ALIASES)
    roles[tags["user_tag"]] = "user"
    roles[tags["assistant_tag"]] = "assistant"
    roles[tags["observation_tag"]] = "tool"
    roles[tags["system_tag"]] = "system"
    roles[tags["function_tag"]] = "function_call"
    roles.setdefault("function_call", "function_call")
    return roles


def convert(
    row: Mapping[str, Any], columns: Mapping[str, str] | None = None, *, customized: bool = False
) -> list[Message]:
    cols = dict(columns or {})
    tags = {key: cols.pop(key, default) for key, default in DEFAULT_TAGS.items()}
    role_tag, content_tag = tags["role_tag"], tags["content_tag"]
    roles = _role_map(tags)
    try:
        turns, field = column(row, cols, "messages", default="conversations")
    except RowError as err:
        raise missing_turns(err, row, "sharegpt") from None
    if not isinstance(turns, list):
        raise RowError(
            "bad_content",
            f"{field!r} must be a list of turns, got {type(turns).__name__}",
            field=field,
        )
    messages: list[Message] = []
    flags: list[Any] = []
    system, system_field = column(row, cols, "system", required=False)
    if system is not None:
        if not isinstance(system, str):
            raise RowError("bad_content", "system must be a string", field=system_field)
        if system:
            messages.append({"role": "system", "content": system})
            # A system column has no trainable flag of its own; it is never trained on.
            flags.append(False)
    for i, turn in enumerate(turns):
        where = f"{field}[{i}]"
        if not isinstance(turn, dict):
            raise RowError(
                "bad_content", f"a turn must be an object, got {type(turn).__name__}", field=where
            )
        tag = turn.get(role_tag)
        if tag is None:
            hint = other_layout(turn, "sharegpt", field) if role_tag == "from" else ""
            raise RowError(
                "missing_field", f"turn has no {role_tag!r}{hint}", field=f"{where}.{role_tag}"
            )
        role = roles.get(tag) if isinstance(tag, str) else None
        if role is None:
            raise RowError("unknown_role", f"unknown role {tag!r}", field=f"{where}.{role_tag}")
        value = turn.get(content_tag)
        if value is None and content_tag not in turn:
            raise RowError(
                "missing_field", f"turn has no {content_tag!r}", field=f"{where}.{content_tag}"
            )
        if role == "function_call":
            calls = parse_call_value(value, f"{where}.{content_tag}")
            messages.append(
                {"role": "assistant", "content": "", "tool_calls": cast(list[ToolCall], calls)}
            )
        else:
            if value is None and role == "assistant":
                value = ""
            if not isinstance(value, str):
                raise RowError(
                    "bad_content",
                    f"{content_tag} must be a string, got {type(value).__name__}",
                    field=f"{where}.{content_tag}",
                )
            messages.append({"role": role, "content": value})
        flags.append(turn.get("trainable"))
    return finish(messages, field=field, customized=customized, trainable=flags)
