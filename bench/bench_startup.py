"""How fast the command line starts (issue 16 point 4): `prep --version`, and `prep build` of a
recipe whose output is up to date (a no-op rebuild: the recipe, a stat of each input, the
manifest and a stat of each shard). Targets on a 2-core machine: 0.3 s and 0.5 s of wall time.

Each command runs `--runs` times (default 5), each a fresh process; the median wall seconds and the
median CPU seconds (user + system, the steadier figure on a shared machine) are printed and
written to bench/results/startup.json. Two settings:

  as is     the environment as it is. Where PYTHONDONTWRITEBYTECODE is set (this sandbox), nothing
            caches shardprep's bytecode, so every start compiles the modules it imports.
  bytecode  with a bytecode cache (PYTHONPYCACHEPREFIX, a scratch folder primed by one run), as a
            pip-installed package has.

For scale, `deps_floor` is a process that only imports what an up-to-date build cannot do
without: typer and click (the command line), rich (the terminal answer) and yaml (the recipe's
`output:`). The no-op answers from the recipe file, file stats and the manifest's sealed quick key
(build/reuse.py): no pydantic, recipe model, tokenizer or task code.

The input is bench_build.py's SFT recipe (GSM8K-like rows, Qwen3 tokenizer and renderer): pass
--work with a folder holding sft.yaml and its built out-sft (e.g. bench_build's work folder), or
let the script make and build a smaller one (--tokens) in a temporary folder.

  python bench/bench_startup.py [--work DIR] [--tokens 400000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

PREP = Path(sys.executable).parent / "prep"
TARGETS_S = {"version": 0.3, "noop_build": 0.5}
DEPS_FLOOR = "import typer, click, rich.console, rich.markup, yaml\n"


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _time(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of one fresh process; its stdout."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr}")
    return wall, cpu, res.stdout


def measure(cmd: list[str], cwd: Path, env: dict[str, str], runs: int) -> dict[str, Any]:
    _time(cmd, cwd, env)  # warm the page cache (and prime a bytecode cache) once, unmeasured
    samples = [_time(cmd, cwd, env) for _ in range(runs)]
    return {
        "wall_s": round(statistics.median(s[0] for s in samples), 3),
        "cpu_s": round(statistics.median(s[1] for s in samples), 3),
        "wall_samples_s": [round(s[0], 3) for s in samples],
        "output": samples[-1][2].strip(),
    }


def _prepare(work: Path, tokens: int) -> None:
    import bench_build

    bench_build._write_inputs(work, "gsm8k", "sft", tokens)
    subprocess.run([str(PREP), "build", "sft.yaml", "--quiet"], cwd=work, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--work", help="folder with sft.yaml and its built out-sft (default: make one)")
    ap.add_argument("--tokens", type=int, default=400_000, help="input size when making one")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "startup.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="shardprep-startup-") as tmp:
        work = Path(args.work) if args.work else Path(tmp) / "work"
        if not args.work:
            work.mkdir()
            _prepare(work, args.tokens)
        base = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
        settings = {
            "as_is": base,
            "bytecode": {
                **{k: v for k, v in base.items() if k != "PYTHONDONTWRITEBYTECODE"},
                "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache"),
            },
        }
        commands = {
            "version": [str(PREP), "--version"],
            "noop_build": [str(PREP), "build", "sft.yaml"],
            "deps_floor": [sys.executable, "-c", DEPS_FLOOR],
        }
        results: dict[str, Any] = {
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "python": sys.version.split()[0],
            "runs": args.runs,
            "pythondontwritebytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
            "targets_wall_s": TARGETS_S,
            "load_avg_at_start": os.getloadavg(),
        }
        for setting, env in settings.items():
            results[setting] = {}
            for name, cmd in commands.items():
                res = measure(cmd, work, env, args.runs)
                if name == "noop_build" and not res["output"].startswith("up to date"):
                    raise SystemExit(f"the build in {work} is not up to date: {res['output']}")
                results[setting][name] = res
                target = TARGETS_S.get(name)
                verdict = "" if target is None else "ok" if res["wall_s"] < target else "over"
                print(
                    f"{setting:9s} {name:11s} wall {res['wall_s']:.3f} s  cpu {res['cpu_s']:.3f} s"
                    f"  (median of {args.runs})"
                    + (f"; target {target} s wall: {verdict}" if target is not None else "")
                )
        results["load_avg_at_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()
