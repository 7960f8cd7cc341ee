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

from shardprep.errors import RowError, as_row_error
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
    import pyarrow as pa

    from shardprep.encode.examples import Example
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
        import numpy as np

        from shardprep.encode.examples import Dropped, make_example
        from shardprep.encode.tokenize import render_supervised_batch

        io, recipe, src = self.io, self.io.recipe, self.io.source
        convs: list[list[Message]] = []
        metas: list[RawRow] = []
        for raw in io.readable(rows):
            try:
                lc = to_comparison(raw.data or {}, format=src.format, columns=src.columns or None)
            except Exception as err:  # anything this row raises is its own counted failure
                io.skip(as_row_error(err), file=raw.file, line=raw.line, row=raw.data)
                continue
            if lc.label == "Tie" and self.options.tie == "drop":
                io.drop(DROP_TIE, raw)
                continue
            convs.extend(pair_conversations(lc))
            metas.append(raw)
        if self.conformance is not None:
            rows_of = [io.source_row(r) for r in metas for _ in SIDES]
            self.conformance.add(convs, rows_of, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
        # Both sides of every pair in one batch: one encode call per batch, as for SFT.
        rendered = (
            render_supervised_batch(
                io.renderer, io.encoder, convs, TrainOnWhat.LAST_ASSISTANT_MESSAGE
            )
            if convs
            else []
        )
        for k, raw in enumerate(metas):
            sides: list[Example] = []
            for res in rendered[2 * k : 2 * k + 2]:
                if isinstance(res, RowError):
                    io.skip(res, file=raw.file, line=raw.line, row=raw.data)
                    break
                ex = make_example(
                    res.tokens,
                    res.weights,
                    max_length=recipe.max_length,
                    overlong=recipe.overlong,
                    reduction="none",
                )
                if isinstance(ex, Dropped):
                    io.drop(ex.reason, raw)
                    break
                sides.append(ex)
            if len(sides) != 2:
                continue
            pair = Pair(*sides)
            n_tokens = len(pair.chosen.input_ids) + len(pair.rejected.input_ids)
            n_trained = int(np.count_nonzero(pair.chosen.weights)) + int(
                np.count_nonzero(pair.rejected.weights)
            )
            io.count_example(n_tokens, n_trained, pair.chosen.truncated or pair.rejected.truncated)
            io.writers[io.split_of(raw)].add(
                pair, io.source_name, io.source_row(raw), tokens=n_tokens, trained=n_trained
            )

    def finish(self) -> None:
        if self.conformance is not None:
            self.conformance.finish()


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
