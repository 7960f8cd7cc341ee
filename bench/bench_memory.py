"""Peak RSS of `prep build` on 1x and 10x the same input: memory must not grow with the input.

Input: the demo data's conversations (demo/data/*.json[l], alpaca + glaive tool-call + kto rows,
each turned into one `messages` row) repeated until the 1x file holds --mb MB of JSONL; the 10x
file is the 1x file written ten times. Each build runs `prep build` in a fresh subprocess, and its
peak RSS is that subprocess's `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` (the largest of the
build and its workers), read from a wrapper process so that the two runs are measured apart.

  python bench/bench_memory.py [--mb 22] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "data"
QWEN3 = ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"

_WRAPPER = """
import resource, subprocess, sys
rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _demo_rows() -> list[str]:
    rows: list[str] = []
    for item in json.loads((DEMO / "alpaca_en_demo.slice.json").read_text()):
        user = "\n".join(p for p in (item.get("instruction", ""), item.get("input", "")) if p)
        rows.append(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": user},
                        {"role": "assistant", "content": item.get("output", "")},
                    ]
                }
            )
        )
    for line in (DEMO / "kto_en_demo.slice.jsonl").read_text().splitlines():
        item = json.loads(line)
        msgs = [
            {"role": "assistant" if m["role"] == "assistant" else "user", "content": m["content"]}
            for m in item.get("messages", [])
        ]
        if msgs and msgs[-1]["role"] == "assistant":
            rows.append(json.dumps({"messages": msgs}))
    return rows


def _write_inputs(folder: Path, mb: float) -> tuple[Path, Path]:
    rows = _demo_rows()
    one = folder / "x1.jsonl"
    with open(one, "w", encoding="utf-8") as f:
        size = 0
        while size < mb * 1e6:
            for r in rows:
                f.write(r + "\n")
                size += len(r) + 1
    ten = folder / "x10.jsonl"
    block = one.read_bytes()
    with open(ten, "wb") as f:
        for _ in range(10):
            f.write(block)
    return one, ten


def _peak_rss_mib(folder: Path, data: Path, workers: int) -> tuple[float, float]:
    recipe = folder / f"{data.stem}.yaml"
    recipe.write_text(
        json.dumps(
            {
                "name": data.stem,
                "output": str(folder / f"out-{data.stem}"),
                "tokenizer": str(QWEN3),
                "renderer": "qwen3",
                "sources": [{"path": str(data)}],
                "workers": workers,
                "split": {"test_fraction": 0.01},
            }
        )
    )
    import time

    t0 = time.monotonic()
    prep = [str(Path(sys.executable).parent / "prep"), "build", str(recipe)]
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *prep], capture_output=True, text=True, check=True
    )
    rc, kib = out.stdout.split()
    if rc != "0":
        raise SystemExit(f"prep build failed on {data} (exit {rc})")
    return int(kib) / 1024, time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--mb", type=float, default=22.0, help="size of the 1x input in MB (10x is ten times it)"
    )
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        one, ten = _write_inputs(folder, args.mb)
        result = {"workers": args.workers, "input_mb": {}, "peak_rss_mib": {}, "seconds": {}}
        for label, data in (("1x", one), ("10x", ten)):
            rss, secs = _peak_rss_mib(folder, data, args.workers)
            result["input_mb"][label] = round(data.stat().st_size / 1e6, 1)
            result["peak_rss_mib"][label] = round(rss, 1)
            result["seconds"][label] = round(secs, 1)
            print(
                f"{label}: {result['input_mb'][label]} MB JSONL, peak RSS {rss:.1f} MiB, {secs:.1f} s",
                flush=True,
            )
        ratio = result["peak_rss_mib"]["10x"] / result["peak_rss_mib"]["1x"]
        result["ratio_10x_over_1x"] = round(ratio, 3)
        print(f"10x / 1x peak RSS: {ratio:.3f} (target <= 1.2, and 10x < 1024 MiB)")
        out = ROOT / "bench" / "results" / "memory.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
