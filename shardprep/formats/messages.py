"""OpenAI-style `messages`, including LLaMA-Factory's v1 part layout (`{"type", "value"}`).

A row in tinker-cookbook's own message layout reaches the renderer as tinker would see it (checked
against tinker itself by tests/reference): `content` as given (a string, or a list of parts, even
an empty one), `tool_calls` as given (an empty list stays an empty list). The deliberate
normalizations, each a layout users reasonably expect to work:

* `content: null` is `""` (OpenAI's tool-call turns; tinker's OpenAI converter does the same);
* `reasoning_content` (assistant only, as tinker's converter), or vLLM's `reasoning` where that is
  absent or null, becomes the leading thinking part;
* a null `name`, `tool_call_id`, `tool_calls` or `reasoning_content` is an absent one (Parquet /
  HF datasets exports give every message every field);
* tool-call `arguments` given as an object or array become their JSON text, missing ones `"{}"`;
  flat `{"name", "arguments"}` calls get the nested `function` shape;
* calls without an id get `call_1`, `call_2`, ...; a run of tool messages answering a message's
  calls one for one gets each call's id and name when it names neither (`_common.finish`).

Refused on purpose although some tinker renderers would render them: image / audio / unknown
part types (shardprep is text-only; tinker's text renderers drop such parts silently), malformed
parts (no `text` / `thinking`, non-string text), and a non-bool `trainable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from shardprep.errors import RowError
from shardprep.messages import ToolCall

from ._common import (
    ROLES,
    Message,
    column,
    finish,
    missing_turns,
    normalize_tool_calls,
    not_a_message_list,
    other_layout,
    parse_call_value,
)

# The deliberate normalizations above, as the manifest records them for a source of this format.
NORMALIZATIONS = (
    "content: null -> empty string",
    "reasoning_content (assistant; or vLLM's reasoning) -> leading thinking part",
    "null name / tool_call_id / tool_calls / reasoning_content -> absent",
    "tool-call arguments given as object/array -> their JSON text; missing -> {}",
    "flat {name, arguments} tool calls -> {type: function, function: {...}}",
    "tool calls without an id -> call_1, call_2, ...; tool results take the id and name of the call they answer",
)

# LLaMA-Factory's tool-use layout (reason_tool_use_demo) marks reasoning and calls as parts; in that
# layout plain text of system/user/tool messages is a string (as the golden conversations have it).
_LF_TOOL_PARTS = frozenset({"reasoning", "tool_call"})


def _text_of(part: Mapping[str, Any], keys: tuple[str, ...], field: str) -> str:
    for key in keys:
        value = part.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise RowError(
                    "bad_content",
                    f"{part.get('type')} part text must be a string, got {type(value).__name__}",
                    field=f"{field}.{key}",
                )
            return value
    raise RowError(
        "bad_content",
        f"{part.get('type')} part has no {' or '.join(repr(k) for k in keys)}",
        field=field,
    )


def _parts(content: list[Any], field: str) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Content parts -> (text/thinking parts, tool calls carried as parts)."""
    parts: list[dict[str, str]] = []
    calls: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        where = f"{field}[{j}]"
        if not isinstance(part, dict):
            raise RowError(
                "bad_content",
                f"a content part must be an object, got {type(part).__name__}",
                field=where,
            )
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": _text_of(part, ("text", "value"), where)})
        elif kind in ("thinking", "reasoning"):
            parts.append(
                {"type": "thinking", "thinking": _text_of(part, (kind, "value", "text"), where)}
            )
        elif kind == "tool_call":
            value = part.get("value", part.get("tool_call"))
            if value is None:
                raise RowError("bad_tool_call", "tool_call part has no value", field=where)
            calls.extend(parse_call_value(value, f"{where}.value"))
        else:
            raise RowError(
                "bad_content",
                f"unsupported content part type {kind!r} (text, thinking, reasoning, tool_call)",
                field=f"{where}.type",
            )
    return parts, calls


def _lf_tool_layout(raw: list[Any]) -> bool:
    """Whether any message holds a LLaMA-Factory tool part (a loop, not nested generators: this
    runs for every row)."""
    for m in raw:
        if isinstance(m, dict):
            content = m.get("content")
            if isinstance(content, list):
                for p in content:
                    if isinstance(p, dict) and p.get("type") in _LF_TOOL_PARTS:
                        return True
    return False


def convert(
    row: Mapping[str, Any], columns: Mapping[str, str] | None = None, *, customized: bool = False
) -> list[Message]:
    try:
        raw, field = column(row, columns, "messages")
    except RowError as err:
        raise missing_turns(err, row, "messages") from None
    if not isinstance(raw, list):
        raise not_a_message_list(raw, field)
    lf_tool_layout: bool | None = None  # looked for at the first list content only
    messages: list[Message] = []
    flags: list[Any] = []
    for i, src in enumerate(raw):
        if type(src) is dict and len(src) == 2:
            # The common message, exactly {role, content: str}: what the loop below makes of it,
            # without its checks of keys the message does not have.
            role, content = src.get("role"), src.get("content")
            if type(content) is str and type(role) is str and role in ROLES:
                messages.append({"role": role, "content": content})
                flags.append(None)
                continue
        where = f"{field}[{i}]"
        if not isinstance(src, dict):
            raise RowError(
                "bad_content", f"a message must be an object, got {type(src).__name__}", field=where
            )
        role = src.get("role")
        if role is None:
            raise RowError(
                "missing_field",
                "message has no role" + other_layout(src, "messages", field),
                field=f"{where}.role",
            )
        if not isinstance(role, str) or role not in ROLES:
            raise RowError(
                "unknown_role",
                f"unknown role {role!r} (system, user, assistant, tool)",
                field=f"{where}.role",
            )
        msg: Message = {"role": role}
        content = src.get("content")
        calls: list[dict[str, Any]] = []
        if content is None:
            if role != "assistant":
                raise RowError(
                    "missing_field", f"{role} message has no content", field=f"{where}.content"
                )
            content = ""
        elif isinstance(content, list):
            parts, calls = _parts(content, f"{where}.content")
            if lf_tool_layout is None:
                lf_tool_layout = _lf_tool_layout(raw)
            if (
                lf_tool_layout
                and role != "assistant"
                and len(parts) == 1
                and parts[0]["type"] == "text"
            ):
                content = parts[0]["text"]
            elif not parts and calls:
                content = ""  # the content held only LLaMA-Factory tool_call parts
            else:
                # Kept as a list, even an empty one: renderers treat `[]` unlike `""` (tinker
                # refuses it where it wants exactly one text part).
                content = parts
        elif not isinstance(content, str):
            raise RowError(
                "bad_content",
                f"content must be a string or a list of parts, got {type(content).__name__}",
                field=f"{where}.content",
            )
        # A null field is an absent one (Parquet exports give every message every field), so
        # `reasoning_content: null` beside vLLM's `reasoning` reads the latter.
        reasoning = src.get("reasoning_content")
        if reasoning is None:
            reasoning = src.get("reasoning")
        if reasoning is not None and not isinstance(reasoning, str):
            raise RowError(
                "bad_content",
                "reasoning_content must be a string",
                field=f"{where}.reasoning_content",
            )
        if reasoning and role != "assistant":
            # tinker's OpenAI converter refuses it too: only a produced turn reasons.
            raise RowError(
                "bad_content",
                f"reasoning_content is only valid on assistant messages, not {role}",
                field=f"{where}.reasoning_content",
            )
        if reasoning:
            # A separate reasoning field becomes the leading thinking part, as renderers expect.
            rest = (
                content
                if isinstance(content, list)
                else ([{"type": "text", "text": content}] if content else [])
            )
            content = [{"type": "thinking", "thinking": reasoning}, *rest]
        msg["content"] = cast(Any, content)  # kept as the row has it; the renderer judges it
        listed = src.get("tool_calls") is not None
        if listed:
            calls = normalize_tool_calls(src["tool_calls"], f"{where}.tool_calls") + calls
        if calls:
            if role != "assistant":
                raise RowError(
                    "bad_tool_call",
                    f"only assistant messages carry tool calls, not {role}",
                    field=f"{where}.tool_calls",
                )
            msg["tool_calls"] = cast(list[ToolCall], calls)
        elif listed and role == "assistant":
            # `"tool_calls": []` is kept: the ChatML templates write a separator for an empty
            # list that they do not write for a missing key (tinker follows them).
            msg["tool_calls"] = []
        if role == "tool":
            for key in ("tool_call_id", "name"):
                value = src.get(key)
                if value is not None:
                    if not isinstance(value, str):
                        raise RowError(
                            "bad_content", f"{key} must be a string", field=f"{where}.{key}"
                        )
                    msg[key] = value
        messages.append(msg)
        flags.append(src.get("trainable"))
    return finish(messages, field=field, customized=customized, trainable=flags)
