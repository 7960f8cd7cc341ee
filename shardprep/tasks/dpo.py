"""task: dpo — one row per preference pair, each side a tinker datum (DPODatasetBuilderFromComparisons).

Per pair: chosen = A if the label is A else B (`tie: as_b`; `tie: drop` counts the pair as `tie`),
`prompt + chosen` and `prompt + rejected` each rendered with build_supervised_example on the last
assistant message, truncated/shifted by `make_example` with no weight reduction. Both sides live in
the same row, so pairs can never be split by a shard boundary. A side dropped by max_length drops
the pair (tinker would emit an unbalanced batch instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from shardprep.errors import as_row_error
from shardprep.formats import PAIR_FORMATS
from shardprep.formats.comparison import LabeledComparison, to_comparison
from shardprep.messages import Message
from shardprep.renderers.base import TrainOnWhat
from shardprep.sources.base import RawRow
from shardprep.store.schemas import ShardSchema, sequence_fields, source_fields
from shardprep.tasks.base import Task, TaskOptions, UnitIO
from shardprep.tokenizer import LoadedTokenizer

# pyarrow, numpy and the encoder load inside the runner and the table: a recipe (and a no-op
# build) needs only the options, formats and schema id.
if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from shardprep.encode.examples import Example, ExampleBatch
    from shardprep.store.shards import TableBuilder

DROP_TIE = "tie"
SIDES = ("chosen", "rejected")


def _fields() -> tuple[pa.Field, ...]:
    import pyarrow as pa

    return (
        *sequence_fields("chosen_"),
        *sequence_fields("rejected_"),
        pa.field("chosen_length", pa.int32(), nullable=False),
        pa.field("rejected_length", pa.int32(), nullable=False),
        *source_fields(),
    )


SCHEMA = ShardSchema(
    id="dpo/1",
    make_fields=_fields,
    sequences=("chosen_", "rejected_"),
    length_columns=("chosen_length", "rejected_length"),
    token_columns=tuple(
        f"{side}_{c}" for side in SIDES for c in ("input_ids", "target_ids", "weights")
    ),
)


class DpoOptions(TaskOptions):
    # What a "Tie" label becomes: dropped (counted as `tie`) or chosen = B, as tinker does.
    tie: Literal["drop", "as_b"] = "drop"


@dataclass(frozen=True)
class Pair:
    chosen: Example
    rejected: Example


def to_table(pairs: list[Pair], sources: list[str], source_rows: list[int]) -> pa.Table:
    import pyarrow as pa

    from shardprep.store.columns import (
        float32_lists,
        int32_column,
        int32_lists,
        source_column,
        source_row_column,
    )

    cols: dict[str, pa.Array] = {}
    for side in SIDES:
        exs = [getattr(p, side) for p in pairs]
        cols[f"{side}_input_ids"] = int32_lists([e.input_ids for e in exs])
        cols[f"{side}_target_ids"] = int32_lists([e.target_ids for e in exs])
        cols[f"{side}_weights"] = float32_lists([e.weights for e in exs])
    # Not pa.array: that imports pandas (a second per process).
    cols["chosen_length"] = int32_column([len(p.chosen.input_ids) for p in pairs])
    cols["rejected_length"] = int32_column([len(p.rejected.input_ids) for p in pairs])
    cols["source"] = source_column(sources)
    cols["source_row"] = source_row_column(source_rows)
    schema = SCHEMA.arrow()
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


def pair_conversations(lc: LabeledComparison) -> tuple[list[Message], list[Message]]:
    """(prompt + chosen, prompt + rejected), as tinker's DPO builder forms them."""
    chosen, rejected = lc.chosen_rejected()
    prompt = lc.comparison.prompt_conversation
    return [*prompt, *chosen], [*prompt, *rejected]


class DpoRunner:
    def __init__(self, io: UnitIO, options: DpoOptions) -> None:
        from shardprep.tasks.conformance import Conformance

        self.io = io
        self.options = options
        self.conformance = Conformance.start(io)

    def process(self, rows: list[RawRow]) -> None:
        io, src = self.io, self.io.source
        convs: list[list[Message]] = []
        metas: list[RawRow] = []
        for raw in io.readable(rows):
            try:
                lc = to_comparison(raw.data or {}, format=src.format, columns=src.columns or None)
            except Exception as err:  # anything this row raises is its own counted failure
                io.skip_row(as_row_error(err), raw, row=raw.data)
                continue
            if lc.label == "Tie" and self.options.tie == "drop":
                io.drop(DROP_TIE, raw)
                continue
            convs.extend(pair_conversations(lc))
            metas.append(raw)
        if self.conformance is not None:
            rows_of = [io.source_row(r) for r in metas for _ in SIDES]
            self.conformance.add(convs, rows_of, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
        if convs:
            write_pairs(io, convs, metas, SCHEMA.arrow())

    def finish(self) -> None:
        if self.conformance is not None:
            self.conformance.finish()


def write_pairs(
    io: UnitIO, convs: list[list[Message]], metas: list[RawRow], schema: pa.Schema
) -> None:
    """Pairs k = (convs[2k], convs[2k+1]) of rows `metas[k]` rendered, encoded, cut and shifted
    as one flat batch (tasks/batch.py's path), and handed to io's writers as tables.

    A pair is written only when both sides are examples. tinker's DPO builder renders both sides
    before it makes either datum, so a side that cannot render makes the pair that side's row
    error (the chosen side's first) even when the other side is overlong or untrained: a bad row
    is never counted as a drop (under `on_error: fail` it fails the build). Otherwise the first
    side that make_example drops decides the reason.
    """
    import numpy as np

    from shardprep.encode.tokenize import render_supervised_flat
    from shardprep.tasks.batch import SPLITS, cut_examples

    flat = render_supervised_flat(
        io.renderer, io.encoder, convs, TrainOnWhat.LAST_ASSISTANT_MESSAGE
    )
    pairs_found: dict[int, set[str]] = {}
    for i, found in flat.special.items():  # a pair row counts once, with both sides' literals
        pairs_found.setdefault(i // 2, set()).update(found)
    io.count_special({k: sorted(v) for k, v in pairs_found.items()})
    batch = cut_examples(flat, io.recipe)  # weight_reduction is none (DpoTask.recipe_problems)
    for k in sorted({i // 2 for i in flat.errors} | {i // 2 for i in batch.dropped}):
        raw = metas[k]
        sides = (2 * k, 2 * k + 1)
        failed = [i for i in sides if i in flat.errors]
        if failed:
            io.skip_row(flat.errors[failed[0]], raw, row=raw.data)
        else:
            io.drop(next(batch.dropped[i] for i in sides if i in batch.dropped), raw)
    whole = np.bincount(batch.rows // 2, minlength=len(metas)) == 2
    kept = batch.take(whole[batch.rows // 2])
    if not len(kept):
        return
    chosen, rejected = kept.take(kept.rows % 2 == 0), kept.take(kept.rows % 2 == 1)
    pairs = chosen.rows // 2
    tokens = chosen.lengths + rejected.lengths
    trained = chosen.trained + rejected.trained
    truncated = chosen.truncated | rejected.truncated
    longest = np.maximum(chosen.lengths, rejected.lengths)
    for n, t, cut, long in zip(
        tokens.tolist(), trained.tolist(), truncated.tolist(), longest.tolist(), strict=True
    ):
        io.count_example(n, t, cut, length=long)
    kept_rows = [metas[k] for k in pairs.tolist()]
    is_test = np.array([io.split_of(raw) == "test" for raw in kept_rows], dtype=bool)
    source_rows = np.fromiter((io.source_row(raw) for raw in kept_rows), np.int64, len(kept_rows))
    for split in SPLITS:
        mask = is_test if split == "test" else ~is_test
        if mask.any():
            table = _pairs_table(
                chosen.take(mask), rejected.take(mask), io.source_name, source_rows[mask], schema
            )
            io.writers[split].add_table(table, tokens[mask], trained[mask])


def _pairs_table(
    chosen: ExampleBatch,
    rejected: ExampleBatch,
    source: str,
    source_rows: np.ndarray,
    schema: pa.Schema,
) -> pa.Table:
    """The dpo/1 columns of a batch of pairs, from the sides' flat buffers."""
    import pyarrow as pa

    from shardprep.store.columns import one_source_column, source_row_column
    from shardprep.tasks.batch import example_columns

    cols: dict[str, pa.Array] = {}
    for side, ex in (("chosen", chosen), ("rejected", rejected)):
        names = (f"{side}_input_ids", f"{side}_target_ids", f"{side}_weights", f"{side}_length")
        cols.update(zip(names, example_columns(ex), strict=True))
    cols["source"] = one_source_column(source, len(chosen))
    cols["source_row"] = source_row_column(source_rows)
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


def _nested(payload: dict[str, Any]) -> dict[str, Any]:
    # Per-token pieces feed only the HTML page of the top-level row; nested copies would not be JSON.
    return {k: v for k, v in payload.items() if k != "pieces"}


class DpoTask(Task[DpoOptions]):
    name = "dpo"
    description = "preference pairs: both sides of a pair in one row, each a tinker datum of the last assistant message"
    schema = SCHEMA
    options_model = DpoOptions
    formats = PAIR_FORMATS
    # tinker's DPO builder trains the last assistant message.
    recipe_defaults = {"train_on": TrainOnWhat.LAST_ASSISTANT_MESSAGE.value}

    def recipe_problems(self, recipe: Any) -> list[str]:
        problems = super().recipe_problems(recipe)
        if recipe.train_on != TrainOnWhat.LAST_ASSISTANT_MESSAGE:
            problems.append(
                "train_on: task dpo trains on last_assistant_message (as tinker's DPO builder)"
            )
        if recipe.weight_reduction != "none":
            problems.append(
                "weight_reduction: task dpo keeps per-token weights (none), as tinker's DPO builder"
            )
        return problems

    def table_builder(self, options: DpoOptions) -> TableBuilder:
        return to_table

    def runner(self, io: UnitIO) -> DpoRunner:
        return DpoRunner(io, self.options(io.recipe))

    def display_row(
        self, row: dict[str, Any], tok: LoadedTokenizer | None, *, split: str, index: int
    ) -> dict[str, Any]:
        """The chosen side as an SFT row payload (so every view works), both sides under `pair`."""
        from shardprep.encode.decode import row_payload

        sides = {}
        for side in SIDES:
            sub = {
                "input_ids": row[f"{side}_input_ids"],
                "target_ids": row[f"{side}_target_ids"],
                "weights": row[f"{side}_weights"],
                "source": row.get("source"),
                "source_row": row.get("source_row"),
                "shard": row.get("shard"),
            }
            sides[side] = row_payload(sub, tok, split=split, index=index)
        out = dict(sides["chosen"])
        out["pair"] = {side: _nested(p) for side, p in sides.items()}
        return out
