"""Renderer base class and tinker-cookbook 0.6.1's chunk algorithm.

`plan_supervised` / `plan_prompt` follow `build_supervised_example` / `build_generation_prompt`
step for step but stop before tokenization: they return chunks, and `encode.tokenize` encodes
the chunks of a whole row batch at once. The one token-level step, prompt-prefix zeroing, is
`zero_prompt_prefix`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # only zero_prompt_prefix needs it, so loading a recipe does not
    import numpy as np

from shardprep.errors import RendererError, ShardprepError, TokenizerError
from shardprep.renderers.chunks import Chunk, text
from shardprep.renderers.content import Message
from shardprep.renderers.tools import ToolSpec, unsupported
from shardprep.tokenizer import LoadedTokenizer

# Bump when the chunk algorithm itself changes in a way that alters output (fingerprints).
ALGORITHM_VERSION = "tinker-cookbook-0.6.1/2"  # /2: the differential fixes of issue 14


class TrainOnWhat(str, Enum):
    LAST_ASSISTANT_MESSAGE = "last_assistant_message"
    LAST_ASSISTANT_TURN = "last_assistant_turn"
    ALL_ASSISTANT_MESSAGES = "all_assistant_messages"
    ALL_MESSAGES = "all_messages"
    ALL_TOKENS = "all_tokens"
    ALL_USER_AND_SYSTEM_MESSAGES = "all_user_and_system_messages"
    CUSTOMIZED = "customized"


@dataclass(slots=True)  # not frozen: one per message, and frozen __init__ costs 3x (never mutated)
class RenderContext:
    idx: int
    is_last: bool
    prev_message: Message | None
    next_message: Message | None
    last_user_index: int
    in_last_assistant_turn: bool


@dataclass(slots=True)
class RenderedMessage:
    output: list[Chunk]
    header: Chunk | None = None
    # Appended only after the last message, with that message's output weight.
    stop_overlap: Chunk | None = None


@dataclass(slots=True)
class SupervisedPlan:
    chunks: list[Chunk]
    weights: list[float]
    # Generation prompt whose token prefix gets weight 0 (LAM/LAT only), else None.
    prompt: list[Chunk] | None = None


@dataclass(frozen=True, slots=True)
class ExampleCut:
    """One example of tinker's `build_supervised_examples`: `messages[:end]` trained with `train_on`.

    The example ends at message `end - 1`, the one it trains (for Kimi's split at user messages,
    the last message before the next user turn).
    """

    end: int
    train_on: TrainOnWhat


# The modes tinker's `build_supervised_examples` can split at assistant messages; any other mode
# weights messages no generation prompt ends before, so there is nowhere to cut (tinker raises).
SPLITTABLE_MODES = frozenset(
    {
        TrainOnWhat.LAST_ASSISTANT_MESSAGE,
        TrainOnWhat.LAST_ASSISTANT_TURN,
        TrainOnWhat.ALL_ASSISTANT_MESSAGES,
    }
)


@dataclass(slots=True)
class _Tokens:
    """Single-id lookup of special tokens, done once per renderer."""

    tokenizer: LoadedTokenizer
    cache: dict[str, int | None] = field(default_factory=dict)

    def single_id(self, token: str) -> int | None:
        if token not in self.cache:
            ids = self.tokenizer.tokenizer.encode(token, add_special_tokens=False).ids
            self.cache[token] = ids[0] if len(ids) == 1 else None
        return self.cache[token]


class Renderer(ABC):
    """One chat template. Subclasses implement `render_message` and declare their constants."""

    disables_thinking: ClassVar[bool] = False
    # tinker's `has_extension_property`: every earlier message renders as history exactly as it
    # did as the produced turn, so one sequence trains every turn in the context it is sampled
    # from. False (tinker's default) when history drops reasoning: then `examples: per_turn`
    # writes one example per trained assistant message. Families whose value depends on their
    # options set it per instance.
    has_extension_property: bool = False
    # Whether `example_cuts` splits every train_on mode (Kimi: at user messages), not just
    # SPLITTABLE_MODES; known per class so a recipe can be checked before any tokenizer loads.
    splits_every_mode: ClassVar[bool] = False
    # Option keys this renderer understands; anything else is refused so a typo is not ignored.
    accepted_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        tokenizer: LoadedTokenizer,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        strip_thinking_from_history: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.name = name
        # tinker's option of the families whose history drops reasoning (their
        # *_preserve_thinking entries pass False); families without reasoning never read it.
        self.strip_thinking_from_history = strip_thinking_from_history
        self.options: dict[str, Any] = dict(options or {})
        unknown = sorted(set(self.options) - self.accepted_options)
        if unknown:
            raise ShardprepError(
                f"renderer {name!r} does not take option(s) {', '.join(unknown)}"
                f" (accepted: {', '.join(sorted(self.accepted_options)) or 'none'})"
            )
        self._tokens = _Tokens(tokenizer)

    # -- hooks -------------------------------------------------------------------------------

    def bos(self) -> Chunk | None:
        return None

    def normalize(self, messages: Sequence[Message]) -> Sequence[Message]:
        """Rewrite the conversation before rendering (must be idempotent: prompts re-apply it)."""
        return messages

    @abstractmethod
    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage: ...

    def generation_suffix(self, role: str, ctx: RenderContext) -> list[Chunk]:
        header = self.render_message({"role": role, "content": ""}, ctx).header
        return [header] if header is not None else []

    def generation_prefill(self, messages: Sequence[Message], prefill: str | None) -> str | None:
        return prefill

    def assistant_turn_start(self, messages: Sequence[Message]) -> int:
        return last_user_index(messages) + 1

    def example_cuts(self, messages: Sequence[Message], train_on: TrainOnWhat) -> list[ExampleCut]:
        """tinker's `build_supervised_examples`, as the prefixes it renders (before any rendering).

        With the extension property: the whole conversation. Without: one example per assistant
        message among the mode's candidates, each `messages[:i+1]` trained as its last message.
        """
        train_on = TrainOnWhat(train_on)
        if self.has_extension_property:
            return [ExampleCut(len(messages), train_on)]
        return assistant_cuts(self, messages, train_on)

    def plan_cut(self, messages: Sequence[Message], cut: ExampleCut) -> SupervisedPlan:
        """The plan of one example of `example_cuts` (hf_template plans a turn its own way)."""
        return plan_supervised(self, messages[: cut.end], cut.train_on)

    def render_conversation(self, messages: Sequence[Message]) -> list[RenderedMessage] | None:
        """All messages at once, for templates that cannot render one message alone (hf_template).

        None (the default) means: call `render_message` per message.
        """
        return None

    def conversation_prompt_suffix(
        self, messages: Sequence[Message], role: str
    ) -> list[Chunk] | None:
        """Generation suffix computed from the whole conversation; None: use `generation_suffix`."""
        return None

    def tool_prefix(self, tools: list[ToolSpec], system_prompt: str | None) -> list[Message]:
        """Messages declaring `tools` (tinker's `create_conversation_prefix_with_tools`).

        They replace the conversation's leading system message, whose text is `system_prompt`.
        Families without a declaration form refuse, per row, so `on_error` decides.
        """
        raise unsupported(
            self.name,
            "does not support tool declarations (the family has no system-prompt form for "
            "them); drop the `tools` column or set `tools: ignore`",
        )

    def declare_tools(
        self, messages: Sequence[Message], tools: list[ToolSpec]
    ) -> list[Message] | None:
        """The conversation with `tools` declared the renderer's own way, or None for tinker's
        way (`tool_prefix` replacing the leading system message: renderers.tools.with_tool_prefix).
        """
        return None

    @abstractmethod
    def template_constants(self) -> dict[str, Any]:
        """Every constant string that decides the output."""

    def required_special_tokens(self) -> list[str]:
        return []

    def end_of_turn_tokens(self) -> list[str]:
        """The special tokens that end a message this renderer writes (mask health checks that
        they are trained); none for templates whose turns end at the next role header."""
        return []

    # -- derived -----------------------------------------------------------------------------

    def template_text(self) -> str:
        return json.dumps(
            {
                "algorithm": ALGORITHM_VERSION,
                # The class, not the registry name: aliases render (and hash) the same.
                "renderer": type(self).__name__,
                "options": self.options,
                "disables_thinking": self.disables_thinking,
                "constants": self.template_constants(),
            },
            sort_keys=True,
            ensure_ascii=False,
        )

    def check_tokenizer(self) -> None:
        for token in self.required_special_tokens():
            if self._tokens.single_id(token) is None:
                raise TokenizerError(
                    f"renderer {self.name!r} needs {token!r} as a single token, but tokenizer "
                    f"{self.tokenizer.source!r} does not have it; point `tokenizer:` at the tokenizer "
                    "of the model this renderer is for (`prep renderers` lists them), or pick the "
                    "renderer that matches this tokenizer"
                )

    def special_id(self, token: str) -> int:
        """Id of a special token, for families that emit literal ids (IdsChunk)."""
        tid = self._tokens.single_id(token)
        if tid is None:
            raise TokenizerError(
                f"renderer {self.name!r}: {token!r} is not a single token in this tokenizer"
            )
        return tid


def last_user_index(messages: Sequence[Message]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return -1


def assistant_cuts(
    renderer: Renderer, messages: Sequence[Message], train_on: TrainOnWhat
) -> list[ExampleCut]:
    """One example per assistant message among the mode's candidates (tinker's split).

    Candidates: last_assistant_message -> the last index; last_assistant_turn -> the turn start
    (on the whole list, as tinker) onwards; all_assistant_messages -> every index.
    """
    n = len(messages)
    if train_on is TrainOnWhat.LAST_ASSISTANT_MESSAGE:
        candidates = range(n - 1, n)
    elif train_on is TrainOnWhat.LAST_ASSISTANT_TURN:
        candidates = range(renderer.assistant_turn_start(messages), n)
    elif train_on is TrainOnWhat.ALL_ASSISTANT_MESSAGES:
        candidates = range(n)
    else:
        # Recipes are checked for this before any row (the sft task's recipe_problems).
        raise ShardprepError(
            f"renderer {renderer.name!r} cannot split train_on {train_on.value!r} into one example "
            "per turn; use last_assistant_message, last_assistant_turn or all_assistant_messages"
        )
    return [
        ExampleCut(i + 1, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
        for i in candidates
        if isinstance(messages[i], dict) and messages[i].get("role") == "assistant"
    ]


# Whether a message's output is trained, per mode (tinker's rule): one lookup per conversation
# instead of a chain of mode tests per message.
_TRAINED: dict[TrainOnWhat, Callable[[Message, RenderContext], bool]] = {
    TrainOnWhat.LAST_ASSISTANT_MESSAGE: lambda m, ctx: ctx.is_last and m.get("role") == "assistant",
    TrainOnWhat.LAST_ASSISTANT_TURN: lambda m, ctx: (
        m.get("role") == "assistant" and ctx.in_last_assistant_turn
    ),
    TrainOnWhat.ALL_ASSISTANT_MESSAGES: lambda m, ctx: m.get("role") == "assistant",
    TrainOnWhat.ALL_MESSAGES: lambda m, ctx: True,
    TrainOnWhat.ALL_TOKENS: lambda m, ctx: True,
    TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES: lambda m, ctx: m.get("role") in ("user", "system"),
    TrainOnWhat.CUSTOMIZED: lambda m, ctx: bool(m.get("trainable", False)),
}


def _contexts(
    messages: Sequence[Message], last_user: int, turn_start: int
) -> Iterator[tuple[Message, RenderContext]]:
    """Each message with its RenderContext."""
    n = len(messages)
    prev = None
    for idx, message in enumerate(messages):
        nxt = messages[idx + 1] if idx + 1 < n else None
        yield message, RenderContext(idx, idx == n - 1, prev, nxt, last_user, idx >= turn_start)
        prev = message


def _check_message(message: Any, idx: int) -> None:
    if (
        not isinstance(message, dict)
        or not isinstance(message.get("role"), str)
        or "content" not in message
    ):
        raise RendererError(
            f"message {idx} must be a dict with 'role' (str) and 'content'", field="messages"
        )


def check_conversation(messages: Sequence[Message], train_on: TrainOnWhat) -> None:
    """Message shape and `trainable` keys, as tinker asserts them before rendering."""
    for idx, message in enumerate(messages):
        _check_message(message, idx)
    customized = train_on is TrainOnWhat.CUSTOMIZED
    for idx, message in enumerate(messages):
        if ("trainable" in message) != customized:
            raise RendererError(
                "with train_on 'customized' every message needs a 'trainable' key"
                if customized
                else f"message {idx} has a 'trainable' key, which only train_on 'customized' allows",
                field="trainable",
            )


# A batch's generation prompts by the identity of their messages: (the messages, kept alive so
# that no id is reused while the memo lives; the prompt's chunks).
PromptMemo = dict[tuple[int, ...], tuple[Sequence[Message], list[Chunk]]]


def plan_supervised(
    renderer: Renderer,
    messages: Sequence[Message],
    train_on: TrainOnWhat,
    prompts: PromptMemo | None = None,
) -> SupervisedPlan:
    """tinker's build_supervised_example, up to (not including) tokenization.

    `prompts`: a memo shared by one batch's conversations; a prompt made of the very message
    objects of an earlier one (both sides of a preference pair share theirs) is not planned
    again. Planning is a function of the messages alone, so the chunks are the same."""
    if type(train_on) is not TrainOnWhat:
        train_on = TrainOnWhat(train_on)
    messages = renderer.normalize(messages)
    chunks: list[Chunk] = []
    weights: list[float] = []
    bos = renderer.bos()
    if bos is not None:
        chunks.append(bos)
        weights.append(0.0)  # BOS is never trained, not even with all_tokens
    n = len(messages)
    last_user = last_user_index(messages)
    # tinker computes the turn start on messages[:-1]: [.., user, assistant, user] keeps the
    # middle assistant in the "last turn".
    turn_start = renderer.assistant_turn_start(messages[:-1])
    header_weight = 1.0 if train_on is TrainOnWhat.ALL_TOKENS else 0.0
    check_conversation(messages, train_on)
    whole = renderer.render_conversation(messages)
    render, trained = renderer.render_message, _TRAINED[train_on]
    prev = None
    for idx, message in enumerate(messages):  # _contexts, inline: a frame less per message
        nxt = messages[idx + 1] if idx + 1 < n else None
        ctx = RenderContext(idx, idx == n - 1, prev, nxt, last_user, idx >= turn_start)
        prev = message
        rendered = whole[idx] if whole is not None else render(message, ctx)
        if rendered.header is not None:
            chunks.append(rendered.header)
            weights.append(header_weight)
        w = 1.0 if trained(message, ctx) else 0.0
        output = rendered.output
        chunks += output
        weights += [w] * len(output)
        if ctx.is_last and rendered.stop_overlap is not None:
            chunks.append(rendered.stop_overlap)
            weights.append(w)
    prompt = None
    if train_on in (TrainOnWhat.LAST_ASSISTANT_MESSAGE, TrainOnWhat.LAST_ASSISTANT_TURN):
        boundary = n - 1 if train_on is TrainOnWhat.LAST_ASSISTANT_MESSAGE else last_user + 1
        if 0 <= boundary < n and messages[boundary].get("role") == "assistant":
            head = messages[:boundary]
            if prompts is None:
                prompt = plan_prompt(renderer, head)
            else:
                key = tuple(map(id, head))
                hit = prompts.get(key)
                if hit is None:
                    hit = prompts[key] = (head, plan_prompt(renderer, head))
                prompt = hit[1]
    return SupervisedPlan(chunks, weights, prompt)


def plan_prompt(
    renderer: Renderer,
    messages: Sequence[Message],
    role: str = "assistant",
    prefill: str | None = None,
) -> list[Chunk]:
    """tinker's build_generation_prompt, up to (not including) tokenization."""
    messages = renderer.normalize(messages)
    chunks: list[Chunk] = []
    bos = renderer.bos()
    if bos is not None:
        chunks.append(bos)
    last_user = last_user_index(messages)
    turn_start = renderer.assistant_turn_start(messages)  # on the full list here, unlike supervised
    for idx, message in enumerate(messages):
        _check_message(message, idx)
    whole = renderer.render_conversation(messages)
    for message, ctx in _contexts(messages, last_user, turn_start):
        rendered = whole[ctx.idx] if whole is not None else renderer.render_message(message, ctx)
        if rendered.header is not None:
            chunks.append(rendered.header)
        chunks.extend(rendered.output)
    suffix_ctx = RenderContext(
        idx=len(messages),
        is_last=True,
        prev_message=messages[-1] if messages else None,
        next_message=None,
        last_user_index=last_user,
        in_last_assistant_turn=True,
    )
    suffix = renderer.conversation_prompt_suffix(messages, role)
    chunks.extend(suffix if suffix is not None else renderer.generation_suffix(role, suffix_ctx))
    fill = renderer.generation_prefill(messages, prefill)
    if fill:
        chunks.append(text(fill))
    return chunks


def zero_prompt_prefix(
    renderer: Renderer, tokens: np.ndarray, weights: np.ndarray, prompt: np.ndarray
) -> None:
    """Zero the weights of the generation prompt's tokens when the example starts with them.

    This removes prefills (an empty think block, `<think>`) from the trained part, as tinker's
    `_train_after_the_generation_prompt` does; only weights change, never tokens.
    """
    import numpy as np

    k = len(prompt)
    if k <= len(tokens) and np.array_equal(tokens[:k], prompt):
        weights[:k] = 0.0
    elif renderer.disables_thinking:
        raise RendererError(
            f"renderer {renderer.name!r} has thinking turned off: its generation prompt closes the think "
            "block, which tells the model not to reason. This turn contains reasoning (or does not start "
            "with the closed think block), so training on it would teach the model to reason anyway. Use "
            "the thinking version of this renderer, or remove the reasoning from this turn."
        )
