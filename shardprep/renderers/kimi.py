"""Kimi family: `kimi_k2`, `kimi_k25`, `kimi_k26` (+ `_disable_thinking`, `kimi_k26_preserve_thinking`).

tinker-cookbook's kimi_k2.py / kimi_k25.py / kimi_k26.py: a default system prompt is inserted,
the "last assistant turn" starts after the last assistant message without tool calls (so the
answer after a tool round trip shares its turn with the calls), and that turn keeps its reasoning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from shardprep.errors import RendererError
from shardprep.renderers.base import (
    ExampleCut,
    RenderContext,
    RenderedMessage,
    Renderer,
    TrainOnWhat,
)
from shardprep.renderers.chunks import Chunk, text
from shardprep.renderers.content import (
    Message,
    ensure_text,
    split_thinking,
    tool_call_fields,
    tool_calls_of,
)
from shardprep.renderers.tools import ToolSpec, kimi_k2_json, unsupported
from shardprep.renderers.tools_ts import Unsupported, kimi_ts

DEFAULT_SYSTEM = "You are Kimi, an AI assistant created by Moonshot AI."
_END = "<|im_end|>"
_MIDDLE = "<|im_middle|>"
_USER = "<|im_user|>"
_ASSISTANT = "<|im_assistant|>"
_SYSTEM = "<|im_system|>"
_CALLS = ("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>")
_CALL = ("<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>")


class KimiK2Renderer(Renderer):
    # Every Kimi renderer lacks the extension property, preserve-thinking included (as tinker).
    has_extension_property = False
    splits_every_mode: ClassVar[bool] = True
    # Prefill after the assistant header in the generation prompt (K2-Thinking has none).
    prefill: ClassVar[str] = ""
    # K2.5/K2.6 declare tools as TypeScript types; K2 as compact sorted-key JSON.
    typescript_tools: ClassVar[bool] = False
    # K2.5/K2.6 encode each text part of a multi-part message on its own; K2 refuses such content.
    multipart_chunks: ClassVar[bool] = False

    def normalize(self, messages: Sequence[Message]) -> Sequence[Message]:
        """Insert the default system prompt (tinker's `_ensure_system_message`)."""
        system: Message = {"role": "system", "content": DEFAULT_SYSTEM}
        if not messages:
            return [system]
        first = messages[0].get("role")
        if first == "system":
            return messages
        if first == "tool_declare":
            if len(messages) > 1 and messages[1].get("role") == "system":
                return messages
            return [messages[0], system, *messages[1:]]
        return [system, *messages]

    def tool_prefix(self, tools: list[ToolSpec], system_prompt: str | None) -> list[Message]:
        # A tool_declare turn, then the system prompt (Kimi's default one when there is none).
        if self.typescript_tools:
            try:
                declaration = kimi_ts([dict(t) for t in tools])
            except Unsupported as exc:
                raise unsupported(self.name, f"cannot declare this tool: {exc}") from None
        else:
            declaration = kimi_k2_json(tools)
        return [
            {"role": "tool_declare", "content": declaration},
            {"role": "system", "content": system_prompt or DEFAULT_SYSTEM},
        ]

    def assistant_turn_start(self, messages: Sequence[Message]) -> int:
        for i in range(len(messages) - 1, -1, -1):
            m = messages[i]
            if m.get("role") == "assistant" and not m.get("tool_calls"):
                return i + 1
        return 0

    def example_cuts(self, messages: Sequence[Message], train_on: TrainOnWhat) -> list[ExampleCut]:
        """tinker's Kimi override: LAM/LAT stay one example; any other mode is split at user
        messages, one prefix per later user turn plus the whole list (AAM trains each as LAT)."""
        train_on = TrainOnWhat(train_on)
        if train_on in (TrainOnWhat.LAST_ASSISTANT_MESSAGE, TrainOnWhat.LAST_ASSISTANT_TURN):
            return [ExampleCut(len(messages), train_on)]
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        mode = (
            TrainOnWhat.LAST_ASSISTANT_TURN
            if train_on is TrainOnWhat.ALL_ASSISTANT_MESSAGES
            else train_on
        )
        return [ExampleCut(end, mode) for end in [*users[1:], len(messages)]]

    def _header(self, message: Message) -> str:
        role = message["role"]
        if role == "user":
            return f"{_USER}user{_MIDDLE}"
        if role == "assistant":
            return f"{_ASSISTANT}assistant{_MIDDLE}"
        if role == "tool":
            name = message.get("name") or "tool"
            return f"{_SYSTEM}{name}{_MIDDLE}## Return of {message.get('tool_call_id') or ''}\n"
        return f"{_SYSTEM}{role}{_MIDDLE}"

    def _tool_calls(self, calls: list[Any]) -> str:
        body = ""
        for index, call in enumerate(calls):
            name, arguments = tool_call_fields(call)
            call_id = call.get("id") or f"functions.{name}:{index}"
            body += _CALL[0] + call_id + _CALL[1] + arguments + _CALL[2]
        return _CALLS[0] + body + _CALLS[1]

    def _other_output(self, content: Any) -> list[Chunk]:
        """Output of a non-assistant message: one text, or (K2.5/K2.6) one chunk per text part."""
        if isinstance(content, str) or (
            isinstance(content, list)
            and len(content) == 1
            and isinstance(content[0], dict)
            and content[0].get("type") == "text"
        ):
            return [text(ensure_text(content) + _END)]
        if not self.multipart_chunks:
            raise RendererError(
                f"{self.name} renders a non-assistant message's content only as one text (a string "
                f"or one text part), got a list of {len(content)} parts (tinker: multipart content "
                "is not supported for Kimi K2)",
                field="content",
            )
        chunks: list[Chunk] = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                raise RendererError(
                    f"{self.name}: content part of type {kind!r} is not supported in a "
                    "non-assistant message",
                    field="content",
                )
            chunks.append(text(str(part.get("text", ""))))  # each part encoded on its own
        return [*chunks, text(_END)]

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        if message["role"] != "assistant":
            return RenderedMessage(
                header=text(self._header(message)), output=self._other_output(message["content"])
            )
        thinking, body = split_thinking(message["content"])
        keep = ctx.in_last_assistant_turn or not self.strip_thinking_from_history
        out = f"<think>{thinking}</think>" if keep and thinking else "<think></think>"
        out += body
        calls = tool_calls_of(message)
        if calls:
            out += self._tool_calls(calls)
        return RenderedMessage(header=text(self._header(message)), output=[text(out + _END)])

    def generation_prefill(self, messages: Sequence[Message], prefill: str | None) -> str | None:
        return self.prefill + (prefill or "") or None

    def end_of_turn_tokens(self) -> list[str]:
        return [_END]

    def required_special_tokens(self) -> list[str]:
        return [_END, _MIDDLE, _USER, _ASSISTANT, _SYSTEM, *_CALLS, *_CALL]

    def template_constants(self) -> dict[str, Any]:
        return {
            "default_system": DEFAULT_SYSTEM,
            "headers": [
                self._header({"role": r, "content": ""}) for r in ("user", "assistant", "system")
            ],
            "tool_header": self._header({"role": "tool", "name": "{name}", "tool_call_id": "{id}"}),
            "end": _END,
            "tool_calls": list(_CALLS),
            "tool_call": list(_CALL),
            "prefill": self.prefill,
            "multipart_chunks": self.multipart_chunks,
            "strip_thinking_from_history": self.strip_thinking_from_history,
        }


class KimiK25Renderer(KimiK2Renderer):
    prefill = "<think>"
    typescript_tools = True
    multipart_chunks = True


class KimiK25DisableThinkingRenderer(KimiK2Renderer):
    disables_thinking = True
    prefill = "<think></think>"
    typescript_tools = True
    multipart_chunks = True
