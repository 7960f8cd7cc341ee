"""task: sft — one row per conversation: input_ids / target_ids / weights (tinker's datum)."""

from __future__ import annotations

import numpy as np

from shardprep.errors import RowError
from shardprep.pipeline.examples import make_example
from shardprep.pipeline.formats import declare_tools, to_conversation
from shardprep.pipeline.shards import SFT_SCHEMA, examples_table
from shardprep.pipeline.sources import RawRow
from shardprep.pipeline.tasks.base import UnitIO
from shardprep.pipeline.tokenize import render_supervised_batch
from shardprep.renderers.base import TrainOnWhat

SCHEMA = "sft/1"
ARROW_SCHEMA = SFT_SCHEMA
to_table = examples_table


class Runner:
    def __init__(self, io: UnitIO) -> None:
        self.io = io
        self.customized = io.recipe.train_on == TrainOnWhat.CUSTOMIZED

    def process(self, rows: list[RawRow]) -> None:
        io, recipe, src = self.io, self.io.recipe, self.io.source
        convs, metas = [], []
        for raw in rows:
            if raw.error is not None:
                io.skip(raw.error, file=raw.file, line=raw.line, row=None)
                continue
            try:
                conv = to_conversation(raw.data or {}, format=src.format, columns=src.columns or None, customized=self.customized)
                # Declared tools replace the leading system message with the renderer's prefix.
                conv = declare_tools(io.renderer, conv, raw.data or {}, src.columns or None, recipe.tools)
            except RowError as err:
                io.skip(err, file=raw.file, line=raw.line, row=raw.data)
                continue
            convs.append(conv)
            metas.append(raw)
        rendered = render_supervised_batch(io.renderer, io.encoder, convs, recipe.train_on) if convs else []
        for raw, res in zip(metas, rendered, strict=True):
            if isinstance(res, RowError):
                io.skip(res, file=raw.file, line=raw.line, row=raw.data)
                continue
            ex = make_example(
                res.tokens, res.weights, max_length=recipe.max_length, overlong=recipe.overlong,
                reduction=recipe.weight_reduction,
            )
            if isinstance(ex, str):
                io.dropped[ex] += 1
                continue
            io.count_example(len(ex.input_ids), int(np.count_nonzero(ex.weights)), ex.truncated)
            io.writers[io.split_of(raw)].add_example(ex, io.source_name, io.source_row(raw))

    def finish(self) -> None:
        pass
