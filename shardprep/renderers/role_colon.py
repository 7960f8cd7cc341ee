"""`role_colon`: plain `Role: text` transcripts, for base (non-chat) models."""

from __future__ import annotations

from typing import Any

from shardprep.renderers.base import RenderContext, RenderedMessage, Renderer
from shardprep.renderers.chunks import Chunk, text
from shardprep.renderers.content import Message, ensure_text

_SEP = "\n\n"
_NEXT_USER = "User:"
# tinker appends this literal after a conversation that ends on a non-assistant message.
_UNUSED = "<UNUSED>"


class RoleColonRenderer(Renderer):
    has_extension_property = True  # nothing is dropped from history (tinker)

    def _bos_token(self) -> str | None:
        # tinker reads `tokenizer.bos_token`; our tokenizer.json carries no such notion, so the
        # tokenizer_config.json value stands in (set for Llama 3, unset for Qwen3).
        tok = self.tokenizer.config.get("bos_token")
        if isinstance(tok, dict):
            tok = tok.get("content")
        return tok if isinstance(tok, str) else None

    def bos(self) -> Chunk | None:
        tok = self._bos_token()
        return text(tok) if tok is not None else None

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role: str = message["role"]
        # tool_calls are dropped silently, as in tinker.
        body = ensure_text(message["content"])
        return RenderedMessage(
            header=text(role.capitalize() + ":"),
            output=[text(" " + body + _SEP)],
            stop_overlap=text(_NEXT_USER if role == "assistant" else _UNUSED),
        )

    def template_constants(self) -> dict[str, Any]:
        return {
            "header": "{Role}:",
            "output": " {text}" + _SEP,
            "stop_overlap_assistant": _NEXT_USER,
            "stop_overlap_other": _UNUSED,
            "bos": self._bos_token(),
        }
