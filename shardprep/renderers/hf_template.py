"""`hf_template`: any model, through the Jinja `chat_template` in its tokenizer_config.json.

A template renders whole conversations, so loss masks come from rendering prefixes: message i
is the text that `messages[:i+1]` adds to `messages[:i]`; an assistant message's header is what
the generation prompt adds. A template whose prefix renders are not prefixes of each other for a
row (one that rewrites earlier turns when a later one arrives) cannot be masked correctly; that
row is a RowError naming the first differing character, never a silently wrong mask.

`examples: per_turn` needs prefix consistency within one turn only: each example is the render of
`messages[:i+1]`, untrained up to the render of `messages[:i]` with the generation prompt, so a
template that rewrites earlier turns (Qwen3's drops their reasoning) still trains every turn.

A row's tool declarations go to the template itself, as `apply_chat_template(messages,
tools=...)` gives them: OpenAI-style entries `{"type": "function", "function": spec}`, carried on
the conversation's first message (`TOOLS_KEY`, never shown to the template as a message key) and
passed to every render of that conversation but the empty one (what a template writes before any
message cannot depend on the declarations it writes with the first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

from shardprep.errors import RendererError, ShardprepError
from shardprep.renderers.base import (
    ExampleCut,
    RenderContext,
    RenderedMessage,
    Renderer,
    SupervisedPlan,
    TrainOnWhat,
    assistant_cuts,
    check_conversation,
)
from shardprep.renderers.chunks import Chunk, TextChunk, text
from shardprep.renderers.content import Message
from shardprep.renderers.jinja_template import ChatTemplate, template_messages
from shardprep.renderers.tools import ToolSpec, wrapped
from shardprep.tokenizer import LoadedTokenizer

# The key on a conversation's first message that carries the row's declarations to the template.
TOOLS_KEY = "_template_tools"


def tools_of(messages: Sequence[Message]) -> list[dict[str, Any]] | None:
    """The declarations a conversation carries (see `declare_tools`), None when it has none."""
    if not messages or not isinstance(messages[0], dict):
        return None
    tools = messages[0].get(TOOLS_KEY)
    return cast("list[dict[str, Any]] | None", tools)


def untooled(messages: Sequence[Message]) -> list[Message]:
    """The messages without the declarations key (templates see the tools as `tools`)."""
    return [
        cast(Message, {k: v for k, v in m.items() if k != TOOLS_KEY})
        if isinstance(m, dict) and TOOLS_KEY in m
        else m
        for m in messages
    ]


def first_difference(a: str, b: str) -> int:
    """Index of the first character where `a` and `b` differ (len of the shorter if a prefix)."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class HfTemplateRenderer(Renderer):
    # template_name: which template of a list-form chat_template; template_kwargs: extra
    # variables for the template (e.g. `date_string`, `enable_thinking`), recorded in the manifest.
    accepted_options: ClassVar[frozenset[str]] = frozenset({"template_name", "template_kwargs"})
    # Per row: a conversation that renders at all is prefix-consistent (others are refused), so a
    # single sequence never trains a turn in a context the template would not write.
    has_extension_property = True

    def __init__(
        self, tokenizer: LoadedTokenizer, name: str, options: dict[str, Any] | None = None
    ) -> None:
        super().__init__(tokenizer, name, options)
        kwargs = self.options.get("template_kwargs", {})
        if not isinstance(kwargs, dict):
            raise ShardprepError(f"renderer {name!r}: option template_kwargs must be a mapping")
        self.template_kwargs: dict[str, Any] = dict(kwargs)
        self.template = ChatTemplate.from_config(
            tokenizer.config, str(self.options.get("template_name", "default"))
        )

    def declare_tools(
        self, messages: Sequence[Message], tools: list[ToolSpec]
    ) -> list[Message] | None:
        """The declarations ride on the first message, for the template (not a system prefix)."""
        if not messages:
            return []
        first = cast(Message, {**messages[0], TOOLS_KEY: wrapped(tools)})
        return [first, *messages[1:]]

    def _render(
        self,
        messages: Sequence[Message],
        *,
        prompt: bool = False,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        if not messages and not prompt:
            try:
                return self.template.render([], **self.template_kwargs)
            except RendererError:
                return ""  # templates may refuse an empty conversation; it renders nothing
        return self.template.render(
            template_messages(untooled(messages)),
            add_generation_prompt=prompt,
            tools=tools,
            **self.template_kwargs,
        )

    def _extends(self, longer: str, shorter: str, what: str) -> None:
        if not longer.startswith(shorter):
            pos = first_difference(longer, shorter)
            raise RendererError(
                f"chat template is not prefix-consistent here ({what}): first difference at "
                f"character {pos}: {shorter[pos : pos + 40]!r} became {longer[pos : pos + 40]!r}",
                field="messages",
            )

    def render_conversation(self, messages: Sequence[Message]) -> list[RenderedMessage] | None:
        out: list[RenderedMessage] = []
        tools = tools_of(messages)
        before = self._render([])
        for i, message in enumerate(messages):
            after = self._render(messages[: i + 1], tools=tools)
            self._extends(after, before, f"adding message {i}")
            header: Chunk | None = None
            body = after[len(before) :]
            if message.get("role") == "assistant":
                try:
                    prompt = self._render(messages[:i], prompt=True, tools=tools)
                except RendererError as exc:
                    # The conversation renders, but its prefix cannot be prompted (a template
                    # that reads messages[0] fails on a leading assistant): no header is known.
                    raise RendererError(
                        f"chat template cannot prompt for message {i}, so its header cannot be "
                        f"told from its text ({exc.message})",
                        field="messages",
                    ) from exc
                if prompt.startswith(before) and after.startswith(prompt):
                    header = text(prompt[len(before) :])
                    body = after[len(prompt) :]
            if i == 0:
                # What the template writes before any message (BOS, a default system block)
                # goes with the first header: never trained, except under all_tokens.
                lead = before
                bos = self.template.bos_token
                if header is None and bos and not lead and body.startswith(bos):
                    lead, body = bos, body[len(bos) :]
                if lead:
                    header = text(lead + (header.text if isinstance(header, TextChunk) else ""))
            out.append(RenderedMessage(header=header, output=[text(body)]))
            before = after
        pieces: list[str] = []
        for r in out:
            pieces += [c.text for c in (r.header, *r.output) if isinstance(c, TextChunk)]
        self._same_tokens(pieces, "between messages")
        return out

    def _same_tokens(self, pieces: list[str], what: str) -> None:
        """Refuse unless encoding `pieces` one by one gives the tokens of their joined text.

        Each chunk is encoded on its own, where `apply_chat_template` encodes the whole text: a
        token that would span two chunks (`\n` + `\n` against `\n\n`) makes the two differ,
        and no loss mask could split that token between two messages.
        """
        backend = self.tokenizer.tokenizer
        encoded = backend.encode_batch([*pieces, "".join(pieces)], add_special_tokens=False)
        whole = encoded[-1].ids
        pos = 0
        for k, enc in enumerate(encoded[:-1]):
            ids = enc.ids
            if whole[pos : pos + len(ids)] != ids:
                raise RendererError(
                    f"chat template is not prefix-consistent in tokens ({what}): the text of chunk {k} "
                    f"({pieces[k][:40]!r}) does not encode alone as it does inside the whole "
                    "conversation, so no loss mask is exact for this row",
                    field="messages",
                )
            pos += len(ids)
        if pos != len(whole):
            raise RendererError(
                f"chat template is not prefix-consistent in tokens ({what}): the chunks encode to "
                f"{pos} tokens, the whole text to {len(whole)}",
                field="messages",
            )

    def conversation_prompt_suffix(self, messages: Sequence[Message], role: str) -> list[Chunk]:
        if role != "assistant":
            raise RendererError("hf_template can only prompt for an assistant message")
        if not messages:
            # As apply_chat_template: there is nothing to prompt from.
            raise RendererError(
                "chat template cannot render an empty conversation", field="messages"
            )
        tools = tools_of(messages)
        before = self._render(messages, tools=tools)
        prompt = self._render(messages, prompt=True, tools=tools)
        self._extends(prompt, before, "adding the generation prompt")
        self._same_tokens([before, prompt[len(before) :]], "before the generation prompt")
        return [text(prompt[len(before) :])]

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        raise RendererError("hf_template renders whole conversations only")

    def example_cuts(self, messages: Sequence[Message], train_on: TrainOnWhat) -> list[ExampleCut]:
        # Always one example per trained assistant message: that is what rescues rows whose
        # template is not prefix-consistent across turns.
        return assistant_cuts(self, messages, TrainOnWhat(train_on))

    def plan_cut(self, messages: Sequence[Message], cut: ExampleCut) -> SupervisedPlan:
        """messages[:end] as the template writes it; trained after its own generation prompt."""
        turn = messages[: cut.end]
        check_conversation(turn, cut.train_on)
        tools = tools_of(messages)
        prompt = self._render(turn[:-1], prompt=True, tools=tools)
        full = self._render(turn, tools=tools)
        self._extends(full, prompt, f"message {cut.end - 1} after its generation prompt")
        return SupervisedPlan([text(prompt), text(full[len(prompt) :])], [0.0, 1.0])

    def render_text(self, messages: Sequence[Message]) -> str:
        """The template's own text for a conversation (what conformance compares against)."""
        return self._render(messages, tools=tools_of(messages))

    def template_constants(self) -> dict[str, Any]:
        return {
            "chat_template": self.template.source,
            "bos_token": self.template.bos_token,
            "eos_token": self.template.eos_token,
        }
