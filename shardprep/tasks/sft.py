"""task: sft — input_ids / target_ids / weights rows (tinker's datum).

`examples: per_conversation` (default) writes one row per conversation (tinker's
`conversation_to_datum`); `examples: per_turn` writes tinker's `build_supervised_examples`, one
row per trained assistant turn for reasoning renderers (see `sft_turns.py`, schema sft_turns/1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from shardprep.errors import as_row_error
from shardprep.formats import CONVERSATION_FORMATS, declare_tools, to_conversation
from shardprep.renderers.base import SPLITTABLE_MODES, TrainOnWhat
from shardprep.sources.base import RawRow
from shardprep.store.schemas import ShardSchema, sequence_fields, source_fields
from shardprep.tasks.base import Task, TaskOptions, UnitIO
from shardprep.tasks.sft_turns import (
    HISTORY_TRAINED,
    history_warnings,
    trains_history,
    turns_schema,
    turns_summary,
    write_turns,
)
from shardprep.tokenizer import LoadedTokenizer

# pyarrow, numpy, the encoder and the renderer families load inside the runner and the tables:
# a recipe (and a no-op build) needs only the options, formats and schema ids.
if TYPE_CHECKING:
    import pyarrow as pa

    from shardprep.encode.examples import Example
    from shardprep.store.shards import TableBuilder


def _fields() -> tuple[pa.Field, ...]:
    import pyarrow as pa

    return (*sequence_fields(), pa.field("length", pa.int32(), nullable=False), *source_fields())


SCHEMA = ShardSchema(id="sft/1", make_fields=_fields)
TURNS_SCHEMA = turns_schema(SCHEMA)  # per_turn rows: + message_index

PER_CONVERSATION: Literal["per_conversation"] = "per_conversation"
PER_TURN: Literal["per_turn"] = "per_turn"


class SftOptions(TaskOptions):
    # A row's `tools` column: `auto` declares them through the renderer's tool prefix (replacing
    # the leading system message), `ignore` trains as if the column were absent.
    tools: Literal["auto", "ignore"] = "auto"
    # per_turn: tinker's build_supervised_examples, one example per trained assistant message for
    # a renderer without the extension property (reasoning models trained as they infer).
    examples: Literal["per_conversation", "per_turn"] = PER_CONVERSATION


def examples_table(
    examples: list[Example],
    sources: list[str],
    source_rows: list[int],
    message_index: list[int] | None = None,
) -> pa.Table:
    """Records as sft/1 rows; with `message_index`, sft_turns/1 rows (the record path; builds use
    flat tables)."""
    import pyarrow as pa

    from shardprep.store.columns import (
        float32_lists,
        int32_column,
        int32_lists,
        source_column,
        source_row_column,
    )

    columns = [
        int32_lists([e.input_ids for e in examples]),
        int32_lists([e.target_ids for e in examples]),
        float32_lists([e.weights for e in examples]),
        int32_column([len(e.input_ids) for e in examples]),
        source_column(sources),
        source_row_column(source_rows),
    ]
    if message_index is None:
        return pa.Table.from_arrays(columns, schema=SCHEMA.arrow())
    columns.append(int32_column(message_index))
    return pa.Table.from_arrays(columns, schema=TURNS_SCHEMA.arrow())


def turns_table(
    records: list[tuple[Example, int]], sources: list[str], source_rows: list[int]
) -> pa.Table:
    """Records (example, message index) as sft_turns/1 rows."""
    return examples_table([e for e, _ in records], sources, source_rows, [i for _, i in records])


class SftRunner:
    def __init__(self, io: UnitIO, options: SftOptions) -> None:
        from shardprep.tasks.conformance import Conformance

        self.io = io
        self.options = options
        self.customized = io.recipe.train_on == TrainOnWhat.CUSTOMIZED
        self.per_turn = options.examples == PER_TURN
        self.conformance = Conformance.start(io)

    def process(self, rows: list[RawRow]) -> None:
        io, recipe, src = self.io, self.io.recipe, self.io.source
        convs, metas, shifts = [], [], []
        for raw in io.readable(rows):
            data = raw.data or {}
            try:
                conv = to_conversation(
                    data, format=src.format, columns=src.columns or None, customized=self.customized
                )
                # Declared tools replace the leading system message with the renderer's prefix.
                declared = declare_tools(
                    io.renderer, conv, data, src.columns or None, self.options.tools
                )
            except Exception as err:  # anything this row raises is its own counted failure
                io.skip_row(as_row_error(err), raw, row=raw.data)
                continue
            convs.append(declared)
            metas.append(raw)
            shifts.append(len(declared) - len(conv))  # message_index counts the row's own messages
        if self.conformance is not None:
            self.conformance.add(convs, [io.source_row(r) for r in metas], recipe.train_on)
        if self.per_turn:
            write_turns(io, convs, metas, shifts, recipe.train_on, TURNS_SCHEMA.arrow())
            return

        def history(i: int) -> None:
            # A rendered row that trains turns as history (the build summary names per_turn).
            if trains_history(io.renderer, convs[i], recipe.train_on):
                io.counters[HISTORY_TRAINED] += 1

        # Flat buffers from the encoder to the shard's columns (tasks/batch.py).
        from shardprep.tasks.batch import write_supervised

        write_supervised(io, convs, metas, recipe.train_on, SCHEMA.arrow(), on_rendered=history)

    def finish(self) -> None:
        if self.conformance is not None:
            self.conformance.finish()


class SftTask(Task[SftOptions]):
    name = "sft"
    description = (
        "supervised fine-tuning: tinker's datum (input / target / weight), one row per "
        "conversation or (examples: per_turn) per trained assistant turn"
    )
    schema = SCHEMA
    variant_schemas = (TURNS_SCHEMA,)
    options_model = SftOptions
    formats = CONVERSATION_FORMATS

    def schema_for(self, options: SftOptions) -> ShardSchema:
        return TURNS_SCHEMA if options.examples == PER_TURN else SCHEMA

    def recipe_problems(self, recipe: Any) -> list[str]:
        problems = super().recipe_problems(recipe)
        mode = TrainOnWhat(recipe.train_on)
        options = recipe.task_options  # not SftOptions when its own keys were invalid
        if (
            isinstance(options, SftOptions)
            and options.examples == PER_TURN
            and mode not in SPLITTABLE_MODES
        ):
            from shardprep.renderers.registry import renderer_class

            cls = renderer_class(recipe.renderer.name)
            # Kimi splits any mode at user messages, as tinker; the others split assistant turns.
            if cls is not None and not cls.splits_every_mode:
                problems.append(
                    f"examples: per_turn writes one example per trained assistant message, which "
                    f"train_on {mode.value!r} cannot be split into (tinker's "
                    "build_supervised_examples raises); use train_on last_assistant_message, "
                    "last_assistant_turn or all_assistant_messages, or examples: per_conversation"
                )
        return problems

    def counter_summary(self, counters: Mapping[str, int]) -> dict[str, Any]:
        return turns_summary(counters)

    def counter_warnings(
        self, counters: Mapping[str, int], recipe_json: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        return history_warnings(counters, recipe_json)

    def table_builder(self, options: SftOptions) -> TableBuilder:
        if options.examples == PER_TURN:
            return turns_table
        return examples_table

    def runner(self, io: UnitIO) -> SftRunner:
        return SftRunner(io, self.options(io.recipe))

    def display_row(
        self, row: dict[str, Any], tok: LoadedTokenizer | None, *, split: str, index: int
    ) -> dict[str, Any]:
        from shardprep.encode.decode import row_payload

        out = row_payload(row, tok, split=split, index=index)
        if row.get("message_index") is not None:
            out["message_index"] = row["message_index"]  # which turn of its row (per_turn)
        return out
