"""What every format shares: column lookup, tool-call normalisation, and the final checks."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any, cast

from shardprep import jsonparse
from shardprep.errors import RowError
from shardprep.messages import Message

ROLES = frozenset({"system", "user", "assistant", "tool"})
_MISSING = object()


def lookup(row: Mapping[str, Any], path: str) -> Any:
    """`row[path]`, or a dotted path into nested objects; `_MISSING` when absent.

    A key that itself contains dots wins over the nested reading, so flat columns named
    `a.b` (as some Parquet exports have) still work.
    """
    if path in row:
        return row[path]
    node: Any = row
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def column(
    row: Mapping[str, Any],
    columns: Mapping[str, str] | None,
    name: str,
    *,
    default: str | None = None,
    required: bool = True,
) -> tuple[Any, str]:
    """(value, the row's field name) of the format field `name`; None when optional and absent."""
    path = (columns or {}).get(name, default or name)
    value = lookup(row, path)
    if value is _MISSING or (value is None and required):
        if not required:
            return None, path
        if value is None:
            # The field is there, without a value: pointing `columns:` at it again would not help.
            raise RowError(
                "missing_field",
                f"{path!r} is null (a null value, or a CSV record with fewer fields than its "
                "header); the format needs a value here",
                field=path,
            )
        raise RowError("missing_field", _missing_message(row, columns, name, path), field=path)
    return value, path


def _missing_message(
    row: Mapping[str, Any], columns: Mapping[str, str] | None, name: str, path: str
) -> str:
    """Which fields the row does have, and the `columns:` mapping that would point `name` at one."""
    keys = [str(k) for k in row]
    have = (
        ", ".join(repr(k) for k in keys[:12]) + (", ..." if len(keys) > 12 else "")
        if keys
        else "no fields"
    )
    # A field named alike, else the row's only field, else a placeholder.
    close = difflib.get_close_matches(path, keys, n=1, cutoff=0.5) or (
        keys if len(keys) == 1 else []
    )
    target = close[0] if close else "<its field>"
    verb = "fix" if name in (columns or {}) else "set"
    return (
        f"the row has no {path!r} field (it has {have}); {verb} the source's "
        f"`columns: {{{name}: {target}}}` to read the format's {name!r} from another field, "
        "or check `format:` (`prep formats` lists each format's fields)"
    )


# The two turn layouts a conversation row comes in, told apart by the keys of a turn:
# (format, role key, content key, the field that format reads by default).
_LAYOUTS = (
    ("sharegpt", "from", "value", "conversations"),
    ("messages", "role", "content", "messages"),
)


def other_layout(turn: Any, fmt: str, field: str, *, whose: str = "its turns") -> str:
    """'' or, when `turn` (a message of the row's `field`) has the keys of the other layout, the
    format that reads it: what to append to the error a turn of that layout raised in `fmt`."""
    if not isinstance(turn, Mapping):
        return ""
    for name, role, content, default in _LAYOUTS:
        if name != fmt and role in turn:
            columns = "" if field == default else f" with `columns: {{messages: {field}}}`"
            return (
                f"; {whose} have {role!r}/{content!r} keys, the {name} layout: set "
                f"`format: {name}`{columns}"
            )
    return ""


def missing_turns(err: RowError, row: Mapping[str, Any], fmt: str) -> RowError:
    """`err` (the format's turns field is missing) told which format reads the turns the row
    does have, when another field holds them in the other layout."""
    for _name, _role, _content, default in _LAYOUTS:
        turns = row.get(default)
        if isinstance(turns, list) and turns:
            hint = other_layout(turns[0], fmt, default, whose=f"its {default!r} turns")
            if hint:
                err.message = f"the row has no {err.field!r} field{hint}"
                err.args = (err.describe(),)
                break
    return err


def not_a_message_list(value: Any, field: str) -> RowError:
    """The error for a messages field that is not a list; a string holding a JSON list (how CSV
    and some exports store conversations) is named as such, since it is not decoded."""
    got = type(value).__name__
    if isinstance(value, str) and value.lstrip().startswith("["):
        got = (
            "a string holding JSON text (a JSON-encoded list is not decoded: store it as a "
            "list, e.g. in JSONL or Parquet)"
        )
    return RowError("bad_content", f"{field!r} must be a list of messages, got {got}", field=field)


def string_field(value: Any, field: str, *, none_as_empty: bool = False) -> str:
    """A text field's value, or a `bad_content` RowError naming the field."""
    if value is None and none_as_empty:
        return ""
    if not isinstance(value, str):
        raise RowError(
            "bad_content", f"{field} must be a string, got {type(value).__name__}", field=field
        )
    return value


def arguments_string(args: Any, field: str) -> str:
    """Tool-call arguments as the JSON string the Message contract wants.

    Dict arguments are dumped with ensure_ascii=False and default separators: that reproduces the
    source text byte for byte for LLaMA-Factory's data (the golden conversations rely on it).
    """
    if args is None:
        return "{}"
    if isinstance(args, str):
        return args
    if isinstance(args, (dict, list)):
        return json.dumps(args, ensure_ascii=False)
    raise RowError(
        "bad_tool_call",
        f"tool-call arguments must be an object or a JSON string, got {type(args).__name__}",
        field=field,
    )


def parse_call_value(value: Any, field: str) -> list[dict[str, Any]]:
    """A LLaMA-Factory style call `{"name", "arguments"}` (or a list of them), given as JSON text or parsed."""
    if isinstance(value, str):
        try:
            value = jsonparse.loads(value)
        except json.JSONDecodeError as e:
            raise RowError(
                "bad_tool_call", f"tool call is not valid JSON: {e.msg}", field=field
            ) from e
    calls = value if isinstance(value, list) else [value]
    out = []
    for i, call in enumerate(calls):
        where = f"{field}[{i}]" if isinstance(value, list) else field
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
            raise RowError("bad_tool_call", "a tool call needs a string `name`", field=where)
        out.append(
            {
                "type": "function",
                "id": None,
                "function": {
                    "name": call["name"],
                    "arguments": arguments_string(call.get("arguments"), f"{where}.arguments"),
                },
            }
        )
    return out


def normalize_tool_calls(calls: Any, field: str) -> list[dict[str, Any]]:
    """OpenAI `tool_calls` (nested `function`, or flat `name`/`arguments`) in the contract's shape."""
    if not isinstance(calls, list):
        raise RowError(
            "bad_tool_call", f"tool_calls must be a list, got {type(calls).__name__}", field=field
        )
    out = []
    for i, call in enumerate(calls):
        where = f"{field}[{i}]"
        if not isinstance(call, dict):
            raise RowError("bad_tool_call", "a tool call must be an object", field=where)
        fn = call.get("function", call)
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise RowError(
                "bad_tool_call",
                "a tool call needs a string function name",
                field=f"{where}.function.name",
            )
        call_id = call.get("id")
        if call_id is not None and not isinstance(call_id, str):
            call_id = str(call_id)
        out.append(
            {
                "type": "function",
                "id": call_id or None,
                "function": {
                    "name": fn["name"],
                    "arguments": arguments_string(
                        fn.get("arguments"), f"{where}.function.arguments"
                    ),
                },
            }
        )
    return out


def finish(
    messages: list[Message], *, field: str, customized: bool, trainable: list[Any] | None = None
) -> list[Message]:
    """Checks and fills shared by every format.

    * tool calls without an id get `call_1`, `call_2`, ... (position in the conversation);
    * a run of exactly k tool messages right after an assistant message with k tool calls is
      paired with those calls in order (tool_call_id and name), unless it names them itself;
    * `trainable` is kept only for `train_on: customized`, where every message needs a bool.
    """
    if not messages:
        raise RowError("empty_conversation", "the conversation has no messages", field=field)
    k = 0
    for msg in messages:
        for call in msg.get("tool_calls", ()):
            k += 1
            if call["id"] is None:
                call["id"] = f"call_{k}"
    for i, msg in enumerate(messages):
        calls = msg.get("tool_calls")
        if msg["role"] != "assistant" or not calls:
            continue
        j = i + 1
        while j < len(messages) and messages[j]["role"] == "tool":
            j += 1
        if j - (i + 1) != len(calls):
            continue
        for call, tool_msg in zip(calls, messages[i + 1 : j], strict=True):
            if "tool_call_id" not in tool_msg and "name" not in tool_msg:
                tool_msg["tool_call_id"] = cast(str, call["id"])
                tool_msg["name"] = call["function"]["name"]
    if customized:
        flags = trainable if trainable is not None else [None] * len(messages)
        for i, (msg, flag) in enumerate(zip(messages, flags, strict=True)):
            if not isinstance(flag, bool):
                got = "no" if flag is None else f"a {type(flag).__name__}"
                raise RowError(
                    "missing_trainable",
                    f"train_on: customized needs a bool `trainable` on every message; message {i} has {got} "
                    "`trainable`",
                    field=f"{field}[{i}].trainable",
                )
            msg["trainable"] = flag
    return messages
