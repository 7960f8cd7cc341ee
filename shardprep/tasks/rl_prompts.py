"""task: rl_prompts — one row per conversation: its generation prompt tokens plus passthrough columns.

`prompt_ids` is tinker's build_generation_prompt of the conversation (a trailing assistant message,
the reference answer of SFT-shaped data, is left out). Prompts longer than `max_prompt_tokens` are
dropped as `overlong`, never cut: cutting would remove the generation suffix the sampler needs.

Passthrough columns have types declared in the recipe (`passthrough: {answer: string, meta: json}`),
not inferred: units are written independently, so inference could give two shards different types.
A value of another type is a row error (`bad_passthrough`); null stays null; `json` stores any value
as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from shardprep.errors import RowError, as_row_error
from shardprep.formats import CONVERSATION_FORMATS, to_conversation
from shardprep.formats._common import _MISSING, lookup
from shardprep.messages import Message
from shardprep.sources.base import RawRow
from shardprep.store.schemas import ShardSchema, source_fields
from shardprep.tasks.base import Task, TaskOptions, UnitIO
from shardprep.tokenizer import LoadedTokenizer

# pyarrow, numpy and the encoder load inside the runner and the table: a recipe (and a no-op
# build) needs only the options, formats and schema id.
if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from shardprep.store.shards import TableBuilder

BAD_PASSTHROUGH = "bad_passthrough"


def arrow_type(typ: str) -> pa.DataType:
    """The Arrow type of a passthrough column declared `typ`."""
    import pyarrow as pa

    types: dict[str, pa.DataType] = {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "json": pa.string(),
        "list<string>": pa.list_(pa.string()),
        "list<int64>": pa.list_(pa.int64()),
        "list<float64>": pa.list_(pa.float64()),
    }
    return types[typ]


PassthroughType = Literal[
    "string", "int64", "float64", "bool", "json", "list<string>", "list<int64>", "list<float64>"
]


def _fields() -> tuple[pa.Field, ...]:
    import pyarrow as pa

    return (
        pa.field("prompt_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("length", pa.int32(), nullable=False),
        *source_fields(),
    )


SCHEMA = ShardSchema(
    id="rl_prompts/1",
    make_fields=_fields,
    sequences=(),
    token_columns=("prompt_ids",),
    open_ended=True,
)
# Columns the task writes itself (SCHEMA's, tested equal); a passthrough column may not shadow
# them. Spelled out so that checking a recipe builds no Arrow field.
RESERVED_COLUMNS = frozenset({"prompt_ids", "length", "source", "source_row"})


class RlPromptsOptions(TaskOptions):
    # Prompts longer than this are dropped (`overlong`), never cut: a cut prompt loses its
    # generation suffix. Passthrough: output column -> declared Arrow type (row field named by
    # `columns` of the source when mapped there, else the same name).
    max_prompt_tokens: int | None = Field(None, ge=1)
    passthrough: dict[str, PassthroughType] = Field(default_factory=dict)


@dataclass(frozen=True)
class Prompt:
    prompt_ids: np.ndarray
    passthrough: dict[str, Any]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "int64": _is_int,
    "float64": lambda v: _is_int(v) or isinstance(v, float),
    "bool": lambda v: isinstance(v, bool),
}


def passthrough_value(value: Any, typ: str, field: str) -> Any:
    """The row's value in the declared type, or RowError(bad_passthrough)."""
    if value is None:
        return None
    if typ == "json":
        return json.dumps(value, ensure_ascii=False)
    item = typ[5:-1] if typ.startswith("list<") else None
    ok = (
        isinstance(value, list) and all(v is not None and _CHECKS[item](v) for v in value)
        if item is not None
        else _CHECKS[typ](value)
    )
    if not ok:
        raise RowError(
            BAD_PASSTHROUGH,
            f"passthrough {field!r} must be {typ}, got {json.dumps(value, default=str)[:80]}",
            field=field,
        )
    if typ == "float64":
        return float(value)
    if item == "float64":
        return [float(v) for v in value]
    return value


def table_builder(options: RlPromptsOptions) -> TableBuilder:
    import pyarrow as pa

    from shardprep.store.columns import int32_lists, source_column, source_row_column

    schema = SCHEMA.arrow(passthrough_fields(options))

    def build(prompts: list[Prompt], sources: list[str], source_rows: list[int]) -> pa.Table:
        cols = [
            int32_lists([p.prompt_ids for p in prompts]),
            pa.array([len(p.prompt_ids) for p in prompts], type=pa.int32()),
            source_column(sources),
            source_row_column(source_rows),
            *(
                pa.array([p.passthrough[name] for p in prompts], type=arrow_type(typ))
                for name, typ in options.passthrough.items()
            ),
        ]
        return pa.Table.from_arrays(cols, schema=schema)

    return build


def passthrough_fields(options: RlPromptsOptions) -> list[pa.Field]:
    import pyarrow as pa

    return [
        pa.field(name, arrow_type(typ), nullable=True) for name, typ in options.passthrough.items()
    ]


def prompt_messages(conv: list[Message]) -> list[Message]:
    """The conversation without a trailing assistant message (the answer the policy is to produce)."""
    return conv[:-1] if conv and conv[-1]["role"] == "assistant" else conv


class RlPromptsRunner:
    def __init__(self, io: UnitIO, options: RlPromptsOptions) -> None:
        self.io = io
        self.options = options
        from shardprep.tasks.conformance import Conformance

        self.conformance = Conformance.start(io)

    def _passthrough(self, row: Mapping[str, Any]) -> dict[str, Any]:
        src_cols = self.io.source.columns
        out = {}
        for name, typ in self.options.passthrough.items():
            field = src_cols.get(name, name)  # a source may map the column to its own field
            value = lookup(row, field)
            # Missing is an error (a typo would otherwise give a column of nulls); null is kept.
            if value is _MISSING:
                raise RowError(
                    "missing_field", f"the row has no passthrough field {field!r}", field=field
                )
            out[name] = passthrough_value(value, typ, field)
        return out

    def process(self, rows: list[RawRow]) -> None:
        from shardprep.encode.examples import DROP_OVERLONG
        from shardprep.encode.tokenize import render_prompt_batch

        io, src = self.io, self.io.source
        convs: list[list[Message]] = []
        metas: list[tuple[RawRow, dict[str, Any]]] = []
        for raw in io.readable(rows):
            data = raw.data or {}
            try:
                conv = prompt_messages(
                    to_conversation(data, format=src.format, columns=src.columns or None)
                )
                if not conv:
                    raise RowError(
                        "empty_conversation", "nothing is left before the final assistant message"
                    )
                extra = self._passthrough(data)
            except Exception as err:  # anything this row raises is its own counted failure
                io.skip_row(as_row_error(err), raw, row=raw.data)
                continue
            convs.append(conv)
            metas.append((raw, extra))
        if self.conformance is not None:
            self.conformance.add_prompts(convs, [io.source_row(raw) for raw, _ in metas])
        special: dict[int, tuple[str, ...]] = {}
        rendered = (
            render_prompt_batch(io.renderer, io.encoder, convs, special=special) if convs else []
        )
        io.count_special(special)
        for (raw, extra), res in zip(metas, rendered, strict=True):
            if isinstance(res, RowError):
                io.skip_row(res, raw, row=raw.data)
                continue
            if (
                self.options.max_prompt_tokens is not None
                and len(res) > self.options.max_prompt_tokens
            ):
                io.drop(DROP_OVERLONG, raw)
                continue
            io.count_example(len(res), 0, False)
            io.writers[io.split_of(raw)].add(
                Prompt(res, extra), io.source_name, io.source_row(raw), tokens=len(res), trained=0
            )

    def finish(self) -> None:
        if self.conformance is not None:
            self.conformance.finish()


class RlPromptsTask(Task[RlPromptsOptions]):
    name = "rl_prompts"
    description = "RL prompts: tinker's generation prompt of each conversation, plus typed passthrough columns"
    schema = SCHEMA
    options_model = RlPromptsOptions
    formats = CONVERSATION_FORMATS
    judges_masks = False

    def recipe_problems(self, recipe: Any) -> list[str]:
        problems = super().recipe_problems(recipe)
        # getattr: the options may have failed validation themselves (reported alongside).
        clash = sorted(RESERVED_COLUMNS & set(getattr(recipe.task_options, "passthrough", {})))
        if clash:
            problems.append(f"passthrough: {', '.join(clash)} are columns the task writes itself")
        return problems

    def extra_fields(self, options: RlPromptsOptions) -> list[pa.Field]:
        return passthrough_fields(options)

    def table_builder(self, options: RlPromptsOptions) -> TableBuilder:
        return table_builder(options)

    def runner(self, io: UnitIO) -> RlPromptsRunner:
        return RlPromptsRunner(io, self.options(io.recipe))

    def display_row(
        self, row: dict[str, Any], tok: LoadedTokenizer | None, *, split: str, index: int
    ) -> dict[str, Any]:
        """The prompt as an untrained sequence (so every view works); passthrough values under `prompt`."""
        import numpy as np

        from shardprep.encode.decode import row_payload

        ids = np.asarray(row["prompt_ids"], dtype=np.int32)
        sub = {
            "input_ids": ids[:1].tolist(),
            "target_ids": ids[1:].tolist(),
            "weights": [0.0] * max(0, len(ids) - 1),
            "source": row.get("source"),
            "source_row": row.get("source_row"),
            "shard": row.get("shard"),
        }
        out = row_payload(sub, tok, split=split, index=index)
        out["prompt"] = {k: v for k, v in row.items() if k not in (*RESERVED_COLUMNS, "shard")}
        return out
