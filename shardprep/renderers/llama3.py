"""`llama3`: Llama 3.x instruct format (no "Cutting Knowledge Date" preamble, like tinker)."""

from __future__ import annotations

from typing import Any

from shardprep.renderers.base import RenderContext, RenderedMessage, Renderer
from shardprep.renderers.chunks import Chunk, text
from shardprep.renderers.content import Message, ensure_text

_BOS = "<|begin_of_text|>"
_START = "<|start_header_id|>"
_END = "<|end_header_id|>"
_EOT = "<|eot_id|>"


class Llama3Renderer(Renderer):
    has_extension_property = True  # nothing is dropped from history (tinker)

    def bos(self) -> Chunk | None:
        return text(_BOS)

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        # The role is used verbatim (a tool message is `tool`); tool_calls are dropped, as in tinker.
        return RenderedMessage(
            header=text(f"{_START}{message['role']}{_END}\n\n"),
            output=[text(ensure_text(message["content"]) + _EOT)],
        )

    def end_of_turn_tokens(self) -> list[str]:
        return [_EOT]

    def required_special_tokens(self) -> list[str]:
        return [_BOS, _START, _END, _EOT]

    def template_constants(self) -> dict[str, Any]:
        return {"bos": _BOS, "header": f"{_START}{{role}}{_END}\n\n", "output": "{text}" + _EOT}
