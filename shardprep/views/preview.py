"""`prep preview`: the first rows of each source through the task's own runner, writing nothing.

The runner is the build's (`Task.runner`), given in-memory writers instead of shard writers, so
what preview shows is what build writes, for every task. The report has the shape of
`inspect_build`'s, so the same views (terminal, JSON, HTML) show it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from shardprep.build.run import plan_build
from shardprep.encode.conformance import merge_conformance
from shardprep.encode.special import special_tokens_record, special_tokens_warning
from shardprep.encode.tokenize import BatchEncoder
from shardprep.errors import RowError, ShardprepError
from shardprep.recipe import Recipe
from shardprep.sources.base import RawRow
from shardprep.store.shards import MemoryWriter
from shardprep.tasks import TASKS, UnitIO
from shardprep.views.health import MaskHealth, end_of_turn_ids, health_warnings, scan_table
from shardprep.views.show import length_histogram


def preview_recipe(
    recipe: Recipe, base_dir: Path, *, n: int = 5, source: str | None = None
) -> dict[str, Any]:
    """Report on the first `n` rows of every source (or of `source`): what build would write for them."""
    if n < 1:
        raise ShardprepError("-n must be at least 1")
    names = [s.resolved_name for s in recipe.sources]
    if source is not None and source not in names:
        raise ShardprepError(f"source {source!r} not in the recipe (has: {', '.join(names)})")
    # plan_build checks tokenizer, renderer, task and inputs exactly as a build does, before any row.
    plan = plan_build(recipe, base_dir)
    tok = plan.tokenizer
    task = TASKS[recipe.task]
    options = task.options(recipe)
    encoder = BatchEncoder(tok, special_tokens_in_content=recipe.special_tokens_in_content)
    health = MaskHealth(
        end_of_turn_ids(
            tok, recipe.renderer.name, plan.renderer.options, tok.special_id("eos_token")
        )
    )
    schema = task.schema_for(options)
    sequences = schema.sequences
    dropped: Counter[str] = Counter()
    sources: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    lengths: list[int] = []
    truncated = 0
    conformance: list[dict[str, Any]] = []
    special: Counter[str] = Counter()  # rows spelling control tokens in message text, per literal
    special_rows = 0
    for src, opened in zip(recipe.sources, plan.sources, strict=True):
        name = src.resolved_name
        if source is not None and name != source:
            continue
        raws = opened.first_rows(n)
        by_reason: Counter[str] = Counter()

        def skip(
            err: RowError,
            *,
            file: str,
            line: int | None,
            row: Any,
            _name: str = name,
            _counts: Counter[str] = by_reason,
        ) -> None:
            # Preview shows every bad row instead of stopping at the first (on_error: fail).
            err.located(file=file, line=line)
            _counts[err.reason] += 1
            errors.append(
                {
                    "source": _name,
                    "source_row": None,
                    "reason": err.reason,
                    "message": err.describe(),
                }
            )

        def dropped_row(reason: str, raw: RawRow, _name: str = name) -> None:
            errors.append(
                {
                    "source": _name,
                    "source_row": raw.index,
                    "reason": reason,
                    "message": f"row {raw.index}: dropped ({reason})",
                }
            )

        writer = MemoryWriter(task.table_builder(options))
        io = UnitIO(
            recipe=recipe,
            source=src,
            source_name=name,
            renderer=plan.renderer,
            encoder=encoder,
            writers={"train": writer, "test": writer},
            skip=skip,
            split_of=lambda raw: "train",
            source_row=lambda raw: raw.index,
            dropped=by_reason,
            on_drop=dropped_row,
        )
        runner = task.runner(io)
        runner.process(raws)
        runner.finish()
        table = writer.table()
        if table is not None:
            scan_table(table, health, sequences, None)
            for col in schema.length_columns:
                lengths += table.column(col).to_pylist()
            for row in table.to_pylist():
                rows.append(task.display_row(row, tok, split="preview", index=len(rows)))
        if io.extras.get("conformance"):
            conformance.append(io.extras["conformance"])
        dropped.update(by_reason)
        truncated += io.truncated
        sources.append(
            {
                "name": name,
                "format": src.format,
                "rows_read": len(raws),
                "examples": io.examples,
                "tokens": io.tokens,
                "trained_tokens": io.trained_tokens,
                "trained_ratio": round(io.trained_tokens / io.tokens, 4) if io.tokens else 0.0,
                "dropped": sum(by_reason.values()),
                "dropped_by_reason": dict(sorted(by_reason.items())),
                "truncated": io.truncated,
                "task_counters": dict(sorted(io.counters.items())),
                "special_tokens": special_tokens_record(
                    recipe.special_tokens_in_content, io.special_token_rows, io.special_tokens
                ),
            }
        )
        special.update(io.special_tokens)
        special_rows += io.special_token_rows
    report: dict[str, Any] = {
        "kind": "preview",
        "name": recipe.name,
        "fingerprint": plan.fingerprint,
        "created_at": None,
        "task": recipe.task,
        "tokenizer": recipe.tokenizer,
        "renderer": recipe.renderer.name,
        "renderer_options": plan.renderer.options,
        "train_on": recipe.train_on.value,
        "max_length": recipe.max_length,
        "splits": {},
        "sources": sources,
        "dropped": dict(sorted(dropped.items())),
        "truncated": truncated,
        "rows_read": sum(s["rows_read"] for s in sources),
        "length_histogram": length_histogram(lengths),
        "skipped_sample": None,
        "shards": [],
        "conformance": merge_conformance(conformance),
        "decoded": True,
        "row_errors": errors,
        "rows": rows,
        "special_tokens": special_tokens_record(
            recipe.special_tokens_in_content, special_rows, special
        ),
    }
    counters: Counter[str] = Counter()
    for s in sources:
        counters.update(s["task_counters"])
    report["task_counters"] = dict(sorted(counters.items()))
    report["task_summary"] = task.counter_summary(counters) or None
    report["health"] = health.to_json()
    recipe_json = recipe.model_dump(mode="json")
    report["warnings"] = health_warnings(
        report["health"],
        sources,
        report["dropped"],
        report["train_on"],
        report["conformance"],
        judges_masks=task.judges_masks,
        renderer=recipe.renderer.name,
        recipe=recipe_json,
    ) + task.counter_warnings(counters, recipe_json)
    spelled = special_tokens_warning(report["special_tokens"])
    if spelled is not None:
        report["warnings"].append(spelled)
    # Preview lists every bad row; under `on_error: fail` the build stops at the first instead.
    unreadable = [e for e in errors if e["source_row"] is None]
    if unreadable and recipe.on_error == "fail":
        report["warnings"].append(
            {
                "code": "build_would_stop",
                "message": f"on_error is fail: prep build stops at the first bad row "
                f"({unreadable[0]['message']}); fix it, or set `on_error: skip` to skip and count "
                "bad rows",
                "source": unreadable[0]["source"],
            }
        )
    return report
