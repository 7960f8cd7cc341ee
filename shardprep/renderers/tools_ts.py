"""TypeScript-style tool declarations: Kimi K2.5/K2.6 and GPT-OSS (Harmony).

Both families describe a tool's JSON-schema parameters as a TypeScript function type. Only the
schema features whose rendering is pinned down are supported: scalar types, enums, arrays of
those, descriptions, defaults and the scalar constraints. References (`$ref`), unions
(`anyOf`/`oneOf`/`allOf`, type lists) and nested objects raise `Unsupported`, which the caller
turns into a `tools_unsupported` row error: a declaration rendered differently from the model's
template would teach the wrong format without anyone noticing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

_SCALARS = frozenset({"string", "number", "integer", "boolean", "null"})
_UNIONS = ("$ref", "$defs", "anyOf", "oneOf", "allOf", "additionalProperties")


class Unsupported(ValueError):
    """A schema feature this encoder does not render."""


def _check(schema: Any, where: str) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise Unsupported(f"{where}: schema must be an object")
    for key in _UNIONS:
        if key in schema:
            raise Unsupported(f"{where}: `{key}` is not supported in tool declarations")
    if isinstance(schema.get("type"), list):
        raise Unsupported(f"{where}: a list of types is not supported in tool declarations")
    return schema


def _properties(params: dict[str, Any], where: str) -> dict[str, Any]:
    _check(params, where)
    props = params.get("properties") or {}
    if not isinstance(props, dict):
        raise Unsupported(f"{where}.properties must be an object")
    return props


# -- Kimi K2.5 / K2.6 ---------------------------------------------------------------------------

_KIMI_INDENT = "  "
# Constraints Kimi writes as a `// key: value` comment, per scalar type.
_KIMI_CONSTRAINTS = {
    "string": ("maxLength", "minLength", "pattern"),
    "number": ("maximum", "minimum"),
    "integer": ("maximum", "minimum"),
    "array": ("minItems", "maxItems"),
}


def _kimi_comment(text: str, indent: str) -> str:
    # Blank description lines stay blank (no indent, no `//`).
    return "\n".join(f"{indent}// {line}" if line else "" for line in text.split("\n"))


def _kimi_docstring(schema: dict[str, Any], kind: str, indent: str) -> str:
    lines = []
    if schema.get("description"):
        lines.append(_kimi_comment(str(schema["description"]), indent))
    keys = _KIMI_CONSTRAINTS.get(kind, ())
    constraints = sorted((k, v) for k, v in schema.items() if k in keys)
    if constraints:
        lines.append(indent + "// " + ", ".join(f"{k}: {v}" for k, v in constraints))
    return "".join(line + "\n" for line in lines)


def _kimi_kind(schema: dict[str, Any], where: str) -> str:
    if "enum" in schema:
        return "enum"
    kind = schema.get("type", "any" if not schema else None)
    if kind in _SCALARS or kind in ("array", "any"):
        return str(kind)
    raise Unsupported(f"{where}: type {kind!r} is not supported in tool declarations")


def _kimi_type(schema: dict[str, Any], kind: str, indent: str, where: str) -> str:
    if kind == "enum":
        return " | ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in schema["enum"])
    if kind == "integer":
        return "number"
    if kind != "array":
        return kind
    item = _check(schema.get("items") or {}, f"{where}.items")
    item_kind = _kimi_kind(item, f"{where}.items") if item else "any"
    if item_kind == "array":
        raise Unsupported(f"{where}: nested arrays are not supported in tool declarations")
    inner = indent + _KIMI_INDENT
    doc = _kimi_docstring(item, item_kind, inner)
    item_ts = _kimi_type(item, item_kind, inner, f"{where}.items")
    if doc:
        return "Array<\n" + doc + inner + item_ts + "\n" + indent + ">"
    return f"Array<{item_ts}>"


def _kimi_default(value: Any) -> str:
    if isinstance(value, (int, float, bool)):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def kimi_ts_function(tool: dict[str, Any]) -> str:
    name = tool.get("name", "function")
    params = tool.get("parameters") or {}
    props = _properties(params, f"{name}.parameters")
    required = set(params.get("required") or [])
    # Required parameters first, each group sorted by name (Kimi's own ordering).
    order = sorted(p for p in props if p in required) + sorted(
        p for p in props if p not in required
    )
    fields = []
    for prop in order:
        where = f"{name}.parameters.properties.{prop}"
        schema = _check(props[prop], where)
        kind = _kimi_kind(schema, where)
        doc = _kimi_docstring(schema, kind, _KIMI_INDENT)
        if schema.get("default") is not None:
            doc += f"{_KIMI_INDENT}// Default: {_kimi_default(schema['default'])}\n"
        optional = "" if prop in required else "?"
        fields.append(
            f"{doc}{_KIMI_INDENT}{prop}{optional}: {_kimi_type(schema, kind, _KIMI_INDENT, where)}"
        )
    body = "{\n" + ",\n".join(fields) + "\n}" if fields else "{}"
    lines = [_kimi_comment(tool["description"], "")] if tool.get("description") else []
    lines.append(f"type {name} = (_: {body}) => any;")
    return "\n".join(lines)


def kimi_ts(tools: Sequence[dict[str, Any]]) -> str:
    functions = "\n".join(kimi_ts_function(t) for t in tools)
    return "# Tools\n\n## functions\nnamespace functions {\n" + functions + "\n}\n"


# -- GPT-OSS / Harmony --------------------------------------------------------------------------


def _harmony_type(schema: dict[str, Any], where: str) -> str:
    _check(schema, where)
    if "const" in schema:
        out = json.dumps(schema["const"])
    elif "enum" in schema:
        out = " | ".join(json.dumps(v) for v in schema["enum"]) or "never"
    else:
        kind = schema.get("type", "any")
        if kind in ("number", "integer"):
            out = "number"
        elif kind in ("string", "boolean", "null", "any"):
            out = str(kind)
        elif kind == "array":
            item = _check(schema.get("items") or {}, f"{where}.items")
            item_ts = _harmony_type(item, f"{where}.items")
            # A union item type needs parentheses before `[]`.
            if len(item.get("enum", [])) > 1 or item.get("nullable"):
                item_ts = f"({item_ts})"
            out = f"{item_ts}[]"
        else:
            raise Unsupported(f"{where}: type {kind!r} is not supported in tool declarations")
    return f"{out} | null" if schema.get("nullable") else out


def _harmony_comments(schema: dict[str, Any]) -> list[str]:
    comments = []
    if schema.get("title"):
        comments += [str(schema["title"]), ""]
    if schema.get("description"):
        comments.append(str(schema["description"]))
    if schema.get("examples"):
        comments.append("Examples:")
        comments += [f"- {json.dumps(example)}" for example in schema["examples"]]
    return comments


def harmony_function(tool: dict[str, Any]) -> str:
    name = tool["name"]
    params = tool.get("parameters") or {}
    props = _properties(params, f"{name}.parameters")
    lines = [f"// {tool['description']}"] if tool.get("description") else []
    if params.get("type") != "object" or not props:
        lines.append(f"type {name} = () => any;")
        return "\n".join(lines)
    header = "(_:" + (f" // {params['description']}" if params.get("description") else "")
    block = [header, "{"]
    required = set(params.get("required") or [])
    for prop, schema in props.items():
        where = f"{name}.parameters.properties.{prop}"
        prop_ts = _harmony_type(_check(schema, where), where)
        block += [f"// {c}" for c in _harmony_comments(schema)]
        default = f" // default: {json.dumps(schema['default'])}" if "default" in schema else ""
        block.append(f"{prop}{'' if prop in required else '?'}: {prop_ts},{default}")
    block.append("})")
    lines.append(f"type {name} = " + "\n".join(block) + " => any;")
    return "\n".join(lines)
