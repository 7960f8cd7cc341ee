"""Tool declarations: the per-family text of tinker-cookbook's `create_conversation_prefix_with_tools`.

A family's `Renderer.tool_prefix(tools, system_prompt)` returns the messages that replace the
conversation's leading system message. The texts here are data (template strings and JSON
layouts, exact to tinker-cookbook 0.6.1); the TypeScript-style encoders live in `tools_ts.py`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from shardprep.errors import RowError
from shardprep.renderers.content import Message, ensure_text

if TYPE_CHECKING:
    from shardprep.renderers.base import Renderer

# tinker's ToolSpec {name, description, parameters}; extra keys are kept as given because some
# families dump the whole spec (key order and all).
from shardprep.messages import ToolSpec  # noqa: E402

TOOLS_UNSUPPORTED = "tools_unsupported"


class TemplateMessage(dict):  # type: ignore[type-arg]
    """A message the renderer wrote (a tool declaration prefix), not the row's text: equal to
    the plain dict, but the special-token screen (encode/special.py) leaves its literals alone,
    since the family's own tool instructions spell `<tool_call>` and the like on purpose."""


# -- Qwen3 --------------------------------------------------------------------------------------

QWEN3_TOOLS = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    "{lines}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)

# -- Qwen3.5 / Qwen3.8 / Nemotron-3 (shared call-format instructions) ---------------------------

_XML_CALL_INSTRUCTIONS = (
    "If you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n"
    "</parameter>\n<parameter=example_parameter_2>\nThis is the value for the second parameter\n"
    "that can span\nmultiple lines\n</parameter>\n</function>\n</tool_call>\n\n"
    "<IMPORTANT>\nReminder:\n"
    "- Function calls MUST follow the specified format: an inner <function=...></function> block "
    "must be nested within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n"
    "- You may provide optional reasoning for your function call in natural language BEFORE the "
    "function call, but NOT after\n"
    "- If there is no function call available, answer the question like normal with your current "
    "knowledge and do not tell the user about function calls\n</IMPORTANT>"
)
XML_TOOLS = (
    "# Tools\n\nYou have access to the following functions:\n\n<tools>\n{decls}\n</tools>\n\n"
    + _XML_CALL_INSTRUCTIONS.replace("{", "{{").replace("}", "}}")
)

# -- DeepSeek V3 --------------------------------------------------------------------------------

DEEPSEEK_V3_TOOLS = (
    "\n\n## Tools\nYou have access to the following tools:\n\n{tools}\n\n"
    "IMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments"
    "<｜tool▁call▁end｜><｜tool▁calls▁end｜>\n\nWhere:\n"
    "- `tool_call_name` must be an exact match to one of the available tools\n"
    "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"
    "- For multiple tool calls, chain them directly without separators or spaces"
)
DEEPSEEK_V3_TOOL = "### {name}\nDescription: {description}\n\nParameters: {parameters}"

# -- GLM-5.3 ------------------------------------------------------------------------------------

GLM_TOOLS = (
    "\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    "{lines}\n</tools>\n\n"
    "For each function call, output the function name and arguments within the following XML "
    "format:\n<tool_call>{{function-name}}<arg_key>{{arg-key-1}}</arg_key><arg_value>{{arg-value-1}}"
    "</arg_value><arg_key>{{arg-key-2}}</arg_key><arg_value>{{arg-value-2}}</arg_value>...</tool_call>"
)

# -- GPT-OSS ------------------------------------------------------------------------------------

GPT_OSS_ROUTING = "Calls to these tools must go to the commentary channel: 'functions'."
GPT_OSS_TOOLS = (
    "# Tools\n\n## functions\n\nnamespace functions {{\n\n{defs}\n\n}} // namespace functions"
)


def unsupported(renderer: str, why: str) -> RowError:
    return RowError(TOOLS_UNSUPPORTED, f"renderer {renderer!r} {why}", field="tools")


def wrapped(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """OpenAI-style entries, as tinker wraps them before dumping."""
    return [{"type": "function", "function": tool} for tool in tools]


def qwen3_text(tools: Sequence[ToolSpec]) -> str:
    lines = "\n".join(json.dumps(entry, separators=(", ", ": ")) for entry in wrapped(tools))
    return QWEN3_TOOLS.format(lines=lines)


def qwen3_5_text(tools: Sequence[ToolSpec]) -> str:
    return XML_TOOLS.format(decls="\n".join(json.dumps(tool) for tool in tools))


def _extra_keys(obj: dict[str, Any], handled: set[str]) -> list[str]:
    # The HF template's render_extra_keys macro: containers as JSON, scalars as str().
    return [
        f"<{key}>{json.dumps(value) if isinstance(value, (dict, list)) else value!s}</{key}>"
        for key, value in obj.items()
        if key not in handled
    ]


def nemotron3_declaration(tool: ToolSpec) -> str:
    """One tool as Nemotron-3's XML `<function>` block (the HF template's layout)."""
    lines = ["<function>", f"<name>{tool['name']}</name>"]
    description = tool.get("description") or ""
    if description.strip():
        lines.append(f"<description>{description.strip()}</description>")
    lines.append("<parameters>")
    params = tool.get("parameters") or {}
    for name, fields in (params.get("properties") or {}).items():
        fields = fields if isinstance(fields, dict) else {}
        lines += ["<parameter>", f"<name>{name}</name>"]
        if "type" in fields:
            lines.append(f"<type>{fields['type']!s}</type>")
        if "description" in fields:
            lines.append(f"<description>{str(fields['description']).strip()}</description>")
        if "enum" in fields:
            lines.append(f"<enum>{json.dumps(fields['enum'])}</enum>")
        lines += _extra_keys(fields, {"name", "type", "description", "enum"})
        lines.append("</parameter>")
    lines += _extra_keys(params, {"type", "properties", "required"})
    if "required" in params:
        lines.append(f"<required>{json.dumps(params['required'])}</required>")
    lines.append("</parameters>")
    lines += _extra_keys(dict(tool), {"type", "name", "description", "parameters"})
    lines.append("</function>")
    return "\n".join(lines)


def nemotron3_text(tools: Sequence[ToolSpec]) -> str:
    return XML_TOOLS.format(decls="\n".join(nemotron3_declaration(t) for t in tools))


def deepseek_v3_text(tools: Sequence[ToolSpec]) -> str:
    entries = "\n".join(
        DEEPSEEK_V3_TOOL.format(
            name=t["name"], description=t["description"], parameters=json.dumps(t["parameters"])
        )
        for t in tools
    )
    return DEEPSEEK_V3_TOOLS.format(tools=entries)


def glm5_3_text(tools: Sequence[ToolSpec]) -> str:
    lines = "\n".join(
        json.dumps(
            {k: v for k, v in t.items() if k not in ("strict", "defer_loading")}, ensure_ascii=False
        )
        for t in tools
        if not t.get("defer_loading")  # deferred tools are announced later, not declared
    )
    return GLM_TOOLS.format(lines=lines)


def kimi_k2_json(tools: Sequence[ToolSpec]) -> str:
    return json.dumps(wrapped(tools), separators=(",", ":"), sort_keys=True)


def deepseek_v4_1_json(tools: Sequence[ToolSpec]) -> str:
    return json.dumps(wrapped(tools))


# -- applying a prefix ----------------------------------------------------------------------------


def with_tool_prefix(
    renderer: Renderer, messages: Sequence[Message], tools: Sequence[ToolSpec]
) -> list[Message]:
    """The conversation with its leading system message (if any) replaced by the tool prefix.

    The system message's text becomes the prefix's `system_prompt`. Under train_on customized,
    the prefix messages inherit that message's `trainable` flag (False when there was none), so
    the declaration is trained exactly when the system prompt it replaces would have been.
    """
    own = renderer.declare_tools(messages, list(tools))
    if own is not None:  # hf_template: the model's own template declares them
        return own
    system: Message | None = (
        messages[0] if messages and messages[0].get("role") == "system" else None
    )
    prompt = ensure_text(system["content"]) if system is not None else None
    prefix = renderer.tool_prefix(list(tools), prompt)
    rest = list(messages[1:] if system is not None else messages)
    if any("trainable" in m for m in messages):
        flag = bool(system.get("trainable", False)) if system is not None else False
        prefix = [{**m, "trainable": flag} for m in prefix]
    return [cast(Message, TemplateMessage(m)) for m in prefix] + rest
