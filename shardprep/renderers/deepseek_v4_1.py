"""DeepSeek V4.1: `deepseekv4_1` (+ `_low_reasoning`, `_max_reasoning`, `_disable_thinking`,
`_preserve_thinking`), as tinker-cookbook's deepseek_v4_1.py renders it.

Consecutive user/tool messages form one user turn whose whole text sits in the turn's first
message; the others render nothing. Reasoning is kept only after the last user turn (unless
history keeps it), and tool calls are written in DSML.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from shardprep.errors import RendererError
from shardprep.renderers.base import RenderContext, RenderedMessage, Renderer
from shardprep.renderers.chunks import Chunk, text
from shardprep.renderers.content import (
    Message,
    ensure_text,
    parts,
    tool_call_fields,
    tool_calls_of,
)
from shardprep.renderers.tools import ToolSpec, unsupported

_BOS = "<｜begin▁of▁sentence｜>"
_EOS = "<｜end▁of▁sentence｜>"
_SYSTEM = "<｜System｜>"
_USER = "<｜User｜>"
_ASSISTANT = "<｜Assistant｜>"
_EFFORT = "Reasoning Effort: {effort} (range 1-100, the higher the value, the more thorough the reasoning)\n\n"
_DSML = "｜DSML｜"
# Private keys normalize() sets: the merged text of a user turn, and "renders nothing".
_TURN_TEXT = "_dsv4_turn_text"
_TURN_SKIP = "_dsv4_turn_skip"
# Whether an assistant message is after the last user turn (keeps its reasoning).
_AFTER_LAST_TURN = "_dsv4_after_last_turn"
_PRIVATE = (_TURN_TEXT, _TURN_SKIP, _AFTER_LAST_TURN)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in parts(content) if p.get("type") == "text")


def _arguments_dict(arguments: str) -> dict[str, Any]:
    """Tool-call arguments as DSML parameters: a JSON object (also when encoded twice) gives its
    keys; anything else (an array, a string, a number, text that is not JSON) is one string
    parameter named `arguments` holding the text as given (tinker's V4.1 encoder does the same).
    """
    parsed: Any = arguments
    for _ in range(2):
        if isinstance(parsed, str):
            try:
                parsed = json.loads(parsed)
            except json.JSONDecodeError:
                break
    return parsed if isinstance(parsed, dict) else {"arguments": arguments}


def _is_user_turn(message: Message | dict[str, Any], idx: int) -> bool:
    role = message.get("role")
    return role in ("user", "tool") or (role == "system" and idx > 0)


def _merge_turns(messages: Sequence[Message]) -> list[Message]:
    # Recomputed from scratch each time (private keys dropped), so re-applying it to a prefix,
    # as generation prompts do, marks that prefix's own last turn.
    # Plain dicts while private keys are added; handed back as messages that carry them.
    out: list[dict[str, Any]] = [
        {k: v for k, v in m.items() if k not in _PRIVATE} for m in messages
    ]
    i = 0
    # Tool results sort by the calls of the latest message that made any (tinker's `call_order`),
    # not only an assistant right before the turn.
    order: dict[Any, int] = {}
    while i < len(out):
        if out[i].get("role") not in ("user", "tool"):
            if calls := out[i].get("tool_calls"):
                order = {c.get("id"): k for k, c in enumerate(calls) if c.get("id")}
            i += 1
            continue
        j = i
        while j < len(out) and out[j].get("role") in ("user", "tool"):
            j += 1
        turn = out[i:j]
        tool_slots = [k for k, m in enumerate(turn) if m.get("role") == "tool"]
        tools = sorted(
            (turn[k] for k in tool_slots), key=lambda m: order.get(m.get("tool_call_id"), 0)
        )
        # Only the text is sorted: each slot keeps its own message (its `trainable` flag), so the
        # turn's text goes out under the flag of the turn's first message as given (tinker's).
        ordered = list(turn)
        for slot, message in zip(tool_slots, tools, strict=True):
            ordered[slot] = message
        # User and tool content is one text (a string or exactly one text part), as tinker requires.
        pieces = [
            f"<tool_result>{ensure_text(m['content'])}</tool_result>"
            if m.get("role") == "tool"
            else ensure_text(m["content"])
            for m in ordered
        ]
        out[i][_TURN_TEXT] = "\n\n".join(pieces)
        for k in range(i + 1, j):
            out[k][_TURN_SKIP] = True
        i = j
    last_turn = max((k for k, m in enumerate(out) if _is_user_turn(m, k)), default=-1)
    for k in range(last_turn + 1, len(out)):
        if out[k].get("role") == "assistant":
            out[k][_AFTER_LAST_TURN] = True
    return cast(list[Message], out)


class DeepSeekV4_1Renderer(Renderer):
    def __init__(
        self,
        tokenizer: Any,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        reasoning_effort: int | None = 75,
        strip_thinking_from_history: bool = True,
    ) -> None:
        super().__init__(
            tokenizer, name, options, strip_thinking_from_history=strip_thinking_from_history
        )
        self.reasoning_effort = reasoning_effort
        # tinker: only thinking mode with reasoning stripped from history lacks the property.
        self.has_extension_property = not (self.thinking and strip_thinking_from_history)

    @property
    def thinking(self) -> bool:
        return self.reasoning_effort is not None

    def bos(self) -> Chunk | None:
        return text(_BOS)

    def normalize(self, messages: Sequence[Message]) -> Sequence[Message]:
        for i, m in enumerate(messages):
            if m.get("role") == "tool_declare":
                raise RendererError(
                    f"{self.name}: tool declarations must come from the `tools` column, "
                    f"not a tool_declare message (found one at {i})",
                    field="messages",
                )
        return _merge_turns(messages)

    def tool_prefix(self, tools: list[ToolSpec], system_prompt: str | None) -> list[Message]:
        # tinker's prefix is [system?, tool_declare(JSON)] (see tools.deepseek_v4_1_json), but
        # its normalization folds the declaration into the system turn with a DSML template
        # whose text is not part of our reference, so a render here could not be exact.
        raise unsupported(
            self.name,
            "does not support tool declarations yet: DeepSeek V4.1 folds them into the system "
            "prompt with a template shardprep does not reproduce; set `tools: ignore` to train "
            "without them",
        )

    def assistant_turn_start(self, messages: Sequence[Message]) -> int:
        for i in range(len(messages) - 1, -1, -1):
            role = messages[i].get("role")
            if role == "user" or (role == "system" and i > 0):
                return i + 1
        return 0

    def _opening(self, ctx: RenderContext, message: Message) -> str:
        if ctx.idx != 0:
            return ""
        if self.thinking:
            return _SYSTEM + _EFFORT.format(effort=self.reasoning_effort)
        return _SYSTEM if message.get("role") == "system" else ""

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        opening = self._opening(ctx, message)
        if cast(dict[str, Any], message).get(_TURN_SKIP):
            return RenderedMessage(output=[])
        if role == "system" and ctx.idx == 0:
            return RenderedMessage(
                header=text(opening), output=[text(ensure_text(message["content"]))]
            )
        if role == "system":
            return RenderedMessage(
                header=text(_SYSTEM), output=[text(ensure_text(message["content"]))]
            )
        if role in ("user", "tool"):
            body = str(cast(dict[str, Any], message).get(_TURN_TEXT) or _text(message["content"]))
            return RenderedMessage(header=text(opening + _USER), output=[text(body)])
        if role != "assistant":
            raise RendererError(f"{self.name} cannot render role {role!r}", field="role")
        return self._assistant(message, ctx, opening)

    def _assistant(self, message: Message, ctx: RenderContext, opening: str) -> RenderedMessage:
        keeps = self.thinking and (
            not self.strip_thinking_from_history
            or bool(cast(dict[str, Any], message).get(_AFTER_LAST_TURN))
        )
        prev = ctx.prev_message
        after_user = prev is not None and _is_user_turn(prev, ctx.idx - 1)
        header = opening
        if after_user:
            header += _ASSISTANT + ("<think>" if keeps else "</think>")
        content = message["content"]
        reasoning = (
            ""
            if isinstance(content, str)
            else "".join(
                str(p.get("thinking", "")) for p in parts(content) if p.get("type") == "thinking"
            )
        )
        body = (reasoning + "</think>" if keeps else "") + _text(content)
        calls = tool_calls_of(message)
        if calls:
            body += self._dsml(calls)
        return RenderedMessage(header=text(header) if header else None, output=[text(body + _EOS)])

    def generation_suffix(self, role: str, ctx: RenderContext) -> list[Chunk]:
        # The message being prompted for is after every user turn, so it keeps its reasoning.
        empty = cast(Message, {"role": role, "content": "", _AFTER_LAST_TURN: True})
        header = self.render_message(empty, ctx).header
        return [header] if header is not None else []

    @staticmethod
    def _dsml(calls: list[Any]) -> str:
        invokes = []
        for call in calls:
            name, arguments = tool_call_fields(call)
            params = []
            for key, value in _arguments_dict(arguments).items():
                is_str = isinstance(value, str)
                v = value if is_str else json.dumps(value, ensure_ascii=False)
                params.append(
                    f'<{_DSML} parameter name="{key}" string="{"true" if is_str else "false"}">'
                    f"{v}</{_DSML} parameter>"
                )
            invokes.append(
                f'<{_DSML} invoke name="{name}">\n' + "\n".join(params) + f"\n</{_DSML} invoke>"
            )
        return f"\n\n<{_DSML} calls>\n" + "\n".join(invokes) + f"\n</{_DSML} calls>"

    def end_of_turn_tokens(self) -> list[str]:
        return [_EOS]

    def required_special_tokens(self) -> list[str]:
        return [_BOS, _EOS, _SYSTEM, _USER, _ASSISTANT]

    def template_constants(self) -> dict[str, Any]:
        return {
            "bos": _BOS,
            "eos": _EOS,
            "system": _SYSTEM,
            "user": _USER,
            "assistant": _ASSISTANT,
            "effort": _EFFORT,
            "reasoning_effort": self.reasoning_effort,
            "dsml": self._dsml([{"function": {"name": "{name}", "arguments": '{"{k}": "{v}"}'}}]),
            "strip_thinking_from_history": self.strip_thinking_from_history,
            # Output-changing fixes of this renderer alone (fingerprints of older builds differ):
            # 2 = tool results sorted in text only, by the latest calls (tinker's call_order).
            "revision": 2,
        }
