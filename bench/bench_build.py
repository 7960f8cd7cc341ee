"""`prep build` against the encoders' own speed and the paths people use instead, on one input.

Input: GSM8K-style chat rows (bench/gsm8k_like.py: made up, seeded, every text different), about
--tokens tokens, Qwen3 tokenizer and renderer; the same for a DPO build (`messages_pair` rows).
Every rate below is the same token count (the rendered conversations' tokens, one encode of each)
divided by that path's seconds, so the ratios compare time on identical work. Each measurement
runs in a fresh process.

  raw tokenizers   tokenizers `encode_batch` of the rendered texts (all cores)
  raw fastokens    fastokens `encode_batch_flat` of the same texts (all cores)
  build whole      `prep build --force` as a command: start, plan, encoder probe, read, render,
                   encode, write, manifest (wall time of the process)
  build steady     the same build in-process, between its first and its last finished work unit
  tinker           tinker-cookbook 0.6.1's conversation_to_datum per row (needs .venv-ref)
  trl              `datasets.map(apply_chat_template)`, num_proc = cores (needs transformers)

Builds run with 1 worker and with all cores (scaling), and report the rows/s of their last 10 %
against their first 90 % (tail). Writes bench/results/build.json.

  python bench/bench_build.py [--tokens 4100000] [--dpo-tokens 4100000] [--skip-refs]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gsm8k_like  # noqa: E402

TOKENIZER = ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"
REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"


_LINES: list[str] = []


def say(line: str = "") -> None:
    """Print, and keep the line for bench/results/build.txt."""
    print(line, flush=True)
    _LINES.append(line)


def _cores() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


# -- children (one measurement per fresh process) ------------------------------------------------


def _texts(work: Path, task: str) -> list[str]:
    """The rendered conversations (all chunks joined), as the build renders them."""
    from shardprep.renderers.base import TrainOnWhat, plan_supervised
    from shardprep.renderers.chunks import TextChunk
    from shardprep.renderers.registry import get_renderer
    from shardprep.tokenizer import load_tokenizer

    renderer = get_renderer("qwen3", load_tokenizer(str(work / "tok")))
    mode = (
        TrainOnWhat.ALL_ASSISTANT_MESSAGES if task == "sft" else TrainOnWhat.LAST_ASSISTANT_MESSAGE
    )
    texts = []
    with open(work / f"{task}.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            for conv in [row["messages"]] if task == "sft" else [row["chosen"], row["rejected"]]:
                plan = plan_supervised(renderer, conv, mode)
                texts.append("".join(c.text for c in plan.chunks if isinstance(c, TextChunk)))
    return texts


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children (load-independent, unlike wall)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def child(what: str, work: Path, task: str, workers: int) -> dict[str, Any]:
    c0 = _cpu()
    out = _child(what, work, task, workers)
    out["cpu_seconds_total"] = _cpu() - c0
    return out


def _child(what: str, work: Path, task: str, workers: int) -> dict[str, Any]:
    if what in ("raw_tokenizers", "raw_fastokens"):
        texts = _texts(work, task)
        tok_json = work / "tok" / "tokenizer.json"
        if what == "raw_tokenizers":
            from tokenizers import Tokenizer

            enc = Tokenizer.from_file(str(tok_json))
            c0, t0 = _cpu(), time.perf_counter()
            n = 0
            for i in range(0, len(texts), 1024):
                n += sum(
                    len(e.ids)
                    for e in enc.encode_batch_fast(texts[i : i + 1024], add_special_tokens=False)
                )
        else:
            import fastokens
            import numpy as np

            fast = fastokens.Tokenizer.from_file(str(tok_json))
            fast.encode_batch_flat(texts[:64])  # first-call setup is not encoding speed
            c0, t0 = _cpu(), time.perf_counter()
            n = 0
            for i in range(0, len(texts), 1024):
                ids, _ = fast.encode_batch_flat(texts[i : i + 1024], add_special_tokens=False)
                n += len(np.frombuffer(ids, np.uint32))
        return {
            "seconds": time.perf_counter() - t0,
            "cpu_seconds": _cpu() - c0,
            "tokens": n,
            "rows": len(texts),
        }
    if what == "build_steady":
        from shardprep.build.run import build
        from shardprep.recipe import load_recipe

        recipe, base = load_recipe(work / f"{task}.yaml")
        marks = _Marks()
        t0 = time.perf_counter()
        m = build(recipe, base, force=True, workers=workers, progress=marks).manifest
        return {
            "seconds": time.perf_counter() - t0,
            "steady_seconds": marks.steady_seconds(),
            "steady_fraction": marks.steady_fraction(),
            "tail": marks.tail(),
            "rows": m["stats"]["rows_read"],
            "encoder": m["tokenizer"].get("encoder", {}).get("name"),
            "children_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        }
    raise SystemExit(f"unknown child {what}")


class _Marks:
    """Progress sink recording (time, rows done) at each finished unit."""

    def __init__(self) -> None:
        self.points: list[tuple[float, int]] = []
        self.rows = 0
        self.total = 0

    def start(self, total_rows: int | None, *, done_rows: int = 0) -> None:
        self.total = total_rows or 0
        self.points = [(time.perf_counter(), 0)]

    def advance(self, rows: int, tokens: int) -> None:
        self.rows += rows
        self.points.append((time.perf_counter(), self.rows))

    def finish(self) -> None:
        pass

    def steady_seconds(self) -> float:
        """Seconds between the first and the last finished unit (rows in between: steady_fraction)."""
        return self.points[-1][0] - self.points[1][0] if len(self.points) > 2 else float("nan")

    def steady_fraction(self) -> float:
        return (
            (self.points[-1][1] - self.points[1][1]) / self.points[-1][1]
            if len(self.points) > 2
            else 0.0
        )

    def tail(self) -> dict[str, float]:
        """Rows/s over the first 90 % of the rows and over the last 10 % (interpolated between
        units), counted from the first finished unit so that start-up is not in the body."""
        points = self.points[1:] if len(self.points) > 2 else self.points
        (t_start, r_start), (t_end, total) = points[0], points[-1]
        cut = r_start + 0.9 * (total - r_start)
        t_cut = t_end
        for (ta, ra), (tb, rb) in itertools.pairwise(points):
            if ra <= cut <= rb:
                t_cut = ta + (tb - ta) * ((cut - ra) / (rb - ra) if rb > ra else 1.0)
                break
        body = (cut - r_start) / (t_cut - t_start) if t_cut > t_start else float("inf")
        last = (total - cut) / (t_end - t_cut) if t_end > t_cut else float("inf")
        return {
            "first_90pct_rows_per_s": body,
            "last_10pct_rows_per_s": last,
            "last_over_first": last / body,
        }


# -- driver ----------------------------------------------------------------------------------------


def _json_tail(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


def _run_child(what: str, work: Path, task: str, workers: int, cores: int) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAYON_NUM_THREADS": str(cores)}
    cmd = [
        sys.executable,
        __file__,
        "--child",
        what,
        "--work",
        str(work),
        "--task",
        task,
        "--workers",
        str(workers),
    ]
    res = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return _json_tail(res.stdout)


def _whole(work: Path, task: str, workers: int) -> dict[str, Any]:
    """`prep build` as a user runs it: the process's wall time, start to exit."""
    prep = Path(sys.executable).parent / "prep"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [
        str(prep),
        "build",
        str(work / f"{task}.yaml"),
        "--force",
        "--json",
        "--workers",
        str(workers),
    ]
    c0, t0 = _cpu(), time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": _cpu() - c0}


def _ref(path: str, work: Path, task: str, cores: int) -> dict[str, Any]:
    python = REF_PYTHON if path == "tinker" else Path(sys.executable)
    if path == "tinker" and not python.exists():
        return {"skipped": ".venv-ref not found (make test-reference builds it)"}
    cmd = [
        str(python),
        str(ROOT / "bench" / "ref_paths.py"),
        path,
        "--data",
        str(work / f"{task}.jsonl"),
        "--tokenizer",
        str(TOKENIZER),
        "--task",
        task,
        "--procs",
        str(cores),
    ]
    res = subprocess.run(
        cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True
    )
    if res.returncode != 0:
        return {"skipped": (res.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return _json_tail(res.stdout)


def _write_inputs(work: Path, sft_tokens: int, dpo_tokens: int) -> dict[str, int]:
    (work / "tok").mkdir()
    import gzip

    (work / "tok" / "tokenizer.json").write_bytes(
        gzip.decompress((TOKENIZER / "tokenizer.json.gz").read_bytes())
    )
    shutil.copy(TOKENIZER / "tokenizer_config.json", work / "tok" / "tokenizer_config.json")
    rows = {
        "sft": gsm8k_like.write(work / "sft.jsonl", sft_tokens),
        "dpo": gsm8k_like.write(work / "dpo.jsonl", dpo_tokens, dpo=True, seed=1),
    }
    common = "output: out-{t}\ntokenizer: tok\nrenderer: qwen3\n"
    (work / "sft.yaml").write_text(
        "name: bench-sft\n"
        + common.format(t="sft")
        + "train_on: all_assistant_messages\nsources: [{path: sft.jsonl}]\n"
    )
    (work / "dpo.yaml").write_text(
        "name: bench-dpo\ntask: dpo\n"
        + common.format(t="dpo")
        + "sources: [{path: dpo.jsonl, format: messages_pair}]\n"
    )
    return rows


def bench_task(work: Path, task: str, cores: int, skip_refs: bool) -> dict[str, Any]:
    raw_t = _run_child("raw_tokenizers", work, task, 1, cores)
    tokens = raw_t["tokens"]  # the work every path does: these tokens, once
    out: dict[str, Any] = {"tokens": tokens, "rows": raw_t["rows"], "paths": {}}
    paths = out["paths"]
    paths["raw tokenizers"] = raw_t
    paths["raw fastokens"] = _run_child("raw_fastokens", work, task, 1, cores)
    for n in sorted({1, cores}):
        paths[f"build whole, {n} worker(s)"] = _whole(work, task, n)
        steady = _run_child("build_steady", work, task, n, cores)
        steady["seconds_total"] = steady.pop("seconds")
        steady["seconds"] = (
            steady["steady_seconds"] / steady["steady_fraction"]
            if steady["steady_fraction"]
            else float("nan")
        )
        paths[f"build steady, {n} worker(s)"] = steady
    if not skip_refs:
        paths["tinker-cookbook"] = _ref("tinker", work, task, cores)
        paths[f"trl datasets.map, num_proc={cores}"] = _ref("trl", work, task, cores)
    for r in paths.values():
        if "seconds" in r:
            r["tokens_per_s"] = tokens / r["seconds"]
    return out


def _print(task: str, res: dict[str, Any], cores: int) -> dict[str, float]:
    say(
        f"\n{task.upper()}: {res['rows']:,} sequences, {res['tokens']:,} tokens (Qwen3), {cores} cores"
    )
    say(f"  {'path':<36} {'M tok/s':>8} {'seconds':>8} {'CPU s':>8} {'M tok/CPU-s':>12}")
    for name, r in res["paths"].items():
        if "skipped" in r:
            say(f"  {name:<36} {'skipped: ' + r['skipped']}")
            continue
        cpu = r.get("cpu_seconds")
        per_cpu = f"{res['tokens'] / cpu / 1e6:>12.2f}" if cpu else f"{'':>12}"
        cpu_s = f"{cpu:>8.2f}" if cpu else f"{'':>8}"
        say(f"  {name:<36} {r['tokens_per_s'] / 1e6:>8.2f} {r['seconds']:>8.2f} {cpu_s} {per_cpu}")
    p = res["paths"]
    whole, steady = p[f"build whole, {cores} worker(s)"], p[f"build steady, {cores} worker(s)"]
    ratios: dict[str, float] = {}
    for name, r in p.items():
        if "tokens_per_s" in r and not name.startswith("build"):
            ratios[f"build whole / {name}"] = whole["tokens_per_s"] / r["tokens_per_s"]
            ratios[f"build steady / {name}"] = steady["tokens_per_s"] / r["tokens_per_s"]
    if cores > 1:
        one = p["build steady, 1 worker(s)"]["tokens_per_s"]
        ratios[f"scaling: steady {cores} workers / ({cores} x 1 worker)"] = steady[
            "tokens_per_s"
        ] / (cores * one)
    ratios["tail: last 10 % / first 90 % rows/s"] = steady["tail"]["last_over_first"]
    say(f"  encoder: {steady.get('encoder')}")
    for k, v in ratios.items():
        say(f"  {k:<52} {v:>7.2f}")
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tokens", type=int, default=4_100_000, help="SFT input size in tokens")
    ap.add_argument(
        "--dpo-tokens", type=int, default=4_100_000, help="DPO input size in tokens (both sides)"
    )
    ap.add_argument("--skip-refs", action="store_true", help="leave out the tinker and TRL paths")
    ap.add_argument("--tasks", default="sft,dpo")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "build.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--task", default="sft", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.work), args.task, args.workers)))
        return
    cores = _cores()
    results: dict[str, Any] = {"cores": cores, "load_avg_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="shardprep-bench-") as tmp:
        work = Path(tmp)
        rows = _write_inputs(work, args.tokens, args.dpo_tokens)
        say(
            f"input: GSM8K-like, {rows['sft']:,} SFT rows, {rows['dpo']:,} DPO pairs; load average "
            f"{os.getloadavg()[0]:.1f}"
        )
        for task in args.tasks.split(","):
            res = bench_task(work, task, cores, args.skip_refs)
            res["ratios"] = _print(task, res, cores)
            results[task] = res
    results["load_avg_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    say(f"\nresults: {os.path.relpath(args.out, ROOT)} (and .txt)")
    Path(args.out).with_suffix(".txt").write_text("\n".join(_LINES) + "\n")


if __name__ == "__main__":
    main()
