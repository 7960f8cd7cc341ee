"""The flat path of a supervised row batch: render -> make_examples -> one Arrow table per split.

Tokens stay in numpy buffers from the encoder to the shard's list columns (values + offsets);
what runs per row in Python is bookkeeping (errors, drops, counts, split), never per token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from shardprep.encode.examples import ExampleBatch, make_examples
from shardprep.encode.tokenize import RenderedBatch, render_supervised_flat
from shardprep.renderers.base import TrainOnWhat
from shardprep.renderers.content import Message
from shardprep.sources.base import RawRow
from shardprep.store.columns import flat_lists, int32_column, one_source_column, source_row_column
from shardprep.tasks.base import UnitIO

if TYPE_CHECKING:
    from shardprep.recipe import Recipe

SPLITS = ("train", "test")


def example_columns(batch: ExampleBatch) -> list[pa.Array]:
    """input_ids, target_ids, weights and length of each example, from the batch's flat buffers."""
    return [
        flat_lists(batch.input_ids, batch.offsets, pa.int32()),
        flat_lists(batch.target_ids, batch.offsets, pa.int32()),
        flat_lists(batch.weights, batch.offsets, pa.float32()),
        int32_column(batch.lengths),
    ]


def examples_batch_table(
    batch: ExampleBatch,
    source: str,
    source_rows: np.ndarray,
    schema: pa.Schema,
    message_index: np.ndarray | None = None,
) -> pa.Table:
    """The sft/1 columns of a batch, from its flat buffers; with `message_index`, sft_turns/1's."""
    columns = [
        *example_columns(batch),
        one_source_column(source, len(batch)),
        source_row_column(source_rows),
    ]
    if message_index is not None:
        columns.append(int32_column(message_index))
    return pa.Table.from_arrays(columns, schema=schema)


def cut_examples(flat: RenderedBatch, recipe: Recipe) -> ExampleBatch:
    """make_example, under the recipe's length, overlong and reduction rules, for every row of
    `flat` that rendered."""
    return make_examples(
        flat.tokens,
        flat.weights,
        flat.offsets,
        skip=flat.errors,
        max_length=recipe.max_length,
        overlong=recipe.overlong,
        reduction=recipe.weight_reduction,
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
    flat = render_supervised_flat(io.renderer, io.encoder, convs, train_on)
    io.count_special(flat.special)
    for i in sorted(flat.errors):
        raw = metas[i]
        io.skip_row(flat.errors[i], raw, row=raw.data)
    if on_rendered is not None:
        for i in range(len(convs)):
            if i not in flat.errors:
                on_rendered(i)
    write_examples(io, flat, metas, schema)


def write_examples(
    io: UnitIO,
    flat: RenderedBatch,
    metas: Sequence[RawRow],
    schema: pa.Schema,
    message_index: np.ndarray | None = None,
) -> None:
    """Cut and shift example k of `flat` (read from `metas[k]`), count it and hand it to io's
    writer for its row's split; examples make_example drops go to io.drop, in order.

    `message_index` (one per example of `flat`): the sft_turns/1 column.
    """
    batch = cut_examples(flat, io.recipe)
    for k in sorted(batch.dropped):
        io.drop(batch.dropped[k], metas[k])
    if not len(batch):
        return
    for n, trained, cut in zip(
        batch.lengths.tolist(), batch.trained.tolist(), batch.truncated.tolist(), strict=True
    ):
        io.count_example(n, trained, cut)
    kept = [metas[k] for k in batch.rows.tolist()]
    is_test = np.array([io.split_of(raw) == "test" for raw in kept], dtype=bool)
    source_rows = np.fromiter((io.source_row(raw) for raw in kept), np.int64, len(kept))
    kept_index = None if message_index is None else message_index[batch.rows]
    for split, mask in (("train", ~is_test), ("test", is_test)):
        if not mask.any():
            continue
        part = batch.take(mask)
        index = None if kept_index is None else kept_index[mask]
        table = examples_batch_table(part, io.source_name, source_rows[mask], schema, index)
        io.writers[split].add_table(table, part.lengths, part.trained)
