"""GLM-5.3: `glm5_3_{max,low,high}_reasoning` (tinker-cookbook's glm5_3.py).

GLM has no end-of-turn token: an assistant turn ends with the role token of what follows
(`<|user|>` or `<|observation|>`). tinker appends that token to the assistant's output (so it is
trained) and drops it from the next header; after the last message it comes via stop_overlap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shardprep.errors import RendererError
from shardprep.renderers.base import RenderContext, RenderedMessage, Renderer
from shardprep.renderers.chunks import Chunk, text
from shardprep.renderers.content import Message, parts, tool_call_fields, tool_calls_of
from shardprep.renderers.qwen3_5 import parse_arguments
from shardprep.renderers.tools import ToolSpec, glm5_3_text

_PREFIX = "[gMASK]<sop><|system|>Reasoning Effort: "
_SYSTEM = "<|system|>"
_USER = "<|user|>"
_ASSISTANT = "<|assistant|>"
_OBSERVATION = "<|observation|>"
_ROLE_TOKENS = {"system": _SYSTEM, "user": _USER, "assistant": _ASSISTANT, "tool": _OBSERVATION}


def _text_only(content: Any, role: str) -> str:
    if isinstance(content, str):
        return content
    out = ""
    for part in parts(content):
        if part.get("type") != "text":
            raise RendererError(
                f"GLM-5.3 renders only text parts in {role} messages, got {part.get('type')!r}",
                field="content",
            )
        out += str(part.get("text", ""))
    return out


def _reasoning_and_text(content: Any) -> tuple[str | None, str]:
    if isinstance(content, str):
        if "</think>" in content:
            return content.split("</think>")[0].split("<think>")[-1], content.split("</think>")[-1]
        return None, content
    thinking = [str(p.get("thinking", "")) for p in parts(content) if p.get("type") == "thinking"]
    body = "".join(str(p.get("text", "")) for p in parts(content) if p.get("type") == "text")
    return ("".join(thinking) if thinking else None), body


def _sort_tool_results(messages: Sequence[Message]) -> list[Message]:
    """Order each run of tool results like the preceding assistant's calls, when ids allow it."""
    out = list(messages)
    i = 0
    while i < len(out):
        if out[i].get("role") != "tool":
            i += 1
            continue
        j = i
        while j < len(out) and out[j].get("role") == "tool":
            j += 1
        prev = out[i - 1] if i > 0 else None
        calls = (prev or {}).get("tool_calls") if prev and prev.get("role") == "assistant" else None
        if calls:
            call_ids = [c.get("id") if isinstance(c, dict) else None for c in calls]
            result_ids = [m.get("tool_call_id") for m in out[i:j]]
            if (
                all(call_ids)
                and all(result_ids)
                and len(set(call_ids)) == len(call_ids)
                and len(set(result_ids)) == len(result_ids)
                and set(result_ids) <= set(call_ids)
            ):
                order = {cid: k for k, cid in enumerate(call_ids)}
                out[i:j] = sorted(out[i:j], key=lambda m: order[m["tool_call_id"]])
        i = j
    return out


class Glm5_3Renderer(Renderer):
    def __init__(
        self,
        tokenizer: Any,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        effort: str = "Max",
        strip_thinking_from_history: bool = False,
    ) -> None:
        super().__init__(
            tokenizer, name, options, strip_thinking_from_history=strip_thinking_from_history
        )
        self.effort = effort
        self.has_extension_property = not strip_thinking_from_history  # as tinker

    def bos(self) -> Chunk | None:
        return text(_PREFIX + self.effort)

    def normalize(self, messages: Sequence[Message]) -> Sequence[Message]:
        return _sort_tool_results(messages)

    def tool_prefix(self, tools: list[ToolSpec], system_prompt: str | None) -> list[Message]:
        # Two system turns: the tools text, then the system prompt as its own <|system|> turn.
        prefix: list[Message] = [{"role": "system", "content": glm5_3_text(tools)}]
        if system_prompt:
            prefix.append({"role": "system", "content": system_prompt})
        return prefix

    @staticmethod
    def _terminator(message: Message) -> str:
        return _OBSERVATION if message.get("tool_calls") else _USER

    def _prev_supplied(self, ctx: RenderContext, token: str) -> bool:
        prev = ctx.prev_message
        return (
            prev is not None and prev.get("role") == "assistant" and self._terminator(prev) == token
        )

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        if role == "assistant":
            return self._assistant(message, ctx)
        body = _text_only(message["content"], role)
        if role == "system":
            return RenderedMessage(header=text(_SYSTEM), output=[text(body)])
        if role == "user":
            header = None if self._prev_supplied(ctx, _USER) else text(_USER)
            return RenderedMessage(header=header, output=[text(body)])
        if role == "tool":
            prev_tool = ctx.prev_message is not None and ctx.prev_message.get("role") == "tool"
            skip = prev_tool or self._prev_supplied(ctx, _OBSERVATION)
            return RenderedMessage(
                header=None if skip else text(_OBSERVATION),
                output=[text("<tool_response>" + body + "</tool_response>")],
            )
        raise RendererError(f"{self.name} cannot render role {role!r}", field="role")

    def _assistant(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        reasoning, body = _reasoning_and_text(message["content"])
        keep = not self.strip_thinking_from_history or ctx.idx > ctx.last_user_index
        # The opening <think> lives in the header; the output starts inside the think block.
        out = (reasoning if keep and reasoning is not None else "") + "</think>" + body.strip()
        for call in tool_calls_of(message) or []:
            name, arguments = tool_call_fields(call)
            out += "<tool_call>" + name
            for key, value in parse_arguments(arguments, empty_is_object=True).items():
                v = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                out += f"<arg_key>{key}</arg_key><arg_value>{v}</arg_value>"
            out += "</tool_call>"
        terminator = self._terminator(message)
        stop = None
        if ctx.is_last:
            stop = text(terminator)
        elif (
            ctx.next_message is not None
            and _ROLE_TOKENS.get(ctx.next_message.get("role", "")) == terminator
        ):
            out += terminator
        return RenderedMessage(
            header=text(_ASSISTANT + "<think>"), output=[text(out)], stop_overlap=stop
        )

    def generation_suffix(self, role: str, ctx: RenderContext) -> list[Chunk]:
        if role == "assistant":
            return [text(_ASSISTANT + "<think>")]
        return [text(_ROLE_TOKENS.get(role, f"<|{role}|>"))]

    def required_special_tokens(self) -> list[str]:
        return [_SYSTEM, _USER, _ASSISTANT, _OBSERVATION, "<think>", "</think>", "[gMASK]", "<sop>"]

    def template_constants(self) -> dict[str, Any]:
        return {
            "bos": _PREFIX + self.effort,
            "role_tokens": _ROLE_TOKENS,
            "assistant_header": _ASSISTANT + "<think>",
            "tool_call": "<tool_call>{name}<arg_key>{k}</arg_key><arg_value>{v}</arg_value></tool_call>",
            "tool_response": "<tool_response>{text}</tool_response>",
            "strip_thinking_from_history": self.strip_thinking_from_history,
        }
