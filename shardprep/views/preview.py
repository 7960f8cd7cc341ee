"""`prep preview`: render and tokenize the first rows of each source exactly as `build` would, writing nothing.

The report has the shape of `inspect_build`'s, so the same views (terminal, JSON, HTML) show it.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from shardprep.build.run import plan_build
from shardprep.encode.decode import row_payload
from shardprep.encode.examples import Example, make_example
from shardprep.encode.tokenize import BatchEncoder, render_supervised_batch
from shardprep.errors import RowError, ShardprepError, SourceError
from shardprep.formats import declare_tools, to_conversation
from shardprep.recipe import Recipe, SourceSpec
from shardprep.renderers.base import TrainOnWhat
from shardprep.sources.files import RawRow, iter_source_batches
from shardprep.views.health import MaskHealth, end_of_turn_ids, health_warnings
from shardprep.views.show import length_histogram


def _source_url(path: str, base_dir: Path) -> str:
    # Relative source paths resolve against the recipe's folder, as in a build.
    if "://" in path or Path(path).is_absolute():
        return path
    return os.path.normpath(base_dir / path)


def _first_rows(base_dir: Path, src: SourceSpec, n: int) -> list[RawRow]:
    if src.hf:
        from shardprep.sources.hub import hub_ref, iter_shard_rows, n_shards

        ref = hub_ref(src, base_dir)
        first = next(iter(iter_shard_rows(ref, 0, n_shards(ref), 0, n, n)), [])
        return [RawRow(index=i, file=f"{ref.url} shard 0", line=i, data=d) for i, d in enumerate(first)]
    path = _source_url(src.path, base_dir)
    try:
        batches = iter_source_batches(
            path, base_dir=base_dir, storage_options=src.storage_options, batch_size=n, file_format=src.file_format, stop=n
        )
        return next(iter(batches), [])
    except FileNotFoundError as exc:
        raise SourceError(f"source {src.resolved_name!r}: {exc}") from exc


def preview_recipe(recipe: Recipe, base_dir: Path, *, n: int = 5, source: str | None = None) -> dict[str, Any]:
    """Report on the first `n` rows of every source (or of `source`): what build would write for them."""
    if n < 1:
        raise ShardprepError("-n must be at least 1")
    names = [s.resolved_name for s in recipe.sources]
    if source is not None and source not in names:
        raise ShardprepError(f"source {source!r} not in the recipe (has: {', '.join(names)})")
    # plan_build checks tokenizer, renderer and inputs exactly as a build does, before any row.
    plan = plan_build(recipe, base_dir)
    tok = plan.tokenizer
    encoder = BatchEncoder(tok)
    customized = recipe.train_on == TrainOnWhat.CUSTOMIZED
    health = MaskHealth(end_of_turn_ids(tok, recipe.renderer.name, plan.renderer.options, tok.special_id("eos_token")))
    dropped: Counter[str] = Counter()
    sources: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    lengths: list[int] = []
    truncated = 0
    for src in recipe.sources:
        name = src.resolved_name
        if source is not None and name != source:
            continue
        per: Counter[str] = Counter()
        by_reason: Counter[str] = Counter()
        raws = _first_rows(base_dir, src, n)
        convs, metas = [], []
        for raw in raws:
            per["rows_read"] += 1
            try:
                if raw.error is not None:
                    raise raw.error
                conv = to_conversation(raw.data or {}, format=src.format, columns=src.columns or None, customized=customized)
                convs.append(declare_tools(plan.renderer, conv, raw.data or {}, src.columns or None, recipe.tools))
                metas.append(raw)
            except RowError as err:
                by_reason[err.reason] += 1
                errors.append({"source": name, "source_row": raw.index, "reason": err.reason, "message": err.located(file=raw.file, line=raw.line).describe()})
        results = render_supervised_batch(plan.renderer, encoder, convs, recipe.train_on) if convs else []
        examples: list[tuple[Any, Example]] = []
        for raw, res in zip(metas, results, strict=True):
            if isinstance(res, RowError):
                by_reason[res.reason] += 1
                errors.append({"source": name, "source_row": raw.index, "reason": res.reason, "message": res.located(file=raw.file, line=raw.line).describe()})
                continue
            ex = make_example(res.tokens, res.weights, max_length=recipe.max_length, overlong=recipe.overlong, reduction=recipe.weight_reduction)
            if isinstance(ex, str):
                by_reason[ex] += 1
                errors.append({"source": name, "source_row": raw.index, "reason": ex, "message": f"row {raw.index}: dropped ({ex})"})
                continue
            examples.append((raw, ex))
        for raw, ex in examples:
            n_tok = len(ex.input_ids)
            trained = int(np.count_nonzero(ex.weights > 0))
            per["examples"] += 1
            per["tokens"] += n_tok
            per["trained_tokens"] += trained
            per["truncated"] += int(ex.truncated)
            lengths.append(n_tok)
            health.add(ex.target_ids, ex.weights, np.asarray([n_tok]), np.asarray([name], dtype=object))
            row = {"input_ids": ex.input_ids, "target_ids": ex.target_ids, "weights": ex.weights, "source": name, "source_row": raw.index}
            rows.append(row_payload(row, tok, split="preview", index=len(rows)))
        dropped.update(by_reason)
        truncated += per["truncated"]
        sources.append(
            {
                "name": name,
                "format": src.format,
                "rows_read": per["rows_read"],
                "examples": per["examples"],
                "tokens": per["tokens"],
                "trained_tokens": per["trained_tokens"],
                "trained_ratio": round(per["trained_tokens"] / per["tokens"], 4) if per["tokens"] else 0.0,
                "dropped": sum(by_reason.values()),
                "dropped_by_reason": dict(sorted(by_reason.items())),
                "truncated": per["truncated"],
            }
        )
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
        "conformance": None,
        "decoded": True,
        "row_errors": errors,
        "rows": rows,
    }
    report["health"] = health.to_json()
    report["warnings"] = health_warnings(report["health"], sources, report["dropped"], report["train_on"])
    return report
