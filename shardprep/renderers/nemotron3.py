"""Nemotron-3 family (tinker-cookbook's nemotron3.py, built on the Qwen3.5 renderer).

Differences from Qwen3.5: an always-present system block, `<think></think>` in the header of
non-reasoning turns (so a thinking-on prompt is not a prefix of such a turn, and tinker leaves the
weights alone), thinking stripped only before the last user message, and tool results closed with
a newline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

from shardprep.errors import RendererError
from shardprep.renderers.base import RenderContext
from shardprep.renderers.content import Message, has_thinking, parts
from shardprep.renderers.qwen3_5 import Qwen3_5Renderer
from shardprep.renderers.tools import ToolSpec, nemotron3_text

_CLOSED = "<think></think>"


class Nemotron3Renderer(Qwen3_5Renderer):
    """`nemotron3` (Nano / Super); subclasses set the Ultra differences and effort hints."""

    ultra: ClassVar[bool] = False
    # Appended to the last user message (None: no hint).
    effort_hint: ClassVar[str | None] = None
    # Low-thinking supports string content only (tinker asserts it).
    hint_needs_string: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # tinker: with thinking preserved, history renders each turn as a supervised example does
        # (unlike Qwen3.5, whose non-reasoning turns differ from their prompt either way).
        self.has_extension_property = not self.strip_thinking_from_history

    def tool_prefix(self, tools: list[ToolSpec], system_prompt: str | None) -> list[Message]:
        # Unlike Qwen3.5, the system prompt comes before the (XML) tools text.
        body = nemotron3_text(tools)
        return [
            {"role": "system", "content": f"{system_prompt}\n\n{body}" if system_prompt else body}
        ]

    # -- normalization ----------------------------------------------------------------------

    def normalize(self, messages: Sequence[Message]) -> Sequence[Message]:
        out = list(messages)
        if not out or out[0].get("role") != "system":
            out.insert(0, {"role": "system", "content": ""})
        if self.effort_hint is not None:
            out = self._with_hint(out)
        return out

    def _with_hint(self, messages: list[Message]) -> list[Message]:
        idx = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        if idx < 0:
            return messages
        message = cast(Message, dict(messages[idx]))
        content = message["content"]
        hint = self.effort_hint or ""
        if content.endswith(hint) if isinstance(content, str) else False:
            return messages  # already applied (normalize must be idempotent)
        if isinstance(content, str):
            message["content"] = content + hint
        elif self.hint_needs_string:
            raise RendererError(
                f"{self.name}: the reasoning-effort hint can only be added to string content; "
                "this conversation's last user message has list content",
                field="content",
            )
        else:
            items = list(parts(content))
            if items and items[-1] == {"type": "text", "text": hint}:
                return messages
            message["content"] = [*items, {"type": "text", "text": hint}]
        messages[idx] = message
        return messages

    # -- Qwen3.5 hooks ----------------------------------------------------------------------

    def _thinking_text(self, thinking: str) -> str:
        if self.ultra:
            return f"<think>\n{thinking}</think>"
        return f"<think>\n{thinking}\n</think>\n"

    def _content_parts(self, content: Any) -> list[dict[str, Any]]:
        # Only string content is trimmed.
        if isinstance(content, str):
            return [{"type": "text", "text": content.strip()}]
        return list(parts(content))

    def _historical(self, ctx: RenderContext) -> bool:
        return ctx.idx < ctx.last_user_index

    def _drops_thinking(self, message: Message, ctx: RenderContext) -> bool:
        return self.strip_thinking_from_history and self._historical(ctx)

    def _wants_empty_block(self, message: Message, ctx: RenderContext) -> bool:
        return True  # `_empty_block` decides, possibly ""

    def _empty_block(self, message: Message, ctx: RenderContext) -> str:
        historical = self._historical(ctx)
        thinking = has_thinking(message["content"])
        if thinking and (not historical or not self.strip_thinking_from_history):
            return ""
        # Nano/Super close their reasoning with a newline; Ultra does not, nor its empty block.
        if (
            not self.ultra
            and historical
            and thinking
            # Only structured content counts: a string with a literal `<think>` gets no newline.
            and isinstance(message["content"], list)
            and self._has_text(message)
            and not message.get("tool_calls")
        ):
            return _CLOSED + "\n"
        return _CLOSED

    @staticmethod
    def _has_text(message: Message) -> bool:
        return any(
            p.get("type") == "text" and str(p.get("text", "")) for p in parts(message["content"])
        )

    def _tool_calls_prefix(self, message: Message, visible: bool) -> str:
        if self.ultra:
            return "\n"
        content = message["content"]
        structured = isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") == "thinking" for p in content
        )
        return "" if structured and not self._has_text(message) else "\n"

    def _tool_calls_text(self, calls: list[Any]) -> str:
        return "".join(self._tool_call(c) + "\n" for c in calls)

    def _tool_response(self, body: str) -> str:
        return "<tool_response>\n" + body + "\n</tool_response>\n"

    def _tool_continuation_header(self) -> str:
        return ""

    def template_constants(self) -> dict[str, Any]:
        return {
            **super().template_constants(),
            "closed_think": _CLOSED,
            "ultra": self.ultra,
            "effort_hint": self.effort_hint,
        }


class Nemotron3DisableThinkingRenderer(Nemotron3Renderer):
    disables_thinking = True
    prompt_think = _CLOSED


class Nemotron3LowThinkingRenderer(Nemotron3Renderer):
    effort_hint = "\n\n{reasoning effort: low}"
    hint_needs_string = True


class Nemotron3UltraRenderer(Nemotron3Renderer):
    ultra = True


class Nemotron3UltraDisableThinkingRenderer(Nemotron3UltraRenderer):
    disables_thinking = True
    prompt_think = _CLOSED


class Nemotron3UltraMediumThinkingRenderer(Nemotron3UltraRenderer):
    effort_hint = "\n\n{reasoning effort: efficient}"


__all__ = [
    "Nemotron3DisableThinkingRenderer",
    "Nemotron3LowThinkingRenderer",
    "Nemotron3Renderer",
    "Nemotron3UltraDisableThinkingRenderer",
    "Nemotron3UltraMediumThinkingRenderer",
    "Nemotron3UltraRenderer",
]
