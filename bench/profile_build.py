"""Where a build's time goes: cProfile of one in-process build (one worker).

Input: real chat shapes (bench/chat_like.py: alpaca + glaive tool-call rows, varied) or, with
`--shape gsm8k`, GSM8K-like rows (bench/gsm8k_like.py).

  python bench/profile_build.py [--tokens 1000000] [--task sft|dpo] [--shape chat|gsm8k]
                                [--encoder auto] [--top 30]

Prints the top functions by own time and by cumulative time; writes bench/results/profile.pstats
(open with `python -m pstats` or snakeviz).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import chat_like  # noqa: E402
import gsm8k_like  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--task", choices=("sft", "dpo"), default="sft")
    ap.add_argument("--shape", choices=("chat", "gsm8k"), default="chat")
    ap.add_argument("--encoder", default="auto")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "profile.pstats"))
    args = ap.parse_args()
    os.environ["SHARDPREP_ENCODER"] = args.encoder
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from shardprep.build.run import build
    from shardprep.recipe import load_recipe

    with tempfile.TemporaryDirectory(prefix="shardprep-profile-") as tmp:
        work = Path(tmp)
        shutil.copytree(ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3", work / "tok")
        if args.shape == "gsm8k":
            rows = gsm8k_like.write(work / "data.jsonl", args.tokens, dpo=args.task == "dpo")
            fmt = "messages" if args.task == "sft" else "messages_pair"
            sources = f"sources: [{{path: data.jsonl, format: {fmt}}}]\n"
        elif args.task == "sft":
            rows = sum(chat_like.write_sft(work, args.tokens).values())
            sources = chat_like.SFT_SOURCES
        else:
            rows = sum(chat_like.write_dpo(work, args.tokens).values())
            sources = chat_like.DPO_SOURCES
        (work / "recipe.yaml").write_text(
            f"name: profile\noutput: out\ntokenizer: tok\nrenderer: qwen3\ntask: {args.task}\n"
            # dpo trains on the last assistant message only (as tinker's DPO builder).
            + ("train_on: all_assistant_messages\n" if args.task == "sft" else "")
            + sources
        )
        recipe, base = load_recipe(work / "recipe.yaml")
        # Plan (tokenizer and encoder loads) outside the profile: fixed costs, not per row.
        from shardprep.build.run import plan_build
        from shardprep.build.units import unit_encoder

        plan = plan_build(recipe, base)
        _ = unit_encoder(recipe, plan.tokenizer, plan.renderer).selection  # fastokens load, probe
        # CPU time, not wall: on a shared machine wall time measures the neighbours.
        prof = cProfile.Profile(time.process_time)
        t0 = time.perf_counter()
        prof.enable()
        m = build(recipe, base, force=True, workers=1).manifest
        prof.disable()
        dt = time.perf_counter() - t0
    tokens = sum(s["tokens"] for s in m["splits"].values())
    print(
        f"{rows:,} rows, {tokens:,} tokens in {dt:.2f}s wall under the profiler ({tokens / dt:,.0f} tok/s)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    prof.dump_stats(args.out)
    stats = pstats.Stats(prof).strip_dirs()
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
