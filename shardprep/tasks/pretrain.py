"""task: pretrain — `text` documents, tokenized with the BOS/EOS policy, packed into fixed blocks.

Documents are concatenated in row order into one token stream per split and unit. Block k holds
stream tokens [k*B, k*B + B] (B = block_size): input_ids = the first B, target_ids = the last B,
so consecutive blocks share one token and every token of the stream is a target exactly once (no
token is lost at a block edge). All targets have weight 1. `doc_offsets` lists the input
positions where a document starts (0 first, always), for per-document position ids.

A unit is processed on its own (units run in any order, in parallel), so the stream cannot carry
on into the next unit: the tail of each unit's stream that does not fill a block is not written
and is counted in the manifest (`stats.task_counters.remainder_tokens`), with documents and their
tokens. Special-token text inside a document is encoded as plain text (as renderers do for
message content), so data cannot inject control tokens; BOS/EOS are added as ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from shardprep.errors import RecipeError, RowError
from shardprep.formats import to_text
from shardprep.recipe import Recipe
from shardprep.renderers.chunks import Encoding, TextChunk
from shardprep.sources.files import RawRow
from shardprep.store.columns import (
    SOURCE_FIELDS,
    float32_lists,
    int32_lists,
    source_column,
)
from shardprep.store.shards import ShardWriter
from shardprep.tasks.base import UnitIO
from shardprep.tokenizer import LoadedTokenizer

SCHEMA = "pretrain/1"
DROP_EMPTY = "empty_document"

ARROW_SCHEMA = pa.schema(
    [
        pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("target_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("weights", pa.list_(pa.float32()), nullable=False),
        pa.field("length", pa.int32(), nullable=False),
        pa.field("doc_offsets", pa.list_(pa.int32()), nullable=False),
        *SOURCE_FIELDS,
    ],
    metadata={"shardprep.schema": SCHEMA},
)


@dataclass(frozen=True)
class Block:
    tokens: np.ndarray  # int32, block_size + 1 stream tokens
    doc_offsets: np.ndarray  # int32, input positions where documents start


def to_table(blocks: list[Block], sources: list[str], source_rows: list[int]) -> pa.Table:
    n = [len(b.tokens) - 1 for b in blocks]
    return pa.Table.from_arrays(
        [
            int32_lists([b.tokens[:-1] for b in blocks]),
            int32_lists([b.tokens[1:] for b in blocks]),
            float32_lists([np.ones(k, dtype=np.float32) for k in n]),
            pa.array(n, type=pa.int32()),
            int32_lists([b.doc_offsets for b in blocks]),
            source_column(sources),
            pa.array(source_rows, type=pa.int64()),
        ],
        schema=ARROW_SCHEMA,
    )


def special_ids(recipe: Recipe, tokenizer: LoadedTokenizer) -> tuple[int | None, int | None]:
    """(BOS id or None, EOS id or None) per the recipe, defaulting to what tokenizer_config names."""
    out: list[int | None] = []
    for key, wanted in (("bos_token", recipe.add_bos), ("eos_token", recipe.add_eos)):
        tid = tokenizer.special_id(key)
        if wanted and tid is None:
            flag = "add_bos" if key == "bos_token" else "add_eos"
            raise RecipeError([f"{flag}: the tokenizer's tokenizer_config.json names no {key}"])
        out.append(tid if (wanted is None or wanted) else None)
    return out[0], out[1]


def check(recipe: Recipe, tokenizer: LoadedTokenizer) -> None:
    """Before any row is read: the BOS/EOS policy must be possible with this tokenizer."""
    special_ids(recipe, tokenizer)


@dataclass
class Packer:
    """One split's token stream inside a unit, cut into blocks as soon as they fill."""

    writer: ShardWriter
    source: str
    block_size: int
    pieces: list[np.ndarray] = field(default_factory=list)
    pending: int = 0  # tokens in `pieces`
    starts: list[tuple[int, int]] = field(default_factory=list)  # (stream position in pieces, source row)
    stream_tokens: int = 0  # whole stream, for the remainder count

    def add(self, tokens: np.ndarray, source_row: int) -> int:
        """Append one document; returns the number of blocks written."""
        self.starts.append((self.pending, source_row))
        self.pieces.append(tokens)
        self.pending += len(tokens)
        self.stream_tokens += len(tokens)
        written = 0
        while self.pending >= self.block_size + 1:
            self._emit()
            written += 1
        return written

    def _emit(self) -> None:
        b = self.block_size
        stream = np.concatenate(self.pieces) if len(self.pieces) > 1 else self.pieces[0]
        # The document covering input position 0 names the block's source row.
        first = max(i for i, (pos, _) in enumerate(self.starts) if pos <= 0)
        offsets = [0] + [pos for pos, _ in self.starts[first + 1 :] if pos < b]
        self.writer.add(
            Block(stream[: b + 1].astype(np.int32, copy=False), np.asarray(offsets, dtype=np.int32)),
            self.source, self.starts[first][1], tokens=b, trained=b,
        )
        # The last target is the next block's first input.
        self.pieces = [stream[b:]]
        self.pending = len(stream) - b
        shifted = [(pos - b, row) for pos, row in self.starts[first:]]
        keep = max(i for i, (pos, _) in enumerate(shifted) if pos <= 0)
        self.starts = shifted[keep:]

    def remainder(self) -> int:
        """Stream tokens that are in no block (the tail that did not fill one)."""
        if self.stream_tokens == 0:
            return 0
        blocks = (self.stream_tokens - 1) // self.block_size if self.stream_tokens > self.block_size else 0
        return self.stream_tokens - blocks * self.block_size - (1 if blocks else 0)


class Runner:
    def __init__(self, io: UnitIO) -> None:
        self.io = io
        assert io.recipe.block_size is not None  # recipe validation requires it for this task
        self.bos, self.eos = special_ids(io.recipe, io.encoder.tokenizer)
        self.packers = {
            split: Packer(w, io.source_name, io.recipe.block_size) for split, w in io.writers.items()
        }

    def process(self, rows: list[RawRow]) -> None:
        io, src = self.io, self.io.source
        texts, metas = [], []
        for raw in io.readable(rows):
            try:
                texts.append(to_text(raw.data or {}, columns=src.columns or None))
            except RowError as err:
                io.skip(err, file=raw.file, line=raw.line, row=raw.data)
                continue
            metas.append(raw)
        chunks = [TextChunk(t, Encoding.ESCAPED) for t in texts]
        table = io.encoder.encode_unique(chunks)
        head = np.asarray([self.bos] if self.bos is not None else [], dtype=np.int32)
        tail = np.asarray([self.eos] if self.eos is not None else [], dtype=np.int32)
        for raw, chunk in zip(metas, chunks, strict=True):
            tokens = np.concatenate([head, table[chunk], tail]).astype(np.int32, copy=False)
            if len(tokens) == 0:
                io.dropped[DROP_EMPTY] += 1
                continue
            io.counters["documents"] += 1
            io.counters["document_tokens"] += len(tokens)
            blocks = self.packers[io.split_of(raw)].add(tokens, io.source_row(raw))
            for _ in range(blocks):
                io.count_example(io.recipe.block_size or 0, io.recipe.block_size or 0, False)

    def finish(self) -> None:
        for packer in self.packers.values():
            self.io.counters["remainder_tokens"] += packer.remainder()
