"""What a task's runner gets from its unit: writers, error policy, counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shardprep.errors import RowError
from shardprep.recipe import Recipe, SourceSpec
from shardprep.sources.files import RawRow
from shardprep.store.shards import ShardWriter


class SkipFn(Protocol):
    def __call__(self, err: RowError, *, file: str, line: int | None, row: Any) -> None: ...


@dataclass
class UnitIO:
    recipe: Recipe
    source: SourceSpec
    source_name: str
    renderer: Any
    encoder: Any
    writers: dict[str, ShardWriter]
    skip: SkipFn
    split_of: Callable[[RawRow], str]  # "train" or "test"
    source_row: Callable[[RawRow], int]
    dropped: Counter[str] = field(default_factory=Counter)
    # per written example: (input tokens, trained tokens, truncated)
    examples: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    truncated: int = 0
    length_log2: Counter[int] = field(default_factory=Counter)
    # Task-specific totals for the manifest's stats.task_counters (pretrain: documents, remainder).
    counters: Counter[str] = field(default_factory=Counter)
    # Task-specific records for the manifest (sft: the template conformance sample).
    extras: dict[str, Any] = field(default_factory=dict)

    def readable(self, rows: list[RawRow]) -> list[RawRow]:
        """The rows that were read without error; the others go through the on_error policy."""
        good = []
        for raw in rows:
            if raw.error is not None:
                self.skip(raw.error, file=raw.file, line=raw.line, row=None)
            else:
                good.append(raw)
        return good

    def count_example(self, n_tokens: int, n_trained: int, truncated: bool) -> None:
        self.examples += 1
        self.tokens += n_tokens
        self.trained_tokens += n_trained
        self.truncated += truncated
        self.length_log2[max(0, (n_tokens - 1).bit_length())] += 1


class Runner(Protocol):
    def process(self, rows: list[RawRow]) -> None: ...
    def finish(self) -> None: ...
