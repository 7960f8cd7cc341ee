"""Shard schemas: the on-disk contract of each task's rows, shared by writer, inspector and reader.

A schema is named `task/version` (`sft/1`) in the manifest and in each Parquet file's metadata.
Its `sequences` are the column prefixes of the token sequences a row holds (each prefix has
`input_ids`, `target_ids`, `weights`, `length`): `""` for one sequence, `"chosen_"` and
`"rejected_"` for a pair, none for a prompt row. Readers and mask health use them instead of
knowing any task by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_METADATA_KEY = "shardprep.schema"


def source_fields() -> tuple[pa.Field, ...]:
    """The source name and row of each row (every schema ends with them)."""
    import pyarrow as pa

    return (
        pa.field("source", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("source_row", pa.int64(), nullable=False),
    )


def sequence_fields(prefix: str = "") -> tuple[pa.Field, ...]:
    """input_ids / target_ids / weights lists of one sequence (tinker's datum, shifted)."""
    import pyarrow as pa

    return (
        pa.field(f"{prefix}input_ids", pa.list_(pa.int32()), nullable=False),
        pa.field(f"{prefix}target_ids", pa.list_(pa.int32()), nullable=False),
        pa.field(f"{prefix}weights", pa.list_(pa.float32()), nullable=False),
    )


@dataclass(frozen=True)
class ShardSchema:
    id: str  # "sft/1"
    # Makes the Arrow fields on first use (`fields`): the schemas sit in TASKS, which a recipe
    # needs, and pyarrow should load only where rows are read or written (a no-op build never).
    make_fields: Callable[[], Sequence[pa.Field]] = field(compare=False, repr=False)
    # Column prefixes of the trained sequences a row holds ("" = input_ids/target_ids/weights/length).
    sequences: tuple[str, ...] = ("",)
    # Columns whose lengths a token-budget sampler reads (one per sequence, or the prompt's).
    length_columns: tuple[str, ...] = ("length",)
    # Token-id columns a reader may hand out as tensors.
    token_columns: tuple[str, ...] = ("input_ids", "target_ids", "weights")
    # Whether a recipe can add typed columns after `fields` (rl_prompts' passthrough).
    open_ended: bool = False

    @cached_property
    def fields(self) -> tuple[pa.Field, ...]:
        return tuple(self.make_fields())

    def arrow(self, extra: Sequence[pa.Field] = ()) -> pa.Schema:
        import pyarrow as pa

        if extra and not self.open_ended:
            raise ValueError(f"schema {self.id} has no room for extra columns")
        return pa.schema([*self.fields, *extra], metadata={SCHEMA_METADATA_KEY: self.id})

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def problems(self, actual: pa.Schema, extra: Sequence[pa.Field] = ()) -> list[str]:
        """How a file's schema differs from this one (empty when it matches exactly)."""
        expected = self.arrow(extra)
        if actual.remove_metadata().equals(expected.remove_metadata()):
            return []
        have = {f.name: f for f in actual}
        out = []
        for f in expected:
            if f.name not in have:
                out.append(f"column {f.name!r} missing")
            elif not have[f.name].type.equals(f.type):
                out.append(
                    f"column {f.name!r} is {have[f.name].type}, schema {self.id} says {f.type}"
                )
        names = {f.name for f in expected}
        out += [f"unexpected column {n!r}" for n in have if n not in names]
        return out or [f"column order differs from schema {self.id}"]
