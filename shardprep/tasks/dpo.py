"""task: dpo — one row per preference pair, each side a tinker datum (DPODatasetBuilderFromComparisons).

Per pair: chosen = A if the label is A else B (`tie: as_b`; `tie: drop` counts the pair as `tie`),
`prompt + chosen` and `prompt + rejected` each rendered with build_supervised_example on the last
assistant message, truncated/shifted by `make_example` with no weight reduction. Both sides live in
the same row, so pairs can never be split by a shard boundary. A side dropped by max_length drops
the pair (tinker would emit an unbalanced batch instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from shardprep.encode.examples import Example, make_example
from shardprep.encode.tokenize import render_supervised_batch
from shardprep.errors import RowError
from shardprep.formats.comparison import LabeledComparison, to_comparison
from shardprep.renderers.base import TrainOnWhat
from shardprep.sources.files import RawRow
from shardprep.store.columns import (
    SOURCE_FIELDS,
    float32_lists,
    int32_lists,
    source_column,
)
from shardprep.tasks.base import UnitIO

SCHEMA = "dpo/1"
DROP_TIE = "tie"
SIDES = ("chosen", "rejected")

ARROW_SCHEMA = pa.schema(
    [
        *(
            pa.field(f"{side}_{col}", pa.list_(typ), nullable=False)
            for side in SIDES
            for col, typ in (("input_ids", pa.int32()), ("target_ids", pa.int32()), ("weights", pa.float32()))
        ),
        pa.field("chosen_length", pa.int32(), nullable=False),
        pa.field("rejected_length", pa.int32(), nullable=False),
        *SOURCE_FIELDS,
    ],
    metadata={"shardprep.schema": SCHEMA},
)


@dataclass(frozen=True)
class Pair:
    chosen: Example
    rejected: Example


def to_table(pairs: list[Pair], sources: list[str], source_rows: list[int]) -> pa.Table:
    cols: dict[str, pa.Array] = {}
    for side in SIDES:
        exs = [getattr(p, side) for p in pairs]
        cols[f"{side}_input_ids"] = int32_lists([e.input_ids for e in exs])
        cols[f"{side}_target_ids"] = int32_lists([e.target_ids for e in exs])
        cols[f"{side}_weights"] = float32_lists([e.weights for e in exs])
    cols["chosen_length"] = pa.array([len(p.chosen.input_ids) for p in pairs], type=pa.int32())
    cols["rejected_length"] = pa.array([len(p.rejected.input_ids) for p in pairs], type=pa.int32())
    cols["source"] = source_column(sources)
    cols["source_row"] = pa.array(source_rows, type=pa.int64())
    return pa.Table.from_arrays([cols[f.name] for f in ARROW_SCHEMA], schema=ARROW_SCHEMA)


def pair_conversations(lc: LabeledComparison) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(prompt + chosen, prompt + rejected), as tinker's DPO builder forms them."""
    chosen, rejected = lc.chosen_rejected()
    prompt = lc.comparison.prompt_conversation
    return [*prompt, *chosen], [*prompt, *rejected]


class Runner:
    def __init__(self, io: UnitIO) -> None:
        self.io = io

    def process(self, rows: list[RawRow]) -> None:
        io, recipe, src = self.io, self.io.recipe, self.io.source
        convs: list[list[dict[str, Any]]] = []
        metas: list[RawRow] = []
        for raw in io.readable(rows):
            try:
                lc = to_comparison(raw.data or {}, format=src.format, columns=src.columns or None)
            except RowError as err:
                io.skip(err, file=raw.file, line=raw.line, row=raw.data)
                continue
            if lc.label == "Tie" and recipe.tie == "drop":
                io.dropped[DROP_TIE] += 1
                continue
            convs.extend(pair_conversations(lc))
            metas.append(raw)
        # Both sides of every pair in one batch: one encode call per batch, as for SFT.
        rendered = render_supervised_batch(io.renderer, io.encoder, convs, TrainOnWhat.LAST_ASSISTANT_MESSAGE) if convs else []
        for k, raw in enumerate(metas):
            sides: list[Example] = []
            for res in rendered[2 * k : 2 * k + 2]:
                if isinstance(res, RowError):
                    io.skip(res, file=raw.file, line=raw.line, row=raw.data)
                    break
                ex = make_example(res.tokens, res.weights, max_length=recipe.max_length, overlong=recipe.overlong, reduction="none")
                if isinstance(ex, str):
                    io.dropped[ex] += 1
                    break
                sides.append(ex)
            if len(sides) != 2:
                continue
            pair = Pair(*sides)
            n_tokens = len(pair.chosen.input_ids) + len(pair.rejected.input_ids)
            n_trained = int(np.count_nonzero(pair.chosen.weights)) + int(np.count_nonzero(pair.rejected.weights))
            io.count_example(n_tokens, n_trained, pair.chosen.truncated or pair.rejected.truncated)
            io.writers[io.split_of(raw)].add(pair, io.source_name, io.source_row(raw), tokens=n_tokens, trained=n_trained)

    def finish(self) -> None:
        pass
