"""Render a batch of conversations and tokenize all of it with one `encode_batch` per encoding.

Renderers return chunks (text + encoding, or ids). Each text chunk is encoded on its own,
exactly as tinker encodes each chunk separately, but the unique strings of a whole row batch go
to the Rust tokenizer together, and short constant strings (headers, end-of-turn markers) are
remembered across batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Tokenizer

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

@contextlib.contextmanager
def _special_tokens_escaped(tokenizer: Tokenizer, escaped: bool) -> Iterator[Tokenizer]:
    """The same tokenizer with special-token text encoded as plain text for the duration.

    Toggling the flag around one batched call costs nothing, where a private copy of a real
    tokenizer costs a second of parsing per process; every encode here runs on one thread.
    """
    if not escaped:
        yield tokenizer
        return
    tokenizer.encode_special_tokens = True
    try:
        yield tokenizer
    finally:
        tokenizer.encode_special_tokens = False


@dataclass(frozen=True, slots=True)
class RenderedExample:
    tokens: np.ndarray  # int32, unshifted and untruncated
    weights: np.ndarray  # float32, one per token


class BatchEncoder:
    """Encodes text chunks in bulk; `add_special_tokens=False` always (no post-processor BOS)."""

    memo_max_chars = 64
    memo_max_entries = 16384

    def __init__(self, tokenizer: LoadedTokenizer) -> None:
        self.tokenizer = tokenizer
        self._memo: dict[TextChunk, np.ndarray] = {}

    def encode_unique(self, chunks: Iterable[TextChunk]) -> dict[TextChunk, np.ndarray]:
        """Token ids of every distinct text chunk."""
        found: dict[TextChunk, np.ndarray] = {}
        todo: dict[Encoding, list[TextChunk]] = {}
        memo = self._memo
        for chunk in chunks:
            if chunk in found:
                continue
            hit = memo.get(chunk)
            if hit is not None:
                found[chunk] = hit
            elif not chunk.text:
                found[chunk] = _EMPTY
            else:
                found[chunk] = _EMPTY  # placeholder, filled below; also dedupes
                todo.setdefault(chunk.encoding, []).append(chunk)
        backend = self.tokenizer.tokenizer
        batch = getattr(backend, "encode_batch_fast", backend.encode_batch)
        for encoding, pending in todo.items():
            with _special_tokens_escaped(backend, encoding == Encoding.ESCAPED):
                encoded = batch([c.text for c in pending], add_special_tokens=False)
            for chunk, enc in zip(pending, encoded, strict=True):
                ids = np.asarray(enc.ids, dtype=np.int32)
                found[chunk] = ids
                if len(chunk.text) <= self.memo_max_chars:
                    if len(memo) >= self.memo_max_entries:
                        memo.clear()  # crude bound; constants come back on the next batch
                    ids.setflags(write=False)
                    memo[chunk] = ids
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


def render_supervised_batch(
    renderer: Renderer,
    encoder: BatchEncoder,
    conversations: Sequence[Sequence[Message]],
    train_on: TrainOnWhat,
) -> list[RenderedExample | RowError]:
    """tinker's build_supervised_example for every conversation; failures are returned per row."""
    train_on = TrainOnWhat(train_on)
    plans: list[SupervisedPlan | RowError] = []
    for messages in conversations:
        try:
            plans.append(plan_supervised(renderer, messages, train_on))
        except ShardprepError as exc:
            if not isinstance(exc, RowError):
                raise  # configuration problems (tokenizer, options) are not row problems
            plans.append(exc)
        except Exception as exc:  # a malformed message must not cost the batch
            plans.append(_row_error(exc))
    table = encoder.encode_unique(_text_chunks(plans))
    out: list[RenderedExample | RowError] = []
    for plan in plans:
        if isinstance(plan, RowError):
            out.append(plan)
            continue
        tokens, lengths = _concat(table, plan.chunks)
        weights = np.repeat(np.asarray(plan.weights, dtype=np.float32), lengths)
        if plan.prompt is not None:
            prompt, _ = _concat(table, plan.prompt)
            try:
                zero_prompt_prefix(renderer, tokens, weights, prompt)
            except RowError as exc:
                out.append(exc)
                continue
        out.append(RenderedExample(tokens, weights))
    return out


def render_prompt_batch(
    renderer: Renderer,
    encoder: BatchEncoder,
    conversations: Sequence[Sequence[Message]],
) -> list[np.ndarray | RowError]:
    """tinker's build_generation_prompt (role assistant, no prefill) for every conversation."""
    plans: list[list[Chunk] | RowError] = []
    for messages in conversations:
        try:
            plans.append(plan_prompt(renderer, messages))
        except ShardprepError as exc:
            if not isinstance(exc, RowError):
                raise
            plans.append(exc)
        except Exception as exc:
            plans.append(_row_error(exc))
    table = encoder.encode_unique(_text_chunks(plans))
    return [plan if isinstance(plan, RowError) else _concat(table, plan)[0] for plan in plans]
