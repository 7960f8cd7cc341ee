"""Work units: deterministic slices of the input, each turned into its own shards plus a done-marker.

A unit is a row range of one input file. Units are cut from row counts alone, so the same inputs
always give the same units, whatever the worker count, engine, or how often a build resumed. A unit
writes its shards under names derived from its index, then its marker (`_units/NNNNNN.json`); a
unit with a marker is finished and is never redone.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shardprep.errors import RowError
from shardprep.pipeline.shards import ShardWriter
from shardprep.pipeline.sources import count_rows_per_file, iter_source_batches
from shardprep.pipeline.storage import Output
from shardprep.pipeline.tasks import task_module
from shardprep.pipeline.tasks.base import UnitIO
from shardprep.pipeline.tokenize import BatchEncoder
from shardprep.pipeline.tokenizer import load_tokenizer
from shardprep.recipe import Recipe
from shardprep.renderers.registry import get_renderer

UNITS_DIR = "_units"


@dataclass(frozen=True)
class WorkUnit:
    index: int
    source: int  # index into recipe.sources
    file: str
    start: int  # row range [start, stop) inside `file`
    stop: int
    source_row_base: int  # source-level row index of the file's row 0
    ordinal_base: int  # build-level row ordinal of the file's row 0 (for the test split)

    @property
    def rows(self) -> int:
        return self.stop - self.start


def plan_units(recipe: Recipe, base_dir: Path, resolve: Any) -> list[WorkUnit]:
    units: list[WorkUnit] = []
    ordinal = 0
    for si, src in enumerate(recipe.sources):
        source_row = 0
        files = count_rows_per_file(
            resolve(src.path), base_dir=base_dir, storage_options=src.storage_options, file_format=src.file_format
        )
        for url, n in files:
            for start in range(0, n, recipe.work_unit_rows):
                stop = min(n, start + recipe.work_unit_rows)
                units.append(WorkUnit(len(units), si, url, start, stop, source_row, ordinal))
            source_row += n
            ordinal += n
    return units


@dataclass
class UnitResult:
    index: int
    source: str
    rows_read: int = 0
    examples: int = 0
    tokens: int = 0  # input tokens of the written examples
    trained_tokens: int = 0
    truncated: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    length_log2: dict[int, int] = field(default_factory=dict)
    shards: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> UnitResult:
        data = json.loads(text)
        data["length_log2"] = {int(k): v for k, v in data["length_log2"].items()}
        return cls(**data)


def marker_path(data_dir: str, index: int) -> str:
    return f"{data_dir}/{UNITS_DIR}/{index:06d}.json"


@dataclass
class UnitContext:
    """What every unit needs; loaded once per process (tokenizer, renderer) and small to pickle."""

    recipe: Recipe
    base_dir: Path
    output_url: str
    data_dir: str
    test_ordinals: frozenset[int]
    sources: list[str]  # resolved source paths (unused by units, kept for errors)
    _loaded: tuple[Any, Any, Output] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_loaded"] = None
        return state

    def loaded(self) -> tuple[Any, BatchEncoder, Output]:
        if self._loaded is None:
            tok = load_tokenizer(self.recipe.tokenizer, base_dir=self.base_dir)
            renderer = get_renderer(self.recipe.renderer.name, tok, dict(self.recipe.renderer.options))
            self._loaded = (renderer, BatchEncoder(tok), Output(self.output_url))
        return self._loaded


class _Skip:
    def __init__(self, ctx: UnitContext, result: UnitResult) -> None:
        self.fail = ctx.recipe.on_error == "fail"
        self.limit = ctx.recipe.skipped_sample
        self.result = result
        self.dropped: Counter[str] = Counter()

    def __call__(self, err: RowError, *, file: str, line: int | None, row: Any) -> None:
        err.located(file=file, line=line)
        if self.fail:
            raise err
        self.dropped[err.reason] += 1
        if len(self.result.skipped) < self.limit:
            text = json.dumps(row, ensure_ascii=False, default=str) if row is not None else None
            self.result.skipped.append(
                {
                    "source": self.result.source,
                    "file": file,
                    "line": line,
                    "field": err.field,
                    "reason": err.reason,
                    "message": err.message,
                    "row": text[:2000] if text else None,
                }
            )


def run_unit(ctx: UnitContext, unit: WorkUnit) -> UnitResult:
    """Read one unit's rows, let the task turn them into records, write shards; the marker last."""
    t0 = time.monotonic()
    recipe = ctx.recipe
    renderer, encoder, output = ctx.loaded()
    task = task_module(recipe.task)
    src = recipe.sources[unit.source]
    result = UnitResult(index=unit.index, source=src.resolved_name)
    skip = _Skip(ctx, result)
    writers = {
        split: ShardWriter(
            output,
            ctx.data_dir,
            f"{split}-{unit.index:06d}",
            recipe.shards.max_rows,
            recipe.shards.max_bytes,
            recipe.shards.row_group_rows,
            to_table=task.to_table,
        )
        for split in ("train", "test")
    }
    io = UnitIO(
        recipe=recipe,
        source=src,
        source_name=src.resolved_name,
        renderer=renderer,
        encoder=encoder,
        writers=writers,
        skip=skip,
        split_of=lambda raw: "test" if (unit.ordinal_base + raw.index) in ctx.test_ordinals else "train",
        source_row=lambda raw: unit.source_row_base + raw.index,
        dropped=skip.dropped,
    )
    runner = task.Runner(io)
    for batch in iter_source_batches(
        unit.file, storage_options=src.storage_options, batch_size=recipe.batch_size,
        file_format=src.file_format, start=unit.start, stop=unit.stop,
    ):
        runner.process(batch)
        result.rows_read += len(batch)
    runner.finish()
    for split, w in writers.items():
        w.flush()
        result.shards[split] = [s.to_json() for s in w.shards]
    result.examples, result.tokens, result.trained_tokens = io.examples, io.tokens, io.trained_tokens
    result.truncated = io.truncated
    result.dropped = dict(io.dropped)
    result.length_log2 = dict(io.length_log2)
    result.elapsed_s = round(time.monotonic() - t0, 4)
    output.write_text_atomic(marker_path(ctx.data_dir, unit.index), result.to_json())
    return result


def load_done(output: Output, data_dir: str) -> dict[int, UnitResult]:
    """Markers of finished units whose shards are all present with their recorded size."""
    done: dict[int, UnitResult] = {}
    for name in output.listdir(f"{data_dir}/{UNITS_DIR}"):
        if not name.endswith(".json"):
            continue
        try:
            res = UnitResult.from_json(output.read_text(f"{data_dir}/{UNITS_DIR}/{name}"))
        except (ValueError, KeyError, TypeError):
            continue  # a torn marker is an unfinished unit
        shards = [s for v in res.shards.values() for s in v]
        if all(output.exists(s["path"]) and output.fs.size(output.path(s["path"])) == s["bytes"] for s in shards):
            done[res.index] = res
    return done
