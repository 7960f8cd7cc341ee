"""`prep build`: recipe -> shards + manifest, with reuse of an up-to-date build."""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shardprep import FORMAT_VERSION, __version__
from shardprep.errors import BuildError, RowError, SourceError
from shardprep.pipeline.examples import Example, make_example
from shardprep.pipeline.formats import to_conversation
from shardprep.pipeline.manifest import FORMAT_NAME, fingerprint, read_manifest, write_manifest
from shardprep.pipeline.shards import ShardWriter
from shardprep.pipeline.sources import count_rows, expand_paths, file_identity, iter_source_batches
from shardprep.pipeline.storage import Output
from shardprep.pipeline.tokenize import BatchEncoder, render_supervised_batch
from shardprep.pipeline.tokenizer import LoadedTokenizer, load_tokenizer
from shardprep.recipe import Recipe, SourceSpec
from shardprep.renderers.base import TrainOnWhat
from shardprep.renderers.registry import get_renderer


class ProgressSink(Protocol):
    def start(self, total_rows: int | None) -> None: ...
    def advance(self, rows: int, tokens: int) -> None: ...
    def finish(self) -> None: ...


class _NoProgress:
    def start(self, total_rows: int | None) -> None:
        pass

    def advance(self, rows: int, tokens: int) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class BuildResult:
    status: str  # "built" | "up_to_date"
    output: str
    manifest: dict[str, Any]


def _resolve_path(path: str, base_dir: Path) -> str:
    if "://" in path:
        return path
    return os.path.normpath(path if Path(path).is_absolute() else base_dir / path)


@dataclass
class Plan:
    """Everything resolved before the first row is read: tokenizer, renderer, inputs, fingerprint."""

    recipe: Recipe
    base_dir: Path
    tokenizer: LoadedTokenizer
    renderer: Any
    output: Output
    source_files: dict[str, list[dict[str, Any]]]
    fingerprint: str
    fingerprint_parts: dict[str, Any]

    @property
    def data_dir(self) -> str:
        return f"data-{self.fingerprint[:12]}"


def plan_build(recipe: Recipe, base_dir: Path) -> Plan:
    tokenizer = load_tokenizer(recipe.tokenizer, base_dir=base_dir)
    renderer = get_renderer(recipe.renderer.name, tokenizer, dict(recipe.renderer.options))
    renderer.check_tokenizer()  # before the first row: a missing special token is a recipe error
    source_files: dict[str, list[dict[str, Any]]] = {}
    for src in recipe.sources:
        urls = expand_paths(src.path, base_dir=base_dir, storage_options=src.storage_options)
        source_files[src.resolved_name] = [file_identity(u, src.storage_options) for u in urls]
    parts = {
        "task": recipe.task,
        "tokenizer_sha256": tokenizer.sha256,
        "renderer": {
            "name": recipe.renderer.name,
            "options": renderer.options,
            "template_sha256": hashlib.sha256(renderer.template_text().encode()).hexdigest(),
        },
        "train_on": recipe.train_on.value,
        "max_length": recipe.max_length,
        "overlong": recipe.overlong,
        "weight_reduction": recipe.weight_reduction,
        "sources": [
            {
                "name": s.resolved_name,
                "format": s.format,
                "columns": s.columns,
                "file_format": s.file_format,
                "files": source_files[s.resolved_name],
            }
            for s in recipe.sources
        ],
        "split": recipe.split.model_dump(),
        "shards": recipe.shards.model_dump(),
        "on_error": recipe.on_error,
    }
    output = Output(_resolve_path(recipe.output, base_dir))
    return Plan(recipe, base_dir, tokenizer, renderer, output, source_files, fingerprint(parts), parts)


@dataclass
class _Stats:
    rows_read: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    truncated: int = 0
    per_source: dict[str, Counter[str]] = field(default_factory=dict)
    length_log2: Counter[int] = field(default_factory=Counter)
    tokens: int = 0


class _Skipper:
    """Applies `on_error`: raise the located error, or count it and keep a sample beside the shards."""

    def __init__(self, recipe: Recipe, stats: _Stats) -> None:
        self.fail = recipe.on_error == "fail"
        self.limit = recipe.skipped_sample
        self.stats = stats
        self.sample: list[dict[str, Any]] = []

    def __call__(self, err: RowError, *, source: str, file: str, line: int | None, row: Any) -> None:
        err.located(file=file, line=line)
        if self.fail:
            raise err
        self.stats.dropped[err.reason] += 1
        self.stats.per_source[source]["dropped"] += 1
        if len(self.sample) < self.limit:
            text = json.dumps(row, ensure_ascii=False, default=str) if row is not None else None
            self.sample.append(
                {
                    "source": source,
                    "file": file,
                    "line": line,
                    "field": err.field,
                    "reason": err.reason,
                    "message": err.message,
                    "row": text[:2000] if text else None,
                }
            )


def _test_ordinals(recipe: Recipe, plan: Plan) -> tuple[set[int], int | None]:
    """Global input-row ordinals held out for the test split; independent of workers and resumes."""
    if recipe.split.test_size <= 0:
        return set(), None
    total = sum(
        count_rows(_resolve_path(s.path, plan.base_dir), base_dir=plan.base_dir, storage_options=s.storage_options, file_format=s.file_format)
        for s in recipe.sources
    )
    # tinker-cookbook's rule: a test split only when there are more rows than test_size.
    if total <= recipe.split.test_size:
        return set(), total
    return set(random.Random(recipe.split.seed).sample(range(total), recipe.split.test_size)), total


def _split_summary(writer: ShardWriter) -> dict[str, Any]:
    return {
        "rows": sum(s.rows for s in writer.shards),
        "tokens": sum(s.tokens for s in writer.shards),
        "trained_tokens": sum(s.trained_tokens for s in writer.shards),
        "shards": [s.to_json() for s in writer.shards],
    }


def _histogram(counter: Counter[int]) -> dict[str, Any]:
    if not counter:
        return {"edges": [], "counts": []}
    top = max(counter)
    # bucket b holds lengths in (2**(b-1), 2**b]
    return {"edges": [2**b for b in range(top + 1)], "counts": [counter.get(b, 0) for b in range(top + 1)]}


def build(
    recipe: Recipe,
    base_dir: Path,
    *,
    force: bool = False,
    progress: ProgressSink | None = None,
) -> BuildResult:
    plan = plan_build(recipe, base_dir)
    output = plan.output
    existing = read_manifest(output)
    if existing is not None and existing.get("fingerprint") == plan.fingerprint and not force:
        return BuildResult("up_to_date", output.url, existing)

    progress = progress or _NoProgress()
    started = time.monotonic()
    output.makedirs()
    output.remove_tree(plan.data_dir)  # leftovers of an interrupted build of this same fingerprint
    test_set, total_rows = _test_ordinals(recipe, plan)
    writers = {
        split: ShardWriter(
            output,
            plan.data_dir,
            split,
            recipe.shards.max_rows,
            recipe.shards.max_bytes,
            recipe.shards.row_group_rows,
        )
        for split in ("train", "test")
    }
    stats = _Stats()
    skip = _Skipper(recipe, stats)
    encoder = BatchEncoder(plan.tokenizer)
    customized = recipe.train_on == TrainOnWhat.CUSTOMIZED
    progress.start(total_rows)
    ordinal_base = 0
    for src in recipe.sources:
        name = src.resolved_name
        stats.per_source[name] = Counter()
        read = _build_source(recipe, plan, src, writers, test_set, ordinal_base, stats, skip, encoder, customized, progress)
        ordinal_base += read
    for w in writers.values():
        w.flush()
    progress.finish()
    if stats.rows_read and not any(w.shards for w in writers.values()):
        # A build that trains on nothing is a recipe mistake (train_on, max_length), not a result.
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(stats.dropped.items()))
        output.remove_tree(plan.data_dir)
        raise BuildError(
            f"no examples: all {stats.rows_read} rows were dropped ({reasons}); check train_on, max_length and the data"
        )

    elapsed = time.monotonic() - started
    skipped_rel = None
    if skip.sample:
        skipped_rel = f"{plan.data_dir}/skipped.jsonl"
        output.write_text_atomic(skipped_rel, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in skip.sample))
    splits = {k: _split_summary(w) for k, w in writers.items() if w.shards or k == "train"}
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "shardprep_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": plan.fingerprint,
        "task": recipe.task,
        "schema": "sft/1",
        "recipe": recipe.model_dump(mode="json"),
        "tokenizer": plan.tokenizer.describe(),
        "renderer": plan.fingerprint_parts["renderer"],
        "train_on": recipe.train_on.value,
        "sources": [
            {
                "name": s.resolved_name,
                "path": s.path,
                "format": s.format,
                "files": plan.source_files[s.resolved_name],
                "rows_read": stats.per_source[s.resolved_name]["rows_read"],
                "examples": stats.per_source[s.resolved_name]["examples"],
                "tokens": stats.per_source[s.resolved_name]["tokens"],
                "trained_tokens": stats.per_source[s.resolved_name]["trained_tokens"],
                "dropped": stats.per_source[s.resolved_name]["dropped"],
            }
            for s in recipe.sources
        ],
        "splits": splits,
        "stats": {
            "rows_read": stats.rows_read,
            "examples": sum(v["rows"] for v in splits.values()),
            "dropped": dict(sorted(stats.dropped.items())),
            "truncated": stats.truncated,
            "length_histogram": _histogram(stats.length_log2),
            "elapsed_s": round(elapsed, 3),
            "rows_per_s": round(stats.rows_read / elapsed, 1) if elapsed > 0 else None,
            "tokens_per_s": round(stats.tokens / elapsed, 1) if elapsed > 0 else None,
        },
        "data_dir": plan.data_dir,
        "skipped_sample": skipped_rel,
    }
    write_manifest(output, manifest)
    for name in output.listdir():
        if name.startswith("data-") and name != plan.data_dir:
            output.remove_tree(name)  # the previous build, now unreferenced
    return BuildResult("built", output.url, manifest)


def _build_source(
    recipe: Recipe,
    plan: Plan,
    src: SourceSpec,
    writers: dict[str, ShardWriter],
    test_set: set[int],
    ordinal_base: int,
    stats: _Stats,
    skip: _Skipper,
    encoder: BatchEncoder,
    customized: bool,
    progress: ProgressSink,
) -> int:
    name = src.resolved_name
    per = stats.per_source[name]
    rows_seen = 0
    path = _resolve_path(src.path, plan.base_dir)
    try:
        batches = iter_source_batches(
            path, base_dir=plan.base_dir, storage_options=src.storage_options, batch_size=recipe.batch_size, file_format=src.file_format
        )
    except FileNotFoundError as exc:
        raise SourceError(f"source {name!r}: {exc}") from exc
    for batch in batches:
        convs, metas = [], []
        for raw in batch:
            rows_seen = max(rows_seen, raw.index + 1)
            if raw.error is not None:
                skip(raw.error, source=name, file=raw.file, line=raw.line, row=None)
                continue
            try:
                conv = to_conversation(raw.data or {}, format=src.format, columns=src.columns or None, customized=customized)
            except RowError as err:
                skip(err, source=name, file=raw.file, line=raw.line, row=raw.data)
                continue
            convs.append(conv)
            metas.append(raw)
        results = render_supervised_batch(plan.renderer, encoder, convs, recipe.train_on) if convs else []
        batch_tokens = 0
        for raw, res in zip(metas, results, strict=True):
            if isinstance(res, RowError):
                skip(res, source=name, file=raw.file, line=raw.line, row=raw.data)
                continue
            ex = make_example(
                res.tokens, res.weights, max_length=recipe.max_length, overlong=recipe.overlong, reduction=recipe.weight_reduction
            )
            if isinstance(ex, str):
                stats.dropped[ex] += 1
                per["dropped"] += 1
                continue
            _record(stats, per, ex)
            batch_tokens += len(ex.input_ids)
            split = "test" if (ordinal_base + raw.index) in test_set else "train"
            writers[split].add(ex, name, raw.index)
        stats.rows_read += len(batch)
        per["rows_read"] += len(batch)
        stats.tokens += batch_tokens
        progress.advance(len(batch), batch_tokens)
    return rows_seen


def _record(stats: _Stats, per: Counter[str], ex: Example) -> None:
    n = len(ex.input_ids)
    per["examples"] += 1
    per["tokens"] += n
    per["trained_tokens"] += int(np.count_nonzero(ex.weights))
    stats.truncated += ex.truncated
    stats.length_log2[max(0, (n - 1).bit_length())] += 1
