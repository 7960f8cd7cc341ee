"""The flat path of a supervised row batch: render -> make_examples -> one Arrow table per split.

Tokens stay in numpy buffers from the encoder to the shard's list columns (values + offsets);
what runs per row in Python is bookkeeping (errors, drops, counts, split), never per token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from shardprep.encode.examples import ExampleBatch, make_examples
from shardprep.encode.tokenize import render_supervised_flat
from shardprep.renderers.base import TrainOnWhat
from shardprep.renderers.content import Message
from shardprep.sources.base import RawRow
from shardprep.store.columns import flat_lists, int32_column, one_source_column, source_row_column
from shardprep.tasks.base import UnitIO

SPLITS = ("train", "test")


def examples_batch_table(
    batch: ExampleBatch, source: str, source_rows: np.ndarray, schema: pa.Schema
) -> pa.Table:
    """The sft/1 columns of a batch, from its flat buffers."""
    return pa.Table.from_arrays(
        [
            flat_lists(batch.input_ids, batch.offsets, pa.int32()),
            flat_lists(batch.target_ids, batch.offsets, pa.int32()),
            flat_lists(batch.weights, batch.offsets, pa.float32()),
            int32_column(batch.lengths),
            one_source_column(source, len(batch)),
            source_row_column(source_rows),
        ],
        schema=schema,
    )


def write_supervised(
    io: UnitIO,
    convs: Sequence[Sequence[Message]],
    metas: Sequence[RawRow],
    train_on: TrainOnWhat,
    schema: pa.Schema,
    *,
    on_rendered: Callable[[int], None] | None = None,
) -> None:
    """Render, encode, cut and shift `convs` (read from `metas`) and hand them to io's writers.

    `on_rendered(i)` is called for each row that rendered, before its drop or write (the task's
    own counters). Rows that fail go to io.skip, rows make_example drops to io.drop, in row order.
    """
    if not convs:
        return
    recipe = io.recipe
    flat = render_supervised_flat(io.renderer, io.encoder, convs, train_on)
    io.count_special(flat.special)
    for i in sorted(flat.errors):
        raw = metas[i]
        io.skip_row(flat.errors[i], raw, row=raw.data)
    if on_rendered is not None:
        for i in range(len(convs)):
            if i not in flat.errors:
                on_rendered(i)
    batch = make_examples(
        flat.tokens,
        flat.weights,
        flat.offsets,
        skip=flat.errors,
        max_length=recipe.max_length,
        overlong=recipe.overlong,
        reduction=recipe.weight_reduction,
    )
    for i in sorted(batch.dropped):
        io.drop(batch.dropped[i], metas[i])
    if not len(batch):
        return
    lengths = batch.lengths
    for n, trained, cut in zip(
        lengths.tolist(), batch.trained.tolist(), batch.truncated.tolist(), strict=True
    ):
        io.count_example(n, trained, cut)
    kept = [metas[i] for i in batch.rows.tolist()]
    splits = np.array([io.split_of(raw) == "test" for raw in kept], dtype=bool)
    source_rows = np.fromiter((io.source_row(raw) for raw in kept), np.int64, len(kept))
    for split, mask in (("train", ~splits), ("test", splits)):
        if not mask.any():
            continue
        part = batch.take(mask)
        table = examples_batch_table(part, io.source_name, source_rows[mask], schema)
        io.writers[split].add_table(table, part.lengths, part.trained)
