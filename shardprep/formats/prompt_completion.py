"""`prompt` / `completion` pairs (+ optional `system`) -> user / assistant messages.

Both plain strings (the common "instruction tuning" export) and TRL's conversational layout
(`prompt` and `completion` each a list of messages) are accepted; the latter goes through the
messages format so that tool calls, thinking parts and roles get the same checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shardprep.errors import RowError

from . import messages as messages_format
from ._common import Message, column, finish, string_field


def convert(
    row: Mapping[str, Any], columns: Mapping[str, str] | None = None, *, customized: bool = False
) -> list[Message]:
    prompt, f_prompt = column(row, columns, "prompt")
    completion, f_completion = column(row, columns, "completion")
    system, f_system = column(row, columns, "system", required=False)
    if isinstance(prompt, list) or isinstance(completion, list):
        if not (isinstance(prompt, list) and isinstance(completion, list)):
            raise RowError(
                "bad_content",
                "prompt and completion must both be strings or both be lists of messages",
                field=f_completion,
            )
        merged: list[Any] = list(prompt) + list(completion)
        if system is not None:
            merged.insert(0, {"role": "system", "content": string_field(system, f_system)})
        return messages_format.convert({"messages": merged}, None, customized=customized)
    if customized:
        raise RowError(
            "missing_trainable",
            "train_on: customized needs a `trainable` flag per message; string prompt/completion "
            "pairs cannot carry one (use lists of messages)",
        )
    out: list[Message] = []
    if system is not None and string_field(system, f_system):
        out.append({"role": "system", "content": system})
    out.append({"role": "user", "content": string_field(prompt, f_prompt)})
    out.append({"role": "assistant", "content": string_field(completion, f_completion)})
    return finish(out, field=f_prompt, customized=False)
