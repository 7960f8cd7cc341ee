"""Preference rows -> `LabeledComparison` (tinker-cookbook's preference types, §7 of the reference).

Layouts (the source's `format`):
* `tinker_comparison`: `{"comparison": {"prompt_conversation", "completion_A", "completion_B"}, "label"}`
  with label "A", "B" or "Tie" (tinker's ComparisonBuilderFromJsonl).
* `sharegpt_pair`: LLaMA-Factory's ranking data, `conversations` + `chosen` + `rejected` turns
  (one turn or a list), tag options as the sharegpt format.
* `messages_pair`: `chosen` / `rejected` message lists (LLaMA-Factory v1's `chosen_messages` /
  `rejected_messages` are found too). With a `prompt` list they are completions; without one they
  are whole conversations whose prompt is everything but the last message, equal on both sides.
* `text_pair`: `prompt` / `chosen` / `rejected` strings (+ optional `system`).
* `hh_rlhf`: Anthropic HH `chosen` / `rejected` transcripts ("Human:" / "Assistant:").

Layouts without a label mean "chosen is A". A pair whose sides disagree on the prompt, or with an
empty side, raises `RowError("bad_pair")`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shardprep.errors import RowError

from . import messages as messages_format
from . import sharegpt as sharegpt_format
from ._common import Message, column, not_a_message_list

Label = Literal["A", "B", "Tie"]
BAD_PAIR = "bad_pair"


@dataclass(frozen=True)
class Comparison:
    prompt_conversation: list[Message]
    completion_A: list[Message]
    completion_B: list[Message]

    def swap(self) -> Comparison:
        return Comparison(self.prompt_conversation, self.completion_B, self.completion_A)


@dataclass(frozen=True)
class LabeledComparison:
    comparison: Comparison
    label: Label

    def swap(self) -> LabeledComparison:
        flipped: Label = "B" if self.label == "A" else "A" if self.label == "B" else "Tie"
        return LabeledComparison(self.comparison.swap(), flipped)

    def chosen_rejected(self) -> tuple[list[Message], list[Message]]:
        """tinker's DPO builder: chosen = A if label A, otherwise B (a Tie counts as B)."""
        c = self.comparison
        if self.label == "A":
            return c.completion_A, c.completion_B
        return c.completion_B, c.completion_A


def _has_text(msg: Message) -> bool:
    if msg.get("tool_calls"):
        return True
    content = msg.get("content")
    if isinstance(content, str):
        return bool(content.strip())
    return any(str(p.get("text") or p.get("thinking") or "").strip() for p in content or ())


def _check(prompt: list[Message], a: list[Message], b: list[Message], field: str) -> Comparison:
    for side, name in ((a, "A"), (b, "B")):
        if not side or not any(_has_text(m) for m in side):
            raise RowError(BAD_PAIR, f"completion {name} is empty", field=field)
        if side[-1]["role"] != "assistant":
            raise RowError(
                BAD_PAIR, f"completion {name} does not end with an assistant message", field=field
            )
    if not prompt:
        raise RowError(BAD_PAIR, "the pair has no prompt", field=field)
    return Comparison(prompt, a, b)


def _split(conv: list[Message], n_completion: int) -> tuple[list[Message], list[Message]]:
    cut = len(conv) - n_completion
    return conv[:cut], conv[cut:]


def _relabel(err: RowError, field: str, n_prompt: int, side_field: str) -> RowError:
    """Point an error inside the appended completion at the row's own completion field."""
    m = re.match(rf"^{re.escape(field)}\[(\d+)\](.*)$", err.field or "")
    if m and int(m.group(1)) >= n_prompt:
        err.field = f"{side_field}[{int(m.group(1)) - n_prompt}]{m.group(2)}"
    return err.located()  # re-renders the message with the new field


def _messages(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise not_a_message_list(value, field)
    return value


def _convert_messages(
    items: list[Any], field: str, n_prompt: int, side_field: str
) -> list[Message]:
    try:
        return messages_format.convert({field: items}, {"messages": field})
    except RowError as err:
        raise _relabel(err, field, n_prompt, side_field) from None


def _tinker(row: Mapping[str, Any], columns: Mapping[str, str] | None) -> LabeledComparison:
    prompt, f_prompt = column(
        row, columns, "prompt_conversation", default="comparison.prompt_conversation"
    )
    a, f_a = column(row, columns, "completion_A", default="comparison.completion_A")
    b, f_b = column(row, columns, "completion_B", default="comparison.completion_B")
    label, f_label = column(row, columns, "label")
    if label not in ("A", "B", "Tie"):
        raise RowError(BAD_PAIR, f"label must be 'A', 'B' or 'Tie', got {label!r}", field=f_label)
    prompt = _messages(prompt, f_prompt)
    sides = []
    for items, f in ((_messages(a, f_a), f_a), (_messages(b, f_b), f_b)):
        conv = _convert_messages(prompt + items, f_prompt, len(prompt), f)
        sides.append(_split(conv, len(items)))
    (p, ca), (_, cb) = sides
    return LabeledComparison(_check(p, ca, cb, f_prompt), label)


def _sharegpt(row: Mapping[str, Any], columns: Mapping[str, str] | None) -> LabeledComparison:
    cols = dict(columns or {})
    tags = {k: cols.pop(k) for k in list(cols) if k in sharegpt_format.TAG_KEYS}
    turns, f_turns = column(row, cols, "messages", default="conversations")
    if not isinstance(turns, list):
        raise RowError("bad_content", f"{f_turns!r} must be a list of turns", field=f_turns)
    system, f_system = column(row, cols, "system", required=False)
    sides = []
    for name in ("chosen", "rejected"):
        value, f_side = column(row, cols, name)
        items = value if isinstance(value, list) else [value]
        synthetic: dict[str, Any] = {f_turns: turns + items}
        if system is not None:
            synthetic[f_system] = system
        try:
            conv = sharegpt_format.convert(
                synthetic, {**tags, "messages": f_turns, "system": f_system}
            )
        except RowError as err:
            raise _relabel(err, f_turns, len(turns), f_side) from None
        sides.append(_split(conv, len(items)))
    (p, ca), (_, cb) = sides
    return LabeledComparison(_check(p, ca, cb, f_turns), "A")


def _side_column(
    row: Mapping[str, Any], columns: Mapping[str, str] | None, name: str
) -> tuple[Any, str]:
    # LLaMA-Factory v1 names the sides `chosen_messages` / `rejected_messages`.
    if not (columns and name in columns) and name not in row and f"{name}_messages" in row:
        return row[f"{name}_messages"], f"{name}_messages"
    return column(row, columns, name)


def _messages_pair(row: Mapping[str, Any], columns: Mapping[str, str] | None) -> LabeledComparison:
    chosen, f_c = _side_column(row, columns, "chosen")
    rejected, f_r = _side_column(row, columns, "rejected")
    prompt, f_p = column(row, columns, "prompt", required=False)
    chosen, rejected = _messages(chosen, f_c), _messages(rejected, f_r)
    if prompt is not None:
        prompt = _messages(prompt, f_p)
        sides = [
            _split(_convert_messages(prompt + items, f_p, len(prompt), f), len(items))
            for items, f in ((chosen, f_c), (rejected, f_r))
        ]
        (p, ca), (_, cb) = sides
        return LabeledComparison(_check(p, ca, cb, f_p), "A")
    conv_c = _convert_messages(chosen, f_c, len(chosen), f_c)
    conv_r = _convert_messages(rejected, f_r, len(rejected), f_r)
    # As tinker's HH parse: the sides may differ only in their last message.
    if len(conv_c) != len(conv_r) or conv_c[:-1] != conv_r[:-1]:
        raise RowError(BAD_PAIR, f"{f_c!r} and {f_r!r} differ before their last message", field=f_r)
    return LabeledComparison(_check(conv_c[:-1], conv_c[-1:], conv_r[-1:], f_c), "A")


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise RowError(
            "bad_content", f"{field} must be a string, got {type(value).__name__}", field=field
        )
    return value


def _text_pair(row: Mapping[str, Any], columns: Mapping[str, str] | None) -> LabeledComparison:
    prompt, f_p = column(row, columns, "prompt")
    chosen, f_c = column(row, columns, "chosen")
    rejected, f_r = column(row, columns, "rejected")
    system, f_s = column(row, columns, "system", required=False)
    msgs: list[Message] = []
    if system is not None and _string(system, f_s):
        msgs.append({"role": "system", "content": system})
    msgs.append({"role": "user", "content": _string(prompt, f_p)})
    if not prompt.strip():
        raise RowError(BAD_PAIR, "the prompt is empty", field=f_p)
    a: list[Message] = [{"role": "assistant", "content": _string(chosen, f_c)}]
    b: list[Message] = [{"role": "assistant", "content": _string(rejected, f_r)}]
    return LabeledComparison(_check(msgs, a, b, f_p), "A")


_HH_TAGS = re.compile(r"(Human:|Assistant:)")


def _hh_parse(text: str, field: str) -> list[Message]:
    pieces = _HH_TAGS.split(text)
    if pieces[0].strip():
        raise RowError(
            "bad_content", "text before the first 'Human:' / 'Assistant:' tag", field=field
        )
    return [
        {"role": "user" if tag == "Human:" else "assistant", "content": body.strip()}
        for tag, body in zip(pieces[1::2], pieces[2::2], strict=True)
    ]


def _hh(row: Mapping[str, Any], columns: Mapping[str, str] | None) -> LabeledComparison:
    chosen, f_c = column(row, columns, "chosen")
    rejected, f_r = column(row, columns, "rejected")
    conv_c = _hh_parse(_string(chosen, f_c), f_c)
    conv_r = _hh_parse(_string(rejected, f_r), f_r)
    # tinker's hhh_example_to_comparison skips these rows; here they are counted bad pairs.
    if len(conv_c) != len(conv_r) or conv_c[:-1] != conv_r[:-1]:
        raise RowError(BAD_PAIR, f"{f_c!r} and {f_r!r} differ before their last message", field=f_r)
    return LabeledComparison(_check(conv_c[:-1], conv_c[-1:], conv_r[-1:], f_c), "A")


COMPARISON_FORMATS = {
    "tinker_comparison": _tinker,
    "sharegpt_pair": _sharegpt,
    "messages_pair": _messages_pair,
    "text_pair": _text_pair,
    "hh_rlhf": _hh,
}


def to_comparison(
    row: Mapping[str, Any], *, format: str, columns: Mapping[str, str] | None = None
) -> LabeledComparison:
    """One preference row -> LabeledComparison; raises `RowError` (reason, field) when it does not fit."""
    try:
        convert = COMPARISON_FORMATS[format]
    except KeyError:
        raise ValueError(
            f"unknown pair format {format!r}; known: {', '.join(COMPARISON_FORMATS)}"
        ) from None
    return convert(row, columns)


__all__ = ["BAD_PAIR", "COMPARISON_FORMATS", "Comparison", "LabeledComparison", "to_comparison"]
