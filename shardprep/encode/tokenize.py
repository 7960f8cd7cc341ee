"""Render a batch of conversations and tokenize all of it with one `encode_batch` per encoding.

Renderers return chunks (text + encoding, or ids). Each text chunk is encoded on its own,
exactly as tinker encodes each chunk separately, but the unique strings of a whole row batch go
to the Rust tokenizer together, and short constant strings (headers, end-of-turn markers) are
remembered across batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shardprep.encode.backends import Backend, Selection, requested_encoder, select
from shardprep.errors import RowError, ShardprepError
from shardprep.renderers.base import (
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

_EMPTY = np.empty(0, dtype=np.int32)
_EMPTY.setflags(write=False)

# text -> (start, length) in a batch's id pool
Where = dict[str, tuple[int, int]]


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
    """

    memo_max_chars = 64
    memo_max_entries = 16384

    def __init__(
        self, tokenizer: LoadedTokenizer, *, encoder: str | None = None, probe: Sequence[str] = ()
    ) -> None:
        self.tokenizer = tokenizer
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
    def backend(self) -> Backend:
        return self.selection.backend

    @property
    def name(self) -> str:
        """The encoder in use: "fastokens" or "tokenizers"."""
        return self.selection.name

    def locate(self, chunks: Iterable[TextChunk]) -> tuple[np.ndarray, tuple[Where, Where]]:
        """Every distinct text chunk's ids as (start, length) in one int32 pool.

        Returns (pool, (plain, escaped)), each a dict text -> (start, length). Dicts keyed by
        the text (whose hash Python caches) per encoding keep this loop free of Python-level
        hashing; memoized constants are copied into the pool, new texts encoded in one call
        per encoding.
        """
        where: tuple[Where, Where] = ({}, {})
        todo: tuple[list[str], list[str]] = ([], [])
        memo = self._memo
        pieces: list[np.ndarray] = []
        size = 0
        for chunk in chunks:
            enc = chunk.encoding
            text = chunk.text
            w = where[enc]
            if text in w:
                continue
            hit = memo[enc].get(text)
            if hit is not None:
                w[text] = (size, len(hit))
                pieces.append(hit)
                size += len(hit)
            elif not text:
                w[text] = (0, 0)
            else:
                w[text] = (-1, 0)  # placeholder, filled below; also dedupes
                todo[enc].append(text)
        max_chars = self.memo_max_chars
        for enc in (Encoding.NORMAL, Encoding.ESCAPED):
            pending = todo[enc]
            if not pending:
                continue
            ids, offsets = self.backend.encode_flat(pending, escaped=enc == Encoding.ESCAPED)
            bounds = offsets.tolist()  # one int per chunk, not per token
            w, m = where[enc], memo[enc]
            for i, text in enumerate(pending):
                start, n = bounds[i], bounds[i + 1] - bounds[i]
                w[text] = (size + start, n)
                if len(text) <= max_chars:
                    if len(m) >= self.memo_max_entries:
                        m.clear()  # crude bound; constants come back on the next batch
                    # A copy: a view would keep the whole batch's buffer alive.
                    kept = ids[start : start + n].copy()
                    kept.setflags(write=False)
                    m[text] = kept
            pieces.append(ids)
            size += len(ids)
        pool = np.concatenate(pieces).astype(np.int32, copy=False) if pieces else _EMPTY
        return pool, where

    def encode_unique(self, chunks: Iterable[TextChunk]) -> dict[TextChunk, np.ndarray]:
        """Token ids of every distinct text chunk (read-only views into one flat buffer)."""
        chunks = list(chunks)
        pool, where = self.locate(chunks)
        pool.setflags(write=False)
        found: dict[TextChunk, np.ndarray] = {}
        for c in chunks:
            start, n = where[c.encoding][c.text]
            found[c] = pool[start : start + n]
        return found

    def encode_chunks(self, chunks: Sequence[Chunk]) -> list[np.ndarray]:
        """Each chunk's ids (one call for the lot)."""
        table = self.encode_unique(c for c in chunks if isinstance(c, TextChunk))
        return [_lookup(table, c) for c in chunks]


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
    plans = _plan_all(lambda m: plan_supervised(renderer, m, train_on), conversations)
    return render_plans_flat(renderer, encoder, plans)


def render_plans_flat(
    renderer: Renderer, encoder: BatchEncoder, plans: Sequence[SupervisedPlan | RowError]
) -> RenderedBatch:
    """Supervised plans -> one flat batch (one encode call), prompt prefixes zeroed per row.

    Each chunk is a (start, length) in the encoder's id pool; the batch's tokens are one gather
    from the pool, its weights one repeat: per chunk, only two list appends run in Python.
    """
    pool, where = encoder.locate(_text_chunks(plans))
    extra: list[np.ndarray] = []  # literal ids chunks, placed after the pool
    extra_size = len(pool)
    starts: list[int] = []
    lens: list[int] = []
    chunk_weights: list[float] = []
    row_chunks = np.zeros(len(plans), dtype=np.int64)
    errors: dict[int, RowError] = {}
    for i, plan in enumerate(plans):
        if isinstance(plan, RowError):
            errors[i] = plan
            continue
        for c in plan.chunks:
            if type(c) is TextChunk:
                start, n = where[c.encoding][c.text]
            else:
                ids = _lookup({}, c)
                start, n = extra_size, len(ids)
                extra.append(ids)
                extra_size += n
            starts.append(start)
            lens.append(n)
        chunk_weights.extend(plan.weights)
        row_chunks[i] = len(plan.chunks)
    if extra:
        pool = np.concatenate([pool, *extra]).astype(np.int32, copy=False)
    lengths = np.asarray(lens, dtype=np.int64)
    ends = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lengths, out=ends[1:])
    gather = np.repeat(np.asarray(starts, dtype=np.int64) - ends[:-1], lengths)
    gather += np.arange(ends[-1], dtype=np.int64)
    tokens = pool[gather]  # a new, writable int32 array
    weights = np.repeat(np.asarray(chunk_weights, dtype=np.float32), lengths)
    offsets = np.zeros(len(plans) + 1, dtype=np.int64)
    offsets[1:] = ends[np.cumsum(row_chunks)]
    for i, plan in enumerate(plans):
        if isinstance(plan, RowError) or plan.prompt is None:
            continue
        a, b = offsets[i], offsets[i + 1]
        prompt = _gather(pool, where, plan.prompt)
        try:
            zero_prompt_prefix(renderer, tokens[a:b], weights[a:b], prompt)
        except RowError as exc:
            errors[i] = exc
    return RenderedBatch(tokens, weights, offsets, errors)


def _gather(pool: np.ndarray, where: tuple[Where, Where], chunks: Sequence[Chunk]) -> np.ndarray:
    """One row's chunks (a prompt) as ids, from the pool and literal ids."""
    parts = []
    for c in chunks:
        if type(c) is TextChunk:
            start, n = where[c.encoding][c.text]
            parts.append(pool[start : start + n])
        else:
            parts.append(_lookup({}, c))
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
    for c, messages in enumerate(conversations):
        [cuts] = _plan_all(lambda m: renderer.example_cuts(m, train_on), [messages])
        if isinstance(cuts, RowError):
            errors[c] = cuts
            continue
        for cut in cuts:
            [plan] = _plan_all(lambda m, cut=cut: renderer.plan_cut(m, cut), [messages])
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
) -> list[np.ndarray | RowError]:
    """tinker's build_generation_prompt (role assistant, no prefill) for every conversation."""
    plans: list[list[Chunk] | RowError] = _plan_all(
        lambda m: plan_prompt(renderer, m), conversations
    )
    table = encoder.encode_unique(_text_chunks(plans))
    return [plan if isinstance(plan, RowError) else _concat(table, plan)[0] for plan in plans]
