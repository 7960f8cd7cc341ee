"""A row's tool declarations (the `tools` column), as tinker's ToolSpec dicts.

Kept apart from `to_conversation`: declarations are not messages, and how they enter the prompt
is the renderer's business (`Renderer.tool_prefix`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from shardprep import jsonparse
from shardprep.errors import RowError
from shardprep.renderers.tools import ToolSpec, with_tool_prefix

from ._common import Message, column

if TYPE_CHECKING:  # a type only: loading a recipe imports no renderer
    from shardprep.renderers.base import Renderer


def _spec(entry: Any, where: str) -> ToolSpec:
    if not isinstance(entry, dict):
        raise RowError("bad_tools", "a tool declaration must be an object", field=where)
    # OpenAI style {"type": "function", "function": {...}} carries the spec one level down.
    if entry.get("type") == "function" and isinstance(entry.get("function"), dict):
        entry, where = entry["function"], f"{where}.function"
    if not isinstance(entry.get("name"), str) or not entry["name"]:
        raise RowError(
            "bad_tools", "a tool declaration needs a string `name`", field=f"{where}.name"
        )
    if not isinstance(entry.get("description"), str):
        raise RowError(
            "bad_tools",
            "a tool declaration needs a string `description`",
            field=f"{where}.description",
        )
    if not isinstance(entry.get("parameters"), dict):
        raise RowError(
            "bad_tools",
            "a tool declaration needs `parameters` (a JSON-schema object)",
            field=f"{where}.parameters",
        )
    # Key order is kept: several families dump the spec as JSON.
    return cast(ToolSpec, dict(entry))


def tools_of(
    row: Mapping[str, Any], columns: Mapping[str, str] | None = None
) -> list[ToolSpec] | None:
    """The row's tool specs; None when the row declares none (no column, null, "" or []).

    The column holds a JSON string (LLaMA-Factory's layout) or a list of objects; `columns:
    {tools: name}` maps it. Malformed declarations raise `RowError` reason `bad_tools`.
    """
    value, field = column(row, columns, "tools", required=False)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = jsonparse.loads(value)
        except json.JSONDecodeError as e:
            raise RowError("bad_tools", f"tools is not valid JSON: {e.msg}", field=field) from e
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise RowError(
            "bad_tools",
            f"tools must be a list of declarations, got {type(value).__name__}",
            field=field,
        )
    specs = [_spec(entry, f"{field}[{i}]") for i, entry in enumerate(value)]
    return specs or None


def declare_tools(
    renderer: Renderer,
    conversation: list[Message],
    row: Mapping[str, Any],
    columns: Mapping[str, str] | None,
    mode: str,
) -> list[Message]:
    """The conversation as the sft task renders it under recipe option `tools` (auto|ignore).

    Shared by the build and `prep preview`, so a preview stays token-exact to the build.
    """
    tools = tools_of(row, columns) if mode == "auto" else None
    return with_tool_prefix(renderer, conversation, tools) if tools else conversation
