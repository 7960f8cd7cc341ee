"""Render a batch of conversations and tokenize all of it with one `encode_batch` per encoding.

Renderers return chunks (text + encoding, or ids). Each text chunk is encoded on its own,
exactly as tinker encodes each chunk separately, but the unique strings of a whole row batch go
to the Rust tokenizer together, and short constant strings (headers, end-of-turn markers) are
remembered across batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from shardprep.encode.backends import Backend, Selection, requested_encoder, select
from shardprep.errors import RowError, ShardprepError
from shardprep.renderers.base import (
    PromptMemo,
    Renderer,
    SupervisedPlan,
    TrainOnWhat,
    plan_prompt,
    plan_supervised,
    zero_prompt_prefix,
)
from shardprep.renderers.chunks import Chunk, Encoding, IdsChunk, TextChunk
from shardprep.renderers.content import Message
from shardprep.tokenizer import LoadedTokenizer

if TYPE_CHECKING:
    from shardprep.encode.special import ContentScreen

_EMPTY = np.empty(0, dtype=np.int32)
_EMPTY.setflags(write=False)


@dataclass(frozen=True, slots=True)
class RenderedExample:
    tokens: np.ndarray  # int32, unshifted and untruncated
    weights: np.ndarray  # float32, one per token


@dataclass(frozen=True, slots=True)
class RenderedBatch:
    """A batch's examples in flat buffers: row i is tokens[offsets[i]:offsets[i+1]] (empty for
    a row in `errors`), with one weight per token. No Python object per token or per row."""

    tokens: np.ndarray  # int32
    weights: np.ndarray  # float32
    offsets: np.ndarray  # int64, rows + 1
    errors: dict[int, RowError]
    # Rows whose message text spells added tokens the renderer encodes as ids: {row: literals}
    # (encode/special.py), whatever the policy did with them.
    special: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def example(self, i: int) -> RenderedExample | RowError:
        if i in self.errors:
            return self.errors[i]
        a, b = self.offsets[i], self.offsets[i + 1]
        return RenderedExample(self.tokens[a:b], self.weights[a:b])

    def rows(self) -> list[RenderedExample | RowError]:
        return [self.example(i) for i in range(len(self))]


class BatchEncoder:
    """Encodes text chunks in bulk; `add_special_tokens=False` always (no post-processor BOS).

    `encoder`: auto (fastokens when its probe ids equal tokenizers'), fastokens or tokenizers;
    None reads $SHARDPREP_ENCODER. `probe`: extra probe texts (the renderer's constants).
    `special_tokens_in_content`: what a row whose message text spells an added token gets
    (keep | escape | refuse, the recipe key; encode/special.py).
    """

    memo_max_chars = 64
    memo_max_entries = 16384

    def __init__(
        self,
        tokenizer: LoadedTokenizer,
        *,
        encoder: str | None = None,
        probe: Sequence[str] = (),
        special_tokens_in_content: str = "keep",
    ) -> None:
        self.tokenizer = tokenizer
        self.special_tokens_in_content = special_tokens_in_content
        self._screen: ContentScreen | None = None
        self._requested = requested_encoder(encoder)  # an unknown name fails here, not later
        self._probe = tuple(probe)
        self._selection: Selection | None = None
        # Short texts' ids across batches (headers, end-of-turn markers), per encoding.
        self._memo: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = ({}, {})

    @property
    def selection(self) -> Selection:
        """The encoder, chosen (and probed) on first use: a build's driver that hands every unit
        to pool workers never loads fastokens itself."""
        if self._selection is None:
            self._selection = select(self.tokenizer, self._requested, self._probe)
        return self._selection

    @property
    def screen(self) -> ContentScreen:
        """The tokenizer's added-token literals and the recipe's policy for them (made once)."""
        if self._screen is None:
            from shardprep.encode.special import ContentScreen

            self._screen = ContentScreen(self.tokenizer, self.special_tokens_in_content)
        return self._screen

    @property
    def backend(self) -> Backend:
        return self.selection.backend

    @property
    def name(self) -> str:
        """The encoder in use: "fastokens" or "tokenizers"."""
        return self.selection.name

    def pool(self) -> ChunkPool:
        """A pool for one batch's chunks (see ChunkPool)."""
        return ChunkPool(self)

    def encode_unique(self, chunks: Iterable[TextChunk]) -> dict[TextChunk, np.ndarray]:
        """Token ids of every distinct text chunk (read-only views into one flat buffer)."""
        pool = self.pool()
        chunks = list(chunks)
        slots = [pool.slot(c) for c in chunks]
        ids, starts, lens = pool.finish()
        ids.setflags(write=False)
        found: dict[TextChunk, np.ndarray] = {}
        for c, k in zip(chunks, slots, strict=True):
            start = int(starts[k])
            found[c] = ids[start : start + int(lens[k])]
        return found

    def encode_chunks(self, chunks: Sequence[Chunk]) -> list[np.ndarray]:
        """Each chunk's ids (one call for the lot)."""
        table = self.encode_unique(c for c in chunks if isinstance(c, TextChunk))
        return [_lookup(table, c) for c in chunks]


class ChunkPool:
    """One batch's chunks as slots in one int32 id pool, encoded with one call per encoding.

    `slot(chunk)` numbers each distinct chunk (a text chunk by its text and encoding; literal ids
    each their own); `finish()` encodes every new text at once and returns (ids, starts, lens)
    with slot k's ids at ids[starts[k] : starts[k] + lens[k]]. Callers keep a slot per chunk and
    gather with numpy, so a chunk costs one dict lookup and one list append in Python. Short
    texts (headers, end-of-turn markers) are remembered across batches by the encoder.
    """

    __slots__ = ("encoder", "index", "todo", "todo_slots", "extra", "extra_slots", "n")

    def __init__(self, encoder: BatchEncoder) -> None:
        self.encoder = encoder
        self.index: tuple[dict[str, int], dict[str, int]] = ({}, {})  # per encoding: text -> slot
        self.todo: tuple[list[str], list[str]] = ([], [])  # texts to encode, per encoding
        self.todo_slots: tuple[list[int], list[int]] = ([], [])
        self.extra: list[np.ndarray] = []  # memoized ids and literal ids
        self.extra_slots: list[int] = []
        self.n = 0

    def slot(self, chunk: Chunk) -> int:
        out: list[int] = []
        self.slots((chunk,), out)
        return out[0]

    def slots(self, chunks: Iterable[Chunk], out: list[int]) -> None:
        """Append the slot of each chunk to `out` (the hot loop: no method call per text chunk,
        known or new)."""
        index, memo, append = self.index, self.encoder._memo, out.append
        for c in chunks:
            if type(c) is not TextChunk:  # literal ids: a slot of their own
                self.extra.append(_lookup({}, c))
                self.extra_slots.append(self.n)
                append(self.n)
                self.n += 1
                continue
            enc, text = c.encoding, c.text
            found = index[enc].get(text)
            if found is not None:
                append(found)
            else:
                k = index[enc][text] = self.n
                self.n += 1
                hit = memo[enc].get(text)
                if hit is not None:
                    self.extra.append(hit)
                    self.extra_slots.append(k)
                elif text:
                    self.todo[enc].append(text)
                    self.todo_slots[enc].append(k)
                else:
                    self.extra.append(_EMPTY)
                    self.extra_slots.append(k)
                append(k)

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids int32, starts int64, lens int64) per slot."""
        starts = np.zeros(self.n, dtype=np.int64)
        lens = np.zeros(self.n, dtype=np.int64)
        pieces: list[np.ndarray] = []
        size = 0
        encoder = self.encoder
        max_chars, max_entries = encoder.memo_max_chars, encoder.memo_max_entries
        for enc in (Encoding.NORMAL, Encoding.ESCAPED):
            pending = self.todo[enc]
            if not pending:
                continue
            ids, offsets = encoder.backend.encode_flat(pending, escaped=enc == Encoding.ESCAPED)
            where = np.asarray(self.todo_slots[enc], dtype=np.int64)
            starts[where] = offsets[:-1] + size
            lens[where] = np.diff(offsets)
            memo = encoder._memo[enc]
            bounds = offsets.tolist()  # one int per text, not per token
            for i, text in enumerate(pending):
                if len(text) <= max_chars:
                    if len(memo) >= max_entries:
                        memo.clear()  # crude bound; constants come back on the next batch
                    # A copy: a view would keep the whole batch's buffer alive.
                    kept = ids[bounds[i] : bounds[i + 1]].copy()
                    kept.setflags(write=False)
                    memo[text] = kept
            pieces.append(ids)
            size += len(ids)
        for k, arr in zip(self.extra_slots, self.extra, strict=True):
            starts[k] = size
            lens[k] = len(arr)
            size += len(arr)
        pieces += self.extra
        pool = np.concatenate(pieces).astype(np.int32, copy=False) if pieces else _EMPTY.copy()
        return pool, starts, lens


def _lookup(table: dict[TextChunk, np.ndarray], chunk: Chunk) -> np.ndarray:
    if isinstance(chunk, IdsChunk):
        return np.asarray(chunk.ids, dtype=np.int32)
    return table[chunk]


def _concat(
    table: dict[TextChunk, np.ndarray], chunks: Sequence[Chunk]
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, per-chunk lengths)."""
    arrays = [_lookup(table, c) for c in chunks]
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    tokens = np.concatenate(arrays) if arrays else _EMPTY.copy()
    return tokens.astype(np.int32, copy=False), lengths


def _row_error(exc: Exception) -> RowError:
    if isinstance(exc, RowError):
        return exc
    return RowError("renderer_error", f"cannot render conversation: {type(exc).__name__}: {exc}")


def _text_chunks(plans: Iterable[Any]) -> Iterable[TextChunk]:
    for plan in plans:
        if isinstance(plan, SupervisedPlan):
            chunks: Iterable[Chunk] = (
                plan.chunks if plan.prompt is None else (*plan.chunks, *plan.prompt)
            )
        elif isinstance(plan, list):
            chunks = plan
        else:
            continue
        for c in chunks:
            if isinstance(c, TextChunk):
                yield c


def _plan_screened(
    plan: Any, conversations: Sequence[Sequence[Message]], encoder: BatchEncoder
) -> tuple[list[Any], dict[int, tuple[str, ...]]]:
    """`_plan_all`, then the encoder's content screen: (plans, {row: literals its text spells}).

    Every plan of every task passes here, so the recipe's `special_tokens_in_content` is applied
    (and counted) in one place."""
    plans = _plan_all(plan, conversations)
    return plans, encoder.screen.screen(plan, conversations, plans)


def _plan_all(plan: Any, conversations: Sequence[Sequence[Message]]) -> list[Any]:
    """plan(messages) per conversation; a row's failure is its RowError, never the batch's."""
    plans: list[Any] = []
    for messages in conversations:
        try:
            plans.append(plan(messages))
        except ShardprepError as exc:
            if not isinstance(exc, RowError):
                raise  # configuration problems (tokenizer, options) are not row problems
            plans.append(exc)
        except Exception as exc:  # a malformed message must not cost the batch
            plans.append(_row_error(exc))
    return plans


def render_supervised_flat(
    renderer: Renderer,
    encoder: BatchEncoder,
    conversations: Sequence[Sequence[Message]],
    train_on: TrainOnWhat,
) -> RenderedBatch:
    """tinker's build_supervised_example for every conversation, as one flat batch.

    Rows in `errors` may still hold tokens in the buffers (a prompt check that failed after
    encoding); they are not examples.
    """
    train_on = TrainOnWhat(train_on)
    prompts: PromptMemo = {}  # the two sides of a DPO pair plan their shared prompt once
    plans, special = _plan_screened(
        lambda m: plan_supervised(renderer, m, train_on, prompts), conversations, encoder
    )
    batch = render_plans_flat(renderer, encoder, plans)
    return replace(batch, special=special) if special else batch


def render_plans_flat(
    renderer: Renderer, encoder: BatchEncoder, plans: Sequence[SupervisedPlan | RowError]
) -> RenderedBatch:
    """Supervised plans -> one flat batch (one encode call per encoding), prompt prefixes zeroed
    per row.

    One pass over the chunks gives each its slot in a ChunkPool; the batch's tokens are then one
    gather from the pool and its weights one repeat: per chunk, Python does a dict lookup and an
    append.
    """
    pool = encoder.pool()
    chunk_slots: list[int] = []
    chunk_weights: list[float] = []
    prompts: dict[int, list[int]] = {}
    row_chunks = np.zeros(len(plans), dtype=np.int64)
    errors: dict[int, RowError] = {}
    for i, plan in enumerate(plans):
        if isinstance(plan, RowError):
            errors[i] = plan
            continue
        pool.slots(plan.chunks, chunk_slots)
        chunk_weights.extend(plan.weights)
        row_chunks[i] = len(plan.chunks)
        if plan.prompt is not None:
            pool.slots(plan.prompt, prompts.setdefault(i, []))
    ids, slot_starts, slot_lens = pool.finish()
    slots = np.asarray(chunk_slots, dtype=np.int64)
    lengths = slot_lens[slots]
    ends = np.zeros(len(slots) + 1, dtype=np.int64)
    np.cumsum(lengths, out=ends[1:])
    gather = np.repeat(slot_starts[slots] - ends[:-1], lengths)
    gather += np.arange(ends[-1], dtype=np.int64)
    tokens = ids[gather]  # a new, writable int32 array
    weights = np.repeat(np.asarray(chunk_weights, dtype=np.float32), lengths)
    offsets = np.zeros(len(plans) + 1, dtype=np.int64)
    offsets[1:] = ends[np.cumsum(row_chunks)]
    for i, prompt_slots in prompts.items():
        a, b = offsets[i], offsets[i + 1]
        prompt = _slot_ids(ids, slot_starts, slot_lens, prompt_slots)
        try:
            zero_prompt_prefix(renderer, tokens[a:b], weights[a:b], prompt)
        except RowError as exc:
            errors[i] = exc
    return RenderedBatch(tokens, weights, offsets, errors)


def _slot_ids(
    ids: np.ndarray, starts: np.ndarray, lens: np.ndarray, slots: Sequence[int]
) -> np.ndarray:
    """The ids of some slots, in order (one row's prompt)."""
    parts = [ids[starts[k] : starts[k] + lens[k]] for k in slots]
    return np.concatenate(parts).astype(np.int32, copy=False) if parts else _EMPTY.copy()


def render_supervised_batch(
    renderer: Renderer,
    encoder: BatchEncoder,
    conversations: Sequence[Sequence[Message]],
    train_on: TrainOnWhat,
) -> list[RenderedExample | RowError]:
    """tinker's build_supervised_example for every conversation; failures are returned per row."""
    return render_supervised_flat(renderer, encoder, conversations, train_on).rows()


@dataclass(frozen=True, slots=True)
class TurnBatch:
    """tinker's build_supervised_examples for a batch of conversations, in flat buffers.

    Example k (of `examples`) belongs to conversation `owner[k]` and ends at its message
    `message_index[k]`. A conversation in `errors` has none of its examples usable (they are in
    `examples.errors` too): tinker raises for the whole conversation.
    """

    examples: RenderedBatch
    owner: np.ndarray  # int64 per example
    message_index: np.ndarray  # int32 per example
    errors: dict[int, RowError]  # conversation -> why it cannot be rendered
    conversations: int
    # Conversations whose message text spells added tokens the renderer encodes as ids.
    special: dict[int, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TurnExample:
    """One example of a conversation's `build_supervised_examples`, with the message it ends at."""

    message_index: int
    example: RenderedExample


def render_turns_flat(
    renderer: Renderer,
    encoder: BatchEncoder,
    conversations: Sequence[Sequence[Message]],
    train_on: TrainOnWhat,
) -> TurnBatch:
    """Every example of every conversation, planned per prefix and encoded in one call.

    Prefixes share their history chunks, so the encoder sees each distinct text once.
    """
    train_on = TrainOnWhat(train_on)
    plans: list[SupervisedPlan | RowError] = []
    owner: list[int] = []
    ends: list[int] = []
    errors: dict[int, RowError] = {}
    special: dict[int, tuple[str, ...]] = {}
    for c, messages in enumerate(conversations):
        [cuts] = _plan_all(lambda m: renderer.example_cuts(m, train_on), [messages])
        if isinstance(cuts, RowError):
            errors[c] = cuts
            continue
        for cut in cuts:
            [plan], found = _plan_screened(
                lambda m, cut=cut: renderer.plan_cut(m, cut), [messages], encoder
            )
            if found:
                special[c] = tuple(sorted({*special.get(c, ()), *found[0]}))
            plans.append(plan)
            owner.append(c)
            ends.append(cut.end)
            if isinstance(plan, RowError):
                errors[c] = plan
                break  # the row is refused: its later turns need no work
    batch = render_plans_flat(renderer, encoder, plans)
    for k, err in batch.errors.items():
        errors.setdefault(owner[k], err)  # a turn that fails its prompt check fails the row
    dead = {k: errors[c] for k, c in enumerate(owner) if c in errors}
    return TurnBatch(
        RenderedBatch(batch.tokens, batch.weights, batch.offsets, {**batch.errors, **dead}),
        np.asarray(owner, dtype=np.int64),
        np.asarray(ends, dtype=np.int32) - 1,
        errors,
        len(conversations),
        special,
    )


def render_supervised_examples(
    renderer: Renderer,
    encoder: BatchEncoder,
    conversations: Sequence[Sequence[Message]],
    train_on: TrainOnWhat,
) -> list[list[TurnExample] | RowError]:
    """tinker's build_supervised_examples (plural) per conversation: its examples in order, or
    one RowError when any of them cannot be rendered."""
    turns = render_turns_flat(renderer, encoder, conversations, train_on)
    out: list[list[TurnExample] | RowError] = [[] for _ in conversations]
    for k, c in enumerate(turns.owner.tolist()):
        res = turns.examples.example(k)
        turns_of = out[c]
        if isinstance(turns_of, list) and not isinstance(res, RowError):
            turns_of.append(TurnExample(int(turns.message_index[k]), res))
    for c, err in turns.errors.items():
        out[c] = err
    return out


def render_prompt_batch(
    renderer: Renderer,
    encoder: BatchEncoder,
    conversations: Sequence[Sequence[Message]],
    *,
    special: dict[int, tuple[str, ...]] | None = None,
) -> list[np.ndarray | RowError]:
    """tinker's build_generation_prompt (role assistant, no prefill) for every conversation.

    `special`, when given, receives the rows whose message text spells added tokens."""
    plans, found = _plan_screened(lambda m: plan_prompt(renderer, m), conversations, encoder)
    if special is not None:
        special.update(found)
    table = encoder.encode_unique(_text_chunks(plans))
    return [plan if isinstance(plan, RowError) else _concat(table, plan)[0] for plan in plans]
