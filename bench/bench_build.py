"""`prep build` against the encoders' own speed and the paths people use instead, at two sizes.

Input (default `--shape chat`): real chat shapes, bench/chat_like.py: the demo data's alpaca
instructions (format messages) and glaive tool-call conversations with their tool declarations
(format sharegpt), every text varied; DPO pairs from the alpaca rows. `--shape gsm8k`: the
GSM8K-like rows of bench/gsm8k_like.py. Qwen3 tokenizer and renderer. SFT is measured at each of
`--sizes` (default ~4 M and ~45 M tokens), DPO at `--dpo-sizes`. Every rate below is the same
token count (the rendered conversations' tokens, one encode of each) divided by that path's
seconds, so the ratios compare time on identical work. Each measurement runs in a fresh process.

  raw tokenizers   tokenizers `encode_batch` of the rendered texts (all cores)
  raw fastokens    fastokens `encode_batch_flat` of the same texts (all cores)
  build whole      `prep build --force` as a command: start, plan, encoder parse and probe,
                   read, render, encode, write, compaction, manifest (wall time of the process,
                   best of two)
  build steady     the same build in-process, between its first and its last finished work unit
  tinker           tinker-cookbook 0.6.1's conversation_to_datum per row (needs .venv-ref)
  trl              `datasets.map(apply_chat_template)`, num_proc = cores (needs transformers)

tinker and TRL read the plain-messages part of the input (chat.jsonl / pairs.jsonl) and are
rated on their own tokens; they run only up to `--refs-max-tokens`. From whole builds at the
smallest and the largest size (a further 3 of each, taken in turn, the fastest of each: sizes
measured minutes apart on a shared machine skewed it): marginal rate = extra tokens / extra
seconds, fixed cost = seconds - tokens / marginal rate. Each size also times the steps of one whole build (where the
fixed time goes). `--compare-rev REV` builds every input again with shardprep as of git revision
REV and checks that the shards are byte-identical. Builds run with 1 worker (smallest size only)
and with all cores (scaling), and report the rows/s of their last 10 % against their first 90 %
(tail). Generated inputs live in a temporary folder. Writes bench/results/build.{json,txt}.

  python bench/bench_build.py [--sizes 4000000,45000000] [--dpo-sizes 4000000]
                              [--shape chat|gsm8k] [--skip-refs] [--compare-rev REV]
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
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

import chat_like  # noqa: E402
import gsm8k_like  # noqa: E402

TOKENIZER = ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"
REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"


_LINES: list[str] = []
# Rounds of whole builds at the smallest and the largest size, taken in turn, for the derivation.
PAIRED_ROUNDS = 3


def say(line: str = "") -> None:
    """Print, and keep the line for bench/results/build.txt."""
    print(line, flush=True)
    _LINES.append(line)


def _cores() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


# -- children (one measurement per fresh process) ------------------------------------------------


def _conversations(work: Path, task: str, renderer: Any) -> list[list[Any]]:
    """The conversations the build renders (each side of a pair on its own), converted by the
    build's own formats from the bench's sources."""
    from shardprep.formats import declare_tools, to_conversation
    from shardprep.formats.comparison import to_comparison
    from shardprep.recipe import load_recipe
    from shardprep.tasks.dpo import pair_conversations

    recipe, base = load_recipe(work / f"{task}.yaml")
    convs: list[list[Any]] = []
    for src in recipe.sources:
        with open(base / str(src.path), encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                if task == "dpo":
                    convs.extend(pair_conversations(to_comparison(row, format=src.format)))
                else:
                    conv = to_conversation(row, format=src.format)
                    convs.append(declare_tools(renderer, conv, row, None, "auto"))
    return convs


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
    for conv in _conversations(work, task, renderer):
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
    if what == "phases":
        return _phases(work, task, workers)
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


def _whole(work: Path, task: str, workers: int, *, pythonpath: str | None = None) -> dict[str, Any]:
    """`prep build` as a user runs it: the process's wall time, start to exit. `pythonpath`: run
    another tree's shardprep (the --compare-rev build)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # The installed `prep` script; another tree's command line by its `main` (the script's entry
    # point has changed name over time).
    entry = [str(Path(sys.executable).parent / "prep")]
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
        entry = [sys.executable, "-c", "from shardprep.cli.app import main; main()"]
    cmd = [
        *entry,
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


# The steps of a whole build timed by `--child phases` (seconds from process start).
_PHASE_HOOKS = (
    ("shardprep.encode.fast_parse", "_parse_fastokens", "fastokens parse"),
    ("shardprep.build.run", "plan_build", "plan (recipe checks, tokenizer, input counts)"),
    ("shardprep.build.engines.local", "_open_pool", "pool start (waits for the parse)"),
    ("shardprep.build.compact", "compact_manifest", "compaction"),
    ("shardprep.build.run", "write_manifest", "manifest"),
)


def _phases(work: Path, task: str, workers: int) -> dict[str, Any]:
    """One whole build as `prep build` runs it, in this fresh process, with its main steps
    timed (wrappers around them; the first unit's and the last unit's end from the progress)."""
    import importlib

    t_start = time.perf_counter()
    spans: dict[str, list[float]] = {}

    def hook(module: str, name: str, label: str) -> None:
        mod = importlib.import_module(module)
        inner = getattr(mod, name)

        def timed(*a: Any, **k: Any) -> Any:
            spans.setdefault(label, []).append(time.perf_counter() - t_start)
            try:
                return inner(*a, **k)
            finally:
                spans[label].append(time.perf_counter() - t_start)

        setattr(mod, name, timed)

    t_imports = time.perf_counter()
    for module, name, label in _PHASE_HOOKS:
        hook(module, name, label)
    imports = time.perf_counter() - t_imports  # not a build step: left out of the times below
    from shardprep.build import run

    units: list[float] = []

    class _Units(_Marks):
        def advance(self, rows: int, tokens: int) -> None:
            units.append(time.perf_counter() - t_start)

    inner_build = run.build

    def build(*a: Any, **k: Any) -> Any:
        k["progress"] = _Units()
        return inner_build(*a, **k)

    run.build = build  # type: ignore[assignment]
    from shardprep.cli.app import main as prep_main

    sys.argv = ["prep", "build", str(work / f"{task}.yaml"), "--force", "--json"]
    sys.argv += ["--workers", str(workers)]
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            prep_main()
    except SystemExit as exc:
        if exc.code:
            raise
    end = time.perf_counter() - t_start - imports
    out = {k: [round(x - imports, 3) for x in v[:2]] for k, v in spans.items()}
    if units:
        # (units the driver ran during the parse are handed over when the pool starts)
        out["first unit result handed over"] = [round(units[0] - imports, 3)]
        out["last unit done"] = [round(units[-1] - imports, 3)]
    out["exit"] = [round(end, 3)]
    return {"phases": out}


def _ref(path: str, data: Path, task: str, cores: int) -> dict[str, Any]:
    python = REF_PYTHON if path == "tinker" else Path(sys.executable)
    if path == "tinker" and not python.exists():
        return {"skipped": ".venv-ref not found (make test-reference builds it)"}
    cmd = [
        str(python),
        str(ROOT / "bench" / "ref_paths.py"),
        path,
        "--data",
        str(data),
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


def _write_inputs(work: Path, shape: str, task: str, tokens: int) -> tuple[int, Path]:
    """The task's input of about `tokens` tokens, its recipe and tokenizer in `work`; (rows, the
    JSONL the reference paths read: messages rows, or chosen/rejected pairs)."""
    import gzip

    work.mkdir(parents=True, exist_ok=True)
    if not (work / "tok").exists():
        (work / "tok").mkdir()
        (work / "tok" / "tokenizer.json").write_bytes(
            gzip.decompress((TOKENIZER / "tokenizer.json.gz").read_bytes())
        )
        shutil.copy(TOKENIZER / "tokenizer_config.json", work / "tok" / "tokenizer_config.json")
    head = f"name: bench-{task}\noutput: out-{task}\ntokenizer: tok\nrenderer: qwen3\n"
    if shape == "gsm8k":
        rows = gsm8k_like.write(
            work / f"{task}.jsonl", tokens, dpo=task == "dpo", seed=int(task == "dpo")
        )
        fmt = "messages" if task == "sft" else "messages_pair"
        sources = f"sources: [{{path: {task}.jsonl, format: {fmt}}}]\n"
        ref = work / f"{task}.jsonl"
    elif task == "sft":
        rows = sum(chat_like.write_sft(work, tokens).values())
        sources, ref = chat_like.SFT_SOURCES, work / "chat.jsonl"
    else:
        rows = sum(chat_like.write_dpo(work, tokens).values())
        sources, ref = chat_like.DPO_SOURCES, work / "pairs.jsonl"
    body = "train_on: all_assistant_messages\n" if task == "sft" else "task: dpo\n"
    (work / f"{task}.yaml").write_text(head + body + sources)
    return rows, ref


def _shard_digests(out: Path) -> list[tuple[str, int, str]]:
    """(file name, rows, sha256) of every shard the manifest lists, each file's bytes hashed again."""
    import hashlib

    m = json.loads((out / "manifest.json").read_text())
    found = []
    for _split, info in sorted(m["splits"].items()):
        for s in info["shards"]:
            digest = hashlib.sha256((out / s["path"]).read_bytes()).hexdigest()
            if digest != s["sha256"]:
                raise SystemExit(f"{out / s['path']}: bytes do not match the manifest")
            found.append((s["path"].rsplit("/", 1)[-1], s["rows"], digest))
    return found


def compare_rev(work: Path, task: str, rev: str, cores: int) -> dict[str, Any]:
    """Build the same input with shardprep as of git revision `rev` and with this tree; the
    shards must be byte-identical (same files, rows, sha256)."""
    src = work.parent / f"src-{rev[:12]}"
    if not src.exists():
        src.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    out = work / f"out-{task}"
    base_out = work / f"out-{task}-{rev[:12]}"
    # Fresh outputs: a forced build beside a current one goes in a tagged folder.
    shutil.rmtree(out, ignore_errors=True)
    _whole(work, task, cores, pythonpath=str(src))
    shutil.rmtree(base_out, ignore_errors=True)
    out.rename(base_out)
    theirs = _shard_digests(base_out)
    _whole(work, task, cores)
    ours = _shard_digests(out)
    return {
        "rev": rev,
        "shards": len(ours),
        "identical": ours == theirs,
        "rows": sum(r for _, r, _ in ours),
    }


def bench_size(
    work: Path, shape: str, task: str, tokens_wanted: int, cores: int, refs: bool, one_worker: bool
) -> dict[str, Any]:
    rows, ref_data = _write_inputs(work, shape, task, tokens_wanted)
    raw_t = _run_child("raw_tokenizers", work, task, 1, cores)
    tokens = raw_t["tokens"]  # the work every path does: these tokens, once
    out: dict[str, Any] = {"tokens": tokens, "rows": raw_t["rows"], "paths": {}}
    paths = out["paths"]
    paths["raw tokenizers"] = raw_t
    paths["raw fastokens"] = _run_child("raw_fastokens", work, task, 1, cores)
    for n in sorted({1, cores}) if one_worker else [cores]:
        paths[f"build whole, {n} worker(s)"] = min(
            (_whole(work, task, n) for _ in range(2)), key=lambda r: r["seconds"]
        )
        steady = _run_child("build_steady", work, task, n, cores)
        steady["seconds_total"] = steady.pop("seconds")
        steady["seconds"] = (
            steady["steady_seconds"] / steady["steady_fraction"]
            if steady["steady_fraction"]
            else float("nan")
        )
        paths[f"build steady, {n} worker(s)"] = steady
    out["phases"] = _run_child("phases", work, task, cores, cores)["phases"]
    if refs:
        paths["tinker-cookbook"] = _ref("tinker", ref_data, task, cores)
        paths[f"trl datasets.map, num_proc={cores}"] = _ref("trl", ref_data, task, cores)
    for r in paths.values():
        if "seconds" in r:
            # The reference paths read only the plain-messages part: rated on their own tokens.
            r["tokens_per_s"] = r.get("tokens", tokens) / r["seconds"]
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
        per_cpu = f"{r.get('tokens', res['tokens']) / cpu / 1e6:>12.2f}" if cpu else f"{'':>12}"
        cpu_s = f"{cpu:>8.2f}" if cpu else f"{'':>8}"
        say(f"  {name:<36} {r['tokens_per_s'] / 1e6:>8.2f} {r['seconds']:>8.2f} {cpu_s} {per_cpu}")
    p = res["paths"]
    whole, steady = p[f"build whole, {cores} worker(s)"], p[f"build steady, {cores} worker(s)"]
    ratios: dict[str, float] = {}
    for name, r in p.items():
        if "tokens_per_s" in r and not name.startswith("build"):
            ratios[f"build whole / {name}"] = whole["tokens_per_s"] / r["tokens_per_s"]
            ratios[f"build steady / {name}"] = steady["tokens_per_s"] / r["tokens_per_s"]
    if cores > 1 and "build steady, 1 worker(s)" in p:
        one = p["build steady, 1 worker(s)"]["tokens_per_s"]
        ratios[f"scaling: steady {cores} workers / ({cores} x 1 worker)"] = steady[
            "tokens_per_s"
        ] / (cores * one)
    ratios["tail: last 10 % / first 90 % rows/s"] = steady["tail"]["last_over_first"]
    say(f"  encoder: {steady.get('encoder')}")
    for k, v in ratios.items():
        say(f"  {k:<52} {v:>7.2f}")
    say(f"  where a whole build's time goes ({cores} workers; seconds from process start):")
    for k, v in sorted(res["phases"].items(), key=lambda kv: kv[1][0]):
        span = f"{v[0]:6.2f} .. {v[1]:6.2f}" if len(v) > 1 else f"{v[0]:6.2f}"
        say(f"    {span:>16}  {k}")
    return ratios


def _paired(works: list[Path], task: str, cores: int, rounds: int) -> list[float]:
    """The fastest of `rounds` whole builds of each input, the inputs taken in turn within each
    round: a shared machine's slow spell then slows both sizes alike instead of skewing the
    marginal rate and fixed cost derived from them."""
    best = [float("inf")] * len(works)
    for _ in range(rounds):
        for i, work in enumerate(works):
            best[i] = min(best[i], _whole(work, task, cores)["seconds"])
    return best


def _derive(
    task: str, sizes: list[dict[str, Any]], cores: int, paired: list[float]
) -> dict[str, float]:
    """Marginal rate and fixed cost from the paired whole builds at the smallest and largest size
    (`paired`: their seconds): whole seconds = fixed + tokens / marginal."""
    key = f"build whole, {cores} worker(s)"
    a, b = sizes[0], sizes[-1]
    ta, tb = paired
    marginal = (b["tokens"] - a["tokens"]) / (tb - ta) if tb > ta else float("inf")
    fixed = ta - a["tokens"] / marginal
    derived = {
        "paired_whole_seconds": [ta, tb],
        "marginal_tokens_per_s": marginal,
        "fixed_seconds": fixed,
        "marginal / raw fastokens": marginal / b["paths"]["raw fastokens"]["tokens_per_s"],
        "marginal / raw tokenizers": marginal / b["paths"]["raw tokenizers"]["tokens_per_s"],
    }
    say(
        f"\n{task.upper()} whole build, {cores} workers, {a['tokens']:,} -> {b['tokens']:,} tokens "
        f"(fastest of {PAIRED_ROUNDS} runs each, taken in turn: {ta:.2f} s and {tb:.2f} s): "
        f"marginal {marginal / 1e6:.2f} M tok/s ({derived['marginal / raw fastokens']:.2f} of raw "
        f"fastokens), fixed {fixed:.2f} s"
    )
    for s in sizes:
        r = s["paths"][key]["tokens_per_s"] / s["paths"]["raw tokenizers"]["tokens_per_s"]
        say(f"  {s['tokens']:>12,} tokens: whole build / raw tokenizers {r:6.2f}")
        derived[f"whole / raw tokenizers at {s['tokens']}"] = r
    # tinker and TRL take minutes at the largest size: their rate where they ran (per token, it
    # does not grow with the input) against the largest whole build's.
    for name, ref in a["paths"].items():
        if name.startswith(("tinker", "trl")) and "tokens_per_s" in ref:
            r = b["paths"][key]["tokens_per_s"] / ref["tokens_per_s"]
            derived[f"whole at {b['tokens']} / {name} at {a['tokens']}"] = r
            say(f"  whole build at {b['tokens']:,} / {name} (rate at {a['tokens']:,}) {r:6.2f}")
    return derived


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--sizes",
        default="4000000,45000000",
        help="SFT input sizes in tokens (comma-separated): the marginal rate and fixed cost are "
        "derived from the smallest and largest",
    )
    ap.add_argument("--dpo-sizes", default="4000000", help="DPO input sizes in tokens (both sides)")
    ap.add_argument("--shape", choices=("chat", "gsm8k"), default="chat")
    ap.add_argument("--skip-refs", action="store_true", help="leave out the tinker and TRL paths")
    ap.add_argument(
        "--refs-max-tokens",
        type=int,
        default=5_000_000,
        help="run the tinker and TRL paths only on inputs up to this size (they take minutes)",
    )
    ap.add_argument(
        "--compare-rev",
        help="also build every input with shardprep as of this git revision and check that the "
        "shards are byte-identical",
    )
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
    # Bytecode as a pip-installed package has it: where PYTHONDONTWRITEBYTECODE is set (this
    # sandbox), every whole-build child would otherwise compile the modules it imports (~0.3 s).
    compileall.compile_dir(str(ROOT / "shardprep"), quiet=1)
    results: dict[str, Any] = {
        "cores": cores,
        "shape": args.shape,
        "load_avg_at_start": os.getloadavg(),
    }
    say(f"input: {args.shape} shapes; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="shardprep-bench-") as tmp:
        for task in args.tasks.split(","):
            sizes = [int(x) for x in (args.sizes if task == "sft" else args.dpo_sizes).split(",")]
            done: list[dict[str, Any]] = []
            works: list[Path] = []
            for i, wanted in enumerate(sorted(sizes)):
                work = Path(tmp) / f"{task}-{wanted}"
                res = bench_size(
                    work,
                    args.shape,
                    task,
                    wanted,
                    cores,
                    refs=not args.skip_refs and wanted <= args.refs_max_tokens,
                    one_worker=i == 0,
                )
                res["ratios"] = _print(task, res, cores)
                if args.compare_rev:
                    res["identity"] = same = compare_rev(work, task, args.compare_rev, cores)
                    say(
                        f"  shards vs {args.compare_rev[:12]}: {same['shards']} shards, "
                        f"{same['rows']:,} rows, "
                        + ("byte-identical" if same["identical"] else "DIFFERENT")
                    )
                done.append(res)
                works.append(work)
            results[task] = {"sizes": done}
            if len(done) > 1:
                paired = _paired([works[0], works[-1]], task, cores, PAIRED_ROUNDS)
                results[task]["derived"] = _derive(task, done, cores, paired)
            for work in works:
                shutil.rmtree(work, ignore_errors=True)  # the 45 M-token input is ~0.4 GB
    results["load_avg_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    say(f"\nresults: {os.path.relpath(args.out, ROOT)} (and .txt)")
    Path(args.out).with_suffix(".txt").write_text("\n".join(_LINES) + "\n")
    if args.compare_rev and not all(
        s["identity"]["identical"] for t in args.tasks.split(",") for s in results[t]["sizes"]
    ):
        raise SystemExit("shards differ from the compared revision")


if __name__ == "__main__":
    main()
