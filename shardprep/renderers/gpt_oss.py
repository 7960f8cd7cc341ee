"""GPT-OSS / Harmony: `gpt_oss_no_sysprompt`, `gpt_oss_{low,medium,high}_reasoning` (tinker's gpt_oss.py).

tinker stamps `datetime.now()` into the system prompt of the reasoning variants, so its output
changes daily. Here the date is a renderer option (`current_date`, recorded in the manifest and
hashed into the fingerprint) with a fixed default, so a rebuild renders the same tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from shardprep.errors import ShardprepError
from shardprep.renderers.base import RenderContext, RenderedMessage, Renderer
from shardprep.renderers.chunks import text
from shardprep.renderers.content import (
    Message,
    ensure_text,
    split_thinking,
    tool_call_fields,
    tool_calls_of,
)
from shardprep.renderers.tools import GPT_OSS_ROUTING, GPT_OSS_TOOLS, ToolSpec, unsupported
from shardprep.renderers.tools_ts import Unsupported, harmony_function

# The date the golden files were recorded with; used when the recipe gives none.
DEFAULT_CURRENT_DATE = "2025-06-28"
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_START = "<|start|>"
_END = "<|end|>"
_MESSAGE = "<|message|>"
_CHANNEL = "<|channel|>"
_RETURN = "<|return|>"
_CALL = "<|call|>"
_CONSTRAIN = "<|constrain|>"
# Role of the injected system prompt: user `system` messages render as `developer`, and this one
# must not count as a system message for all_user_and_system_messages.
INTERNAL_SYSTEM = "_gptoss_internal_system"
_SYSTEM_PROMPT = (
    "You are ChatGPT, a large language model trained by OpenAI.\n"
    "Knowledge cutoff: 2024-06\n"
    "Current date: {current_date}\n\n"
    "Reasoning: {effort}\n\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message."
)


class GptOssRenderer(Renderer):
    accepted_options: ClassVar[frozenset[str]] = frozenset({"current_date"})

    def __init__(
        self,
        tokenizer: Any,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        reasoning_effort: str | None = None,
    ) -> None:
        super().__init__(tokenizer, name, options)
        self.reasoning_effort = reasoning_effort
        date = self.options.get("current_date", DEFAULT_CURRENT_DATE)
        if not isinstance(date, str) or not _DATE_RE.match(date):
            raise ShardprepError(
                f"renderer {name!r}: option current_date must be a YYYY-MM-DD string, got {date!r}"
            )
        self.current_date = date

    def system_prompt(self) -> str | None:
        if self.reasoning_effort is None:
            return None
        return _SYSTEM_PROMPT.format(current_date=self.current_date, effort=self.reasoning_effort)

    def normalize(self, messages: Sequence[Message]) -> Sequence[Message]:
        prompt = self.system_prompt()
        # Compared by content, not role: a tool prefix starts with its own internal system
        # message (the routing note), which must not stand in for this prompt.
        first: dict[str, Any] = dict(messages[0]) if messages else {}
        if prompt is None or (
            first.get("role") == INTERNAL_SYSTEM and first.get("content") == prompt
        ):
            return messages
        return [{"role": INTERNAL_SYSTEM, "content": prompt}, *messages]

    def tool_prefix(self, tools: list[ToolSpec], system_prompt: str | None) -> list[Message]:
        # A routing note as the internal system message, then one developer message with the
        # instructions and the TypeScript definitions (rendered verbatim: role `developer`).
        try:
            defs = "\n\n".join(harmony_function(dict(t)) for t in tools)
        except Unsupported as exc:
            raise unsupported(self.name, f"cannot declare this tool: {exc}") from None
        sections = [f"# Instructions\n\n{system_prompt}"] if system_prompt else []
        sections.append(GPT_OSS_TOOLS.format(defs=defs))
        return [
            {"role": INTERNAL_SYSTEM, "content": GPT_OSS_ROUTING},
            {"role": "developer", "content": "\n\n".join(sections)},
        ]

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        if role == "assistant":
            thinking, body = split_thinking(message["content"])
            return RenderedMessage(
                header=text(_START + "assistant"),
                output=[text(self._assistant(message, thinking, body, ctx))],
            )
        # Every other role's content is one text (a string or exactly one text part).
        body = ensure_text(message["content"])
        if role == "tool":
            name = message.get("name") or "unknown"
            if not name.startswith("functions."):
                name = f"functions.{name}"
            return RenderedMessage(
                header=text(f"{_START}{name} to=assistant"),
                output=[text(f"{_CHANNEL}commentary{_MESSAGE}{body}{_END}")],
            )
        if role == "system":
            role, body = "developer", f"# Instructions\n\n{body}\n\n"
        elif role == INTERNAL_SYSTEM:
            role = "system"
        return RenderedMessage(header=text(_START + role), output=[text(_MESSAGE + body + _END)])

    def _assistant(self, message: Message, thinking: str, body: str, ctx: RenderContext) -> str:
        next_part = _END + _START + "assistant"
        out = f"{_CHANNEL}analysis{_MESSAGE}{thinking}{next_part}" if thinking else ""
        calls = tool_calls_of(message)
        if calls:
            if body:
                out += f"{_CHANNEL}commentary{_MESSAGE}{body}{next_part}"
            rendered = []
            for call in calls:
                name, arguments = tool_call_fields(call)
                rendered.append(
                    f" to=functions.{name}{_CHANNEL}commentary {_CONSTRAIN}json{_MESSAGE}{arguments}{_CALL}"
                )
            return out + (_START + "assistant").join(rendered)
        return out + f"{_CHANNEL}final{_MESSAGE}{body}" + (_RETURN if ctx.is_last else _END)

    def end_of_turn_tokens(self) -> list[str]:
        return [_END, _RETURN]

    def required_special_tokens(self) -> list[str]:
        return [_START, _END, _MESSAGE, _CHANNEL, _RETURN, _CALL, _CONSTRAIN]

    def template_constants(self) -> dict[str, Any]:
        return {
            "system_prompt": self.system_prompt(),
            "developer": "# Instructions\n\n{text}\n\n",
            "tokens": self.required_special_tokens(),
            "tool_call": " to=functions.{name}<|channel|>commentary <|constrain|>json<|message|>{arguments}<|call|>",
            "tool_result": "<|start|>functions.{name} to=assistant<|channel|>commentary<|message|>{text}<|end|>",
        }
