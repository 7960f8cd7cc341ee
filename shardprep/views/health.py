"""Mask health: the silent failures of SFT data, counted from examples and turned into warnings.

A mask that trains nothing, an end-of-turn token that is never trained (the model never learns to
stop), a source whose trained share is far off, a template that differs from inference: each
builds without an error and trains a broken model, so `prep show` / `prep preview` say so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shardprep.encode.conformance import mismatch_warning
from shardprep.sources.source import NO_ROWS
from shardprep.tokenizer import LoadedTokenizer

# A source training under this share of its tokens most likely lost its assistant turns in the
# format mapping; over the high mark (with a train_on that should leave prompts out) prompts are trained.
LOW_TRAINED_RATIO = 0.02
HIGH_TRAINED_RATIO = 0.98
# A source training this many times less than the median of the sources is worth a look. Only
# less: a larger share is what short prompts with long answers give (single-turn instruction
# data trains 85% and more), and prompts trained by mistake are the high mark's to catch.
OUTLIER_FACTOR = 3.0
_TRAINS_PROMPTS = ("all_tokens", "all_messages", "all_user_and_system_messages", "customized")


def end_of_turn_ids(
    tok: LoadedTokenizer | None,
    renderer_name: str,
    renderer_options: dict[str, Any] | None,
    eos_id: int | None,
) -> dict[int, str]:
    """Ids of the end-of-turn tokens the build's renderer emits, with their text."""
    out: dict[int, str] = {}
    if tok is not None:
        # Imported here: the registry imports every renderer family, which `show` rarely needs.
        from shardprep.renderers.registry import get_renderer

        try:
            # The renderer says which tokens end its turns (an unknown renderer: the eos only).
            ends = get_renderer(renderer_name, tok, renderer_options).end_of_turn_tokens()
        except Exception:
            ends = []
        for name in ends:
            tid = tok.tokenizer.token_to_id(name)
            if tid is not None:
                out[tid] = name
        if eos_id is not None and eos_id not in out:
            out[eos_id] = tok.tokenizer.id_to_token(eos_id) or f"id {eos_id}"
    elif eos_id is not None:
        out[eos_id] = f"eos id {eos_id}"
    return out


@dataclass
class MaskHealth:
    """Counts over the examples checked; `add` takes flat arrays so shards are read column-wise."""

    end_of_turn: dict[int, str]
    rows_checked: int = 0
    untrained_rows: int = 0
    untrained_by_source: Counter[str] = field(default_factory=Counter)
    eot_in_targets: Counter[int] = field(default_factory=Counter)
    eot_trained: Counter[int] = field(default_factory=Counter)

    def add(
        self, targets: np.ndarray, weights: np.ndarray, lengths: np.ndarray, sources: np.ndarray
    ) -> None:
        """`targets`/`weights`: every row's values concatenated; `lengths`: per row; `sources`: per row."""
        lengths = np.asarray(lengths, dtype=np.int64)
        trained = np.asarray(weights) > 0
        cum = np.concatenate([[0], np.cumsum(trained, dtype=np.int64)])
        ends = np.cumsum(lengths)
        per_row = cum[ends] - cum[ends - lengths]
        empty = per_row == 0
        self.rows_checked += len(lengths)
        self.untrained_rows += int(empty.sum())
        if empty.any():
            self.untrained_by_source.update(str(s) for s in np.asarray(sources)[empty])
        if self.end_of_turn:
            ids = np.fromiter(self.end_of_turn, dtype=np.int64)
            hit = np.isin(targets, ids)
            if hit.any():
                found, counts = np.unique(targets[hit], return_counts=True)
                self.eot_in_targets.update(dict(zip(found.tolist(), counts.tolist(), strict=True)))
                tfound, tcounts = np.unique(targets[hit & trained], return_counts=True)
                self.eot_trained.update(dict(zip(tfound.tolist(), tcounts.tolist(), strict=True)))

    def to_json(self, rows_total: int | None = None) -> dict[str, Any]:
        return {
            "rows_checked": self.rows_checked,
            "rows_total": rows_total if rows_total is not None else self.rows_checked,
            "untrained_rows": self.untrained_rows,
            "untrained_by_source": dict(sorted(self.untrained_by_source.items())),
            "end_of_turn": [
                {
                    "token": name,
                    "id": tid,
                    "in_targets": self.eot_in_targets.get(tid, 0),
                    "trained": self.eot_trained.get(tid, 0),
                }
                for tid, name in sorted(self.end_of_turn.items())
            ],
        }


def health_columns(sequences: tuple[str, ...]) -> list[str]:
    """The columns mask health reads for rows holding these sequences."""
    return ["source", *(f"{p}{c}" for p in sequences for c in ("target_ids", "weights", "length"))]


def _source_names(col: pa.ChunkedArray) -> np.ndarray:
    arr = col.combine_chunks()
    if isinstance(arr, pa.DictionaryArray):
        names = np.asarray(arr.dictionary.to_pylist(), dtype=object)
        return names[arr.indices.to_numpy(zero_copy_only=False)]
    return np.asarray(arr.to_pylist(), dtype=object)


def scan_table(
    table: pa.Table, health: MaskHealth, sequences: tuple[str, ...], at_length: int | None
) -> int:
    """Feed every sequence of a table's rows to `health`; returns the rows whose length is `at_length`.

    `sequences` are the schema's column prefixes ("" for one sequence, both sides of a pair).
    """
    at_limit = 0
    if not sequences or table.num_rows == 0:
        return 0
    names = _source_names(table.column("source"))
    for p in sequences:
        targets = pc.list_flatten(table.column(f"{p}target_ids")).to_numpy()
        weights = pc.list_flatten(table.column(f"{p}weights")).to_numpy()
        lengths = pc.list_value_length(table.column(f"{p}weights")).to_numpy()
        health.add(targets, weights, lengths, names)
        if at_length is not None:
            at_limit += int((table.column(f"{p}length").to_numpy() == at_length).sum())
    return at_limit


def _warning(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def ratio_warnings(
    sources: list[dict[str, Any]], train_on: str, *, compare: bool = True
) -> list[dict[str, Any]]:
    """`compare` False: no source is judged against the others (per_turn examples repeat their
    history untrained, so a multi-turn source's share falls with its turns, by design)."""
    out: list[dict[str, Any]] = []
    ratios = {s["name"]: s["trained_tokens"] / s["tokens"] for s in sources if s["tokens"]}
    mid = median(ratios.values()) if compare and len(ratios) >= 2 else None
    for s in sources:
        if not s["rows_read"]:
            # Only preview reads a source that gives nothing; the build refuses it (exit 2).
            out.append(
                _warning(
                    "source_no_rows",
                    f"source {s['name']!r} {NO_ROWS} (prep build stops on it)",
                    source=s["name"],
                )
            )
        elif not s["examples"]:
            out.append(
                _warning(
                    "source_no_examples",
                    f"source {s['name']!r}: none of its {s['rows_read']:,} rows became an example",
                    source=s["name"],
                )
            )
        if s["name"] not in ratios:
            continue
        r = ratios[s["name"]]
        if r < LOW_TRAINED_RATIO:
            msg = (
                f"source {s['name']!r} trains only {_pct(r)} of its tokens: are its assistant turns "
                "mapped (format, columns, train_on)?"
            )
            out.append(_warning("trained_ratio_low", msg, source=s["name"], ratio=round(r, 4)))
        elif r > HIGH_TRAINED_RATIO and train_on not in _TRAINS_PROMPTS:
            msg = f"source {s['name']!r} trains {_pct(r)} of its tokens with train_on {train_on}: prompts look trained"
            out.append(_warning("trained_ratio_high", msg, source=s["name"], ratio=round(r, 4)))
        elif mid and r < mid / OUTLIER_FACTOR:
            msg = (
                f"source {s['name']!r} trains only {_pct(r)} of its tokens, far below the other "
                f"sources (median {_pct(mid)}): are all its assistant turns mapped (format, "
                "columns, train_on)?"
            )
            out.append(_warning("trained_ratio_outlier", msg, source=s["name"], ratio=round(r, 4)))
    return out


def health_warnings(
    health: dict[str, Any],
    sources: list[dict[str, Any]],
    dropped: dict[str, int],
    train_on: str,
    conformance: dict[str, Any] | None = None,
    *,
    judges_masks: bool = True,
    renderer: str = "",
    recipe: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every warning, each a dict with a stable `code` and a one-line `message`.

    `judges_masks` False (blocks train everything, prompts nothing, by design): no trained-ratio checks.
    `recipe` (as JSON): sft `examples: per_turn` compares no source's trained share with the others'.
    """
    from shardprep.tasks.sft import PER_TURN

    compare = (recipe or {}).get("examples") != PER_TURN
    out: list[dict[str, Any]] = []
    if health["untrained_rows"]:
        where = ", ".join(f"{k} {v:,}" for k, v in health["untrained_by_source"].items())
        out.append(
            _warning(
                "untrained_rows",
                f"{health['untrained_rows']:,} of {health['rows_checked']:,} rows checked train no "
                f"token ({where}): they cost compute and teach nothing",
                count=health["untrained_rows"],
            )
        )
    if dropped.get("no_trained_tokens"):
        n = dropped["no_trained_tokens"]
        out.append(
            _warning(
                "untrained_rows_dropped",
                f"{n:,} rows were dropped because their mask trains nothing: check train_on and that "
                "the data has assistant turns",
                count=n,
            )
        )
    if dropped.get("truncated_away"):
        n = dropped["truncated_away"]
        out.append(
            _warning(
                "trained_tokens_truncated_away",
                f"{n:,} rows were dropped because truncation at max_length cut away every token "
                "they train: raise max_length, or shorten the prompts before the answers",
                count=n,
            )
        )
    for e in health["end_of_turn"]:
        if e["in_targets"] and not e["trained"]:
            out.append(
                _warning(
                    "end_of_turn_never_trained",
                    f"end-of-turn token {e['token']} (id {e['id']}) is in the targets {e['in_targets']:,} "
                    "times but never trained: the model will not learn to stop",
                    token=e["token"],
                    id=e["id"],
                )
            )
    if judges_masks:
        out.extend(ratio_warnings(sources, train_on, compare=compare))
    else:  # a source that yields nothing is still worth a word
        out.extend(
            w
            for w in ratio_warnings(sources, train_on)
            if not w["code"].startswith("trained_ratio")
        )
    mismatch = mismatch_warning(conformance, renderer)
    if mismatch is not None:
        out.append(mismatch)
    return out
