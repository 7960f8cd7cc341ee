"""The differential at scale: every shared renderer on many seeds; writes a RESULTS.md summary.

    .venv/bin/python tests/reference/scale.py --conversations 2000 [--seed0 100000] \
        [--renderers qwen3,kimi_k2] [--out tests/reference/RESULTS.md] [--show 3]

Needs `.venv-ref` (`make test-reference` creates it). Exit status 1 when any mismatch is found.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference import harness  # noqa: E402
from reference.oracle import Oracle, reference_python  # noqa: E402
from shardprep.renderers import renderer_names  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conversations", type=int, default=2000)
    ap.add_argument("--seed0", type=int, default=100_000)
    ap.add_argument("--renderers", default="")
    ap.add_argument("--out", default="")
    ap.add_argument("--show", type=int, default=3)
    ap.add_argument("--json", default="", help="also dump the tallies here (for --merge)")
    ap.add_argument("--no-hf", action="store_true", help="skip hf_template")
    ap.add_argument("--merge", nargs="*", default=None, help="write --out from these --json dumps")
    args = ap.parse_args()
    if args.merge is not None:
        return merge(args)
    python = reference_python()
    if python is None:
        print("no .venv-ref: run `make test-reference` first", file=sys.stderr)
        return 2
    oracle = Oracle(python)
    shared = oracle.call({"op": "hello", "candidates": renderer_names()})["renderers"]
    names = [n for n in shared if not args.renderers or n in args.renderers.split(",")]
    seeds = range(args.seed0, args.seed0 + args.conversations)
    rows = []
    refusals: Counter[str] = Counter()
    tinker_errors: Counter[str] = Counter()
    total_bad = 0
    t0 = time.time()
    for name in names:
        t = time.time()
        tally = harness.run_renderer(oracle, name, seeds)
        refusals.update(tally.refusals)
        tinker_errors.update(tally.tinker_errors)
        total_bad += len(tally.mismatches)
        modes = Counter(o.mode for o in tally.mismatches)
        rows.append(
            (
                name,
                harness.golden_pairs()[name],
                tally.conversations,
                tally.compared,
                len(tally.mismatches),
            )
        )
        print(
            f"{name:34s} convs={tally.conversations} compared={tally.compared} "
            f"mismatches={len(tally.mismatches)} {dict(modes)} ({time.time() - t:.1f}s)",
            flush=True,
        )
        for o in tally.mismatches[: args.show]:
            print(f"    seed {o.seed} {o.mode}: {o.detail}", flush=True)
    hf_rows = []
    if not args.no_hf and (not args.renderers or "hf_template" in args.renderers.split(",")):
        for tok in harness.HF_TOKENIZERS:
            t = time.time()
            tally = harness.run_hf_template(oracle, tok, seeds)
            refusals.update({f"hf_template: {k}": c for k, c in tally.refusals.items()})
            tinker_errors.update(
                {f"apply_chat_template: {k}": c for k, c in tally.tinker_errors.items()}
            )
            total_bad += len(tally.mismatches)
            hf_rows.append((tok, tally.conversations, tally.compared, len(tally.mismatches)))
            print(
                f"hf_template/{tok:24s} convs={tally.conversations} compared={tally.compared} "
                f"mismatches={len(tally.mismatches)} ({time.time() - t:.1f}s)",
                flush=True,
            )
            for o in tally.mismatches[: args.show]:
                print(f"    seed {o.seed} {o.mode}: {o.detail}", flush=True)
    oracle.close()
    elapsed = time.time() - t0
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "conversations": args.conversations,
                    "seed0": args.seed0,
                    "elapsed": elapsed,
                    "rows": rows,
                    "hf_rows": hf_rows,
                    "refusals": refusals,
                    "tinker_errors": tinker_errors,
                    "mismatches": total_bad,
                }
            )
        )
    if args.out:
        write_results(args, seeds, rows, hf_rows, refusals, tinker_errors, total_bad, elapsed)
    print(f"total mismatches {total_bad} in {elapsed:.0f}s")
    return 1 if total_bad else 0


def merge(args: argparse.Namespace) -> int:
    rows, hf_rows = [], []
    refusals: Counter[str] = Counter()
    tinker_errors: Counter[str] = Counter()
    bad = 0
    elapsed = 0.0
    for path in args.merge:
        d = json.loads(Path(path).read_text())
        rows += d["rows"]
        hf_rows += d["hf_rows"]
        refusals.update(d["refusals"])
        tinker_errors.update(d["tinker_errors"])
        bad += d["mismatches"]
        elapsed = max(elapsed, d["elapsed"])
        args.conversations, args.seed0 = d["conversations"], d["seed0"]
    rows.sort()
    seeds = range(args.seed0, args.seed0 + args.conversations)
    write_results(args, seeds, rows, hf_rows, refusals, tinker_errors, bad, elapsed)
    return 1 if bad else 0


def write_results(args, seeds, rows, hf_rows, refusals, tinker_errors, total_bad, elapsed) -> None:  # type: ignore[no-untyped-def]
    if True:
        lines = [
            "# Differential results: shardprep vs tinker-cookbook 0.6.1",
            "",
            f"Command: `.venv/bin/python tests/reference/scale.py --conversations {args.conversations}"
            f" --seed0 {args.seed0} --out {args.out}` ({elapsed / 60:.1f} min on this machine).",
            f"Seeds {seeds.start}..{seeds.stop - 1} of `tests/reference/generator.py`; per conversation the",
            "seven train_on modes plus the generation prompt of the conversation cut before its last",
            'assistant message ("compared" counts those; no prompt when there is no assistant message).',
            "",
            "| renderer | tokenizer | conversations | compared | mismatches |",
            "|---|---|---:|---:|---:|",
            *[f"| `{n}` | {t} | {c} | {m} | {b} |" for n, t, c, m, b in rows],
            f"| **total** | | {sum(r[2] for r in rows)} | {sum(r[3] for r in rows)} | {total_bad} |",
            "",
            "## hf_template vs `transformers.apply_chat_template` (same oracle environment)",
            "",
            "Per conversation the format accepts: the whole conversation (tokens) and its generation",
            "prompt (cut before the last assistant message). A row refused because the template is not",
            "prefix-consistent for it (in text, or in tokens across a chunk boundary) is not a mismatch.",
            "",
            "| tokenizer (its chat_template) | conversations | compared | mismatches |",
            "|---|---:|---:|---:|",
            *[f"| {t} | {c} | {m} | {b} |" for t, c, m, b in hf_rows],
            "",
            "## shardprep's refusals (reason: message), over all renderers and modes",
            "",
            "| count | reason |",
            "|---:|---|",
            *[f"| {c} | `{k}` |" for k, c in refusals.most_common()],
            "",
            "## tinker-cookbook's (and apply_chat_template's) exceptions",
            "",
            "| count | exception |",
            "|---:|---|",
            *[f"| {c} | `{k}` |" for k, c in tinker_errors.most_common()],
            "",
        ]
        Path(args.out).write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
