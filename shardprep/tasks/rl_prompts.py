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
from typing import Any

import numpy as np
import pyarrow as pa

from shardprep.encode.examples import DROP_OVERLONG
from shardprep.encode.tokenize import render_prompt_batch
from shardprep.errors import RowError
from shardprep.formats import to_conversation
from shardprep.formats._common import _MISSING, lookup
from shardprep.recipe import Recipe
from shardprep.sources.files import RawRow
from shardprep.store.columns import SOURCE_FIELDS, int32_lists, source_column
from shardprep.tasks.base import UnitIO

SCHEMA = "rl_prompts/1"
BAD_PASSTHROUGH = "bad_passthrough"

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "json": pa.string(),
    "list<string>": pa.list_(pa.string()),
    "list<int64>": pa.list_(pa.int64()),
    "list<float64>": pa.list_(pa.float64()),
}

_BASE_FIELDS = [
    pa.field("prompt_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("length", pa.int32(), nullable=False),
    *SOURCE_FIELDS,
]
# Without passthrough columns (the module-level schema; a recipe's own is `arrow_schema(recipe)`).
ARROW_SCHEMA = pa.schema(_BASE_FIELDS, metadata={"shardprep.schema": SCHEMA})


def arrow_schema(passthrough: Mapping[str, str]) -> pa.Schema:
    extra = [pa.field(name, ARROW_TYPES[typ], nullable=True) for name, typ in passthrough.items()]
    return pa.schema([*_BASE_FIELDS, *extra], metadata={"shardprep.schema": SCHEMA})


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
        raise RowError(BAD_PASSTHROUGH, f"passthrough {field!r} must be {typ}, got {json.dumps(value, default=str)[:80]}", field=field)
    if typ == "float64":
        return float(value)
    if item == "float64":
        return [float(v) for v in value]
    return value


def table_builder(recipe: Recipe) -> Any:
    schema = arrow_schema(recipe.passthrough)

    def build(prompts: list[Prompt], sources: list[str], source_rows: list[int]) -> pa.Table:
        cols = [
            int32_lists([p.prompt_ids for p in prompts]),
            pa.array([len(p.prompt_ids) for p in prompts], type=pa.int32()),
            source_column(sources),
            pa.array(source_rows, type=pa.int64()),
            *(pa.array([p.passthrough[name] for p in prompts], type=ARROW_TYPES[typ]) for name, typ in recipe.passthrough.items()),
        ]
        return pa.Table.from_arrays(cols, schema=schema)

    return build


def to_table(prompts: list[Prompt], sources: list[str], source_rows: list[int]) -> pa.Table:
    """The table without passthrough columns (run_unit uses the recipe's own via `Runner`)."""
    return pa.Table.from_arrays(
        [int32_lists([p.prompt_ids for p in prompts]), pa.array([len(p.prompt_ids) for p in prompts], type=pa.int32()),
         source_column(sources), pa.array(source_rows, type=pa.int64())],
        schema=ARROW_SCHEMA,
    )


def prompt_messages(conv: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation without a trailing assistant message (the answer the policy is to produce)."""
    return conv[:-1] if conv and conv[-1]["role"] == "assistant" else conv


class Runner:
    def __init__(self, io: UnitIO) -> None:
        self.io = io
        # Shards of this task carry the recipe's passthrough columns.
        build = table_builder(io.recipe)
        for w in io.writers.values():
            w.to_table = build

    def _passthrough(self, row: Mapping[str, Any]) -> dict[str, Any]:
        src_cols = self.io.source.columns
        out = {}
        for name, typ in self.io.recipe.passthrough.items():
            field = src_cols.get(name, name)  # a source may map the column to its own field
            value = lookup(row, field)
            # Missing is an error (a typo would otherwise give a column of nulls); null is kept.
            if value is _MISSING:
                raise RowError("missing_field", f"the row has no passthrough field {field!r}", field=field)
            out[name] = passthrough_value(value, typ, field)
        return out

    def process(self, rows: list[RawRow]) -> None:
        io, recipe, src = self.io, self.io.recipe, self.io.source
        convs, metas = [], []
        for raw in io.readable(rows):
            data = raw.data or {}
            try:
                conv = prompt_messages(to_conversation(data, format=src.format, columns=src.columns or None))
                if not conv:
                    raise RowError("empty_conversation", "nothing is left before the final assistant message")
                extra = self._passthrough(data)
            except RowError as err:
                io.skip(err, file=raw.file, line=raw.line, row=raw.data)
                continue
            convs.append(conv)
            metas.append((raw, extra))
        rendered = render_prompt_batch(io.renderer, io.encoder, convs) if convs else []
        for (raw, extra), res in zip(metas, rendered, strict=True):
            if isinstance(res, RowError):
                io.skip(res, file=raw.file, line=raw.line, row=raw.data)
                continue
            if recipe.max_prompt_tokens is not None and len(res) > recipe.max_prompt_tokens:
                io.dropped[DROP_OVERLONG] += 1
                continue
            io.count_example(len(res), 0, False)
            io.writers[io.split_of(raw)].add(Prompt(res, extra), io.source_name, io.source_row(raw), tokens=len(res), trained=0)

    def finish(self) -> None:
        pass
