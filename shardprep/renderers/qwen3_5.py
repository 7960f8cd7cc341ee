"""Qwen3-VL and Qwen3.5 / Qwen3.8 text rendering (tinker-cookbook's qwen3_vl.py, qwen3_5.py, qwen3_8.py).

Unlike Qwen3, these encode each message body with the normal tokenizer in one chunk (special-token
text in content becomes special tokens), and Qwen3.5/3.8 put the empty think block in the header.
Images are not supported: shardprep's formats produce text and thinking parts only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar, cast

from shardprep.errors import RendererError
from shardprep.renderers.base import RenderContext, RenderedMessage, Renderer
from shardprep.renderers.chunks import Chunk, text
from shardprep.renderers.content import (
    Message,
    has_thinking,
    parts,
    tool_call_arguments,
    tool_call_fields,
    tool_calls_of,
)

# The Qwen3 ChatML markers are the same strings in every Qwen generation.
from shardprep.renderers.qwen3 import (
    _EMPTY_THINK,
    _IM_END,
    _IM_START,
    _TOOL_RESPONSE,
    _tool_call_text,
)
from shardprep.renderers.tools import ToolSpec, qwen3_5_text


def _role_header(role: str, ctx: RenderContext) -> str:
    nl = "\n" if ctx.idx > 0 else ""
    return f"{nl}{_IM_START}{'user' if role == 'tool' else role}\n"


def _text_parts_only(part: dict[str, Any]) -> str:
    kind = part.get("type")
    if kind == "text":
        return str(part.get("text", ""))
    raise RendererError(f"content part of type {kind!r} is not supported here", field="content")


def parse_arguments(arguments: str, *, empty_is_object: bool = False) -> dict[str, Any]:
    """A tool call's arguments as a JSON object; `empty_is_object`: `""` means `{}` (Qwen3.5, GLM)."""
    if empty_is_object and not arguments:
        return {}
    args = tool_call_arguments(arguments)
    if not isinstance(args, dict):
        raise RendererError("tool call arguments must be a JSON object", field="tool_calls")
    return args


class Qwen3VLRenderer(Renderer):
    """`qwen3_vl` / `qwen3_vl_instruct` (identical output in tinker 0.6.1), text content only."""

    def _thinking_text(self, thinking: str) -> str:
        return f"<think>{thinking}</think>"

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        drop = self.strip_thinking_from_history and role == "assistant" and not ctx.is_last
        body = ""
        for part in parts(message["content"]):
            if part.get("type") == "thinking":
                if not drop:
                    body += self._thinking_text(str(part.get("thinking", "")))
            else:
                body += _text_parts_only(part)
        if role == "tool":
            body = _TOOL_RESPONSE[0] + body + _TOOL_RESPONSE[1]
        calls = tool_calls_of(message)
        if calls is not None:
            # The VL template always writes the newline, even with empty content.
            body += "\n" + "\n".join(_tool_call_text(c) for c in calls)
        return RenderedMessage(header=text(_role_header(role, ctx)), output=[text(body + _IM_END)])

    def end_of_turn_tokens(self) -> list[str]:
        return [_IM_END]

    def required_special_tokens(self) -> list[str]:
        return [_IM_START, _IM_END]

    def template_constants(self) -> dict[str, Any]:
        return {
            "header": "{nl}" + _IM_START + "{role}\n",
            "end": _IM_END,
            "thinking": self._thinking_text("{thinking}"),
            "tool_response": list(_TOOL_RESPONSE),
            "tool_call": _tool_call_text(
                {"function": {"name": "{name}", "arguments": '{"{k}": "{v}"}'}}
            ),
            "strip_thinking_from_history": self.strip_thinking_from_history,
        }


def _trim_parts(content: Any) -> list[dict[str, Any]]:
    """`content|trim` over the message's whole visible text (thinking parts skipped).

    A string is stripped. For a list, leading whitespace is stripped from the text parts in
    order until one keeps some text, trailing whitespace from the end likewise (so `["Hi ", ""]`
    becomes `["Hi", ""]`); a part that is neither text nor thinking stops the walk.
    """
    if isinstance(content, str):
        return [{"type": "text", "text": content.strip()}]
    items = [dict(p) for p in parts(content)]
    visible = [i for i, p in enumerate(items) if p.get("type") != "thinking"]
    for order, strip in ((visible, str.lstrip), (visible[::-1], str.rstrip)):
        for i in order:
            if items[i].get("type") != "text":
                break
            items[i]["text"] = strip(str(items[i].get("text", "")))
            if items[i]["text"]:
                break
    return items


class Qwen3_5Renderer(Qwen3VLRenderer):
    """`qwen3_5` (+ `_disable_thinking`, `_preserve_thinking`)."""

    # Suffix after `<|im_start|>assistant\n` in the generation prompt.
    prompt_think: ClassVar[str] = "<think>\n"
    # Empty think block only for assistants after the last user (Qwen3.8 writes it everywhere
    # when history keeps its thinking).
    empty_think_after_last_user_only: ClassVar[bool] = True

    def tool_prefix(self, tools: list[ToolSpec], system_prompt: str | None) -> list[Message]:
        # Qwen3.5/3.8 put the tools text first and the system prompt after it.
        body = qwen3_5_text(tools)
        return [
            {"role": "system", "content": f"{body}\n\n{system_prompt}" if system_prompt else body}
        ]

    # -- pieces a subclass changes ----------------------------------------------------------

    def _thinking_text(self, thinking: str) -> str:
        return f"<think>\n{thinking}\n</think>\n\n"

    def _content_parts(self, content: Any) -> list[dict[str, Any]]:
        return _trim_parts(content)

    def _argument_value(self, value: Any) -> str:
        # Qwen3.5 writes Python's str() for scalars (True, None), JSON for containers.
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value)

    def _drops_thinking(self, message: Message, ctx: RenderContext) -> bool:
        return self.strip_thinking_from_history and not ctx.is_last

    def _wants_empty_block(self, message: Message, ctx: RenderContext) -> bool:
        return ctx.idx > ctx.last_user_index and not has_thinking(message["content"])

    def _tool_response(self, body: str) -> str:
        return _TOOL_RESPONSE[0] + body + _TOOL_RESPONSE[1]

    def _tool_calls_prefix(self, message: Message, visible: bool) -> str:
        return "\n\n" if visible else ""

    def _tool_calls_text(self, calls: list[Any]) -> str:
        return "\n".join(self._tool_call(c) for c in calls)

    def _tool_call(self, call: Any) -> str:
        name, arguments = tool_call_fields(call)
        params = "".join(
            f"<parameter={k}>\n{self._argument_value(v)}\n</parameter>\n"
            for k, v in parse_arguments(arguments, empty_is_object=True).items()
        )
        return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"

    # -- rendering --------------------------------------------------------------------------

    def _prompt_header(self, ctx: RenderContext) -> str:
        return _role_header("assistant", ctx) + self.prompt_think

    def _assistant(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        drop = self._drops_thinking(message, ctx)
        body = ""
        visible = False
        for part in self._content_parts(message["content"]):
            if part.get("type") == "thinking":
                if not drop:
                    body += self._thinking_text(str(part.get("thinking", "")))
            else:
                t = _text_parts_only(part)
                visible = visible or bool(t.strip())
                body += t
        calls = tool_calls_of(message)
        if calls is not None:  # `tool_calls: []` still writes the separator (as the template does)
            body += self._tool_calls_prefix(message, visible)
            body += self._tool_calls_text(calls)
        header = _role_header("assistant", ctx)
        if self._wants_empty_block(message, ctx):
            header += self._empty_block(message, ctx)
        output: list[Chunk] = [text(body + _IM_END)]
        prompt = self._prompt_header(ctx)
        if ctx.is_last and header.startswith(prompt) and header != prompt:
            # tinker splits the last header at the generation prompt, so the rest of the empty
            # think block is trained with the answer.
            output.insert(0, text(header[len(prompt) :]))
            header = prompt
        return RenderedMessage(header=text(header), output=output)

    def _empty_block(self, message: Message, ctx: RenderContext) -> str:
        return _EMPTY_THINK

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        if role == "assistant":
            return self._assistant(message, ctx)
        # Thinking parts of other roles render like an assistant's (tinker strips only assistants').
        body = "".join(
            self._thinking_text(str(p.get("thinking", "")))
            if p.get("type") == "thinking"
            else _text_parts_only(p)
            for p in self._content_parts(message["content"])
        )
        header = _role_header(role, ctx)
        end = _IM_END
        if role == "tool":
            body = self._tool_response(body)
            # Consecutive tool results share one user block.
            if ctx.prev_message is not None and ctx.prev_message.get("role") == "tool":
                header = self._tool_continuation_header()
            if ctx.next_message is not None and ctx.next_message.get("role") == "tool":
                end = ""
        return RenderedMessage(header=text(header), output=[text(body + end)])

    def _tool_continuation_header(self) -> str:
        return "\n"

    def generation_suffix(self, role: str, ctx: RenderContext) -> list[Chunk]:
        if role != "assistant":
            return [text(_role_header(role, ctx))]
        return [text(self._prompt_header(ctx))]

    def required_special_tokens(self) -> list[str]:
        return [_IM_START, _IM_END, "<think>", "</think>"]

    def template_constants(self) -> dict[str, Any]:
        return {
            **super().template_constants(),
            "prompt_think": self.prompt_think,
            "empty_think": _EMPTY_THINK,
            "tool_call": self._tool_call(
                {"function": {"name": "{name}", "arguments": '{"{k}": "{v}"}'}}
            ),
        }


class Qwen3_5DisableThinkingRenderer(Qwen3_5Renderer):
    disables_thinking = True
    prompt_think = _EMPTY_THINK


def _join_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(_text_parts_only(p) for p in parts(content))


class Qwen3_8Renderer(Qwen3_5Renderer):
    """`qwen3_8_*`: history keeps thinking; a reasoning-effort instruction in the system prompt."""

    EFFORT_INSTRUCTIONS: ClassVar[dict[str, str]] = {
        "xhigh": (
            "Reasoning effort is set to xhigh. Please think carefully through the task, validate key "
            "assumptions, consider plausible alternatives, and prioritize correctness, consistency, "
            "and clarity in the final answer."
        ),
        "medium": "",
        "low": (
            "Reasoning effort is set to low. Keep your thinking brief and focused, moving directly "
            "to the conclusion without unnecessary elaboration."
        ),
    }

    def __init__(
        self,
        tokenizer: Any,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        reasoning_effort: str = "medium",
        strip_thinking_from_history: bool = False,
    ) -> None:
        super().__init__(
            tokenizer, name, options, strip_thinking_from_history=strip_thinking_from_history
        )
        self.reasoning_effort = reasoning_effort

    def _instruction(self) -> str:
        return self.EFFORT_INSTRUCTIONS[self.reasoning_effort]

    def normalize(self, messages: Sequence[Message]) -> Sequence[Message]:
        instr = self._instruction()
        if messages and messages[0].get("role") == "system":
            first = cast(Message, dict(messages[0]))
            content = first["content"]
            if isinstance(content, list) and not all(
                isinstance(p, dict) and p.get("type") == "text" for p in content
            ):
                # Not only text (a thinking part): the instruction goes in front as a text part.
                if not instr:
                    return messages
                head = content[0] if content else {}
                if head.get("type") == "text" and str(head.get("text", "")).startswith(instr):
                    return messages  # already there (prompts re-apply this)
                first["content"] = [{"type": "text", "text": f"{instr}\n\n"}, *content]
                return [first, *messages[1:]]
            body = _join_text(content).strip()
            if not body and not instr:
                return list(messages[1:])
            if instr and not (body == instr or body.startswith(f"{instr}\n\n")):
                body = instr + "\n\n" + body if body else instr
            first["content"] = body
            return [first, *messages[1:]]
        if not instr:
            return messages
        system: Message = {"role": "system", "content": instr}
        if any("trainable" in m for m in messages):
            system["trainable"] = False
        return [system, *messages]

    def _argument_value(self, value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    def _drops_thinking(self, message: Message, ctx: RenderContext) -> bool:
        return self.strip_thinking_from_history and ctx.idx <= ctx.last_user_index

    def _wants_empty_block(self, message: Message, ctx: RenderContext) -> bool:
        content = message["content"]
        structured = isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") == "thinking" for p in content
        )
        if structured:
            return False
        return not self.strip_thinking_from_history or ctx.idx > ctx.last_user_index

    def template_constants(self) -> dict[str, Any]:
        return {**super().template_constants(), "instruction": self._instruction()}


class Qwen3_8DisableThinkingRenderer(Qwen3_8Renderer):
    disables_thinking = True
    prompt_think = _EMPTY_THINK
