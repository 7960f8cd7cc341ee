"""What `dedup: exact` and `decontaminate:` cost a build: the same SFT build (GSM8K-style rows,
bench/gsm8k_like.py, Qwen3 tokenizer and renderer, 5 % of the rows repeated by a second source)
without them, with `dedup: exact`, with `decontaminate:`, and with both (an eval file of 1,000
other GSM8K-style rows, the default n-gram: 16 tokens). The rows share their template, so many
trained 16-token windows (a calculation such as ` 17 * $23 = <<17*23=391>>$391 on them`) recur
in the eval rows: most rows are dropped, which also times the matcher where most windows hit.
A dropped row is also a row not written, which flatters those two; `decontaminate (few hits)`
takes instead an eval file of real prose (the demo's alpaca answers), which shares almost no
n-gram with the rows: the matcher's whole cost with nothing saved downstream.
Builds alternate, each `--force` in this process and loading its eval n-grams afresh, and the
median of each is reported with the time of the row-filter pass itself (find_drops).

  python bench/bench_dedup.py [--tokens 2000000] [--repeats 3] [--workers auto]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gsm8k_like  # noqa: E402

from shardprep.build import dedup  # noqa: E402
from shardprep.build.run import build  # noqa: E402
from shardprep.recipe import load_recipe  # noqa: E402

TOKENIZER = ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (a build's pool workers)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", default="auto")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-dedup-"))
    n = gsm8k_like.write(work / "sft.jsonl", args.tokens)
    with open(work / "eval.jsonl", "w") as f:
        for row in gsm8k_like.rows(1000, seed=7):
            text = " ".join(m["content"] for m in row["messages"][1:])
            f.write(json.dumps({"text": text}) + "\n")
    alpaca = json.loads((ROOT / "demo" / "data" / "alpaca_en_demo.slice.json").read_text())
    with open(work / "eval_prose.jsonl", "w") as f:
        for item in alpaca:
            f.write(json.dumps({"text": item["output"]}) + "\n")
    base: dict[str, Any] = {
        "name": "bench",
        "tokenizer": str(TOKENIZER),
        "renderer": "qwen3",
        "sources": [
            {"name": "sft", "path": "sft.jsonl"},
            {"name": "again", "path": "sft.jsonl", "take": n // 20},
        ],
        "split": {"test_size": 500},
        "allow_empty_sources": True,  # a small run repeats held-out rows only
    }
    configs = {
        "plain": {},
        "dedup": {"dedup": "exact"},
        "decontaminate": {"decontaminate": {"paths": ["eval.jsonl"]}},
        "decontaminate (few hits)": {"decontaminate": {"paths": ["eval_prose.jsonl"]}},
        "dedup+decontaminate": {
            "dedup": "exact",
            "decontaminate": {"paths": ["eval.jsonl"]},  # the default n-gram
        },
    }
    pass_s: dict[str, list[float]] = {k: [] for k in configs}
    # The filters' own code, timed where it runs: the units' row facts (RowFacts.of_table, and
    # their split per shard), the eval n-grams' load, the driver's pass and its counting. Only
    # with --workers 1 is all of it in this process (a pool's workers time their own share).
    own_s: dict[str, list[float]] = {k: [] for k in configs}
    current = [""]
    depth = [0]

    def timer(real: Any, *, the_pass: bool = False) -> Any:
        def timed(*a: Any, **kw: Any) -> Any:
            depth[0] += 1
            t0 = time.perf_counter()
            try:
                return real(*a, **kw)
            finally:
                depth[0] -= 1
                took = time.perf_counter() - t0
                if the_pass:
                    pass_s[current[0]].append(took)
                if not depth[0]:  # the outermost only: the pass may take facts itself
                    own_s[current[0]][-1] += took

        return timed

    from shardprep.build import units

    dedup.find_drops = timer(dedup.find_drops, the_pass=True)  # type: ignore[assignment]
    dedup.apply_drops = timer(dedup.apply_drops)  # type: ignore[assignment]
    units._filter_facts = timer(units._filter_facts)  # type: ignore[assignment]
    for cls, name in ((dedup.RowFacts, "of_table"), (dedup.EvalNgrams, "load")):
        setattr(cls, name, classmethod(timer(getattr(cls, name).__func__)))
    walls: dict[str, list[float]] = {k: [] for k in configs}
    cpus: dict[str, list[float]] = {k: [] for k in configs}
    # Warm-up, not measured: the tokenizer's parse and the encoder probe happen once per process.
    warm = work / "warm.yaml"
    warm.write_text(yaml.safe_dump({**base, "output": "out-warm"}))
    build(*load_recipe(warm), force=True, workers=args.workers)
    last: dict[str, Any] = {}
    # Each round in its own seeded order, after a full collection: a build's wall time depends
    # on what ran before it in this process (garbage, warm caches), not only on its own work.
    order = random.Random(0)
    for _ in range(args.repeats):
        names = list(configs)
        order.shuffle(names)
        for name in names:
            extra = configs[name]
            gc.collect()
            path = work / f"{name.split()[0]}-{len(name)}.yaml"
            path.write_text(yaml.safe_dump({**base, "output": f"out-{path.stem}", **extra}))
            current[0] = name
            own_s[name].append(0.0)
            dedup._LOADED.clear()  # each build loads its eval n-grams, as a `prep build` does
            t0, c0 = time.perf_counter(), _cpu()
            res = build(*load_recipe(path), force=True, workers=args.workers)
            walls[name].append(time.perf_counter() - t0)
            cpus[name].append(_cpu() - c0)
            last[name] = res.manifest["stats"]
            filt = f", filter pass {pass_s[name][-1]:.2f} s" if pass_s[name] else ""
            print(f"  ({name}: {walls[name][-1]:.2f} s{filt})", flush=True)
    tokens = last["plain"]["examples"]
    print(f"{n:,} rows (+{n // 20:,} repeated), {tokens:,} examples; workers {args.workers}")
    # The fastest run beside the median: on a shared machine the noise only ever adds time, so
    # the fastest of many alternating runs is the steadier comparison.
    for name in configs:
        cols = []
        for label, runs in (("wall", walls), ("CPU (with workers)", cpus)):
            med, best = statistics.median(runs[name]), min(runs[name])
            med0, best0 = statistics.median(runs["plain"]), min(runs["plain"])
            # Paired: each build against the plain build of its own round (the machine's drift
            # between rounds cancels), the median of those ratios.
            paired = statistics.median(
                a / b for a, b in zip(runs[name], runs["plain"], strict=True)
            )
            cols.append(
                f"{label} median {med:.2f} s {100 * (med / med0 - 1):+5.1f} %, "
                f"fastest {best:.2f} s {100 * (best / best0 - 1):+5.1f} %, "
                f"paired {100 * (paired - 1):+5.1f} %"
            )
        filt = f"; filter pass {statistics.median(pass_s[name]):.3f} s" if pass_s[name] else ""
        if args.workers == "1" and name != "plain":
            share = [o / w for o, w in zip(own_s[name], walls[name], strict=True)]
            filt += f"; the filters' own code {100 * statistics.median(share):.1f} % of the build"
        print(f"  {name:<26} {'; '.join(cols)}{filt}; dropped {last[name]['dropped']}")
        print(f"  {'':<26} runs {', '.join(f'{w:.2f}' for w in walls[name])}")


if __name__ == "__main__":
    main()
