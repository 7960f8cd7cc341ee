"""What a task is: one object owning its options, formats, shard schema, checks, row loop and display.

The build, `prep validate`, `prep preview`, `prep show`, `prep verify` and the torch reader all go
through a `Task` from `TASKS`; none of them knows a task by name. A task's runner is the only row
loop (parse, render, encode, mask, count, write): the build hands it shard writers, preview hands
it in-memory writers, so preview shows exactly what the build writes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, cast

from pydantic import BaseModel, ConfigDict

from shardprep.errors import RowError
from shardprep.sources.base import RawRow
from shardprep.store.schemas import ShardSchema
from shardprep.tokenizer import LoadedTokenizer

if TYPE_CHECKING:
    import pyarrow as pa

    # The recipe validates task options through TASKS, so it sits above tasks.
    from shardprep.recipe import Recipe, SourceSpec

    # Types only: a recipe loads TASKS, and pyarrow and numpy load where rows are written.
    from shardprep.store.shards import RowSink, TableBuilder


class TaskOptions(BaseModel):
    """A task's own recipe keys (written at the recipe's top level); part of the fingerprint."""

    model_config = ConfigDict(extra="forbid", frozen=True)


OptionsT = TypeVar("OptionsT", bound=TaskOptions)

# Dropped or skipped rows kept as a sample, per reason and work unit (and per source in the manifest).
DROP_SAMPLES_PER_REASON = 3


class SkipFn(Protocol):
    def __call__(self, err: RowError, *, file: str, line: int | None, row: Any) -> None: ...


@dataclass
class UnitIO:
    """What a runner gets from whoever drives it (a build's work unit, or preview)."""

    recipe: Recipe
    source: SourceSpec
    source_name: str
    renderer: Any
    encoder: Any
    writers: dict[str, RowSink]
    skip: SkipFn
    split_of: Callable[[RawRow], str]  # "train" or "test"
    source_row: Callable[[RawRow], int]
    dropped: Counter[str] = field(default_factory=Counter)
    examples: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    truncated: int = 0
    length_log2: Counter[int] = field(default_factory=Counter)
    # Task-specific totals for the manifest's stats.task_counters (pretrain: documents, remainder).
    counters: Counter[str] = field(default_factory=Counter)
    # Task-specific records for the manifest (the template conformance sample).
    extras: dict[str, Any] = field(default_factory=dict)
    # Told of each dropped row (preview lists them); the build only counts.
    on_drop: Callable[[str, RawRow], None] | None = None
    # Rows of this run compared with the model's chat_template: a build's unit gets its share
    # of the recipe's `conformance_rows`; None (preview) takes them all.
    conformance_rows: int | None = None
    # The first rows of each reason this run dropped or skipped, with source row, file and line:
    # what the build summary, the manifest (sources[].drop_samples) and `prep show` point at.
    drop_samples: list[dict[str, Any]] = field(default_factory=list)
    _sampled: Counter[str] = field(default_factory=Counter)
    # Rows whose message text spells added tokens the renderer encodes as ids, per literal, and
    # in all (encode/special.py; counted under every special_tokens_in_content policy).
    special_tokens: Counter[str] = field(default_factory=Counter)
    special_token_rows: int = 0

    def drop(self, reason: str, raw: RawRow) -> None:
        """A row read fine that writes nothing (overlong, nothing trained, a tie): counted by reason."""
        self.dropped[reason] += 1
        self._sample(reason, raw)
        if self.on_drop is not None:
            self.on_drop(reason, raw)

    def skip_row(self, err: RowError, raw: RawRow, *, row: Any = None) -> None:
        """One bad row through the on_error policy, located in its file by the row's own unit
        (a JSON array's element, a Parquet row: never called a line)."""
        err.located(file=raw.file, line=raw.line, unit=raw.unit)
        self.skip(err, file=raw.file, line=raw.line, row=row)
        self._sample(err.reason, raw, err.message)

    def _sample(self, reason: str, raw: RawRow, message: str | None = None) -> None:
        if self._sampled[reason] >= DROP_SAMPLES_PER_REASON:
            return
        self._sampled[reason] += 1
        sample = {
            "reason": reason,
            "row": self.source_row(raw),
            "file": raw.file,
            "line": raw.line,
            "unit": raw.unit,  # what `line` counts: line, element (JSON array) or row
        }
        self.drop_samples.append({**sample, "message": message} if message else sample)

    def readable(self, rows: list[RawRow]) -> list[RawRow]:
        """The rows that were read without error; the others go through the on_error policy."""
        good = []
        for raw in rows:
            if raw.error is not None:
                self.skip_row(raw.error, raw)
            else:
                good.append(raw)
        return good

    def count_special(self, found: Mapping[int, Sequence[str]]) -> None:
        """Count the rows of a render's `special` ({row: literals}), each once per literal."""
        for tokens in found.values():
            self.special_token_rows += 1
            self.special_tokens.update(tokens)

    def count_example(
        self, n_tokens: int, n_trained: int, truncated: bool, *, length: int | None = None
    ) -> None:
        """`length`: what the length histogram buckets, when it is not `n_tokens` (a pair counts
        both sides' tokens but is as long as its longer side, which max_length bounds)."""
        self.examples += 1
        self.tokens += n_tokens
        self.trained_tokens += n_trained
        self.truncated += truncated
        n = n_tokens if length is None else length
        self.length_log2[max(0, (n - 1).bit_length())] += 1


class Runner(Protocol):
    def process(self, rows: list[RawRow]) -> None: ...
    def finish(self) -> None: ...


class Task(ABC, Generic[OptionsT]):
    """One kind of training data. Subclasses set the class attributes and implement the runner."""

    name: ClassVar[str]
    schema: ClassVar[ShardSchema]
    # Schemas some options write instead of `schema` (sft's per-turn rows); `schema_for` picks.
    variant_schemas: ClassVar[tuple[ShardSchema, ...]] = ()
    options_model: ClassVar[type[TaskOptions]]
    formats: ClassVar[tuple[str, ...]]
    description: ClassVar[str]
    # Recipe keys whose default differs for this task (dpo: train_on).
    recipe_defaults: ClassVar[dict[str, Any]] = {}
    # Whether a row's trained share says something about its mask (not for blocks or prompts).
    judges_masks: ClassVar[bool] = True

    def options(self, recipe: Recipe) -> OptionsT:
        return cast(OptionsT, recipe.task_options)

    def recipe_problems(self, recipe: Recipe) -> list[str]:
        """Problems visible in the recipe alone, each starting with its YAML path."""
        return [
            f"sources[{i}].format: task {self.name} reads {', '.join(self.formats)} (got {src.format!r})"
            for i, src in enumerate(recipe.sources)
            if src.format not in self.formats
        ]

    def check(self, recipe: Recipe, tokenizer: LoadedTokenizer) -> list[str]:
        """Problems with this tokenizer, found before any row is read (validate and build run it)."""
        return []

    def extra_fields(self, options: OptionsT) -> Sequence[pa.Field]:
        """Columns the recipe adds after the schema's own (rl_prompts' passthrough)."""
        return ()

    def schema_for(self, options: OptionsT) -> ShardSchema:
        """The schema a build with these options writes (and its manifest names)."""
        return self.schema

    def shard_schema(self, schema_id: str) -> ShardSchema | None:
        """This task's schema with that id, if it has one."""
        return next((s for s in (self.schema, *self.variant_schemas) if s.id == schema_id), None)

    def arrow_schema(self, options: OptionsT) -> pa.Schema:
        return self.schema_for(options).arrow(self.extra_fields(options))

    def counter_summary(self, counters: Mapping[str, int]) -> dict[str, Any]:
        """Figures derived from the summed `UnitIO.counters` (manifest stats.task_summary)."""
        return {}

    def counter_warnings(
        self, counters: Mapping[str, int], recipe_json: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """Warnings ({code, message, ...}) the summed counters call for (build summary, show, preview)."""
        return []

    def options_from_manifest(self, recipe_json: dict[str, Any]) -> OptionsT:
        keys = self.options_model.model_fields
        return cast(
            OptionsT,
            self.options_model.model_validate({k: v for k, v in recipe_json.items() if k in keys}),
        )

    @abstractmethod
    def table_builder(self, options: OptionsT) -> TableBuilder: ...

    @abstractmethod
    def runner(self, io: UnitIO) -> Runner: ...

    @abstractmethod
    def display_row(
        self, row: dict[str, Any], tok: LoadedTokenizer | None, *, split: str, index: int
    ) -> dict[str, Any]:
        """A stored row as the views show it (decoded spans, sides, documents)."""
