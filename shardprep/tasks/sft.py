"""task: sft — one row per conversation: input_ids / target_ids / weights (tinker's datum)."""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa

from shardprep.encode.decode import row_payload
from shardprep.encode.examples import Example
from shardprep.errors import as_row_error
from shardprep.formats import CONVERSATION_FORMATS, declare_tools, to_conversation
from shardprep.renderers.base import TrainOnWhat
from shardprep.sources.base import RawRow
from shardprep.store.columns import (
    float32_lists,
    int32_column,
    int32_lists,
    source_column,
    source_row_column,
)
from shardprep.store.schemas import SOURCE_FIELDS, ShardSchema, sequence_fields
from shardprep.store.shards import TableBuilder
from shardprep.tasks.base import Task, TaskOptions, UnitIO
from shardprep.tasks.batch import write_supervised
from shardprep.tasks.conformance import Conformance
from shardprep.tokenizer import LoadedTokenizer

SCHEMA = ShardSchema(
    id="sft/1",
    fields=(*sequence_fields(), pa.field("length", pa.int32(), nullable=False), *SOURCE_FIELDS),
)


class SftOptions(TaskOptions):
    # A row's `tools` column: `auto` declares them through the renderer's tool prefix (replacing
    # the leading system message), `ignore` trains as if the column were absent.
    tools: Literal["auto", "ignore"] = "auto"


def examples_table(examples: list[Example], sources: list[str], source_rows: list[int]) -> pa.Table:
    return pa.Table.from_arrays(
        [
            int32_lists([e.input_ids for e in examples]),
            int32_lists([e.target_ids for e in examples]),
            float32_lists([e.weights for e in examples]),
            int32_column([len(e.input_ids) for e in examples]),
            source_column(sources),
            source_row_column(source_rows),
        ],
        schema=SCHEMA.arrow(),
    )


class SftRunner:
    def __init__(self, io: UnitIO, options: SftOptions) -> None:
        self.io = io
        self.options = options
        self.customized = io.recipe.train_on == TrainOnWhat.CUSTOMIZED
        self.conformance = Conformance.start(io)

    def process(self, rows: list[RawRow]) -> None:
        io, recipe, src = self.io, self.io.recipe, self.io.source
        convs, metas = [], []
        for raw in io.readable(rows):
            data = raw.data or {}
            try:
                conv = to_conversation(data, format=src.format, columns=src.columns or None, customized=self.customized)
                # Declared tools replace the leading system message with the renderer's prefix.
                conv = declare_tools(io.renderer, conv, data, src.columns or None, self.options.tools)
            except Exception as err:  # anything this row raises is its own counted failure
                io.skip(as_row_error(err), file=raw.file, line=raw.line, row=raw.data)
                continue
            convs.append(conv)
            metas.append(raw)
        if self.conformance is not None:
            self.conformance.add(convs, [io.source_row(r) for r in metas], recipe.train_on)
        # Flat buffers from the encoder to the shard's columns (tasks/batch.py).
        write_supervised(io, convs, metas, recipe.train_on, SCHEMA.arrow())

    def finish(self) -> None:
        if self.conformance is not None:
            self.conformance.finish()


class SftTask(Task[SftOptions]):
    name = "sft"
    description = "supervised fine-tuning: one row per conversation, tinker's datum (input / target / weight)"
    schema = SCHEMA
    options_model = SftOptions
    formats = CONVERSATION_FORMATS

    def table_builder(self, options: SftOptions) -> TableBuilder:
        return examples_table

    def runner(self, io: UnitIO) -> SftRunner:
        return SftRunner(io, self.options(io.recipe))

    def display_row(self, row: dict[str, Any], tok: LoadedTokenizer | None, *, split: str, index: int) -> dict[str, Any]:
        return row_payload(row, tok, split=split, index=index)

