"""Packing: shardprep's plan next to TRL's `bfd` and the reader's token-budget sampler, same lengths.

Length sets (positions per row, the build's `length` column):
  real       a build of the repo's LLaMA-Factory data (tests/fixtures/data/llamafactory: alpaca,
             glaive tool calls, kto, identity, reasoning tool use; Qwen3 tokenizer and renderer,
             max_length 8192), as built
  real x1M   those lengths resampled to 1,000,000 rows (seeded): the real shape at a size where the
             bound no longer dominates
  synthetic  10,000,000 rows, lognormal (median ~200 positions), clipped to 1..16384

For each seq_len (2048, 4096, 8192), packs and efficiency (row positions / (packs x seq_len)):
  shardprep      PackingPlan.build (what `prep show --pack` prints and PackedLoader trains:
                 capacity seq_len - 1, longer rows truncated), plan seconds; bound =
                 ceil(positions / (seq_len - 1)); bias = corr(pack position in epoch 0, its mean
                 row length); 8-rank imbalance = mean over steps of (max - min) / max positions
                 across 8 ranks of one pack each
  bfd@seq_len    shardprep's best_fit_decreasing at capacity seq_len, to compare with TRL
                 like for like
  trl whole      TRL's own BFD (trl.data_utils._pack_bfd) over the whole set at seq_len (the
                 algorithm without datasets' batching; a 200,000-row sample on the large sets)
  trl pack_dataset  trl.pack_dataset(strategy="bfd") as users call it: datasets.map batches of 1000
                 rows, each packed alone (real set only: it materializes every token)
  budget         TokenBudgetBatchSampler(padded=False, max_tokens=seq_len) + PackCollate, the
                 reader's earlier packing path (fill = positions / (batches x seq_len); batches
                 vary in shape)
and the plan's peak memory for 10 M rows (tracemalloc, numpy's allocations included; the input
lengths not counted). Writes bench/results/packing.{json,txt}.

  python bench/bench_packing.py [--rows 10000000] [--skip-trl]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "fixtures" / "data" / "llamafactory"
SEQ_LENS = (2048, 4096, 8192)
TRL_SAMPLE = 200_000

_LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    _LINES.append(line)


RECIPE = f"""
name: packing-bench-llamafactory
output: OUT
tokenizer: {ROOT}/tests/fixtures/tokenizers/qwen3
renderer: qwen3
train_on: all_assistant_messages
max_length: 8192
overlong: truncate
weight_reduction: none
sources:
  - {{name: alpaca, path: {DATA}/alpaca_en_demo.json.gz, format: alpaca}}
  - {{name: identity, path: {DATA}/identity.json.gz, format: alpaca}}
  - {{name: glaive, path: {DATA}/glaive_toolcall_en_demo.json.gz, format: sharegpt}}
  - {{name: kto, path: {DATA}/kto_en_demo.json.gz, format: messages}}
  - {{name: reason_tools, path: {DATA}/reason_tool_use_demo_50.jsonl.gz, format: messages}}
on_error: skip
"""


def real_lengths(work: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Build the repo's LLaMA-Factory data and read the train split's length column."""
    from shardprep.build.run import build
    from shardprep.recipe import load_recipe
    from shardprep.store.storage import Output
    from shardprep.views.show import open_build, split_lengths

    out = work / "build"
    recipe_path = work / "recipe.yaml"
    recipe_path.write_text(RECIPE.replace("OUT", str(out)))
    recipe, base = load_recipe(recipe_path)
    build(recipe, base)
    output, manifest = open_build(str(out))
    assert isinstance(output, Output)
    lengths = split_lengths(output, manifest["splits"]["train"]["shards"])
    info = {
        "rows": len(lengths),
        "positions": int(lengths.sum()),
        "mean": round(float(lengths.mean()), 1),
        "max": int(lengths.max()),
        "sources": {s["name"]: s["examples"] for s in manifest["sources"]},
    }
    return lengths, info


def synthetic(rows: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(rng.lognormal(5.3, 0.9, rows), 1, 16384).astype(np.int64)


def shardprep_plan(lengths: np.ndarray, seq_len: int) -> dict[str, Any]:
    from shardprep.packing import PackingPlan

    t = time.perf_counter()
    plan = PackingPlan.build(lengths, seq_len)
    seconds = time.perf_counter() - t
    # Ranks' positions within a step: 8 ranks of one pack each, epoch 0 of seed 0.
    balance = plan.balance(0, 0, batch_size=1, world_size=8)
    return {**plan.summary(), "seconds": round(seconds, 3), "balance_8_ranks": round(balance, 5)}


def bfd_at(lengths: np.ndarray, capacity: int) -> dict[str, Any]:
    from shardprep.packing import best_fit_decreasing

    kept = np.minimum(lengths, capacity)
    t = time.perf_counter()
    _, offsets = best_fit_decreasing(kept, capacity)
    seconds = time.perf_counter() - t
    packs = len(offsets) - 1
    return {
        "packs": packs,
        "efficiency": round(int(kept.sum()) / (packs * capacity), 6),
        "seconds": round(seconds, 3),
    }


def _token_table(lengths: np.ndarray) -> Any:
    import pyarrow as pa

    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = pa.array(np.ones(int(offsets[-1]), dtype=np.int32))
    return pa.table({"input_ids": pa.ListArray.from_arrays(pa.array(offsets), values)})


def trl_whole(lengths: np.ndarray, seq_len: int) -> dict[str, Any]:
    from trl.data_utils import _pack_bfd

    kept = np.minimum(lengths, seq_len)
    table = _token_table(lengths)
    t = time.perf_counter()
    packed = _pack_bfd(table, seq_len)
    seconds = time.perf_counter() - t
    packs = packed.num_rows
    return {
        "packs": packs,
        "efficiency": round(int(kept.sum()) / (packs * seq_len), 6),
        "seconds": round(seconds, 3),
    }


def trl_pack_dataset(lengths: np.ndarray, seq_len: int) -> dict[str, Any]:
    import datasets
    from trl import pack_dataset

    datasets.disable_progress_bars()
    kept = np.minimum(lengths, seq_len)
    ds = datasets.Dataset(_token_table(lengths))
    t = time.perf_counter()
    packs = len(pack_dataset(ds, seq_len, strategy="bfd"))
    seconds = time.perf_counter() - t
    return {
        "packs": packs,
        "efficiency": round(int(kept.sum()) / (packs * seq_len), 6),
        "seconds": round(seconds, 3),
    }


def budget_fill(lengths: np.ndarray, seq_len: int) -> dict[str, Any]:
    from shardprep.torch.samplers import TokenBudgetBatchSampler

    sampler = TokenBudgetBatchSampler(lengths, seq_len, padded=False, seed=0)
    t = time.perf_counter()
    batches = sampler.batches(0)
    seconds = time.perf_counter() - t
    sizes = np.array([int(lengths[b].sum()) for b in batches])
    return {
        "batches": len(batches),
        "fill": round(float(lengths.sum()) / (len(batches) * seq_len), 6),
        "over_budget": int((sizes > seq_len).sum()),
        "seconds": round(seconds, 3),
    }


def plan_memory(lengths: np.ndarray, seq_len: int) -> dict[str, Any]:
    from shardprep.packing import PackingPlan

    tracemalloc.start()
    t = time.perf_counter()
    plan = PackingPlan.build(lengths, seq_len)
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "seq_len": seq_len,
        "rows": len(lengths),
        "packs": plan.packs,
        "peak_mb": round(peak / 2**20, 1),
        "seconds_traced": round(seconds, 2),
    }


def run_set(name: str, lengths: np.ndarray, *, trl: bool, full_trl: bool) -> dict[str, Any]:
    say(
        f"\n{name}: {len(lengths):,} rows, {int(lengths.sum()):,} positions, "
        f"mean {lengths.mean():.0f}, max {int(lengths.max()):,}"
    )
    out: dict[str, Any] = {"rows": len(lengths), "positions": int(lengths.sum()), "seq_lens": {}}
    head = f"  {'seq_len':>7}  {'path':<22} {'packs':>10} {'bound':>10} {'efficiency':>10} {'seconds':>8}"
    say(head)
    sample = lengths
    if trl and len(lengths) > TRL_SAMPLE:
        sample = np.random.default_rng(1).choice(lengths, TRL_SAMPLE, replace=False)
    for seq_len in SEQ_LENS:
        r: dict[str, Any] = {"shardprep": shardprep_plan(lengths, seq_len)}
        r["bfd_at_seq_len"] = bfd_at(lengths, seq_len)
        sp = r["shardprep"]
        say(
            f"  {seq_len:>7}  {'shardprep plan':<22} {sp['packs']:>10,} {sp['packs_lower_bound']:>10,} "
            f"{100 * sp['efficiency']:>9.2f}% {sp['seconds']:>8.2f}   "
            f"over length {sp['rows_over_length']:,}, bias {sp['position_bias']:+.3f}, "
            f"8-rank imbalance {100 * sp['balance_8_ranks']:.2f}%"
        )
        b = r["bfd_at_seq_len"]
        bound = -(-int(np.minimum(lengths, seq_len).sum()) // seq_len)
        say(
            f"  {'':>7}  {'shardprep bfd@seq_len':<22} {b['packs']:>10,} {bound:>10,} "
            f"{100 * b['efficiency']:>9.2f}% {b['seconds']:>8.2f}"
        )
        if trl:
            label = (
                "trl bfd whole" if sample is lengths else f"trl bfd {len(sample) // 1000}k sample"
            )
            r["trl_whole"] = trl_whole(sample, seq_len)
            if sample is not lengths:
                r["trl_whole"]["rows"] = len(sample)
                r["trl_whole"]["shardprep_same_sample"] = bfd_at(sample, seq_len)
            t = r["trl_whole"]
            say(
                f"  {'':>7}  {label:<22} {t['packs']:>10,} {'':>10} "
                f"{100 * t['efficiency']:>9.2f}% {t['seconds']:>8.2f}"
                + (
                    f"   (shardprep on that sample: {t['shardprep_same_sample']['packs']:,} packs, "
                    f"{t['shardprep_same_sample']['seconds']:.2f} s)"
                    if sample is not lengths
                    else ""
                )
            )
            if full_trl:
                r["trl_pack_dataset"] = trl_pack_dataset(lengths, seq_len)
                t = r["trl_pack_dataset"]
                say(
                    f"  {'':>7}  {'trl pack_dataset':<22} {t['packs']:>10,} {'':>10} "
                    f"{100 * t['efficiency']:>9.2f}% {t['seconds']:>8.2f}"
                )
        if len(lengths) <= 2_000_000:
            r["budget"] = budget_fill(lengths, seq_len)
            bb = r["budget"]
            say(
                f"  {'':>7}  {'budget sampler':<22} {bb['batches']:>10,} {'':>10} "
                f"{100 * bb['fill']:>9.2f}% {bb['seconds']:>8.2f}   (batches of varying shape)"
            )
        out["seq_lens"][str(seq_len)] = r
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000, help="synthetic rows")
    ap.add_argument("--skip-trl", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "packing.json"))
    args = ap.parse_args()
    trl = not args.skip_trl
    if trl:
        try:
            import trl as _trl  # noqa: F401
        except ImportError:
            say("trl not installed: its columns are left out (pip install trl)")
            trl = False

    report: dict[str, Any] = {"seq_lens": list(SEQ_LENS), "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("SHARDPREP_CACHE_DIR", str(Path(tmp) / "cache"))
        real, info = real_lengths(Path(tmp))
    say(f"real build: {info['rows']:,} train rows from {info['sources']}")
    report["real_build"] = info
    report["sets"]["real"] = run_set("real", real, trl=trl, full_trl=trl)
    resampled = np.random.default_rng(2).choice(real, 1_000_000, replace=True)
    report["sets"]["real_x1M"] = run_set("real x1M (resampled)", resampled, trl=trl, full_trl=False)
    syn = synthetic(args.rows)
    report["sets"]["synthetic"] = run_set("synthetic", syn, trl=trl, full_trl=False)
    say("\nplan memory (tracemalloc peak, input lengths not counted):")
    report["memory"] = []
    for seq_len in SEQ_LENS:
        m = plan_memory(syn, seq_len)
        report["memory"].append(m)
        say(f"  {m['rows']:,} rows at {seq_len}: peak {m['peak_mb']} MB")
    report["machine"] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "load_avg": os.getloadavg(),
    }
    if trl:
        import trl as _trl

        report["machine"]["trl"] = _trl.__version__
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    path.with_suffix(".txt").write_text("\n".join(_LINES) + "\n")
    say(f"wrote {path} and {path.with_suffix('.txt')}")


if __name__ == "__main__":
    main()
