"""DeepSeek V3.1 family: `deepseekv3` (= `deepseekv3_disable_thinking`) and `deepseekv3_thinking`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from shardprep.errors import RendererError
from shardprep.renderers.base import RenderContext, RenderedMessage, Renderer
from shardprep.renderers.chunks import Chunk, text
from shardprep.renderers.content import (
    Message,
    ensure_text,
    has_thinking,
    parts,
    text_of,
    tool_call_fields,
)
from shardprep.renderers.tools import ToolSpec, deepseek_v3_text

_BOS = "<｜begin▁of▁sentence｜>"
_EOS = "<｜end▁of▁sentence｜>"
_USER = "<｜User｜>"
_ASSISTANT = "<｜Assistant｜>"
_CLOSED = "</think>"
_CALLS = ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>")
_CALL = ("<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>")
_OUTPUT = ("<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>")
_THINK_RE = re.compile(r"<think>.*?</think>", flags=re.DOTALL)


def _tool_calls_text(calls: list[Any]) -> str:
    body = ""
    for call in calls:
        name, arguments = tool_call_fields(call)
        body += _CALL[0] + name + _CALL[1] + arguments + _CALL[2]  # arguments: the raw JSON string
    return _CALLS[0] + body + _CALLS[1]


class DeepSeekV3Renderer(Renderer):
    """Non-thinking mode: every assistant turn not after a tool result opens with a closed think."""

    thinking = False
    has_extension_property = True  # non-thinking mode: no reasoning to strip (tinker)

    def bos(self) -> Chunk | None:
        return text(_BOS)

    def tool_prefix(self, tools: list[ToolSpec], system_prompt: str | None) -> list[Message]:
        # Appended to the system prompt; the text starts with its own blank line, so a row
        # without a system prompt gets a system message that opens with "\n\n" (as the
        # DeepSeek V3.1 template writes it).
        return [{"role": "system", "content": (system_prompt or "") + deepseek_v3_text(tools)}]

    def _content(self, message: Message, ctx: RenderContext) -> str:
        content = message["content"]
        if isinstance(content, str):
            return content
        drop = (
            self.strip_thinking_from_history
            and message["role"] == "assistant"
            and not message.get("tool_calls")
            and not ctx.is_last
        )
        pieces = []
        for part in parts(content):
            if part.get("type") == "thinking":
                if not drop:
                    pieces.append(f"<think>{part.get('thinking', '')}</think>")
            elif part.get("type") == "text":
                pieces.append(str(part.get("text", "")))
        return "".join(pieces)

    def _assistant(self, message: Message, ctx: RenderContext) -> tuple[str | None, str, bool]:
        """(header, body, whether the content counts as non-empty) of an assistant message."""
        after_tool = ctx.prev_message is not None and ctx.prev_message.get("role") == "tool"
        if after_tool:
            return None, self._content(message, ctx), bool(message["content"])
        content = message["content"]
        stripped = _THINK_RE.sub("", content) if isinstance(content, str) else text_of(content)
        # tinker replaces the content with the stripped text first, so a turn holding only
        # reasoning and tool calls ends without end-of-sentence.
        return _ASSISTANT + _CLOSED, stripped, bool(stripped)

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        if role == "system":
            if ctx.idx != 0:
                raise RendererError(
                    f"{self.name} renders a system message only as the first message (found one at {ctx.idx})",
                    field="messages",
                )
            # System, user and tool content is one text (a string or exactly one text part).
            return RenderedMessage(output=[text(ensure_text(message["content"]))])
        if role == "user":
            return RenderedMessage(
                header=text(_USER), output=[text(ensure_text(message["content"]))]
            )
        if role == "tool":
            return RenderedMessage(
                header=text(_OUTPUT[0]), output=[text(ensure_text(message["content"]) + _OUTPUT[1])]
            )
        if role != "assistant":
            raise RendererError(f"{self.name} cannot render role {role!r}", field="role")
        header, body, has_content = self._assistant(message, ctx)
        if message.get("tool_calls"):
            body += _tool_calls_text(message["tool_calls"])
        output: list[Chunk] = [text(body)]
        # tinker writes no end-of-sentence after an assistant message with empty content
        # (a pure tool-call turn).
        if has_content:
            output.append(text(_EOS))
        return RenderedMessage(header=text(header) if header is not None else None, output=output)

    def end_of_turn_tokens(self) -> list[str]:
        return [_EOS]

    def required_special_tokens(self) -> list[str]:
        return [_BOS, _EOS, _USER, _ASSISTANT, *_CALLS, *_CALL, *_OUTPUT]

    def template_constants(self) -> dict[str, Any]:
        return {
            "bos": _BOS,
            "eos": _EOS,
            "user": _USER,
            "assistant": _ASSISTANT,
            "closed_think": _CLOSED,
            "tool_calls": list(_CALLS),
            "tool_call": list(_CALL),
            "tool_output": list(_OUTPUT),
            "think_re": _THINK_RE.pattern,
            "thinking": self.thinking,
            "strip_thinking_from_history": self.strip_thinking_from_history,
        }


class DeepSeekV3ThinkingRenderer(DeepSeekV3Renderer):
    """Thinking mode: the last assistant keeps its reasoning; the prompt is prefilled with `<think>`."""

    thinking = True
    has_extension_property = (
        False  # history drops the reasoning (tinker: strip_thinking_from_history)
    )

    def _assistant(self, message: Message, ctx: RenderContext) -> tuple[str | None, str, bool]:
        after_tool = ctx.prev_message is not None and ctx.prev_message.get("role") == "tool"
        body = self._content(message, ctx)
        content = message["content"]
        if after_tool:
            return None, body, bool(content)
        if not ctx.is_last and self.strip_thinking_from_history:
            return _ASSISTANT + _CLOSED, body, bool(content)
        if content and not has_thinking(content):
            body = "<think></think>" + body
        return _ASSISTANT, body, bool(content)

    def generation_prefill(self, messages: Sequence[Message], prefill: str | None) -> str | None:
        if messages and messages[-1].get("role") == "tool":
            return prefill
        return "<think>" + (prefill or "")
