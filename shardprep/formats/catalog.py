"""What each source format reads: its fields, a one-line example row, what `columns:` maps.

`prep formats` and docs/formats.md are written from this table. tests/formats/test_catalog.py
keeps it honest against the converters: every example converts, and every field listed as
required is one the converter asks for (without it the row is `missing_field` on that field).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shardprep.formats import CONVERSATION_FORMATS, PAIR_FORMATS


@dataclass(frozen=True)
class FormatDoc:
    name: str
    summary: str
    # The format's field names (the keys of `columns:`) -> the row field read when not mapped.
    required: dict[str, str]
    optional: dict[str, str]
    example: dict[str, Any]
    note: str = ""

    @property
    def tasks(self) -> tuple[str, ...]:
        if self.name in CONVERSATION_FORMATS:
            return ("sft", "rl_prompts")
        if self.name in PAIR_FORMATS:
            return ("dpo",)
        return ("pretrain",)


_U, _A = {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}

CATALOG: dict[str, FormatDoc] = {
    d.name: d
    for d in (
        FormatDoc(
            "messages",
            "OpenAI-style chat: a list of {role, content} (content: text or parts; tool_calls, thinking)",
            {"messages": "messages"},
            {},
            {"messages": [_U, _A]},
            "a row's `tools` column (OpenAI function specs) becomes the tool declaration (`tools: auto`)",
        ),
        FormatDoc(
            "sharegpt",
            "ShareGPT / LLaMA-Factory: turns of {from, value} (human, gpt, system, function_call, observation)",
            {"messages": "conversations"},
            {"system": "system"},
            {
                "conversations": [
                    {"from": "human", "value": "What is 2+2?"},
                    {"from": "gpt", "value": "4"},
                ]
            },
            "`columns:` also takes LLaMA-Factory's tags: role_tag, content_tag, user_tag, assistant_tag, ...",
        ),
        FormatDoc(
            "alpaca",
            "Alpaca: instruction (+ input) -> output; history = earlier [instruction, output] pairs",
            {"instruction": "instruction", "output": "output"},
            {"input": "input", "system": "system", "history": "history"},
            {"instruction": "Add the numbers.", "input": "2 and 2", "output": "4"},
        ),
        FormatDoc(
            "prompt_completion",
            "prompt -> completion, both strings or both message lists (TRL's conversational layout)",
            {"prompt": "prompt", "completion": "completion"},
            {"system": "system"},
            {"prompt": "What is 2+2?", "completion": "4"},
        ),
        FormatDoc(
            "tinker_comparison",
            "tinker-cookbook's comparisons: a prompt conversation, completions A and B, a label A/B/Tie",
            {
                "prompt_conversation": "comparison.prompt_conversation",
                "completion_A": "comparison.completion_A",
                "completion_B": "comparison.completion_B",
                "label": "label",
            },
            {},
            {
                "comparison": {
                    "prompt_conversation": [_U],
                    "completion_A": [_A],
                    "completion_B": [{"role": "assistant", "content": "5"}],
                },
                "label": "A",
            },
        ),
        FormatDoc(
            "sharegpt_pair",
            "LLaMA-Factory ranking data: ShareGPT turns for the prompt, a chosen and a rejected turn",
            {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
            {"system": "system"},
            {
                "conversations": [{"from": "human", "value": "What is 2+2?"}],
                "chosen": {"from": "gpt", "value": "4"},
                "rejected": {"from": "gpt", "value": "5"},
            },
        ),
        FormatDoc(
            "messages_pair",
            "chosen / rejected message lists: whole conversations, or completions of a `prompt` list",
            {"chosen": "chosen", "rejected": "rejected"},
            {"prompt": "prompt"},
            {"chosen": [_U, _A], "rejected": [_U, {"role": "assistant", "content": "5"}]},
            "LLaMA-Factory v1's chosen_messages / rejected_messages are found without a mapping",
        ),
        FormatDoc(
            "text_pair",
            "prompt / chosen / rejected strings (+ system)",
            {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
            {"system": "system"},
            {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"},
        ),
        FormatDoc(
            "hh_rlhf",
            'Anthropic HH: chosen / rejected transcripts of "Human:" / "Assistant:" turns',
            {"chosen": "chosen", "rejected": "rejected"},
            {},
            {
                "chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4",
                "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5",
            },
        ),
        FormatDoc(
            "text",
            "plain documents for pretraining, one per row",
            {"text": "text"},
            {},
            {"text": "Two plus two is four."},
        ),
    )
}


def columns_example(doc: FormatDoc) -> str:
    """The `columns:` line that reads the format's first field from a field named otherwise."""
    first = next(iter(doc.required))
    return f"columns: {{{first}: my_{first.lower()}}}"


def _fields_line(fields: dict[str, str]) -> str:
    return (
        ", ".join(f"`{k}`" + (f" (row field `{v}`)" if v != k else "") for k, v in fields.items())
        or "-"
    )


def formats_markdown() -> str:
    """docs/formats.md (a test keeps the file equal to this)."""
    out = [
        "# Source formats",
        "",
        "<!-- generated from shardprep/formats/catalog.py; `prep formats` prints the same -->",
        "",
        "A source's `format:` says which fields its rows hold. `columns: {FIELD: ROW_FIELD}` reads",
        "the format's FIELD from another row field (dotted paths such as `data.chat` reach nested",
        "fields). A row without a required field is `missing_field`, naming the fields it has.",
        "",
    ]
    for d in CATALOG.values():
        out += [
            f"## `{d.name}` ({', '.join(d.tasks)})",
            "",
            d.summary,
            "",
            f"- required: {_fields_line(d.required)}",
            f"- optional: {_fields_line(d.optional)}",
            f"- example row: `{json.dumps(d.example, ensure_ascii=False)}`",
            f"- mapping: `{columns_example(d)}`",
        ]
        if d.note:
            out.append(f"- note: {d.note}")
        out.append("")
    return "\n".join(out)
