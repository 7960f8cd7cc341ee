"""Qwen3 text family: `qwen3`, `qwen3_disable_thinking`, `qwen3_instruct`."""

from __future__ import annotations

import json
from typing import Any

from shardprep.errors import RendererError
from shardprep.renderers import tools as tools_text
from shardprep.renderers.base import RenderContext, RenderedMessage, Renderer
from shardprep.renderers.chunks import Chunk, Encoding, TextChunk, text
from shardprep.renderers.content import (
    Message,
    has_thinking,
    parts,
    tool_call_arguments,
    tool_call_fields,
    tool_calls_of,
)
from shardprep.renderers.tools import ToolSpec

_IM_START = "<|im_start|>"
_IM_END = "<|im_end|>"
_EMPTY_THINK = "<think>\n\n</think>\n\n"
_TOOL_RESPONSE = ("<tool_response>\n", "\n</tool_response>")
_TOOL_CALL = ("<tool_call>\n", "\n</tool_call>")


# The same few header and end-of-turn chunks in every row: made once (chunks are values).
_HEADERS: dict[tuple[bool, str], Chunk] = {}
_END = text(_IM_END)


def _header(first: bool, role: str) -> Chunk:
    key = (first, role)
    chunk = _HEADERS.get(key)
    if chunk is None:
        nl = "" if first else "\n"
        chunk = _HEADERS[key] = text(f"{nl}{_IM_START}{'user' if role == 'tool' else role}\n")
    return chunk


def _frame(reasoning: str) -> str:
    return "<think>\n" + reasoning.strip("\n") + "\n</think>\n\n"


def _tool_call_text(call: Any) -> str:
    name, arguments = tool_call_fields(call)
    args = tool_call_arguments(arguments)
    # json.dumps defaults (", " / ": ", ASCII escapes) are what tinker writes.
    return _TOOL_CALL[0] + json.dumps({"name": name, "arguments": args}) + _TOOL_CALL[1]


class Qwen3Renderer(Renderer):
    frames_thinking = True

    def tool_prefix(self, tools: list[ToolSpec], system_prompt: str | None) -> list[Message]:
        # One system message: the prompt, a blank line, then the tools text.
        body = tools_text.qwen3_text(tools)
        return [
            {"role": "system", "content": f"{system_prompt}\n\n{body}" if system_prompt else body}
        ]

    def _frames(self, message: Message, ctx: RenderContext) -> bool:
        return (
            self.frames_thinking
            and message["role"] == "assistant"
            and ctx.last_user_index >= 0
            and (ctx.is_last or not self.strip_thinking_from_history)
        )

    def _content_text(self, message: Message, ctx: RenderContext) -> tuple[str, bool]:
        """(body, whether the message has text of its own: asked before the empty block)."""
        content = message["content"]
        frames = self._frames(message, ctx)
        if isinstance(content, str):
            if frames and "</think>" in content:
                head, _, rest = content.partition("</think>")
                body = _frame(head.rpartition("<think>")[2]) + rest.lstrip("\n")
            else:
                body = content  # history stripping only applies to list content
        else:
            drop = (
                self.strip_thinking_from_history
                and message["role"] == "assistant"
                and not ctx.is_last
            )
            pieces: list[str] = []
            after_frame = False
            for part in parts(content):
                kind = part.get("type")
                if kind == "thinking":
                    if drop:
                        continue
                    t = str(part.get("thinking", ""))
                    pieces.append(_frame(t) if frames else f"<think>{t}</think>")
                    after_frame = frames
                elif kind == "text":
                    t = str(part.get("text", ""))
                    pieces.append(t.lstrip("\n") if after_frame else t)
                    after_frame = False
                # images and other parts are dropped, as in tinker's text renderer
            body = "".join(pieces)
        has_text = bool(body)
        if frames and not has_thinking(content):
            body = _EMPTY_THINK + body.lstrip("\n")
        return body, has_text

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        header = _HEADERS.get((ctx.idx == 0, role)) or _header(ctx.idx == 0, role)
        body, has_text = self._content_text(message, ctx)
        if role == "tool":
            body = _TOOL_RESPONSE[0] + body + _TOOL_RESPONSE[1]
        if "tool_calls" in message:
            calls = tool_calls_of(message)
            assert calls is not None
            # The calls are separated from the message's own text, not from the empty block.
            body += ("\n" if has_text else "") + "\n".join(_tool_call_text(c) for c in calls)
        # Content is encoded with special tokens escaped, <|im_end|> separately with them live.
        return RenderedMessage([TextChunk(body, Encoding.ESCAPED), _END], header)

    def end_of_turn_tokens(self) -> list[str]:
        return [_IM_END]

    def required_special_tokens(self) -> list[str]:
        tokens = [_IM_START, _IM_END]
        if self.frames_thinking:
            tokens += ["<think>", "</think>"]
        return tokens

    def template_constants(self) -> dict[str, Any]:
        return {
            "header": "{nl}" + _IM_START + "{role}\n",
            "end": _IM_END,
            "frame": _frame("{reasoning}"),
            "empty_think": _EMPTY_THINK,
            "tool_response": list(_TOOL_RESPONSE),
            "tool_call": list(_TOOL_CALL),
            "frames_thinking": self.frames_thinking,
            "strip_thinking_from_history": self.strip_thinking_from_history,
        }


class Qwen3DisableThinkingRenderer(Qwen3Renderer):
    disables_thinking = True

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        # Without a user message the template frames no turn (no empty think block), but the
        # generation prompt always ends with one: the produced turn cannot match it (tinker refuses).
        if (
            message["role"] == "assistant"
            and ctx.is_last
            and message.get("content")
            and ctx.last_user_index < 0
        ):
            raise RendererError(
                "this conversation has no user message, so Qwen3's template writes no empty think "
                "block on the produced turn, but the generation prompt always opens one; add a user "
                "message, or use the thinking renderer (qwen3)"
            )
        return super().render_message(message, ctx)

    def generation_suffix(self, role: str, ctx: RenderContext) -> list[Chunk]:
        # The prompt closes an empty think block: the model is told not to reason.
        nl = "\n" if ctx.idx > 0 else ""
        return [text(f"{nl}{_IM_START}{'user' if role == 'tool' else role}\n{_EMPTY_THINK}")]


class Qwen3InstructRenderer(Qwen3Renderer):
    frames_thinking = False
    has_extension_property = True  # no think framing to strip (tinker)
