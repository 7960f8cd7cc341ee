"""Tool declaration prefixes, exact to tinker-cookbook 0.6.1's `create_conversation_prefix_with_tools`.

Expected texts are the reference outputs for one tool spec with system_prompt "SYS"
(tinker-cookbook-examples.md, "Tool declaration prefixes").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shardprep.errors import RowError
from shardprep.formats import tools_of
from shardprep.renderers import get_renderer
from shardprep.renderers.base import TrainOnWhat, plan_supervised
from shardprep.renderers.tools import deepseek_v4_1_json, with_tool_prefix
from shardprep.tokenizer import LoadedTokenizer

TOOL_SPEC: dict[str, Any] = {
    "name": "get_weather",
    "description": "Get weather",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City"},
            "unit": {"type": "string", "enum": ["c", "f"]},
        },
        "required": ["city"],
    },
}

_SPEC_JSON = (
    '{"name": "get_weather", "description": "Get weather", "parameters": {"type": "object", '
    '"properties": {"city": {"type": "string", "description": "City"}, "unit": {"type": "string", '
    '"enum": ["c", "f"]}}, "required": ["city"]}}'
)
_XML_INSTRUCTIONS = (
    "If you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n"
    "</parameter>\n<parameter=example_parameter_2>\nThis is the value for the second parameter\n"
    "that can span\nmultiple lines\n</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\n"
    "Reminder:\n- Function calls MUST follow the specified format: an inner <function=...></function> "
    "block must be nested within <tool_call></tool_call> XML tags\n- Required parameters MUST be "
    "specified\n- You may provide optional reasoning for your function call in natural language "
    "BEFORE the function call, but NOT after\n- If there is no function call available, answer the "
    "question like normal with your current knowledge and do not tell the user about function calls\n"
    "</IMPORTANT>"
)
_QWEN3_5 = (
    "# Tools\n\nYou have access to the following functions:\n\n<tools>\n"
    + _SPEC_JSON
    + "\n</tools>\n\n"
    + _XML_INSTRUCTIONS
    + "\n\nSYS"
)

EXPECTED: dict[str, list[tuple[str, str]]] = {
    "qwen3": [
        (
            "system",
            "SYS\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
            '{"type": "function", "function": ' + _SPEC_JSON + "}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments within "
            '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
            "<args-json-object>}\n</tool_call>",
        )
    ],
    "qwen3_5": [("system", _QWEN3_5)],
    "qwen3_8_xhigh_reasoning": [("system", _QWEN3_5)],
    "deepseekv3": [
        (
            "system",
            "SYS\n\n## Tools\nYou have access to the following tools:\n\n### get_weather\n"
            'Description: Get weather\n\nParameters: {"type": "object", "properties": {"city": '
            '{"type": "string", "description": "City"}, "unit": {"type": "string", "enum": ["c", "f"]}}, '
            '"required": ["city"]}\n\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n'
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments"
            "<｜tool▁call▁end｜><｜tool▁calls▁end｜>\n\nWhere:\n- `tool_call_name` must be an exact match "
            "to one of the available tools\n- `tool_call_arguments` must be valid JSON that strictly "
            "follows the tool's Parameters Schema\n- For multiple tool calls, chain them directly "
            "without separators or spaces",
        )
    ],
    "glm5_3_max_reasoning": [
        (
            "system",
            "\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
            + _SPEC_JSON
            + "\n</tools>\n\nFor each function call, output the function name and "
            "arguments within the following XML format:\n<tool_call>{function-name}<arg_key>"
            "{arg-key-1}</arg_key><arg_value>{arg-value-1}</arg_value><arg_key>{arg-key-2}</arg_key>"
            "<arg_value>{arg-value-2}</arg_value>...</tool_call>",
        ),
        ("system", "SYS"),
    ],
    "kimi_k2": [
        (
            "tool_declare",
            '[{"function":{"description":"Get weather","name":"get_weather","parameters":'
            '{"properties":{"city":{"description":"City","type":"string"},"unit":{"enum":["c","f"],'
            '"type":"string"}},"required":["city"],"type":"object"}},"type":"function"}]',
        ),
        ("system", "SYS"),
    ],
    "kimi_k25": [
        (
            "tool_declare",
            "# Tools\n\n## functions\nnamespace functions {\n// Get weather\ntype get_weather = "
            '(_: {\n  // City\n  city: string,\n  unit?: "c" | "f"\n}) => any;\n}\n',
        ),
        ("system", "SYS"),
    ],
    "nemotron3": [
        (
            "system",
            "SYS\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>\n<function>\n"
            "<name>get_weather</name>\n<description>Get weather</description>\n<parameters>\n"
            "<parameter>\n<name>city</name>\n<type>string</type>\n<description>City</description>\n"
            "</parameter>\n<parameter>\n<name>unit</name>\n<type>string</type>\n"
            '<enum>["c", "f"]</enum>\n</parameter>\n<required>["city"]</required>\n</parameters>\n'
            "</function>\n</tools>\n\n" + _XML_INSTRUCTIONS,
        )
    ],
    "gpt_oss_no_sysprompt": [
        (
            "_gptoss_internal_system",
            "Calls to these tools must go to the commentary channel: 'functions'.",
        ),
        (
            "developer",
            "# Instructions\n\nSYS\n\n# Tools\n\n## functions\n\nnamespace functions {\n\n"
            "// Get weather\ntype get_weather = (_:\n{\n// City\ncity: string,\n"
            'unit?: "c" | "f",\n}) => any;\n\n} // namespace functions',
        ),
    ],
}

# The same family as a reference name renders the same prefix.
ALIASES = {
    "qwen3_instruct": "qwen3",
    "qwen3_disable_thinking": "qwen3",
    "deepseekv3_thinking": "deepseekv3",
    "qwen3_5_disable_thinking": "qwen3_5",
    "qwen3_8_low_reasoning": "qwen3_8_xhigh_reasoning",
    "glm5_3_low_reasoning": "glm5_3_max_reasoning",
    "kimi_k26": "kimi_k25",
    "kimi_k25_disable_thinking": "kimi_k25",
    "nemotron3_ultra": "nemotron3",
    "gpt_oss_medium_reasoning": "gpt_oss_no_sysprompt",
}
TOKENIZER = {"qwen3": "qwen3", "deepseekv3": "deepseek_v3", "gpt_oss_no_sysprompt": "gpt_oss"}


def _renderer(name: str, tokenizer_for: Callable[[str], LoadedTokenizer]) -> Any:
    base = ALIASES.get(name, name)
    return get_renderer(name, tokenizer_for(TOKENIZER.get(base, "toy")))


@pytest.mark.parametrize("name", [*EXPECTED, *ALIASES])
def test_prefix_matches_reference(
    name: str, tokenizer_for: Callable[[str], LoadedTokenizer]
) -> None:
    prefix = _renderer(name, tokenizer_for).tool_prefix([TOOL_SPEC], "SYS")
    assert [(m["role"], m["content"]) for m in prefix] == EXPECTED[ALIASES.get(name, name)]


def test_deepseek_v4_1_declaration_text() -> None:
    assert (
        deepseek_v4_1_json([TOOL_SPEC])
        == "[" + '{"type": "function", "function": ' + _SPEC_JSON + "}]"
    )


@pytest.mark.parametrize(
    ("name", "tok"),
    [
        ("role_colon", "llama3"),
        ("llama3", "llama3"),
        ("deepseekv4_1", "toy"),
        ("mistral", "mistral_v3"),
        ("qwen3_vl", "toy"),
    ],
)
def test_families_without_a_declaration_form_refuse(
    name: str, tok: str, tokenizer_for: Callable[[str], LoadedTokenizer]
) -> None:
    with pytest.raises(RowError) as exc:
        get_renderer(name, tokenizer_for(tok)).tool_prefix([TOOL_SPEC], "SYS")
    assert exc.value.reason == "tools_unsupported" and name in str(exc.value)


def test_without_system_prompt(tokenizer_for: Callable[[str], LoadedTokenizer]) -> None:
    qwen3 = _renderer("qwen3", tokenizer_for).tool_prefix([TOOL_SPEC], None)
    assert qwen3[0]["content"].startswith("# Tools\n\nYou may call")
    kimi = _renderer("kimi_k2", tokenizer_for).tool_prefix([TOOL_SPEC], None)
    assert kimi[1] == {
        "role": "system",
        "content": "You are Kimi, an AI assistant created by Moonshot AI.",
    }
    glm = _renderer("glm5_3_max_reasoning", tokenizer_for).tool_prefix([TOOL_SPEC], None)
    assert len(glm) == 1
    oss = _renderer("gpt_oss_no_sysprompt", tokenizer_for).tool_prefix([TOOL_SPEC], None)
    assert oss[1]["content"].startswith("# Tools\n\n## functions")


def test_unsupported_schema_is_refused_not_guessed(
    tokenizer_for: Callable[[str], LoadedTokenizer],
) -> None:
    spec = {
        **TOOL_SPEC,
        "parameters": {"type": "object", "properties": {"x": {"anyOf": [{"type": "string"}]}}},
    }
    for name in ("kimi_k25", "gpt_oss_no_sysprompt"):
        with pytest.raises(RowError) as exc:
            _renderer(name, tokenizer_for).tool_prefix([spec], "SYS")
        assert exc.value.reason == "tools_unsupported" and "anyOf" in str(exc.value)


def test_prefix_replaces_leading_system_message(
    tokenizer_for: Callable[[str], LoadedTokenizer],
) -> None:
    renderer = _renderer("qwen3", tokenizer_for)
    conv = [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Yo"},
    ]
    out = with_tool_prefix(renderer, conv, [TOOL_SPEC])
    assert out[0] == {"role": "system", "content": EXPECTED["qwen3"][0][1]} and out[1:] == conv[1:]
    no_system = with_tool_prefix(renderer, conv[1:], [TOOL_SPEC])
    assert no_system[0]["content"].startswith("# Tools") and no_system[1:] == conv[1:]
    # customized: the prefix inherits the replaced system message's flag
    flagged = [{**m, "trainable": m["role"] == "assistant"} for m in conv]
    out = with_tool_prefix(renderer, flagged, [TOOL_SPEC])
    assert out[0]["trainable"] is False
    plan_supervised(renderer, out, TrainOnWhat.CUSTOMIZED)


def test_gpt_oss_reasoning_variant_keeps_its_system_prompt(
    tokenizer_for: Callable[[str], LoadedTokenizer],
) -> None:
    renderer = get_renderer("gpt_oss_medium_reasoning", tokenizer_for("gpt_oss"))
    conv = with_tool_prefix(renderer, [{"role": "user", "content": "Hi"}], [TOOL_SPEC])
    normalized = renderer.normalize(conv)
    assert normalized[0]["content"].startswith("You are ChatGPT") and normalized[1:] == conv
    assert renderer.normalize(normalized) == normalized  # idempotent


@pytest.mark.parametrize(
    ("row", "columns", "expected"),
    [
        (
            {"tools": '[{"name": "f", "description": "d", "parameters": {}}]'},
            None,
            [{"name": "f", "description": "d", "parameters": {}}],
        ),
        (
            {
                "my": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "description": "d",
                            "parameters": {"type": "object"},
                        },
                    }
                ]
            },
            {"tools": "my"},
            [{"name": "f", "description": "d", "parameters": {"type": "object"}}],
        ),
        ({"tools": "[]"}, None, None),
        ({"tools": None}, None, None),
        ({}, None, None),
    ],
)
def test_tools_of(row: dict[str, Any], columns: dict[str, str] | None, expected: Any) -> None:
    assert tools_of(row, columns) == expected


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("[{", "tools"),
        ("3", "tools"),
        ('[{"description": "d", "parameters": {}}]', "tools[0].name"),
        (
            [{"type": "function", "function": {"name": "f", "description": "d"}}],
            "tools[0].function.parameters",
        ),
    ],
)
def test_bad_tools(value: Any, field: str) -> None:
    with pytest.raises(RowError) as exc:
        tools_of({"tools": value})
    assert exc.value.reason == "bad_tools" and exc.value.field == field
