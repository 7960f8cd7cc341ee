"""Throughput of `prep build` against the tokenizer's own ceiling and the per-example reference path.

Input: the 150 reference conversations of tests/fixtures/golden (real LLaMA-Factory / axolotl chat:
tool calls, thinking parts, long and short turns), repeated until the rendered text reaches
--tokens tokens. Every repetition k gets " (k)" appended to each message text, so no two rows
and no two content chunks are identical (otherwise de-duplication inside a batch would flatter the build). Written as JSONL.

For each thread count T (a fresh subprocess with RAYON_NUM_THREADS=T):
  1 raw        tokenizers encode_batch of the rendered conversation strings (the ceiling)
  2 build      shardprep build() end to end with T workers: read JSONL, parse, render, tokenize,
               mask, shift, write zstd Parquet + manifest
  3 reference  (T=1 only) tinker-cookbook's per-example path, done here: render one conversation at
               a time, encode each chunk with its own tokenizer call, build the datum
  4 hf         (T=1 only, when transformers is installed) apply_chat_template(tokenize=True,
               return_assistant_tokens_mask=True) per conversation
Prints a table with tokens/s, rows/s, peak RSS and the ratios 2/1, 2/3, 2/4; writes
bench/results/build.json.

  python bench/bench_build.py [--tokens 20000000] [--renderer qwen3] [--tokenizer qwen3]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def _conversations() -> list[list[dict[str, Any]]]:
    with gzip.open(FIXTURES / "golden" / "conversations.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["messages"] for line in f]


def _variant(conv: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Repetition k of a conversation with every text changed a little, so no chunk repeats."""
    if k == 0:
        return conv
    conv = copy.deepcopy(conv)
    for m in conv:
        if isinstance(m["content"], str) and m["content"]:
            m["content"] += f" ({k})"
        elif isinstance(m["content"], list):
            for part in m["content"]:
                for key in ("text", "thinking"):
                    if part.get(key):
                        part[key] += f" ({k})"
    return conv


def _renderable(renderer_name: str, tokenizer_dir: Path, convs: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    from shardprep.renderers.base import TrainOnWhat, plan_supervised
    from shardprep.renderers.registry import get_renderer
    from shardprep.tokenizer import load_tokenizer

    renderer = get_renderer(renderer_name, load_tokenizer(str(tokenizer_dir)))
    kept = []
    for conv in convs:
        try:
            plan_supervised(renderer, conv, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
        except Exception:
            continue  # e.g. thinking parts under llama3: a build would skip them too
        kept.append(conv)
    return kept


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    """One measurement in a fresh process (RAYON_NUM_THREADS already set); prints one JSON line."""
    from shardprep.renderers.base import TrainOnWhat, plan_supervised
    from shardprep.renderers.chunks import TextChunk
    from shardprep.renderers.registry import get_renderer
    from shardprep.tokenizer import load_tokenizer

    work = Path(args.work)
    tok = load_tokenizer(str(work / "tok"))
    out: dict[str, Any] = {"what": args.what, "threads": int(os.environ["RAYON_NUM_THREADS"])}
    if args.what == "raw":
        renderer = get_renderer(args.renderer, tok)
        texts = []
        with open(work / "data.jsonl", encoding="utf-8") as f:
            for line in f:
                plan = plan_supervised(renderer, json.loads(line)["messages"], TrainOnWhat.ALL_ASSISTANT_MESSAGES)
                texts.append("".join(c.text for c in plan.chunks if isinstance(c, TextChunk)))
        t0 = time.perf_counter()
        n = 0
        for i in range(0, len(texts), 512):
            n += sum(len(e.ids) for e in tok.tokenizer.encode_batch(texts[i : i + 512], add_special_tokens=False))
        out.update(seconds=time.perf_counter() - t0, tokens=n, rows=len(texts))
    elif args.what == "build":
        from shardprep.build.run import build
        from shardprep.recipe import load_recipe

        recipe, base = load_recipe(work / "recipe.yaml")
        marks = _Marks()
        t0 = time.perf_counter()
        m = build(recipe, base, force=True, workers=out["threads"], progress=marks).manifest
        rows = sum(s["rows"] for s in m["splits"].values())
        out.update(
            tail=marks.tail(),
            seconds=time.perf_counter() - t0,
            tokens=sum(s["tokens"] for s in m["splits"].values()) + rows,  # + the token the shift drops
            rows=rows,
            children_peak_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        )
    elif args.what == "reference":
        out.update(_reference(work, tok, args.renderer))
    elif args.what == "hf":
        out.update(_hf(work))
    out["peak_rss_mb"] = max(_peak_mb(), out.get("children_peak_mb", 0))
    print(json.dumps(out))


class _Marks:
    """Progress sink recording (time, rows done) so the tail of a build can be compared with its body."""

    def __init__(self) -> None:
        self.points: list[tuple[float, int]] = []
        self.rows = 0

    def start(self, total_rows: int | None, *, done_rows: int = 0) -> None:
        self.total = total_rows or 0
        self.points = [(time.perf_counter(), 0)]

    def advance(self, rows: int, tokens: int) -> None:
        self.rows += rows
        self.points.append((time.perf_counter(), self.rows))

    def finish(self) -> None:
        pass

    def tail(self) -> dict[str, float]:
        """Rows/s over the first 90 % of rows and over the last 10 % (interpolated between units)."""
        (t_start, _), (t_end, total) = self.points[0], self.points[-1]
        cut = 0.9 * total
        t_cut = t_end
        for (ta, ra), (tb, rb) in itertools.pairwise(self.points):
            if ra <= cut <= rb:
                t_cut = ta + (tb - ta) * ((cut - ra) / (rb - ra) if rb > ra else 1.0)
                break
        body = cut / (t_cut - t_start)
        last = (total - cut) / (t_end - t_cut) if t_end > t_cut else float("inf")
        return {"first_90pct_rows_per_s": body, "last_10pct_rows_per_s": last, "last_over_first": last / body}


def _reference(work: Path, tok: Any, renderer_name: str) -> dict[str, Any]:
    """tinker-cookbook's conversation_to_datum shape: one conversation, one encode call per chunk."""
    import numpy as np

    from shardprep.encode.examples import make_example
    from shardprep.renderers.base import TrainOnWhat, plan_supervised
    from shardprep.renderers.chunks import Encoding, IdsChunk
    from shardprep.renderers.registry import get_renderer

    renderer = get_renderer(renderer_name, tok)
    escaped = tok.tokenizer.__class__.from_str(tok.tokenizer.to_str())
    escaped.encode_special_tokens = True
    rows = n = 0
    t0 = time.perf_counter()
    with open(work / "data.jsonl", encoding="utf-8") as f:
        for line in f:
            plan = plan_supervised(renderer, json.loads(line)["messages"], TrainOnWhat.ALL_ASSISTANT_MESSAGES)
            ids: list[int] = []
            weights: list[float] = []
            for chunk, w in zip(plan.chunks, plan.weights, strict=True):
                if isinstance(chunk, IdsChunk):
                    piece = list(chunk.ids)
                else:
                    enc = escaped if chunk.encoding == Encoding.ESCAPED else tok.tokenizer
                    piece = enc.encode(chunk.text, add_special_tokens=False).ids
                ids += piece
                weights += [w] * len(piece)
            ex = make_example(np.array(ids), np.array(weights, dtype=np.float32), max_length=None, reduction="mean")
            rows += 1
            n += len(ids) if not isinstance(ex, str) else 0
    return {"seconds": time.perf_counter() - t0, "tokens": n, "rows": rows}


def _hf(work: Path) -> dict[str, Any]:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return {"skipped": "transformers not installed"}
    hf = AutoTokenizer.from_pretrained(str(work / "tok"))
    rows = n = 0
    t0 = time.perf_counter()
    with open(work / "data.jsonl", encoding="utf-8") as f:
        for line in f:
            msgs = json.loads(line)["messages"]
            try:
                enc = hf.apply_chat_template(msgs, tokenize=True, return_assistant_tokens_mask=True, return_dict=True)
            except Exception:
                continue
            rows += 1
            n += len(enc["input_ids"])
    return {"seconds": time.perf_counter() - t0, "tokens": n, "rows": rows}


def _run(work: Path, what: str, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "RAYON_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, __file__, "--child", what, "--work", str(work), "--renderer", args.renderer]
    res = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    if "seconds" in r:
        r["tokens_per_s"] = r["tokens"] / r["seconds"]
        r["rows_per_s"] = r["rows"] / r["seconds"]
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=20_000_000, help="approximate input size in tokens")
    ap.add_argument("--renderer", default="qwen3")
    ap.add_argument("--tokenizer", default="qwen3", help="folder name under tests/fixtures/tokenizers")
    ap.add_argument("--threads", default=None, help="comma-separated thread/worker counts (default: 1 and all cores)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "build.json"))
    args = ap.parse_args()
    if args.child:
        args.what = args.child
        child(args)
        return

    import shutil

    from shardprep.tokenizer import load_tokenizer

    tok_dir = FIXTURES / "tokenizers" / args.tokenizer
    convs = _renderable(args.renderer, tok_dir, _conversations())
    tok = load_tokenizer(str(tok_dir)).tokenizer
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, cores})
    with tempfile.TemporaryDirectory(prefix="shardprep-bench-") as work_s:
        work = Path(work_s)
        (work / "tok").mkdir()
        (work / "tok" / "tokenizer.json").write_text(tok.to_str())
        shutil.copy(tok_dir / "tokenizer_config.json", work / "tok" / "tokenizer_config.json")
        per_pass = sum(len(json.dumps(c)) for c in convs)
        approx_tokens_per_char = 0.25
        repeat = max(1, round(args.tokens / (per_pass * approx_tokens_per_char)))
        with open(work / "data.jsonl", "w", encoding="utf-8") as f:
            for k in range(repeat):
                for conv in convs:
                    f.write(json.dumps({"messages": _variant(conv, k)}, ensure_ascii=False) + "\n")
        (work / "recipe.yaml").write_text(
            f"name: bench\noutput: out\ntokenizer: tok\nrenderer: {args.renderer}\n"
            "train_on: all_assistant_messages\nsources: [{path: data.jsonl}]\n"
        )
        mb = (work / "data.jsonl").stat().st_size / 1e6
        print(
            f"input: {len(convs) * repeat:,} conversations ({len(convs)} distinct x {repeat}), {mb:.1f} MB JSONL; "
            f"renderer {args.renderer}, tokenizer {args.tokenizer}; {cores} cores",
            flush=True,
        )
        results: list[dict[str, Any]] = []
        for t in threads:
            results.append(_run(work, "raw", t, args))
            results.append(_run(work, "build", t, args))
            print(f"  T={t}: raw {results[-2]['tokens_per_s']:,.0f} tok/s, build {results[-1]['tokens_per_s']:,.0f} tok/s", flush=True)
        results.append(_run(work, "reference", 1, args))
        results.append(_run(work, "hf", 1, args))
    print(f"\ninput tokens (full sequences): {results[0]['tokens']:,}\n")
    by = {(r["what"], r["threads"]): r for r in results}
    ref = by[("reference", 1)]
    hf = by[("hf", 1)]
    print(f"{'path':<34} {'T':>2} {'tokens/s':>12} {'rows/s':>9} {'peak RSS MB':>11}")
    for r in results:
        if "skipped" in r:
            print(f"{r['what']:<34} {r['threads']:>2} {'skipped: ' + r['skipped']:>34}")
            continue
        print(f"{r['what']:<34} {r['threads']:>2} {r['tokens_per_s']:>12,.0f} {r['rows_per_s']:>9,.0f} {r['peak_rss_mb']:>11,.0f}")
    print()
    ratios = {}
    for t in threads:
        b, raw = by[("build", t)], by[("raw", t)]
        ratios[t] = {
            "build/raw": b["tokens_per_s"] / raw["tokens_per_s"],
            "build/reference": b["tokens_per_s"] / ref["tokens_per_s"],
            "build/hf": b["tokens_per_s"] / hf["tokens_per_s"] if "tokens_per_s" in hf else None,
        }
        hf_txt = f"{ratios[t]['build/hf']:.2f}" if ratios[t]["build/hf"] else "n/a"
        print(f"T={t}: 2/1 build/raw {ratios[t]['build/raw']:.2f}   2/3 build/reference {ratios[t]['build/reference']:.2f}   2/4 build/hf {hf_txt}")
    for t in threads:
        tail = by[("build", t)]["tail"]
        print(f"T={t}: last 10 % of rows at {tail['last_over_first']:.2f} x the rows/s of the first 90 %")
    if len(threads) > 1:
        t1, tn = threads[0], threads[-1]
        scale = by[("build", tn)]["tokens_per_s"] / (by[("build", t1)]["tokens_per_s"] * tn / t1)
        print(f"scaling: build at {tn} workers = {scale:.2f} x {tn} x build at {t1}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k not in ("child", "work", "what")}, "results": results, "ratios": ratios}, indent=2) + "\n")
    print(f"\nresults: {Path(args.out).relative_to(ROOT) if Path(args.out).is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
