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
from typing import TYPE_CHECKING, Any

from pydantic import Field

from shardprep.errors import as_row_error
from shardprep.formats import TEXT_FORMATS, to_text
from shardprep.renderers.chunks import Encoding, TextChunk
from shardprep.sources.base import RawRow
from shardprep.store.schemas import ShardSchema, sequence_fields, source_fields
from shardprep.tasks.base import Task, TaskOptions, UnitIO
from shardprep.tokenizer import LoadedTokenizer

# numpy, pyarrow and the decoder load inside the runner and the table: a recipe (and a no-op
# build) needs only the options, formats and schema id.
if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from shardprep.store.shards import RowSink, TableBuilder

DROP_EMPTY = "empty_document"


def _fields() -> tuple[pa.Field, ...]:
    import pyarrow as pa

    return (
        *sequence_fields(),
        pa.field("length", pa.int32(), nullable=False),
        pa.field("doc_offsets", pa.list_(pa.int32()), nullable=False),
        *source_fields(),
    )


SCHEMA = ShardSchema(id="pretrain/1", make_fields=_fields)


class PretrainOptions(TaskOptions):
    # Tokens per block row (inputs; targets are shifted by one), and the BOS/EOS policy per
    # document (None: add the token when tokenizer_config.json names one).
    block_size: int = Field(ge=2)
    add_bos: bool | None = None
    add_eos: bool | None = None


@dataclass(frozen=True)
class Block:
    tokens: np.ndarray  # int32, block_size + 1 stream tokens
    doc_offsets: np.ndarray  # int32, input positions where documents start


def to_table(blocks: list[Block], sources: list[str], source_rows: list[int]) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    from shardprep.store.columns import float32_lists, int32_lists, source_column, source_row_column

    n = [len(b.tokens) - 1 for b in blocks]
    return pa.Table.from_arrays(
        [
            int32_lists([b.tokens[:-1] for b in blocks]),
            int32_lists([b.tokens[1:] for b in blocks]),
            float32_lists([np.ones(k, dtype=np.float32) for k in n]),
            pa.array(n, type=pa.int32()),
            int32_lists([b.doc_offsets for b in blocks]),
            source_column(sources),
            source_row_column(source_rows),
        ],
        schema=SCHEMA.arrow(),
    )


def special_problems(options: PretrainOptions, tokenizer: LoadedTokenizer) -> list[str]:
    """A BOS/EOS asked for that the tokenizer does not name."""
    return [
        f"{flag}: the tokenizer's tokenizer_config.json names no {key}"
        for flag, key, wanted in (
            ("add_bos", "bos_token", options.add_bos),
            ("add_eos", "eos_token", options.add_eos),
        )
        if wanted and tokenizer.special_id(key) is None
    ]


def special_ids(
    options: PretrainOptions, tokenizer: LoadedTokenizer
) -> tuple[int | None, int | None]:
    """(BOS id or None, EOS id or None) per the options, defaulting to what tokenizer_config names."""
    out: list[int | None] = []
    for key, wanted in (("bos_token", options.add_bos), ("eos_token", options.add_eos)):
        out.append(tokenizer.special_id(key) if (wanted is None or wanted) else None)
    return out[0], out[1]


@dataclass
class Packer:
    """One split's token stream inside a unit, cut into blocks as soon as they fill."""

    writer: RowSink
    source: str
    block_size: int
    pieces: list[np.ndarray] = field(default_factory=list)
    pending: int = 0  # tokens in `pieces`
    starts: list[tuple[int, int]] = field(
        default_factory=list
    )  # (stream position in pieces, source row)
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
        import numpy as np

        b = self.block_size
        stream = np.concatenate(self.pieces) if len(self.pieces) > 1 else self.pieces[0]
        # The document covering input position 0 names the block's source row.
        first = max(i for i, (pos, _) in enumerate(self.starts) if pos <= 0)
        offsets = [0] + [pos for pos, _ in self.starts[first + 1 :] if pos < b]
        self.writer.add(
            Block(
                stream[: b + 1].astype(np.int32, copy=False), np.asarray(offsets, dtype=np.int32)
            ),
            self.source,
            self.starts[first][1],
            tokens=b,
            trained=b,
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
        blocks = (
            (self.stream_tokens - 1) // self.block_size
            if self.stream_tokens > self.block_size
            else 0
        )
        return self.stream_tokens - blocks * self.block_size - (1 if blocks else 0)


class PretrainRunner:
    def __init__(self, io: UnitIO, options: PretrainOptions) -> None:
        self.io = io
        self.block_size = options.block_size
        self.bos, self.eos = special_ids(options, io.encoder.tokenizer)
        self.packers = {
            split: Packer(w, io.source_name, options.block_size) for split, w in io.writers.items()
        }

    def process(self, rows: list[RawRow]) -> None:
        import numpy as np

        io, src = self.io, self.io.source
        texts, metas = [], []
        for raw in io.readable(rows):
            try:
                texts.append(to_text(raw.data or {}, columns=src.columns or None))
            except Exception as err:  # anything this row raises is its own counted failure
                io.skip_row(as_row_error(err), raw, row=raw.data)
                continue
            metas.append(raw)
        chunks = [TextChunk(t, Encoding.ESCAPED) for t in texts]
        table = io.encoder.encode_unique(chunks)
        head = np.asarray([self.bos] if self.bos is not None else [], dtype=np.int32)
        tail = np.asarray([self.eos] if self.eos is not None else [], dtype=np.int32)
        for raw, chunk in zip(metas, chunks, strict=True):
            tokens = np.concatenate([head, table[chunk], tail]).astype(np.int32, copy=False)
            if len(tokens) == 0:
                io.drop(DROP_EMPTY, raw)
                continue
            io.counters["documents"] += 1
            io.counters["document_tokens"] += len(tokens)
            blocks = self.packers[io.split_of(raw)].add(tokens, io.source_row(raw))
            for _ in range(blocks):
                io.count_example(self.block_size, self.block_size, False)

    def finish(self) -> None:
        for packer in self.packers.values():
            self.io.counters["remainder_tokens"] += packer.remainder()


class PretrainTask(Task[PretrainOptions]):
    name = "pretrain"
    description = "plain-text pretraining: documents with BOS/EOS packed into fixed blocks, with document offsets"
    schema = SCHEMA
    options_model = PretrainOptions
    formats = TEXT_FORMATS
    judges_masks = False

    def check(self, recipe: Any, tokenizer: LoadedTokenizer) -> list[str]:
        return special_problems(self.options(recipe), tokenizer)

    def table_builder(self, options: PretrainOptions) -> TableBuilder:
        return to_table

    def runner(self, io: UnitIO) -> PretrainRunner:
        return PretrainRunner(io, self.options(io.recipe))

    def display_row(
        self, row: dict[str, Any], tok: LoadedTokenizer | None, *, split: str, index: int
    ) -> dict[str, Any]:
        """The whole block, plus its documents cut at `doc_offsets`."""
        from shardprep.encode.decode import decode_pieces, example_tokens, row_payload, spans_of

        out = row_payload(row, tok, split=split, index=index)
        offsets = [int(o) for o in row["doc_offsets"]]
        out["doc_offsets"] = offsets
        docs = []
        # Token i of the unshifted sequence is input i (and the last target); documents cut at offsets.
        tokens, trained = example_tokens(row)
        bounds = (
            [*offsets, len(tokens)] if offsets and offsets[0] == 0 else [0, *offsets, len(tokens)]
        )
        for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            doc: dict[str, Any] = {"document": k, "offset": lo, "tokens": hi - lo, "spans": None}
            if tok is not None:
                doc["spans"] = [
                    s.to_json() for s in spans_of(decode_pieces(tok, tokens[lo:hi], trained[lo:hi]))
                ]
            docs.append(doc)
        out["documents"] = docs
        return out
