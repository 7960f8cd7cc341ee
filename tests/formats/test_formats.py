"""Format adapters: real LLaMA-Factory/axolotl rows against the golden conversions, and every RowError."""

from __future__ import annotations

import copy
import gzip
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from shardprep.errors import RowError
from shardprep.formats import FORMATS, to_conversation
from shardprep.sources.files import iter_source_rows

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DATA = FIXTURES / "data"

# Which format each golden source file is read with (LLaMA-Factory's dataset_info.json agrees).
FORMAT_OF = {
    "llamafactory/alpaca_en_demo.json": "alpaca",
    "llamafactory/identity.json": "alpaca",
    "axolotl/alpaca.json": "alpaca",
    "llamafactory/glaive_toolcall_en_demo.json": "sharegpt",
    "axolotl/conversation.json": "sharegpt",
    "axolotl/conversation.missingturns.json": "sharegpt",
    "llamafactory/kto_en_demo.json": "messages",
    "llamafactory/v1_sft_demo.jsonl": "messages",
    "llamafactory/reason_tool_use_demo_50.jsonl": "messages",
}


@cache
def source_rows(source: str) -> list[dict[str, Any]]:
    folder, name = source.split("/")
    path = DATA / folder / (name + ".gz" if folder == "llamafactory" else name)
    rows = []
    for r in iter_source_rows(str(path)):
        assert r.data is not None
        rows.append(r.data)
    return rows


def parse_id(conv_id: str) -> tuple[str, int, int | None]:
    m = re.fullmatch(r"(.+)#(\d+)(?:\[:(\d+)\])?", conv_id)
    assert m, conv_id
    return m.group(1), int(m.group(2)), int(m.group(3)) if m.group(3) else None


def convert_id(
    conv_id: str, *, customized: bool = False, row: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    source, index, cut = parse_id(conv_id)
    got = to_conversation(
        row or source_rows(source)[index], format=FORMAT_OF[source], customized=customized
    )
    return got[:cut] if cut is not None else got


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        return [json.loads(line) for line in f]


# ------------------------------------------------------------------------------- golden conversions


EXPECTED = load_jsonl(DATA / "expected_conversions.jsonl")


@pytest.mark.parametrize("expected", EXPECTED, ids=[c["id"] for c in EXPECTED])
def test_expected_conversions(expected: dict[str, Any]) -> None:
    assert convert_id(expected["id"]) == expected["messages"]


def test_expected_conversions_cover_every_source_layout() -> None:
    sources = {parse_id(c["id"])[0] for c in EXPECTED}
    assert {
        "llamafactory/glaive_toolcall_en_demo.json",
        "llamafactory/alpaca_en_demo.json",
        "llamafactory/kto_en_demo.json",
        "llamafactory/v1_sft_demo.jsonl",
        "llamafactory/reason_tool_use_demo_50.jsonl",
    } <= sources
    glaive = [c for c in EXPECTED if "glaive" in c["id"]]
    assert any("tool_calls" in m for c in glaive for m in c["messages"])
    reason = [c for c in EXPECTED if "reason_tool_use" in c["id"]]
    assert any(
        m["role"] == "tool" and "tool_call_id" not in m for c in reason for m in c["messages"]
    )


def test_all_golden_conversations() -> None:
    golden = load_jsonl(FIXTURES / "golden" / "conversations.jsonl.gz")
    assert len(golden) == 150
    mismatched = [c["id"] for c in golden if convert_id(c["id"]) != c["messages"]]
    assert mismatched == []


def test_golden_customized_conversations() -> None:
    """Put the golden `trainable` flags on the source messages/turns; customized conversion keeps them."""
    golden = load_jsonl(FIXTURES / "golden" / "conversations_customized.jsonl.gz")
    checked = 0
    for conv in golden:
        source, index, cut = parse_id(conv["id"])
        fmt = FORMAT_OF[source]
        if fmt == "alpaca":
            continue
        row = copy.deepcopy(source_rows(source)[index])
        items = row["messages"] if fmt == "messages" else row["conversations"]
        flags = [m["trainable"] for m in conv["messages"]]
        for item, flag in zip(items, flags + [False] * (len(items) - len(flags)), strict=True):
            item["trainable"] = flag
        assert convert_id(conv["id"], customized=True, row=row) == conv["messages"]
        checked += 1
    assert checked > 100


# ------------------------------------------------------------------------------------ messages


def test_messages_parts_reasoning_and_tool_calls() -> None:
    row = {
        "messages": [
            {"role": "system", "content": "sys", "name": None},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "value": "b"}],
                "loss_weight": 0.0,
            },
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "think",
                "tool_calls": [
                    {
                        "id": "x1",
                        "type": "function",
                        "function": {"name": "f", "arguments": {"q": "é"}},
                    },
                    {"function": {"name": "g", "arguments": '{"a": 1}'}},
                ],
            },
            {"role": "tool", "content": "r1", "tool_call_id": "x1", "name": "f"},
            {"role": "tool", "content": "r2"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t"},
                    {"type": "text", "text": "done"},
                ],
                "trainable": True,
            },
        ]
    }
    assert to_conversation(row, format="messages") == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "think"}],
            "tool_calls": [
                {
                    "type": "function",
                    "id": "x1",
                    "function": {"name": "f", "arguments": '{"q": "é"}'},
                },
                {
                    "type": "function",
                    "id": "call_2",
                    "function": {"name": "g", "arguments": '{"a": 1}'},
                },
            ],
        },
        {"role": "tool", "content": "r1", "tool_call_id": "x1", "name": "f"},
        {"role": "tool", "content": "r2", "tool_call_id": "call_2", "name": "g"},
        {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "t"}, {"type": "text", "text": "done"}],
        },
    ]


def test_messages_reasoning_content_before_text_and_empty_assistant() -> None:
    row = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning_content": "r"},
        ]
    }
    assert to_conversation(row, format="messages")[1]["content"] == [
        {"type": "thinking", "thinking": "r"},
        {"type": "text", "text": "a"},
    ]
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]}
    assert to_conversation(row, format="messages")[1] == {"role": "assistant", "content": ""}


def test_messages_null_fields_are_absent() -> None:
    """A Parquet / HF datasets export gives every message every field, null where it has none:
    vLLM's `reasoning` is read beside a null `reasoning_content` (an empty one still wins), and
    null ids / names leave the tool results to be paired with their calls."""
    nulls = {"name": None, "tool_call_id": None, "tool_calls": None, "reasoning_content": None}
    row = {
        "messages": [
            {"role": "user", "content": "q", **nulls},
            {
                "role": "assistant",
                "content": None,
                **nulls,
                "reasoning": "r",
                "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "content": "x", **nulls},
        ]
    }
    user, assistant, tool = to_conversation(row, format="messages")
    assert user == {"role": "user", "content": "q"}
    assert assistant["content"] == [{"type": "thinking", "thinking": "r"}]
    assert tool == {"role": "tool", "content": "x", "tool_call_id": "call_1", "name": "f"}
    row["messages"][1]["reasoning_content"] = ""
    assert to_conversation(row, format="messages")[1]["content"] == ""


def test_messages_tool_pairing_needs_exactly_k_tool_messages() -> None:
    calls = [
        {"function": {"name": "f", "arguments": "{}"}},
        {"function": {"name": "g", "arguments": "{}"}},
    ]
    row = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": calls},
            {"role": "tool", "content": "both"},
        ]
    }
    out = to_conversation(row, format="messages")
    assert out[2] == {"role": "tool", "content": "both"}
    assert [c["id"] for c in out[1]["tool_calls"]] == ["call_1", "call_2"]


def test_columns_dotted_path() -> None:
    row = {
        "data": {
            "chat": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
        }
    }
    assert to_conversation(row, format="messages", columns={"messages": "data.chat"}) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]


def test_customized_trainable() -> None:
    msgs = [
        {"role": "user", "content": "q", "trainable": False},
        {"role": "assistant", "content": "a", "trainable": True},
    ]
    assert to_conversation({"messages": msgs}, format="messages", customized=True) == [
        {"role": "user", "content": "q", "trainable": False},
        {"role": "assistant", "content": "a", "trainable": True},
    ]
    assert "trainable" not in to_conversation({"messages": msgs}, format="messages")[1]


def bad(row: dict[str, Any], fmt: str = "messages", **kw: Any) -> RowError:
    with pytest.raises(RowError) as info:
        to_conversation(row, format=fmt, **kw)
    return info.value


@pytest.mark.parametrize(
    ("row", "reason", "field"),
    [
        ({"text": "x"}, "missing_field", "messages"),
        ({"messages": "hello"}, "bad_content", "messages"),
        ({"messages": []}, "empty_conversation", "messages"),
        ({"messages": ["hi"]}, "bad_content", "messages[0]"),
        ({"messages": [{"content": "x"}]}, "missing_field", "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "gpt", "content": "a"}]},
            "unknown_role",
            "messages[1].role",
        ),
        ({"messages": [{"role": "user"}]}, "missing_field", "messages[0].content"),
        ({"messages": [{"role": "user", "content": 5}]}, "bad_content", "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "u"}]}]},
            "bad_content",
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
            "bad_content",
            "messages[0].content[0].text",
        ),
        (
            {"messages": [{"role": "user", "content": ["x"]}]},
            "bad_content",
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}
                ]
            },
            "bad_tool_call",
            "messages[0].tool_calls[0].function.name",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": {"name": "f"}}]},
            "bad_tool_call",
            "messages[0].tool_calls",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": 3}}],
                    }
                ]
            },
            "bad_tool_call",
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_call", "value": "{nope"}]}
                ]
            },
            "bad_tool_call",
            "messages[0].content[0].value",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "q", "tool_calls": [{"function": {"name": "f"}}]}
                ]
            },
            "bad_tool_call",
            "messages[0].tool_calls",
        ),
    ],
)
def test_messages_row_errors(row: dict[str, Any], reason: str, field: str) -> None:
    err = bad(row)
    assert (err.reason, err.field) == (reason, field)
    assert field in str(err)


def test_missing_trainable() -> None:
    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": "q", "trainable": False},
        {"role": "assistant", "content": "a"},
    ]
    err = bad({"messages": msgs}, customized=True)
    assert (err.reason, err.field) == ("missing_trainable", "messages[1].trainable")
    msgs[1]["trainable"] = "yes"
    assert bad({"messages": msgs}, customized=True).reason == "missing_trainable"
    err = bad({"instruction": "i", "output": "o"}, "alpaca", customized=True)
    assert err.reason == "missing_trainable"


# ------------------------------------------------------------------------------------ sharegpt


def test_sharegpt_roles_system_column_and_function_calls() -> None:
    row = {
        "system": "be nice",
        "conversations": [
            {"from": "human", "value": "q"},
            {
                "from": "function_call",
                "value": '[{"name": "f", "arguments": {"x": "ü"}}, {"name": "g", "arguments": {}}]',
            },
            {"from": "observation", "value": "r1"},
            {"from": "tool", "value": "r2"},
            {"from": "gpt", "value": "a"},
            {"from": "user", "value": "q2"},
            {"from": "function_call", "value": {"name": "h", "arguments": {"n": 1}}},
            {"from": "observation", "value": "r3"},
            {"from": "assistant", "value": "a2"},
        ],
    }
    assert to_conversation(row, format="sharegpt") == [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "id": "call_1",
                    "function": {"name": "f", "arguments": '{"x": "ü"}'},
                },
                {"type": "function", "id": "call_2", "function": {"name": "g", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "content": "r1", "tool_call_id": "call_1", "name": "f"},
        {"role": "tool", "content": "r2", "tool_call_id": "call_2", "name": "g"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "q2"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "id": "call_3",
                    "function": {"name": "h", "arguments": '{"n": 1}'},
                }
            ],
        },
        {"role": "tool", "content": "r3", "tool_call_id": "call_3", "name": "h"},
        {"role": "assistant", "content": "a2"},
    ]


def test_sharegpt_tags_read_kto_like_messages() -> None:
    """kto_en_demo as LLaMA-Factory describes it (sharegpt with role/content tags) equals the messages format."""
    columns = {
        "messages": "messages",
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
    }
    for row in source_rows("llamafactory/kto_en_demo.json")[:50]:
        assert to_conversation(row, format="sharegpt", columns=columns) == to_conversation(
            row, format="messages"
        )


@pytest.mark.parametrize(
    ("turns", "reason", "field"),
    [
        ([], "empty_conversation", "conversations"),
        ([{"value": "x"}], "missing_field", "conversations[0].from"),
        ([{"from": "bot", "value": "x"}], "unknown_role", "conversations[0].from"),
        ([{"from": "human"}], "missing_field", "conversations[0].value"),
        ([{"from": "human", "value": ["x"]}], "bad_content", "conversations[0].value"),
        (
            [{"from": "function_call", "value": "not json"}],
            "bad_tool_call",
            "conversations[0].value",
        ),
        (
            [{"from": "function_call", "value": '{"arguments": {}}'}],
            "bad_tool_call",
            "conversations[0].value",
        ),
        ("nope", "bad_content", "conversations"),
    ],
)
def test_sharegpt_row_errors(turns: Any, reason: str, field: str) -> None:
    err = bad({"conversations": turns}, "sharegpt")
    assert (err.reason, err.field) == (reason, field)
    assert bad({"messages": []}, "sharegpt").reason == "missing_field"


# -------------------------------------------------------------------------------------- alpaca


def test_alpaca_join_system_history() -> None:
    row: dict[str, Any] = {
        "instruction": "Do it",
        "input": "",
        "output": "done",
        "system": "S",
        "history": [["q1", "a1"], ["q2", "a2"]],
    }
    assert to_conversation(row, format="alpaca") == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2"},
        {"role": "user", "content": "Do it"},
        {"role": "assistant", "content": "done"},
    ]
    row = {"q": {"instr": "I", "ctx": "C"}, "a": "O"}
    cols = {"instruction": "q.instr", "input": "q.ctx", "output": "a"}
    assert to_conversation(row, format="alpaca", columns=cols) == [
        {"role": "user", "content": "I\nC"},
        {"role": "assistant", "content": "O"},
    ]


@pytest.mark.parametrize(
    ("row", "reason", "field"),
    [
        ({"input": "x", "output": "y"}, "missing_field", "instruction"),
        ({"instruction": "x"}, "missing_field", "output"),
        ({"instruction": "x", "output": ["a", "b"]}, "bad_content", "output"),
        (
            {"instruction": "x", "output": "y", "history": [["only one"]]},
            "bad_content",
            "history[0]",
        ),
    ],
)
def test_alpaca_row_errors(row: dict[str, Any], reason: str, field: str) -> None:
    err = bad(row, "alpaca")
    assert (err.reason, err.field) == (reason, field)


def test_unknown_format() -> None:
    assert set(FORMATS) == {"messages", "sharegpt", "alpaca", "prompt_completion"}
    with pytest.raises(ValueError, match="known: alpaca, messages, prompt_completion, sharegpt"):
        to_conversation({}, format="csv")


def test_plain_messages_take_the_direct_path_to_the_same_result() -> None:
    """{role, content: str} messages skip the general loop; an extra null key sends the same
    messages through it: the conversations must be equal, roles and errors included."""
    import random

    rng = random.Random(7)
    roles = ["system", "user", "assistant", "tool", "bot", "", 3, None]
    contents = ["", "hi", " x\n", "<think>a</think>b", 5, None, ["x"]]
    for _ in range(2000):
        msgs = [
            {"role": rng.choice(roles), "content": rng.choice(contents)}
            for _ in range(rng.randint(0, 4))
        ]
        padded = [{**m, "trainable": None} for m in msgs]

        def outcome(ms: list[dict[str, Any]]) -> Any:
            try:
                return to_conversation({"messages": ms}, format="messages")
            except RowError as e:
                return (e.reason, e.field)

        assert outcome(msgs) == outcome(padded), msgs


@pytest.mark.parametrize(
    ("fmt", "row", "field"),
    [
        ("messages", {"messages": None, "label": True}, "messages"),
        ("alpaca", {"instruction": "x", "input": None, "output": None}, "output"),
        ("text_pair", {"prompt": "p", "chosen": None, "rejected": "r"}, "chosen"),
    ],
)
def test_a_null_required_field_is_named_null_not_absent(
    fmt: str, row: dict[str, Any], field: str
) -> None:
    # Was "the row has no 'messages' field (it has 'messages', 'label'); set `columns:
    # {messages: messages}`": a Parquet/JSON null or a short CSV record read as a missing column.
    from shardprep.formats import PAIR_FORMATS, to_comparison

    with pytest.raises(RowError) as err:
        if fmt in PAIR_FORMATS:
            to_comparison(row, format=fmt)
        else:
            to_conversation(row, format=fmt)
    assert err.value.reason == "missing_field" and err.value.field == field
    assert f"{field!r} is null" in err.value.message and "has no" not in err.value.message


def test_a_json_encoded_message_list_is_named_as_such() -> None:
    # How CSV and some exports store conversations; it is not decoded, and the message says so
    # instead of a bare "got str".
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    with pytest.raises(
        RowError, match="'messages' must be a list of messages, got a string holding JSON"
    ):
        to_conversation({"messages": json.dumps(msgs)}, format="messages")
    from shardprep.formats import to_comparison

    with pytest.raises(
        RowError, match="'chosen' must be a list of messages, got a string holding JSON"
    ):
        to_comparison({"chosen": json.dumps(msgs), "rejected": msgs}, format="messages_pair")
    with pytest.raises(RowError, match="must be a list of messages, got int"):
        to_conversation({"messages": 5}, format="messages")
