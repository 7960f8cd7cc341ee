"""What `dedup: exact` and `decontaminate:` cost a build: the same SFT build (GSM8K-style rows,
bench/gsm8k_like.py, Qwen3 tokenizer and renderer, 5 % of the rows repeated by a second source)
without them, with `dedup: exact`, with `decontaminate:`, and with both (an eval file of 1,000
other GSM8K-style rows, the default n-gram: 16 tokens). The rows share their template, so many
trained 16-token windows (a calculation such as ` 17 * $23 = <<17*23=391>>$391 on them`) recur
in the eval rows: most rows are dropped, which also times the matcher where most windows hit.
Builds alternate, each `--force` in this process and loading its eval n-grams afresh, and the
median of each is reported with the time of the row-filter pass itself (find_drops).

  python bench/bench_dedup.py [--tokens 2000000] [--repeats 3] [--workers auto]
"""

from __future__ import annotations

import argparse
import json
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
        "dedup+decontaminate": {
            "dedup": "exact",
            "decontaminate": {"paths": ["eval.jsonl"]},  # the default n-gram
        },
    }
    pass_s: dict[str, list[float]] = {k: [] for k in configs}
    real = dedup.find_drops
    current = [""]

    def timed(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real(*a, **kw)
        finally:
            pass_s[current[0]].append(time.perf_counter() - t0)

    dedup.find_drops = timed  # type: ignore[assignment]
    walls: dict[str, list[float]] = {k: [] for k in configs}
    cpus: dict[str, list[float]] = {k: [] for k in configs}
    # Warm-up, not measured: the tokenizer's parse and the encoder probe happen once per process.
    warm = work / "warm.yaml"
    warm.write_text(yaml.safe_dump({**base, "output": "out-warm"}))
    build(*load_recipe(warm), force=True, workers=args.workers)
    last: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, extra in configs.items():
            path = work / f"{name}.yaml"
            path.write_text(yaml.safe_dump({**base, "output": f"out-{name}", **extra}))
            current[0] = name
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
    plain = statistics.median(walls["plain"])
    plain_cpu = statistics.median(cpus["plain"])
    for name in configs:
        med = statistics.median(walls[name])
        cpu = statistics.median(cpus[name])
        filt = f"; filter pass {statistics.median(pass_s[name]):.3f} s" if pass_s[name] else ""
        print(
            f"  {name:<20} build {med:6.2f} s (runs {', '.join(f'{w:.2f}' for w in walls[name])})"
            f"  {100 * (med / plain - 1):+5.1f} %; CPU (with workers) {cpu:.2f} s "
            f"{100 * (cpu / plain_cpu - 1):+5.1f} %{filt}; dropped {last[name]['dropped']}"
        )


if __name__ == "__main__":
    main()
