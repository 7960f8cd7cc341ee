"""Work units: deterministic slices of the input, each turned into its own shards plus a done-marker.

A unit is a row range of one input file (or of one file shard of a Hub dataset). Units are cut
from row counts alone, so the same inputs always give the same units, whatever the worker count,
engine, or how often a build resumed. A unit writes its shards under names derived from its index,
then its marker (`_units/NNNNNN.json`); a unit with a marker is finished and is never redone.

Mixtures are planned here too: each source's skip / fraction / take become a `Selection` (a row
range plus a seeded hash filter) carried by its units, and `repeat` copies the source's units.
Every engine therefore reads exactly the same rows.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from shardprep.build.mixture import Selection, select, test_mask
from shardprep.encode.backends import renderer_probe, requested_encoder
from shardprep.encode.tokenize import BatchEncoder
from shardprep.errors import RowError
from shardprep.recipe import Recipe
from shardprep.renderers.registry import get_renderer
from shardprep.sources.base import Piece, RawRow
from shardprep.sources.source import Source, open_source
from shardprep.store.shards import ShardWriter
from shardprep.store.storage import Output
from shardprep.tasks import TASKS
from shardprep.tasks.base import UnitIO
from shardprep.tokenizer import LoadedTokenizer, load_tokenizer

UNITS_DIR = "_units"


@dataclass(frozen=True)
class WorkUnit:
    index: int
    source: int  # index into recipe.sources
    # The file (or Hub shard) the unit reads, with what reading it needs (where a plain JSONL
    # file's reading can start, the Hub commit): a worker reads it with nothing else recorded.
    piece: Piece
    start: int  # row range [start, stop) inside the piece
    stop: int
    source_row_base: int  # source-level row index of the piece's row 0
    ordinal_base: int  # build-level ordinal of the unit's first selected row (for the test split)
    selected: int = -1  # rows of the range the source's selection keeps (-1: all of them)
    selection: Selection | None = None  # None: every row of the range
    copy: int = 0  # repeat copy; copies > 0 leave out held-out (test) rows

    @property
    def file(self) -> str:
        return self.piece.label

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def kept(self) -> int:
        return self.rows if self.selected < 0 else self.selected


# `work_unit_rows: auto`: at least this many units when the input allows it, so every core of a
# machine has work until the end and the last unit is a small slice of the build.
AUTO_TARGET_UNITS = 64
AUTO_MIN_UNIT_ROWS = 128
AUTO_MAX_UNIT_ROWS = 4096


def unit_rows_for(setting: int | str, total_rows: int) -> int:
    """Rows per unit: fixed, or derived from the input size alone (never from the worker count)."""
    if setting != "auto":
        return int(setting)
    return max(AUTO_MIN_UNIT_ROWS, min(AUTO_MAX_UNIT_ROWS, -(-total_rows // AUTO_TARGET_UNITS)))


def plan_units(recipe: Recipe, sources: list[Source]) -> list[WorkUnit]:
    """`sources`: the recipe's sources, opened (`open_source`), in order."""
    units: list[WorkUnit] = []
    ordinal = 0  # selected rows of all earlier sources (copy 0 only: copies are not new rows)
    counted = [source.pieces() for source in sources]
    unit_rows = unit_rows_for(
        recipe.work_unit_rows, sum(p.rows for pieces in counted for p in pieces)
    )
    for si, src in enumerate(recipe.sources):
        pieces = counted[si]
        total = sum(p.rows for p in pieces)
        plain = not (src.skip or src.take is not None or src.fraction is not None)
        sel = (
            None
            if plain
            else select(
                total,
                name=src.resolved_name,
                seed=src.seed,
                skip=src.skip,
                take=src.take,
                fraction=src.fraction,
                repeat=src.repeat,
            )
        )
        # (piece from start, start, stop, source_row_base, selected) of copy 0
        cuts: list[tuple[Piece, int, int, int, int]] = []
        base = 0
        for piece in pieces:
            n = piece.rows
            lo, hi = (0, n) if sel is None else (max(0, sel.lo - base), min(n, sel.hi - base))
            step = max(1, hi - lo) if piece.whole else unit_rows
            for start in range(lo, hi, step):
                stop = min(hi, start + step)
                kept = stop - start if sel is None else sel.count(base + start, base + stop)
                if kept:
                    cuts.append((piece.from_row(start), start, stop, base, kept))
            base += n
        for copy in range(src.repeat):
            at = ordinal
            for piece, start, stop, row_base, kept in cuts:
                units.append(
                    WorkUnit(
                        len(units),
                        si,
                        piece,
                        start,
                        stop,
                        row_base,
                        at,
                        selected=kept if sel is not None else -1,
                        selection=sel,
                        copy=copy,
                    )
                )
                at += kept
        ordinal += sum(c[4] for c in cuts)
    return units


def selected_total(units: list[WorkUnit]) -> int:
    """Distinct selected input rows (repeat copies not counted): the test split's population."""
    return sum(u.kept for u in units if u.copy == 0)


def _raw_batches(unit: WorkUnit, source: Source, batch_size: int) -> Iterator[list[RawRow]]:
    """The unit's rows as RawRows whose `index` is the source row."""
    for batch in source.batches(unit.piece, unit.start, unit.stop, batch_size):
        for raw in batch:
            raw.index += unit.source_row_base
        yield batch


# A repeat copy of a held-out row: selected, but the test split holds each row once. Counted
# under this reason so that selected = written + dropped always holds (issue 17).
DROP_TEST_REPEAT = "repeat_of_test_row"


def unit_batches(ctx: UnitContext, unit: WorkUnit) -> Any:
    """(selected rows, source rows held out for test, repeat copies left out) per batch; ordinals
    set on each row."""
    recipe = ctx.recipe
    src = recipe.sources[unit.source]
    split = recipe.split
    ordinal = unit.ordinal_base
    for batch in _raw_batches(unit, open_source(src, ctx.base_dir), recipe.batch_size):
        rows = np.fromiter((r.index for r in batch), dtype=np.int64, count=len(batch))
        if unit.selection is not None:
            keep = unit.selection.mask(rows)
            batch = [r for r, k in zip(batch, keep, strict=True) if k]
            rows = rows[keep]
        for raw in batch:
            raw.ordinal = ordinal
            ordinal += 1
        if split.test_fraction is not None:
            flags = test_mask(split.seed, src.resolved_name, rows, split.test_fraction)
            test = {int(r) for r in rows[flags]}
        else:
            test = {r.index for r in batch if r.ordinal in ctx.test_ordinals}
        left_out: list[Any] = []
        if unit.copy > 0 and test:
            # Held-out rows are evaluated once; repeating them would only weight the test split.
            left_out = [r for r in batch if r.index in test]
            batch = [r for r in batch if r.index not in test]
        yield batch, test, left_out


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
    # The first rows of each drop or skip reason (UnitIO.drop_samples).
    drop_samples: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)  # task-specific totals (UnitIO.counters)
    # Rows whose message text spells added tokens the renderer encodes as ids (per literal, all).
    special_tokens: dict[str, int] = field(default_factory=dict)
    special_token_rows: int = 0
    extras: dict[str, Any] = field(default_factory=dict)  # task-specific records (UnitIO.extras)

    def to_json(self) -> str:
        # The fields as they are (JSON-ready): asdict would deep-copy every shard's row facts.
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> UnitResult:
        data = json.loads(text)
        data["length_log2"] = {int(k): v for k, v in data["length_log2"].items()}
        return cls(**data)


def marker_path(data_dir: str, index: int) -> str:
    return f"{data_dir}/{UNITS_DIR}/{index:06d}.json"


def unit_of_shard(rel: str) -> int | None:
    """The unit that wrote a unit shard (`{split}-{unit:06d}-{k:04d}.*`), None for another name."""
    parts = rel.rsplit("/", 1)[-1].split("-")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def unit_encoder(recipe: Recipe, tok: LoadedTokenizer, renderer: Any) -> BatchEncoder:
    """The build's encoder, probed with the renderer's constants: the same choice in every process."""
    return BatchEncoder(
        tok,
        encoder=requested_encoder(None, recipe.encoder),
        probe=renderer_probe(renderer),
        special_tokens_in_content=recipe.special_tokens_in_content,
    )


def encoder_record(results: list[UnitResult]) -> dict[str, Any] | None:
    """The encoder the units used, as one manifest record ("a+b" when a resumed build mixed)."""
    seen = [r.extras["encoder"] for r in results if r.extras.get("encoder")]
    if not seen:
        return None
    record = dict(seen[0])
    record["name"] = "+".join(sorted({e["name"] for e in seen}))
    return record


@dataclass
class UnitContext:
    """What every unit needs; loaded once per process (tokenizer, renderer) and small to pickle."""

    recipe: Recipe
    base_dir: Path
    output_url: str
    data_dir: str
    test_ordinals: frozenset[int]
    conformance_rows: int | None = None  # each unit's share of the recipe's conformance_rows
    _loaded: tuple[Any, Any, Output] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_loaded"] = None
        return state

    def loaded(self) -> tuple[Any, BatchEncoder, Output]:
        if self._loaded is None:
            tok = load_tokenizer(self.recipe.tokenizer, base_dir=self.base_dir)
            renderer = get_renderer(
                self.recipe.renderer.name, tok, dict(self.recipe.renderer.options)
            )
            output = Output(self.output_url, storage_options=self.recipe.output_storage_options)
            self._loaded = (renderer, unit_encoder(self.recipe, tok, renderer), output)
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


class _FactSink:
    """A unit's shard writer that also takes, for dedup / decontaminate, the facts of every
    table added (from the table in memory, in parallel: build/dedup.py's RowFacts)."""

    def __init__(self, writer: ShardWriter, facts_of: Any) -> None:
        self.writer, self.facts_of = writer, facts_of
        self.parts: list[Any] = []
        self.records = False  # rows added one by one (rl_prompts): facts read back instead

    def add(self, record: Any, source: str, source_row: int, *, tokens: int, trained: int) -> None:
        self.records = True
        self.writer.add(record, source, source_row, tokens=tokens, trained=trained)

    def add_table(self, table: Any, tokens: np.ndarray, trained: np.ndarray) -> None:
        self.parts.append(self.facts_of(table, tokens=tokens, trained=trained))
        self.writer.add_table(table, tokens, trained)


def _row_facts(ctx: UnitContext, encoder: BatchEncoder) -> Any:
    """RowFacts.of_table for this build's schema, dedup and eval n-grams."""
    from functools import partial

    from shardprep.build.dedup import RowFacts, eval_ngrams

    recipe = ctx.recipe
    task = TASKS[recipe.task]
    spec = recipe.decontaminate
    return partial(
        RowFacts.of_table,
        schema=task.schema_for(task.options(recipe)),
        dedup=recipe.dedup == "exact",
        evals=eval_ngrams(spec, ctx.base_dir, encoder) if spec is not None else None,
    )


def _filter_facts(
    result: UnitResult, sinks: dict[str, _FactSink], facts_of: Any, output: Output
) -> None:
    """Each written shard's RowFacts into its entry (`filter`): cut from the tables its sink
    saw, in order, or read back from the shard where rows came one by one."""
    from shardprep.build.compact import read_unit_shard
    from shardprep.build.dedup import RowFacts

    for split, entries in result.shards.items():
        sink = sinks[split]
        total = sum(e["rows"] for e in entries)
        whole = RowFacts.concat(sink.parts) if sink.parts and not sink.records else None
        if whole is not None and len(whole.rows) != total:
            whole = None  # not the rows the shards hold: take them from the shards
        at = 0
        for entry in entries:
            n = entry["rows"]
            if not n:
                continue
            facts = (
                whole.slice(at, at + n)
                if whole is not None
                else facts_of(read_unit_shard(output, entry))
            )
            entry["filter"] = facts.to_json()
            at += n


def run_unit(ctx: UnitContext, unit: WorkUnit) -> UnitResult:
    """Read one unit's rows, let the task turn them into records, write shards; the marker last."""
    t0 = time.monotonic()
    recipe = ctx.recipe
    renderer, encoder, output = ctx.loaded()
    task = TASKS[recipe.task]
    to_table = task.table_builder(task.options(recipe))
    src = recipe.sources[unit.source]
    result = UnitResult(index=unit.index, source=src.resolved_name)
    skip = _Skip(ctx, result)
    writers: dict[str, ShardWriter] = {
        split: ShardWriter(
            output,
            ctx.data_dir,
            f"{split}-{unit.index:06d}",
            recipe.shards.max_rows,
            recipe.shards.max_bytes,
            recipe.shards.row_group_rows,
            to_table=to_table,
        )
        for split in ("train", "test")
    }
    # dedup / decontaminate: each table's row facts, taken as it is written (build/dedup.py).
    facts_of = (
        _row_facts(ctx, encoder)
        if recipe.dedup != "none" or recipe.decontaminate is not None
        else None
    )
    sinks = {split: _FactSink(w, facts_of) for split, w in writers.items()} if facts_of else {}
    io = UnitIO(
        recipe=recipe,
        source=src,
        source_name=src.resolved_name,
        renderer=renderer,
        encoder=encoder,
        writers=dict(sinks or writers),
        skip=skip,
        split_of=lambda raw: "test" if raw.index in held_out else "train",
        source_row=lambda raw: raw.index,
        dropped=skip.dropped,
        conformance_rows=ctx.conformance_rows,
    )
    runner = task.runner(io)
    held_out: set[int] = set()
    for batch, test, left_out in unit_batches(ctx, unit):
        held_out = test  # read by split_of for this batch's rows
        runner.process(batch)
        for raw in left_out:
            io.drop(DROP_TEST_REPEAT, raw)
        result.rows_read += len(batch) + len(left_out)
    runner.finish()
    for split, w in writers.items():
        w.flush()
        result.shards[split] = [s.to_json() for s in w.shards]
    if facts_of is not None:
        _filter_facts(result, sinks, facts_of, output)
    result.extras = dict(io.extras)
    # Which encoder made this unit's ids, for the manifest (a resumed build may mix them).
    result.extras["encoder"] = encoder.selection.describe()
    result.examples, result.tokens, result.trained_tokens = (
        io.examples,
        io.tokens,
        io.trained_tokens,
    )
    result.truncated = io.truncated
    result.dropped = dict(io.dropped)
    result.length_log2 = dict(io.length_log2)
    result.counters = dict(io.counters)
    result.drop_samples = io.drop_samples
    result.special_tokens = dict(io.special_tokens)
    result.special_token_rows = io.special_token_rows
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
        if all(
            output.exists(s["path"]) and output.fs.size(output.path(s["path"])) == s["bytes"]
            for s in shards
        ):
            done[res.index] = res
    return done
