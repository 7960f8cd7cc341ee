"""Alpaca `instruction` / `input` / `output` (+ optional `system`, `history`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shardprep.errors import RowError

from ._common import Message, column, finish, string_field


def _text(value: Any, field: str) -> str:
    return string_field(value, field, none_as_empty=True)  # alpaca leaves empty fields out or null


def convert(
    row: Mapping[str, Any], columns: Mapping[str, str] | None = None, *, customized: bool = False
) -> list[Message]:
    if customized:
        raise RowError(
            "missing_trainable",
            "train_on: customized needs a `trainable` flag per message, which the alpaca format cannot carry; "
            "use the messages format",
        )
    instruction, f_instruction = column(row, columns, "instruction")
    extra, f_input = column(row, columns, "input", required=False)
    output, f_output = column(row, columns, "output")
    system, f_system = column(row, columns, "system", required=False)
    history, f_history = column(row, columns, "history", required=False)
    messages: list[Message] = []
    system = _text(system, f_system)
    if system:
        messages.append({"role": "system", "content": system})
    if history is not None:
        if not isinstance(history, list):
            raise RowError(
                "bad_content", "history must be a list of [question, answer] pairs", field=f_history
            )
        for i, pair in enumerate(history):
            where = f"{f_history}[{i}]"
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise RowError(
                    "bad_content", "a history entry must be a [question, answer] pair", field=where
                )
            messages.append({"role": "user", "content": _text(pair[0], f"{where}[0]")})
            messages.append({"role": "assistant", "content": _text(pair[1], f"{where}[1]")})
    # LLaMA-Factory's convention: instruction and input joined by a newline, empty ones left out.
    prompt = [p for p in (_text(instruction, f_instruction), _text(extra, f_input)) if p]
    messages.append({"role": "user", "content": "\n".join(prompt)})
    messages.append({"role": "assistant", "content": _text(output, f_output)})
    return finish(messages, field=f_instruction, customized=False)
