"""`prep build` throughput next to raw `tokenizers.encode_batch` on the same text and threads.

Input: the 150 reference conversations of tests/fixtures/golden (real LLaMA-Factory / axolotl chat,
tool calls, thinking parts), repeated until the rendered text reaches --tokens tokens, written as
JSONL. For each thread count (RAYON_NUM_THREADS, set in a fresh subprocess so `tokenizers` honours it):
  raw    encode_batch(rendered conversation strings, add_special_tokens=False), batches of 512
  build  shardprep.pipeline.build.build() end to end: read JSONL, parse, render, tokenize, mask,
         shift, write zstd Parquet + manifest
Prints a table and writes bench/results/build.json.

  python bench/bench_build.py [--tokens 2000000] [--renderer qwen3] [--tokenizer qwen3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def _conversations() -> list[list[dict]]:
    with gzip.open(FIXTURES / "golden" / "conversations.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["messages"] for line in f]


def _rendered_texts(renderer_name: str, tokenizer_dir: Path, convs: list[list[dict]]) -> tuple[list[str], list[list[dict]]]:
    from shardprep.pipeline.tokenizer import load_tokenizer
    from shardprep.renderers.base import TrainOnWhat, plan_supervised
    from shardprep.renderers.chunks import TextChunk
    from shardprep.renderers.registry import get_renderer

    tok = load_tokenizer(str(tokenizer_dir))
    renderer = get_renderer(renderer_name, tok)
    texts, kept = [], []
    for conv in convs:
        try:
            plan = plan_supervised(renderer, conv, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
        except Exception:
            continue  # e.g. thinking parts under llama3: the build would skip them too
        texts.append("".join(c.text for c in plan.chunks if isinstance(c, TextChunk)))
        kept.append(conv)
    return texts, kept


def child(args: argparse.Namespace) -> None:
    """Runs in a subprocess with RAYON_NUM_THREADS set; prints one JSON line."""
    import resource

    from tokenizers import Tokenizer

    from shardprep.pipeline.build import build
    from shardprep.recipe import load_recipe

    work = Path(args.work)
    texts = json.loads((work / "texts.json").read_text())
    raw = (work / "tokenizer.json").read_text()
    tok = Tokenizer.from_str(raw)
    t0 = time.perf_counter()
    n_tokens = 0
    for i in range(0, len(texts), 512):
        n_tokens += sum(len(e.ids) for e in tok.encode_batch(texts[i : i + 512], add_special_tokens=False))
    raw_s = time.perf_counter() - t0

    recipe, base = load_recipe(work / "recipe.yaml")
    t0 = time.perf_counter()
    result = build(recipe, base, force=True, workers=int(os.environ["RAYON_NUM_THREADS"]))
    build_s = time.perf_counter() - t0
    m = result.manifest
    rows = sum(s["rows"] for s in m["splits"].values())
    build_tokens = sum(s["tokens"] for s in m["splits"].values()) + rows  # + the one token the shift removes
    print(
        json.dumps(
            {
                "threads": os.environ.get("RAYON_NUM_THREADS"),
                "raw_tokens": n_tokens,
                "raw_s": raw_s,
                "raw_tokens_per_s": n_tokens / raw_s,
                "build_rows": rows,
                "build_tokens": build_tokens,
                "build_s": build_s,
                "build_tokens_per_s": build_tokens / build_s,
                "build_rows_per_s": rows / build_s,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=2_000_000, help="approximate input size in tokens")
    ap.add_argument("--renderer", default="qwen3")
    ap.add_argument("--tokenizer", default="qwen3", help="folder name under tests/fixtures/tokenizers")
    ap.add_argument("--threads", default=None, help="comma-separated thread counts (default: 1 and all cores)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    tok_dir = FIXTURES / "tokenizers" / args.tokenizer
    texts, convs = _rendered_texts(args.renderer, tok_dir, _conversations())
    from tokenizers import Tokenizer

    from shardprep.pipeline.tokenizer import load_tokenizer

    tok: Tokenizer = load_tokenizer(str(tok_dir)).tokenizer
    per_pass = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
    repeat = max(1, round(args.tokens / per_pass))
    cores = os.cpu_count() or 1
    threads = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, cores})

    with tempfile.TemporaryDirectory(prefix="shardprep-bench-") as work_s:
        work = Path(work_s)
        with open(work / "data.jsonl", "w", encoding="utf-8") as f:
            for _ in range(repeat):
                for conv in convs:
                    f.write(json.dumps({"messages": conv}, ensure_ascii=False) + "\n")
        (work / "texts.json").write_text(json.dumps(texts * repeat))
        (work / "tokenizer.json").write_text(tok.to_str())
        (work / "recipe.yaml").write_text(
            f"name: bench\noutput: out\ntokenizer: {tok_dir}\nrenderer: {args.renderer}\n"
            "train_on: all_assistant_messages\nsources: [{path: data.jsonl}]\n"
        )
        mb = (work / "data.jsonl").stat().st_size / 1e6
        print(f"input: {len(convs) * repeat:,} conversations ({len(convs)} x {repeat}), {mb:.1f} MB JSONL, "
              f"~{per_pass * repeat / 1e6:.1f} M tokens; renderer {args.renderer}, tokenizer {args.tokenizer}, {cores} cores")
        results = []
        for t in threads:
            env = {**os.environ, "RAYON_NUM_THREADS": str(t), "HF_HUB_OFFLINE": "1"}
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--work", str(work)], env=env, check=True, capture_output=True, text=True
            ).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))

    print(f"\n{'threads':>7} {'raw encode_batch tok/s':>23} {'prep build tok/s':>17} {'build/raw':>9} {'rows/s':>9} {'peak RSS MB':>11}")
    for r in results:
        print(f"{r['threads']:>7} {r['raw_tokens_per_s']:>23,.0f} {r['build_tokens_per_s']:>17,.0f} "
              f"{r['build_tokens_per_s'] / r['raw_tokens_per_s']:>9.2f} {r['build_rows_per_s']:>9,.0f} {r['peak_rss_mb']:>11,.0f}")
    dest = ROOT / "bench" / "results" / "build.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k not in ("child", "work")}, "results": results}, indent=2) + "\n")
    print(f"\nresults: {dest.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
