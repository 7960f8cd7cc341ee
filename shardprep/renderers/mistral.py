"""`mistral` (v3 tokenizer, Mistral-7B-Instruct-v0.3) and `mistral_tekken` (Mistral-NeMo).

Text identical to the chat_template mistral-common generates for these tokenizers (checked in
tests against the template itself): system messages are merged and written into the *last* user
turn, consecutive same-role messages are merged, tool calls and results are JSON with 9-character
ids. Each message is one output chunk; assistant content and its `</s>` are what gets trained.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from shardprep.errors import RendererError
from shardprep.renderers.base import RenderContext, RenderedMessage, Renderer
from shardprep.renderers.chunks import Chunk, text
from shardprep.renderers.content import Message, parts, tool_call_fields, tool_calls_of

_BOS = "<s>"
_EOS = "</s>"
# The merged system prompt, kept on the message it is written into, so that normalizing an
# already-normalized prefix (generation prompts do) finds it again.
_SYSTEM_KEY = "_mistral_system"


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    out = []
    for part in parts(content):
        if part.get("type") != "text":
            raise RendererError(f"Only text chunks are supported in {where}", field="content")
        out.append(str(part.get("text", "")))
    return "".join(out)


def _merge(messages: Sequence[Message]) -> tuple[list[Message], str]:
    """(messages without system ones, consecutive same-role ones merged; the system prompt)."""
    system: list[str] = []
    rest: list[Message] = []
    for original in messages:
        # Internal keys (the merged system text) ride on the message dicts between passes.
        raw = cast(dict[str, Any], original)
        if _SYSTEM_KEY in raw:
            system.append(raw[_SYSTEM_KEY])
        m = cast(Message, {k: v for k, v in raw.items() if k != _SYSTEM_KEY})
        if m.get("role") == "system":
            system.append(_text(m["content"], "system message content"))
        else:
            rest.append(m)
    merged: list[Message] = []
    for m in rest:
        prev = merged[-1] if merged else None
        if prev is None or m.get("role") != prev.get("role") or m.get("role") == "tool":
            merged.append(m)
            continue
        joined = cast(dict[str, Any], dict(prev))
        joined["content"] = (
            _text(prev["content"], "content") + "\n\n" + _text(m["content"], "content")
        )
        calls = list(prev.get("tool_calls") or []) + list(m.get("tool_calls") or [])
        if calls:
            joined["tool_calls"] = calls
        merged[-1] = cast(Message, joined)
    return merged, "\n\n".join(system)


def _tool_content(content: str) -> Any:
    """The template's int/float parse: a number when the text is exactly that number."""
    try:
        as_int = int(content)
        if str(as_int) == content:
            return as_int
    except ValueError:
        pass
    try:
        as_float = float(content)
        if str(as_float) == content:
            return as_float
    except ValueError:
        pass
    return content


class MistralRenderer(Renderer):
    tekken = False
    # No reasoning to drop: history renders as the produced turn did (not a tinker renderer).
    has_extension_property = True

    def bos(self) -> Chunk | None:
        return text(_BOS)

    def normalize(self, messages: Sequence[Message]) -> Sequence[Message]:
        merged, system = _merge(messages)
        if merged and merged[0].get("role") != "user":
            raise RendererError(
                f"Conversation must start with a user message, got {merged[0].get('role')}.",
                field="messages",
            )
        allowed = {
            "user": ("assistant", "user"),
            "assistant": ("assistant", "user", "tool"),
            "tool": ("assistant", "tool", "user"),
        }
        for prev, cur in zip(merged, merged[1:], strict=False):
            if cur.get("role") not in allowed.get(prev.get("role", ""), ()):
                raise RendererError(
                    f"Unexpected role {cur.get('role')!r} after role {prev.get('role')!r}",
                    field="messages",
                )
        last_user = max((i for i, m in enumerate(merged) if m.get("role") == "user"), default=-1)
        if system and last_user >= 0:
            merged[last_user] = cast(Message, {**merged[last_user], _SYSTEM_KEY: system})
        return merged

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        sp = "" if self.tekken else " "
        if role == "user":
            system = cast(dict[str, Any], message).get(_SYSTEM_KEY)
            body = f"[INST]{sp}" + (system + "\n\n" if system else "")
            body += _text(message["content"], "user message content") + "[/INST]"
            return RenderedMessage(output=[text(body)])
        if role == "assistant":
            return RenderedMessage(output=[text(self._assistant(message, ctx) + _EOS)])
        if role == "tool":
            return RenderedMessage(output=[text(self._tool(message))])
        raise RendererError(
            f"Only user, assistant and tool roles are supported, got {role}.", field="role"
        )

    def generation_suffix(self, role: str, ctx: RenderContext) -> list[Chunk]:
        return []  # the prompt ends with `[/INST]` (or a tool result); no assistant header

    def _assistant(self, message: Message, ctx: RenderContext) -> str:
        content = _text(message["content"], "assistant message contents")
        calls = tool_calls_of(message) or []
        if not content and not calls:
            raise RendererError(
                "Assistant message must have a string or a list of chunks in content or a list "
                "of tool calls.",
                field="content",
            )
        if self.tekken:
            return content + (f"[TOOL_CALLS][{self._calls(calls)}]" if calls else "")
        if content and calls:
            raise RendererError("Assistant message cannot have both content and tool calls.")
        if content:
            # The v3 template puts a space before an answer that follows a user turn or a tool result.
            prev = ctx.prev_message.get("role") if ctx.prev_message else None
            return (" " if prev in ("user", "tool") else "") + content
        return f"[TOOL_CALLS] [{self._calls(calls)}]"

    @staticmethod
    def _calls(calls: list[Any]) -> str:
        out = []
        for call in calls:
            name, arguments = tool_call_fields(call)
            call_id = call.get("id")
            if not isinstance(call_id, str) or len(call_id) != 9:
                raise RendererError(
                    "Tool call must have an id of 9 characters or numbers.", field="tool_calls"
                )
            out.append(f'{{"name": "{name}", "arguments": {arguments or "{}"}, "id": "{call_id}"}}')
        return ", ".join(out)

    def _tool(self, message: Message) -> str:
        call_id = message.get("call_id") or message.get("tool_call_id")
        if not isinstance(call_id, str) or len(call_id) != 9:
            raise RendererError(
                "Tool message must have a call_id or tool_call_id of 9 characters or numbers.",
                field="tool_call_id",
            )
        content = _tool_content(_text(message["content"], "tool message content"))
        payload = json.dumps({"content": content, "call_id": call_id}, ensure_ascii=False)
        sp = "" if self.tekken else " "
        return f"[TOOL_RESULTS]{sp}{payload}[/TOOL_RESULTS]"

    def end_of_turn_tokens(self) -> list[str]:
        return [_EOS]

    def required_special_tokens(self) -> list[str]:
        return [
            _BOS,
            _EOS,
            "[INST]",
            "[/INST]",
            "[TOOL_CALLS]",
            "[TOOL_RESULTS]",
            "[/TOOL_RESULTS]",
        ]

    def template_constants(self) -> dict[str, Any]:
        sp = "" if self.tekken else " "
        return {
            "bos": _BOS,
            "eos": _EOS,
            "user": f"[INST]{sp}{{system}}\n\n{{text}}[/INST]",
            "tool_calls": f"[TOOL_CALLS]{sp}[{{calls}}]",
            "tool_call": '{"name": "{name}", "arguments": {arguments}, "id": "{id}"}',
            "tool_result": f"[TOOL_RESULTS]{sp}{{json}}[/TOOL_RESULTS]",
            "tekken": self.tekken,
        }


class MistralTekkenRenderer(MistralRenderer):
    tekken = True
